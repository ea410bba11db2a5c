//! The `AISecurityProfile` and `AIRuntimeInstance` reconcilers (the I/O around [`crate::profile`],
//! [`crate::policy`] and [`super::coverage`]).
//!
//! Profiles: validate, count the instances that use them, write `Ready`/`Invalid`.
//! Instances: observe (profile, namespaces, pods from the index) → build the policy bundle → apply it as
//! a ConfigMap in every selected namespace and delete it where no longer selected → record Events on
//! workloads that are unprotected or drifted → write the coverage status. A finalizer removes the
//! ConfigMaps when the instance is deleted. Both controllers run in one task so each can read the
//! other's cache; instances are also re-reconciled (at most twice a second) when the pod index changes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use airlock_crds::bundle::{INSTANCE_LABEL, instance_label_value};
use airlock_crds::conditions;
use airlock_crds::v1alpha1::{AIRuntimeInstanceStatus, Drift};
use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::coverage::{self, Coverage, DriftKind};
use super::group::{FIELD_MANAGER, status_patch};
use crate::index::Index;
use crate::{Context, Error, policy, profile};

/// The finalizer that removes an instance's policy ConfigMaps.
pub const FINALIZER: &str = "airlock.dev/cleanup";
/// How often an unchanged object is reconciled anyway (exemption expiry, missed events).
const RESYNC: Duration = Duration::from_secs(300);
/// How long the controllers may wait for their first list before each warning.
const LIST_WARNING: Duration = Duration::from_secs(15);
/// Least time between two index-triggered passes over all instances.
const INDEX_THROTTLE: Duration = Duration::from_millis(500);

/// An Event already recorded: (instance, reason, namespace, kind, name).
type Finding = (String, &'static str, String, String, String);

struct Shared {
    ctx: Arc<Context>,
    profiles: Store<AISecurityProfile>,
    instances: Store<AIRuntimeInstance>,
    /// Events already recorded: (instance, reason, namespace, kind, name).
    reported: Mutex<HashSet<Finding>>,
}

/// Runs both controllers until aborted.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let profiles_api: Api<AISecurityProfile> = Api::all(client.clone());
    let instances_api: Api<AIRuntimeInstance> = Api::all(client.clone());
    let profile_controller = Controller::new(profiles_api.clone(), watcher::Config::default());
    let instance_controller = Controller::new(instances_api.clone(), watcher::Config::default());
    let instances_store = instance_controller.store();
    let profiles_store = profile_controller.store();
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        profiles: profiles_store.clone(),
        instances: instances_store.clone(),
        reported: Mutex::new(HashSet::new()),
    });

    // A profile's instance count changes with instances; an instance's policy with its profiles.
    let profile_controller = profile_controller.watches(
        instances_api,
        watcher::Config::default(),
        |instance: AIRuntimeInstance| {
            referenced_profiles(&instance)
                .into_iter()
                .map(|name| ObjectRef::new(&name))
                .collect::<Vec<_>>()
        },
    );
    let store_for_mapper = instances_store.clone();
    let instance_controller = instance_controller
        .watches(
            profiles_api,
            watcher::Config::default(),
            move |profile: AISecurityProfile| {
                let name = profile.name_any();
                store_for_mapper
                    .state()
                    .iter()
                    .filter(|i| referenced_profiles(i).contains(&name))
                    .map(|i| ObjectRef::from_obj(&**i))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(index_changes(&ctx));

    let profiles = profile_controller
        .run(reconcile_profile, error_policy, shared.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                log_run_error("profile", &error);
            }
        });
    let instances = instance_controller
        .run(reconcile_instance, error_policy, shared)
        .for_each(|result| async move {
            if let Err(error) = result {
                log_run_error("instance", &error);
            }
        });
    let listed = report_listed(profiles_store, instances_store);
    futures::join!(profiles, instances, listed);
}

