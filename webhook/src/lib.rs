//! The Airlock admission server.
//!
//! One HTTPS server built from warp filters: `/mutate` injects the enforcement sidecar into pods an
//! `AIRuntimeInstance` selects, `/validate` rejects model-serving workloads that would run unprotected.
//! The decisions are pure functions ([`mutate`], [`validate`]); this crate's I/O only feeds them:
//! [`server`] (routes, body limits, the TLS accept loop), [`tls`] (certificate files and their reload),
//! [`cache`] (the cluster view from watches), [`admin`] and [`metrics`] (probes and Prometheus).

pub mod admin;
pub mod cache;
mod direct;
pub mod error;
pub mod fingerprint;
mod lean;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod selection;
pub mod server;
pub mod tls;
pub mod validate;
pub mod workload;

pub use error::{Error, Result};
pub use server::{ServeOptions, serve};

use std::sync::Arc;
use std::time::Duration;

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

    /// Largest admission request body accepted, in bytes (an UPDATE review carries two objects).
    #[arg(long, env = "AIRLOCK_MAX_BODY_BYTES", default_value_t = server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,

    /// How often the certificate files are checked for a new pair, e.g. `5s`.
    #[arg(long, env = "AIRLOCK_CERT_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,

    /// How long in-flight requests may take to finish after SIGTERM, e.g. `25s`.
    #[arg(long, env = "AIRLOCK_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Sidecar image injected when an `AIRuntimeInstance` names none (`spec.sidecar.image`), e.g.
    /// `registry.example.com/airlock/airlock-sidecar:0.1.0`. Default: Airlock's image at this version.
    #[arg(long, env = "AIRLOCK_SIDECAR_IMAGE", default_value_t = mutate::default_sidecar_image(), value_parser = mutate::parse_image)]
    pub sidecar_image: String,
}

/// Parses `250ms`, `5s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{text}` has an unknown unit; use ms, s or m")),
    }
}

/// Runs the admission server until SIGTERM or SIGINT, then shuts down cleanly.
///
/// Order matters for a rolling update: the certificate is loaded first (a bad mount fails fast, naming
/// the file), the admin server comes up so probes answer, the caches start and mark the webhook ready
/// once synced, and only then does traffic matter. On a signal the admission server drains first.
pub async fn run(args: Args) -> Result<()> {
    tracing::info!(addr = %args.addr, admin = %args.admin_addr, "airlock-webhook starting");
    // The Kubernetes client's TLS looks for a process-wide provider; an earlier install is fine too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tls::ReloadingCert::from_files(&args.tls_cert, &args.tls_key)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let readiness = admin::Readiness::default();

    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_listener = server::bind(args.admin_addr).await?;
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        readiness.clone(),
        metrics.clone(),
        async {
            let _ = admin_stopped.await;
        },
    ));

    let client = kube::Client::try_default().await.map_err(Error::Kube)?;
    let mut watches = tokio::task::JoinSet::new();
    let view = cache::KubeView::start(
        client,
        readiness.clone(),
        args.sidecar_image.clone(),
        &mut watches,
    )
    .await?;

    let listener = server::bind(args.addr).await?;
    let opts = ServeOptions {
        max_body_bytes: args.max_body_bytes,
        cert_reload_interval: args.cert_reload_interval,
        shutdown_timeout: args.shutdown_timeout,
        metrics,
        ..ServeOptions::default()
    };
    let signal = shutdown_signal()?;
    let served = serve(listener, tls, Arc::new(view), opts, async {
        signal.await;
        tracing::info!("shutdown requested");
        readiness.set(false);
    })
    .await;

    watches.shutdown().await;
    let _ = stop_admin.send(());
    let _ = admin.await;
    tracing::info!("airlock-webhook stopped");
    served
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{Duration, parse_duration};

    #[test]
    fn durations_take_ms_s_m_or_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
