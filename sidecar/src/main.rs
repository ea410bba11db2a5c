use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = airlock_sidecar::Cli::parse();
    airlock_core::telemetry::init(cli.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.worker_threads())
        .enable_all()
        .build()?
        .block_on(airlock_sidecar::run(cli))?;
    Ok(())
}
