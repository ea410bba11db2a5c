//! `AIRuntimeInstance`: which workloads Airlock protects, with which profile, sidecar and policy rules.
//!
//! The operator and webhook read it to inject sidecars into the selected pods, to reject model-server
//! pods that would run unprotected (unless exempted here, never by the workload's own annotation) and
//! to report coverage in its status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DetectionAction, FailureMode, ProfileRef};

/// Sidecar image used when `spec.sidecar.image` is omitted, without its tag: the operator appends its
/// own version, e.g. `ghcr.io/airlock-dev/airlock-sidecar:0.1.0`.
pub const DEFAULT_SIDECAR_IMAGE_REPOSITORY: &str = "ghcr.io/airlock-dev/airlock-sidecar";
/// Most entries of `status.unprotected`.
pub const MAX_UNPROTECTED_LISTED: usize = 50;
/// Most entries of `status.drift.pods`.
pub const MAX_DRIFT_PODS_LISTED: usize = 50;

/// Which workloads Airlock protects, with which profile, sidecar settings and policy rules.
#[allow(
    clippy::duplicated_attributes,
    reason = "printcolumn(...) entries repeat keys such as type_"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "airlock.dev",
    version = "v1alpha1",
    kind = "AIRuntimeInstance",
    shortname = "airi",
    category = "airlock",
    status = "AIRuntimeInstanceStatus",
    derive = "PartialEq",
    doc = "AIRuntimeInstance selects the workloads Airlock protects: Airlock injects its sidecar into the \
           selected pods, inspects their LLM traffic with the referenced AISecurityProfile, applies the \
           ordered rules, and rejects model-server pods that would run unprotected unless exempted here.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the instance's profile exists and its policy reached the selected sidecars"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "enforce blocks and rejects; audit only reports"
    ),
    printcolumn(
        name = "Profile",
        type_ = "string",
        json_path = ".spec.profileRef.name",
        description = "The AISecurityProfile applied by default"
    ),
    printcolumn(
        name = "Protected",
        type_ = "integer",
        json_path = ".status.protectedWorkloads",
        description = "Selected workloads that run with the sidecar"
    ),
    printcolumn(
        name = "Unprotected",
        type_ = "integer",
        json_path = ".status.unprotectedModelServers",
        description = "Selected model servers that run without the sidecar"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AIRuntimeInstanceSpec {
    /// Which namespaces and pods this instance protects. `kube-system` and Airlock's own namespace are
    /// never selected.
    pub selector: WorkloadSelector,

    /// The `AISecurityProfile` applied to the selected pods' traffic unless a rule names another, e.g.
    /// `{name: strict}`.
    pub profile_ref: ProfileRef,

    /// `enforce`: detections act as their profile says and unprotected model-server pods are rejected;
    /// `audit`: every `block` becomes `alert` and unprotected model servers are only reported. Default:
    /// `enforce`.
    #[serde(default)]
    pub mode: Mode,

    /// How the sidecar is injected and what it intercepts. Omit for the defaults of every field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarSpec>,

    /// How model servers are recognised, on top of the built-in fingerprints (vLLM, Ollama, TGI, Triton,
    /// llama.cpp and similar) and the pod label `airlock.dev/model-server: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_servers: Option<ModelServers>,

    /// Ordered policy rules between address groups and destinations; the first rule that matches a
    /// request decides, and a request no rule matches is allowed and scanned with `profileRef`. At most
    /// 128 rules with unique names. The list is replaced as a whole on apply, so its order is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(
        merge_strategy = ListMerge::Atomic,
        validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))")
            .message("rule names must be unique")
    )]
    pub rules: Vec<PolicyRule>,

    /// Workloads allowed to run without the sidecar, each with the reason why. At most 128, unique by
    /// namespace, kind and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(
        merge_strategy = ListMerge::Atomic,
        validation = Rule::new(
            // `namespace` is a CEL reserved word, so the field is spelled `__namespace__` in rules.
            concat!(
                "self.all(e, self.exists_one(f, ",
                "f.name == e.name && f.kind == e.kind && f.__namespace__ == e.__namespace__))"
            )
        )
        .message("exemptions must be unique by namespace, kind and name")
    )]
    pub exemptions: Vec<Exemption>,
}

