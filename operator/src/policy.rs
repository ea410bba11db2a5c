//! Building an `AIRuntimeInstance`'s policy bundle, and the ConfigMap that carries it to the sidecars.
//!
//! [`build`] gathers the instance's profile, the profiles its rules name and the members of the address
//! groups they name into one [`PolicyBundle`], serialised canonically so that the same inputs always
//! give the same bytes and the same hash; [`needs_write`] then compares hashes, so a reconcile that
//! changes nothing writes nothing. Every profile is validated on the way in: an invalid profile never
//! reaches a sidecar, which keeps enforcing its last good policy instead.
//!
//! Everything here is pure; the controller reads the inputs from its indexes and applies the result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use airlock_crds::bundle::{
    BUNDLE_API_VERSION, BUNDLE_KEY, BundleGroup, BundleProfile, BundleRule, HASH_ANNOTATION, INSTANCE_LABEL,
    PolicyBundle, config_map_name, instance_label_value,
};
use airlock_crds::v1alpha1::{AIRuntimeInstance, AISecurityProfile, CallerKeySource, PolicyRule};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::profile::{self, Problem};

/// Largest bundle [`build`] produces. The API server refuses ConfigMaps over 1 MiB in total, and the
/// metadata needs some of that.
pub const MAX_BUNDLE_BYTES: usize = 1_000_000;

/// `app.kubernetes.io/managed-by` of the ConfigMaps the operator writes.
pub const MANAGED_BY: &str = "airlock-operator";

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
const PART_OF: &str = "airlock";

/// What a bundle is built from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The instance whose policy is built.
    pub instance: &'a AIRuntimeInstance,
    /// Every known `AISecurityProfile`, by name.
    pub profiles: &'a BTreeMap<String, Arc<AISecurityProfile>>,
    /// Every known `DynamicAddressGroup`'s member IP addresses, by group name. A group that exists but
    /// has no members must be present with an empty list: a missing name means the group does not
    /// exist.
    pub groups: &'a BTreeMap<String, Vec<String>>,
    /// The addresses of the running pods in the instance's namespaces with each pod's service account
    /// as `<namespace>/<name>`. Only read when [`keys_callers_by_service_account`] holds, so a caller
    /// may leave it empty otherwise.
    pub callers: &'a [(IpAddr, String)],
}

/// A bundle ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    /// The bundle.
    pub bundle: PolicyBundle,
    /// Its canonical JSON: the same inputs always give the same bytes.
    pub json: String,
    /// SHA-256 of `json`, in lower-case hex.
    pub hash: String,
}

/// Why an instance's bundle cannot be built. The message is written for the instance's `Ready`
/// condition; [`BuildError::reason`] is that condition's reason.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `spec.profileRef` names a profile that does not exist.
    #[error(
        "AISecurityProfile {name} (spec.profileRef) does not exist; create it or reference an existing \
         profile"
    )]
    ProfileMissing {
        /// The profile's name.
        name: String,
    },

    /// A profile the bundle needs has problems.
    #[error(
        "AISecurityProfile {name} is invalid, so the policy is not updated and sidecars keep their last \
         good one; fix the profile: {}",
        profile::summary(problems)
    )]
    ProfileInvalid {
        /// The profile's name.
        name: String,
        /// What [`profile::validate`] found.
        problems: Vec<Problem>,
    },

    /// A rule names a `DynamicAddressGroup` that does not exist.
    #[error(
        "rule {rule} names address group {group}, which does not exist; create the DynamicAddressGroup \
         or remove it from the rule"
    )]
    UnknownGroup {
        /// The rule's name.
        rule: String,
        /// The group's name.
        group: String,
    },

    /// A rule's `profileRef` names a profile that does not exist.
    #[error(
        "rule {rule} names AISecurityProfile {name}, which does not exist; create it or change the rule's \
         profileRef"
    )]
    RuleProfileMissing {
        /// The rule's name.
        rule: String,
        /// The profile's name.
        name: String,
    },

    /// An address group has a member address that is not an IP address.
    #[error("address group {group} has member address {address:?}, which is not an IP address")]
    InvalidAddress {
        /// The group's name.
        group: String,
        /// The offending address.
        address: String,
    },

    /// The bundle does not fit in a ConfigMap.
    #[error(
        "the policy bundle is {bytes} bytes, more than the {limit} a ConfigMap can hold; use fewer or \
         smaller address groups in the rules (or, with callerKey.source serviceAccount, select fewer pods)"
    )]
    TooLarge {
        /// Size of the bundle's JSON.
        bytes: usize,
        /// [`MAX_BUNDLE_BYTES`].
        limit: usize,
    },

    /// The bundle could not be serialised.
    #[error("cannot encode the policy bundle: {0}")]
    Encode(#[source] serde_json::Error),
}

