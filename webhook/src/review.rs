//! The admission-review handler: bytes in, an AdmissionReview (or a 4xx) out. Pure: everything it needs
//! to know about the cluster comes through [`ClusterView`], so it is tested without a server or a cluster.
//!
//! The flow: parse the review in one pass (objects stay raw JSON until a decision reads them) → an
//! allowing response → [`mutate`](crate::mutate::mutate) or [`validate`](crate::validate::validate) →
//! `.deny()` / `.with_patch()` → the review written back.
//!
//! - A body that is not an AdmissionReview (malformed JSON, another `apiVersion` or `kind`, no
//!   `request`) gets HTTP 400 with an `invalid` AdmissionReview body; nothing ever panics.
//! - A well-formed review this webhook has nothing to say about (not a pod on `/mutate`, a DELETE with
//!   no object, an unknown kind, a subresource such as `pods/ephemeralcontainers`) is allowed without a
//!   patch: the webhook fails open for what it does not handle.
//! - Only a Pod CREATE is injected; `dryRun` requests are handled like any other (the decisions have no
//!   side effects).
//! - On `/validate`: Pod CREATE and the six controllers' CREATE/UPDATE are checked for unprotected model
//!   servers; `AIRuntimeInstance` and `DynamicAddressGroup` CREATE/UPDATE and `AISecurityProfile` DELETE
//!   are checked too. An object of a known kind that cannot be read is denied (validation fails closed).

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, Status};
use serde_json::value::RawValue;

use crate::mutate::{self, MutateOutcome, SkipReason};
use crate::selection::{self, NEVER_SELECTED};
use crate::validate::{self, Verdict};
use crate::workload::{Workload, workload_kind};

/// Which webhook a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/mutate`: sidecar injection.
    Mutate,
    /// `/validate`: rejection of unprotected model servers and checks of Airlock's own objects.
    Validate,
}

/// What the handler may know about the cluster: a read-only view of the webhook's caches.
pub trait ClusterView: Send + Sync {
    /// Every `AIRuntimeInstance`.
    fn instances(&self) -> Vec<Arc<AIRuntimeInstance>>;
    /// The profile with this name, if it exists.
    fn profile(&self, name: &str) -> Option<Arc<AISecurityProfile>>;
    /// The labels of a namespace, or `None` when the namespace is not (yet) known.
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
    /// The API server's (major, minor) version; native sidecars need 1.29 or later.
    fn server_version(&self) -> (u32, u32);
    /// The sidecar image injected when an instance names none.
    fn default_sidecar_image(&self) -> String {
        mutate::default_sidecar_image()
    }
}

/// The HTTP answer to one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200 for every well-formed AdmissionReview (even a denial); 400 for a body that is not one.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// Low-cardinality outcome for metrics: `allowed`, `patched`, `denied`, `warned` or `invalid`.
    pub verdict: &'static str,
}

/// The AdmissionReview API versions the handler accepts.
const API_VERSIONS: &[&str] = &["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// An AdmissionReview as it arrives, read in one pass: the request's objects stay raw JSON (borrowed
/// from the body) until a decision reads them as the type it needs. Building a generic value first and
/// converting it (twice) cost more than the decisions themselves.
#[derive(serde::Deserialize)]
struct RawReview<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    request: Option<RawRequest<'a>>,
}

/// The fields of an `AdmissionRequest` the handler reads; those the API server always sends are
/// required, as in `kube`'s own type.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    #[allow(dead_code, reason = "required, as the API server always sends it; not read")]
    resource: serde::de::IgnoredAny,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[allow(dead_code, reason = "required, as the API server always sends it; not read")]
    user_info: serde::de::IgnoredAny,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
}

