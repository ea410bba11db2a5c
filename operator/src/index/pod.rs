//! The lean form in which the operator keeps pods: only what address groups and coverage need.
//!
//! A full `Pod` with `managedFields` is often 10–20 KiB; the operator watches every pod in the cluster,
//! so it converts each one as it arrives and drops the rest. What is kept: name, labels, IPs, readiness,
//! whether it is finished, its controller, the sidecar it carries, and for each container the image,
//! a bounded command line and ports (enough to re-run model-server fingerprints).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use airlock_webhook::fingerprint;
use airlock_webhook::mutate::{ANNOTATION_INJECTED, LABEL_INJECT, SIDECAR_NAME};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};

/// Longest command-line token kept per container; fingerprints look at the first few words only.
const MAX_TOKEN_BYTES: usize = 256;
/// Most command-line tokens kept per container.
const MAX_TOKENS: usize = 12;
/// Most containers kept per pod (regular and init together).
const MAX_CONTAINERS: usize = 16;

/// The controller that owns a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Kind of the owner, e.g. `ReplicaSet`.
    pub kind: Arc<str>,
    /// Name of the owner.
    pub name: Arc<str>,
}

/// What the operator keeps of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeanContainer {
    /// Container name.
    pub name: Arc<str>,
    /// Image reference.
    pub image: Arc<str>,
    /// `command` followed by `args`, each token cut to [`MAX_TOKEN_BYTES`], at most [`MAX_TOKENS`].
    pub command: Box<[Arc<str>]>,
    /// Declared container ports.
    pub ports: Box<[i32]>,
}

/// What the operator keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeanPod {
    /// Pod name (shared with the index's keys and memberships).
    pub name: Arc<str>,
    /// Labels, sorted by key.
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
    /// `status.podIPs` (or `status.podIP`), parsed (shared with every group the pod is a member of).
    pub ips: Arc<[IpAddr]>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Phase `Succeeded` or `Failed`: the pod no longer runs and is nobody's member.
    pub terminal: bool,
    /// The pod uses the node's network namespace (never injected).
    pub host_network: bool,
    /// The pod opted out of injection with `airlock.dev/inject: "false"`.
    pub opted_out: bool,
    /// The pod carries `airlock.dev/injected: "true"`.
    pub injected: bool,
    /// Image of the `airlock-sidecar` container, when the pod has one.
    pub sidecar_image: Option<Arc<str>>,
    /// The controller owner (`ownerReferences` entry with `controller: true`).
    pub owner: Option<Owner>,
    /// `spec.serviceAccountName` (the API server sets `default` when a pod names none), for policy
    /// bundles whose profiles count callers by service account.
    pub service_account: Option<Arc<str>>,
    /// The pod's own containers (init containers included), Airlock's excluded.
    pub containers: Box<[LeanContainer]>,
}

