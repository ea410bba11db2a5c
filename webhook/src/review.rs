//! The admission-review handler: bytes in, an AdmissionReview (or a 4xx) out. Pure: everything it needs
//! to know about the cluster comes through [`ClusterView`], so it is tested without a server or a cluster.
//!
//! The flow: parse the review in one pass (objects stay raw JSON until a decision reads them; a Pod
//! CREATE, the review admission sees most, is read by [`crate::direct`] without serde) → an
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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, Status};
use serde_json::value::RawValue;

use crate::mutate::{self, MutateOutcome, SkipReason};
use crate::selection::{self, NEVER_SELECTED};
use crate::validate::{self, Verdict};
use crate::workload::{Workload, workload_kind};
use k8s_openapi::api::core::v1::Pod;

/// The fields of an AdmissionReview's `request` that admission reads, in the order both readers number
/// them: serde's (here) and the direct reader's (`direct.rs`).
pub(crate) const REQUEST_FIELDS: [&str; 10] = [
    "uid",
    "kind",
    "resource",
    "subResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "object",
    "oldObject",
];

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

/// An AdmissionReview as it arrives, read in one pass. The request's object is read straight into what
/// the decision needs (a pod to inject, a workload to validate) when the review says what it is before
/// the object comes, as the API server always does; anything else stays raw JSON (borrowed from the
/// body) until a decision reads it. Building a generic value first and converting it cost more than
/// the decisions themselves.
#[derive(Debug)]
pub(crate) struct RawReview<'a> {
    pub(crate) api_version: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) request: Option<RawRequest<'a>>,
}

/// The fields of an `AdmissionRequest` the handler reads; those the API server always sends are
/// required, as in `kube`'s own type.
#[derive(Debug)]
pub(crate) struct RawRequest<'a> {
    pub(crate) uid: String,
    pub(crate) kind: GroupVersionKind,
    pub(crate) sub_resource: Option<String>,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) operation: Operation,
    pub(crate) object: Object<'a>,
    pub(crate) old_object: Option<&'a RawValue>,
}

/// A request's `object`.
#[derive(Debug)]
pub(crate) enum Object<'a> {
    /// Absent or `null`.
    Absent,
    /// Raw JSON, read when a decision needs it.
    Raw(&'a RawValue),
    /// The pod to inject, read as it arrived.
    Pod(Box<Pod>),
    /// The workload to validate, read as it arrived.
    Workload(Box<Workload>),
}

impl<'a> Object<'a> {
    /// The raw JSON, when it was kept raw.
    fn raw(&self) -> Option<&'a str> {
        match self {
            Object::Raw(json) => raw(Some(json)),
            _ => None,
        }
    }

    /// The raw JSON value, when it was kept raw.
    fn raw_value(&self) -> Option<&'a RawValue> {
        match self {
            Object::Raw(json) => Some(json),
            _ => None,
        }
    }

    /// The pod, however it was read; `None` when absent or unreadable.
    fn into_pod(self) -> Option<Pod> {
        match self {
            Object::Pod(pod) => Some(*pod),
            Object::Raw(json) => raw(Some(json)).and_then(|json| crate::lean::pod(json).ok()),
            Object::Absent | Object::Workload(_) => None,
        }
    }

    /// The workload of `kind`, however it was read; `None` when absent.
    fn into_workload(
        self,
        kind: airlock_crds::v1alpha1::WorkloadKind,
    ) -> Option<Result<Workload, crate::workload::ObjectError>> {
        match self {
            Object::Workload(workload) if workload.kind == kind => Some(Ok(*workload)),
            Object::Raw(json) => raw(Some(json)).map(|json| Workload::from_json(kind, json)),
            Object::Absent | Object::Pod(_) | Object::Workload(_) => None,
        }
    }
}

