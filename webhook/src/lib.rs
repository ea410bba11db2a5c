//! The Airlock admission server.
//!
//! One HTTPS server built from warp filters: `/mutate` injects the enforcement sidecar into pods an
//! `AIRuntimeInstance` selects, `/validate` rejects model-serving workloads that would run unprotected.
//! The decisions are pure functions ([`mutate`], [`validate`]); this crate's I/O only feeds them.

pub mod error;
pub mod mutate;
pub mod review;
pub mod validate;

pub use error::{Error, Result};

/// Command-line flags, each with an environment fallback.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "airlock-webhook", version, about)]
pub struct Args {
    /// Address of the HTTPS admission server.
    #[arg(long, env = "AIRLOCK_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: std::net::SocketAddr,

    /// PEM certificate chain served to the API server; reloaded when it changes.
    #[arg(long, env = "AIRLOCK_TLS_CERT", default_value = "/etc/airlock/tls/tls.crt")]
    pub tls_cert: std::path::PathBuf,

    /// PEM private key matching `--tls-cert`; reloaded when it changes.
    #[arg(long, env = "AIRLOCK_TLS_KEY", default_value = "/etc/airlock/tls/tls.key")]
    pub tls_key: std::path::PathBuf,

    /// Address of the plain admin server (`/live`, `/ready`, `/metrics`).
    #[arg(long, env = "AIRLOCK_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: std::net::SocketAddr,

    /// Log format.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = airlock_core::telemetry::LogFormat::Json)]
    pub log_format: airlock_core::telemetry::LogFormat,
}

/// Runs the admission server until it is asked to stop.
///
/// TODO(issue 3): TLS accept loop with certificate reload, `/mutate`, `/validate`, admin server.
pub async fn run(args: Args) -> Result<()> {
    tracing::info!(addr = %args.addr, admin = %args.admin_addr, "airlock-webhook starting");
    tracing::warn!("the admission server is not implemented yet (issue 3); exiting");
    Ok(())
}
