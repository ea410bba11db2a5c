//! Airlock's admission webhook configurations: the objects the operator keeps in place ([`mutating`],
//! [`validating`]) and how to tell that someone changed or deleted them ([`drift`]).
//!
//! The API server never sends webhook configurations to webhooks, so no admission check protects them; an
//! administrator (or an attacker with the right RBAC) can delete Airlock's or loosen their failure policy.
//! The operator watches them and restores the desired shape. Everything here is pure.
//!
//! The desired shape is the one `e2e/airlock.sh register` applies in the local environment: injection fails
//! open, validation fails closed, `kube-system` and Airlock's namespace are never intercepted.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};

/// Name of the mutating configuration.
pub const MUTATING_CONFIGURATION: &str = "airlock-sidecar-injector";
/// Name of the validating configuration.
pub const VALIDATING_CONFIGURATION: &str = "airlock-validator";
/// The sidecar-injection webhook (in [`MUTATING_CONFIGURATION`]).
pub const INJECT_WEBHOOK: &str = "inject.airlock.dev";
/// The webhook that rejects unprotected workloads (in [`VALIDATING_CONFIGURATION`]).
pub const WORKLOADS_WEBHOOK: &str = "workloads.airlock.dev";
/// The webhook that validates Airlock's own resources (in [`VALIDATING_CONFIGURATION`]).
pub const RESOURCES_WEBHOOK: &str = "resources.airlock.dev";
/// Path of the mutating endpoint on the webhook server.
pub const MUTATE_PATH: &str = "/mutate";
/// Path of the validating endpoint on the webhook server.
pub const VALIDATE_PATH: &str = "/validate";

/// Labels on both configurations.
const LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/part-of", "airlock"),
    ("app.kubernetes.io/managed-by", "airlock-operator"),
];
/// Static pods are created by the kubelet from files: a webhook cannot change them, and rejecting their
/// mirror pod only hides them from the API.
const NOT_A_MIRROR_POD: (&str, &str) = (
    "not-a-mirror-pod",
    "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)",
);

/// Where the API server sends admission requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTarget {
    /// The webhook's Service in the cluster.
    Service {
        /// Namespace of the Service.
        namespace: String,
        /// Name of the Service.
        name: String,
        /// Port of the Service.
        port: i32,
    },
    /// A base URL (`https://127.0.0.1:16450`), for the local environment whose nodes run no containers;
    /// the endpoint paths are appended to it.
    Url(String),
}

impl ClientTarget {
    fn client_config(&self, path: &str, ca_bundle: &[u8]) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(ca_bundle.to_vec()));
        match self {
            ClientTarget::Service {
                namespace,
                name,
                port,
            } => WebhookClientConfig {
                ca_bundle,
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.to_owned()),
                    port: Some(*port),
                }),
                url: None,
            },
            ClientTarget::Url(base) => WebhookClientConfig {
                ca_bundle,
                service: None,
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            },
        }
    }
}

/// What the API server does when it cannot reach a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Admit the object.
    #[value(name = "Ignore")]
    Ignore,
    /// Reject the object.
    #[value(name = "Fail")]
    Fail,
}

impl FailurePolicy {
    /// The value of `failurePolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// What varies between installations of the webhook configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Where admission requests go.
    pub client: ClientTarget,
    /// PEM bundle of the CAs the API server trusts for the webhook's serving certificate.
    pub ca_bundle: Vec<u8>,
    /// Airlock's namespace, never intercepted (like `kube-system`).
    pub airlock_namespace: String,
    /// Failure policy of the injection webhook: open, so a webhook outage does not stop pods.
    pub mutate_failure_policy: FailurePolicy,
    /// Failure policy of the validating webhooks: closed, so an outage does not let unprotected model
    /// servers in.
    pub validate_failure_policy: FailurePolicy,
    /// How long the API server waits for an answer.
    pub timeout_seconds: i32,
    /// The cluster-scoped object the configurations belong to (the operator's ClusterRole, installed by
    /// the Helm chart): when it is deleted, as `helm uninstall` does, the garbage collector deletes the
    /// configurations too, so no webhook is left behind to block the cluster.
    pub owner: Option<OwnerReference>,
}

impl WebhookConfig {
    /// Default timeout: well under the API server's default of 10 s, so a slow webhook costs pods little.
    pub const DEFAULT_TIMEOUT_SECONDS: i32 = 5;

