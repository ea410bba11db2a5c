//! The admission-review handler: bytes in, an AdmissionReview (or a 4xx) out. Pure: everything it needs
//! to know about the cluster comes through [`ClusterView`], so it is tested without a server or a cluster.
//!
//! The flow: parse → `AdmissionResponse::from(&req)` → [`mutate`](crate::mutate::mutate) or
//! [`validate`](crate::validate::validate) → `.deny()` / `.with_patch()` → `.into_review()`.
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
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

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

fn reply(status: u16, review: &AdmissionReview<DynamicObject>, verdict: &'static str) -> Reply {
    match serde_json::to_vec(review) {
        Ok(body) => Reply {
            status,
            body,
            verdict,
        },
        // Serialising a response made of strings and maps cannot fail; answer with a fixed body anyway.
        Err(_) => Reply {
            status: 500,
            body: br#"{"error":"cannot serialise the admission response"}"#.to_vec(),
            verdict: "invalid",
        },
    }
}

fn invalid(reason: impl std::fmt::Display) -> Reply {
    let review = AdmissionResponse::invalid(format!("not an AdmissionReview: {reason}")).into_review();
    reply(400, &review, "invalid")
}

/// Answers one admission request arriving on `route` with `body`, reading the cluster through `view`.
pub fn handle(route: Route, body: &[u8], view: &dyn ClusterView) -> Reply {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return invalid(e),
    };
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if kind != "AdmissionReview" || !API_VERSIONS.contains(&api_version) {
        return invalid(format!("apiVersion {api_version:?} kind {kind:?}"));
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_value(value) {
        Ok(review) => review,
        Err(e) => return invalid(e),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return invalid("the review has no request"),
    };
    let response = AdmissionResponse::from(&request);
    let (response, verdict) = match route {
        Route::Mutate => on_mutate(&request, response, view),
        Route::Validate => on_validate(&request, response, view),
    };
    reply(200, &response.into_review(), verdict)
}

fn object_value(object: &DynamicObject) -> Option<serde_json::Value> {
    serde_json::to_value(object).ok()
}

fn on_mutate(
    request: &AdmissionRequest<DynamicObject>,
    response: AdmissionResponse,
    view: &dyn ClusterView,
) -> (AdmissionResponse, &'static str) {
    let is_pod_create = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.operation == Operation::Create
        && request.sub_resource.is_none();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    if !is_pod_create || NEVER_SELECTED.contains(&namespace) {
        return (response, "allowed");
    }
    // Mutation fails open: a pod we cannot read is left alone (validation still sees it).
    let Some(pod) = request
        .object
        .as_ref()
        .and_then(object_value)
        .and_then(|v| serde_json::from_value::<Pod>(v).ok())
    else {
        return (response, "allowed");
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let instances = view.instances();
    let namespace_labels = view.namespace_labels(namespace);
    let Some(instance) = selection::choose(
        &labels,
        namespace,
        namespace_labels.as_ref(),
        instances.iter().map(|i| i.as_ref()),
    ) else {
        return (response, "allowed");
    };
    let default_image = view.default_sidecar_image();
    match mutate::mutate(&pod, namespace, instance, view.server_version(), &default_image) {
        MutateOutcome::Patch(ops) => match response.clone().with_patch(json_patch::Patch(ops)) {
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

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).extend(warnings);
    response
}

fn apply(response: AdmissionResponse, verdict: Verdict) -> (AdmissionResponse, &'static str) {
    match verdict {
        Verdict::Allow => (response, "allowed"),
        Verdict::AllowWithWarnings(warnings) => (with_warnings(response, warnings), "warned"),
        Verdict::Deny(denial) => (response.deny(denial.message), "denied"),
    }
}

fn typed<T: serde::de::DeserializeOwned>(object: Option<&DynamicObject>) -> Option<Result<T, String>> {
    let value = object.and_then(object_value)?;
    Some(serde_json::from_value(value).map_err(|e| e.to_string()))
}

fn on_validate(
    request: &AdmissionRequest<DynamicObject>,
    response: AdmissionResponse,
    view: &dyn ClusterView,
) -> (AdmissionResponse, &'static str) {
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
        let Some(object) = request.object.as_ref().and_then(object_value).filter(|_| checked) else {
            return (response, "allowed");
        };
        let workload = match Workload::from_value(workload_kind, object) {
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
            match typed::<AIRuntimeInstance>(request.object.as_ref()) {
                Some(Ok(instance)) => {
                    let old = match typed::<AIRuntimeInstance>(request.old_object.as_ref()) {
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
            match typed::<DynamicAddressGroup>(request.object.as_ref()) {
                Some(Ok(group)) => apply(response, validate::validate_group(&group)),
                Some(Err(e)) => unreadable(response, kind, e),
                None => (response, "allowed"),
            }
        }
        ("AISecurityProfile", Operation::Delete) => {
            let name = request
                .old_object
                .as_ref()
                .and_then(|o| o.metadata.name.clone())
                .unwrap_or_else(|| request.name.clone());
            if name.is_empty() {
                return (response, "allowed");
            }
            apply(response, validate::validate_profile_delete(&name, view))
        }
        _ => (response, "allowed"),
    }
}

fn unreadable(response: AdmissionResponse, kind: &str, error: String) -> (AdmissionResponse, &'static str) {
    (
        response.deny(format!("cannot read the {kind}: {error}")),
        "denied",
    )
}

/// Whether an UPDATE leaves the pods a controller makes as they were (scaling, labels on the controller,
/// finalizers): existing workloads are not rejected for changes that do not touch what runs.
fn unchanged_template(
    request: &AdmissionRequest<DynamicObject>,
    kind: airlock_crds::v1alpha1::WorkloadKind,
    new: &Workload,
) -> bool {
    let Some(old) = request.old_object.as_ref().and_then(object_value) else {
        return false;
    };
    Workload::from_value(kind, old)
        .is_ok_and(|old| old.pod_spec == new.pod_spec && old.pod_labels == new.pod_labels)
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
