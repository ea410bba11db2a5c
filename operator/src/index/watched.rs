//! The pod as the operator's watch reads it: a `Pod` holding only the fields [`LeanPod::from_pod`] reads.
//!
//! A watch or list of `k8s_openapi`'s full `Pod` builds every field of every pod before the operator
//! keeps its lean form: `managedFields` alone (a tree of JSON maps) is often half of a pod's memory, and
//! a list page of 500 pods built that way took about 25 MB at its peak. [`WatchedPod`] reads the same JSON
//! into a `Pod` that has only metadata name, namespace, resourceVersion, uid, labels, the
//! `airlock.dev/injected` annotation and owner references; the containers' names, images, commands,
//! arguments and ports, `hostNetwork` and `serviceAccountName`; and status phase, pod IPs and condition types and statuses.
//! Everything else is skipped without being built. A test checks that the lean pod made from it equals
//! the one made from the full parse, on fixtures with every field the operator reads set.
//!
//! [`LeanPod::from_pod`]: super::LeanPod::from_pod

use std::collections::BTreeMap;
use std::fmt;

use airlock_webhook::mutate::ANNOTATION_INJECTED;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

/// A pod read for the operator's index (see the module documentation): `Api<WatchedPod>` lists and
/// watches pods like `Api<Pod>`. It is deliberately not `Serialize`: written back, it would erase every
/// field it does not hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchedPod(pub Pod);

impl k8s_openapi::Resource for WatchedPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for WatchedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WirePod::deserialize(deserializer)?;
        Ok(WatchedPod(wire.into_pod()))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WirePod {
    metadata: WireMeta,
    spec: Option<WireSpec>,
    status: Option<WireStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    uid: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "injected_annotation")]
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireSpec {
    containers: Vec<WireContainer>,
    init_containers: Option<Vec<WireContainer>>,
    host_network: Option<bool>,
    service_account_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireContainer {
    name: String,
    image: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    ports: Option<Vec<WirePort>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WirePort {
    container_port: i32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<WirePodIp>>,
    conditions: Option<Vec<WireCondition>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WirePodIp {
    ip: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// Only the `airlock.dev/injected` annotation: pods may carry large annotations the operator never reads.
fn injected_annotation<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Annotations;
    impl<'de> Visitor<'de> for Annotations {
        type Value = Option<BTreeMap<String, String>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of annotations")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == ANNOTATION_INJECTED {
                    kept.insert(key.into_owned(), map.next_value::<String>()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(Some(kept))
        }
    }
    deserializer.deserialize_option(Annotations)
}

impl WireContainer {
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            command: self.command,
            args: self.args,
            ports: self.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| ContainerPort {
                        container_port: p.container_port,
                        ..ContainerPort::default()
                    })
                    .collect()
            }),
            ..Container::default()
        }
    }
}

