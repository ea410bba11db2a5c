//! The policy bundle: the versioned JSON document the operator writes for each `AIRuntimeInstance` and
//! the sidecar reads, and the names that tie the two together.
//!
//! The operator stores the bundle under [`BUNDLE_KEY`] in the ConfigMap [`config_map_name`]`(instance)`
//! in each namespace the instance protects; the webhook mounts that ConfigMap read-only at
//! `/etc/airlock/policy`, so the kubelet refreshes the file and the sidecar picks up a new policy
//! without a restart. The bundle is self-contained: it carries the profiles and the address-group
//! members it needs, so a sidecar never reads the Kubernetes API.
//!
//! This module holds types and names only; building a bundle from cluster objects is the operator's
//! job, and nothing here talks to a cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::v1alpha1::{AISecurityProfileSpec, DetectionAction, FailureMode, Mode};

/// The `apiVersion` of the bundle format this build writes and reads.
///
/// Adding optional fields keeps the version (readers ignore fields they do not know); removing or
/// changing the meaning of a field needs a new version, which older sidecars refuse.
pub const BUNDLE_API_VERSION: &str = "airlock.dev/policy-v1";

/// The ConfigMap key (and so the file name under `/etc/airlock/policy`) that holds the bundle.
pub const BUNDLE_KEY: &str = "policy.json";

/// Annotation on the ConfigMap holding the SHA-256 (hex) of the bundle, so that unchanged policy can
/// be recognised without comparing whole documents.
pub const HASH_ANNOTATION: &str = "airlock.dev/policy-hash";

/// Label on objects the operator makes for an `AIRuntimeInstance`; its value is
/// [`instance_label_value`]`(instance)`.
pub const INSTANCE_LABEL: &str = "airlock.dev/instance";

const CONFIG_MAP_PREFIX: &str = "airlock-policy-";
/// Longest name of a ConfigMap (a DNS subdomain).
const MAX_DNS_SUBDOMAIN: usize = 253;
/// Longest label value.
const MAX_LABEL_VALUE: usize = 63;

/// Name of the ConfigMap that holds the bundle of the instance called `instance`:
/// `airlock-policy-<instance>`.
///
/// Instance names may be up to 253 characters, so a name that would not fit is shortened and given a
/// hash of the full instance name, keeping it a valid DNS subdomain of at most 253 characters and
/// distinct from the names of other instances.
pub fn config_map_name(instance: &str) -> String {
    bounded(CONFIG_MAP_PREFIX, instance, MAX_DNS_SUBDOMAIN)
}

/// Value of [`INSTANCE_LABEL`] for the instance called `instance`: the name itself when it fits in a
/// label value (63 characters), else a shortened name with a hash of the full one.
pub fn instance_label_value(instance: &str) -> String {
    bounded("", instance, MAX_LABEL_VALUE)
}

/// `prefix` + `name`, or, when that exceeds `max`, `prefix` + the start of `name` + `-` + a hash of
/// `name`. The kept part never ends in `-` or `.`, so the result stays a valid DNS name or label value
/// whenever `prefix` + `name` would have been one.
fn bounded(prefix: &str, name: &str, max: usize) -> String {
    if prefix.len() + name.len() <= max {
        return format!("{prefix}{name}");
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    let mut keep = max.saturating_sub(prefix.len() + 1 + hash.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = name[..keep].trim_end_matches(['-', '.', '_']);
    format!("{prefix}{head}-{hash}")
}

/// 64-bit FNV-1a. Names must not change between releases, so this cannot be `std`'s hasher, whose
/// output is unspecified; collisions only need to be unlikely, not hard to find, because only
/// cluster administrators name instances.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Everything a sidecar needs to enforce one `AIRuntimeInstance`'s policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundle {
    /// Format version: [`BUNDLE_API_VERSION`].
    pub api_version: String,

    /// Name of the `AIRuntimeInstance` this bundle enforces.
    pub instance: String,

    /// `metadata.generation` of the instance the bundle was built from.
    pub instance_generation: i64,

    /// `enforce` or `audit` (`spec.mode`): in `audit` the sidecar turns every `block` into `alert`.
    pub mode: Mode,

    /// What the sidecar does while it cannot enforce (`spec.sidecar.failureMode`).
    pub failure_mode: FailureMode,

    /// The instance's own profile (`spec.profileRef`), applied to traffic no rule names another
    /// profile for.
    pub profile: BundleProfile,

    /// The instance's rules in their order; the first that matches a request decides.
    #[serde(default)]
    pub rules: Vec<BundleRule>,

    /// Profiles named by rules, other than [`PolicyBundle::profile`], by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, BundleProfile>,

    /// Address groups named by rules, by name, with their members' addresses.
    #[serde(default)]
    pub groups: BTreeMap<String, BundleGroup>,

    /// Service accounts of the pods in the instance's namespaces, as `<namespace>/<name>` → the pods'
    /// IP addresses (sorted, without duplicates), so that a profile with `callerKey.source:
    /// serviceAccount` can count a remote caller by its service account. Present only when a profile
    /// in the bundle keys callers that way; an address that more than one service account's pods hold
    /// (a reused address during a rollout) is left out, and such callers are counted by address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_accounts: BTreeMap<String, Vec<String>>,
}

impl PolicyBundle {
    /// Reads a bundle from its JSON bytes.
    ///
    /// The `apiVersion` is checked before anything else, so a bundle from a newer operator is refused
    /// with a message that names both versions rather than with a confusing shape error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        /// Only the version, so that it can be read whatever shape the rest has.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Versioned {
            #[serde(default)]
            api_version: Option<String>,
        }

        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|source| Error::BundleParse { source })?;
        if versioned.api_version.as_deref() != Some(BUNDLE_API_VERSION) {
            return Err(Error::BundleVersion {
                found: versioned.api_version,
            });
        }
        serde_json::from_slice(bytes).map_err(|source| Error::BundleParse { source })
    }
}