impl BuildError {
    /// The reason for the instance's `Ready=False` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProfileMissing { .. } | Self::RuleProfileMissing { .. } => "ProfileNotFound",
            Self::ProfileInvalid { .. } => "ProfileInvalid",
            Self::UnknownGroup { .. } => "AddressGroupNotFound",
            Self::InvalidAddress { .. } => "InvalidAddress",
            Self::TooLarge { .. } => "PolicyTooLarge",
            Self::Encode(_) => "EncodeFailed",
        }
    }
}

/// Builds the bundle of `inputs.instance`.
///
/// Fails on the first missing or invalid profile, unknown address group or bad address, in the order
/// of `spec.profileRef` then the rules. Only the profiles and groups the instance uses are included.
pub fn build(inputs: Inputs<'_>) -> Result<Built, BuildError> {
    let spec = &inputs.instance.spec;
    let main_name = &spec.profile_ref.name;
    let main = inputs
        .profiles
        .get(main_name)
        .ok_or_else(|| BuildError::ProfileMissing {
            name: main_name.clone(),
        })?;
    let profile = bundle_profile(main_name, main)?;

    let mut rules = Vec::with_capacity(spec.rules.len());
    let mut profiles = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for rule in &spec.rules {
        for group in rule_groups(rule) {
            if !groups.contains_key(group) {
                let members = inputs.groups.get(group).ok_or_else(|| BuildError::UnknownGroup {
                    rule: rule.name.clone(),
                    group: group.clone(),
                })?;
                groups.insert(group.clone(), bundle_group(group, members)?);
            }
        }
        let rule_profile = rule.profile_ref.as_ref().map(|r| &r.name);
        if let Some(name) = rule_profile.filter(|n| *n != main_name && !profiles.contains_key(*n)) {
            let found = inputs
                .profiles
                .get(name)
                .ok_or_else(|| BuildError::RuleProfileMissing {
                    rule: rule.name.clone(),
                    name: name.clone(),
                })?;
            profiles.insert(name.clone(), bundle_profile(name, found)?);
        }
        rules.push(bundle_rule(rule));
    }
    let service_accounts = if std::iter::once(&profile)
        .chain(profiles.values())
        .any(|p| keys_by_service_account(&p.spec))
    {
        service_accounts(inputs.callers)
    } else {
        BTreeMap::new()
    };

    let bundle = PolicyBundle {
        api_version: BUNDLE_API_VERSION.to_owned(),
        instance: inputs.instance.name_any(),
        instance_generation: inputs.instance.metadata.generation.unwrap_or_default(),
        mode: spec.mode,
        failure_mode: spec.sidecar.as_ref().map(|s| s.failure_mode).unwrap_or_default(),
        profile,
        rules,
        profiles,
        groups,
        service_accounts,
    };
    // Struct fields serialise in declaration order and every map is a BTreeMap, so serde_json's output
    // is canonical without a separate canonicalisation step.
    let json = serde_json::to_string(&bundle).map_err(BuildError::Encode)?;
    if json.len() > MAX_BUNDLE_BYTES {
        return Err(BuildError::TooLarge {
            bytes: json.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let hash = sha256_hex(json.as_bytes());
    Ok(Built { bundle, json, hash })
}

/// Whether a profile the instance uses counts callers by service account (`callerKey.source:
/// serviceAccount`), so that its bundle needs [`Inputs::callers`]. Profiles that do not exist are
/// skipped: [`build`] reports them.
pub fn keys_callers_by_service_account(
    instance: &AIRuntimeInstance,
    profiles: &BTreeMap<String, Arc<AISecurityProfile>>,
) -> bool {
    let spec = &instance.spec;
    std::iter::once(&spec.profile_ref.name)
        .chain(
            spec.rules
                .iter()
                .filter_map(|r| r.profile_ref.as_ref().map(|p| &p.name)),
        )
        .filter_map(|name| profiles.get(name))
        .any(|p| keys_by_service_account(&p.spec))
}

fn keys_by_service_account(spec: &airlock_crds::v1alpha1::AISecurityProfileSpec) -> bool {
    spec.model_protection
        .as_ref()
        .and_then(|m| m.caller_key.as_ref())
        .is_some_and(|k| k.source == CallerKeySource::ServiceAccount)
}

/// `<namespace>/<name>` → addresses, sorted and deduplicated. An address that pods of two service
/// accounts hold (a pod that is going away and its address's next owner) names neither: the sidecar then
/// counts that caller by address, never by the wrong account.
fn service_accounts(callers: &[(IpAddr, String)]) -> BTreeMap<String, Vec<String>> {
    let mut owner: BTreeMap<IpAddr, Option<&str>> = BTreeMap::new();
    for (ip, account) in callers {
        owner
            .entry(*ip)
            .and_modify(|known| {
                if *known != Some(account.as_str()) {
                    *known = None;
                }
            })
            .or_insert(Some(account.as_str()));
    }
    let mut accounts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Addresses come out of `owner` in order, so each list is sorted and without duplicates.
    for (ip, account) in owner {
        if let Some(account) = account {
            accounts
                .entry(account.to_owned())
                .or_default()
                .push(ip.to_string());
        }
    }
    accounts
}

fn bundle_profile(name: &str, profile: &AISecurityProfile) -> Result<BundleProfile, BuildError> {
    let problems = profile::validate(&profile.spec);
    if !problems.is_empty() {
        return Err(BuildError::ProfileInvalid {
            name: name.to_owned(),
            problems,
        });
    }
    Ok(BundleProfile {
        name: name.to_owned(),
        generation: profile.metadata.generation.unwrap_or_default(),
        spec: profile.spec.clone(),
    })
}

fn rule_groups(rule: &PolicyRule) -> impl Iterator<Item = &String> {
    let from = rule.from.iter().flat_map(|f| &f.address_groups);
    let to = rule.to.iter().flat_map(|t| &t.address_groups);
    from.chain(to)
}

/// The group's members with each address normalised (`FD00::1` and `fd00::1` are one address), sorted
/// and deduplicated, so that the order the index lists them in never changes the bundle.
fn bundle_group(name: &str, members: &[String]) -> Result<BundleGroup, BuildError> {
    let addresses = members
        .iter()
        .map(|member| {
            member.parse::<IpAddr>().map_err(|_| BuildError::InvalidAddress {
                group: name.to_owned(),
                address: member.clone(),
            })
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(BundleGroup {
        member_count: i64::try_from(addresses.len()).unwrap_or(i64::MAX),
        ips: addresses.iter().map(IpAddr::to_string).collect(),
    })
}

fn bundle_rule(rule: &PolicyRule) -> BundleRule {
    BundleRule {
        name: rule.name.clone(),
        action: rule.action,
        from_groups: rule
            .from
            .as_ref()
            .map(|f| f.address_groups.clone())
            .unwrap_or_default(),
        to_groups: rule
            .to
            .as_ref()
            .map(|t| t.address_groups.clone())
            .unwrap_or_default(),
        to_hosts: rule.to.as_ref().map(|t| t.hosts.clone()).unwrap_or_default(),
        to_models: rule.to.as_ref().map(|t| t.models.clone()).unwrap_or_default(),
        profile: rule.profile_ref.as_ref().map(|r| r.name.clone()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The ConfigMap in `namespace` that carries `built` for `instance`: named by
/// [`config_map_name`], labelled as Airlock's and the instance's, annotated with the bundle's hash
/// and owned by the instance, so deleting the instance deletes its ConfigMaps.
///
/// An instance without a `uid` (one not read from the API server) gives a ConfigMap without an owner
/// reference, since the API server would refuse an empty one.
pub fn config_map(built: &Built, instance: &AIRuntimeInstance, namespace: &str) -> ConfigMap {
    let name = instance.name_any();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(&name)),
            annotations: Some(BTreeMap::from([(HASH_ANNOTATION.to_owned(), built.hash.clone())])),
            owner_references: owner_reference(instance).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(BUNDLE_KEY.to_owned(), built.json.clone())])),
        ..ConfigMap::default()
    }
}

fn labels(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (PART_OF_LABEL.to_owned(), PART_OF.to_owned()),
        (INSTANCE_LABEL.to_owned(), instance_label_value(instance)),
    ])
}

fn owner_reference(instance: &AIRuntimeInstance) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: AIRuntimeInstance::api_version(&()).into_owned(),
        kind: AIRuntimeInstance::kind(&()).into_owned(),
        name: instance.name_any(),
        uid: instance.metadata.uid.clone()?,
        controller: Some(true),
        // Deleting an instance must not wait for its ConfigMaps in every namespace it covered.
        block_owner_deletion: Some(false),
    })
}

