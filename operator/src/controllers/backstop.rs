//! Keeps the binding of the `ValidatingAdmissionPolicy` backstop (`airlock-backstop`, installed by the
//! Helm chart).
//!
//! The backstop denies model-server pods that lack the `airlock-sidecar` even when the webhook cannot
//! be reached. It cannot read `AIRuntimeInstance`s, so it must stand aside where the webhook would admit
//! such a pod: in every namespace where an unexpired exemption names a workload, or that an `audit`-mode
//! instance selects (audit never rejects). There the webhook alone decides, precisely, which workloads
//! may run.
//!
//! The operator owns the policy's binding, of the same name, and excludes those namespaces (with
//! `kube-system` and its own) through the binding's `namespaceSelector`; the annotation
//! `airlock.dev/stands-aside` says why, per namespace. The binding's owner is the policy, so removing the
//! policy (`helm uninstall`, `backstop.enabled=false`) removes it; while the policy is missing, no binding
//! is written. A deleted or edited binding is restored within a second or two (an Event and
//! `airlock_operator_webhook_configuration_repairs_total{configuration="airlock-backstop"}`).
//!
//! Why not a `paramRef` ConfigMap, the usual way to feed a policy: the API server stops watching a
//! built-in parameter kind for good once no binding names it for a moment (kubernetes/kubernetes#130887),
//! as during an uninstall and reinstall or a deleted binding; from then on, until it restarts, it
//! evaluates the policy with a frozen copy of the ConfigMap, or none (the backstop disabled). A selector
//! in the binding is read with the binding itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use airlock_crds::AIRuntimeInstance;
use airlock_crds::v1alpha1::Mode;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Notify;

use super::coverage::namespace_selected;
use super::group::FIELD_MANAGER;
use crate::Context;

/// Longest wait between two checks when nothing happens.
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

/// The namespaces the backstop stands aside in at `now`: each namespace with an unexpired exemption or
/// selected by an audit instance, mapped to why (`Kind/name by instance`, `audited by instance`; sorted,
/// for people reading the binding's annotation). `namespaces` are the cluster's namespaces with their
/// labels. Also returns when the next exemption expires, so the binding can be rewritten then.
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

pub use airlock_crds::backstop::STANDS_ASIDE_ANNOTATION;
/// The label key every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The binding the operator applies for `policy`: it never matches `kube-system`, `own_namespace` or a
/// namespace of `stands_aside`, which map namespaces to why (see [`exempt_namespaces`]). `None` when the
/// policy has no name or uid (not read from the API server), since the binding is owned by it.
pub fn desired_binding(
    policy: &ValidatingAdmissionPolicy,
    own_namespace: &str,
    stands_aside: &BTreeMap<String, String>,
) -> Option<ValidatingAdmissionPolicyBinding> {
    let name = policy.metadata.name.clone()?;
    let uid = policy.metadata.uid.clone()?;
    let mut excluded: Vec<String> = ["kube-system", own_namespace]
        .into_iter()
        .map(str::to_owned)
        .chain(stands_aside.keys().cloned())
        .collect();
    excluded.sort();
    excluded.dedup();
    let why = serde_json::to_string(stands_aside).unwrap_or_default();
    Some(ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(STANDS_ASIDE_ANNOTATION.to_owned(), why)])),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "airlock-operator".to_owned(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "admissionregistration.k8s.io/v1".to_owned(),
                kind: "ValidatingAdmissionPolicy".to_owned(),
                name: name.clone(),
                uid,
                block_owner_deletion: None,
                controller: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(name),
            validation_actions: Some(vec!["Deny".to_owned()]),
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: NAMESPACE_NAME_LABEL.to_owned(),
                        operator: "NotIn".to_owned(),
                        values: Some(excluded),
                    }]),
                    match_labels: None,
                }),
                ..MatchResources::default()
            }),
            param_ref: None,
        }),
    })
}

/// How the binding in the cluster, `live`, differs from `desired` in what the operator sets (the API
/// server's defaults aside): `None` when it does not.
pub fn binding_drift(
    live: Option<&ValidatingAdmissionPolicyBinding>,
    desired: &ValidatingAdmissionPolicyBinding,
) -> Option<&'static str> {
    let Some(live) = live else {
        return Some("missing");
    };
    let (Some(spec), Some(want)) = (live.spec.as_ref(), desired.spec.as_ref()) else {
        return Some("changed");
    };
    let matching = spec.match_resources.clone().unwrap_or_default();
    let wanted = want.match_resources.clone().unwrap_or_default();
    let unchanged = spec.policy_name == want.policy_name
        && spec.validation_actions == want.validation_actions
        && spec.param_ref.is_none()
        && matching.namespace_selector == wanted.namespace_selector
        && matching.object_selector.unwrap_or_default() == LabelSelector::default()
        && matching.resource_rules.unwrap_or_default().is_empty()
        && matching.exclude_resource_rules.unwrap_or_default().is_empty()
        && live.metadata.owner_references == desired.metadata.owner_references
        && live.annotations().get(STANDS_ASIDE_ANNOTATION)
            == desired.annotations().get(STANDS_ASIDE_ANNOTATION);
    (!unchanged).then_some("changed")
}

