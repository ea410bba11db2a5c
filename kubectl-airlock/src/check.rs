//! `kubectl airlock check`: what Airlock's admission webhooks would decide about manifests, offline.
//!
//! The decisions are the webhook's own: every workload is wrapped in an AdmissionReview (CREATE) and
//! handed to [`airlock_webhook::review::handle`] with a [`StaticView`] built from the profiles,
//! instances and namespaces among the inputs. A Pod goes through `/mutate` and then, as mutated,
//! through `/validate`, as the API server would send it. A controller (Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, Job, CronJob) is validated itself, and then the pod its template would make
//! goes through both webhooks too: an admitted Deployment whose pods would all be rejected is a
//! failure a CI check should catch.
//!
//! This module only explains outcomes (which instance, why nothing happened); it decides nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_crds::v1alpha1::{Mode, WorkloadKind};
use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use airlock_webhook::fingerprint;
use airlock_webhook::mutate::{ANNOTATION_STATUS, InjectionStatus, LABEL_INJECT, SIDECAR_NAME};
use airlock_webhook::review::{ClusterView, Route, StaticView, handle};
use airlock_webhook::selection::{self, NEVER_SELECTED};
use airlock_webhook::workload::{Workload, kind_name, workload_kind};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::output::{Table, plural};

/// The label the API server gives every namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What admission would do with a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Admitted, and the pods get the `airlock-sidecar`.
    Injected,
    /// Admitted untouched.
    Admitted,
    /// Admitted with warnings (an auditing instance, a pod Airlock cannot inject).
    Warned,
    /// Refused.
    Denied,
    /// Not a workload (listed only with `--show-ignored`).
    Ignored,
}

impl Decision {
    /// The spelling in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Injected => "injected",
            Decision::Admitted => "admitted",
            Decision::Warned => "warned",
            Decision::Denied => "denied",
            Decision::Ignored => "ignored",
        }
    }
}

/// The decision about one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The file the object comes from.
    pub file: String,
    /// Its first line there.
    pub line: usize,
    /// Its kind.
    pub kind: String,
    /// Its namespace (the `-n` default when it names none); empty for cluster-scoped objects.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What admission would do.
    pub decision: Decision,
    /// The `AIRuntimeInstance` that applies, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// That instance's mode (`enforce` or `audit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Why: the webhook's denial message, its warnings, or what decided.
    pub reason: String,
}

/// Counts of each decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Workloads whose pods get the sidecar.
    pub injected: usize,
    /// Workloads admitted untouched.
    pub admitted: usize,
    /// Workloads admitted with warnings.
    pub warned: usize,
    /// Workloads refused.
    pub denied: usize,
    /// Objects that are not workloads.
    pub ignored: usize,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One outcome per object, in input order.
    pub results: Vec<Outcome>,
    /// Counts.
    pub summary: Summary,
    /// Assumptions the decisions rest on (namespaces not among the inputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// Whether anything would be denied (`check` then exits with 1).
    pub fn has_denials(&self) -> bool {
        self.summary.denied > 0
    }
}

/// Parses `--kube-version`: `1.33`, `v1.33` or `1.33.2`.
pub fn parse_version(text: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::Usage(format!(
            "--kube-version {text:?} is not a Kubernetes version like 1.33"
        ))
    };
    let trimmed = text.trim().trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
    let minor = parts
        .next()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .ok_or_else(bad)?;
    Ok((major, minor))
}

fn typed<T: serde::de::DeserializeOwned>(manifest: &Manifest) -> Result<T> {
    serde_json::from_value(manifest.object.clone()).map_err(|e| Error::Input {
        location: manifest.origin.to_string(),
        message: format!("cannot read the {}: {e}", manifest.kind),
    })
}

/// Whether a manifest is one of the objects that make up the cluster view.
fn is_cluster_state(manifest: &Manifest) -> bool {
    matches!(
        (manifest.group(), manifest.kind.as_str()),
        (airlock_crds::GROUP, "AIRuntimeInstance" | "AISecurityProfile") | ("", "Namespace")
    )
}

/// The cluster as the inputs describe it: their profiles, instances and namespaces (a namespace gets
/// the `kubernetes.io/metadata.name` label the API server would give it), on Kubernetes `version`.
pub fn cluster_view<'a, I>(manifests: I, version: (u32, u32)) -> Result<StaticView>
where
    I: IntoIterator<Item = &'a Manifest>,
{
    let mut view = StaticView::new().with_version(version.0, version.1);
    for manifest in manifests.into_iter().filter(|m| is_cluster_state(m)) {
        match manifest.kind.as_str() {
            "AIRuntimeInstance" => view
                .instances
                .push(Arc::new(typed::<AIRuntimeInstance>(manifest)?)),
            "AISecurityProfile" => {
                let profile: AISecurityProfile = typed(manifest)?;
                view.profiles.insert(
                    profile.metadata.name.clone().unwrap_or_default(),
                    Arc::new(profile),
                );
            }
            _ => {
                let name = manifest.name();
                let mut labels: BTreeMap<String, String> =
                    serde_json::from_value(manifest.object["metadata"]["labels"].clone()).unwrap_or_default();
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                view.namespaces.insert(name, labels);
            }
        }
    }
    Ok(view)
}

