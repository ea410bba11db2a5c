//! Admission decisions of the validating webhook, as pure functions: rejection of unprotected
//! model-serving workloads, and the checks of Airlock's own objects that CEL cannot make.
//!
//! # When a model-serving workload is admitted
//!
//! A workload is a model server when a fingerprint matches its pod template with strong evidence (see
//! [`crate::fingerprint`]). In that order:
//!
//! 1. an unexpired exemption for it (or for its owner) in any `AIRuntimeInstance` admits it;
//! 2. a pod template labelled `airlock.dev/inject: "false"` is denied (a model server cannot opt out);
//! 3. the instance that selects it decides (enforce beats audit, then by name): `audit` admits with a
//!    warning; `enforce` admits a controller (the mutating webhook injects into its pods) and a Pod that
//!    carries the sidecar. A Pod that an enforcing instance selects but that reaches validation without
//!    the sidecar (hostNetwork, or the mutating webhook was unavailable: it fails open) is denied;
//! 4. with no instance, a workload that already carries `airlock-sidecar` is admitted, any other denied.
//!
//! Pods made by a controller are checked like bare pods (defence in depth: the controller may have been
//! admitted before Airlock was installed); their exemption may name the controller or its owner.
//!
//! Detection uses the built-in fingerprints plus the `extraFingerprints` of every instance: those are
//! cluster-wide knowledge of what a model server looks like, whichever instance declares them.

use std::fmt;

use airlock_crds::v1alpha1::{Mode, WorkloadKind};
use airlock_crds::{AIRuntimeInstance, DynamicAddressGroup};

use crate::fingerprint::{self, Match};
use crate::mutate::LABEL_INJECT;
use crate::review::ClusterView;
use crate::selection::{self, NEVER_SELECTED};
use crate::workload::Workload;

/// The validating webhook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admit.
    Allow,
    /// Admit, and show these warnings to the client (`kubectl` prints them).
    AllowWithWarnings(Vec<String>),
    /// Refuse.
    Deny(Denial),
}

/// Why a request is refused; the message reaches the user through `kubectl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The complete message.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn deny(message: String) -> Verdict {
    Verdict::Deny(Denial { message })
}

const FIXES: &str = "Fix it by selecting this workload with an AIRuntimeInstance (spec.selector) or by \
                     adding an exemption with a reason to one (spec.exemptions).";

fn matched(m: &Match) -> String {
    format!(
        "container {:?} matched fingerprint {} ({})",
        m.container, m.fingerprint, m.evidence
    )
}

/// The decision for a Pod or a pod-making controller in `namespace` (see the module docs).
pub fn validate(workload: &Workload, namespace: &str, view: &dyn ClusterView) -> Verdict {
    if NEVER_SELECTED.contains(&namespace) || workload.deleting {
        return Verdict::Allow;
    }
    let instances = view.instances();
    let extra: Vec<_> = instances
        .iter()
        .filter_map(|i| i.spec.model_servers.as_ref())
        .flat_map(|m| m.extra_fingerprints.iter().cloned())
        .collect();
    let Some(found) = fingerprint::detect(&workload.pod_labels, &workload.pod_spec, &extra) else {
        return Verdict::Allow;
    };
    if !found.strong {
        return Verdict::Allow;
    }
    // `Kind namespace/name`, written only into a message.
    let who = || workload.display(namespace);

    let candidates = workload.exemption_candidates();
    let exempt = instances.iter().any(|instance| {
        candidates
            .iter()
            .any(|(kind, name)| selection::exemption_for(instance, namespace, *kind, name).is_some())
    });
    if exempt {
        return Verdict::Allow;
    }

    if workload.pod_labels.get(LABEL_INJECT).map(String::as_str) == Some("false") {
        return deny(format!(
            "{} runs a model server but opts out of Airlock with the label {LABEL_INJECT}: \"false\": {}. \
             Model servers cannot opt out. Fix it by removing the label or by adding an exemption with a \
             reason to an AIRuntimeInstance (spec.exemptions).",
            who(),
            matched(&found)
        ));
    }

    let namespace_labels = view.namespace_labels(namespace);
    let chosen = selection::choose(
        &workload.pod_labels,
        namespace,
        namespace_labels.as_ref(),
        instances.iter().map(|i| i.as_ref()),
    );
    match chosen {
        Some(instance) if instance.spec.mode == Mode::Audit => Verdict::AllowWithWarnings(vec![format!(
            "{} runs a model server ({}) that AIRuntimeInstance {:?} only audits: Airlock reports \
                 its detections but blocks nothing and would not reject it unprotected",
            who(),
            matched(&found),
            instance.metadata.name.as_deref().unwrap_or_default()
        )]),
        Some(instance) => {
            if workload.kind != WorkloadKind::Pod || workload.has_sidecar() {
                Verdict::Allow
            } else {
                let reason = if workload.pod_spec.host_network == Some(true) {
                    "it uses hostNetwork, where Airlock cannot inject its sidecar"
                } else {
                    "the sidecar was not injected (the mutating webhook was unavailable)"
                };
                deny(format!(
                    "{} runs a model server without Airlock protection: {}. AIRuntimeInstance {:?} \
                     selects it, but {reason}. Fix it by re-creating the pod once the injector is \
                     available, or by adding an exemption with a reason to the instance (spec.exemptions).",
                    who(),
                    matched(&found),
                    instance.metadata.name.as_deref().unwrap_or_default()
                ))
            }
        }
        None if workload.has_sidecar() => Verdict::Allow,
        None => deny(format!(
            "{} runs a model server without Airlock protection: {}. {FIXES}",
            who(),
            matched(&found)
        )),
    }
}