/// An `AISecurityProfile` as the bundle carries it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleProfile {
    /// Name of the profile, reported in threat logs.
    pub name: String,

    /// `metadata.generation` of the profile, so status can say which version the sidecars enforce.
    pub generation: i64,

    /// The profile's spec as the API server stored it.
    pub spec: AISecurityProfileSpec,
}

/// One policy rule (`spec.rules[]` of the instance). An empty list matches everything, as an omitted
/// `from` or `to` does in the instance.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleRule {
    /// Name of the rule, reported in threat logs.
    pub name: String,

    /// What happens to a request the rule matches.
    pub action: DetectionAction,

    /// Address groups of which the source must be a member (any of them); each is a key of
    /// [`PolicyBundle::groups`].
    #[serde(default)]
    pub from_groups: Vec<String>,

    /// Address groups of which the destination must be a member (any of them); each is a key of
    /// [`PolicyBundle::groups`].
    #[serde(default)]
    pub to_groups: Vec<String>,

    /// Destination host names; `*.` matches any subdomain.
    #[serde(default)]
    pub to_hosts: Vec<String>,

    /// Model names from the request body; `*` matches any run of characters.
    #[serde(default)]
    pub to_models: Vec<String>,

    /// Profile for requests this rule lets through, when not the instance's own: a key of
    /// [`PolicyBundle::profiles`] or the name of [`PolicyBundle::profile`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The members of a `DynamicAddressGroup` as the bundle carries them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleGroup {
    /// Members' IP addresses, sorted and without duplicates, so equal membership gives equal bytes.
    #[serde(default)]
    pub ips: Vec<String>,

    /// Number of distinct member addresses (the length of `ips`), so that a sidecar can report a
    /// group's size without counting.
    #[serde(default)]
    pub member_count: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bundle() -> PolicyBundle {
        PolicyBundle {
            api_version: BUNDLE_API_VERSION.into(),
            instance: "models".into(),
            instance_generation: 3,
            mode: Mode::Audit,
            failure_mode: FailureMode::FailClosed,
            profile: BundleProfile {
                name: "strict".into(),
                generation: 2,
                spec: AISecurityProfileSpec::default(),
            },
            rules: vec![BundleRule {
                name: "chat-to-openai".into(),
                action: DetectionAction::Alert,
                from_groups: vec!["chat".into()],
                to_groups: vec![],
                to_hosts: vec!["api.openai.com".into()],
                to_models: vec![],
                profile: Some("audit".into()),
            }],
            profiles: BTreeMap::from([(
                "audit".into(),
                BundleProfile {
                    name: "audit".into(),
                    generation: 1,
                    spec: AISecurityProfileSpec::default(),
                },
            )]),
            groups: BTreeMap::from([(
                "chat".into(),
                BundleGroup {
                    ips: vec!["10.0.0.1".into()],
                    member_count: 1,
                },
            )]),
            service_accounts: BTreeMap::from([("chat/frontend".into(), vec!["10.0.0.1".into()])]),
        }
    }

    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn a_bundle_survives_a_round_trip_through_json() {
        let bundle = bundle();
        let json = serde_json::to_vec(&bundle).expect("serialises");
        assert_eq!(PolicyBundle::parse(&json).expect("parses"), bundle);
    }

    #[test]
    fn the_bundle_uses_camel_case_and_the_api_spellings() {
        let value = serde_json::to_value(bundle()).expect("serialises");
        assert_eq!(value["apiVersion"], json!("airlock.dev/policy-v1"));
        assert_eq!(value["instanceGeneration"], json!(3));
        assert_eq!(value["mode"], json!("audit"));
        assert_eq!(value["failureMode"], json!("failClosed"));
        assert_eq!(value["rules"][0]["fromGroups"], json!(["chat"]));
        assert_eq!(value["rules"][0]["profile"], json!("audit"));
        assert_eq!(value["groups"]["chat"]["memberCount"], json!(1));
        assert_eq!(value["serviceAccounts"]["chat/frontend"], json!(["10.0.0.1"]));
    }

    #[test]
    fn a_bundle_without_service_accounts_neither_writes_nor_needs_the_field() {
        // Bundles that need no service accounts keep the bytes (and hash) older operators wrote.
        let mut bundle = bundle();
        bundle.service_accounts.clear();
        let value = serde_json::to_value(&bundle).expect("serialises");
        assert!(value.get("serviceAccounts").is_none(), "{value}");
        assert_eq!(
            PolicyBundle::parse(value.to_string().as_bytes()).expect("parses"),
            bundle
        );
    }

    #[test]
    fn an_unknown_api_version_is_refused_with_both_versions_named() {
        let mut value = serde_json::to_value(bundle()).expect("serialises");
        value["apiVersion"] = json!("airlock.dev/policy-v2");
        // A future version may change the shape too; the version must still be what is reported.
        value["rules"] = json!("something else");
        let error = PolicyBundle::parse(value.to_string().as_bytes()).expect_err("refused");
        let message = error.to_string();
        assert!(matches!(error, Error::BundleVersion { .. }), "{error:?}");
        assert!(message.contains("airlock.dev/policy-v2"), "{message}");
        assert!(message.contains(BUNDLE_API_VERSION), "{message}");
    }

    #[test]
    fn a_bundle_without_an_api_version_is_refused() {
        let error = PolicyBundle::parse(br#"{"instance": "models"}"#).expect_err("refused");
        assert!(matches!(error, Error::BundleVersion { found: None }), "{error:?}");
        assert!(error.to_string().contains("no apiVersion"), "{error}");
    }

    #[test]
    fn bytes_that_are_not_a_bundle_are_a_parse_error() {
        let error = PolicyBundle::parse(b"not json").expect_err("refused");
        assert!(matches!(error, Error::BundleParse { .. }), "{error:?}");
        let error = PolicyBundle::parse(br#"{"apiVersion": "airlock.dev/policy-v1"}"#).expect_err("refused");
        assert!(matches!(error, Error::BundleParse { .. }), "{error:?}");
    }

    #[test]
    fn fields_a_newer_operator_adds_are_ignored() {
        let mut value = serde_json::to_value(bundle()).expect("serialises");
        value["somethingNew"] = json!({"a": 1});
        let parsed = PolicyBundle::parse(value.to_string().as_bytes()).expect("parses");
        assert_eq!(parsed, bundle());
    }

    #[test]
    fn a_short_instance_name_gives_the_plain_config_map_name() {
        assert_eq!(config_map_name("models"), "airlock-policy-models");
        assert_eq!(config_map_name("team.a"), "airlock-policy-team.a");
        assert_eq!(instance_label_value("models"), "models");
    }

    #[test]
    fn a_long_instance_name_gives_a_valid_distinct_config_map_name() {
        let long = "a".repeat(253);
        let other = format!("{}b", "a".repeat(252));
        let name = config_map_name(&long);
        assert_eq!(name.len(), 253);
        assert!(is_dns_subdomain(&name), "{name}");
        assert!(name.starts_with("airlock-policy-aaa"), "{name}");
        assert_ne!(name, config_map_name(&other));
        assert_eq!(name, config_map_name(&long), "stable");
    }

    #[test]
    fn a_shortened_name_never_leaves_a_dash_or_dot_before_the_hash() {
        // The cut falls right after `.` or `-` in these names.
        for filler in ['.', '-'] {
            let instance = format!("{}{filler}{}", "a".repeat(220), "b".repeat(32));
            let name = config_map_name(&instance);
            assert!(is_dns_subdomain(&name), "{name}");
            assert!(name.len() <= 253, "{name}");
        }
    }

    #[test]
    fn a_long_instance_name_gives_a_valid_label_value() {
        let instance = format!("{}.{}", "a".repeat(45), "b".repeat(100));
        let value = instance_label_value(&instance);
        assert!(value.len() <= 63, "{value}");
        assert!(value.starts_with("aaaa") && !value.contains(".-"), "{value}");
        assert_ne!(value, instance_label_value(&format!("{instance}c")));
    }
}
