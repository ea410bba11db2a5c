//! The Airlock operator: turns `AISecurityProfile`, `AIRuntimeInstance` and `DynamicAddressGroup` objects into
//! a running security posture and reports, in their status, what is protected and what is not.
//!
//! Reconcilers follow one pipeline (observe → validate → build → apply → status); the steps that need no
//! client are plain functions in [`controllers`].

pub mod admin;
pub mod cache;
pub mod certs;
pub mod controllers;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod profile;
pub mod webhooks;

pub use error::{Error, Result};

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use airlock_crds::DynamicAddressGroup;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use tokio::sync::{Notify, watch};

use crate::cache::Synced;
use crate::index::Index;
use crate::metrics::Metrics;

/// How the webhook's serving certificate is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertificateMode {
    /// The operator generates a CA and serving certificate, stores them in the Secret and rotates them.
    Operator,
    /// Something else (cert-manager) writes the Secret; the operator only copies its `ca.crt` into the
    /// webhook configurations' `caBundle`.
    External,
}

/// Command-line flags, each with an environment fallback.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "airlock-operator", version, about)]
pub struct Args {
    /// Namespace Airlock runs in (its Secrets, Leases and webhook Service live here).
    #[arg(long, env = "AIRLOCK_NAMESPACE", default_value = "airlock-system")]
    pub namespace: String,

    /// Address of the admin server (`/live`, `/ready`, `/metrics`).
    #[arg(long, env = "AIRLOCK_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = airlock_core::telemetry::LogFormat::Json)]
    pub log_format: airlock_core::telemetry::LogFormat,

    /// This replica's identity in the leader lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Name of the `coordination.k8s.io` Lease the replicas elect a leader with.
    #[arg(long, env = "AIRLOCK_LEASE_NAME", default_value = "airlock-operator")]
    pub lease_name: String,

    /// Seconds a leader's lease stays valid without renewal; a standby takes over at most this long
    /// after the leader dies.
    #[arg(long, env = "AIRLOCK_LEASE_DURATION", default_value_t = 8)]
    pub lease_duration: u64,

    /// Seconds before expiry at which the leader renews its lease.
    #[arg(long, env = "AIRLOCK_LEASE_GRACE", default_value_t = 3)]
    pub lease_grace: u64,

    /// Name of the webhook's Service (the webhook configurations point at it).
    #[arg(long, env = "AIRLOCK_WEBHOOK_SERVICE", default_value = "airlock-webhook")]
    pub webhook_service: String,

    /// Port of the webhook's Service.
    #[arg(long, env = "AIRLOCK_WEBHOOK_PORT", default_value_t = 443)]
    pub webhook_port: i32,

    /// Base URL of a webhook running outside the cluster (development only): the configurations use
    /// `url` instead of the Service.
    #[arg(long, env = "AIRLOCK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// `failurePolicy` of the sidecar-injection webhook. `Ignore` (the default) lets pods start while the
    /// webhook is unreachable; they run without the sidecar and are reported as drift.
    #[arg(long, env = "AIRLOCK_MUTATE_FAILURE_POLICY", value_enum, default_value_t = webhooks::FailurePolicy::Ignore)]
    pub mutate_failure_policy: webhooks::FailurePolicy,

    /// `failurePolicy` of the validating webhooks. `Fail` (the default) keeps unprotected model servers
    /// out while the webhook is unreachable.
    #[arg(long, env = "AIRLOCK_VALIDATE_FAILURE_POLICY", value_enum, default_value_t = webhooks::FailurePolicy::Fail)]
    pub validate_failure_policy: webhooks::FailurePolicy,

    /// `timeoutSeconds` of every webhook (1–30).
    #[arg(long, env = "AIRLOCK_WEBHOOK_TIMEOUT_SECONDS", default_value_t = webhooks::WebhookConfig::DEFAULT_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout_seconds: i32,

    /// The ClusterRole (installed with the operator) that owns the webhook configurations: deleting it, as
    /// `helm uninstall` does, makes the garbage collector delete them, and the operator never recreates
    /// them while it is gone. Without it the configurations have no owner.
    #[arg(long, env = "AIRLOCK_OWNER_CLUSTER_ROLE")]
    pub owner_cluster_role: Option<String>,

    /// The `ValidatingAdmissionPolicy` backstop (installed by the chart) whose binding, of the same name,
    /// the operator writes: it stands aside in the namespaces where an instance exempts a workload or only
    /// audits. Empty: no binding is written.
    #[arg(long, env = "AIRLOCK_BACKSTOP_POLICY", default_value = "airlock-backstop")]
    pub backstop_policy: String,

    /// Whether the operator creates and repairs Airlock's webhook configurations.
    #[arg(long, env = "AIRLOCK_MANAGE_WEBHOOKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_webhooks: bool,

    /// Who provides the webhook's serving certificate.
    #[arg(long, env = "AIRLOCK_CERTIFICATES", value_enum, default_value_t = CertificateMode::Operator)]
    pub certificates: CertificateMode,

    /// The Secret (in `--namespace`) holding the webhook's certificate.
    #[arg(long, env = "AIRLOCK_WEBHOOK_SECRET", default_value = "airlock-webhook-tls")]
    pub webhook_secret: String,

