//! The Airlock operator: turns `AISecurityProfile`, `AIRuntimeInstance` and `DynamicAddressGroup` objects into
//! a running security posture and reports, in their status, what is protected and what is not.
//!
//! Reconcilers follow one pipeline (observe → validate → build → apply → status); the steps that need no
//! client are plain functions in [`controllers`].

pub mod certs;
pub mod controllers;
pub mod error;
pub mod index;
pub mod metrics;
pub mod policy;
pub mod profile;
pub mod webhooks;

pub use error::{Error, Result};

/// Shared state of the running operator (placeholder until `run` is wired).
pub struct Context {
    /// API client.
    pub client: kube::Client,
    index: std::sync::RwLock<index::Index>,
    /// Woken when an address group's membership changed.
    pub groups_dirty: tokio::sync::Notify,
    /// Metrics.
    pub metrics: std::sync::Arc<metrics::Metrics>,
    /// Reflector stores.
    pub stores: Stores,
}

/// Reflector stores shared by the controllers.
pub struct Stores {
    /// Address groups.
    pub groups: kube::runtime::reflector::Store<airlock_crds::DynamicAddressGroup>,
}

impl Context {
    /// Reads the index.
    pub fn index_read(&self) -> std::sync::RwLockReadGuard<'_, index::Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the index.
    pub fn index_write(&self) -> std::sync::RwLockWriteGuard<'_, index::Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
    pub admin_addr: std::net::SocketAddr,

    /// Log format.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = airlock_core::telemetry::LogFormat::Json)]
    pub log_format: airlock_core::telemetry::LogFormat,
}

/// Runs the operator until it is asked to stop.
///
/// TODO(issue 4): controllers, address groups, coverage, policy delivery, certificates, leader election.
/// Until then the operator only reports that it started, so images and charts can be wired up.
pub async fn run(args: Args) -> Result<()> {
    tracing::info!(namespace = %args.namespace, admin = %args.admin_addr, "airlock-operator starting");
    tracing::warn!("controllers are not implemented yet (issue 4); exiting");
    Ok(())
}