/// The `response` of an AdmissionReview, as the API server reads it. The patch is base64, as Go encodes
/// `[]byte` (kube's own type writes an array of numbers: accepted, but three times the size and slower to
/// write).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl Response {
    /// Allows the request with `uid`.
    fn allow(uid: &str) -> Self {
        Response {
            uid: uid.to_owned(),
            allowed: true,
            ..Response::default()
        }
    }

    /// Denies the request; `message` reaches the user (`admission webhook ... denied the request: ...`).
    fn deny(mut self, message: String) -> Self {
        self.allowed = false;
        self.status = Some(Status {
            message,
            ..Status::default()
        });
        self
    }

    /// Allows the request with an RFC 6902 JSON Patch.
    fn with_patch(mut self, patch: &mutate::Patch) -> serde_json::Result<Self> {
        let json = serde_json::to_vec(patch)?;
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        self.patch_type = Some("JSONPatch");
        Ok(self)
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: &'a Response,
}

fn reply(status: u16, api_version: &str, response: &Response, verdict: &'static str) -> Reply {
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response,
    };
    match serde_json::to_vec(&review) {
        Ok(body) => Reply {
            status,
            body,
            verdict,
        },
        // Serialising a response made of strings cannot fail; answer with a fixed body anyway.
        Err(_) => Reply {
            status: 500,
            body: br#"{"error":"cannot serialise the admission response"}"#.to_vec(),
            verdict: "invalid",
        },
    }
}

fn invalid(reason: impl std::fmt::Display) -> Reply {
    let response = Response {
        status: Some(Status::failure(
            &format!("not an AdmissionReview: {reason}"),
            "InvalidRequest",
        )),
        ..Response::default()
    };
    reply(400, API_VERSIONS[0], &response, "invalid")
}

/// Answers one admission request arriving on `route` with `body`, reading the cluster through `view`.
pub fn handle(route: Route, body: &[u8], view: &dyn ClusterView) -> Reply {
    let review: RawReview<'_> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => return invalid(e),
    };
    let api_version = review.api_version.as_deref().unwrap_or_default();
    let kind = review.kind.as_deref().unwrap_or_default();
    if kind != "AdmissionReview" || !API_VERSIONS.contains(&api_version) {
        return invalid(format!("apiVersion {api_version:?} kind {kind:?}"));
    }
    let Some(request) = review.request else {
        return invalid("the review has no request");
    };
    let response = Response::allow(&request.uid);
    let (response, verdict) = match route {
        Route::Mutate => on_mutate(&request, response, view),
        Route::Validate => on_validate(&request, response, view),
    };
    reply(200, api_version, &response, verdict)
}

/// The object's JSON text; `None` when absent or `null`.
fn raw(object: Option<&RawValue>) -> Option<&str> {
    object.map(RawValue::get).filter(|json| *json != "null")
}

fn on_mutate(
    request: &RawRequest<'_>,
    response: Response,
    view: &dyn ClusterView,
) -> (Response, &'static str) {
    let is_pod_create = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.operation == Operation::Create
        && request.sub_resource.is_none();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    if !is_pod_create || NEVER_SELECTED.contains(&namespace) {
        return (response, "allowed");
    }
    // Mutation fails open: a pod we cannot read is left alone (validation still sees it).
    let Some(pod) = raw(request.object).and_then(|json| crate::lean::pod(json).ok()) else {
        return (response, "allowed");
    };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let instances = view.instances();
    let namespace_labels = view.namespace_labels(namespace);
    let Some(instance) = selection::choose(
        labels,
        namespace,
        namespace_labels.as_ref(),
        instances.iter().map(|i| i.as_ref()),
    ) else {
        return (response, "allowed");
    };
    let default_image = view.default_sidecar_image();
    match mutate::mutate(&pod, namespace, instance, view.server_version(), &default_image) {
        MutateOutcome::Patch(patch) => match response.clone().with_patch(&patch) {
            Ok(patched) => (patched, "patched"),
            Err(_) => (response, "allowed"),
        },
        MutateOutcome::Skip {
            reason: reason @ SkipReason::HostNetwork,
        } => (
            with_warnings(response, vec![format!("airlock: {}", reason.message())]),
            "warned",
        ),
        MutateOutcome::Skip { .. } => (response, "allowed"),
    }
}

