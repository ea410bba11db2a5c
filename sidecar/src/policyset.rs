//! The policy a sidecar enforces: a standalone profile, or the operator's policy bundle (the instance's
//! profile, its ordered rules on address groups, hosts and models, and the profiles those rules name).
//! Loading and rule matching are pure.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use airlock_crds::bundle::PolicyBundle;
use airlock_crds::v1alpha1::{DetectionAction, FailureMode, Mode};

use crate::profile::Policy;
use crate::{Error, Result};

/// A compiled rule of the bundle.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub action: DetectionAction,
    from_groups: Vec<String>,
    to_groups: Vec<String>,
    to_hosts: Vec<String>,
    to_models: Vec<String>,
    profile: Option<String>,
}

/// What the rules say about one request.
#[derive(Debug)]
pub struct Selected<'a> {
    /// The rule that matched, if any.
    pub rule: Option<&'a str>,
    /// `block`: refuse; `alert`: forward and log; `allow`: forward. Scanning applies in all but `block`.
    pub action: DetectionAction,
    pub policy: &'a Arc<Policy>,
}

/// Everything enforced at one moment; swapped whole on reload.
#[derive(Debug)]
pub struct PolicySet {
    pub default: Arc<Policy>,
    profiles: HashMap<String, Arc<Policy>>,
    rules: Vec<CompiledRule>,
    groups: HashMap<String, HashSet<IpAddr>>,
    /// Pod addresses → (namespace, service account), from the bundle's `serviceAccounts`.
    service_accounts: HashMap<IpAddr, (Arc<str>, Arc<str>)>,
    /// `false` in `audit` mode: nothing is blocked, masked or rate-limited, only logged.
    pub enforce: bool,
    /// Name of the `AIRuntimeInstance`, empty when standalone.
    pub instance: String,
    pub failure_mode: FailureMode,
}

impl PolicySet {
    /// A standalone profile with no rules.
    pub fn standalone(policy: Policy, enforce: bool) -> PolicySet {
        let failure_mode = policy.spec.failure_mode;
        PolicySet {
            default: Arc::new(policy),
            profiles: HashMap::new(),
            rules: Vec::new(),
            groups: HashMap::new(),
            service_accounts: HashMap::new(),
            enforce,
            instance: String::new(),
            failure_mode,
        }
    }

    /// Compiles the operator's bundle (`policy.json`). Every profile must compile; otherwise the whole
    /// bundle is refused, so the sidecar keeps its last good policy.
    pub fn from_bundle(path: &Path, bytes: &[u8]) -> Result<PolicySet> {
        let bundle_err = |message: String| Error::Bundle {
            path: path.to_path_buf(),
            message,
        };
        let bundle = PolicyBundle::parse(bytes).map_err(|e| bundle_err(e.to_string()))?;
        let default = Policy::from_spec(bundle.profile.name.clone(), &bundle.profile.spec)
            .map_err(|e| bundle_err(e.to_string()))?;
        let mut profiles = HashMap::new();
        for (name, profile) in &bundle.profiles {
            let policy =
                Policy::from_spec(name.clone(), &profile.spec).map_err(|e| bundle_err(e.to_string()))?;
            profiles.insert(name.clone(), Arc::new(policy));
        }
        let mut groups = HashMap::new();
        for (name, group) in &bundle.groups {
            let ips: HashSet<IpAddr> = group.ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            groups.insert(name.clone(), ips);
        }
        let mut service_accounts = HashMap::new();
        for (account, ips) in &bundle.service_accounts {
            // `<namespace>/<name>`; anything else names no one the sidecar could count by.
            let Some((namespace, name)) = account.split_once('/') else {
                continue;
            };
            let owner: (Arc<str>, Arc<str>) = (namespace.into(), name.into());
            for ip in ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                service_accounts.insert(ip, owner.clone());
            }
        }
        let mut rules = Vec::new();
        for rule in &bundle.rules {
            if let Some(profile) = &rule.profile
                && profile != &bundle.profile.name
                && !profiles.contains_key(profile)
            {
                return Err(bundle_err(format!(
                    "rule `{}` names profile `{profile}`, which the bundle does not carry",
                    rule.name
                )));
            }
            rules.push(CompiledRule {
                name: rule.name.clone(),
                action: rule.action,
                from_groups: rule.from_groups.clone(),
                to_groups: rule.to_groups.clone(),
                to_hosts: rule.to_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                to_models: rule.to_models.clone(),
                profile: rule.profile.clone(),
            });
        }
        Ok(PolicySet {
            default: Arc::new(default),
            profiles,
            rules,
            groups,
            service_accounts,
            enforce: bundle.mode == Mode::Enforce,
            instance: bundle.instance,
            failure_mode: bundle.failure_mode,
        })
    }

    /// The profiles rules name, besides [`PolicySet::default`].
    pub fn profiles(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.profiles.values()
    }

    /// The namespace and service account of the pod at `ip`, when the bundle names them.
    pub fn service_account_of(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.service_accounts
            .get(&ip.to_canonical())
            .map(|(namespace, name)| (&**namespace, &**name))
    }

    /// Address groups `ip` belongs to, sorted.
    pub fn groups_of(&self, ip: IpAddr) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, ips)| ips.contains(&ip))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The first rule matching the request decides; without one, the instance's profile scans it.
    pub fn select(
        &self,
        source: IpAddr,
        dest_host: &str,
        dest_ip: Option<IpAddr>,
        model: Option<&str>,
    ) -> Selected<'_> {
        let in_any = |groups: &[String], ip: Option<IpAddr>| {
            groups.is_empty()
                || ip.is_some_and(|ip| {
                    groups
                        .iter()
                        .any(|g| self.groups.get(g).is_some_and(|s| s.contains(&ip)))
                })
        };
        let host = dest_host.to_ascii_lowercase();
        for rule in &self.rules {
            let hosts_ok = rule.to_hosts.is_empty() || rule.to_hosts.iter().any(|p| host_matches(p, &host));
            let models_ok =
                rule.to_models.is_empty() || model.is_some_and(|m| rule.to_models.iter().any(|p| glob(p, m)));
            if in_any(&rule.from_groups, Some(source))
                && in_any(&rule.to_groups, dest_ip)
                && hosts_ok
                && models_ok
            {
                let policy = rule
                    .profile
                    .as_ref()
                    .and_then(|p| self.profiles.get(p))
                    .unwrap_or(&self.default);
                return Selected {
                    rule: Some(&rule.name),
                    action: rule.action,
                    policy,
                };
            }
        }
        Selected {
            rule: None,
            action: DetectionAction::Allow,
            policy: &self.default,
        }
    }
}