impl LeanPod {
    /// Keeps what the operator needs of `pod`; `None` when the pod has no name.
    ///
    /// The pod watch reads pods as [`WatchedPod`](super::WatchedPod), which holds only the fields read
    /// here: a field newly read here must be added there too (its tests compare both parses, field by
    /// field, on a fixture that sets every field read here; extend the fixture and the edits as well).
    pub fn from_pod(pod: &Pod) -> Option<LeanPod> {
        let name = pod.metadata.name.as_deref()?;
        let mut labels: Vec<(Arc<str>, Arc<str>)> = pod
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        labels.sort();
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        if ips.is_empty()
            && let Some(ip) = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok())
        {
            ips.push(ip);
        }
        ips.truncate(4);
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let spec = pod.spec.as_ref();
        let all_containers = || {
            spec.into_iter()
                .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
        };
        let sidecar_image = all_containers()
            .find(|c| c.name == SIDECAR_NAME)
            .map(|c| c.image.as_deref().unwrap_or_default().into());
        let containers = all_containers()
            .filter(|c| !fingerprint::is_airlock_container(&c.name))
            .take(MAX_CONTAINERS)
            .map(LeanContainer::from_container)
            .collect();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| Owner {
                kind: o.kind.as_str().into(),
                name: o.name.as_str().into(),
            });
        let annotation = |key: &str| pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
        Some(LeanPod {
            name: name.into(),
            labels: labels.into(),
            ips: ips.into(),
            ready,
            terminal,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            opted_out: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INJECT))
                .is_some_and(|v| v == "false"),
            injected: annotation(ANNOTATION_INJECTED).is_some_and(|v| v == "true"),
            sidecar_image,
            owner,
            service_account: spec
                .and_then(|s| s.service_account_name.as_deref())
                .map(Into::into),
            containers,
        })
    }

    /// Replaces every string but the name with `strings`' copy: label keys and most values, images,
    /// command lines and owner kinds repeat across the pods of a cluster, and are then kept once.
    pub fn intern(&mut self, strings: &mut Interner) {
        for (key, value) in self.labels.iter_mut() {
            *key = strings.intern(key);
            *value = strings.intern(value);
        }
        for container in self.containers.iter_mut() {
            container.name = strings.intern(&container.name);
            container.image = strings.intern(&container.image);
            for token in container.command.iter_mut() {
                *token = strings.intern(token);
            }
        }
        if let Some(owner) = &mut self.owner {
            owner.kind = strings.intern(&owner.kind);
            owner.name = strings.intern(&owner.name);
        }
        if let Some(account) = &mut self.service_account {
            *account = strings.intern(account);
        }
        if let Some(image) = &mut self.sidecar_image {
            *image = strings.intern(image);
        }
    }

    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// The labels as a map, for the selector functions shared with the webhook.
    pub fn labels_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A pod spec with just the containers' names, images, commands and ports: enough for
    /// [`fingerprint::detect`].
    pub fn fingerprint_spec(&self) -> PodSpec {
        PodSpec {
            containers: self
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.to_string(),
                    image: Some(c.image.to_string()),
                    command: Some(c.command.iter().map(|t| t.to_string()).collect()),
                    ports: Some(
                        c.ports
                            .iter()
                            .map(|&p| ContainerPort {
                                container_port: p,
                                ..ContainerPort::default()
                            })
                            .collect(),
                    ),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        }
    }

    /// The workload a person would name for this pod: the Deployment behind a ReplicaSet (recognised by
    /// the `pod-template-hash` suffix), else the controller, else the pod itself.
    pub fn workload(&self) -> (&str, String) {
        match &self.owner {
            Some(owner) if &*owner.kind == "ReplicaSet" => {
                let deployment = self
                    .label("pod-template-hash")
                    .and_then(|hash| owner.name.strip_suffix(hash))
                    .and_then(|prefix| prefix.strip_suffix('-'));
                match deployment {
                    Some(name) if !name.is_empty() => ("Deployment", name.to_owned()),
                    _ => ("ReplicaSet", owner.name.to_string()),
                }
            }
            Some(owner) => (static_kind(&owner.kind), owner.name.to_string()),
            None => ("Pod", self.name.to_string()),
        }
    }
}

impl airlock_core::expr::Labels for LeanPod {
    fn label(&self, key: &str) -> Option<&str> {
        LeanPod::label(self, key)
    }
}

fn static_kind(kind: &str) -> &'static str {
    match kind {
        "StatefulSet" => "StatefulSet",
        "DaemonSet" => "DaemonSet",
        "Job" => "Job",
        "ReplicaSet" => "ReplicaSet",
        "ReplicationController" => "ReplicationController",
        "Node" => "Node",
        _ => "Other",
    }
}

impl LeanContainer {
    fn from_container(c: &Container) -> LeanContainer {
        let command = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .take(MAX_TOKENS)
            .map(|t| truncate(t, MAX_TOKEN_BYTES).into())
            .collect();
        LeanContainer {
            name: c.name.as_str().into(),
            image: c.image.as_deref().unwrap_or_default().into(),
            command,
            ports: c.ports.iter().flatten().map(|p| p.container_port).collect(),
        }
    }
}

/// One shared copy of each string the index's pods hold. Strings no pod uses any more are dropped
/// whenever the pool has doubled since the last sweep, so churn (new ReplicaSet hashes, new images)
/// does not accumulate.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    swept_at: usize,
}

