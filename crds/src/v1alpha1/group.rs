//! `DynamicAddressGroup`: a named, continuously updated set of pods chosen by a label expression.
//!
//! Policy rules in `AIRuntimeInstance.spec.rules` refer to groups by name. The operator evaluates the
//! expression (the language lives in `airlock-core::expr`) and writes the membership into the status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most members listed inline in `status.members`; the rest go to child membership objects.
pub const MAX_INLINE_MEMBERS: usize = 1000;
/// Longest accepted `spec.match` expression, in bytes.
pub const MAX_MATCH_LENGTH: usize = 4096;

/// A named set of pods chosen by a label expression, for use in policy rules.
#[allow(
    clippy::duplicated_attributes,
    reason = "printcolumn(...) entries repeat keys such as type_"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "airlock.dev",
    version = "v1alpha1",
    kind = "DynamicAddressGroup",
    shortname = "dag",
    category = "airlock",
    status = "DynamicAddressGroupStatus",
    derive = "PartialEq",
    doc = "DynamicAddressGroup is a named set of pods, chosen by a label expression and kept up to date by \
           the operator, that AIRuntimeInstance rules use as sources and destinations.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the expression is valid and the membership is current"
    ),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.memberCount",
        description = "Number of pods in the group"
    ),
    printcolumn(
        name = "Match",
        type_ = "string",
        json_path = ".spec.match",
        description = "The label expression",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DynamicAddressGroupSpec {
    /// Label expression a pod must satisfy to be a member. Terms: `key = value`, `key != value`,
    /// `key in (v1, v2)`, `key notin (v1, v2)` and `has(key)`; like Kubernetes label selectors, `!=` and
    /// `notin` also match pods without the label. Combine terms with `not`, `and`, `or` (or `!`, `&&`,
    /// `||`) and parentheses; `not` binds tightest, then `and`, then `or`. Keys are label keys such as
    /// `app.kubernetes.io/name`. Examples: `app = chat`; `tier in (frontend, api) and not has(canary)`;
    /// `(team = ml or team = research) and has(env) and env != dev`. Must not be blank; at most 4096
    /// bytes, 64 levels of nesting and 256 terms. An expression that does not parse marks the group
    /// `Ready=False` with the parser's message.
    #[serde(rename = "match")]
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0").message(concat!(
        "match must not be empty: write a label expression ",
        "such as app = chat and tier in (frontend, api)"
    )))]
    pub match_expr: String,

    /// Labels of the namespaces whose pods may be members, e.g. `{matchLabels: {team: ml}}`. Omit for
    /// all namespaces except `kube-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Observed membership of a `DynamicAddressGroup`, written by the operator.
///
/// Membership is sharded like EndpointSlices: `members` holds the first 1000 members (ordered by
/// namespace and name); when there are more, the rest are written to `shards` child membership objects
/// named `<group>-<n>` (n = 1, 2, …), owned by the group, each with at most 1000 members.
// Every field is serialized, an empty list as `[]` and an absent value as `null`: the operator writes
// the status as a JSON merge patch, in which a field left out would keep its old value
// (crds/tests/status_patch.rs).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DynamicAddressGroupStatus {
    /// Current state of the group. `Ready` is `True` when the expression parses and the membership is
    /// current; reason `InvalidExpression` explains a parse error. Written by the operator.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes. Written by the operator.
    #[serde(default)]
    pub observed_generation: Option<i64>,

    /// Total number of member pods, including those in child membership objects. Written by the
    /// operator.
    #[serde(default)]
    pub member_count: i32,

    /// The first 1000 member pods, ordered by namespace and name. Written by the operator.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub members: Vec<Member>,

    /// Number of child membership objects (`<group>-1` … `<group>-<shards>`) holding the members beyond
    /// the first 1000; 0 when all fit inline. Written by the operator.
    #[serde(default)]
    pub shards: i32,
}

/// A member pod of an address group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// The pod's IP addresses (`status.podIPs`), e.g. `["10.244.1.7", "fd00::7"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub ips: Vec<String>,
    /// Whether the pod is `Ready`.
    #[serde(default)]
    pub ready: bool,
}

/// Label on every shard naming the `DynamicAddressGroup` it belongs to.
pub const SHARD_GROUP_LABEL: &str = "airlock.dev/group";

/// Members of a large `DynamicAddressGroup` beyond the first 1000, in chunks of at most 1000.
///
/// Shards are written only by the operator, named `<group>-<n>`, labelled `airlock.dev/group: <group>`
/// and owned by the group (deleting the group deletes them). Like an EndpointSlice they are plain data:
/// they have no status of their own; the group's status says whether the membership is current.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "airlock.dev",
    version = "v1alpha1",
    kind = "DynamicAddressGroupShard",
    shortname = "dagshard",
    derive = "PartialEq",
    doc = "DynamicAddressGroupShard holds members of a DynamicAddressGroup beyond the 1000 listed in the \
           group's status. Written by the operator; do not edit.",
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.group",
        description = "The DynamicAddressGroup these members belong to"
    ),
    printcolumn(
        name = "Index",
        type_ = "integer",
        json_path = ".spec.index",
        description = "Position of this shard (1 holds members 1001-2000)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DynamicAddressGroupShardSpec {
    /// Name of the `DynamicAddressGroup`.
    pub group: String,
    /// Position of this shard, from 1: shard n holds members 1000·n+1 to 1000·(n+1) in the group's
    /// order (namespace, then name).
    pub index: i32,
    /// The members, ordered by namespace and name.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub members: Vec<Member>,
}