/// The webhook's answer, as much of it as `check` needs.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    status: Option<AnswerStatus>,
    /// The JSON Patch, base64 as the API server reads it.
    #[serde(default)]
    patch: Option<String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct AnswerStatus {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AnsweredReview {
    response: Answer,
}

/// Sends `object` (a CREATE of `group/kind` in `namespace`) to the webhook's `route`.
fn review(
    route: Route,
    group: &str,
    kind: &str,
    namespace: &str,
    object: &Value,
    view: &dyn ClusterView,
) -> Answer {
    // The webhook reads the group and kind; every workload kind it knows is served as v1.
    let version = "v1";
    let request = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "kubectl-airlock-check",
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": format!("{}s", kind.to_lowercase()) },
            "name": object["metadata"]["name"].as_str().unwrap_or_default(),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": { "username": "kubectl-airlock-check" },
            "object": object,
            "oldObject": null,
            "dryRun": true
        }
    });
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let reply = handle(route, &body, view);
    match serde_json::from_slice::<AnsweredReview>(&reply.body) {
        Ok(review) => review.response,
        // The handler answers every well-formed review; anything else is a bug worth surfacing.
        Err(_) => Answer {
            allowed: false,
            status: Some(AnswerStatus {
                message: Some(String::from_utf8_lossy(&reply.body).into_owned()),
            }),
            ..Answer::default()
        },
    }
}

impl Answer {
    fn message(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone().unwrap_or_default()
    }
}

/// A pod after `/mutate`: its (possibly patched) JSON, whether it was patched, and the warnings.
struct Mutated {
    pod: Value,
    patched: bool,
    warnings: Vec<String>,
}

fn mutate(pod: &Value, namespace: &str, view: &dyn ClusterView) -> Mutated {
    let answer = review(Route::Mutate, "", "Pod", namespace, pod, view);
    let mut out = Mutated {
        pod: pod.clone(),
        patched: false,
        warnings: answer.warnings(),
    };
    if let Some(encoded) = answer.patch.as_deref()
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded)
        && let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(&bytes)
        && json_patch::patch(&mut out.pod, &patch).is_ok()
    {
        out.patched = true;
    }
    out
}

/// What validation said.
enum Validated {
    Allowed(Vec<String>),
    Denied(String),
}

fn validate(group: &str, kind: &str, namespace: &str, object: &Value, view: &dyn ClusterView) -> Validated {
    let answer = review(Route::Validate, group, kind, namespace, object, view);
    if answer.allowed {
        Validated::Allowed(answer.warnings())
    } else {
        Validated::Denied(answer.message())
    }
}

/// The pod a controller's template would make, owned by the controller (so that exemptions naming the
/// controller apply to it, as they do in the cluster).
fn template_pod(manifest: &Manifest, kind: WorkloadKind, namespace: &str) -> Value {
    let template = match kind {
        WorkloadKind::CronJob => &manifest.object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &manifest.object["spec"]["template"],
    };
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    let name = manifest.name();
    metadata["generateName"] = json!(format!("{}-", name.trim_end_matches('*')));
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([{
        "apiVersion": manifest.api_version,
        "kind": manifest.kind,
        "name": name,
        "uid": "",
        "controller": true
    }]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"].clone(),
    })
}

/// The instance named in the patched pod's `airlock.dev/status`, and its mode.
fn injected_by(pod: &Value, view: &dyn ClusterView) -> (Option<String>, Option<String>) {
    let status = pod["metadata"]["annotations"][ANNOTATION_STATUS]
        .as_str()
        .and_then(|s| serde_json::from_str::<InjectionStatus>(s).ok());
    let Some(status) = status else {
        return (None, None);
    };
    let mode = view
        .instances()
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some(status.instance.as_str()))
        .map(|i| mode_name(i.spec.mode).to_owned());
    (Some(status.instance), mode)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// Whether the sidecar of a mutated pod is a native sidecar (an init container).
fn native_sidecar(pod: &Value) -> bool {
    pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == SIDECAR_NAME))
}