    /// Extra subject alternative names for the serving certificate (IP addresses or DNS names).
    #[arg(
        long = "cert-extra-san",
        env = "AIRLOCK_CERT_EXTRA_SANS",
        value_delimiter = ','
    )]
    pub cert_extra_sans: Vec<String>,

    /// Lifetime of a generated serving certificate, in hours (renewed at two thirds of it).
    #[arg(long, env = "AIRLOCK_CERT_VALIDITY_HOURS", default_value_t = 24 * 90)]
    pub cert_validity_hours: u64,

    /// How long the previous CA stays in `caBundle` after a CA rotation, in seconds: longer than it takes
    /// the kubelet to refresh the mounted Secret (about a minute) plus the webhook's reload (5 s).
    #[arg(long, env = "AIRLOCK_CA_OVERLAP_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub ca_overlap_seconds: u32,

    /// Development only: also write `tls.crt` and `tls.key` to this directory, for a webhook that runs
    /// outside the cluster and cannot mount the Secret.
    #[arg(long, env = "AIRLOCK_CERT_DIR")]
    pub cert_dir: Option<std::path::PathBuf>,

    /// Sidecar image the webhook injects when an `AIRuntimeInstance` names none; pods running another
    /// image are reported as drift. Give the webhook the same value. Default: Airlock's image at this
    /// version.
    #[arg(
        long,
        env = "AIRLOCK_SIDECAR_IMAGE",
        default_value_t = airlock_webhook::mutate::default_sidecar_image(),
        value_parser = airlock_webhook::mutate::parse_image
    )]
    pub sidecar_image: String,
}

/// The state every task of the running operator shares.
pub struct Context {
    /// API client.
    pub client: Client,
    index: RwLock<Index>,
    /// Woken when an address group's membership changed.
    pub groups_dirty: Notify,
    /// The index's revision, published after every change (instances recompute coverage on it).
    pub index_revision: watch::Sender<u64>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Reflector stores.
    pub stores: Stores,
    /// The flags.
    pub args: Args,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
}

/// Reflector stores shared by the controllers.
pub struct Stores {
    /// Address groups.
    pub groups: Store<DynamicAddressGroup>,
}

impl Context {
    /// Reads the index.
    pub fn index_read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the index.
    pub fn index_write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
impl Context {
    /// A context around `client` (a mocked API server) with the default flags, an empty index and
    /// `groups` as the address-group cache.
    pub(crate) fn for_tests(client: Client, groups: Store<DynamicAddressGroup>) -> Context {
        use clap::Parser as _;
        let args = Args::try_parse_from(["airlock-operator"]).expect("the default flags parse");
        let reporter = Reporter {
            controller: "airlock-operator".into(),
            instance: Some("test".into()),
        };
        Context {
            client: client.clone(),
            index: RwLock::new(Index::new()),
            groups_dirty: Notify::new(),
            index_revision: watch::channel(0).0,
            metrics: Arc::new(Metrics::new()),
            stores: Stores { groups },
            args,
            recorder: Recorder::new(client, reporter),
        }
    }
}

/// Runs the operator until SIGTERM or Ctrl-C.
///
/// Every replica watches pods, namespaces and address groups (so a standby has warm caches); the one
/// holding the lease also runs the controllers and writers.
pub async fn run(args: Args) -> Result<()> {
    let client = Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    tracing::info!(namespace = %args.namespace, %identity, admin = %args.admin_addr, "airlock-operator starting");
    let metrics = Arc::new(Metrics::new());
    let (groups_store, groups_writer) = reflector::store();
    let (revision_tx, _) = watch::channel(0);
    let reporter = Reporter {
        controller: "airlock-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        index: RwLock::new(Index::new()),
        groups_dirty: Notify::new(),
        index_revision: revision_tx,
        metrics: metrics.clone(),
        stores: Stores { groups: groups_store },
        args: args.clone(),
        recorder: Recorder::new(client.clone(), reporter),
    });
    let (synced_tx, synced_rx) = watch::channel(Synced::default());
    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|source| Error::Serve {
            what: "admin",
            source,
        })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin::serve(listener, synced_rx.clone(), metrics.clone(), {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }));
    tasks.spawn(cache::watch_pods(ctx.clone(), synced_tx.clone()));
    tasks.spawn(cache::watch_namespaces(ctx.clone(), synced_tx.clone()));
    tasks.spawn(cache::watch_groups(ctx.clone(), groups_writer, synced_tx));
    let mut elect = tokio::spawn(leader::run(ctx.clone(), identity, synced_rx, stop_rx));
    let result = tokio::select! {
        joined = &mut elect => joined.unwrap_or_else(|e| Err(Error::Lease(e.to_string()))),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            // Give the lease back so a standby takes over at once instead of after the lease expires.
            match tokio::time::timeout(std::time::Duration::from_secs(5), &mut elect).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(Error::Lease(e.to_string())),
                Err(_) => Ok(()),
            }
        }
    };
    let _ = stop_tx.send(true);
    tasks.abort_all();
    result
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "airlock-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