    /// A configuration with the default failure policies (mutation `Ignore`, validation `Fail`) and timeout.
    pub fn new(client: ClientTarget, ca_bundle: Vec<u8>, airlock_namespace: impl Into<String>) -> Self {
        WebhookConfig {
            client,
            ca_bundle,
            airlock_namespace: airlock_namespace.into(),
            mutate_failure_policy: FailurePolicy::Ignore,
            validate_failure_policy: FailurePolicy::Fail,
            timeout_seconds: Self::DEFAULT_TIMEOUT_SECONDS,
            owner: None,
        }
    }

    fn namespace_selector(&self) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec!["kube-system".to_owned(), self.airlock_namespace.clone()]),
            }]),
            match_labels: None,
        }
    }
}

/// The desired `airlock-sidecar-injector` configuration.
pub fn mutating(cfg: &WebhookConfig) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(MUTATING_CONFIGURATION, cfg.owner.as_ref()),
        webhooks: Some(vec![MutatingWebhook {
            name: INJECT_WEBHOOK.to_owned(),
            client_config: cfg.client.client_config(MUTATE_PATH, &cfg.ca_bundle),
            rules: Some(vec![rule("", "v1", &["CREATE"], &["pods"], "Namespaced")]),
            failure_policy: Some(cfg.mutate_failure_policy.as_str().to_owned()),
            // Mutating webhooks that run after ours may add containers the sidecar must see.
            reinvocation_policy: Some("IfNeeded".to_owned()),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            timeout_seconds: Some(cfg.timeout_seconds),
            namespace_selector: Some(cfg.namespace_selector()),
            match_conditions: Some(vec![not_a_mirror_pod()]),
            ..MutatingWebhook::default()
        }]),
    }
}

/// The desired `airlock-validator` configuration.
pub fn validating(cfg: &WebhookConfig) -> ValidatingWebhookConfiguration {
    let create_update = &["CREATE", "UPDATE"];
    let failure_policy = Some(cfg.validate_failure_policy.as_str().to_owned());
    ValidatingWebhookConfiguration {
        metadata: metadata(VALIDATING_CONFIGURATION, cfg.owner.as_ref()),
        webhooks: Some(vec![
            ValidatingWebhook {
                name: WORKLOADS_WEBHOOK.to_owned(),
                client_config: cfg.client.client_config(VALIDATE_PATH, &cfg.ca_bundle),
                rules: Some(vec![
                    // Pods are judged when created; their updates (labels, finalizers) are never refused,
                    // so they are not sent — a webhook outage must not block them under `Fail`.
                    rule("", "v1", &["CREATE"], &["pods"], "Namespaced"),
                    rule(
                        "apps",
                        "v1",
                        create_update,
                        &["deployments", "statefulsets", "daemonsets", "replicasets"],
                        "Namespaced",
                    ),
                    rule("batch", "v1", create_update, &["jobs", "cronjobs"], "Namespaced"),
                ]),
                failure_policy: failure_policy.clone(),
                side_effects: "None".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                timeout_seconds: Some(cfg.timeout_seconds),
                namespace_selector: Some(cfg.namespace_selector()),
                match_conditions: Some(vec![not_a_mirror_pod()]),
                ..ValidatingWebhook::default()
            },
            // Airlock's resources are cluster-scoped, so no namespace selector applies.
            ValidatingWebhook {
                name: RESOURCES_WEBHOOK.to_owned(),
                client_config: cfg.client.client_config(VALIDATE_PATH, &cfg.ca_bundle),
                rules: Some(vec![
                    rule(
                        "airlock.dev",
                        "v1alpha1",
                        create_update,
                        &["airuntimeinstances", "dynamicaddressgroups"],
                        "Cluster",
                    ),
                    rule(
                        "airlock.dev",
                        "v1alpha1",
                        &["DELETE"],
                        &["aisecurityprofiles"],
                        "Cluster",
                    ),
                ]),
                failure_policy,
                side_effects: "None".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                timeout_seconds: Some(cfg.timeout_seconds),
                ..ValidatingWebhook::default()
            },
        ]),
    }
}