/// Every profile name an instance refers to: `spec.profileRef` and each rule's `profileRef`.
pub fn referenced_profiles(instance: &AIRuntimeInstance) -> Vec<&str> {
    let mut names: Vec<&str> = std::iter::once(instance.spec.profile_ref.name.as_str())
        .chain(
            instance
                .spec
                .rules
                .iter()
                .filter_map(|r| r.profile_ref.as_ref().map(|p| p.name.as_str())),
        )
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Checks an `AIRuntimeInstance` on CREATE (`old` is `None`) or UPDATE: every profile it newly refers
/// to exists, and its `extraFingerprints` patterns compile.
///
/// On UPDATE only references that `old` did not have are checked, so an instance whose profile is
/// missing for another reason can still be edited (the operator reports it `ProfileNotFound`).
pub fn validate_instance(
    instance: &AIRuntimeInstance,
    old: Option<&AIRuntimeInstance>,
    view: &dyn ClusterView,
) -> Verdict {
    let name = instance.metadata.name.as_deref().unwrap_or_default();
    let before: Vec<&str> = old.map(referenced_profiles).unwrap_or_default();
    let missing: Vec<&str> = referenced_profiles(instance)
        .into_iter()
        .filter(|p| !before.contains(p) && view.profile(p).is_none())
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (noun, verb) = if missing.len() == 1 {
            ("AISecurityProfile", "does")
        } else {
            ("AISecurityProfiles", "do")
        };
        problems.push(format!(
            "it references {noun} {list}, which {verb} not exist; create the profile first or \
             fix spec.profileRef (and the rules' profileRef)"
        ));
    }
    if let Some(servers) = &instance.spec.model_servers {
        problems.extend(fingerprint::check_fingerprints(&servers.extra_fingerprints));
    }
    if problems.is_empty() {
        Verdict::Allow
    } else {
        deny(format!(
            "AIRuntimeInstance {name:?} is invalid: {}",
            problems.join("; ")
        ))
    }
}

/// Checks a `DynamicAddressGroup`: its `spec.match` must parse.
pub fn validate_group(group: &DynamicAddressGroup) -> Verdict {
    let input = &group.spec.match_expr;
    match airlock_core::expr::parse(input) {
        Ok(_) => Verdict::Allow,
        Err(e) => deny(format!(
            "DynamicAddressGroup {:?}: spec.match does not parse: {}",
            group.metadata.name.as_deref().unwrap_or_default(),
            e.render(input)
        )),
    }
}

/// Checks the DELETE of the `AISecurityProfile` called `name`: refused while an instance refers to it.
pub fn validate_profile_delete(name: &str, view: &dyn ClusterView) -> Verdict {
    let mut users: Vec<String> = view
        .instances()
        .iter()
        .filter(|i| referenced_profiles(i).contains(&name))
        .map(|i| i.metadata.name.clone().unwrap_or_default())
        .collect();
    if users.is_empty() {
        return Verdict::Allow;
    }
    users.sort();
    let list = users
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    deny(format!(
        "AISecurityProfile {name:?} is still used by AIRuntimeInstance {list}; point them at another \
         profile (spec.profileRef, rules[].profileRef) or delete them first"
    ))
}
