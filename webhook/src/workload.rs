//! The pod template and metadata of every pod-making kind, so that validation treats a Pod and the six
//! controllers (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) alike.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::WorkloadKind;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// An admission request carried an object that is not a valid instance of its kind.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the {kind}: {source}")]
pub struct ObjectError {
    /// The kind the object claimed to be.
    pub kind: &'static str,
    /// What serde found wrong.
    #[source]
    pub source: serde_json::Error,
}

type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// A pod or pod-making controller, reduced to what admission decisions need.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The kind of the object.
    pub kind: WorkloadKind,
    /// Its name (for a pod created with `generateName`, the prefix followed by `*`).
    pub name: String,
    /// Its namespace as written in the object, if any (the request's namespace is authoritative).
    pub namespace: Option<String>,
    /// The labels of the pods it makes (for a Pod, its own labels).
    pub pod_labels: BTreeMap<String, String>,
    /// The spec of the pods it makes.
    pub pod_spec: PodSpec,
    /// The object's owner references (a Pod made by a ReplicaSet, a Job made by a CronJob).
    pub owners: Vec<OwnerReference>,
    /// Whether the object is being deleted (finalizer removal must never be blocked).
    pub deleting: bool,
}

/// The Kubernetes kind name of a workload kind, e.g. `Deployment`.
pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Pod => "Pod",
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
        WorkloadKind::ReplicaSet => "ReplicaSet",
        WorkloadKind::Job => "Job",
        WorkloadKind::CronJob => "CronJob",
    }
}

/// The workload kind of an API group and kind, e.g. (`apps`, `Deployment`); `None` for anything else.
pub fn workload_kind(group: &str, kind: &str) -> Option<WorkloadKind> {
    Some(match (group, kind) {
        ("", "Pod") => WorkloadKind::Pod,
        ("apps", "Deployment") => WorkloadKind::Deployment,
        ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
        ("apps", "DaemonSet") => WorkloadKind::DaemonSet,
        ("apps", "ReplicaSet") => WorkloadKind::ReplicaSet,
        ("batch", "Job") => WorkloadKind::Job,
        ("batch", "CronJob") => WorkloadKind::CronJob,
        _ => return None,
    })
}

/// Where an object's JSON comes from: an already parsed value, or the raw text of an admission request.
enum Source<'a> {
    Value(serde_json::Value),
    Json(&'a str),
}

fn parse<T: serde::de::DeserializeOwned>(kind: WorkloadKind, source: Source<'_>) -> Result<T> {
    match source {
        Source::Value(value) => serde_json::from_value(value),
        Source::Json(json) => serde_json::from_str(json),
    }
    .map_err(|source| ObjectError {
        kind: kind_name(kind),
        source,
    })
}

fn from_template(kind: WorkloadKind, metadata: ObjectMeta, template: Option<PodTemplateSpec>) -> Workload {
    let template = template.unwrap_or_default();
    let pod_labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    workload(kind, metadata, pod_labels, template.spec.unwrap_or_default())
}

fn workload(
    kind: WorkloadKind,
    metadata: ObjectMeta,
    pod_labels: BTreeMap<String, String>,
    pod_spec: PodSpec,
) -> Workload {
    let name = match (metadata.name, metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name,
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => String::new(),
    };
    Workload {
        kind,
        name,
        namespace: metadata.namespace,
        pod_labels,
        pod_spec,
        owners: metadata.owner_references.unwrap_or_default(),
        deleting: metadata.deletion_timestamp.is_some(),
    }
}

impl Workload {
    /// Reads a workload of `kind` from its JSON value.
    pub fn from_value(kind: WorkloadKind, value: serde_json::Value) -> Result<Self> {
        Self::read(kind, Source::Value(value))
    }

    /// Reads a workload of `kind` from its JSON text, in one pass (no intermediate value).
    pub fn from_json(kind: WorkloadKind, json: &str) -> Result<Self> {
        Self::read(kind, Source::Json(json))
    }

