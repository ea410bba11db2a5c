//! Logging setup shared by Airlock's binaries (feature `telemetry`).

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (development).
    Plain,
}

/// Installs the global tracing subscriber; `RUST_LOG` filters (default `info`).
///
/// Operational logs go to stderr: stdout belongs to a command's output (`airlock-sidecar scan` writes
/// verdicts there) and to the sidecar's threat log.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}
