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

impl Cli {
    /// Worker threads for the async runtime: `run`'s `--worker-threads`; one for the other commands.
    pub fn worker_threads(&self) -> usize {
        match &self.command {
            Command::Run(args) => usize::from(args.worker_threads),
            Command::Scan { .. } | Command::Init => 1,
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;

    #[test]
    fn run_serves_on_one_worker_thread_unless_asked() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["airlock-sidecar"], args].concat());
        assert_eq!(parse(&["run"]).unwrap().worker_threads(), 1);
        assert_eq!(
            parse(&["run", "--worker-threads", "4"]).unwrap().worker_threads(),
            4
        );
        let refused = parse(&["run", "--worker-threads", "0"]).unwrap_err();
        assert!(refused.to_string().contains("worker-threads"), "{refused}");
        assert_eq!(parse(&["scan"]).unwrap().worker_threads(), 1);
    }
}
