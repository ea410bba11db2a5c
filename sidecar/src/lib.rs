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
pub mod routes;
pub mod scan;
pub mod stream;
pub mod threatlog;
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
    Run {
        /// An `AISecurityProfile` YAML file or a built-in profile name (`strict`, `balanced`, `audit`).
        #[arg(long, env = config::ENV_PROFILE, default_value = "balanced")]
        profile: String,
        /// Where allowed requests go, e.g. `https://api.openai.com`.
        #[arg(long, env = config::ENV_UPSTREAM)]
        upstream: String,
        /// Address to listen on.
        #[arg(long, env = config::ENV_LISTEN, default_value = "127.0.0.1:15001")]
        listen: std::net::SocketAddr,
    },
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
///
/// TODO(issue 5): the proxy (`run`) and `init`. Until then they report that they are not ready and exit.
pub async fn run(cli: Cli) -> Result<()> {
    let name = match &cli.command {
        Command::Run { .. } => "run",
        Command::Scan { profile } => return scan_stdio(profile),
        Command::Init => return init::InitSettings::from_env().and_then(|s| init::run(&s)),
    };
    tracing::info!(command = name, "airlock-sidecar starting");
    Err(Error::NotImplemented(name))
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
