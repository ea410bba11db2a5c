//! Feeds the `ValidatingAdmissionPolicy` backstop (`airlock-backstop`, installed by the Helm chart).
//!
//! The backstop denies model-server pods that lack the `airlock-sidecar` even when the webhook cannot
//! be reached. It cannot read `AIRuntimeInstance`s, so what would make the webhook admit such a pod
//! reaches it through a ConfigMap (its `paramRef`): one key per namespace where an unexpired exemption
//! names a workload, or that an `audit`-mode instance selects (audit never rejects). In such a namespace
//! the backstop stands aside and the webhook alone decides, precisely, which workloads may run.
//!
//! The ConfigMap is written with server-side apply; only `data` is the operator's (the chart owns the
//! object and its labels). It is rewritten when instances change and when an exemption expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use airlock_crds::AIRuntimeInstance;
use airlock_crds::v1alpha1::Mode;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

use super::coverage::namespace_selected;
use super::group::FIELD_MANAGER;
use crate::Context;

/// Longest wait between two writes' checks when nothing happens (a deleted ConfigMap comes back).
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// Wait after a failed write.
const RETRY: Duration = Duration::from_secs(2);
/// Coalesces a burst of changes into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// When an exemption's `expires` falls, if it has one.
fn expiry(expires: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<SystemTime> {
    let t = expires?;
    let seconds = t.0.as_second();
    Some(if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    })
}

/// The ConfigMap's data at `now`: each namespace with an unexpired exemption or selected by an audit
/// instance, mapped to why (`Kind/name by instance`, `audited by instance`; sorted, for people reading
/// it — the policy only tests the key). `namespaces` are the cluster's namespaces with their labels.
/// Also returns when the next exemption expires, so the data can be rewritten then.
pub fn exempt_namespaces(
    instances: &[Arc<AIRuntimeInstance>],
    namespaces: &[(&str, &BTreeMap<String, String>)],
    now: SystemTime,
) -> (BTreeMap<String, String>, Option<SystemTime>) {
    let mut by_namespace: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut next = None::<SystemTime>;
    for instance in instances {
        if instance.spec.mode == Mode::Audit {
            for &(namespace, labels) in namespaces {
                if namespace_selected(instance, namespace, labels) {
                    by_namespace
                        .entry(namespace.to_owned())
                        .or_default()
                        .push(format!("audited by {}", instance.name_any()));
                }
            }
        }
        for exemption in &instance.spec.exemptions {
            let ends = expiry(exemption.expires.as_ref());
            if ends.is_some_and(|ends| ends <= now) {
                continue;
            }
            if let Some(ends) = ends {
                next = Some(next.map_or(ends, |n| n.min(ends)));
            }
            by_namespace
                .entry(exemption.namespace.clone())
                .or_default()
                .push(format!(
                    "{:?}/{} by {}",
                    exemption.kind,
                    exemption.name,
                    instance.name_any()
                ));
        }
    }
    let data = by_namespace
        .into_iter()
        .map(|(namespace, mut workloads)| {
            workloads.sort();
            workloads.dedup();
            (namespace, workloads.join(", "))
        })
        .collect();
    (data, next)
}

