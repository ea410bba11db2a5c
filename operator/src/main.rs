use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = airlock_operator::Args::parse();
    airlock_core::telemetry::init(args.log_format);
    airlock_operator::run(args).await?;
    Ok(())
}
