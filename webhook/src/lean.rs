//! Admission's view of pods and pod-making controllers: the fields the decisions read, parsed in one
//! pass without building the rest.
//!
//! A typical pod review carries dozens of environment variables, resources, probes and `managedFields`;
//! parsing all of it into `k8s-openapi` types cost more than every decision together (one allocation per
//! string). Here serde skips what no decision reads. A pod to inject comes back as the usual
//! `k8s-openapi` `Pod` with only these fields filled in; a workload to validate keeps its pod spec as a
//! [`PodSummary`] (names, images, commands, arguments and ports of its containers, `hostNetwork`,
//! ephemeral containers' names). What is read:
//!
//! - metadata: `name`, `generateName`, `namespace`, `labels`, `annotations`, `ownerReferences`, and
//!   whether `deletionTimestamp` is set;
//! - pod spec: `hostNetwork`; `containers` and `initContainers` with `name`, `image`, `command`, `args`,
//!   `ports` and, of `env`, whether it is set and which of the names in [`APP_ENV`] it has (other names
//!   are not kept and values are not read); `ephemeralContainers` by name; and as many
//!   `volumes` and `envFrom` entries as the object has (their contents are not read);
//! - controllers: the pod template's labels and spec, at the place each kind keeps it.
//!
//! It reads like `k8s-openapi` does: an `apiVersion` or `kind` that is present must be the expected one,
//! absent or `null` fields take their defaults, unknown fields are ignored, and a field of the wrong
//! JSON type is an error. Decisions that need more of an object (an UPDATE compared with the old one)
//! parse it in full.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::WorkloadKind;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, Pod, PodSpec, PodTemplateSpec,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::mutate::APP_ENV;
use crate::workload::{ContainerSummary, PodSummary};

/// An object's metadata, as far as admission reads it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerReference>>,
    #[serde(default)]
    pub(crate) deletion_timestamp: Option<IgnoredAny>,
}

impl Meta {
    /// Whether the object is being deleted.
    pub fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

/// An `env` entry, of which only the name is read.
#[derive(Deserialize)]
pub(crate) struct EnvName {
    #[serde(default)]
    pub(crate) name: Option<AppEnvName>,
}

/// An environment variable's name, kept only as its position in [`APP_ENV`] (the only names a decision
/// reads): no string is built for the dozens of other names a pod commonly sets.
pub(crate) struct AppEnvName(pub(crate) Option<usize>);

impl<'de> Deserialize<'de> for AppEnvName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = AppEnvName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<AppEnvName, E> {
                Ok(AppEnvName(APP_ENV.iter().position(|(known, _)| *known == name)))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// A container's `env` list, kept as the positions in [`APP_ENV`] of the names it has, in order. The
/// entries are read one by one and dropped: no list of the dozens of entries a pod commonly has is built.
pub(crate) struct AppEnvNames(pub(crate) Vec<usize>);

impl<'de> Deserialize<'de> for AppEnvNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = AppEnvNames;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of environment variables")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AppEnvNames, A::Error> {
                let mut names = Vec::new();
                while let Some(entry) = seq.next_element::<EnvName>()? {
                    if let Some(AppEnvName(Some(i))) = entry.name {
                        names.push(i);
                    }
                }
                Ok(AppEnvNames(names))
            }
        }
        deserializer.deserialize_seq(Names)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeanContainer {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) image: Option<String>,
    #[serde(default)]
    pub(crate) command: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) args: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) ports: Option<Vec<ContainerPort>>,
    #[serde(default)]
    pub(crate) env: Option<AppEnvNames>,
    #[serde(default)]
    pub(crate) env_from: Option<Vec<IgnoredAny>>,
}

impl From<LeanContainer> for Container {
    fn from(c: LeanContainer) -> Self {
        Container {
            name: c.name.unwrap_or_default(),
            image: c.image,
            command: c.command,
            args: c.args,
            ports: c.ports,
            env: c.env.map(|env| {
                env.0
                    .into_iter()
                    .map(|i| EnvVar {
                        name: APP_ENV[i].0.to_owned(),
                        ..EnvVar::default()
                    })
                    .collect()
            }),
            env_from: c.env_from.map(|e| vec![EnvFromSource::default(); e.len()]),
            ..Container::default()
        }
    }
}