/// Reads a review; with `eager`, the object is read as its decision needs it (see [`RawReview`]).
struct ReviewSeed {
    route: Route,
    eager: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for ReviewSeed {
    type Value = RawReview<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ReviewSeed {
    type Value = RawReview<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut review = RawReview {
            api_version: None,
            kind: None,
            request: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "apiVersion" => review.api_version = map.next_value()?,
                "kind" => review.kind = map.next_value()?,
                "request" => {
                    review.request = map.next_value_seed(OptionSeed(RequestSeed {
                        route: self.route,
                        eager: self.eager,
                    }))?
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(review)
    }
}

/// `null` or what the inner seed reads.
struct OptionSeed<S>(S);

impl<'de, S: serde::de::DeserializeSeed<'de>> serde::de::DeserializeSeed<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: serde::de::DeserializeSeed<'de>> serde::de::Visitor<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null or a value")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

struct RequestSeed {
    route: Route,
    eager: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for RequestSeed {
    type Value = RawRequest<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RequestSeed {
    type Value = RawRequest<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut uid = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource = false;
        let mut sub_resource = None;
        let mut name = None;
        let mut namespace = None;
        let mut operation: Option<Operation> = None;
        let mut user_info = false;
        let mut object = None;
        let mut old_object = None;
        // Each field at most once, as serde's derived readers require.
        const FIELDS: [&str; 10] = REQUEST_FIELDS;
        let mut seen = [false; FIELDS.len()];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if let Some(i) = FIELDS.iter().position(|f| *f == key.as_ref()) {
                if seen[i] {
                    return Err(A::Error::duplicate_field(FIELDS[i]));
                }
                seen[i] = true;
            }
            match key.as_ref() {
                "uid" => uid = Some(map.next_value::<String>()?),
                "kind" => kind = Some(map.next_value()?),
                "resource" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    resource = true;
                }
                "subResource" => sub_resource = map.next_value()?,
                "name" => name = Some(map.next_value::<String>()?),
                "namespace" => namespace = map.next_value()?,
                "operation" => operation = Some(map.next_value()?),
                "userInfo" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    user_info = true;
                }
                "object" => {
                    let eager = self
                        .eager
                        .then(|| eager_as(self.route, kind.as_ref()?, operation.as_ref()?))
                        .flatten();
                    object = Some(match eager {
                        Some(as_) => map.next_value_seed(OptionSeed(as_))?.unwrap_or(Object::Absent),
                        None => map
                            .next_value::<Option<&'de RawValue>>()?
                            .map_or(Object::Absent, Object::Raw),
                    });
                }
                "oldObject" => old_object = map.next_value()?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !resource {
            return Err(A::Error::missing_field("resource"));
        }
        if !user_info {
            return Err(A::Error::missing_field("userInfo"));
        }
        Ok(RawRequest {
            uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
            sub_resource,
            name: name.unwrap_or_default(),
            namespace,
            operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
            object: object.unwrap_or(Object::Absent),
            old_object,
        })
    }
}

/// How to read the object of a request of `kind` and `operation` on `route` as it arrives: only what a
/// decision will certainly read (a pod CREATE to inject; a workload CREATE or UPDATE to validate).
fn eager_as(route: Route, kind: &GroupVersionKind, operation: &Operation) -> Option<ObjectSeed> {
    let workload = workload_kind(&kind.group, &kind.kind)?;
    match (route, operation) {
        (Route::Mutate, Operation::Create) if workload == airlock_crds::v1alpha1::WorkloadKind::Pod => {
            Some(ObjectSeed::Pod)
        }
        // An UPDATE keeps its object raw: it is compared in full with the old one.
        (Route::Validate, Operation::Create) => Some(ObjectSeed::Workload(workload)),
        _ => None,
    }
}

enum ObjectSeed {
    Pod,
    Workload(airlock_crds::v1alpha1::WorkloadKind),
}

impl<'de> serde::de::DeserializeSeed<'de> for ObjectSeed {
    type Value = Object<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Ok(match self {
            ObjectSeed::Pod => Object::Pod(Box::new(crate::lean::pod_from(deserializer)?)),
            ObjectSeed::Workload(kind) => Object::Workload(Box::new(Workload::from_lean(
                kind,
                crate::lean::workload_from(kind, deserializer)?,
            ))),
        })
    }
}

/// How a review is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// [`crate::direct`] for a Pod CREATE, and serde's one-pass read for all else.
    Direct,
    /// serde, reading the object as it arrives when the review says first what it is.
    OnePass,
    /// serde, keeping the object raw until a decision reads it: the reference.
    TwoPass,
}

/// Reads a review: in one pass when it can; an object that cannot be read as its decision needs makes
/// the whole read fail, so it is read again with the object kept raw, for the decision to report.
///
/// JSON is UTF-8: the whole body is checked first, since strings the one-pass read skips are not.
pub(crate) fn read_review(route: Route, body: &[u8], how: Reading) -> Result<RawReview<'_>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    if how == Reading::Direct
        && let Some(review) = crate::direct::review(route, text)
    {
        return Ok(review);
    }
    let read = |eager| {
        use serde::de::DeserializeSeed as _;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let review = ReviewSeed { route, eager }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(review)
    };
    let review = if how != Reading::TwoPass {
        read(true).or_else(|_: serde_json::Error| read(false))
    } else {
        read(false)
    };
    review.map_err(|e| e.to_string())
}

/// The `response` of an AdmissionReview, as the API server reads it. The patch goes out as base64, as Go
/// encodes `[]byte` (kube's own type writes an array of numbers: accepted, but three times the size and
/// slower to write); see [`reply`].
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    /// The JSON Patch, as JSON; written by [`reply`].
    #[serde(skip)]
    patch: Option<Vec<u8>>,
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
        let mut json = Vec::with_capacity(patch.json_len_hint());
        serde_json::to_writer(&mut json, patch)?;
        self.patch = Some(json);
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
        Ok(mut body) => {
            if let Some(patch) = &response.patch {
                with_patch(&mut body, patch);
            }
            Reply {
                status,
                body,
                verdict,
            }
        }
        // Serialising a response made of strings cannot fail; answer with a fixed body anyway.
        Err(_) => Reply {
            status: 500,
            body: br#"{"error":"cannot serialise the admission response"}"#.to_vec(),
            verdict: "invalid",
        },
    }
}