/// `*.example.com` matches subdomains of example.com (not example.com itself); otherwise exact.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bundle() -> Vec<u8> {
        json!({
            "apiVersion": "airlock.dev/policy-v1",
            "instance": "chat",
            "instanceGeneration": 3,
            "mode": "enforce",
            "failureMode": "failClosed",
            "profile": {"name": "strict", "generation": 1, "spec": {"appProtection": {"promptInjection": {"action": "block"}}}},
            "rules": [
                {"name": "no-internal", "action": "block", "toHosts": ["*.internal.example"]},
                {"name": "frontends-audit", "action": "alert", "fromGroups": ["frontends"], "profile": "audit"},
                {"name": "gpt", "action": "allow", "toModels": ["gpt-4o*"]}
            ],
            "profiles": {"audit": {"name": "audit", "generation": 1, "spec": {}}},
            "groups": {"frontends": {"ips": ["10.0.0.5", "fd00::5"], "memberCount": 2}}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn rules_decide_in_order() {
        let set = PolicySet::from_bundle(Path::new("policy.json"), &bundle()).unwrap();
        assert!(set.enforce);
        assert_eq!(set.instance, "chat");
        assert_eq!(set.failure_mode, FailureMode::FailClosed);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let s = set.select(ip("10.0.0.9"), "a.internal.example", None, None);
        assert_eq!((s.rule, s.action), (Some("no-internal"), DetectionAction::Block));
        let s = set.select(ip("fd00::5"), "api.openai.com", None, Some("gpt-4o"));
        assert_eq!(
            (s.rule, s.policy.name.as_str()),
            (Some("frontends-audit"), "audit")
        );
        let s = set.select(ip("10.0.0.9"), "api.openai.com", None, Some("gpt-4o-mini"));
        assert_eq!((s.rule, s.policy.name.as_str()), (Some("gpt"), "strict"));
        let s = set.select(ip("10.0.0.9"), "api.openai.com", None, Some("claude"));
        assert_eq!((s.rule, s.policy.name.as_str()), (None, "strict"));
        assert_eq!(set.groups_of(ip("10.0.0.5")), ["frontends"]);
    }

    #[test]
    fn service_accounts_name_the_pods_at_their_addresses() {
        let mut b: serde_json::Value = serde_json::from_slice(&bundle()).unwrap();
        b["serviceAccounts"] = json!({
            "chat/frontend": ["10.0.0.5", "fd00::5", "not-an-address"],
            "no-namespace": ["10.0.0.6"]
        });
        let set = PolicySet::from_bundle(Path::new("policy.json"), b.to_string().as_bytes()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(set.service_account_of(ip("10.0.0.5")), Some(("chat", "frontend")));
        assert_eq!(set.service_account_of(ip("fd00::5")), Some(("chat", "frontend")));
        // An IPv4 peer seen on a dual-stack socket.
        assert_eq!(
            set.service_account_of(ip("::ffff:10.0.0.5")),
            Some(("chat", "frontend"))
        );
        assert_eq!(
            set.service_account_of(ip("10.0.0.6")),
            None,
            "not <namespace>/<name>"
        );
        assert_eq!(set.service_account_of(ip("10.0.0.9")), None);
        // A bundle without the field names no one.
        let plain = PolicySet::from_bundle(Path::new("policy.json"), &bundle()).unwrap();
        assert_eq!(plain.service_account_of(ip("10.0.0.5")), None);
    }

    #[test]
    fn a_bad_bundle_is_refused_with_the_reason() {
        let err = PolicySet::from_bundle(Path::new("p.json"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.json"), "{err}");
        let mut b: serde_json::Value = serde_json::from_slice(&bundle()).unwrap();
        b["rules"][1]["profile"] = "missing".into();
        let err = PolicySet::from_bundle(Path::new("p.json"), b.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        b["rules"][1]["profile"] = "audit".into();
        b["profile"]["spec"] =
            json!({"dataProtection": {"customPatterns": [{"name": "x", "regex": "(", "action": "block"}]}});
        assert!(PolicySet::from_bundle(Path::new("p.json"), b.to_string().as_bytes()).is_err());
    }

    #[test]
    fn host_and_model_patterns() {
        assert!(host_matches("*.openai.azure.com", "x.openai.azure.com"));
        assert!(!host_matches("*.openai.azure.com", "openai.azure.com"));
        assert!(!host_matches("*.openai.azure.com", "xopenai.azure.com"));
        assert!(glob("gpt-4o*", "gpt-4o-mini"));
        assert!(glob("*llama*", "meta-llama-3"));
        assert!(!glob("gpt-4o*", "gpt-3.5"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "acb"));
    }
}