fn with_warnings(mut response: Response, warnings: Vec<String>) -> Response {
    response.warnings.extend(warnings);
    response
}

fn apply(response: Response, verdict: Verdict) -> (Response, &'static str) {
    match verdict {
        Verdict::Allow => (response, "allowed"),
        Verdict::AllowWithWarnings(warnings) => (with_warnings(response, warnings), "warned"),
        Verdict::Deny(denial) => (response.deny(denial.message), "denied"),
    }
}

fn typed<T: serde::de::DeserializeOwned>(object: Option<&RawValue>) -> Option<Result<T, String>> {
    let json = raw(object)?;
    Some(serde_json::from_str(json).map_err(|e| e.to_string()))
}

fn on_validate(
    request: &RawRequest<'_>,
    response: Response,
    view: &dyn ClusterView,
) -> (Response, &'static str) {
    if request.sub_resource.is_some() {
        return (response, "allowed");
    }
    let group = request.kind.group.as_str();
    let kind = request.kind.kind.as_str();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let operation = &request.operation;

    if let Some(workload_kind) = workload_kind(group, kind) {
        let checked = match operation {
            Operation::Create => true,
            // Pods are checked when created; their updates (labels, finalizers) must never be blocked.
            Operation::Update => workload_kind != airlock_crds::v1alpha1::WorkloadKind::Pod,
            _ => false,
        };
        let Some(object) = raw(request.object).filter(|_| checked) else {
            return (response, "allowed");
        };
        let workload = match Workload::from_json(workload_kind, object) {
            Ok(workload) => workload,
            Err(e) => {
                return apply(
                    response,
                    Verdict::Deny(validate::Denial {
                        message: e.to_string(),
                    }),
                );
            }
        };
        if *operation == Operation::Update && unchanged_template(request, workload_kind, &workload) {
            return (response, "allowed");
        }
        return apply(response, validate::validate(&workload, namespace, view));
    }

    if group != airlock_crds::GROUP {
        return (response, "allowed");
    }
    match (kind, operation) {
        ("AIRuntimeInstance", Operation::Create | Operation::Update) => {
            match typed::<AIRuntimeInstance>(request.object) {
                Some(Ok(instance)) => {
                    let old = match typed::<AIRuntimeInstance>(request.old_object) {
                        Some(Ok(old)) => Some(old),
                        _ => None,
                    };
                    apply(
                        response,
                        validate::validate_instance(&instance, old.as_ref(), view),
                    )
                }
                Some(Err(e)) => unreadable(response, kind, e),
                None => (response, "allowed"),
            }
        }
        ("DynamicAddressGroup", Operation::Create | Operation::Update) => {
            match typed::<DynamicAddressGroup>(request.object) {
                Some(Ok(group)) => apply(response, validate::validate_group(&group)),
                Some(Err(e)) => unreadable(response, kind, e),
                None => (response, "allowed"),
            }
        }
        ("AISecurityProfile", Operation::Delete) => {
            let name = typed::<PartialObjectMeta>(request.old_object)
                .and_then(Result::ok)
                .and_then(|old| old.metadata.name)
                .unwrap_or_else(|| request.name.clone());
            if name.is_empty() {
                return (response, "allowed");
            }
            apply(response, validate::validate_profile_delete(&name, view))
        }
        _ => (response, "allowed"),
    }
}

/// Only the metadata of an object.
#[derive(serde::Deserialize)]
struct PartialObjectMeta {
    #[serde(default)]
    metadata: ObjectMeta,
}

fn unreadable(response: Response, kind: &str, error: String) -> (Response, &'static str) {
    (
        response.deny(format!("cannot read the {kind}: {error}")),
        "denied",
    )
}