fn metadata(name: &str, owner: Option<&OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        owner_references: owner.map(|owner| vec![owner.clone()]),
        labels: Some(
            LABELS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

fn rule(
    group: &str,
    version: &str,
    operations: &[&str],
    resources: &[&str],
    scope: &str,
) -> RuleWithOperations {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    RuleWithOperations {
        api_groups: strings(&[group]),
        api_versions: strings(&[version]),
        operations: strings(operations),
        resources: strings(resources),
        scope: Some(scope.to_owned()),
    }
}

fn not_a_mirror_pod() -> MatchCondition {
    MatchCondition {
        name: NOT_A_MIRROR_POD.0.to_owned(),
        expression: NOT_A_MIRROR_POD.1.to_owned(),
    }
}

/// How an actual configuration departs from the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftReason {
    /// The configuration does not exist.
    Missing,
    /// One of Airlock's webhooks is gone from the configuration.
    WebhookMissing {
        /// The webhook's name.
        webhook: String,
    },
    /// The configuration holds a webhook Airlock did not put there.
    WebhookExtra {
        /// The webhook's name.
        webhook: String,
    },
    /// A field Airlock owns differs (the first one, in a fixed order).
    Changed {
        /// The webhook's name.
        webhook: String,
        /// The field, as spelled in the API (`failurePolicy`, `clientConfig.caBundle`).
        field: &'static str,
    },
    /// One of Airlock's labels is gone or has another value.
    Labels,
    /// The reference to the object the configuration belongs to is gone (or names another object).
    Owner,
}

impl DriftReason {
    /// A short, low-cardinality label for metrics: `missing` or `changed`.
    pub fn label(&self) -> &'static str {
        match self {
            DriftReason::Missing => "missing",
            _ => "changed",
        }
    }
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftReason::Missing => f.write_str("configuration missing"),
            DriftReason::WebhookMissing { webhook } => write!(f, "webhook {webhook} missing"),
            DriftReason::WebhookExtra { webhook } => write!(f, "unexpected webhook {webhook}"),
            DriftReason::Changed { webhook, field } => write!(f, "webhook {webhook}: {field} changed"),
            DriftReason::Labels => f.write_str("labels changed"),
            DriftReason::Owner => f.write_str("owner reference changed"),
        }
    }
}

/// A webhook configuration kind whose drift [`drift`] can tell: mutating or validating.
pub trait WebhookConfiguration: sealed::Sealed {}

impl WebhookConfiguration for MutatingWebhookConfiguration {}
impl WebhookConfiguration for ValidatingWebhookConfiguration {}

/// Why `actual` no longer matches `desired`, or `None` when it does.
///
/// Only what Airlock owns counts: its labels and, per webhook, the client, rules, policies, selectors,
/// match conditions, side effects, timeout and review versions. Values the API server fills in
/// (`matchPolicy: Equivalent`, empty selectors, `timeoutSeconds: 10`, a rule's `scope: "*"`, a Service's
/// port 443, `reinvocationPolicy: Never`) count as if written, and server-set metadata and others' labels
/// and annotations never count.
pub fn drift<C: WebhookConfiguration>(actual: Option<&C>, desired: &C) -> Option<DriftReason> {
    let Some(actual) = actual else {
        return Some(DriftReason::Missing);
    };
    let actual_entries: Vec<Entry> = actual.webhooks().iter().map(Entry::new).collect();
    let desired_entries: Vec<Entry> = desired.webhooks().iter().map(Entry::new).collect();

    for want in &desired_entries {
        let Some(have) = actual_entries.iter().find(|have| have.name == want.name) else {
            return Some(DriftReason::WebhookMissing {
                webhook: want.name.clone(),
            });
        };
        if let Some(field) = have.first_difference(want) {
            return Some(DriftReason::Changed {
                webhook: want.name.clone(),
                field,
            });
        }
    }
    if let Some(extra) = actual_entries
        .iter()
        .find(|have| !desired_entries.iter().any(|want| want.name == have.name))
    {
        return Some(DriftReason::WebhookExtra {
            webhook: extra.name.clone(),
        });
    }

    let have_labels = actual.meta().labels.as_ref();
    let labels_kept = desired
        .meta()
        .labels
        .iter()
        .flatten()
        .all(|(key, value)| have_labels.and_then(|labels| labels.get(key)) == Some(value));
    if !labels_kept {
        return Some(DriftReason::Labels);
    }
    let have_owners = actual.meta().owner_references.as_deref().unwrap_or_default();
    let owners_kept = desired.meta().owner_references.iter().flatten().all(|want| {
        have_owners
            .iter()
            .any(|have| have.uid == want.uid && have.kind == want.kind)
    });
    (!owners_kept).then_some(DriftReason::Owner)
}

mod sealed {
    use super::*;