/// Why a workload that admission leaves alone is left alone.
fn why_admitted(workload: &Workload, namespace: &str, view: &dyn ClusterView) -> String {
    if NEVER_SELECTED.contains(&namespace) {
        return format!("namespace {namespace} is never intercepted");
    }
    let instances = view.instances();
    let extra: Vec<_> = instances
        .iter()
        .filter_map(|i| i.spec.model_servers.as_ref())
        .flat_map(|m| m.extra_fingerprints.iter().cloned())
        .collect();
    let model = fingerprint::detect(&workload.pod_labels, &workload.pod_spec, &extra).filter(|m| m.strong);
    let exemption = instances.iter().find_map(|instance| {
        workload.exemption_candidates().iter().find_map(|(kind, name)| {
            selection::exemption_for(instance, namespace, *kind, name).map(|e| (instance, e))
        })
    });
    let namespace_labels = view.namespace_labels(namespace);
    let chosen = selection::choose(
        &workload.pod_labels,
        namespace,
        namespace_labels.as_ref(),
        instances.iter().map(|i| i.as_ref()),
    );
    let mut parts = Vec::new();
    if let (Some(m), Some((instance, exemption))) = (&model, exemption) {
        parts.push(format!(
            "model server ({}) exempted by AIRuntimeInstance {:?}: {}",
            m.fingerprint,
            instance.metadata.name.as_deref().unwrap_or_default(),
            exemption.reason
        ));
    }
    if workload.pod_labels.get(LABEL_INJECT).map(String::as_str) == Some("false") {
        parts.push(format!("opted out with {LABEL_INJECT}: \"false\""));
    } else if workload.has_sidecar() {
        parts.push(format!("already carries {SIDECAR_NAME}"));
    } else if chosen.is_none() {
        parts.push("no AIRuntimeInstance selects it".to_owned());
    }
    if model.is_none() {
        parts.push("not a model server".to_owned());
    }
    parts.join("; ")
}

fn injected_reason(instance: Option<&str>, mode: Option<&str>, native: bool) -> String {
    format!(
        "AIRuntimeInstance {:?} ({}) adds {SIDECAR_NAME} as a {}",
        instance.unwrap_or_default(),
        mode.unwrap_or("unknown mode"),
        if native { "native sidecar" } else { "container" }
    )
}

/// The kinds `check` decides about as workloads.
const WORKLOAD_KINDS: [&str; 7] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

/// The decision about one manifest; `default_namespace` applies to objects that name none.
pub fn decide(manifest: &Manifest, default_namespace: &str, view: &dyn ClusterView) -> Outcome {
    let mut outcome = Outcome {
        file: manifest.origin.file.clone(),
        line: manifest.origin.line,
        kind: manifest.kind.clone(),
        namespace: String::new(),
        name: manifest.name(),
        decision: Decision::Ignored,
        instance: None,
        mode: None,
        reason: String::new(),
    };
    // Airlock's own objects that the validating webhook checks beyond their schema: an instance must
    // name profiles that exist (among the inputs), a group's match must parse.
    if manifest.group() == airlock_crds::GROUP
        && matches!(
            manifest.kind.as_str(),
            "AIRuntimeInstance" | "DynamicAddressGroup"
        )
        && let Validated::Denied(message) =
            validate(manifest.group(), &manifest.kind, "", &manifest.object, view)
    {
        outcome.decision = Decision::Denied;
        // One line, for the table (a parser's message points at the error on a second line).
        outcome.reason = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        return outcome;
    }
    let Some(kind) = workload_kind(manifest.group(), &manifest.kind) else {
        outcome.reason = if is_cluster_state(manifest) {
            "part of the cluster view".to_owned()
        } else {
            "not a workload".to_owned()
        };
        outcome.namespace = manifest.namespace().unwrap_or_default().to_owned();
        return outcome;
    };
    let namespace = manifest.namespace().unwrap_or(default_namespace).to_owned();
    outcome.namespace.clone_from(&namespace);
    // The API server fills in the request's namespace before admission.
    let mut object = manifest.object.clone();
    object["metadata"]["namespace"] = json!(namespace);

    let workload = match Workload::from_value(kind, object.clone()) {
        Ok(workload) => workload,
        Err(e) => {
            outcome.decision = Decision::Denied;
            outcome.reason = e.to_string();
            return outcome;
        }
    };
    let group = manifest.group();

    let mut warnings = Vec::new();
    let pod = if kind == WorkloadKind::Pod {
        object
    } else {
        match validate(group, kind_name(kind), &namespace, &object, view) {
            Validated::Denied(message) => {
                outcome.decision = Decision::Denied;
                outcome.reason = message;
                return outcome;
            }
            Validated::Allowed(w) => warnings.extend(w),
        }
        template_pod(manifest, kind, &namespace)
    };

    let mutated = mutate(&pod, &namespace, view);
    warnings.extend(mutated.warnings.iter().cloned());
    if mutated.patched {
        let (instance, mode) = injected_by(&mutated.pod, view);
        outcome.instance = instance;
        outcome.mode = mode;
    }
    match validate("", "Pod", &namespace, &mutated.pod, view) {
        Validated::Denied(message) => {
            outcome.decision = Decision::Denied;
            outcome.reason = if kind == WorkloadKind::Pod {
                message
            } else {
                format!(
                    "the {} is admitted but the pods it makes would be denied: {message}",
                    manifest.kind
                )
            };
            return outcome;
        }
        // A controller's own warning already says what its pods' would.
        Validated::Allowed(w) if warnings.is_empty() || kind == WorkloadKind::Pod => warnings.extend(w),
        Validated::Allowed(_) => {}
    }
    warnings.dedup();

    if !warnings.is_empty() {
        outcome.decision = Decision::Warned;
        let mut reason = warnings.join("; ");
        if mutated.patched {
            reason = format!(
                "{}; {reason}",
                injected_reason(
                    outcome.instance.as_deref(),
                    outcome.mode.as_deref(),
                    native_sidecar(&mutated.pod)
                )
            );
        }
        outcome.reason = reason;
    } else if mutated.patched {
        outcome.decision = Decision::Injected;
        outcome.reason = injected_reason(
            outcome.instance.as_deref(),
            outcome.mode.as_deref(),
            native_sidecar(&mutated.pod),
        );
    } else {
        outcome.decision = Decision::Admitted;
        outcome.reason = why_admitted(&workload, &namespace, view);
    }
    outcome
}