impl Interner {
    /// Strings below this count are never swept.
    const MIN_SWEEP: usize = 4096;

    /// The pool's copy of `s`, added when new.
    pub fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        if self.strings.len() >= (self.swept_at * 2).max(Self::MIN_SWEEP) {
            self.sweep();
        }
        self.strings.insert(s.clone());
        s.clone()
    }

    /// Drops the strings only the pool holds.
    pub fn sweep(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.swept_at = self.strings.len();
    }

    /// Number of distinct strings held.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An estimate of the heap and inline bytes a [`LeanPod`] occupies, for the memory figures.
pub fn approximate_size(pod: &LeanPod) -> usize {
    let strings: usize = pod.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + pod.name.len()
        + pod.sidecar_image.as_ref().map_or(0, |s| s.len())
        + pod.owner.as_ref().map_or(0, |o| o.kind.len() + o.name.len())
        + pod
            .containers
            .iter()
            .map(|c| {
                c.name.len()
                    + c.image.len()
                    + c.command.iter().map(|t| t.len() + 16).sum::<usize>()
                    + c.ports.len() * 4
                    + std::mem::size_of::<LeanContainer>()
            })
            .sum::<usize>();
    std::mem::size_of::<LeanPod>()
        + strings
        + pod.labels.len() * 32
        + pod.ips.len() * std::mem::size_of::<IpAddr>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_pod_keeps_its_labels_ips_readiness_and_deployment() {
        let lean = LeanPod::from_pod(&pod(r#"
metadata:
  name: chat-7d9f8b6c5-x2x9k
  labels: {app: chat, pod-template-hash: 7d9f8b6c5}
  ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: chat-7d9f8b6c5, uid: u, controller: true}
  managedFields: [{manager: kubectl}]
spec:
  containers:
    - name: vllm
      image: vllm/vllm-openai:v0.9.1
      args: [--model, meta-llama/Llama-3.1-8B-Instruct]
      ports: [{containerPort: 8000}]
status:
  phase: Running
  podIP: 10.0.0.7
  podIPs: [{ip: 10.0.0.7}, {ip: "fd00::7"}]
  conditions: [{type: Ready, status: "True"}]
"#))
        .unwrap();
        assert_eq!(lean.label("app"), Some("chat"));
        assert_eq!(lean.ips.len(), 2);
        assert!(lean.ready && !lean.terminal);
        assert_eq!(lean.workload(), ("Deployment", "chat".to_owned()));
        let found = fingerprint::detect(&lean.labels_map(), &lean.fingerprint_spec(), &[]).unwrap();
        assert_eq!(found.fingerprint, "vllm");
    }

    #[test]
    fn the_sidecar_is_recorded_but_not_kept_as_a_container() {
        let lean = LeanPod::from_pod(&pod(r#"
metadata:
  name: p
  annotations: {airlock.dev/injected: "true"}
spec:
  initContainers:
    - {name: airlock-sidecar, image: "ghcr.io/airlock-dev/airlock-sidecar:0.1.0", restartPolicy: Always}
  containers: [{name: app, image: busybox}]
"#))
        .unwrap();
        assert_eq!(
            lean.sidecar_image.as_deref(),
            Some("ghcr.io/airlock-dev/airlock-sidecar:0.1.0")
        );
        assert!(lean.injected);
        assert_eq!(lean.containers.len(), 1);
        assert_eq!(lean.workload(), ("Pod", "p".to_owned()));
    }

    #[test]
    fn long_command_lines_are_bounded() {
        let long = "x".repeat(10_000);
        let lean = LeanPod::from_pod(&pod(&format!(
            "metadata: {{name: p}}\nspec:\n  containers: [{{name: a, image: i, args: [{}]}}]\n",
            vec![long.as_str(); 100].join(", ")
        )))
        .unwrap();
        assert_eq!(lean.containers[0].command.len(), MAX_TOKENS);
        assert!(
            lean.containers[0]
                .command
                .iter()
                .all(|t| t.len() <= MAX_TOKEN_BYTES)
        );
    }

    #[test]
    fn a_pod_without_a_name_is_ignored() {
        assert!(LeanPod::from_pod(&Pod::default()).is_none());
    }
}
