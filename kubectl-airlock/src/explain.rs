//! `kubectl airlock explain <pod>`: how Airlock treats one pod, and why.
//!
//! [`explain`] is pure: it answers with the webhook's own selection and fingerprint functions over the
//! pod, its namespace's labels and Airlock's objects. [`fetch`] reads those from the cluster.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::{DynamicAddressGroupShard, Mode, PolicyRule};
use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use airlock_webhook::fingerprint;
use airlock_webhook::mutate::{
    self, ANNOTATION_INJECTED, ANNOTATION_STATUS, InjectionStatus, LABEL_INJECT, SIDECAR_NAME,
};
use airlock_webhook::selection::{self, NEVER_SELECTED};
use airlock_webhook::workload::{Workload, kind_name};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::{Table, or_dash};
use crate::status::Ready;

/// The label the API server gives every namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What `explain` looks at.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The pod.
    pub pod: Pod,
    /// Its namespace's labels; `None` when the namespace could not be read.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Every `AIRuntimeInstance`.
    pub instances: Vec<AIRuntimeInstance>,
    /// Every `AISecurityProfile`.
    pub profiles: Vec<AISecurityProfile>,
    /// Every `DynamicAddressGroup`.
    pub groups: Vec<DynamicAddressGroup>,
    /// Every `DynamicAddressGroupShard` (members of large groups beyond the first 1000).
    pub shards: Vec<DynamicAddressGroupShard>,
}

/// An instance that does not select the pod, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotSelected {
    /// The instance.
    pub instance: String,
    /// Why it does not select the pod.
    pub reason: String,
}

/// Which instance applies to the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The instance that applies (enforce beats audit, then the first by name), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Its mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Its profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The profile's `Ready` condition (`Unknown`/`NotFound` when the profile does not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_ready: Option<Ready>,
    /// Other instances that select the pod but lose on precedence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_selected_by: Vec<String>,
    /// Every instance that does not select the pod, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_selected_by: Vec<NotSelected>,
}

/// Whether and how the pod carries the sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Injection {
    /// Whether the pod carries `airlock-sidecar`.
    pub injected: bool,
    /// The `airlock.dev/injected` annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected_annotation: Option<String>,
    /// The `airlock.dev/status` annotation: what Airlock added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<InjectionStatus>,
    /// Whether the sidecar is a native sidecar (an init container that keeps running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<bool>,
    /// The sidecar's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image the applying instance asks for now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_image: Option<String>,
    /// Whether the sidecar is the one the applying instance asks for now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// A sentence on the state: why not injected, or why not current.
    pub summary: String,
}

/// The model-server fingerprint that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelServer {
    /// The fingerprint, e.g. `vllm`.
    pub fingerprint: String,
    /// The container it matched.
    pub container: String,
    /// What matched, e.g. `image vllm/vllm-openai:v0.9.1`.
    pub evidence: String,
    /// Whether the evidence is strong enough for admission to act on (a port alone is not).
    pub strong: bool,
}

/// An exemption that covers the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExemptionInfo {
    /// The instance that grants it.
    pub instance: String,
    /// The exempted workload's kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
    /// When it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A rule of the applying instance that names one of the pod's address groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleInfo {
    /// 1-based position in `spec.rules`.
    pub position: usize,
    /// Its name.
    pub name: String,
    /// `allow`, `alert` or `block`.
    pub action: String,
    /// Source address groups (empty: any source).
    pub from: Vec<String>,
    /// Destination address groups.
    pub to: Vec<String>,
    /// Destination hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Destination models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The rule's profile, if it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Whether the pod matches as `source`, `destination` or both.
    pub pod_is: String,
}

/// Everything `explain` says about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its controller, as `Kind/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Which instance applies.
    pub selection: Selection,
    /// The sidecar.
    pub injection: Injection,
    /// The model-server fingerprint, if one matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_server: Option<ModelServer>,
    /// Whether the pod opts out with `airlock.dev/inject: "false"`.
    pub opted_out: bool,
    /// Exemptions that cover the pod (in any instance).
    pub exemptions: Vec<ExemptionInfo>,
    /// The address groups the pod is a member of.
    pub address_groups: Vec<String>,
    /// The applying instance's rules that name those groups, in order.
    pub rules: Vec<RuleInfo>,
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// A label selector in `kubectl`'s notation: `app=chat,tier in (a,b),!canary,owner`.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in selector.match_expressions.iter().flatten() {
        let values = r.values.clone().unwrap_or_default().join(",");
        terms.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            other => format!("{} {other} ({values})", r.key),
        });
    }
    if terms.is_empty() {
        "{}".to_owned()
    } else {
        terms.join(",")
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        "none".to_owned()
    } else {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why `instance` does not select a pod with `pod_labels` in `namespace` (`None` when it does).
pub fn why_not_selected(
    instance: &AIRuntimeInstance,
    pod_labels: &BTreeMap<String, String>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    if NEVER_SELECTED.contains(&namespace) {
        return Some(format!("namespace {namespace} is never selected"));
    }
    let selector = &instance.spec.selector;
    let mut labels = namespace_labels.cloned().unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| namespace.to_owned());
    if let Some(ns_selector) = &selector.namespace_selector
        && !selection::selector_matches(ns_selector, &labels)
    {
        return Some(format!(
            "namespaceSelector {} does not match namespace {namespace} (labels: {})",
            selector_text(ns_selector),
            labels_text(&labels)
        ));
    }
    if let Some(pod_selector) = &selector.pod_selector
        && !selection::selector_matches(pod_selector, pod_labels)
    {
        return Some(format!(
            "podSelector {} does not match the pod's labels ({})",
            selector_text(pod_selector),
            labels_text(pod_labels)
        ));
    }
    None
}