impl From<LeanContainer> for ContainerSummary {
    fn from(c: LeanContainer) -> Self {
        ContainerSummary {
            name: c.name.unwrap_or_default(),
            image: c.image,
            command: c.command.unwrap_or_default(),
            args: c.args.unwrap_or_default(),
            ports: c.ports.into_iter().flatten().map(|p| p.container_port).collect(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Named {
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeanPodSpec {
    #[serde(default)]
    pub(crate) containers: Option<Vec<LeanContainer>>,
    #[serde(default)]
    pub(crate) init_containers: Option<Vec<LeanContainer>>,
    #[serde(default)]
    pub(crate) ephemeral_containers: Option<Vec<Named>>,
    #[serde(default)]
    pub(crate) host_network: Option<bool>,
    #[serde(default)]
    pub(crate) volumes: Option<Vec<IgnoredAny>>,
}

impl From<LeanPodSpec> for PodSpec {
    fn from(s: LeanPodSpec) -> Self {
        let containers = |list: Vec<LeanContainer>| list.into_iter().map(Container::from).collect();
        PodSpec {
            containers: s.containers.map(containers).unwrap_or_default(),
            init_containers: s.init_containers.map(containers),
            ephemeral_containers: s.ephemeral_containers.map(|list| {
                list.into_iter()
                    .map(|c| EphemeralContainer {
                        name: c.name.unwrap_or_default(),
                        ..EphemeralContainer::default()
                    })
                    .collect()
            }),
            host_network: s.host_network,
            volumes: s.volumes.map(|v| vec![Volume::default(); v.len()]),
            ..PodSpec::default()
        }
    }
}

impl From<LeanPodSpec> for PodSummary {
    fn from(s: LeanPodSpec) -> Self {
        let containers = |list: Vec<LeanContainer>| list.into_iter().map(ContainerSummary::from).collect();
        PodSummary {
            containers: s.containers.map(containers).unwrap_or_default(),
            init_containers: s.init_containers.map(containers).unwrap_or_default(),
            ephemeral_containers: s
                .ephemeral_containers
                .into_iter()
                .flatten()
                .map(|c| c.name.unwrap_or_default())
                .collect(),
            host_network: s.host_network,
        }
    }
}

#[derive(Deserialize, Default)]
struct TemplateMeta {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Template {
    #[serde(default)]
    metadata: Option<TemplateMeta>,
    #[serde(default)]
    spec: Option<LeanPodSpec>,
}

/// `spec` of a Deployment, StatefulSet, DaemonSet, ReplicaSet or Job: the pod template.
#[derive(Deserialize, Default)]
struct WithTemplate {
    #[serde(default)]
    template: Option<Template>,
}

/// `spec` of a CronJob: the job template's spec, whose template is the pod's.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    #[serde(default)]
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize, Default)]
struct JobTemplate {
    #[serde(default)]
    spec: Option<WithTemplate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Object<S> {
    #[serde(default)]
    pub(crate) api_version: Option<String>,
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) metadata: Option<Meta>,
    #[serde(default)]
    pub(crate) spec: Option<S>,
}

/// The `apiVersion` of each workload kind.
fn api_version(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Pod => "v1",
        WorkloadKind::Deployment
        | WorkloadKind::StatefulSet
        | WorkloadKind::DaemonSet
        | WorkloadKind::ReplicaSet => "apps/v1",
        WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
    }
}

/// A pod or controller as admission reads it: metadata, and the labels and spec of the pods it makes.
pub(crate) struct LeanWorkload {
    pub meta: Meta,
    pub pod_labels: Option<BTreeMap<String, String>>,
    pub pod_spec: PodSummary,
}

fn check_type<S, E: serde::de::Error>(object: &Object<S>, kind: WorkloadKind) -> Result<(), E> {
    use serde::de::Unexpected;
    let expected_version = api_version(kind);
    if let Some(version) = object.api_version.as_deref()
        && version != expected_version
    {
        return Err(E::invalid_value(Unexpected::Str(version), &expected_version));
    }
    let expected_kind = crate::workload::kind_name(kind);
    if let Some(found) = object.kind.as_deref()
        && found != expected_kind
    {
        return Err(E::invalid_value(Unexpected::Str(found), &expected_kind));
    }
    Ok(())
}

/// Where an object's JSON comes from: an already parsed value, or the raw text of an admission request.
pub(crate) enum Source<'a> {
    Value(serde_json::Value),
    Json(&'a str),
}

fn parse<'de, S, D>(kind: WorkloadKind, deserializer: D) -> Result<Object<S>, D::Error>
where
    S: Deserialize<'de> + Default,
    D: serde::Deserializer<'de>,
{
    let object = Object::<S>::deserialize(deserializer)?;
    check_type(&object, kind)?;
    Ok(object)
}

/// Reads a workload of `kind`.
pub(crate) fn workload(kind: WorkloadKind, source: Source<'_>) -> serde_json::Result<LeanWorkload> {
    match source {
        Source::Value(value) => workload_from(kind, value),
        Source::Json(json) => {
            let mut deserializer = serde_json::Deserializer::from_str(json);
            let workload = workload_from(kind, &mut deserializer)?;
            deserializer.end()?;
            Ok(workload)
        }
    }
}

/// Reads a workload of `kind` from any deserializer (also in the middle of a review).
pub(crate) fn workload_from<'de, D: serde::Deserializer<'de>>(
    kind: WorkloadKind,
    deserializer: D,
) -> Result<LeanWorkload, D::Error> {
    Ok(match kind {
        WorkloadKind::Pod => pod_workload(parse(kind, deserializer)?),
        WorkloadKind::CronJob => {
            let object: Object<CronJobSpec> = parse(kind, deserializer)?;
            let template = object
                .spec
                .and_then(|s| s.job_template)
                .and_then(|j| j.spec)
                .and_then(|s| s.template);
            with_template(object.metadata, template)
        }
        _ => {
            let object: Object<WithTemplate> = parse(kind, deserializer)?;
            with_template(object.metadata, object.spec.and_then(|s| s.template))
        }
    })
}

fn with_template(meta: Option<Meta>, template: Option<Template>) -> LeanWorkload {
    let template = template.unwrap_or_default();
    LeanWorkload {
        meta: meta.unwrap_or_default(),
        pod_labels: template.metadata.and_then(|m| m.labels),
        pod_spec: template.spec.map(PodSummary::from).unwrap_or_default(),
    }
}

/// Reads a Pod from its JSON text, with the fields listed in the module documentation.
pub(crate) fn pod(json: &str) -> serde_json::Result<Pod> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let pod = pod_from(&mut deserializer)?;
    deserializer.end()?;
    Ok(pod)
}

/// Reads a Pod from any deserializer (also in the middle of a review).
pub(crate) fn pod_from<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pod, D::Error> {
    Ok(pod_of(parse(WorkloadKind::Pod, deserializer)?))
}

/// A pod object, read and type-checked, as a workload to validate.
pub(crate) fn pod_workload(object: Object<LeanPodSpec>) -> LeanWorkload {
    let meta = object.metadata.unwrap_or_default();
    LeanWorkload {
        pod_labels: meta.labels.clone(),
        meta,
        pod_spec: object.spec.map(PodSummary::from).unwrap_or_default(),
    }
}

/// A pod object, read and type-checked, as the `k8s-openapi` `Pod` to inject.
pub(crate) fn pod_of(object: Object<LeanPodSpec>) -> Pod {
    let meta = object.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: meta.name,
            generate_name: meta.generate_name,
            namespace: meta.namespace,
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: meta.owner_references,
            ..ObjectMeta::default()
        },
        spec: object.spec.map(PodSpec::from),
        status: None,
    }
}