/// Follows the object called `name` into a store, waking `wake` on every event; the store is ready once
/// the first list arrived.
fn follow<K>(api: Api<K>, name: &str, wake: Arc<Notify>) -> (reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(watcher(api, config).default_backoff().reflect(writer));
        while let Some(event) = stream.next().await {
            if event.is_ok() {
                wake.notify_one();
            }
        }
    });
    (store, task)
}

/// Runs until aborted (leader only).
pub async fn run(ctx: Arc<Context>) {
    let name = ctx.args.backstop_policy.clone();
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
    let wake = Arc::new(Notify::new());
    let (policies, policy_watch) =
        follow::<ValidatingAdmissionPolicy>(Api::all(ctx.client.clone()), &name, wake.clone());
    let (bindings, binding_watch) =
        follow::<ValidatingAdmissionPolicyBinding>(Api::all(ctx.client.clone()), &name, wake.clone());
    // Stops the two watches when this task is aborted.
    let _watches = (AbortOnDrop(policy_watch), AbortOnDrop(binding_watch));
    // The instance store fills only while its stream is polled.
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
    if policies.wait_until_ready().await.is_err() || bindings.wait_until_ready().await.is_err() {
        return;
    }
    let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(ctx.client.clone());
    // Namespace labels come from the shared index; its revision moves on every change.
    let mut revision = ctx.index_revision.subscribe();
    // The binding this process applied last: a drift from it that it did not ask for is a repair.
    let mut applied: Option<ValidatingAdmissionPolicyBinding> = None;
    loop {
        let (stands_aside, next_expiry) = {
            let index = ctx.index_read();
            let namespaces: Vec<_> = index.namespaces().collect();
            exempt_namespaces(&store.state(), &namespaces, SystemTime::now())
        };
        let mut wait = IDLE_CHECK;
        let policy = policies.state().into_iter().find(|p| p.name_any() == name);
        let desired = policy.and_then(|p| desired_binding(&p, &ctx.args.namespace, &stands_aside));
        if let Some(desired) = desired {
            let live = bindings.state().into_iter().find(|b| b.name_any() == name);
            if let Some(drift) = binding_drift(live.as_deref(), &desired) {
                let started = Instant::now();
                match write_binding(&api, &desired, live.as_deref(), drift).await {
                    Ok(None) => {}
                    Ok(Some(reason)) => {
                        ctx.metrics.reconciled("backstop", started.elapsed());
                        if applied.as_ref() == Some(&desired) {
                            repaired(&ctx, &name, reason).await;
                        } else {
                            tracing::info!(binding = %name, namespaces = stands_aside.len(),
                                "backstop binding written");
                        }
                        applied = Some(desired);
                    }
                    Err(error) => {
                        ctx.metrics.reconcile_failure("backstop", "api");
                        tracing::warn!(%error, binding = %name, "could not write the backstop's binding; retrying");
                        wait = RETRY;
                    }
                }
            }
        } else {
            // No policy (the backstop is disabled or uninstalled): nothing to bind, and a binding left
            // behind goes with its owner.
            applied = None;
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
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Writes `desired` over `live`, which differs from it by `drift`: created when missing, otherwise replaced
/// whole, so that nothing someone else added survives (server-side apply would keep another manager's
/// entries in a set such as `validationActions`). When `live` was stale (a conflict), the binding is read
/// again and written once more if it still differs. Returns how it differed, or `None` if it no longer did.
async fn write_binding(
    api: &Api<ValidatingAdmissionPolicyBinding>,
    desired: &ValidatingAdmissionPolicyBinding,
    live: Option<&ValidatingAdmissionPolicyBinding>,
    drift: &'static str,
) -> kube::Result<Option<&'static str>> {
    let name = desired.name_any();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let attempt = |live: Option<&ValidatingAdmissionPolicyBinding>| {
        let mut object = desired.clone();
        object.metadata.resource_version = live.and_then(|l| l.metadata.resource_version.clone());
        let exists = live.is_some();
        let (api, name, params) = (api.clone(), name.clone(), params.clone());
        async move {
            if exists {
                api.replace(&name, &params, &object).await
            } else {
                api.create(&params, &object).await
            }
        }
    };
    match attempt(live).await {
        Ok(_) => Ok(Some(drift)),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let fresh = api.get_opt(&name).await?;
            let Some(drift) = binding_drift(fresh.as_ref(), desired) else {
                return Ok(None);
            };
            attempt(fresh.as_ref()).await.map(|_| Some(drift))
        }
        Err(error) => Err(error),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records that someone else's change or deletion of the binding was undone (metric, log, Event).
async fn repaired(ctx: &Context, name: &str, reason: &'static str) {
    tracing::warn!(binding = %name, reason, "restored the backstop's binding");
    super::admission::record_repair::<ValidatingAdmissionPolicyBinding>(
        ctx,
        name,
        reason,
        "BackstopBindingRestored",
        format!(
            "{name} was restored ({reason}); the backstop's binding is managed by the operator, which excludes \
             the namespaces where an AIRuntimeInstance exempts a workload or only audits"
        ),
    )
    .await;
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
    fn no_exemptions_means_no_namespace_to_stand_aside_in() {
        let labels = BTreeMap::new();
        let (data, next) = exempt_namespaces(
            &[instance("a", serde_json::json!([]))],
            &[("ml", &labels)],
            SystemTime::now(),
        );
        assert!(data.is_empty());
        assert_eq!(next, None);
    }

    fn policy(uid: Option<&str>) -> ValidatingAdmissionPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "airlock-backstop", "uid": uid },
            "spec": { "failurePolicy": "Fail" }
        }))
        .expect("policy literal")
    }

    fn stands_aside(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_binding_never_matches_system_namespaces_or_those_the_backstop_stands_aside_in() {
        let why = stands_aside(&[("ml", "Pod/debug by models"), ("kube-system", "audited by all")]);
        let binding = desired_binding(&policy(Some("u-1")), "airlock-system", &why).expect("binding");
        let applied = serde_json::to_value(&binding).expect("serialise");
        assert_eq!(
            applied["spec"],
            serde_json::json!({
                "policyName": "airlock-backstop",
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": { "matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["airlock-system", "kube-system", "ml"]
                }] } }
            }),
            "no paramRef: the API server would freeze a ConfigMap parameter after a reinstall"
        );
        assert_eq!(
            applied["metadata"]["ownerReferences"],
            serde_json::json!([{
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "name": "airlock-backstop", "uid": "u-1"
            }]),
            "removed with its policy"
        );
        let annotation = &binding.annotations()[STANDS_ASIDE_ANNOTATION];
        let read: BTreeMap<String, String> = serde_json::from_str(annotation).expect("annotation is JSON");
        assert_eq!(read, why);

        let none =
            desired_binding(&policy(Some("u-1")), "airlock-system", &BTreeMap::new()).expect("binding");
        assert_eq!(
            serde_json::to_value(&none).expect("serialise")["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
                [0]["values"],
            serde_json::json!(["airlock-system", "kube-system"])
        );
        assert_eq!(none.annotations()[STANDS_ASIDE_ANNOTATION], "{}");
        assert!(
            desired_binding(&policy(None), "airlock-system", &why).is_none(),
            "no binding without the policy's uid"
        );
    }

    #[test]
    fn drift_is_what_the_operator_sets_changed_not_the_api_servers_defaults() {
        let desired = desired_binding(
            &policy(Some("u-1")),
            "airlock-system",
            &stands_aside(&[("ml", "audited by observe")]),
        )
        .expect("binding");
        assert_eq!(binding_drift(None, &desired), Some("missing"));
        let mut live = serde_json::to_value(&desired).expect("serialise");
        live["metadata"]["uid"] = serde_json::json!("b-1");
        live["metadata"]["managedFields"] = serde_json::json!([{ "manager": "airlock-operator" }]);
        live["spec"]["matchResources"]["matchPolicy"] = serde_json::json!("Equivalent");
        live["spec"]["matchResources"]["objectSelector"] = serde_json::json!({});
        let read = |v: &serde_json::Value| -> ValidatingAdmissionPolicyBinding {
            serde_json::from_value(v.clone()).expect("binding")
        };
        assert_eq!(binding_drift(Some(&read(&live)), &desired), None);

        let edits = [
            ("/spec/matchResources/namespaceSelector", serde_json::json!({})),
            (
                "/spec/paramRef",
                serde_json::json!({ "name": "x", "parameterNotFoundAction": "Allow" }),
            ),
            ("/spec/validationActions", serde_json::json!(["Warn"])),
            ("/spec/policyName", serde_json::json!("other")),
            (
                "/spec/matchResources/objectSelector",
                serde_json::json!({ "matchLabels": { "a": "b" } }),
            ),
            (
                "/spec/matchResources/excludeResourceRules",
                serde_json::json!([{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"] }]),
            ),
            ("/metadata/ownerReferences", serde_json::json!([])),
            ("/metadata/annotations", serde_json::json!({})),
        ];
        for (pointer, value) in edits {
            let mut edited = live.clone();
            let (parent, key) = pointer.rsplit_once('/').expect("pointer");
            edited
                .pointer_mut(parent)
                .and_then(serde_json::Value::as_object_mut)
                .expect("parent")
                .insert(key.to_owned(), value);
            assert_eq!(
                binding_drift(Some(&read(&edited)), &desired),
                Some("changed"),
                "{pointer}"
            );
        }
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
