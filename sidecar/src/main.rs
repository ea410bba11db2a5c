use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = airlock_sidecar::Cli::parse();
    airlock_core::telemetry::init(cli.log_format);
    // One thread: the current-thread scheduler, which waits for I/O on that thread itself, so a request
    // never waits for a wake-up across threads (see `--worker-threads`).
    let runtime = if cli.worker_threads() <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.worker_threads())
            .enable_all()
            .build()?
    };
    runtime.block_on(airlock_sidecar::run(cli))?;
    Ok(())
}