    /// Reads either configuration kind in one shape: validating webhooks are carried as mutating ones
    /// without a `reinvocationPolicy`, and a mutating webhook's omitted `reinvocationPolicy` becomes the
    /// server default `Never`.
    pub trait Sealed {
        fn meta(&self) -> &ObjectMeta;
        fn webhooks(&self) -> Vec<MutatingWebhook>;
    }

    impl Sealed for MutatingWebhookConfiguration {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }

        fn webhooks(&self) -> Vec<MutatingWebhook> {
            let webhooks = self.webhooks.iter().flatten().cloned();
            webhooks
                .map(|w| MutatingWebhook {
                    reinvocation_policy: Some(w.reinvocation_policy.unwrap_or_else(|| "Never".to_owned())),
                    ..w
                })
                .collect()
        }
    }

    impl Sealed for ValidatingWebhookConfiguration {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }

        fn webhooks(&self) -> Vec<MutatingWebhook> {
            let webhooks = self.webhooks.iter().flatten().cloned();
            webhooks
                .map(|w| MutatingWebhook {
                    admission_review_versions: w.admission_review_versions,
                    client_config: w.client_config,
                    failure_policy: w.failure_policy,
                    match_conditions: w.match_conditions,
                    match_policy: w.match_policy,
                    name: w.name,
                    namespace_selector: w.namespace_selector,
                    object_selector: w.object_selector,
                    reinvocation_policy: None,
                    rules: w.rules,
                    side_effects: w.side_effects,
                    timeout_seconds: w.timeout_seconds,
                })
                .collect()
        }
    }
}

/// One webhook with the API server's defaults filled in and absent lists made empty, so that what was
/// applied and what is read back compare equal.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    url: Option<String>,
    service: Option<ServiceReference>,
    ca_bundle: Vec<u8>,
    rules: Vec<RuleWithOperations>,
    failure_policy: String,
    match_policy: String,
    namespace_selector: Selector,
    object_selector: Selector,
    match_conditions: Vec<MatchCondition>,
    side_effects: String,
    timeout_seconds: i32,
    /// `None` for validating webhooks, which have no such field.
    reinvocation_policy: Option<String>,
    admission_review_versions: Vec<String>,
}

/// A label selector where absent and empty are the same.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    match_labels: BTreeMap<String, String>,
    match_expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn new(selector: Option<&LabelSelector>) -> Self {
        let selector = selector.cloned().unwrap_or_default();
        Selector {
            match_labels: selector.match_labels.unwrap_or_default(),
            match_expressions: selector
                .match_expressions
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.key, e.operator, e.values.unwrap_or_default()))
                .collect(),
        }
    }
}

impl Entry {
    fn new(webhook: &MutatingWebhook) -> Self {
        let w = webhook.clone();
        let service = w.client_config.service.map(|service| ServiceReference {
            port: Some(service.port.unwrap_or(443)),
            ..service
        });
        let rules = w
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| RuleWithOperations {
                api_groups: Some(rule.api_groups.unwrap_or_default()),
                api_versions: Some(rule.api_versions.unwrap_or_default()),
                operations: Some(rule.operations.unwrap_or_default()),
                resources: Some(rule.resources.unwrap_or_default()),
                scope: Some(rule.scope.unwrap_or_else(|| "*".to_owned())),
            })
            .collect();
        Entry {
            name: w.name,
            url: w.client_config.url,
            service,
            ca_bundle: w.client_config.ca_bundle.map(|b| b.0).unwrap_or_default(),
            rules,
            failure_policy: w.failure_policy.unwrap_or_else(|| "Fail".to_owned()),
            match_policy: w.match_policy.unwrap_or_else(|| "Equivalent".to_owned()),
            namespace_selector: Selector::new(w.namespace_selector.as_ref()),
            object_selector: Selector::new(w.object_selector.as_ref()),
            match_conditions: w.match_conditions.unwrap_or_default(),
            side_effects: w.side_effects,
            timeout_seconds: w.timeout_seconds.unwrap_or(10),
            reinvocation_policy: w.reinvocation_policy,
            admission_review_versions: w.admission_review_versions,
        }
    }

    /// The first field, in API spelling, where `self` differs from `desired`.
    fn first_difference(&self, desired: &Entry) -> Option<&'static str> {
        let d = desired;
        [
            ("clientConfig.url", self.url == d.url),
            ("clientConfig.service", self.service == d.service),
            ("clientConfig.caBundle", self.ca_bundle == d.ca_bundle),
            ("rules", self.rules == d.rules),
            ("failurePolicy", self.failure_policy == d.failure_policy),
            (
                "namespaceSelector",
                self.namespace_selector == d.namespace_selector,
            ),
            ("objectSelector", self.object_selector == d.object_selector),
            ("matchConditions", self.match_conditions == d.match_conditions),
            ("sideEffects", self.side_effects == d.side_effects),
            ("timeoutSeconds", self.timeout_seconds == d.timeout_seconds),
            (
                "reinvocationPolicy",
                self.reinvocation_policy == d.reinvocation_policy,
            ),
            ("matchPolicy", self.match_policy == d.match_policy),
            (
                "admissionReviewVersions",
                self.admission_review_versions == d.admission_review_versions,
            ),
        ]
        .into_iter()
        .find_map(|(field, same)| (!same).then_some(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> WebhookConfig {
        WebhookConfig::new(
            ClientTarget::Url("https://127.0.0.1:16450/".to_owned()),
            b"airlock-ca".to_vec(),
            "airlock-system",
        )
    }

    fn in_cluster() -> WebhookConfig {
        WebhookConfig::new(
            ClientTarget::Service {
                namespace: "airlock-system".to_owned(),
                name: "airlock-webhook".to_owned(),
                port: 443,
            },
            b"airlock-ca".to_vec(),
            "airlock-system",
        )
    }

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// What `e2e/airlock.sh register` applies (caBundle `airlock-ca`), plus the managed-by label.
    const REGISTERED_MUTATING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: airlock-sidecar-injector
  labels: {app.kubernetes.io/part-of: airlock, app.kubernetes.io/managed-by: airlock-operator}
webhooks:
  - name: inject.airlock.dev
    clientConfig: {url: "https://127.0.0.1:16450/mutate", caBundle: "YWlybG9jay1jYQ=="}
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}
    failurePolicy: Ignore
    reinvocationPolicy: IfNeeded
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, airlock-system]}
    matchConditions:
      - name: not-a-mirror-pod
        expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"