/// Which namespaces and pods an instance protects.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaceSelector) || has(self.podSelector)")
    .message("selector needs namespaceSelector, podSelector or both"))]
pub struct WorkloadSelector {
    /// Labels of the namespaces to protect, e.g. `{matchLabels: {airlock.dev/protect: "true"}}`. Omit to
    /// select pods in every namespace (except `kube-system` and Airlock's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Labels of the pods to protect inside the selected namespaces, e.g. `{matchLabels: {app: chat}}`.
    /// Omit to select every pod there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// Whether an instance enforces or only reports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Block, mask and reject as configured.
    #[default]
    Enforce,
    /// Turn every block into an alert and only report unprotected model servers.
    Audit,
}

/// How the sidecar is injected and what it intercepts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Sidecar container image, e.g. `ghcr.io/airlock-dev/airlock-sidecar:0.1.0`. Default: the
    /// operator's own version of `ghcr.io/airlock-dev/airlock-sidecar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the sidecar image: `Always`, `IfNotPresent` or `Never`. Default: the
    /// Kubernetes default for the image (`Always` for `:latest`, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory for the sidecar container, e.g. `{requests: {cpu: 50m, memory: 64Mi}, limits:
    /// {memory: 256Mi}}`. Default: requests of `cpu: 50m, memory: 64Mi` and a `memory: 256Mi` limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// What the sidecar does while it cannot enforce: before its first policy arrives, or when its
    /// policy cannot be loaded. `failOpen` forwards traffic unscanned and reports it; `failClosed`
    /// refuses traffic with HTTP 503. Default: `failOpen`.
    #[serde(default)]
    pub failure_mode: FailureMode,

    /// Which traffic the sidecar intercepts. Omit for outbound interception plus transparent inbound
    /// interception of the detected model-server ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interception: Option<Interception>,
}

/// When the kubelet pulls an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

/// Which traffic the sidecar intercepts.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Interception {
    /// Intercept the pod's outbound LLM API calls: the sidecar serves an explicit proxy on
    /// `127.0.0.1:15001` and the injector points `OPENAI_BASE_URL` and similar variables at it. Needs no
    /// extra capability. Default: `true`.
    #[serde(default = "default_true")]
    pub outbound: bool,

    /// How inbound requests to a model server reach the sidecar. `transparent`: an init container
    /// redirects `inboundPorts` to port 15006 (needs `NET_ADMIN` and `NET_RAW`, so not Pod Security
    /// `baseline`); `explicit`: clients call the pod's `airlock-in` port (15006) and a NetworkPolicy
    /// closes the model port (for restricted namespaces); `disabled`: no inbound interception. Default:
    /// `transparent`.
    #[serde(default)]
    pub inbound: InboundMode,

    /// Model-server ports to intercept inbound, between 1 and 65535, e.g. `[8000]`. At most 32. Default:
    /// the ports of the model-server fingerprint that matched the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(p, p >= 1 && p <= 65535)")
            .message("inboundPorts must be between 1 and 65535")
    )]
    pub inbound_ports: Vec<i32>,

    /// Destinations (CIDRs) whose outbound traffic bypasses the sidecar, e.g. `["10.0.0.0/8"]`. At most
    /// 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(max = 49), pattern(r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$"))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub exclude_outbound_cidrs: Vec<String>,
}

impl Default for Interception {
    fn default() -> Self {
        Self {
            outbound: true,
            inbound: InboundMode::default(),
            inbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// How inbound requests reach the sidecar.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum InboundMode {
    /// An init container redirects the model ports to the sidecar.
    #[default]
    Transparent,
    /// Clients call the sidecar's `airlock-in` port; a NetworkPolicy closes the model port.
    Explicit,
    /// No inbound interception.
    Disabled,
}

/// How model servers are recognised beyond the built-in fingerprints.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelServers {
    /// Your own model-server fingerprints, at most 64 with unique names, e.g.
    /// `[{name: in-house-llm, imagePatterns: ["registry.example.com/llm/*"], ports: [9000]}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        merge_strategy = ListMerge::Atomic,
        validation = Rule::new("self.all(f, self.exists_one(g, g.name == f.name))")
            .message("extraFingerprints names must be unique")
    )]
    pub extra_fingerprints: Vec<Fingerprint>,
}

