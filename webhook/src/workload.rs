//! The pod template and metadata of every pod-making kind, so that validation treats a Pod and the six
//! controllers (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) alike.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::WorkloadKind;
use k8s_openapi::api::core::v1::{Container, PodSpec};
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
    /// What the validation decisions read of the spec of the pods it makes: see [`PodSummary`].
    pub pod_spec: PodSummary,
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
pub fn has_sidecar<S: PodSpecView + ?Sized>(spec: &S) -> bool {
    let name = crate::mutate::SIDECAR_NAME;
    spec.containers().iter().any(|c| c.name() == name)
        || spec.init_containers().iter().any(|c| c.name() == name)
        || spec.ephemeral_names().any(|n| n == name)
}

/// What the validation decisions read of a pod spec: per container (regular and init) its name, image,
/// command, arguments and port numbers; whether it uses `hostNetwork`; its ephemeral containers' names.
///
/// Built straight from the admission request (see the `lean` module) rather than as `k8s-openapi`'s
/// `PodSpec`, whose `Container` alone is 2 KB to build, move and drop for the five fields read here. An
/// UPDATE compares it first, as the cheap check, before the whole template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSummary {
    /// `containers`.
    pub containers: Vec<ContainerSummary>,
    /// `initContainers`.
    pub init_containers: Vec<ContainerSummary>,
    /// The names of `ephemeralContainers`.
    pub ephemeral_containers: Vec<String>,
    /// `hostNetwork`.
    pub host_network: Option<bool>,
}

/// A container as [`PodSummary`] keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSummary {
    /// `name`.
    pub name: String,
    /// `image`.
    pub image: Option<String>,
    /// `command`.
    pub command: Vec<String>,
    /// `args`.
    pub args: Vec<String>,
    /// The `containerPort` of each of `ports`.
    pub ports: Vec<i32>,
}

impl From<&Container> for ContainerSummary {
    fn from(c: &Container) -> Self {
        ContainerSummary {
            name: c.name.clone(),
            image: c.image.clone(),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            ports: c.ports.iter().flatten().map(|p| p.container_port).collect(),
        }
    }
}

impl From<&PodSpec> for PodSummary {
    fn from(spec: &PodSpec) -> Self {
        PodSummary {
            containers: spec.containers.iter().map(ContainerSummary::from).collect(),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(ContainerSummary::from)
                .collect(),
            ephemeral_containers: spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect(),
            host_network: spec.host_network,
        }
    }
}

/// A container, as the fingerprints read it: `k8s-openapi`'s [`Container`] or a [`ContainerSummary`].
pub trait ContainerView {
    /// `name`.
    fn name(&self) -> &str;
    /// `image`.
    fn image(&self) -> Option<&str>;
    /// `command` (empty when unset).
    fn command(&self) -> &[String];
    /// `args` (empty when unset).
    fn args(&self) -> &[String];
    /// The `containerPort` of each of `ports`.
    fn ports(&self) -> impl Iterator<Item = i32> + '_;
}

impl ContainerView for Container {
    fn name(&self) -> &str {
        &self.name
    }
    fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }
    fn command(&self) -> &[String] {
        self.command.as_deref().unwrap_or_default()
    }
    fn args(&self) -> &[String] {
        self.args.as_deref().unwrap_or_default()
    }
    fn ports(&self) -> impl Iterator<Item = i32> + '_ {
        self.ports.iter().flatten().map(|p| p.container_port)
    }
}

impl ContainerView for ContainerSummary {
    fn name(&self) -> &str {
        &self.name
    }
    fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }
    fn command(&self) -> &[String] {
        &self.command
    }
    fn args(&self) -> &[String] {
        &self.args
    }
    fn ports(&self) -> impl Iterator<Item = i32> + '_ {
        self.ports.iter().copied()
    }
}

/// A pod spec, as the fingerprints and the sidecar check read it: `k8s-openapi`'s [`PodSpec`] or a
/// [`PodSummary`].
pub trait PodSpecView {
    /// Its container type.
    type Container: ContainerView;
    /// `containers`.
    fn containers(&self) -> &[Self::Container];
    /// `initContainers` (empty when unset).
    fn init_containers(&self) -> &[Self::Container];
    /// The names of `ephemeralContainers`.
    fn ephemeral_names(&self) -> impl Iterator<Item = &str> + '_;
    /// Whether it sets `hostNetwork: true`.
    fn host_network(&self) -> bool;
}

impl PodSpecView for PodSpec {
    type Container = Container;
    fn containers(&self) -> &[Container] {
        &self.containers
    }
    fn init_containers(&self) -> &[Container] {
        self.init_containers.as_deref().unwrap_or_default()
    }
    fn ephemeral_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
    }
    fn host_network(&self) -> bool {
        self.host_network == Some(true)
    }
}

impl PodSpecView for PodSummary {
    type Container = ContainerSummary;
    fn containers(&self) -> &[ContainerSummary] {
        &self.containers
    }
    fn init_containers(&self) -> &[ContainerSummary] {
        &self.init_containers
    }
    fn ephemeral_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.ephemeral_containers.iter().map(String::as_str)
    }
    fn host_network(&self) -> bool {
        self.host_network == Some(true)
    }
}