/// Logs once both controllers' caches hold their first list (no reconcile runs before), and warns every
/// [`LIST_WARNING`] until then: a controller that stays silent is otherwise indistinguishable from one
/// with nothing to do.
async fn report_listed(profiles: Store<AISecurityProfile>, instances: Store<AIRuntimeInstance>) {
    let started = Instant::now();
    let both = async {
        let _ = profiles.wait_until_ready().await;
        let _ = instances.wait_until_ready().await;
    };
    tokio::pin!(both);
    loop {
        tokio::select! {
            () = &mut both => break,
            () = tokio::time::sleep(LIST_WARNING) => {
                tracing::warn!(
                    waited_seconds = started.elapsed().as_secs(),
                    profiles_listed = profiles.wait_until_ready().now_or_never().is_some(),
                    instances_listed = instances.wait_until_ready().now_or_never().is_some(),
                    "the profile and instance controllers are still waiting for their first list"
                );
            }
        }
    }
    tracing::info!(
        profiles = profiles.state().len(),
        instances = instances.state().len(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "profile and instance controllers listed; reconciling"
    );
}

/// Logs what a controller's stream reports: a failed watch (the watcher backs off and retries, and until
/// then changes go unseen) as a warning; failed reconciles are logged by [`error_policy`] already.
fn log_run_error<E>(
    controller: &str,
    error: &kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
) where
    E: std::error::Error + 'static,
{
    match error {
        kube::runtime::controller::Error::QueueError(error) => {
            tracing::warn!(%error, controller, "watch failed; retrying with backoff");
        }
        error => tracing::debug!(%error, controller, "reconcile"),
    }
}

/// One `()` per burst of index changes, at most every [`INDEX_THROTTLE`].
fn index_changes(ctx: &Context) -> impl futures::Stream<Item = ()> + Send + 'static {
    let receiver = ctx.index_revision.subscribe();
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        tokio::time::sleep(INDEX_THROTTLE).await;
        receiver.borrow_and_update();
        Some(((), receiver))
    })
}

/// The addresses of the running pods in `namespaces`, each with its service account as
/// `<namespace>/<name>`, for [`policy::Inputs::callers`]. Host-network pods are left out: their address
/// is the node's, shared by every such pod on it.
fn callers(index: &Index, namespaces: &[String]) -> Vec<(IpAddr, String)> {
    let mut callers = Vec::new();
    for namespace in namespaces {
        for pod in index
            .pods_in(namespace)
            .filter(|p| !p.terminal && !p.host_network)
        {
            let account = format!(
                "{namespace}/{}",
                pod.service_account.as_deref().unwrap_or("default")
            );
            callers.extend(pod.ips.iter().map(|ip| (*ip, account.clone())));
        }
    }
    callers
}

/// Names of the profiles an instance uses: its own and its rules'.
pub fn referenced_profiles(instance: &AIRuntimeInstance) -> BTreeSet<String> {
    std::iter::once(instance.spec.profile_ref.name.clone())
        .chain(
            instance
                .spec
                .rules
                .iter()
                .filter_map(|r| r.profile_ref.as_ref().map(|p| p.name.clone())),
        )
        .collect()
}

fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, shared: Arc<Shared>) -> Action {
    let controller = if K::kind(&()) == "AISecurityProfile" {
        "profile"
    } else {
        "instance"
    };
    shared
        .ctx
        .metrics
        .reconcile_failure(controller, error.metric_label());
    if matches!(error, Error::StaleFinalizers(_)) {
        tracing::debug!(%error, name = %object.name_any(), controller, "reconcile retried");
    } else {
        tracing::warn!(%error, name = %object.name_any(), controller, "reconcile failed; retrying");
    }
    Action::requeue(retry_delay(error))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn reconcile_profile(profile: Arc<AISecurityProfile>, shared: Arc<Shared>) -> crate::Result<Action> {
    let started = Instant::now();
    // The other controller's cache: counting instances before it is listed would report 0.
    wait_for(&shared.instances).await?;
    let ctx = &shared.ctx;
    let name = profile.name_any();
    let problems = profile::validate(&profile.spec);
    let users = shared
        .instances
        .state()
        .iter()
        .filter(|i| referenced_profiles(i).contains(&name))
        .count();
    let status = profile::status(
        &profile,
        &problems,
        i32::try_from(users).unwrap_or(i32::MAX),
        now(),
    );
    let was_ready = profile
        .status
        .as_ref()
        .map(|s| conditions::is_ready(&s.conditions));
    if profile.status.as_ref() != Some(&status) {
        let api: Api<AISecurityProfile> = Api::all(ctx.client.clone());
        let patch = json!({ "status": status });
        api.patch_status(&name, &status_patch(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.status_write("profile");
        let ready = problems.is_empty();
        if was_ready != Some(ready) {
            let (type_, reason, note) = if ready {
                (
                    EventType::Normal,
                    "Compiled",
                    "the profile is valid and compiled".to_owned(),
                )
            } else {
                (EventType::Warning, "Invalid", profile::summary(&problems))
            };
            publish(ctx, &profile.object_ref(&()), type_, reason, note).await;
        }
    }
    ctx.metrics.reconciled("profile", started.elapsed());
    Ok(Action::requeue(RESYNC))
}

async fn reconcile_instance(instance: Arc<AIRuntimeInstance>, shared: Arc<Shared>) -> crate::Result<Action> {
    let started = Instant::now();
    let api: Api<AIRuntimeInstance> = Api::all(shared.ctx.client.clone());
    let result = finalizer(&api, FINALIZER, instance, |event| async {
        match event {
            Finalizer::Apply(instance) => apply_instance(&instance, &shared).await,
            Finalizer::Cleanup(instance) => cleanup_instance(&instance, &shared).await,
        }
    })
    .await;
    shared.ctx.metrics.reconciled("instance", started.elapsed());
    result.map_err(finalizer_error)
}

/// The reconcile error for a failure of kube's finalizer helper. Adding or removing the finalizer is a
/// JSON patch that first tests the list it read; when the cached object was behind (an instance is often
/// reconciled for its profile right after its first pass added the finalizer), the API server answers
/// 422 — a conflict, retried at once, not a failure worth a warning.
fn finalizer_error(error: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match error {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(kube::Error::Api(status)) | F::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 422 =>
        {
            Error::StaleFinalizers(kube::Error::Api(status))
        }
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Config(other.to_string()),
    }
}

/// How long after a failed reconcile it is retried: at once (200 ms) for conflicts, 5 s when throttled,
/// 10 s otherwise.
fn retry_delay(error: &Error) -> Duration {
    match error {
        Error::Kube(kube::Error::Api(status)) if status.code == 409 => Duration::from_millis(200),
        Error::StaleFinalizers(_) => Duration::from_millis(200),
        Error::Kube(kube::Error::Api(status)) if status.code == 429 => Duration::from_secs(5),
        _ => Duration::from_secs(10),
    }
}

async fn apply_instance(instance: &AIRuntimeInstance, shared: &Shared) -> crate::Result<Action> {
    let ctx = &shared.ctx;
    // A new leader's profile cache may still be listing: a profile missing from it is not missing.
    wait_for(&shared.profiles).await?;
    let name = instance.name_any();
    // Observe: everything below is computed from caches, without holding a lock across an await.
    let profiles: BTreeMap<String, Arc<AISecurityProfile>> = shared
        .profiles
        .state()
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    let all_instances = shared.instances.state();
    let (coverage, groups, callers) = {
        let index = ctx.index_read();
        let others: Vec<&AIRuntimeInstance> = all_instances.iter().map(|i| &**i).collect();
        let coverage = coverage::coverage(
            instance,
            &others,
            &index,
            SystemTime::now(),
            &ctx.args.sidecar_image,
        );
        let groups: BTreeMap<String, Vec<String>> = index
            .group_names()
            .filter_map(|g| index.group(g).map(|view| (g.to_owned(), view.ips())))
            .collect();
        let callers = if policy::keys_callers_by_service_account(instance, &profiles) {
            callers(&index, &coverage.namespaces)
        } else {
            Vec::new()
        };
        (coverage, groups, callers)
    };
    let built = policy::build(policy::Inputs {
        instance,
        profiles: &profiles,
        groups: &groups,
        callers: &callers,
    });
    let ready = match &built {
        Ok(built) => {
            deliver(ctx, instance, built, &coverage.namespaces).await?;
            conditions::ready(
                true,
                "PolicyDelivered",
                format!(
                    "policy {} delivered to {} namespaces",
                    &built.hash[..12.min(built.hash.len())],
                    coverage.namespaces.len()
                ),
                instance.metadata.generation,
                now(),
            )
        }
        // The last good ConfigMaps stay in place: sidecars keep enforcing the last valid policy.
        Err(error) => conditions::ready(
            false,
            error.reason(),
            error.to_string(),
            instance.metadata.generation,
            now(),
        ),
    };
    report_findings(ctx, shared, instance, &coverage).await;
    let profile_generation = profiles
        .get(&instance.spec.profile_ref.name)
        .and_then(|p| p.metadata.generation);
    let status = status(instance, &coverage, ready, profile_generation, now());
    if instance.status.as_ref() != Some(&status) {
        let patch = json!({ "status": status });
        Api::<AIRuntimeInstance>::all(ctx.client.clone())
            .patch_status(&name, &status_patch(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.status_write("instance");
    }
    if let Err(error) = &built {
        tracing::info!(instance = %name, reason = error.reason(), "policy not delivered: {error}");
    }
    Ok(Action::requeue(RESYNC))
}

/// Waits until `store` holds its first complete list.
async fn wait_for<K>(store: &Store<K>) -> crate::Result<()>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .wait_until_ready()
        .await
        .map_err(|_| Error::Config("a controller's cache stopped before it was listed".into()))
}

/// Writes the bundle to every selected namespace whose copy differs, and deletes copies in namespaces
/// no longer selected. Returns how many namespaces hold the current bundle.
async fn deliver(
    ctx: &Context,
    instance: &AIRuntimeInstance,
    built: &policy::Built,
    namespaces: &[String],
) -> crate::Result<usize> {
    let label = format!("{INSTANCE_LABEL}={}", instance_label_value(&instance.name_any()));
    let all: Api<ConfigMap> = Api::all(ctx.client.clone());
    let existing = all.list(&ListParams::default().labels(&label)).await?;
    let by_namespace: BTreeMap<String, &ConfigMap> = existing
        .items
        .iter()
        .map(|cm| (cm.namespace().unwrap_or_default(), cm))
        .collect();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for namespace in namespaces {
        let current = by_namespace.get(namespace).copied();
        if !policy::needs_write(current, built) {
            continue;
        }
        let desired = policy::config_map(built, instance, namespace);
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
        match api
            .patch(&desired.name_any(), &apply, &Patch::Apply(&desired))
            .await
        {
            Ok(_) => ctx.metrics.status_write("policy"),
            // The namespace is being deleted; nothing to protect there any more.
            Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => {
                tracing::debug!(%namespace, "namespace not writable: {}", status.message);
            }
            Err(error) => return Err(error.into()),
        }
    }
    for (namespace, cm) in &by_namespace {
        if namespaces.contains(namespace) {
            continue;
        }
        delete_config_map(ctx, namespace, &cm.name_any()).await?;
    }
    Ok(namespaces.len())
}

async fn delete_config_map(ctx: &Context, namespace: &str, name: &str) -> crate::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn cleanup_instance(instance: &AIRuntimeInstance, shared: &Shared) -> crate::Result<Action> {
    let ctx = &shared.ctx;
    let label = format!("{INSTANCE_LABEL}={}", instance_label_value(&instance.name_any()));
    let all: Api<ConfigMap> = Api::all(ctx.client.clone());
    for cm in all.list(&ListParams::default().labels(&label)).await?.items {
        delete_config_map(ctx, &cm.namespace().unwrap_or_default(), &cm.name_any()).await?;
    }
    let name = instance.name_any();
    shared
        .reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(i, ..)| *i != name);
    tracing::info!(instance = %name, "removed the instance's policy ConfigMaps");
    Ok(Action::await_change())
}

/// The status for `instance` given its coverage and `Ready` condition.
pub fn status(
    instance: &AIRuntimeInstance,
    coverage: &Coverage,
    ready: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    profile_generation: Option<i64>,
    now: Time,
) -> AIRuntimeInstanceStatus {
    let generation = instance.metadata.generation;
    let mut conditions_list = instance
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::set(&mut conditions_list, ready);
    let missing = coverage
        .drift
        .iter()
        .filter(|d| d.kind == DriftKind::Missing)
        .count();
    let covered = if !coverage.unprotected.is_empty() {
        conditions::new(
            "Covered",
            false,
            "UnprotectedModelServers",
            format!(
                "{} model-server workloads run without the sidecar (see status.unprotected); select them \
                 with an enforcing instance and restart them, or add an exemption with a reason",
                coverage.unprotected.len()
            ),
            generation,
            now,
        )
    } else if !coverage.drift.is_empty() {
        conditions::new(
            "Covered",
            false,
            "SidecarDrift",
            format!(
                "{} pods run without the sidecar and {} with an outdated one (see status.drift); restart \
                 them (e.g. kubectl rollout restart) to pick up the current sidecar",
                missing,
                coverage.drift.len() - missing
            ),
            generation,
            now,
        )
    } else {
        conditions::new(
            "Covered",
            true,
            "AllProtected",
            format!("{} pods carry the current sidecar", coverage.injected_pods),
            generation,
            now,
        )
    };
    conditions::set(&mut conditions_list, covered);
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    AIRuntimeInstanceStatus {
        conditions: conditions_list,
        observed_generation: generation,
        profile_generation,
        selected_namespaces: count(coverage.namespaces.len()),
        protected_workloads: count(coverage.protected_workloads),
        injected_pods: count(coverage.injected_pods),
        unprotected_model_servers: count(coverage.unprotected.len()),
        unprotected: coverage.unprotected_listed(),
        drift: (!coverage.drift.is_empty()).then(|| Drift {
            count: count(coverage.drift.len()),
            pods: coverage.drift_listed(),
        }),
        sidecar_image: (!coverage.sidecar_image.is_empty()).then(|| coverage.sidecar_image.clone()),
    }
}

/// Records `Unprotected` on workloads and `SidecarDrift` on pods, once per finding.
async fn report_findings(ctx: &Context, shared: &Shared, instance: &AIRuntimeInstance, coverage: &Coverage) {
    let name = instance.name_any();
    let mut findings: Vec<(Finding, ObjectReference, String)> = Vec::new();
    for workload in &coverage.unprotected {
        let key = (
            name.clone(),
            "Unprotected",
            workload.namespace.clone(),
            workload.kind.clone(),
            workload.name.clone(),
        );
        let reference = ObjectReference {
            api_version: Some(api_version_of(&workload.kind).to_owned()),
            kind: Some(workload.kind.clone()),
            namespace: Some(workload.namespace.clone()),
            name: Some(workload.name.clone()),
            ..ObjectReference::default()
        };
        let note = format!(
            "{} {}/{} is a model server ({}) running without the Airlock sidecar; AIRuntimeInstance {name} \
             selects it: restart it so the sidecar is injected, or add an exemption with a reason",
            workload.kind, workload.namespace, workload.name, workload.fingerprint
        );
        findings.push((key, reference, note));
    }
    for pod in &coverage.drift {
        let key = (
            name.clone(),
            "SidecarDrift",
            pod.namespace.clone(),
            "Pod".to_owned(),
            pod.name.clone(),
        );
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            ..ObjectReference::default()
        };
        let what = match pod.kind {
            DriftKind::Missing => "runs without the Airlock sidecar",
            DriftKind::Outdated => "runs an outdated Airlock sidecar",
        };
        let note = format!(
            "pod {}/{} {what} although AIRuntimeInstance {name} selects it; restart {} {} to fix it",
            pod.namespace, pod.name, pod.workload.0, pod.workload.1
        );
        findings.push((key, reference, note));
    }
    let current: HashSet<_> = findings.iter().map(|(key, ..)| key.clone()).collect();
    let fresh: Vec<_> = {
        let mut reported = shared.reported.lock().unwrap_or_else(PoisonError::into_inner);
        reported.retain(|key| key.0 != name || current.contains(key));
        findings
            .into_iter()
            .filter(|(key, ..)| reported.insert(key.clone()))
            .collect()
    };
    let total = fresh.len();
    for (key, reference, note) in fresh.into_iter().take(20) {
        publish(ctx, &reference, EventType::Warning, key.1, note).await;
    }
    if total > 0 {
        let note = format!(
            "{} unprotected model-server workloads, {} drifted pods",
            coverage.unprotected.len(),
            coverage.drift.len()
        );
        publish(
            ctx,
            &instance.object_ref(&()),
            EventType::Warning,
            "CoverageGap",
            note,
        )
        .await;
    }
}

fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

async fn publish(ctx: &Context, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::debug!(%error, reason, "could not record an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::coverage::DriftedPod;
    use crate::index::LeanPod;
    use airlock_crds::v1alpha1::UnprotectedWorkload;

    fn instance() -> AIRuntimeInstance {
        let mut i: AIRuntimeInstance = serde_yaml_ng::from_str(
            r#"
apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: ml, generation: 4}
spec:
  selector: {}
  profileRef: {name: strict}
  rules:
    - {name: r, action: block, profileRef: {name: extra}}
"#,
        )
        .unwrap();
        i.metadata.generation = Some(4);
        i
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            serde_json::from_value(json!({
                "status": "Failure", "code": code, "reason": "Invalid",
                "message": "the server rejected our request due to an error in our request"
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_finalizer_patch_on_a_stale_object_is_a_conflict_retried_at_once() {
        use kube::runtime::finalizer::Error as F;
        for error in [
            F::AddFinalizer(api_error(422)),
            F::RemoveFinalizer(api_error(422)),
        ] {
            let error = finalizer_error(error);
            assert!(matches!(error, Error::StaleFinalizers(_)), "{error:?}");
            assert_eq!(error.metric_label(), "conflict");
            assert_eq!(retry_delay(&error), Duration::from_millis(200));
        }
        let other = finalizer_error(F::AddFinalizer(api_error(403)));
        assert!(matches!(other, Error::Kube(_)), "{other:?}");
        assert_eq!(retry_delay(&other), Duration::from_secs(10));
        assert_eq!(
            retry_delay(&Error::Kube(api_error(409))),
            Duration::from_millis(200)
        );
        assert_eq!(retry_delay(&Error::Kube(api_error(429))), Duration::from_secs(5));
    }

    #[test]
    fn callers_are_the_running_pods_of_the_namespaces_with_their_service_accounts() {
        let pod = |namespace: &str, name: &str, extra: serde_json::Value| {
            let mut pod = json!({
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": "Running", "podIPs": [{"ip": format!("10.0.0.{}", name.len())}]}
            });
            json_patch_merge(&mut pod, extra);
            let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
            LeanPod::from_pod(&pod).unwrap()
        };
        let mut index = Index::new();
        index.apply_pod(
            "chat",
            pod("chat", "a", json!({"spec": {"serviceAccountName": "frontend"}})),
        );
        // No serviceAccountName: the API server's default.
        index.apply_pod("chat", pod("chat", "bb", json!({})));
        index.apply_pod(
            "chat",
            pod("chat", "ccc", json!({"status": {"phase": "Succeeded"}})),
        );
        index.apply_pod(
            "chat",
            pod("chat", "dddd", json!({"spec": {"hostNetwork": true}})),
        );
        index.apply_pod(
            "chat",
            pod(
                "chat",
                "eeeee",
                json!({"status": {"podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}}),
            ),
        );
        index.apply_pod("other", pod("other", "ffffff", json!({})));
        let mut found = callers(&index, &["chat".to_owned()]);
        found.sort();
        let expected: Vec<(IpAddr, String)> = [
            ("10.0.0.1", "chat/frontend"),
            ("10.0.0.2", "chat/default"),
            ("10.0.0.5", "chat/default"),
            ("fd00::5", "chat/default"),
        ]
        .into_iter()
        .map(|(ip, account)| (ip.parse().unwrap(), account.to_owned()))
        .collect();
        assert_eq!(found, expected);
    }

    /// Merges `extra` into `target`, object by object (enough for fixtures).
    fn json_patch_merge(target: &mut serde_json::Value, extra: serde_json::Value) {
        match (target, extra) {
            (serde_json::Value::Object(target), serde_json::Value::Object(extra)) => {
                for (key, value) in extra {
                    json_patch_merge(target.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (target, extra) => *target = extra,
        }
    }

    fn ready() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        conditions::ready(true, "PolicyDelivered", "ok", Some(4), now())
    }

    /// Profile and instance reconciles against a mocked API server: the expected calls, in order, and
    /// what the controller is told to do when a write fails.
    mod api {
        use http::{Method, StatusCode};
        use kube::runtime::{reflector, watcher};
        use serde_json::Value;

        use super::*;
        use crate::fixtures::{self, assert_same_write, sample};

        const PROFILE_STATUS: &str = "/apis/airlock.dev/v1alpha1/aisecurityprofiles/strict/status";
        const INSTANCE_STATUS: &str = "/apis/airlock.dev/v1alpha1/airuntimeinstances/ml/status";
        const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

        /// A store that has finished its first list, holding `objects`.
        fn listed<K>(objects: Vec<K>) -> Store<K>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            let (store, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::Init);
            for object in objects {
                writer.apply_watcher_event(&watcher::Event::InitApply(object));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            store
        }

        fn shared(client: kube::Client) -> Arc<Shared> {
            Arc::new(Shared {
                ctx: Arc::new(Context::for_tests(client, reflector::store().0)),
                profiles: listed(Vec::new()),
                instances: listed(Vec::new()),
                reported: Mutex::new(HashSet::new()),
            })
        }

        fn strict_profile() -> AISecurityProfile {
            serde_yaml_ng::from_str(
                "apiVersion: airlock.dev/v1alpha1\nkind: AISecurityProfile\nmetadata: {name: strict, generation: 1}\nspec: {}\n",
            )
            .unwrap()
        }

        /// `instance()` already carrying the cleanup finalizer, so a reconcile goes straight to apply.
        fn finalized_instance() -> AIRuntimeInstance {
            let mut i = instance();
            i.metadata.finalizers = Some(vec![FINALIZER.into()]);
            i
        }

        /// `object` as the API server returns it after the status patch in `body`.
        fn patched<K: serde::Serialize>(object: &K, body: &Value) -> Value {
            let mut object = serde_json::to_value(object).unwrap();
            object["status"] = body["status"].clone();
            object
        }

        fn failures(shared: &Shared, controller: &str, reason: &str) -> Option<String> {
            sample(
                &shared.ctx.metrics,
                &format!(
                    "airlock_operator_reconcile_failures_total{{controller=\"{controller}\",reason=\"{reason}\"}}"
                ),
            )
        }

        #[tokio::test(start_paused = true)]
        async fn a_profile_status_write_answered_409_is_requeued_quickly_and_rewritten_unchanged() {
            let (client, mut api) = fixtures::client();
            let shared = shared(client);
            let profile = Arc::new(strict_profile());

            let pass = tokio::spawn(reconcile_profile(profile.clone(), shared.clone()));
            let first = api.expect(Method::PATCH, PROFILE_STATUS).await;
            assert_eq!(first.body["status"]["conditions"][0]["reason"], "Compiled");
            assert_eq!(first.query_param("fieldManager"), Some("airlock-operator"));
            let sent = first.body.clone();
            first.conflict();
            let error = pass.await.unwrap().expect_err("a 409 fails the pass");
            // No `Compiled` Event for a status that was not written.
            api.expect_no_call(Duration::from_secs(30)).await;

            let action = error_policy(profile.clone(), &error, shared.clone());
            assert_eq!(action, Action::requeue(Duration::from_millis(200)));
            assert_eq!(failures(&shared, "profile", "conflict").as_deref(), Some("1"));

            // The requeued pass writes the same status, then records the Event once.
            let pass = tokio::spawn(reconcile_profile(profile.clone(), shared.clone()));
            let second = api.expect(Method::PATCH, PROFILE_STATUS).await;
            assert_same_write(&second.body, &sent);
            let object = patched(&*profile, &second.body);
            second.ok(&object);
            let event = api.expect(Method::POST, EVENTS).await;
            assert_eq!(event.body["reason"], "Compiled");
            let created = event.body.clone();
            event.respond(StatusCode::CREATED, &created);
            assert_eq!(pass.await.unwrap().unwrap(), Action::requeue(RESYNC));
            api.expect_no_call(Duration::from_secs(30)).await;
        }

        #[tokio::test(start_paused = true)]
        async fn an_instance_status_write_answered_429_is_requeued_after_five_seconds_and_rewritten() {
            let (client, mut api) = fixtures::client();
            let shared = shared(client);
            let instance = Arc::new(finalized_instance());

            // Its profile is missing: nothing to deliver, only the status says so.
            let pass = tokio::spawn(reconcile_instance(instance.clone(), shared.clone()));
            let first = api.expect(Method::PATCH, INSTANCE_STATUS).await;
            let ready = &first.body["status"]["conditions"][0];
            assert_eq!(ready["type"], "Ready");
            assert_eq!(ready["reason"], "ProfileNotFound");
            assert_eq!(first.query_param("fieldManager"), Some("airlock-operator"));
            let sent = first.body.clone();
            first.throttle(5);
            let error = pass.await.unwrap().expect_err("a 429 fails the pass");

            let action = error_policy(instance.clone(), &error, shared.clone());
            assert_eq!(action, Action::requeue(Duration::from_secs(5)));
            assert_eq!(failures(&shared, "instance", "throttled").as_deref(), Some("1"));

            let pass = tokio::spawn(reconcile_instance(instance.clone(), shared.clone()));
            let second = api.expect(Method::PATCH, INSTANCE_STATUS).await;
            assert_same_write(&second.body, &sent);
            let object = patched(&*instance, &second.body);
            second.ok(&object);
            assert_eq!(pass.await.unwrap().unwrap(), Action::requeue(RESYNC));
            api.expect_no_call(Duration::from_secs(30)).await;
        }
    }

    #[test]
    fn an_instance_references_its_profile_and_its_rules_profiles() {
        let names: Vec<String> = referenced_profiles(&instance()).into_iter().collect();
        assert_eq!(names, ["extra", "strict"]);
    }

    #[test]
    fn full_coverage_reads_all_protected() {
        let coverage = Coverage {
            namespaces: vec!["a".into()],
            protected_workloads: 2,
            injected_pods: 3,
            sidecar_image: "mirror.example/airlock-sidecar:1".into(),
            ..Coverage::default()
        };
        let s = status(&instance(), &coverage, ready(), Some(7), now());
        assert_eq!(
            s.sidecar_image.as_deref(),
            Some("mirror.example/airlock-sidecar:1")
        );
        assert_eq!(
            (s.selected_namespaces, s.protected_workloads, s.injected_pods),
            (1, 2, 3)
        );
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.profile_generation, Some(7));
        assert!(conditions::is_true(&s.conditions, "Covered"));
        assert!(s.drift.is_none());
    }

    #[test]
    fn unprotected_model_servers_make_coverage_false_and_are_listed() {
        let coverage = Coverage {
            unprotected: vec![UnprotectedWorkload {
                namespace: "m".into(),
                name: "llm".into(),
                kind: "Deployment".into(),
                fingerprint: "vllm".into(),
            }],
            drift: vec![DriftedPod {
                namespace: "m".into(),
                name: "llm-1".into(),
                kind: DriftKind::Missing,
                workload: ("Deployment".into(), "llm".into()),
            }],
            ..Coverage::default()
        };
        let s = status(&instance(), &coverage, ready(), None, now());
        let covered = conditions::find(&s.conditions, "Covered").unwrap();
        assert_eq!(
            (covered.status.as_str(), covered.reason.as_str()),
            ("False", "UnprotectedModelServers")
        );
        assert_eq!(s.unprotected_model_servers, 1);
        assert_eq!(s.unprotected[0].name, "llm");
        assert_eq!(s.drift.unwrap().count, 1);
    }

    #[test]
    fn drift_alone_says_how_many_pods_miss_the_sidecar() {
        let coverage = Coverage {
            drift: vec![DriftedPod {
                namespace: "m".into(),
                name: "p".into(),
                kind: DriftKind::Outdated,
                workload: ("Pod".into(), "p".into()),
            }],
            ..Coverage::default()
        };
        let s = status(&instance(), &coverage, ready(), None, now());
        let covered = conditions::find(&s.conditions, "Covered").unwrap();
        assert_eq!(covered.reason, "SidecarDrift");
        assert!(
            covered
                .message
                .starts_with("0 pods run without the sidecar and 1 with an outdated one")
        );
    }
}
