//! What an `AIRuntimeInstance` protects, computed from the pod index: a pure function.
//!
//! For every running pod the instance selects (and that no higher-precedence instance claims, see
//! `airlock_webhook::selection::choose`):
//! - with the `airlock-sidecar`: an injected pod; drifted when the sidecar image is not the one the
//!   instance asks for now;
//! - without it: drift, unless the pod may legitimately run without (exempt, opted out, host network);
//! - a model server (built-in or the instance's extra fingerprints) without the sidecar and without an
//!   exemption: an unprotected model server, reported once per workload.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use airlock_crds::AIRuntimeInstance;
use airlock_crds::v1alpha1::{PodRef, UnprotectedWorkload, WorkloadKind};
use airlock_webhook::{fingerprint, mutate, selection};

use crate::index::{Index, LeanPod};

/// Most entries listed in `status.unprotected` and `status.drift.pods` (the CRD's limit).
pub const MAX_LISTED: usize = 50;

/// Why a pod counts as drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DriftKind {
    /// Selected, but runs without the sidecar (created before the instance, or while the webhook was
    /// down).
    Missing,
    /// Runs a sidecar image other than the instance's.
    Outdated,
}

/// A drifted pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriftedPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Why.
    pub kind: DriftKind,
    /// The workload the pod belongs to (`Deployment`, `chat`).
    pub workload: (String, String),
}

/// The coverage of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Names of the selected namespaces, sorted.
    pub namespaces: Vec<String>,
    /// Workloads whose running pods all carry the sidecar.
    pub protected_workloads: usize,
    /// Pods that carry the sidecar.
    pub injected_pods: usize,
    /// Unprotected model-server workloads, sorted by namespace, kind and name.
    pub unprotected: Vec<UnprotectedWorkload>,
    /// Drifted pods, sorted.
    pub drift: Vec<DriftedPod>,
    /// The sidecar image the webhook injects for this instance (pods with another one drifted).
    pub sidecar_image: String,
}

impl Coverage {
    /// The first [`MAX_LISTED`] unprotected workloads.
    pub fn unprotected_listed(&self) -> Vec<UnprotectedWorkload> {
        self.unprotected.iter().take(MAX_LISTED).cloned().collect()
    }

    /// The first [`MAX_LISTED`] drifted pods.
    pub fn drift_listed(&self) -> Vec<PodRef> {
        self.drift
            .iter()
            .take(MAX_LISTED)
            .map(|d| PodRef {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
            })
            .collect()
    }
}

/// The coverage of `instance`, given every instance (for precedence) and the index, at `now` (for
/// exemption expiry); `default_image` is the installation's sidecar image (drift is another image).
pub fn coverage(
    instance: &AIRuntimeInstance,
    instances: &[&AIRuntimeInstance],
    index: &Index,
    now: SystemTime,
    default_image: &str,
) -> Coverage {
    let mut out = Coverage::default();
    let wanted_image = mutate::sidecar_image(instance, default_image);
    out.sidecar_image.clone_from(&wanted_image);
    let extra = instance
        .spec
        .model_servers
        .as_ref()
        .map(|m| m.extra_fingerprints.as_slice())
        .unwrap_or_default();
    // (namespace, kind, name) → whether every pod so far carries the sidecar.
    let mut workloads: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    let mut unprotected: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for (namespace, ns_labels) in index.namespaces() {
        if !namespace_selected(instance, namespace, ns_labels) {
            continue;
        }
        namespaces.insert(namespace.to_owned());
        for pod in index.pods_in(namespace) {
            if pod.terminal {
                continue;
            }
            let labels = pod.labels_map();
            let applies = selection::choose(&labels, namespace, Some(ns_labels), instances.iter().copied())
                .is_some_and(|chosen| chosen.metadata.name == instance.metadata.name);
            if !applies {
                continue;
            }
            let (kind, name) = pod.workload();
            let key = (namespace.to_owned(), kind.to_owned(), name.clone());
            let exempt = is_exempt(instance, namespace, pod, now);
            match &pod.sidecar_image {
                Some(image) => {
                    out.injected_pods += 1;
                    workloads.entry(key).or_insert(true);
                    if **image != *wanted_image {
                        out.drift.push(drifted(namespace, pod, DriftKind::Outdated));
                    }
                }
                None => {
                    workloads.insert(key.clone(), false);
                    if exempt {
                        continue;
                    }
                    if !pod.opted_out && !pod.host_network {
                        out.drift.push(drifted(namespace, pod, DriftKind::Missing));
                    }
                    if let Some(found) = fingerprint::detect(&labels, &pod.fingerprint_spec(), extra)
                        && found.strong
                    {
                        unprotected.entry(key).or_insert(found.fingerprint);
                    }
                }
            }
        }
    }
    out.namespaces = namespaces.into_iter().collect();
    out.protected_workloads = workloads.values().filter(|all| **all).count();
    out.unprotected = unprotected
        .into_iter()
        .map(|((namespace, kind, name), fingerprint)| UnprotectedWorkload {
            namespace,
            name,
            kind,
            fingerprint,
        })
        .collect();
    out.drift.sort();
    out
}

/// Whether `instance` selects namespace `namespace` (Airlock's and `kube-system` never).
pub fn namespace_selected(
    instance: &AIRuntimeInstance,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selection::NEVER_SELECTED.contains(&namespace)
        && instance
            .spec
            .selector
            .namespace_selector
            .as_ref()
            .is_none_or(|sel| selection::selector_matches(sel, labels))
}

fn drifted(namespace: &str, pod: &LeanPod, kind: DriftKind) -> DriftedPod {
    let (workload_kind, workload_name) = pod.workload();
    DriftedPod {
        namespace: namespace.to_owned(),
        name: pod.name.to_string(),
        kind,
        workload: (workload_kind.to_owned(), workload_name),
    }
}

/// Whether an exemption in `instance` covers the pod or the workload it belongs to.
fn is_exempt(instance: &AIRuntimeInstance, namespace: &str, pod: &LeanPod, now: SystemTime) -> bool {
    let (kind, name) = pod.workload();
    let mut candidates = vec![(WorkloadKind::Pod, pod.name.to_string())];
    if let Some(kind) = workload_kind(kind) {
        candidates.push((kind, name));
    }
    if let Some(owner) = &pod.owner
        && let Some(kind) = workload_kind(&owner.kind)
    {
        candidates.push((kind, owner.name.to_string()));
    }
    candidates
        .iter()
        .any(|(kind, name)| selection::exemption_at(instance, namespace, *kind, name, now).is_some())
}

fn workload_kind(kind: &str) -> Option<WorkloadKind> {
    Some(match kind {
        "Pod" => WorkloadKind::Pod,
        "Deployment" => WorkloadKind::Deployment,
        "StatefulSet" => WorkloadKind::StatefulSet,
        "DaemonSet" => WorkloadKind::DaemonSet,
        "ReplicaSet" => WorkloadKind::ReplicaSet,
        "Job" => WorkloadKind::Job,
        "CronJob" => WorkloadKind::CronJob,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