/// A way to recognise a model-server container. Every criterion that is set must match; at least one
/// must be set.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.imagePatterns) || has(self.commandPatterns) || has(self.ports) || has(self.labels)"
)
.message("a fingerprint needs at least one of imagePatterns, commandPatterns, ports or labels"))]
pub struct Fingerprint {
    /// Name of the fingerprint, reported in `status.unprotected[].fingerprint`, e.g. `in-house-llm`.
    /// Lower-case letters, digits and `-`, at most 63 characters.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Glob patterns (`*` matches any run of characters) of which at least one must match the
    /// container image, e.g. `["*/vllm-openai:*", "registry.example.com/llm/*"]`. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)))]
    pub image_patterns: Vec<String>,

    /// Glob patterns of which at least one must match the container's command and arguments joined by
    /// spaces, e.g. `["*serve --model*"]`. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)))]
    pub command_patterns: Vec<String>,

    /// Ports the model server listens on, between 1 and 65535, e.g. `[8000]`; a container matches when
    /// it declares one of them, and these are the default inbound interception ports. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,

    /// Pod labels that must all be present with these values, e.g. `{app.kubernetes.io/component:
    /// inference}`. At most 16.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "bounded_labels")]
    pub labels: BTreeMap<String, String>,
}

/// A label map of at most 16 entries with Kubernetes-sized keys and values, so that CEL rules over
/// fingerprints stay within the API server's cost budget.
fn bounded_labels(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {"type": "string", "maxLength": 63},
    })
}

/// One ordered policy rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Name of the rule, unique in the instance, reported in threat logs, e.g. `chat-to-openai`.
    /// Lower-case letters, digits and `-`, at most 63 characters.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// What happens to a request this rule matches: `allow` forwards it (scanned with the rule's
    /// profile), `alert` forwards it and logs it, `block` refuses it with HTTP 403.
    pub action: DetectionAction,

    /// Where the request comes from. Omit to match every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<RuleSource>,

    /// Where the request goes. Omit to match every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<RuleDestination>,

    /// Profile for requests this rule allows or alerts on, instead of the instance's `profileRef`, e.g.
    /// `{name: audit}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_ref: Option<ProfileRef>,
}

/// Sources of a rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuleSource {
    /// Names of `DynamicAddressGroup`s; the request matches when its source pod is a member of any, e.g.
    /// `[chat-frontends]`. At most 32. Omit to match every source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub address_groups: Vec<String>,
}

/// Destinations of a rule; every list that is set must match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuleDestination {
    /// Names of `DynamicAddressGroup`s; matches when the destination pod is a member of any, e.g.
    /// `[gpu-model-servers]`. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub address_groups: Vec<String>,

    /// Host names of external LLM APIs; `*.` matches any subdomain, e.g. `["api.openai.com",
    /// "*.openai.azure.com"]`. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub hosts: Vec<String>,

    /// Model names from the request body; `*` matches any run of characters, e.g. `["gpt-4o*",
    /// "llama-3*"]`. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub models: Vec<String>,
}

/// A workload allowed to run without the sidecar.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    /// Namespace of the workload, e.g. `models`.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// Kind of the workload: `Pod`, `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job` or
    /// `CronJob`. A pod is exempt when it, or the top-level owner of it, is the named workload.
    #[schemars(extend("maxLength" = 16))] // bounds the cost of the uniqueness rule
    pub kind: WorkloadKind,

    /// Name of the workload, e.g. `legacy-embedder`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Why the workload may run unprotected, for auditors, e.g. `vendor appliance, reviewed in
    /// SEC-1234`. Must not be blank; at most 256 characters.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0")
        .message("exemption reason must not be blank: say why this workload may run unprotected"))]
    pub reason: String,

    /// When the exemption ends (RFC 3339), e.g. `2026-12-31T00:00:00Z`. After it, the workload counts as
    /// unprotected again. Omit for no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

/// Kind of an exempted workload.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// A bare pod.
    Pod,
    /// An `apps/v1` Deployment.
    Deployment,
    /// An `apps/v1` StatefulSet.
    StatefulSet,
    /// An `apps/v1` DaemonSet.
    DaemonSet,
    /// An `apps/v1` ReplicaSet.
    ReplicaSet,
    /// A `batch/v1` Job.
    Job,
    /// A `batch/v1` CronJob.
    CronJob,
}

