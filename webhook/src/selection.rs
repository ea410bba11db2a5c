//! Which `AIRuntimeInstance` selects a pod, and which exemption covers a workload. Pure functions over
//! labels; the caller supplies the namespace's labels from its cache.

use std::collections::BTreeMap;
use std::time::SystemTime;

use airlock_crds::AIRuntimeInstance;
use airlock_crds::v1alpha1::{Exemption, Mode, WorkloadKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Airlock's own namespace (the Helm release namespace by convention).
pub const AIRLOCK_NAMESPACE: &str = "airlock-system";

/// Namespaces no instance ever selects and the webhook never intercepts.
pub const NEVER_SELECTED: &[&str] = &["kube-system", AIRLOCK_NAMESPACE];

/// The label the API server sets on every namespace, so selectors on it work for unknown namespaces too.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether a Kubernetes `LabelSelector` matches `labels`.
///
/// An empty selector matches everything; an expression with an unknown operator matches nothing (the
/// API server validates operators, so this only guards against hand-made input).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    labels_match
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let have = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => have.is_some_and(|v| values.contains(v)),
                "NotIn" => have.is_none_or(|v| !values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

/// Whether `instance` selects a pod with `pod_labels` in `namespace`.
///
/// `namespace_labels` is `None` when the namespace is not (yet) known; it is then matched as if it had
/// only the `kubernetes.io/metadata.name` label the API server gives every namespace.
pub fn selects(
    instance: &AIRuntimeInstance,
    pod_labels: &BTreeMap<String, String>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if NEVER_SELECTED.contains(&namespace) {
        return false;
    }
    let selector = &instance.spec.selector;
    let namespace_ok = selector.namespace_selector.as_ref().is_none_or(|sel| {
        let mut labels = namespace_labels.cloned().unwrap_or_default();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| namespace.to_owned());
        selector_matches(sel, &labels)
    });
    namespace_ok
        && selector
            .pod_selector
            .as_ref()
            .is_none_or(|sel| selector_matches(sel, pod_labels))
}

/// Every instance that selects the pod, in precedence order: `enforce` before `audit`, then by name.
///
/// The first one is the instance that applies (see [`choose`]); the order is deterministic so that
/// overlapping instances always resolve the same way on every webhook replica.
pub fn selecting_instances<'a, I>(
    pod_labels: &BTreeMap<String, String>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    instances: I,
) -> Vec<&'a AIRuntimeInstance>
where
    I: IntoIterator<Item = &'a AIRuntimeInstance>,
{
    let mut selected: Vec<&AIRuntimeInstance> = instances
        .into_iter()
        .filter(|i| selects(i, pod_labels, namespace, namespace_labels))
        .collect();
    selected.sort_by(|a, b| {
        let rank = |i: &AIRuntimeInstance| match i.spec.mode {
            Mode::Enforce => 0,
            Mode::Audit => 1,
        };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    selected
}

/// The instance that applies to a pod when several select it: an enforcing one beats an auditing one,
/// and among equals the first by name.
pub fn choose<'a, I>(
    pod_labels: &BTreeMap<String, String>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    instances: I,
) -> Option<&'a AIRuntimeInstance>
where
    I: IntoIterator<Item = &'a AIRuntimeInstance>,
{
    selecting_instances(pod_labels, namespace, namespace_labels, instances)
        .into_iter()
        .next()
}

/// The exemption `instance` grants the workload, if any and unexpired now.
pub fn exemption_for<'a>(
    instance: &'a AIRuntimeInstance,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Option<&'a Exemption> {
    exemption_at(instance, namespace, kind, name, SystemTime::now())
}

/// [`exemption_for`] at a given time: an exemption whose `expires` is at or before `now` no longer
/// applies.
pub fn exemption_at<'a>(
    instance: &'a AIRuntimeInstance,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    now: SystemTime,
) -> Option<&'a Exemption> {
    instance.spec.exemptions.iter().find(|e| {
        e.namespace == namespace
            && e.kind == kind
            && e.name == name
            && e.expires.as_ref().is_none_or(|t| {
                let expires = SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(
                    t.0.as_second().max(0).unsigned_abs(),
                ));
                expires.is_none_or(|expires| expires > now)
            })
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn match_expressions_follow_kubernetes_semantics() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "llm")])),
            match_expressions: Some(vec![
                requirement("tier", "In", &["prod", "staging"]),
                requirement("canary", "DoesNotExist", &[]),
                requirement("team", "NotIn", &["legacy"]),
                requirement("owner", "Exists", &[]),
            ]),
        };
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "llm"), ("tier", "prod"), ("owner", "x")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "llm"), ("tier", "dev"), ("owner", "x")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "llm"), ("tier", "prod"), ("owner", "x"), ("canary", "")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[
                ("app", "llm"),
                ("tier", "prod"),
                ("owner", "x"),
                ("team", "legacy")
            ])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "llm"), ("tier", "prod")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        let bogus = LabelSelector {
            match_expressions: Some(vec![requirement("a", "Gt", &["1"])]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&bogus, &labels(&[("a", "2")])));
    }
}