    fn read(kind: WorkloadKind, value: Source<'_>) -> Result<Self> {
        Ok(match kind {
            WorkloadKind::Pod => {
                let pod: Pod = parse(kind, value)?;
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                workload(kind, pod.metadata, labels, pod.spec.unwrap_or_default())
            }
            WorkloadKind::Deployment => {
                let d: Deployment = parse(kind, value)?;
                from_template(kind, d.metadata, d.spec.map(|s| s.template))
            }
            WorkloadKind::StatefulSet => {
                let s: StatefulSet = parse(kind, value)?;
                from_template(kind, s.metadata, s.spec.map(|s| s.template))
            }
            WorkloadKind::DaemonSet => {
                let d: DaemonSet = parse(kind, value)?;
                from_template(kind, d.metadata, d.spec.map(|s| s.template))
            }
            WorkloadKind::ReplicaSet => {
                let r: ReplicaSet = parse(kind, value)?;
                from_template(kind, r.metadata, r.spec.and_then(|s| s.template))
            }
            WorkloadKind::Job => {
                let j: Job = parse(kind, value)?;
                from_template(kind, j.metadata, j.spec.map(|s| s.template))
            }
            WorkloadKind::CronJob => {
                let c: CronJob = parse(kind, value)?;
                let template = c.spec.and_then(|s| s.job_template.spec).map(|s| s.template);
                from_template(kind, c.metadata, template)
            }
        })
    }

    /// Reads a workload from a manifest that names its own `apiVersion` and `kind`; `Ok(None)` for a
    /// kind that makes no pods.
    pub fn from_manifest(value: serde_json::Value) -> Result<Option<Self>> {
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
        match workload_kind(group, kind) {
            Some(kind) => Self::from_value(kind, value).map(Some),
            None => Ok(None),
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn display(&self, namespace: &str) -> String {
        format!("{} {namespace}/{}", kind_name(self.kind), self.name)
    }

    /// Whether any container (regular, init or ephemeral) is Airlock's sidecar.
    pub fn has_sidecar(&self) -> bool {
        has_sidecar(&self.pod_spec)
    }

    /// The workloads whose exemption also covers this one: itself, its controller, and the controller's
    /// usual owner derived from the names Kubernetes generates (a ReplicaSet `<deployment>-<pod-template-hash>`
    /// belongs to that Deployment; a Job `<cronjob>-<scheduled minutes>` to that CronJob).
    pub fn exemption_candidates(&self) -> Vec<(WorkloadKind, String)> {
        let mut candidates = vec![(self.kind, self.name.clone())];
        for owner in self.owners.iter().filter(|o| o.controller == Some(true)) {
            let Some(kind) = workload_kind(
                owner.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or(""),
                &owner.kind,
            ) else {
                continue;
            };
            candidates.push((kind, owner.name.clone()));
            match kind {
                WorkloadKind::ReplicaSet => {
                    if let Some(hash) = self.pod_labels.get("pod-template-hash")
                        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
                    {
                        candidates.push((WorkloadKind::Deployment, deployment.to_owned()));
                    }
                }
                WorkloadKind::Job => {
                    if let Some((cronjob, suffix)) = owner.name.rsplit_once('-')
                        && !suffix.is_empty()
                        && suffix.bytes().all(|b| b.is_ascii_digit())
                    {
                        candidates.push((WorkloadKind::CronJob, cronjob.to_owned()));
                    }
                }
                _ => {}
            }
        }
        candidates
    }
}

/// Whether any container (regular, init or ephemeral) of a pod spec is Airlock's sidecar.
pub fn has_sidecar(spec: &PodSpec) -> bool {
    let name = crate::mutate::SIDECAR_NAME;
    spec.containers.iter().any(|c| c.name == name)
        || spec.init_containers.iter().flatten().any(|c| c.name == name)
        || spec.ephemeral_containers.iter().flatten().any(|c| c.name == name)
}