impl WirePod {
    fn into_pod(self) -> Pod {
        let m = self.metadata;
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                resource_version: m.resource_version,
                uid: m.uid,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                ..ObjectMeta::default()
            },
            spec: self.spec.map(|s| PodSpec {
                containers: s
                    .containers
                    .into_iter()
                    .map(WireContainer::into_container)
                    .collect(),
                init_containers: s
                    .init_containers
                    .map(|c| c.into_iter().map(WireContainer::into_container).collect()),
                host_network: s.host_network,
                service_account_name: s.service_account_name,
                ..PodSpec::default()
            }),
            status: self.status.map(|s| PodStatus {
                phase: s.phase,
                pod_ip: s.pod_ip,
                pod_ips: s
                    .pod_ips
                    .map(|ips| ips.into_iter().map(|p| PodIP { ip: p.ip }).collect()),
                conditions: s.conditions.map(|c| {
                    c.into_iter()
                        .map(|c| PodCondition {
                            type_: c.type_,
                            status: c.status,
                            ..PodCondition::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::index::LeanPod;
    use serde_json::json;

    /// A pod with every field the operator reads set, and many it does not.
    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "llm-6fc8f55db8-abcde", "namespace": "ml", "uid": "u-1", "resourceVersion": "42",
                "generateName": "llm-6fc8f55db8-",
                "labels": {"app": "llm", "pod-template-hash": "6fc8f55db8", "airlock.dev/inject": "false"},
                "annotations": {"airlock.dev/injected": "true", "airlock.dev/status": "{\"version\":\"0.1.0\"}",
                                "kubectl.kubernetes.io/restartedAt": "2026-11-24T10:00:00Z"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-6fc8f55db8", "uid": "rs-1",
                     "controller": true, "blockOwnerDeletion": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                   "apiVersion": "v1", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
                "creationTimestamp": "2026-11-24T10:00:00Z"
            },
            "spec": {
                "hostNetwork": true,
                "initContainers": [
                    {"name": "airlock-sidecar", "image": "ghcr.io/airlock-dev/airlock-sidecar:0.1.0",
                     "restartPolicy": "Always", "ports": [{"containerPort": 15001, "name": "airlock-out"}]},
                    {"name": "fetch", "image": "busybox", "command": ["sh", "-c"], "args": ["wget model"]}],
                "containers": [
                    {"name": "server", "image": "vllm/vllm-openai:v0.9.1",
                     "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                     "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
                     "ports": [{"containerPort": 8000, "protocol": "TCP"}, {"containerPort": 8001}],
                     "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}],
                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                     "volumeMounts": [{"name": "cache", "mountPath": "/root/.cache"}]}],
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "nodeSelector": {"gpu": "a100"}, "serviceAccountName": "llm"
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}],
                "conditions": [{"type": "Initialized", "status": "True"},
                               {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-24T10:00:05Z"}],
                "containerStatuses": [{"name": "server", "ready": true, "restartCount": 0, "image": "x",
                                       "imageID": "y", "state": {"running": {"startedAt": "2026-11-24T10:00:04Z"}}}]
            }
        })
    }

    fn both(value: serde_json::Value) -> (Option<LeanPod>, Option<LeanPod>, WatchedPod) {
        let full: Pod = serde_json::from_value(value.clone()).unwrap();
        let watched: WatchedPod = serde_json::from_value(value).unwrap();
        (LeanPod::from_pod(&full), LeanPod::from_pod(&watched.0), watched)
    }

    #[test]
    fn the_lean_pod_is_the_same_as_from_the_full_parse() {
        let (full, watched, pod) = both(full_pod());
        assert!(full.is_some());
        assert_eq!(full, watched);
        // What the watch itself reads: name, namespace and resourceVersion.
        assert_eq!(pod.0.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(pod.0.metadata.namespace.as_deref(), Some("ml"));
        // What is dropped.
        assert!(pod.0.metadata.managed_fields.is_none());
        assert_eq!(pod.0.metadata.annotations.as_ref().unwrap().len(), 1);
        assert!(pod.0.spec.as_ref().unwrap().volumes.is_none());
    }

    #[test]
    fn every_field_read_changes_the_lean_pod() {
        // Each edit changes a field `LeanPod::from_pod` reads: the watched parse must see it too.
        let edits: Vec<(&str, serde_json::Value)> = vec![
            ("/metadata/labels/app", json!("other")),
            ("/metadata/annotations/airlock.dev~1injected", json!("false")),
            ("/metadata/ownerReferences/0/name", json!("other-rs")),
            ("/metadata/ownerReferences/0/controller", json!(false)),
            ("/spec/hostNetwork", json!(false)),
            ("/spec/serviceAccountName", json!("chat")),
            (
                "/spec/initContainers/0/image",
                json!("ghcr.io/airlock-dev/airlock-sidecar:0.2.0"),
            ),
            ("/spec/initContainers/1/args/0", json!("curl model")),
            ("/spec/containers/0/name", json!("main")),
            ("/spec/containers/0/image", json!("ollama/ollama")),
            ("/spec/containers/0/command/2", json!("sglang.launch_server")),
            ("/spec/containers/0/ports/1/containerPort", json!(9000)),
            ("/status/phase", json!("Succeeded")),
            ("/status/podIPs/1/ip", json!("fd00::8")),
            ("/status/conditions/1/status", json!("False")),
        ];
        let base = both(full_pod()).0;
        for (path, value) in edits {
            let mut pod = full_pod();
            *pod.pointer_mut(path).unwrap() = value;
            let (full, watched, _) = both(pod);
            assert_ne!(full, base, "{path}: the edit should matter");
            assert_eq!(full, watched, "{path}");
        }
        // podIP is read when podIPs is absent.
        let mut pod = full_pod();
        pod["status"].as_object_mut().unwrap().remove("podIPs");
        let (full, watched, _) = both(pod);
        assert_eq!(full, watched);
        assert_eq!(watched.unwrap().ips.len(), 1);
    }

    #[test]
    fn sparse_and_null_fields_read_like_the_full_parse() {
        for value in [
            json!({"metadata": {"name": "p", "namespace": "a"}}),
            json!({"metadata": {"name": "p", "namespace": "a", "labels": null, "annotations": null},
                   "spec": {"containers": []}, "status": {}}),
            json!({"metadata": {"name": "p", "annotations": {}}, "spec": {"containers": [{"name": "c"}]}}),
            json!({"metadata": {}}),
        ] {
            let (full, watched, _) = both(value.clone());
            assert_eq!(full, watched, "{value}");
        }
    }

    #[test]
    fn wrong_types_are_errors_as_in_the_full_parse() {
        for value in [
            json!({"metadata": {"name": 3}}),
            json!({"metadata": {"labels": ["a"]}}),
            json!({"metadata": {"annotations": {"airlock.dev/injected": 1}}}),
            json!({"spec": {"containers": {}}}),
            json!({"status": {"podIPs": "10.0.0.1"}}),
        ] {
            assert!(serde_json::from_value::<Pod>(value.clone()).is_err(), "{value}");
            assert!(
                serde_json::from_value::<WatchedPod>(value.clone()).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn it_is_listed_and_watched_as_pods() {
        use kube::Resource;
        assert_eq!(WatchedPod::kind(&()), "Pod");
        assert_eq!(WatchedPod::plural(&()), "pods");
        assert_eq!(WatchedPod::api_version(&()), "v1");
        let (_, _, pod) = both(full_pod());
        assert_eq!(pod.meta().name.as_deref(), Some("llm-6fc8f55db8-abcde"));
    }
}