/// Adds `"patch":"<base64>","patchType":"JSONPatch"` to the response of a written review. The base64 goes
/// straight into the body: as a JSON string it would be scanned for characters to escape, and base64 has
/// none (that scan and the encoding were a third of an injection). The encoder is `base64-simd`'s, which
/// picks the CPU's vector instructions at run time: a 3 KB patch took 1.4 µs with the `base64` crate's
/// scalar engine (a tenth of an injection) and takes 0.35 µs.
fn with_patch(body: &mut Vec<u8>, patch: &[u8]) {
    // The review is written compactly and ends with its response: `...}}`.
    debug_assert!(body.ends_with(b"}}"));
    body.truncate(body.len().saturating_sub(2));
    body.extend_from_slice(br#","patch":""#);
    base64_simd::STANDARD.encode_append(patch, body);
    body.extend_from_slice(br#"","patchType":"JSONPatch"}}"#);
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
    handle_read(route, body, view, Reading::Direct)
}

/// [`handle`] with serde's one-pass read for every review, the direct reader's ([`crate::direct`]) too:
/// what the benchmark compares the direct reader with.
#[doc(hidden)]
pub fn handle_serde(route: Route, body: &[u8], view: &dyn ClusterView) -> Reply {
    handle_read(route, body, view, Reading::OnePass)
}

/// [`handle`] with every object kept raw until its decision reads it: the reference the one-pass read
/// is tested against (it must answer exactly the same).
#[doc(hidden)]
pub fn handle_two_pass(route: Route, body: &[u8], view: &dyn ClusterView) -> Reply {
    handle_read(route, body, view, Reading::TwoPass)
}

fn handle_read(route: Route, body: &[u8], view: &dyn ClusterView, how: Reading) -> Reply {
    let review = match read_review(route, body, how) {
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
        Route::Mutate => on_mutate(request, response, view),
        Route::Validate => on_validate(request, response, view),
    };
    reply(200, api_version, &response, verdict)
}

/// The object's JSON text; `None` when absent or `null`.
fn raw(object: Option<&RawValue>) -> Option<&str> {
    object.map(RawValue::get).filter(|json| *json != "null")
}

fn on_mutate(
    request: RawRequest<'_>,
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
    let Some(pod) = request.object.into_pod() else {
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
    request: RawRequest<'_>,
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
        let (old, current) = (raw(request.old_object), request.object.raw());
        let Some(read) = request.object.into_workload(workload_kind).filter(|_| checked) else {
            return (response, "allowed");
        };
        let workload = match read {
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
        if *operation == Operation::Update && unchanged_template(workload_kind, old, current, &workload) {
            return (response, "allowed");
        }
        return apply(response, validate::validate(&workload, namespace, view));
    }

    if group != airlock_crds::GROUP {
        return (response, "allowed");
    }
    match (kind, operation) {
        ("AIRuntimeInstance", Operation::Create | Operation::Update) => {
            match typed::<AIRuntimeInstance>(request.object.raw_value()) {
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
            match typed::<DynamicAddressGroup>(request.object.raw_value()) {
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
    kind: airlock_crds::v1alpha1::WorkloadKind,
    old: Option<&str>,
    current: Option<&str>,
    new: &Workload,
) -> bool {
    let (Some(old), Some(current)) = (old, current) else {
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
    crate::lean::full(kind, json).and_then(|(_, template)| template)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/reviews/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn pod_and_workload_creates_are_read_in_one_pass_other_objects_stay_raw() {
        let pod = fixture("pod-create-app.json");
        let read = read_review(Route::Mutate, &pod, Reading::OnePass).unwrap();
        assert!(matches!(read.request.unwrap().object, Object::Pod(_)));

        let deployment = fixture("deployment-create-vllm.json");
        let read = read_review(Route::Validate, &deployment, Reading::OnePass).unwrap();
        assert!(matches!(read.request.unwrap().object, Object::Workload(_)));

        // Not a pod on /mutate, an UPDATE, one of Airlock's own kinds: raw until a decision reads them.
        for (route, name) in [
            (Route::Mutate, "deployment-create-vllm.json"),
            (Route::Validate, "pod-update.json"),
            (Route::Validate, "group-bad-match.json"),
        ] {
            let body = fixture(name);
            let read = read_review(route, &body, Reading::OnePass).unwrap();
            assert!(matches!(read.request.unwrap().object, Object::Raw(_)), "{name}");
        }
        // The two-pass reference never reads ahead.
        let read = read_review(Route::Mutate, &pod, Reading::TwoPass).unwrap();
        assert!(matches!(read.request.unwrap().object, Object::Raw(_)));
    }
}
