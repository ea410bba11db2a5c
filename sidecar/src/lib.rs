//! The Airlock enforcement sidecar: an LLM-aware proxy that scans requests and responses, applies an
//! `AISecurityProfile`, blocks or masks, enforces model-DoS limits and writes threat logs.

pub mod admin;
pub mod config;
pub mod engine;
pub mod error;
pub mod extract;
pub mod forward;
pub mod init;
pub mod limits;
pub mod policyset;
pub mod profile;
pub mod proxy;
pub mod routes;
pub mod scan;
pub mod stream;
pub mod threatlog;
pub mod tls;
pub mod verdict;

pub use error::{Error, Result};

/// `airlock-sidecar` and its subcommands.
#[derive(Debug, clap::Parser)]
#[command(name = "airlock-sidecar", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format.
    #[arg(long, global = true, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = airlock_core::telemetry::LogFormat::Json)]
    pub log_format: airlock_core::telemetry::LogFormat,
}

/// What the sidecar is asked to do.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the enforcement proxy in front of an upstream.
    Run(Box<proxy::run::RunArgs>),
    /// Scan JSONL from stdin offline and write one verdict per line.
    Scan {
        /// An `AISecurityProfile` YAML file or a built-in profile name.
        #[arg(long, default_value = "balanced")]
        profile: String,
    },
    /// Install the transparent inbound redirect (run as an init container with NET_ADMIN).
    Init,
}

/// Runs one subcommand.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => proxy::run::run(*args).await,
        Command::Scan { profile } => scan_stdio(&profile),
        Command::Init => init::InitSettings::from_env().and_then(|s| init::run(&s)),
    }
}

/// `scan` over stdin and stdout (logs go to stderr, so stdout holds only verdicts). Scanning is
/// synchronous; the command has nothing else to run meanwhile.
fn scan_stdio(profile: &str) -> Result<()> {
    let policy = profile::Policy::load(profile)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stats = scan::run_scan(&policy, stdin.lock(), std::io::BufWriter::new(stdout.lock()))?;
    tracing::debug!(profile = %policy.name, ?stats, "scan finished");
    Ok(())
}