/// Decides about every manifest in `inputs`; the cluster view comes from `inputs` and `state`.
pub fn check(
    inputs: &[Manifest],
    state: &[Manifest],
    default_namespace: &str,
    version: (u32, u32),
    show_ignored: bool,
) -> Result<Report> {
    let view = cluster_view(inputs.iter().chain(state), version)?;
    let mut report = Report::default();
    let mut unknown_namespaces = Vec::new();
    for manifest in inputs {
        let outcome = decide(manifest, default_namespace, &view);
        match outcome.decision {
            Decision::Injected => report.summary.injected += 1,
            Decision::Admitted => report.summary.admitted += 1,
            Decision::Warned => report.summary.warned += 1,
            Decision::Denied => report.summary.denied += 1,
            Decision::Ignored => report.summary.ignored += 1,
        }
        if outcome.decision != Decision::Ignored
            && !outcome.namespace.is_empty()
            && !view.namespaces.contains_key(&outcome.namespace)
            && !unknown_namespaces.contains(&outcome.namespace)
        {
            unknown_namespaces.push(outcome.namespace.clone());
        }
        if outcome.decision != Decision::Ignored || show_ignored {
            report.results.push(outcome);
        }
    }
    report.notes = unknown_namespaces
        .into_iter()
        .map(|ns| {
            format!(
                "namespace {ns:?} is not among the inputs: taken to have only the label \
                 {NAMESPACE_NAME_LABEL}={ns} (add it, or use --cluster-state)"
            )
        })
        .collect();
    Ok(report)
}

/// The table: FILE:LINE, KIND, NAMESPACE/NAME, DECISION, REASON; then a summary line and the notes.
pub fn render_table(report: &Report) -> String {
    let mut table = Table::new(["FILE:LINE", "KIND", "NAMESPACE/NAME", "DECISION", "REASON"]);
    for r in &report.results {
        let who = if r.namespace.is_empty() {
            r.name.clone()
        } else {
            format!("{}/{}", r.namespace, r.name)
        };
        table.row([
            format!("{}:{}", r.file, r.line),
            r.kind.clone(),
            who,
            r.decision.as_str().to_owned(),
            r.reason.clone(),
        ]);
    }
    let mut out = if table.is_empty() {
        "No workloads found.\n".to_owned()
    } else {
        table.render()
    };
    let s = &report.summary;
    let decided = s.injected + s.admitted + s.warned + s.denied;
    // Airlock's own objects are decided too (an instance naming a missing profile is denied).
    let only_workloads = report
        .results
        .iter()
        .all(|r| r.decision == Decision::Ignored || WORKLOAD_KINDS.contains(&r.kind.as_str()));
    out.push_str(&format!(
        "\n{}: {} injected, {} admitted, {} warned, {} denied\n",
        plural(
            i64::try_from(decided).unwrap_or(i64::MAX),
            if only_workloads { "workload" } else { "object" }
        ),
        s.injected,
        s.admitted,
        s.warned,
        s.denied
    ));
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