"#;

    /// What `e2e/airlock.sh register` applies (caBundle `airlock-ca`), plus the managed-by label.
    const REGISTERED_VALIDATING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: airlock-validator
  labels: {app.kubernetes.io/part-of: airlock, app.kubernetes.io/managed-by: airlock-operator}
webhooks:
  - name: workloads.airlock.dev
    clientConfig: {url: "https://127.0.0.1:16450/validate", caBundle: "YWlybG9jay1jYQ=="}
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}
      - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments, statefulsets, daemonsets, replicasets], scope: Namespaced}
      - {apiGroups: [batch], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [jobs, cronjobs], scope: Namespaced}
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, airlock-system]}
    matchConditions:
      - name: not-a-mirror-pod
        expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"
  - name: resources.airlock.dev
    clientConfig: {url: "https://127.0.0.1:16450/validate", caBundle: "YWlybG9jay1jYQ=="}
    rules:
      - {apiGroups: [airlock.dev], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [airuntimeinstances, dynamicaddressgroups], scope: Cluster}
      - {apiGroups: [airlock.dev], apiVersions: [v1alpha1], operations: [DELETE], resources: [aisecurityprofiles], scope: Cluster}
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
"#;

    /// The in-cluster validating configuration as `kubectl get -o yaml` shows it after a server-side apply
    /// by the operator and a note added by someone else.
    const DEFAULTED_VALIDATING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  annotations:
    ops.example.com/reviewed-by: alice
  creationTimestamp: "2026-01-01T00:00:00Z"
  generation: 3
  labels:
    app.kubernetes.io/managed-by: airlock-operator
    app.kubernetes.io/part-of: airlock
    team: platform
  managedFields:
  - apiVersion: admissionregistration.k8s.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          f:app.kubernetes.io/managed-by: {}
          f:app.kubernetes.io/part-of: {}
    manager: airlock-operator
    operation: Apply
    time: "2026-01-01T00:00:00Z"
  name: airlock-validator
  resourceVersion: "48213"
  uid: 0b6a7c52-5d1e-4b8f-9a53-2f4e8f0c9d11