fn sidecar(pod: &Pod) -> Option<(&Container, bool)> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .find(|c| c.name == SIDECAR_NAME)
        .map(|c| (c, true))
        .or_else(|| {
            spec.containers
                .iter()
                .find(|c| c.name == SIDECAR_NAME)
                .map(|c| (c, false))
        })
}

fn groups_of(inputs: &Inputs, namespace: &str, name: &str) -> Vec<String> {
    let is_pod = |m: &airlock_crds::v1alpha1::Member| m.namespace == namespace && m.name == name;
    let mut groups: Vec<String> = inputs
        .groups
        .iter()
        .filter(|g| g.status.as_ref().is_some_and(|s| s.members.iter().any(is_pod)))
        .map(ResourceExt::name_any)
        .chain(
            inputs
                .shards
                .iter()
                .filter(|s| s.spec.members.iter().any(is_pod))
                .map(|s| s.spec.group.clone()),
        )
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

fn rule_info(position: usize, rule: &PolicyRule, groups: &[String]) -> Option<RuleInfo> {
    let from = rule
        .from
        .as_ref()
        .map(|f| f.address_groups.clone())
        .unwrap_or_default();
    let to = rule
        .to
        .as_ref()
        .map(|t| t.address_groups.clone())
        .unwrap_or_default();
    let as_source = from.iter().any(|g| groups.contains(g));
    let as_destination = to.iter().any(|g| groups.contains(g));
    let pod_is = match (as_source, as_destination) {
        (false, false) => return None,
        (true, false) => "source",
        (false, true) => "destination",
        (true, true) => "source,destination",
    };
    let action = serde_json::to_value(rule.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Some(RuleInfo {
        position,
        name: rule.name.clone(),
        action,
        from,
        to,
        hosts: rule.to.as_ref().map(|t| t.hosts.clone()).unwrap_or_default(),
        models: rule.to.as_ref().map(|t| t.models.clone()).unwrap_or_default(),
        profile: rule.profile_ref.as_ref().map(|p| p.name.clone()),
        pod_is: pod_is.to_owned(),
    })
}

/// Explains how Airlock treats `inputs.pod`.
pub fn explain(inputs: &Inputs) -> Explanation {
    let pod = &inputs.pod;
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let labels = pod.labels().clone();
    let annotations = pod.annotations();
    let spec = pod.spec.clone().unwrap_or_default();
    let workload = serde_json::to_value(pod)
        .ok()
        .and_then(|v| Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, v).ok());

    let mut out = Explanation {
        namespace: namespace.clone(),
        name: name.clone(),
        owner: pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name)),
        opted_out: labels.get(LABEL_INJECT).map(String::as_str) == Some("false"),
        ..Explanation::default()
    };

    // Selection.
    let selecting = selection::selecting_instances(
        &labels,
        &namespace,
        inputs.namespace_labels.as_ref(),
        inputs.instances.iter(),
    );
    let chosen = selecting.first().copied();
    if let Some(instance) = chosen {
        let profile = instance.spec.profile_ref.name.clone();
        let profile_ready = inputs
            .profiles
            .iter()
            .find(|p| p.name_any() == profile)
            .map_or_else(
                || Ready {
                    status: "False".to_owned(),
                    reason: "NotFound".to_owned(),
                    message: format!("AISecurityProfile {profile} does not exist"),
                },
                |p| Ready::from_conditions(&p.status.clone().unwrap_or_default().conditions),
            );
        out.selection.instance = Some(instance.name_any());
        out.selection.mode = Some(mode_name(instance.spec.mode).to_owned());
        out.selection.profile = Some(profile);
        out.selection.profile_ready = Some(profile_ready);
        out.selection.also_selected_by = selecting[1..].iter().map(|i| i.name_any()).collect();
    }
    let mut others: Vec<&AIRuntimeInstance> = inputs.instances.iter().collect();
    others.sort_by_key(|i| i.name_any());
    out.selection.not_selected_by = others
        .into_iter()
        .filter_map(|i| {
            why_not_selected(i, &labels, &namespace, inputs.namespace_labels.as_ref()).map(|reason| {
                NotSelected {
                    instance: i.name_any(),
                    reason,
                }
            })
        })
        .collect();

    // Model server.
    let extra: Vec<_> = inputs
        .instances
        .iter()
        .filter_map(|i| i.spec.model_servers.as_ref())
        .flat_map(|m| m.extra_fingerprints.iter().cloned())
        .collect();
    out.model_server = fingerprint::detect(&labels, &spec, &extra).map(|m| ModelServer {
        fingerprint: m.fingerprint,
        container: m.container,
        evidence: m.evidence,
        strong: m.strong,
    });

    // Exemptions.
    if let Some(workload) = &workload {
        let mut instances: Vec<&AIRuntimeInstance> = inputs.instances.iter().collect();
        instances.sort_by_key(|i| i.name_any());
        for instance in instances {
            for (kind, candidate) in workload.exemption_candidates() {
                if let Some(e) = selection::exemption_for(instance, &namespace, kind, &candidate) {
                    out.exemptions.push(ExemptionInfo {
                        instance: instance.name_any(),
                        kind: kind_name(kind).to_owned(),
                        name: candidate.clone(),
                        reason: e.reason.clone(),
                        expires: e.expires.as_ref().map(|t| t.0.to_string()),
                    });
                }
            }
        }
    }

    // Injection.
    let status = annotations
        .get(ANNOTATION_STATUS)
        .and_then(|s| serde_json::from_str::<InjectionStatus>(s).ok());
    let found = sidecar(pod);
    out.injection = Injection {
        injected: found.is_some(),
        injected_annotation: annotations.get(ANNOTATION_INJECTED).cloned(),
        native: found.map(|(_, native)| native),
        image: found.and_then(|(c, _)| c.image.clone()),
        ..Injection::default()
    };
    if let Some(instance) = chosen {
        // The instance's own image, else the installation's default as the operator reports it.
        let default = instance
            .status
            .as_ref()
            .and_then(|s| s.sidecar_image.clone())
            .unwrap_or_else(mutate::default_sidecar_image);
        let expected = mutate::sidecar_image(instance, &default);
        if let Some(image) = &out.injection.image {
            out.injection.current = Some(*image == expected);
        }
        out.injection.expected_image = Some(expected);
    }
    out.injection.summary = injection_summary(&out, status.as_ref(), chosen, &spec);
    out.injection.status = status;

    // Address groups and rules.
    out.address_groups = groups_of(inputs, &namespace, &name);
    if let Some(instance) = chosen {
        out.rules = instance
            .spec
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| rule_info(i + 1, r, &out.address_groups))
            .collect();
    }
    out
}