/// Whether `existing` (the ConfigMap as it is in the cluster, if any) must be written to carry
/// `built`: when it is missing, or its hash annotation, its bundle or one of Airlock's labels differ.
/// Other keys, labels and annotations that someone added are left alone.
pub fn needs_write(existing: Option<&ConfigMap>, built: &Built) -> bool {
    let Some(existing) = existing else {
        return true;
    };
    let hash = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH_ANNOTATION));
    let json = existing.data.as_ref().and_then(|d| d.get(BUNDLE_KEY));
    let current_labels = existing.metadata.labels.clone().unwrap_or_default();
    let labels_match = labels(&built.bundle.instance)
        .iter()
        .all(|(key, value)| current_labels.get(key) == Some(value));
    hash != Some(&built.hash) || json != Some(&built.json) || !labels_match
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(yaml: &str) -> AIRuntimeInstance {
        serde_yaml_ng::from_str(yaml).expect("fixture is an AIRuntimeInstance")
    }

    fn profile(yaml: &str) -> AISecurityProfile {
        serde_yaml_ng::from_str(yaml).expect("fixture is an AISecurityProfile")
    }

    /// The instance `models`: profile `strict`, one rule between groups, one to OpenAI with the `audit`
    /// profile.
    fn models() -> AIRuntimeInstance {
        instance(
            r#"
apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: models, uid: 6a1c7e0e-0000-4000-8000-000000000001, generation: 4}
spec:
  selector:
    namespaceSelector: {matchLabels: {airlock.dev/protect: "true"}}
  profileRef: {name: strict}
  mode: audit
  sidecar: {failureMode: failClosed}
  rules:
    - name: chat-to-model-servers
      action: allow
      from: {addressGroups: [chat-frontends]}
      to: {addressGroups: [model-servers]}
    - name: chat-to-openai
      action: alert
      from: {addressGroups: [chat-frontends]}
      to: {hosts: [api.openai.com], models: ["gpt-4o*"]}
      profileRef: {name: audit}
    - name: batch-uses-strict
      action: allow
      to: {hosts: [api.anthropic.com]}
      profileRef: {name: strict}
"#,
        )
    }

    fn profiles() -> BTreeMap<String, Arc<AISecurityProfile>> {
        let strict = profile(
            r#"
apiVersion: airlock.dev/v1alpha1
kind: AISecurityProfile
metadata: {name: strict, generation: 7}
spec:
  appProtection:
    promptInjection: {action: block}
  dataProtection:
    customPatterns:
      - {name: ticket-id, regex: "TCK-[0-9]{6}"}
"#,
        );
        let audit = profile(
            r#"
apiVersion: airlock.dev/v1alpha1
kind: AISecurityProfile
metadata: {name: audit, generation: 1}
spec:
  appProtection:
    promptInjection: {action: alert}
"#,
        );
        let unused = profile(
            "apiVersion: airlock.dev/v1alpha1\nkind: AISecurityProfile\nmetadata: {name: unused}\nspec: {}\n",
        );
        [strict, audit, unused]
            .into_iter()
            .map(|p| (p.name_any(), Arc::new(p)))
            .collect()
    }

    fn groups() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            (
                "chat-frontends".to_owned(),
                vec!["10.0.0.2".to_owned(), "10.0.0.1".to_owned(), "fd00::A".to_owned()],
            ),
            ("model-servers".to_owned(), vec!["10.0.1.1".to_owned()]),
            ("unused".to_owned(), vec!["10.9.9.9".to_owned()]),
        ])
    }

    fn built_with(
        instance: &AIRuntimeInstance,
        profiles: &BTreeMap<String, Arc<AISecurityProfile>>,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Result<Built, BuildError> {
        build(Inputs {
            instance,
            profiles,
            groups,
            callers: &[],
        })
    }

    /// Pods of two service accounts; `10.0.0.9` is held by pods of both.
    fn callers() -> Vec<(IpAddr, String)> {
        [
            ("10.0.0.2", "chat/frontend"),
            ("10.0.0.1", "chat/frontend"),
            ("fd00::A", "chat/frontend"),
            ("10.0.0.1", "chat/frontend"),
            ("10.0.5.1", "batch/default"),
            ("10.0.0.9", "chat/frontend"),
            ("10.0.0.9", "batch/default"),
        ]
        .into_iter()
        .map(|(ip, account)| (ip.parse().expect("address"), account.to_owned()))
        .collect()
    }

    /// `profiles()` with the named one counting callers by service account.
    fn keyed_by_service_account(name: &str) -> BTreeMap<String, Arc<AISecurityProfile>> {
        let mut profiles = profiles();
        let mut keyed = (*profiles[name]).clone();
        keyed.spec.model_protection = Some(
            serde_json::from_value(serde_json::json!({
                "rateLimit": {"requestsPerMinute": 60},
                "callerKey": {"source": "serviceAccount"}
            }))
            .expect("model protection"),
        );
        profiles.insert(name.to_owned(), Arc::new(keyed));
        profiles
    }

    fn built_with_callers(profiles: &BTreeMap<String, Arc<AISecurityProfile>>) -> Built {
        build(Inputs {
            instance: &models(),
            profiles,
            groups: &groups(),
            callers: &callers(),
        })
        .expect("builds")
    }

    #[test]
    fn a_profile_keyed_by_service_account_brings_the_callers_service_accounts() {
        // The instance's own profile, or one a rule names: either needs the map.
        for name in ["strict", "audit"] {
            let profiles = keyed_by_service_account(name);
            assert!(keys_callers_by_service_account(&models(), &profiles), "{name}");
            let bundle = built_with_callers(&profiles).bundle;
            assert_eq!(
                bundle.service_accounts,
                BTreeMap::from([
                    (
                        "chat/frontend".to_owned(),
                        vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned(), "fd00::a".to_owned()]
                    ),
                    ("batch/default".to_owned(), vec!["10.0.5.1".to_owned()]),
                ]),
                "{name}: sorted, deduplicated, normalised, and 10.0.0.9 (held by both) named by neither"
            );
        }
    }

    #[test]
    fn without_a_profile_keyed_by_service_account_callers_change_nothing() {
        let unused = keyed_by_service_account("unused");
        assert!(!keys_callers_by_service_account(&models(), &unused));
        assert!(!keys_callers_by_service_account(&models(), &profiles()));
        let with_callers = built_with_callers(&unused);
        assert!(with_callers.bundle.service_accounts.is_empty());
        assert_eq!(
            with_callers.hash,
            built_with(&models(), &unused, &groups()).expect("builds").hash
        );
        assert!(
            !with_callers.json.contains("serviceAccounts"),
            "{}",
            with_callers.json
        );
    }

    #[test]
    fn a_caller_that_changes_service_account_changes_the_hash() {
        let profiles = keyed_by_service_account("strict");
        let before = built_with_callers(&profiles);
        let mut moved = callers();
        moved[4].1 = "batch/jobs".to_owned();
        let after = build(Inputs {
            instance: &models(),
            profiles: &profiles,
            groups: &groups(),
            callers: &moved,
        })
        .expect("builds");
        assert_ne!(before.hash, after.hash);
        assert_eq!(after.bundle.service_accounts["batch/jobs"], ["10.0.5.1"]);
    }

    fn built() -> Built {
        built_with(&models(), &profiles(), &groups()).expect("builds")
    }

    #[test]
    fn the_bundle_carries_the_instance_its_profiles_rules_and_groups() {
        let bundle = built().bundle;
        assert_eq!(bundle.api_version, BUNDLE_API_VERSION);
        assert_eq!(
            (bundle.instance.as_str(), bundle.instance_generation),
            ("models", 4)
        );
        assert_eq!(bundle.mode, airlock_crds::v1alpha1::Mode::Audit);
        assert_eq!(
            bundle.failure_mode,
            airlock_crds::v1alpha1::FailureMode::FailClosed
        );
        assert_eq!(
            (bundle.profile.name.as_str(), bundle.profile.generation),
            ("strict", 7)
        );

        let names: Vec<_> = bundle.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["chat-to-model-servers", "chat-to-openai", "batch-uses-strict"]
        );
        let openai = &bundle.rules[1];
        assert_eq!(openai.from_groups, ["chat-frontends"]);
        assert!(openai.to_groups.is_empty());
        assert_eq!(openai.to_hosts, ["api.openai.com"]);
        assert_eq!(openai.to_models, ["gpt-4o*"]);
        assert_eq!(openai.profile.as_deref(), Some("audit"));
        assert!(bundle.rules[0].profile.is_none());
    }

    #[test]
    fn only_the_profiles_and_groups_the_rules_use_are_included() {
        let bundle = built().bundle;
        // `strict` is the main profile, so the rule naming it adds nothing to `profiles`.
        assert_eq!(bundle.profiles.keys().collect::<Vec<_>>(), ["audit"]);
        assert_eq!(
            bundle.groups.keys().collect::<Vec<_>>(),
            ["chat-frontends", "model-servers"]
        );
    }

    #[test]
    fn group_addresses_are_normalised_sorted_and_deduplicated() {
        let mut groups = groups();
        groups.insert(
            "chat-frontends".into(),
            ["fd00::a", "10.0.0.2", "10.0.0.1", "10.0.0.2", "FD00::A"]
                .map(String::from)
                .to_vec(),
        );
        let bundle = built_with(&models(), &profiles(), &groups)
            .expect("builds")
            .bundle;
        let chat = &bundle.groups["chat-frontends"];
        assert_eq!(chat.ips, ["10.0.0.1", "10.0.0.2", "fd00::a"]);
        assert_eq!(chat.member_count, 3);
    }

    #[test]
    fn shuffled_group_members_give_the_same_bytes() {
        let first = built();
        let mut groups = groups();
        for members in groups.values_mut() {
            members.reverse();
        }
        let second = built_with(&models(), &profiles(), &groups).expect("builds");
        assert_eq!(first.json, second.json);
        assert_eq!(first.hash, second.hash);
        assert_eq!(first.hash.len(), 64);
        assert!(
            first
                .hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn a_change_of_group_members_changes_the_hash() {
        let before = built();
        let mut groups = groups();
        groups.insert("model-servers".into(), vec!["10.0.1.2".into()]);
        let after = built_with(&models(), &profiles(), &groups).expect("builds");
        assert_ne!(before.hash, after.hash);
    }

    #[test]
    fn a_change_to_a_group_no_rule_uses_changes_nothing() {
        let before = built();
        let mut groups = groups();
        groups.insert("unused".into(), vec!["10.9.9.10".into()]);
        let after = built_with(&models(), &profiles(), &groups).expect("builds");
        assert_eq!(before, after);
    }

    #[test]
    fn the_json_is_a_bundle_the_sidecar_can_parse() {
        let built = built();
        let parsed = PolicyBundle::parse(built.json.as_bytes()).expect("parses");
        assert_eq!(parsed, built.bundle);
        assert_eq!(built.hash, sha256_hex(built.json.as_bytes()));
    }

    #[test]
    fn sha256_is_written_in_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_missing_profile_is_an_error_naming_it() {
        let mut profiles = profiles();
        profiles.remove("strict");
        let error = built_with(&models(), &profiles, &groups()).expect_err("fails");
        assert!(
            matches!(&error, BuildError::ProfileMissing { name } if name == "strict"),
            "{error:?}"
        );
        assert_eq!(error.reason(), "ProfileNotFound");
        assert!(error.to_string().contains("strict"), "{error}");
    }

    #[test]
    fn a_missing_rule_profile_is_an_error_naming_the_rule() {
        let mut profiles = profiles();
        profiles.remove("audit");
        let error = built_with(&models(), &profiles, &groups()).expect_err("fails");
        assert!(
            matches!(&error, BuildError::RuleProfileMissing { rule, name }
                if rule == "chat-to-openai" && name == "audit"),
            "{error:?}"
        );
        assert_eq!(error.reason(), "ProfileNotFound");
    }

    #[test]
    fn an_unknown_address_group_is_an_error_naming_the_rule() {
        let mut groups = groups();
        groups.remove("model-servers");
        let error = built_with(&models(), &profiles(), &groups).expect_err("fails");
        assert!(
            matches!(&error, BuildError::UnknownGroup { rule, group }
                if rule == "chat-to-model-servers" && group == "model-servers"),
            "{error:?}"
        );
        assert_eq!(error.reason(), "AddressGroupNotFound");
    }

    #[test]
    fn a_group_without_members_is_included_empty() {
        let mut groups = groups();
        groups.insert("model-servers".into(), vec![]);
        let bundle = built_with(&models(), &profiles(), &groups)
            .expect("builds")
            .bundle;
        assert_eq!(bundle.groups["model-servers"], BundleGroup::default());
    }

    #[test]
    fn an_invalid_profile_never_reaches_the_bundle() {
        let broken = profile(
            r#"
apiVersion: airlock.dev/v1alpha1
kind: AISecurityProfile
metadata: {name: audit}
spec:
  dataProtection:
    customPatterns:
      - {name: broken, regex: "(unclosed"}
"#,
        );
        for name in ["strict", "audit"] {
            let mut profiles = profiles();
            profiles.insert(name.into(), Arc::new(broken.clone()));
            let error = built_with(&models(), &profiles, &groups()).expect_err("fails");
            assert!(
                matches!(&error, BuildError::ProfileInvalid { name: n, problems } if n == name && problems.len() == 1),
                "{error:?}"
            );
            assert_eq!(error.reason(), "ProfileInvalid");
            let message = error.to_string();
            assert!(message.contains("customPatterns[0].regex"), "{message}");
        }
    }

    #[test]
    fn a_member_that_is_not_an_ip_address_is_an_error() {
        let mut groups = groups();
        groups.insert("model-servers".into(), vec!["not-an-ip".into()]);
        let error = built_with(&models(), &profiles(), &groups).expect_err("fails");
        assert!(matches!(&error, BuildError::InvalidAddress { group, .. } if group == "model-servers"));
    }

    #[test]
    fn a_bundle_too_big_for_a_config_map_is_an_error() {
        let mut groups = groups();
        let many = (0..80_000u32)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string())
            .collect();
        groups.insert("model-servers".into(), many);
        let error = built_with(&models(), &profiles(), &groups).expect_err("fails");
        assert!(
            matches!(
                error,
                BuildError::TooLarge {
                    limit: MAX_BUNDLE_BYTES,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn too_many_callers_for_a_config_map_is_an_error_that_says_so() {
        let callers: Vec<(IpAddr, String)> = (0..80_000u32)
            .map(|i| {
                (
                    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                    format!("ns/sa-{}", i % 7),
                )
            })
            .collect();
        let error = build(Inputs {
            instance: &models(),
            profiles: &keyed_by_service_account("strict"),
            groups: &groups(),
            callers: &callers,
        })
        .expect_err("fails");
        assert!(matches!(error, BuildError::TooLarge { .. }), "{error:?}");
        assert!(error.to_string().contains("serviceAccount"), "{error}");
        assert_eq!(error.reason(), "PolicyTooLarge");
    }

    #[test]
    fn an_instance_without_rules_or_sidecar_takes_the_defaults() {
        let plain = instance(
            "apiVersion: airlock.dev/v1alpha1\nkind: AIRuntimeInstance\nmetadata: {name: plain}\nspec:\n  selector: {podSelector: {}}\n  profileRef: {name: strict}\n",
        );
        let bundle = built_with(&plain, &profiles(), &groups()).expect("builds").bundle;
        assert_eq!(bundle.mode, airlock_crds::v1alpha1::Mode::Enforce);
        assert_eq!(bundle.failure_mode, airlock_crds::v1alpha1::FailureMode::FailOpen);
        assert!(bundle.rules.is_empty() && bundle.profiles.is_empty() && bundle.groups.is_empty());
    }

    #[test]
    fn the_config_map_is_named_labelled_annotated_and_owned() {
        let built = built();
        let cm = config_map(&built, &models(), "chat");
        assert_eq!(cm.metadata.name.as_deref(), Some("airlock-policy-models"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("chat"));
        let labels = cm.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "airlock-operator");
        assert_eq!(labels["app.kubernetes.io/part-of"], "airlock");
        assert_eq!(labels["airlock.dev/instance"], "models");
        assert_eq!(
            cm.metadata.annotations.clone().unwrap_or_default()["airlock.dev/policy-hash"],
            built.hash
        );
        assert_eq!(cm.data.clone().unwrap_or_default()["policy.json"], built.json);

        let owners = cm.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        let owner = &owners[0];
        assert_eq!(owner.api_version, "airlock.dev/v1alpha1");
        assert_eq!(owner.kind, "AIRuntimeInstance");
        assert_eq!(owner.name, "models");
        assert_eq!(owner.uid, "6a1c7e0e-0000-4000-8000-000000000001");
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(false))
        );
    }

    #[test]
    fn an_instance_without_a_uid_gives_no_owner_reference() {
        let mut instance = models();
        instance.metadata.uid = None;
        let cm = config_map(&built(), &instance, "chat");
        assert!(cm.metadata.owner_references.is_none());
    }

    #[test]
    fn the_same_content_needs_no_write() {
        let built = built();
        let mut existing = config_map(&built, &models(), "chat");
        // What the API server adds does not matter.
        existing.metadata.resource_version = Some("42".into());
        existing
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "chat".into());
        assert!(!needs_write(Some(&existing), &built));
        let rebuilt = built_with(&models(), &profiles(), &groups()).expect("builds");
        assert!(!needs_write(Some(&existing), &rebuilt));
    }

    #[test]
    fn a_missing_or_changed_config_map_needs_a_write() {
        let built = built();
        assert!(needs_write(None, &built));

        let fresh = config_map(&built, &models(), "chat");
        let mut stale_hash = fresh.clone();
        stale_hash
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_ANNOTATION.into(), "0".repeat(64));
        assert!(needs_write(Some(&stale_hash), &built));

        let mut edited = fresh.clone();
        edited
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert(BUNDLE_KEY.into(), "{}".into());
        assert!(needs_write(Some(&edited), &built), "hand edits are reverted");

        let mut unlabelled = fresh;
        unlabelled.metadata.labels = None;
        assert!(needs_write(Some(&unlabelled), &built));
    }
}
