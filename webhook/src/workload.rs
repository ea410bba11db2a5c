//! The pod template and metadata of every pod-making kind, so that validation treats a Pod and the six
//! controllers (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) alike.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::WorkloadKind;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::lean::Source;

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
    /// The spec of the pods it makes, with the fields admission reads (containers' names, images,
    /// commands, ports and env names; `hostNetwork`; ephemeral containers' names; how many volumes):
    /// see the `lean` module. The rest stays at its default.
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

impl Workload {
    /// Reads a workload of `kind` from its JSON value.
    pub fn from_value(kind: WorkloadKind, value: serde_json::Value) -> Result<Self> {
        Self::read(kind, Source::Value(value))
    }

    /// Reads a workload of `kind` from its JSON text, in one pass (no intermediate value).
    pub fn from_json(kind: WorkloadKind, json: &str) -> Result<Self> {
        Self::read(kind, Source::Json(json))
    }

    fn read(kind: WorkloadKind, source: Source<'_>) -> Result<Self> {
        let lean = crate::lean::workload(kind, source).map_err(|source| ObjectError {
            kind: kind_name(kind),
            source,
        })?;
        Ok(Self::from_lean(kind, lean))
    }

    pub(crate) fn from_lean(kind: WorkloadKind, lean: crate::lean::LeanWorkload) -> Self {
        let meta = lean.meta;
        let deleting = meta.deleting();
        let name = match (meta.name, meta.generate_name) {
            (Some(name), _) if !name.is_empty() => name,
            (_, Some(prefix)) => format!("{prefix}*"),
            _ => String::new(),
        };
        Workload {
            kind,
            name,
            namespace: meta.namespace,
            pod_labels: lean.pod_labels.unwrap_or_default(),
            pod_spec: lean.pod_spec,
            owners: meta.owner_references.unwrap_or_default(),
            deleting,
        }
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
