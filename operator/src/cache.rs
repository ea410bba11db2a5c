//! Watches that feed the index: pods (converted to their lean form on arrival), namespace labels and
//! address groups (also kept in a reflector store for their status and metadata).
//!
//! Every replica runs these, leader or not, so a standby takes over with warm caches. Watches back off
//! and resume after errors (an API server restart, a 410 Gone); a re-list replaces the index's pods so
//! deletions missed while disconnected are applied, and nothing else is lost.

use std::sync::Arc;

use airlock_crds::DynamicAddressGroup;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::Context;
use crate::index::{LeanPod, WatchedPod};

/// Which watches have completed their initial list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Pods listed.
    pub pods: bool,
    /// Namespaces listed.
    pub namespaces: bool,
    /// Address groups listed.
    pub groups: bool,
}

impl Synced {
    /// All initial lists are done.
    pub fn all(&self) -> bool {
        self.pods && self.namespaces && self.groups
    }
}

/// Watches pods into the index until the stream ends (never, in practice).
pub async fn watch_pods(ctx: Arc<Context>, synced: watch::Sender<Synced>) {
    // Pods are read lean (`WatchedPod`): a list page or event never builds the fields the index drops.
    let api: Api<WatchedPod> = Api::all(ctx.client.clone());
    // Pages of 100 pods: a page's JSON is held whole while it is read, and what the process's peak takes
    // glibc keeps (at 2,000 pods, 500 per page cost 5.5 KiB of RSS per cached pod, 100 cost 4.3 KiB). A
    // list of 10,000 pods is then 100 requests, served from the API server's watch cache.
    let config = watcher::Config::default().page_size(100);
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut relist: Vec<(String, LeanPod)> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => {
                if let Some(lean) = LeanPod::from_pod(&pod.0) {
                    let namespace = pod.namespace().unwrap_or_default();
                    ctx.index_write().apply_pod(&namespace, lean);
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let namespace = pod.namespace().unwrap_or_default();
                ctx.index_write().delete_pod(&namespace, &pod.name_any());
            }
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(lean) = LeanPod::from_pod(&pod.0) {
                    relist.push((pod.namespace().unwrap_or_default(), lean));
                }
            }
            Ok(watcher::Event::InitDone) => {
                ctx.index_write().replace_pods(std::mem::take(&mut relist));
                synced.send_modify(|s| s.pods = true);
                tracing::info!(pods = ctx.index_read().pod_count(), "pods listed");
            }
            Err(error) => {
                ctx.metrics.watch_restart("pods");
                tracing::warn!(%error, "pod watch failed; resuming with backoff");
                continue;
            }
        }
        changed(&ctx);
    }
}

/// Watches namespace labels into the index.
pub async fn watch_namespaces(ctx: Arc<Context>, synced: watch::Sender<Synced>) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listed: Vec<String> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns)) => {
                let name = ns.name_any();
                ctx.index_write()
                    .apply_namespace(&name, ns.metadata.labels.clone().unwrap_or_default());
                listed.push(name);
            }
            Ok(watcher::Event::Delete(ns)) => ctx.index_write().delete_namespace(&ns.name_any()),
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitDone) => {
                let mut index = ctx.index_write();
                let known: Vec<String> = index.namespaces().map(|(n, _)| n.to_owned()).collect();
                for name in known.iter().filter(|n| !listed.contains(n)) {
                    index.delete_namespace(name);
                }
                drop(index);
                listed.clear();
                synced.send_modify(|s| s.namespaces = true);
            }
            Err(error) => {
                ctx.metrics.watch_restart("namespaces");
                tracing::warn!(%error, "namespace watch failed; resuming with backoff");
                continue;
            }
        }
        changed(&ctx);
    }
}

/// Watches address groups into the reflector store and the index.
pub async fn watch_groups(
    ctx: Arc<Context>,
    writer: reflector::store::Writer<DynamicAddressGroup>,
    synced: watch::Sender<Synced>,
) {
    let api: Api<DynamicAddressGroup> = Api::all(ctx.client.clone());
    let mut stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(group) | watcher::Event::InitApply(group)) => {
                let name = group.name_any();
                let mut index = ctx.index_write();
                index.apply_group(&name, &group.spec);
                // A new generation needs a status write even when the membership is the same.
                let observed = group.status.as_ref().and_then(|s| s.observed_generation);
                if observed != group.metadata.generation {
                    index.mark_dirty(&name);
                }
            }
            Ok(watcher::Event::Delete(group)) => {
                let name = group.name_any();
                ctx.index_write().delete_group(&name);
                ctx.metrics.forget_group(&name);
            }
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                let mut index = ctx.index_write();
                let gone: Vec<String> = index
                    .group_names()
                    .filter(|name| ctx.stores.groups.get(&ObjectRef::new(name)).is_none())
                    .map(str::to_owned)
                    .collect();
                for name in gone {
                    index.delete_group(&name);
                    ctx.metrics.forget_group(&name);
                }
                drop(index);
                synced.send_modify(|s| s.groups = true);
            }
            Err(error) => {
                ctx.metrics.watch_restart("dynamicaddressgroups");
                tracing::warn!(%error, "address group watch failed; resuming with backoff");
                continue;
            }
        }
        changed(&ctx);
    }
}

/// Tells the writers that the index may have changed.
fn changed(ctx: &Context) {
    let (dirty, revision, pods) = {
        let index = ctx.index_read();
        (index.has_dirty_groups(), index.revision(), index.pod_count())
    };
    if dirty {
        ctx.groups_dirty.notify_one();
    }
    ctx.metrics.cached_pods(pods);
    ctx.index_revision.send_if_modified(|seen| {
        let modified = *seen != revision;
        *seen = revision;
        modified
    });
}