webhooks:
- admissionReviewVersions:
  - v1
  clientConfig:
    caBundle: YWlybG9jay1jYQ==
    service:
      name: airlock-webhook
      namespace: airlock-system
      path: /validate
      port: 443
  failurePolicy: Fail
  matchConditions:
  - expression: '!has(object.metadata.annotations) || !(''kubernetes.io/config.mirror'' in object.metadata.annotations)'
    name: not-a-mirror-pod
  matchPolicy: Equivalent
  name: workloads.airlock.dev
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      - kube-system
      - airlock-system
  objectSelector: {}
  rules:
  - apiGroups:
    - ""
    apiVersions:
    - v1
    operations:
    - CREATE
    resources:
    - pods
    scope: Namespaced
  - apiGroups:
    - apps
    apiVersions:
    - v1
    operations:
    - CREATE
    - UPDATE
    resources:
    - deployments
    - statefulsets
    - daemonsets
    - replicasets
    scope: Namespaced
  - apiGroups:
    - batch
    apiVersions:
    - v1
    operations:
    - CREATE
    - UPDATE
    resources:
    - jobs
    - cronjobs
    scope: Namespaced
  sideEffects: None
  timeoutSeconds: 5
- admissionReviewVersions:
  - v1
  clientConfig:
    caBundle: YWlybG9jay1jYQ==
    service:
      name: airlock-webhook
      namespace: airlock-system
      path: /validate
      port: 443
  failurePolicy: Fail
  matchPolicy: Equivalent
  name: resources.airlock.dev
  namespaceSelector: {}
  objectSelector: {}
  rules:
  - apiGroups:
    - airlock.dev
    apiVersions:
    - v1alpha1
    operations:
    - CREATE
    - UPDATE
    resources:
    - airuntimeinstances
    - dynamicaddressgroups
    scope: Cluster
  - apiGroups:
    - airlock.dev
    apiVersions:
    - v1alpha1
    operations:
    - DELETE
    resources:
    - aisecurityprofiles
    scope: Cluster
  sideEffects: None
  timeoutSeconds: 5
"#;

    /// The in-cluster mutating configuration as the API server returns it.
    const DEFAULTED_MUTATING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  creationTimestamp: "2026-01-01T00:00:00Z"
  generation: 1
  labels:
    app.kubernetes.io/managed-by: airlock-operator
    app.kubernetes.io/part-of: airlock
  name: airlock-sidecar-injector
  resourceVersion: "48212"
  uid: 5f0e2d0a-6c33-4a57-8d0e-7d6b1f2a9c40
webhooks:
- admissionReviewVersions:
  - v1
  clientConfig:
    caBundle: YWlybG9jay1jYQ==
    service:
      name: airlock-webhook
      namespace: airlock-system
      path: /mutate
      port: 443
  failurePolicy: Ignore
  matchConditions:
  - expression: '!has(object.metadata.annotations) || !(''kubernetes.io/config.mirror'' in object.metadata.annotations)'
    name: not-a-mirror-pod
  matchPolicy: Equivalent
  name: inject.airlock.dev
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      - kube-system
      - airlock-system
  objectSelector: {}
  reinvocationPolicy: IfNeeded
  rules:
  - apiGroups:
    - ""
    apiVersions:
    - v1
    operations:
    - CREATE
    resources:
    - pods
    scope: Namespaced
  sideEffects: None
  timeoutSeconds: 5
