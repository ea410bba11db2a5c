//! [`KubeView`]: the [`ClusterView`] the review handler reads, kept current by watches of
//! `AIRuntimeInstance`s, `AISecurityProfile`s and namespaces (metadata only: labels are all the handler
//! needs, and full namespace objects would cost memory for nothing).
//!
//! Watch failures are retried with backoff for as long as the process runs; the stores keep their last
//! known state meanwhile, so an API-server blip never stops admission.
//!
//! A watch trails the API server by a few milliseconds, and `kubectl apply -f dir/` creates a profile and
//! the instance that uses it (or a namespace and its pods) back to back. So a cache *miss* for a profile
//! or a namespace is confirmed with one direct read (bounded by [`LIVE_READ_TIMEOUT`]) before the handler
//! acts on it; hits, the common case, never leave memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinSet;

use crate::admin::Readiness;
use crate::review::ClusterView;
use crate::{Error, Result};

/// The webhook's caches of the cluster.
#[derive(Clone)]
pub struct KubeView {
    instances: Store<AIRuntimeInstance>,
    profiles: Store<AISecurityProfile>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    version: (u32, u32),
    readiness: Readiness,
    client: Client,
    sidecar_image: String,
}

/// Longest a cache miss may wait for its confirming read.
pub const LIVE_READ_TIMEOUT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for KubeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeView")
            .field("instances", &self.instances.len())
            .field("profiles", &self.profiles.len())
            .field("namespaces", &self.namespaces.len())
            .field("version", &self.version)
            .finish()
    }
}

impl KubeView {
    /// Fetches the API server's version and starts the three watches on `tasks`; `readiness` is set
    /// once every store has received its initial list.
    /// `sidecar_image` is injected when an instance names no image.
    pub async fn start(
        client: Client,
        readiness: Readiness,
        sidecar_image: String,
        tasks: &mut JoinSet<()>,
    ) -> Result<Self> {
        let info = client.apiserver_version().await.map_err(Error::Kube)?;
        let version = (parse_version(&info.major), parse_version(&info.minor));
        tracing::info!(major = %info.major, minor = %info.minor, "API server version");

        let (instances, writer) = reflector::store();
        let stream = watcher(
            Api::<AIRuntimeInstance>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer);
        tasks.spawn(drain("AIRuntimeInstance", stream));

        let (profiles, writer) = reflector::store();
        let stream = watcher(
            Api::<AISecurityProfile>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer);
        tasks.spawn(drain("AISecurityProfile", stream));

        let (namespaces, writer) = reflector::store();
        // `PartialObjectMeta` makes the watch ask for metadata only.
        let stream = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer);
        tasks.spawn(drain("Namespace", stream));

        let view = KubeView {
            sidecar_image,
            instances,
            profiles,
            namespaces,
            version,
            readiness,
            client,
        };
        let synced = view.clone();
        tasks.spawn(async move {
            let all = futures::future::try_join3(
                synced.instances.wait_until_ready(),
                synced.profiles.wait_until_ready(),
                synced.namespaces.wait_until_ready(),
            );
            if all.await.is_ok() {
                tracing::info!("caches synced; ready");
                synced.readiness.set(true);
            }
        });
        Ok(view)
    }

    /// Confirms a cache miss with a direct read. The handler is synchronous, so this blocks its worker
    /// thread (never the runtime: `block_in_place`) for at most [`LIVE_READ_TIMEOUT`]; outside a
    /// multi-threaded runtime it does not read and the miss stands.
    fn live_read<T, F>(&self, read: F) -> Option<T>
    where
        F: std::future::Future<Output = kube::Result<Option<T>>>,
    {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None;
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                match tokio::time::timeout(LIVE_READ_TIMEOUT, read).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "confirming a cache miss failed");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("confirming a cache miss timed out");
                        None
                    }
                }
            })
        })
    }

    /// Whether every cache has received its initial list.
    pub fn ready(&self) -> bool {
        self.readiness.is_ready()
    }
}

/// Runs a reflector stream for ever, logging the errors it recovers from.
async fn drain<S, T>(kind: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if let Err(error) = event {
            tracing::warn!(kind, %error, "watch failed; retrying with backoff");
        }
    }
    tracing::error!(
        kind,
        "watch stream ended; the cache no longer follows the cluster"
    );
}

/// The leading number of a version component: managed clusters report minors like `29+`.
fn parse_version(component: &str) -> u32 {
    let digits: String = component.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

impl ClusterView for KubeView {
    fn instances(&self) -> Vec<Arc<AIRuntimeInstance>> {
        self.instances.state()
    }

    fn profile(&self, name: &str) -> Option<Arc<AISecurityProfile>> {
        if let Some(profile) = self.profiles.get(&ObjectRef::new(name)) {
            return Some(profile);
        }
        let api = Api::<AISecurityProfile>::all(self.client.clone());
        self.live_read(api.get_opt(name)).map(Arc::new)
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let labels = |ns: &PartialObjectMeta<Namespace>| ns.metadata.labels.clone().unwrap_or_default();
        if let Some(ns) = self.namespaces.get(&ObjectRef::new(namespace)) {
            return Some(labels(&ns));
        }
        let api = Api::<Namespace>::all(self.client.clone());
        self.live_read(api.get_metadata_opt(namespace))
            .map(|ns| labels(&ns))
    }

    fn server_version(&self) -> (u32, u32) {
        self.version
    }

    fn default_sidecar_image(&self) -> String {
        self.sidecar_image.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn version_components_keep_their_leading_number() {
        assert_eq!(parse_version("37"), 37);
        assert_eq!(parse_version("29+"), 29);
        assert_eq!(parse_version(""), 0);
        assert_eq!(parse_version("x"), 0);
    }
}
