//! `airlock-sidecar run`: wires the listeners, the policy, hot reload, the admin port and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_crds::v1alpha1::FailureMode;

use crate::admin::{self, Readiness};
use crate::config;
use crate::proxy::reload::{self, PolicySource};
use crate::proxy::serve::{self, InboundTarget};
use crate::proxy::{Active, Listener, PodInfo, Proxy, Settings, ThreatLog, build_client};
use crate::routes::{DEFAULT_UPSTREAM, Routes};
use crate::{Error, Result};

/// Enforcement mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunMode {
    Enforce,
    Audit,
}

/// Failure mode, as the instance writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFailureMode {
    #[value(name = "failOpen")]
    FailOpen,
    #[value(name = "failClosed")]
    FailClosed,
}

/// Inbound interception mode, as the webhook writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InboundMode {
    Disabled,
    Transparent,
    Explicit,
}

/// Arguments of `run`. In a pod every one comes from the environment the webhook sets.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// An `AISecurityProfile` YAML file or a built-in profile (`strict`, `balanced`, `audit`). Ignored
    /// when `--policy-dir` is set.
    #[arg(long, env = config::ENV_PROFILE, default_value = "balanced")]
    pub profile: String,
    /// Directory holding the operator's policy bundle (`policy.json`), reloaded when it changes.
    #[arg(long, env = "AIRLOCK_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Default upstream for outbound requests, e.g. `https://api.openai.com` or `http://vllm.models:8000`.
    #[arg(long, env = config::ENV_UPSTREAM, default_value = DEFAULT_UPSTREAM)]
    pub upstream: String,
    /// Extra routes `PREFIX=URL` (repeatable, or comma-separated in `AIRLOCK_ROUTES`); the longest
    /// matching path prefix wins over `--upstream`.
    #[arg(long = "route", env = "AIRLOCK_ROUTES", value_delimiter = ',')]
    pub routes: Vec<String>,
    /// Azure OpenAI endpoint for `/openai/…` paths, e.g. `https://acme.openai.azure.com`.
    #[arg(long, env = "AIRLOCK_AZURE_OPENAI_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    /// Outbound listener (apps' LLM base URL).
    #[arg(long, env = config::ENV_LISTEN, default_value = "127.0.0.1:15001")]
    pub listen: SocketAddr,
    /// Serve the outbound listener.
    #[arg(long, env = "AIRLOCK_OUTBOUND", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbound: bool,
    /// Inbound interception: `transparent` (redirected by `init`), `explicit` (clients dial the
    /// `airlock-in` port) or `disabled`.
    #[arg(long, env = "AIRLOCK_INBOUND_MODE", value_enum, default_value_t = InboundMode::Disabled)]
    pub inbound_mode: InboundMode,
    /// The model server's ports (comma-separated).
    #[arg(long, env = "AIRLOCK_INBOUND_PORTS", value_delimiter = ',')]
    pub inbound_ports: Vec<u16>,
    /// Inbound listener.
    #[arg(long, env = "AIRLOCK_INBOUND_LISTEN", default_value = "0.0.0.0:15006")]
    pub inbound_listen: SocketAddr,
    /// Threads serving traffic. One (the default) keeps a request's tasks on one thread: on the two-core
    /// benchmark machine that took a third to 40% less CPU per request than two, with no wake-ups across
    /// threads; it runs tokio's current-thread scheduler, which polls I/O on that thread itself (SSE time
    /// to first byte 30 to 160 us lower than one worker of the multi-thread scheduler in A/B runs). Scans of more than 32 KiB
    /// run on a separate blocking pool either way.
    #[arg(long, env = "AIRLOCK_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
    /// Admin listener (`/live`, `/ready`, `/metrics`).
    #[arg(long, env = "AIRLOCK_ADMIN_LISTEN", default_value = "0.0.0.0:15020")]
    pub admin: SocketAddr,
    /// `audit` logs what `enforce` would block, and changes nothing.
    #[arg(long, env = "AIRLOCK_MODE", value_enum, default_value_t = RunMode::Enforce)]
    pub mode: RunMode,
    /// What happens when a scan cannot finish; overrides the profile's `failureMode`.
    #[arg(long, env = "AIRLOCK_FAILURE_MODE", value_enum)]
    pub failure_mode: Option<RunFailureMode>,
    /// A PEM bundle of extra CAs to trust for upstreams.
    #[arg(long, env = "AIRLOCK_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Seconds to wait for the upstream's answer (and between streamed chunks).
    #[arg(long, env = "AIRLOCK_UPSTREAM_TIMEOUT", default_value_t = 300)]
    pub upstream_timeout: u64,
    /// Milliseconds between checks of the policy source for changes.
    #[arg(long, env = "AIRLOCK_RELOAD_INTERVAL_MS", default_value_t = 2000)]
    pub reload_interval_ms: u64,
    /// Directory of HTTP forwarder bearer tokens (`<dir>/<secret>/<key>`).
    #[arg(long, env = "AIRLOCK_FORWARDER_TOKEN_DIR")]
    pub token_dir: Option<PathBuf>,
    /// Seconds open connections get to finish after SIGTERM.
    #[arg(long, env = "AIRLOCK_DRAIN_SECONDS", default_value_t = 20)]
    pub drain_seconds: u64,
}

