use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = airlock_webhook::Args::parse();
    airlock_core::telemetry::init(args.log_format);
    airlock_webhook::run(args).await?;
    Ok(())
}
