use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = airlock_sidecar::Cli::parse();
    airlock_core::telemetry::init(cli.log_format);
    airlock_sidecar::run(cli).await?;
    Ok(())
}