/// The object applied: name, namespace and data only.
pub fn desired(name: &str, namespace: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Runs until aborted (leader only).
pub async fn run(ctx: Arc<Context>) {
    let name = ctx.args.backstop_exemptions.clone();
    if name.is_empty() {
        return;
    }
    let (store, writer) = reflector::store::<AIRuntimeInstance>();
    let instances: Api<AIRuntimeInstance> = Api::all(ctx.client.clone());
    let mut events = Box::pin(
        watcher(instances, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects(),
    );
    // The store fills only while the stream is polled.
    loop {
        tokio::select! {
            ready = store.wait_until_ready() => {
                if ready.is_err() {
                    return;
                }
                break;
            }
            event = events.next() => {
                if event.is_none() {
                    return;
                }
            }
        }
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.args.namespace);
    let mut written: Option<BTreeMap<String, String>> = None;
    // Namespace labels come from the shared index; its revision moves on every change.
    let mut revision = ctx.index_revision.subscribe();
    let mut last_write: Option<Instant> = None;
    loop {
        let (data, next_expiry) = {
            let index = ctx.index_read();
            let namespaces: Vec<_> = index.namespaces().collect();
            exempt_namespaces(&store.state(), &namespaces, SystemTime::now())
        };
        let mut wait = IDLE_CHECK;
        // Unchanged data is re-applied only now and then, which also brings back a deleted ConfigMap.
        if written.as_ref() != Some(&data) || last_write.is_none_or(|at| at.elapsed() >= IDLE_CHECK) {
            let started = Instant::now();
            let patch = Patch::Apply(desired(&name, &ctx.args.namespace, data.clone()));
            match api
                .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
                .await
            {
                Ok(_) => {
                    if written.as_ref() != Some(&data) {
                        tracing::info!(configmap = %name, namespaces = data.len(),
                            "backstop exemptions updated");
                    }
                    written = Some(data);
                    last_write = Some(Instant::now());
                    ctx.metrics.reconciled("backstop", started.elapsed());
                }
                Err(error) => {
                    ctx.metrics.reconcile_failure("backstop", "api");
                    tracing::warn!(%error, configmap = %name, "could not write the backstop exemptions; retrying");
                    wait = RETRY;
                }
            }
        }
        if let Some(at) = next_expiry {
            let until = at.duration_since(SystemTime::now()).unwrap_or_default();
            wait = wait.min(until + Duration::from_millis(10));
        }
        tokio::select! {
            event = events.next() => {
                if event.is_none() {
                    return;
                }
                // Let a burst settle, draining what arrived meanwhile.
                tokio::time::sleep(DEBOUNCE).await;
            }
            changed = revision.changed() => {
                if changed.is_err() {
                    return;
                }
                // Pod churn moves the revision too; recomputing is cheap and writes happen only on change.
                tokio::time::sleep(DEBOUNCE).await;
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, exemptions: serde_json::Value) -> Arc<AIRuntimeInstance> {
        instance_in(name, "enforce", serde_json::json!({}), exemptions)
    }

    fn instance_in(
        name: &str,
        mode: &str,
        namespace_selector: serde_json::Value,
        exemptions: serde_json::Value,
    ) -> Arc<AIRuntimeInstance> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance",
                "metadata": { "name": name },
                "spec": {
                    "selector": { "namespaceSelector": namespace_selector },
                    "profileRef": { "name": "strict" },
                    "mode": mode,
                    "exemptions": exemptions
                }
            }))
            .expect("instance literal"),
        )
    }

    fn at(rfc3339: &str) -> SystemTime {
        let t: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
            serde_json::from_value(serde_json::json!(rfc3339)).expect("time");
        expiry(Some(&t)).expect("expiry")
    }

    #[test]
    fn namespaces_with_unexpired_exemptions_are_listed_once() {
        let instances = vec![
            instance(
                "models",
                serde_json::json!([
                    { "namespace": "ml", "kind": "Deployment", "name": "embedder", "reason": "vendor" },
                    { "namespace": "ml", "kind": "Pod", "name": "debug", "reason": "debugging",
                      "expires": "2026-01-01T00:00:00Z" },
                    { "namespace": "old", "kind": "Pod", "name": "x", "reason": "gone",
                      "expires": "2025-01-01T00:00:00Z" }
                ]),
            ),
            instance(
                "apps",
                serde_json::json!([{ "namespace": "ml", "kind": "StatefulSet", "name": "tgi", "reason": "r" }]),
            ),
        ];
        let none = BTreeMap::new();
        let (data, next) = exempt_namespaces(&instances, &[("ml", &none)], at("2025-06-01T00:00:00Z"));
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["ml"],
            "expired exemptions do not count"
        );
        assert_eq!(
            data["ml"],
            "Deployment/embedder by models, Pod/debug by models, StatefulSet/tgi by apps"
        );
        assert_eq!(
            next,
            Some(at("2026-01-01T00:00:00Z")),
            "rewritten when the next one expires"
        );

        let (data, next) = exempt_namespaces(&instances, &[("ml", &none)], at("2026-01-01T00:00:00Z"));
        assert_eq!(
            data["ml"],
            "Deployment/embedder by models, StatefulSet/tgi by apps"
        );
        assert_eq!(next, None);
    }

    #[test]
    fn no_exemptions_means_empty_data_which_clears_old_keys() {
        let labels = BTreeMap::new();
        let (data, next) = exempt_namespaces(
            &[instance("a", serde_json::json!([]))],
            &[("ml", &labels)],
            SystemTime::now(),
        );
        assert!(data.is_empty());
        assert_eq!(next, None);
        let applied = serde_json::to_value(desired("airlock-backstop-exemptions", "airlock-system", data))
            .expect("serialise");
        // An empty map (not an absent one) is what makes server-side apply drop the keys written before.
        assert_eq!(applied["data"], serde_json::json!({}));
        assert_eq!(applied["metadata"].as_object().map(|m| m.len()), Some(2));
    }

    #[test]
    fn namespaces_an_audit_instance_selects_are_listed_but_never_system_ones() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let watched = labels(&[("team", "ml")]);
        let other = labels(&[("team", "web")]);
        let instances = [
            instance_in(
                "observe",
                "audit",
                serde_json::json!({ "matchLabels": { "team": "ml" } }),
                serde_json::json!([]),
            ),
            instance_in(
                "everything",
                "audit",
                serde_json::json!({}),
                serde_json::json!([]),
            ),
            instance_in(
                "enforced",
                "enforce",
                serde_json::json!({}),
                serde_json::json!([]),
            ),
        ];
        let (data, _) = exempt_namespaces(
            &instances[..1],
            &[("ml", &watched), ("web", &other)],
            SystemTime::now(),
        );
        assert_eq!(
            data.into_iter().collect::<Vec<_>>(),
            [("ml".to_owned(), "audited by observe".to_owned())]
        );
        let (data, _) = exempt_namespaces(
            &instances[1..],
            &[
                ("kube-system", &other),
                ("airlock-system", &other),
                ("web", &other),
            ],
            SystemTime::now(),
        );
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["web"],
            "enforce instances add nothing"
        );
    }
}