"#;

    fn changed(webhook: &str, field: &'static str) -> Option<DriftReason> {
        Some(DriftReason::Changed {
            webhook: webhook.to_owned(),
            field,
        })
    }

    #[test]
    fn desired_configurations_are_what_the_local_environment_registers() {
        assert_eq!(
            mutating(&local()),
            yaml::<MutatingWebhookConfiguration>(REGISTERED_MUTATING)
        );
        assert_eq!(
            validating(&local()),
            yaml::<ValidatingWebhookConfiguration>(REGISTERED_VALIDATING)
        );
    }

    #[test]
    fn service_target_points_each_webhook_at_its_path() {
        let validating = validating(&in_cluster());
        let paths: Vec<_> = validating
            .webhooks
            .iter()
            .flatten()
            .map(|w| {
                let service = w.client_config.service.clone().unwrap();
                assert_eq!(w.client_config.url, None);
                assert_eq!(
                    (service.namespace.as_str(), service.name.as_str()),
                    ("airlock-system", "airlock-webhook")
                );
                assert_eq!(service.port, Some(443));
                service.path.unwrap()
            })
            .collect();
        assert_eq!(paths, [VALIDATE_PATH, VALIDATE_PATH]);

        let mutating = mutating(&in_cluster());
        let webhook = &mutating.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            webhook.client_config.service.as_ref().unwrap().path.as_deref(),
            Some(MUTATE_PATH)
        );
        assert_eq!(
            webhook.client_config.ca_bundle,
            Some(ByteString(b"airlock-ca".to_vec()))
        );
    }

    #[test]
    fn url_target_appends_the_path_to_the_base() {
        let mutating = mutating(&local());
        let client = &mutating.webhooks.as_ref().unwrap()[0].client_config;
        assert_eq!(client.url.as_deref(), Some("https://127.0.0.1:16450/mutate"));
        assert_eq!(client.service, None);
    }

    #[test]
    fn airlock_namespace_is_excluded_with_kube_system() {
        let cfg = WebhookConfig::new(ClientTarget::Url("https://x".to_owned()), Vec::new(), "airlock");
        let mutating = mutating(&cfg);
        let selector = mutating.webhooks.as_ref().unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap();
        let values = selector.match_expressions.unwrap()[0].values.clone().unwrap();
        assert_eq!(values, ["kube-system", "airlock"]);
    }

    #[test]
    fn desired_configuration_does_not_drift_from_itself() {
        for cfg in [local(), in_cluster()] {
            assert_eq!(drift(Some(&mutating(&cfg)), &mutating(&cfg)), None);
            assert_eq!(drift(Some(&validating(&cfg)), &validating(&cfg)), None);
        }
    }

    #[test]
    fn configuration_read_back_with_server_defaults_does_not_drift() {
        let cfg = in_cluster();
        let actual: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);
        assert_eq!(drift(Some(&actual), &validating(&cfg)), None);
        let actual: MutatingWebhookConfiguration = yaml(DEFAULTED_MUTATING);
        assert_eq!(drift(Some(&actual), &mutating(&cfg)), None);
    }

    #[test]
    fn omitted_fields_equal_their_server_defaults() {
        let cfg = in_cluster();
        let mut desired = mutating(&cfg);
        let mut actual = desired.clone();
        let d = &mut desired.webhooks.as_mut().unwrap()[0];
        d.timeout_seconds = None;
        d.failure_policy = None;
        d.reinvocation_policy = None;
        d.client_config.service.as_mut().unwrap().port = None;
        d.rules.as_mut().unwrap()[0].scope = None;
        let a = &mut actual.webhooks.as_mut().unwrap()[0];
        a.timeout_seconds = Some(10);
        a.failure_policy = Some("Fail".to_owned());
        a.reinvocation_policy = Some("Never".to_owned());
        a.rules.as_mut().unwrap()[0].scope = Some("*".to_owned());
        a.object_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: None,
        });
        assert_eq!(drift(Some(&actual), &desired), None);
    }

    #[test]
    fn missing_configuration_is_drift() {
        let reason = drift(None, &mutating(&local())).unwrap();
        assert_eq!(reason, DriftReason::Missing);
        assert_eq!(reason.label(), "missing");
    }

    #[test]
    fn failure_policy_flipped_to_ignore_is_drift() {
        let desired = validating(&in_cluster());
        let mut actual: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);
        actual.webhooks.as_mut().unwrap()[0].failure_policy = Some("Ignore".to_owned());
        let reason = drift(Some(&actual), &desired).unwrap();
        assert_eq!(reason, changed(WORKLOADS_WEBHOOK, "failurePolicy").unwrap());
        assert_eq!(reason.label(), "changed");
        assert_eq!(
            reason.to_string(),
            "webhook workloads.airlock.dev: failurePolicy changed"
        );
    }

    #[test]
    fn removed_webhook_is_drift() {
        let desired = validating(&in_cluster());
        let mut actual: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);
        actual
            .webhooks
            .as_mut()
            .unwrap()
            .retain(|w| w.name != RESOURCES_WEBHOOK);
        let reason = drift(Some(&actual), &desired).unwrap();
        assert_eq!(
            reason,
            DriftReason::WebhookMissing {
                webhook: RESOURCES_WEBHOOK.to_owned()
            }
        );
        assert_eq!(reason.label(), "changed");
    }

    #[test]
    fn added_webhook_is_drift() {
        let desired = mutating(&in_cluster());
        let mut actual: MutatingWebhookConfiguration = yaml(DEFAULTED_MUTATING);
        let mut extra = actual.webhooks.as_ref().unwrap()[0].clone();
        extra.name = "steal.example.com".to_owned();
        actual.webhooks.as_mut().unwrap().push(extra);
        let reason = drift(Some(&actual), &desired).unwrap();
        assert_eq!(reason.to_string(), "unexpected webhook steal.example.com");
    }

    #[test]
    fn changed_ca_bundle_is_drift() {
        let desired = mutating(&in_cluster());
        let mut actual: MutatingWebhookConfiguration = yaml(DEFAULTED_MUTATING);
        actual.webhooks.as_mut().unwrap()[0].client_config.ca_bundle = Some(ByteString(b"other-ca".to_vec()));
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(INJECT_WEBHOOK, "clientConfig.caBundle")
        );
    }

    #[test]
    fn loosened_selectors_and_conditions_are_drift() {
        let desired = validating(&in_cluster());
        let base: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);

        let mut actual = base.clone();
        actual.webhooks.as_mut().unwrap()[0].namespace_selector = Some(LabelSelector::default());
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(WORKLOADS_WEBHOOK, "namespaceSelector")
        );

        let mut actual = base.clone();
        actual.webhooks.as_mut().unwrap()[0].object_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("skip".to_owned(), "me".to_owned())])),
            match_expressions: None,
        });
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(WORKLOADS_WEBHOOK, "objectSelector")
        );

        let mut actual = base.clone();
        actual.webhooks.as_mut().unwrap()[0].match_conditions = None;
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(WORKLOADS_WEBHOOK, "matchConditions")
        );

        let mut actual = base.clone();
        actual.webhooks.as_mut().unwrap()[1].rules.as_mut().unwrap().pop();
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(RESOURCES_WEBHOOK, "rules")
        );

        let mut actual = base;
        actual.webhooks.as_mut().unwrap()[1].match_policy = Some("Exact".to_owned());
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(RESOURCES_WEBHOOK, "matchPolicy")
        );
    }

    #[test]
    fn switched_client_target_is_drift() {
        let actual = mutating(&local());
        assert_eq!(
            drift(Some(&actual), &mutating(&in_cluster())),
            changed(INJECT_WEBHOOK, "clientConfig.url")
        );
    }

    #[test]
    fn mutating_only_fields_are_compared() {
        let desired = mutating(&in_cluster());
        let mut actual: MutatingWebhookConfiguration = yaml(DEFAULTED_MUTATING);
        actual.webhooks.as_mut().unwrap()[0].reinvocation_policy = None;
        assert_eq!(
            drift(Some(&actual), &desired),
            changed(INJECT_WEBHOOK, "reinvocationPolicy")
        );
    }

    #[test]
    fn removed_airlock_label_is_drift_but_other_metadata_is_not() {
        let desired = validating(&in_cluster());
        let mut actual: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);
        actual.metadata.annotations = None;
        actual.metadata.labels.as_mut().unwrap().remove("team");
        assert_eq!(drift(Some(&actual), &desired), None);
        actual
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove("app.kubernetes.io/managed-by");
        assert_eq!(drift(Some(&actual), &desired), Some(DriftReason::Labels));
    }

    fn owned() -> WebhookConfig {
        WebhookConfig {
            owner: Some(OwnerReference {
                api_version: "rbac.authorization.k8s.io/v1".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: "airlock-operator".to_owned(),
                uid: "0b7d1c2e-0000-4000-8000-000000000001".to_owned(),
                ..OwnerReference::default()
            }),
            ..in_cluster()
        }
    }

    #[test]
    fn configurations_belong_to_the_owner_so_uninstalling_removes_them() {
        let desired = mutating(&owned());
        let owners = desired.metadata.owner_references.as_deref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ClusterRole");
        assert_eq!(
            validating(&owned()).metadata.owner_references.as_deref(),
            Some(owners)
        );
        assert_eq!(mutating(&in_cluster()).metadata.owner_references, None);
    }

    #[test]
    fn lost_owner_reference_is_drift_but_an_added_one_is_not() {
        let desired = validating(&owned());
        let mut actual: ValidatingWebhookConfiguration = yaml(DEFAULTED_VALIDATING);
        assert_eq!(drift(Some(&actual), &desired), Some(DriftReason::Owner));
        actual.metadata.owner_references = desired.metadata.owner_references.clone();
        assert_eq!(drift(Some(&actual), &desired), None);
        // Someone else's owner reference beside ours does not matter; ours pointing elsewhere does.
        let mut other = actual.metadata.owner_references.clone().unwrap()[0].clone();
        other.uid = "another".to_owned();
        actual
            .metadata
            .owner_references
            .as_mut()
            .unwrap()
            .push(other.clone());
        assert_eq!(drift(Some(&actual), &desired), None);
        actual.metadata.owner_references = Some(vec![other]);
        assert_eq!(drift(Some(&actual), &desired), Some(DriftReason::Owner));
        assert_eq!(drift(Some(&actual), &validating(&in_cluster())), None);
    }
}