/// Whether an UPDATE leaves the pods a controller makes as they were (scaling, labels on the controller,
/// finalizers): existing workloads are not rejected for changes that do not touch what runs.
fn unchanged_template(
    request: &RawRequest<'_>,
    kind: airlock_crds::v1alpha1::WorkloadKind,
    new: &Workload,
) -> bool {
    let (Some(old), Some(current)) = (raw(request.old_object), raw(request.object)) else {
        return false;
    };
    // The admission view first (cheap, and usually enough to tell a change); then the whole template,
    // since any change to what runs (resources, probes, env values) rolls out new pods.
    Workload::from_json(kind, old)
        .is_ok_and(|old| old.pod_spec == new.pod_spec && old.pod_labels == new.pod_labels)
        && full_template(kind, old).is_some_and(|old| full_template(kind, current) == Some(old))
}

/// The whole pod template of a controller, as `k8s-openapi` reads it.
fn full_template(
    kind: airlock_crds::v1alpha1::WorkloadKind,
    json: &str,
) -> Option<k8s_openapi::api::core::v1::PodTemplateSpec> {
    use airlock_crds::v1alpha1::WorkloadKind;
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    fn read<T: serde::de::DeserializeOwned>(json: &str) -> Option<T> {
        serde_json::from_str(json).ok()
    }
    match kind {
        WorkloadKind::Pod => None,
        WorkloadKind::Deployment => read::<Deployment>(json)?.spec.map(|s| s.template),
        WorkloadKind::StatefulSet => read::<StatefulSet>(json)?.spec.map(|s| s.template),
        WorkloadKind::DaemonSet => read::<DaemonSet>(json)?.spec.map(|s| s.template),
        WorkloadKind::ReplicaSet => read::<ReplicaSet>(json)?.spec.and_then(|s| s.template),
        WorkloadKind::Job => read::<Job>(json)?.spec.map(|s| s.template),
        WorkloadKind::CronJob => read::<CronJob>(json)?
            .spec
            .and_then(|s| s.job_template.spec)
            .map(|s| s.template),
    }
}

/// A fixed [`ClusterView`], for tests and offline tools such as `kubectl airlock check` that decide
/// about manifests without a cluster.
#[derive(Debug, Clone)]
pub struct StaticView {
    /// The instances.
    pub instances: Vec<Arc<AIRuntimeInstance>>,
    /// The profiles, by name.
    pub profiles: BTreeMap<String, Arc<AISecurityProfile>>,
    /// Namespace labels, by namespace name; unknown namespaces answer `None`.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The API server version.
    pub version: (u32, u32),
}

impl Default for StaticView {
    fn default() -> Self {
        Self {
            instances: Vec::new(),
            profiles: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            version: (1, 33),
        }
    }
}

impl StaticView {
    /// An empty cluster on Kubernetes 1.33.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an instance.
    #[must_use]
    pub fn with_instance(mut self, instance: AIRuntimeInstance) -> Self {
        self.instances.push(Arc::new(instance));
        self
    }

    /// Adds a profile, keyed by its name.
    #[must_use]
    pub fn with_profile(mut self, profile: AISecurityProfile) -> Self {
        let name = profile.metadata.name.clone().unwrap_or_default();
        self.profiles.insert(name, Arc::new(profile));
        self
    }

    /// Adds a namespace with its labels.
    #[must_use]
    pub fn with_namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.namespaces.insert(name.to_owned(), labels);
        self
    }

    /// Sets the API server version.
    #[must_use]
    pub fn with_version(mut self, major: u32, minor: u32) -> Self {
        self.version = (major, minor);
        self
    }
}

impl ClusterView for StaticView {
    fn instances(&self) -> Vec<Arc<AIRuntimeInstance>> {
        self.instances.clone()
    }

    fn profile(&self, name: &str) -> Option<Arc<AISecurityProfile>> {
        self.profiles.get(name).cloned()
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(namespace).cloned()
    }

    fn server_version(&self) -> (u32, u32) {
        self.version
    }
}