/// An object of `kind` as `k8s-openapi` reads it in full: its metadata, and the template of the pods it
/// makes (for a Pod, its own labels and spec); `None` when it cannot be read. What an UPDATE is compared
/// on, and the reference the lean view is tested against.
pub(crate) fn full(kind: WorkloadKind, json: &str) -> Option<(ObjectMeta, Option<PodTemplateSpec>)> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    fn read<T: serde::de::DeserializeOwned>(json: &str) -> Option<T> {
        serde_json::from_str(json).ok()
    }
    Some(match kind {
        WorkloadKind::Pod => {
            let pod: Pod = read(json)?;
            let template = PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: pod.metadata.labels.clone(),
                    ..ObjectMeta::default()
                }),
                spec: pod.spec,
            };
            (pod.metadata, Some(template))
        }
        WorkloadKind::Deployment => {
            read::<Deployment>(json).map(|d| (d.metadata, d.spec.map(|s| s.template)))?
        }
        WorkloadKind::StatefulSet => {
            read::<StatefulSet>(json).map(|d| (d.metadata, d.spec.map(|s| s.template)))?
        }
        WorkloadKind::DaemonSet => {
            read::<DaemonSet>(json).map(|d| (d.metadata, d.spec.map(|s| s.template)))?
        }
        WorkloadKind::ReplicaSet => {
            read::<ReplicaSet>(json).map(|d| (d.metadata, d.spec.and_then(|s| s.template)))?
        }
        WorkloadKind::Job => read::<Job>(json).map(|d| (d.metadata, d.spec.map(|s| s.template)))?,
        WorkloadKind::CronJob => read::<CronJob>(json).map(|d| {
            let template = d.spec.and_then(|s| s.job_template.spec).map(|s| s.template);
            (d.metadata, template)
        })?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::workload::workload_kind;

    /// What the lean view keeps of a fully parsed spec: the reference the lean parse must equal.
    fn project(spec: PodSpec) -> PodSpec {
        let container = |c: Container| Container {
            name: c.name,
            image: c.image,
            command: c.command,
            args: c.args,
            ports: c.ports,
            env: c.env.map(|env| {
                env.into_iter()
                    .filter(|e| APP_ENV.iter().any(|(name, _)| *name == e.name))
                    .map(|e| EnvVar {
                        name: e.name,
                        ..EnvVar::default()
                    })
                    .collect()
            }),
            env_from: c.env_from.map(|e| vec![EnvFromSource::default(); e.len()]),
            ..Container::default()
        };
        PodSpec {
            containers: spec.containers.into_iter().map(container).collect(),
            init_containers: spec
                .init_containers
                .map(|l| l.into_iter().map(container).collect()),
            ephemeral_containers: spec.ephemeral_containers.map(|l| {
                l.into_iter()
                    .map(|c| EphemeralContainer {
                        name: c.name,
                        ..EphemeralContainer::default()
                    })
                    .collect()
            }),
            host_network: spec.host_network,
            volumes: spec.volumes.map(|v| vec![Volume::default(); v.len()]),
            ..PodSpec::default()
        }
    }

    /// The full `k8s-openapi` parse: metadata, pod labels and the projected pod spec.
    fn reference(kind: WorkloadKind, text: &str) -> (ObjectMeta, Option<BTreeMap<String, String>>, PodSpec) {
        let (meta, template) = full(kind, text).expect("k8s-openapi reads it");
        let template = template.unwrap_or_default();
        (
            meta,
            template.metadata.and_then(|m| m.labels),
            project(template.spec.unwrap_or_default()),
        )
    }

    fn assert_same(kind: WorkloadKind, value: &Value, what: &str) {
        let text = serde_json::to_string(value).unwrap();
        let (meta, labels, spec) = reference(kind, &text);
        for source in [Source::Value(value.clone()), Source::Json(&text)] {
            let lean = workload(kind, source).expect(what);
            assert_eq!(lean.pod_spec, PodSummary::from(&spec), "{what}");
            assert_eq!(lean.pod_labels, labels, "{what}");
            assert_eq!(lean.meta.name, meta.name, "{what}");
            assert_eq!(lean.meta.generate_name, meta.generate_name, "{what}");
            assert_eq!(lean.meta.namespace, meta.namespace, "{what}");
            assert_eq!(lean.meta.labels, meta.labels, "{what}");
            assert_eq!(lean.meta.annotations, meta.annotations, "{what}");
            assert_eq!(lean.meta.owner_references, meta.owner_references, "{what}");
            assert_eq!(lean.meta.deleting(), meta.deletion_timestamp.is_some(), "{what}");
        }
        if kind == WorkloadKind::Pod {
            let pod = pod(&text).expect(what);
            assert_eq!(pod.spec.unwrap_or_default(), spec, "{what}");
            assert_eq!(pod.metadata.labels, meta.labels, "{what}");
            assert_eq!(pod.metadata.annotations, meta.annotations, "{what}");
        }
    }

    fn kind_of(value: &Value) -> WorkloadKind {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        workload_kind(group, value["kind"].as_str().unwrap_or_default()).expect("a workload kind")
    }

    #[test]
    fn the_lean_view_equals_the_full_parse_on_every_workload_fixture() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_same(kind_of(&value), &value, &path.display().to_string());
            seen += 1;
        }
        assert!(seen >= 60, "{seen} fixtures");
    }

    fn rich_spec() -> Value {
        json!({
            "hostNetwork": true,
            "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            "containers": [{
                "name": "server", "image": "vllm/vllm-openai@sha256:abc",
                "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"], "args": ["--port", "8000"],
                "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "x"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "OPENAI_BASE_URL", "value": "https://gateway.example.com/v1"},
                        {"name": "C", "value": null}, {"name": "OLLAMA_HOST"}, {"value": "nameless"}],
                "envFrom": [{"configMapRef": {"name": "cm"}}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                "securityContext": {"runAsNonRoot": true},
                "unknownField": {"deep": [1, 2, {"x": null}]}
            }, {"name": "helper", "image": null, "command": null}],
            "initContainers": [{"name": "airlock-sidecar", "image": "airlock", "restartPolicy": "Always"}],
            "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
            "nodeSelector": {"gpu": "true"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}]
        })
    }

    fn rich_meta() -> Value {
        json!({
            "name": "llm", "generateName": "llm-", "namespace": "models",
            "labels": {"app": "llm"}, "annotations": {"airlock.dev/status": "{}", "big": "x".repeat(10_000)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-5d8f", "uid": "u",
                                 "controller": true}],
            "deletionTimestamp": "2026-11-24T10:00:00Z",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "resourceVersion": "42"
        })
    }

    #[test]
    fn the_lean_view_equals_the_full_parse_on_every_kind_with_every_field_set() {
        let template = json!({"metadata": {"labels": {"app": "llm", "tier": "gpu"}}, "spec": rich_spec()});
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": rich_meta(), "spec": rich_spec(),
                   "status": {"podIP": "10.0.0.1"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": rich_meta(),
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "llm"}}, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": rich_meta(),
                   "spec": {"serviceName": "llm", "selector": {}, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": rich_meta(),
                   "spec": {"selector": {}, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": rich_meta(),
                   "spec": {"selector": {}, "template": template}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": rich_meta(),
                   "spec": {"backoffLimit": 1, "template": template}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": rich_meta(),
                   "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
            // Absent and null parts take their defaults, as in k8s-openapi.
            json!({"kind": "Pod"}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": null, "spec": null}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": null}}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {}}}),
        ];
        for object in objects {
            assert_same(kind_of(&object), &object, &object.to_string());
        }
    }

    #[test]
    fn env_keeps_the_app_env_names_in_order_escaped_or_not_and_whether_it_is_set() {
        let names = |json: &str| -> Option<Vec<String>> {
            let pod = pod(json).expect("parses");
            let env = pod.spec.unwrap_or_default().containers.into_iter().next()?.env;
            env.map(|e| e.into_iter().map(|v| v.name).collect())
        };
        let text = r#"{"spec": {"containers": [{"name": "a", "env": [
            {"name": "X", "value": "1"}, {"name": "OLLAMA_\u0048OST"}, {"name": "OPENAI_BASE_URL", "value": "v"}
        ]}]}}"#;
        assert_eq!(
            names(text),
            Some(vec!["OLLAMA_HOST".to_owned(), "OPENAI_BASE_URL".to_owned()])
        );
        // Set without any of them, empty, null, absent.
        let text = r#"{"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}"#;
        assert_eq!(names(text), Some(vec![]));
        let text = r#"{"spec": {"containers": [{"name": "a", "env": []}]}}"#;
        assert_eq!(names(text), Some(vec![]));
        let text = r#"{"spec": {"containers": [{"name": "a", "env": null}]}}"#;
        assert_eq!(names(text), None);
        let text = r#"{"spec": {"containers": [{"name": "a"}]}}"#;
        assert_eq!(names(text), None);
        // A name of the wrong type is still an error, as in k8s-openapi.
        let text = r#"{"spec": {"containers": [{"name": "a", "env": [{"name": 5}]}]}}"#;
        assert!(pod(text).is_err());
        assert!(serde_json::from_str::<Pod>(text).is_err());
    }

    #[test]
    fn a_wrong_type_or_the_wrong_api_version_or_kind_is_an_error_as_in_k8s_openapi() {
        let cases = [
            (WorkloadKind::Pod, json!({"apiVersion": "v2", "kind": "Pod"})),
            (WorkloadKind::Pod, json!({"apiVersion": "v1", "kind": "Service"})),
            (
                WorkloadKind::Deployment,
                json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}),
            ),
            (
                WorkloadKind::CronJob,
                json!({"apiVersion": "batch/v1", "kind": "Job"}),
            ),
            (WorkloadKind::Pod, json!({"spec": {"containers": {"name": "x"}}})),
            (WorkloadKind::Pod, json!({"spec": {"containers": [{"name": 5}]}})),
            (
                WorkloadKind::Pod,
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": ["x"]}]}]}}),
            ),
            (WorkloadKind::Pod, json!({"spec": {"volumes": 3}})),
            (WorkloadKind::Pod, json!({"metadata": {"labels": {"a": 1}}})),
            (
                WorkloadKind::Job,
                json!({"spec": {"template": {"spec": {"hostNetwork": "yes"}}}}),
            ),
            (WorkloadKind::Pod, json!(5)),
        ];
        for (kind, object) in cases {
            let text = object.to_string();
            assert!(workload(kind, Source::Json(&text)).is_err(), "{object}");
            assert!(workload(kind, Source::Value(object.clone())).is_err(), "{object}");
            if kind == WorkloadKind::Pod {
                assert!(pod(&text).is_err(), "{object}");
                assert!(
                    serde_json::from_value::<Pod>(object.clone()).is_err(),
                    "k8s-openapi agrees: {object}"
                );
            }
        }
    }
}