/// Observed state of an `AIRuntimeInstance`, written by the operator.
// Every field is serialized, an empty list as `[]` and an absent value as `null`: the operator writes
// the status as a JSON merge patch, in which a field left out would keep its old value
// (crds/tests/status_patch.rs).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AIRuntimeInstanceStatus {
    /// Current state of the instance. `Ready` is `True` when the profile exists and the policy reached
    /// the selected sidecars. Written by the operator.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes. Written by the operator.
    #[serde(default)]
    pub observed_generation: Option<i64>,

    /// The sidecar image the webhook injects into the pods this instance selects: `spec.sidecar.image`,
    /// else the installation's default (the chart's `sidecar.image`). Pods running another image are
    /// listed as drift. Written by the operator.
    #[serde(default)]
    pub sidecar_image: Option<String>,

    /// The `metadata.generation` of the referenced profile that the sidecars enforce. Written by the
    /// operator.
    #[serde(default)]
    pub profile_generation: Option<i64>,

    /// Number of namespaces the selector currently selects. Written by the operator.
    #[serde(default)]
    pub selected_namespaces: i32,

    /// Number of selected workloads (top-level owners) whose pods all run with the sidecar. Written by
    /// the operator.
    #[serde(default)]
    pub protected_workloads: i32,

    /// Number of selected pods that carry the injected sidecar. Written by the operator.
    #[serde(default)]
    pub injected_pods: i32,

    /// Number of selected model-server workloads that run without the sidecar and are not exempt.
    /// Written by the operator.
    #[serde(default)]
    pub unprotected_model_servers: i32,

    /// The first 50 unprotected model-server workloads; `unprotectedModelServers` has the full count.
    /// Written by the operator.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub unprotected: Vec<UnprotectedWorkload>,

    /// Pods this instance selects that run without the sidecar (created before the instance, or while
    /// the webhook was down) or with a sidecar image other than the instance's; restarting them (e.g.
    /// `kubectl rollout restart`) fixes both. Exempt, opted-out and host-network pods are not drift.
    /// Written by the operator.
    #[serde(default)]
    pub drift: Option<Drift>,
}

/// A model-server workload that runs without the sidecar.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UnprotectedWorkload {
    /// Namespace of the workload.
    pub namespace: String,
    /// Name of the workload (its top-level owner, or the pod itself).
    pub name: String,
    /// Kind of the workload, e.g. `Deployment`.
    pub kind: String,
    /// Name of the fingerprint that recognised it as a model server, e.g. `vllm` or `in-house-llm`.
    pub fingerprint: String,
}

/// Selected pods whose sidecar is missing or differs from what the instance asks for now.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Number of drifted pods.
    #[serde(default)]
    pub count: i32,

    /// The first 50 drifted pods; `count` has the full number.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub pods: Vec<PodRef>,
}

/// A pod by namespace and name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn omitted_fields_take_the_documented_defaults() {
        let spec: AIRuntimeInstanceSpec = serde_json::from_value(json!({
            "selector": {"podSelector": {"matchLabels": {"app": "chat"}}},
            "profileRef": {"name": "strict"},
        }))
        .expect("deserialises");
        assert_eq!(spec.mode, Mode::Enforce);
        assert!(spec.sidecar.is_none() && spec.rules.is_empty() && spec.exemptions.is_empty());

        let sidecar: SidecarSpec = serde_json::from_value(json!({})).expect("deserialises");
        assert_eq!(sidecar, SidecarSpec::default());
        assert_eq!(sidecar.failure_mode, FailureMode::FailOpen);

        let interception: Interception = serde_json::from_value(json!({})).expect("deserialises");
        assert_eq!(interception, Interception::default());
        assert!(interception.outbound);
        assert_eq!(interception.inbound, InboundMode::Transparent);
    }

    #[test]
    fn exemption_expiry_is_an_rfc3339_timestamp() {
        let exemption: Exemption = serde_json::from_value(json!({
            "namespace": "models", "kind": "Deployment", "name": "legacy", "reason": "vendor appliance",
            "expires": "2027-06-30T00:00:00Z",
        }))
        .expect("deserialises");
        assert_eq!(exemption.kind, WorkloadKind::Deployment);
        assert_eq!(
            serde_json::to_value(&exemption).expect("serialises")["expires"],
            json!("2027-06-30T00:00:00Z")
        );
    }
}