fn injection_summary(
    out: &Explanation,
    status: Option<&InjectionStatus>,
    chosen: Option<&AIRuntimeInstance>,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> String {
    let injection = &out.injection;
    let chosen_name = chosen.map(ResourceExt::name_any);
    if injection.injected {
        let by = status.map(|s| s.instance.clone());
        let kind = if injection.native == Some(true) {
            "native sidecar"
        } else {
            "container"
        };
        let mut text = match &by {
            Some(by) => format!("injected by AIRuntimeInstance {by} as a {kind}"),
            None => format!(
                "carries {SIDECAR_NAME} as a {kind}, added by something other than Airlock's injector"
            ),
        };
        match (&chosen_name, injection.current) {
            (None, _) => text.push_str("; no instance selects it now (restart it to drop the sidecar)"),
            (Some(chosen), _) if by.as_ref().is_some_and(|b| b != chosen) => text.push_str(&format!(
                "; AIRuntimeInstance {chosen} applies now (restart the pod to pick it up)"
            )),
            (Some(_), Some(true)) => text.push_str("; the sidecar is current"),
            (Some(_), Some(false)) => text.push_str(&format!(
                "; drifted: the instance now asks for {} (restart the pod to update it)",
                injection.expected_image.as_deref().unwrap_or_default()
            )),
            (Some(_), None) => {}
        }
        return text;
    }
    if out.opted_out {
        return format!("not injected: opted out with {LABEL_INJECT}: \"false\"");
    }
    if spec.host_network == Some(true) {
        return "not injected: the pod uses hostNetwork, where Airlock cannot inject".to_owned();
    }
    match chosen_name {
        None => "not injected: no AIRuntimeInstance selects it".to_owned(),
        Some(chosen) => format!(
            "not injected although AIRuntimeInstance {chosen} selects it: drifted (created before the \
             instance, or while the injector was unavailable); restart it to inject"
        ),
    }
}

/// `Key:` padded to a column, then the value (no trailing spaces when the value is empty).
fn line(out: &mut String, key: &str, value: &str) {
    let text = format!("{:<18}{value}", format!("{key}:"));
    out.push_str(text.trim_end());
    out.push('\n');
}

/// The explanation as `kubectl describe`-style text.
pub fn render_text(e: &Explanation) -> String {
    let mut out = String::new();
    let pod = match &e.owner {
        Some(owner) => format!("{}/{} (owned by {owner})", e.namespace, e.name),
        None => format!("{}/{}", e.namespace, e.name),
    };
    line(&mut out, "Pod", &pod);
    match &e.selection.instance {
        Some(instance) => {
            line(
                &mut out,
                "Instance",
                &format!(
                    "{instance} (mode {})",
                    e.selection.mode.as_deref().unwrap_or_default()
                ),
            );
            let ready = e
                .selection
                .profile_ready
                .as_ref()
                .map(|r| format!(" (Ready: {})", r.cell()))
                .unwrap_or_default();
            line(
                &mut out,
                "Profile",
                &format!("{}{ready}", e.selection.profile.as_deref().unwrap_or_default()),
            );
            if !e.selection.also_selected_by.is_empty() {
                line(
                    &mut out,
                    "Also selected by",
                    &format!(
                        "{} (enforce beats audit, then the first by name)",
                        e.selection.also_selected_by.join(", ")
                    ),
                );
            }
        }
        None if e.selection.not_selected_by.is_empty() => {
            line(&mut out, "Instance", "none: there are no AIRuntimeInstances");
        }
        None => {
            line(&mut out, "Instance", "none selects this pod:");
            for n in &e.selection.not_selected_by {
                out.push_str(&format!("  {}: {}\n", n.instance, n.reason));
            }
        }
    }
    line(&mut out, "Injection", &e.injection.summary);
    if let Some(image) = &e.injection.image {
        line(&mut out, "Sidecar image", image);
    }
    let model = match &e.model_server {
        Some(m) if m.strong => format!(
            "yes, {} (container {}: {})",
            m.fingerprint, m.container, m.evidence
        ),
        Some(m) => format!(
            "probably not: only weak evidence for {} (container {}: {}); a port alone never rejects",
            m.fingerprint, m.container, m.evidence
        ),
        None => "no".to_owned(),
    };
    line(&mut out, "Model server", &model);
    if e.exemptions.is_empty() {
        line(&mut out, "Exemptions", "none");
    } else {
        line(&mut out, "Exemptions", "");
        for x in &e.exemptions {
            let expires = x
                .expires
                .as_ref()
                .map(|t| format!(", until {t}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}/{} by AIRuntimeInstance {}: {}{expires}\n",
                x.kind, x.name, x.instance, x.reason
            ));
        }
    }
    line(
        &mut out,
        "Address groups",
        &if e.address_groups.is_empty() {
            "none".to_owned()
        } else {
            e.address_groups.join(", ")
        },
    );
    if let Some(instance) = &e.selection.instance {
        if e.rules.is_empty() {
            line(
                &mut out,
                "Rules",
                &format!("none of AIRuntimeInstance {instance}'s rules names these groups"),
            );
        } else {
            line(
                &mut out,
                "Rules",
                &format!("of AIRuntimeInstance {instance} that name these groups, in order:"),
            );
            let mut table = Table::new(["#", "NAME", "ACTION", "FROM", "TO", "PROFILE", "POD IS"]);
            for r in &e.rules {
                let mut to: Vec<String> = r.to.clone();
                to.extend(r.hosts.iter().map(|h| format!("host:{h}")));
                to.extend(r.models.iter().map(|m| format!("model:{m}")));
                table.row([
                    r.position.to_string(),
                    r.name.clone(),
                    r.action.clone(),
                    if r.from.is_empty() {
                        "*".to_owned()
                    } else {
                        r.from.join(",")
                    },
                    if to.is_empty() {
                        "*".to_owned()
                    } else {
                        to.join(",")
                    },
                    or_dash(r.profile.as_deref().unwrap_or_default()),
                    r.pod_is.clone(),
                ]);
            }
            for l in table.render().lines() {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Reads the pod and everything [`explain`] needs.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Inputs> {
    let name = name
        .strip_prefix("pod/")
        .or_else(|| name.strip_prefix("pods/"))
        .unwrap_or(name);
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get pod {namespace}/{name}"), e))?
        .ok_or_else(|| Error::PodNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    // Without read access to namespaces, selection is judged on the name label alone.
    let namespace_labels = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .ok()
        .flatten()
        .map(|ns| ns.labels().clone());
    let (instances, profiles, groups) = crate::cluster::list_instances_profiles_groups(client).await?;
    let shards = Api::<DynamicAddressGroupShard>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Ok(Inputs {
        pod,
        namespace_labels,
        instances,
        profiles,
        groups,
        shards,
    })
}