/// Runs the proxy until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<()> {
    let enforce = args.mode == RunMode::Enforce;
    let source = match &args.policy_dir {
        Some(dir) => PolicySource::Bundle(dir.clone()),
        None => PolicySource::Profile(args.profile.clone()),
    };
    let (set, bytes) = source.load(enforce)?;
    let routes = Routes::new(&args.upstream, &args.routes, args.azure_endpoint.as_deref())?;
    let mut settings = Settings::new(routes);
    settings.force_audit = !enforce;
    settings.failure_mode = args.failure_mode.map(|m| match m {
        RunFailureMode::FailOpen => FailureMode::FailOpen,
        RunFailureMode::FailClosed => FailureMode::FailClosed,
    });
    settings.upstream_timeout = Duration::from_secs(args.upstream_timeout.max(1));
    settings.token_dir = args.token_dir.clone();
    settings.pod = PodInfo {
        name: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()),
        namespace: std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()),
        ip: std::env::var("POD_IP").ok().and_then(|s| s.parse().ok()),
        service_account: std::env::var("POD_SERVICE_ACCOUNT")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let inbound = match args.inbound_mode {
        InboundMode::Disabled => None,
        _ if args.inbound_ports.is_empty() => {
            return Err(Error::Config {
                name: "AIRLOCK_INBOUND_PORTS",
                message: "inbound interception needs the model server's ports".into(),
            });
        }
        _ => Some(InboundTarget {
            ports: args.inbound_ports.clone(),
        }),
    };
    if !args.outbound && inbound.is_none() {
        return Err(Error::Config {
            name: "AIRLOCK_OUTBOUND",
            message: "neither the outbound nor the inbound listener is enabled; nothing to do".into(),
        });
    }
    let client = build_client(args.upstream_ca.as_deref())?;
    let active = Active::new(set, None, settings.token_dir.as_deref())?;
    let log = ThreatLog::spawn(Box::new(std::io::stdout()));
    tracing::info!(
        profile = %active.set.default.name,
        instance = %active.set.instance,
        enforce = active.set.enforce && enforce,
        "policy loaded"
    );
    let proxy = Arc::new(Proxy::new(active, client, settings, log));

    let ready = Arc::new(Readiness::default());
    let admin_listener = admin::bind(args.admin).await?;
    let refresh_proxy = proxy.clone();
    let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let dropped = i64::try_from(refresh_proxy.dropped_log_entries()).unwrap_or(i64::MAX);
        refresh_proxy.metrics.forwarder_dropped.set(dropped);
    });
    tokio::spawn(admin::serve(
        admin_listener,
        proxy.metrics.clone(),
        ready.clone(),
        refresh,
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain = Duration::from_secs(args.drain_seconds);
    let mut tasks = Vec::new();
    if args.outbound {
        let listener = serve::bind(args.listen).await?;
        tracing::info!(listen = %args.listen, "outbound proxy listening");
        tasks.push(tokio::spawn(serve::serve(
            proxy.clone(),
            listener,
            Listener::Outbound,
            None,
            stopped(stop_rx.clone()),
            drain,
        )));
    }
    if let Some(target) = inbound {
        let listener = serve::bind(args.inbound_listen).await?;
        tracing::info!(listen = %args.inbound_listen, ports = ?target.ports, "inbound proxy listening");
        tasks.push(tokio::spawn(serve::serve(
            proxy.clone(),
            listener,
            Listener::Inbound,
            Some(target),
            stopped(stop_rx.clone()),
            drain,
        )));
    }
    let watcher = tokio::spawn(reload::watch(
        proxy.clone(),
        source,
        bytes,
        enforce,
        Duration::from_millis(args.reload_interval_ms.max(100)),
    ));
    ready.set(true);

    shutdown_signal().await;
    tracing::info!(
        "shutting down: no new connections, open ones get {}s",
        drain.as_secs()
    );
    ready.set(false);
    watcher.abort();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
