//! `kubectl airlock status`: Airlock's coverage of the cluster, read from the status the operator
//! writes on its objects and from the admission configuration.
//!
//! [`build`] turns the objects into a [`StatusReport`] and [`render_table`] prints it; both are pure.
//! [`fetch`] is the only part that talks to the API server.

use std::collections::BTreeMap;

use airlock_crds::conditions::{self, READY};
use airlock_crds::v1alpha1::Mode;
use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use airlock_webhook::validate::referenced_profiles;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::error::Result;
use crate::output::{Table, or_dash, plural};

/// Name of the mutating webhook configuration the operator installs.
pub const MUTATING_WEBHOOK: &str = "airlock-sidecar-injector";
/// Name of the validating webhook configuration the operator installs.
pub const VALIDATING_WEBHOOK: &str = "airlock-validator";
/// The name of the `ValidatingAdmissionPolicy` (and its binding) that backs up the validating webhook, and
/// the binding's annotation listing where it stands aside.
pub use airlock_crds::backstop::{BACKSTOP_POLICY, STANDS_ASIDE_ANNOTATION};

/// The objects `status` reports on.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Every `AIRuntimeInstance`.
    pub instances: Vec<AIRuntimeInstance>,
    /// Every `AISecurityProfile`.
    pub profiles: Vec<AISecurityProfile>,
    /// Every `DynamicAddressGroup`.
    pub groups: Vec<DynamicAddressGroup>,
    /// The admission objects, found or not.
    pub admission: Vec<AdmissionObject>,
}

/// A `Ready` condition, or its absence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// `True`, `False` or `Unknown` (also when the operator has written no condition yet).
    pub status: String,
    /// The condition's reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The condition's message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Ready {
    /// The `Ready` condition among `conditions`, or `Unknown` (`NoStatus`) when there is none.
    pub fn from_conditions(conditions: &[Condition]) -> Self {
        match conditions::find(conditions, READY) {
            Some(c) => Ready {
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None => Ready {
                status: "Unknown".to_owned(),
                reason: "NoStatus".to_owned(),
                message: "the operator has not reported on this object yet".to_owned(),
            },
        }
    }

    /// `True`, or the status with its reason: `False (ProfileNotFound)`.
    pub fn cell(&self) -> String {
        if self.status == "True" || self.reason.is_empty() {
            self.status.clone()
        } else {
            format!("{} ({})", self.status, self.reason)
        }
    }
}

/// One `AIRuntimeInstance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRow {
    /// Its name.
    pub name: String,
    /// `enforce` or `audit`.
    pub mode: String,
    /// The profile it applies by default.
    pub profile: String,
    /// Its `Ready` condition.
    pub ready: Ready,
    /// Namespaces it selects.
    pub selected_namespaces: i64,
    /// Selected workloads whose pods all run with the sidecar.
    pub protected_workloads: i64,
    /// Selected pods that carry the sidecar.
    pub injected_pods: i64,
    /// Selected model servers without the sidecar and without an exemption.
    pub unprotected_model_servers: i64,
    /// Selected pods without the sidecar, or with another sidecar image than the instance's.
    pub drifted_pods: i64,
}

/// One `AISecurityProfile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRow {
    /// Its name.
    pub name: String,
    /// Its `Ready` condition.
    pub ready: Ready,
    /// How many instances use it, directly or through a rule.
    pub instances: i64,
}

/// One `DynamicAddressGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// Its member count.
    pub members: i64,
    /// Its `Ready` condition.
    pub ready: Ready,
}

/// A model server running without the sidecar, as an instance's status lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnprotectedRow {
    /// Namespace of the workload.
    pub namespace: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The fingerprint that recognised it.
    pub fingerprint: String,
    /// The instance that reports it.
    pub instance: String,
}

/// The unprotected model servers: the listed ones, and how many more the statuses count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unprotected {
    /// The workloads the statuses list (each at most 50).
    pub items: Vec<UnprotectedRow>,
    /// How many more the statuses count than they list.
    pub more: i64,
}

/// Whether an admission object exists, and how it is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionObject {
    /// Its kind, e.g. `MutatingWebhookConfiguration`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// `present`, `missing`, or `unknown` when it could not be read.
    pub state: String,
    /// The failure policy (of each webhook, or of the policy), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<String>,
    /// A binding's validation actions, e.g. `Deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_actions: Option<String>,
    /// The namespaces the backstop stands aside in (where an instance exempts a workload or only
    /// audits), from its binding's annotation `airlock.dev/stands-aside`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stands_aside_in: Vec<String>,
    /// Why the state is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AdmissionObject {
    fn new(kind: &str, name: &str, state: &str) -> Self {
        AdmissionObject {
            kind: kind.to_owned(),
            name: name.to_owned(),
            state: state.to_owned(),
            failure_policy: None,
            validation_actions: None,
            stands_aside_in: Vec::new(),
            error: None,
        }
    }

    /// A lookup that failed (forbidden, unreachable).
    pub fn unknown(kind: &str, name: &str, error: String) -> Self {
        AdmissionObject {
            error: Some(error),
            ..Self::new(kind, name, "unknown")
        }
    }

    /// The table's settings column: the failure policy, or a binding's actions and where it stands
    /// aside, or why the state is unknown.
    pub fn settings(&self) -> String {
        match (&self.failure_policy, &self.validation_actions, &self.error) {
            (_, _, Some(error)) => error.clone(),
            (Some(policy), _, _) => format!("failurePolicy={policy}"),
            (_, Some(actions), _) => {
                const SHOWN: usize = 5;
                let aside = &self.stands_aside_in;
                let mut text = format!("validationActions={actions}");
                if !aside.is_empty() {
                    text.push_str(" standsAsideIn=");
                    text.push_str(&aside[..aside.len().min(SHOWN)].join(","));
                    if aside.len() > SHOWN {
                        text.push_str(&format!(",+{}", aside.len() - SHOWN));
                    }
                }
                text
            }
            _ => "-".to_owned(),
        }
    }
}

/// The distinct values, in order of first appearance, joined with commas.
fn distinct(values: impl IntoIterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for v in values {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(",")
}

/// The mutating configuration's row. A webhook without `failurePolicy` fails closed (`Fail`), the API
/// default.
pub fn mutating_row(config: Option<&MutatingWebhookConfiguration>) -> AdmissionObject {
    let kind = "MutatingWebhookConfiguration";
    match config {
        None => AdmissionObject::new(kind, MUTATING_WEBHOOK, "missing"),
        Some(c) => AdmissionObject {
            failure_policy: Some(distinct(
                c.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.failure_policy.clone().unwrap_or_else(|| "Fail".to_owned())),
            )),
            ..AdmissionObject::new(kind, MUTATING_WEBHOOK, "present")
        },
    }
}

/// The validating configuration's row.
pub fn validating_row(config: Option<&ValidatingWebhookConfiguration>) -> AdmissionObject {
    let kind = "ValidatingWebhookConfiguration";
    match config {
        None => AdmissionObject::new(kind, VALIDATING_WEBHOOK, "missing"),
        Some(c) => AdmissionObject {
            failure_policy: Some(distinct(
                c.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.failure_policy.clone().unwrap_or_else(|| "Fail".to_owned())),
            )),
            ..AdmissionObject::new(kind, VALIDATING_WEBHOOK, "present")
        },
    }
}

/// The backstop policy's row.
pub fn policy_row(policy: Option<&ValidatingAdmissionPolicy>) -> AdmissionObject {
    let kind = "ValidatingAdmissionPolicy";
    match policy {
        None => AdmissionObject::new(kind, BACKSTOP_POLICY, "missing"),
        Some(p) => AdmissionObject {
            failure_policy: Some(
                p.spec
                    .as_ref()
                    .and_then(|s| s.failure_policy.clone())
                    .unwrap_or_else(|| "Fail".to_owned()),
            ),
            ..AdmissionObject::new(kind, BACKSTOP_POLICY, "present")
        },
    }
}

/// The backstop binding's row.
pub fn binding_row(binding: Option<&ValidatingAdmissionPolicyBinding>) -> AdmissionObject {
    let kind = "ValidatingAdmissionPolicyBinding";
    match binding {
        None => AdmissionObject::new(kind, BACKSTOP_POLICY, "missing"),
        Some(b) => AdmissionObject {
            validation_actions: Some(distinct(
                b.spec
                    .as_ref()
                    .and_then(|s| s.validation_actions.clone())
                    .unwrap_or_default(),
            )),
            stands_aside_in: b
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(STANDS_ASIDE_ANNOTATION))
                .and_then(|why| serde_json::from_str::<BTreeMap<String, String>>(why).ok())
                .map(|why| why.into_keys().collect())
                .unwrap_or_default(),
            ..AdmissionObject::new(kind, BACKSTOP_POLICY, "present")
        },
    }
}

/// Totals over the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `AIRuntimeInstance`s.
    pub instances: i64,
    /// `AISecurityProfile`s.
    pub profiles: i64,
    /// `DynamicAddressGroup`s.
    pub address_groups: i64,
    /// Protected workloads, over every instance.
    pub protected_workloads: i64,
    /// Injected pods, over every instance.
    pub injected_pods: i64,
    /// Unprotected model servers, over every instance.
    pub unprotected_model_servers: i64,
    /// Drifted pods, over every instance.
    pub drifted_pods: i64,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Totals.
    pub summary: Summary,
    /// The instances, by name.
    pub instances: Vec<InstanceRow>,
    /// The profiles, by name.
    pub profiles: Vec<ProfileRow>,
    /// The address groups, by name.
    pub address_groups: Vec<GroupRow>,
    /// Model servers without protection.
    pub unprotected: Unprotected,
    /// The admission configuration.
    pub admission: Vec<AdmissionObject>,
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// The report for these objects.
pub fn build(inputs: &Inputs) -> StatusReport {
    let mut report = StatusReport::default();
    let mut used_by: BTreeMap<&str, i64> = BTreeMap::new();
    for instance in &inputs.instances {
        for profile in referenced_profiles(instance) {
            *used_by.entry(profile).or_default() += 1;
        }
        let status = instance.status.clone().unwrap_or_default();
        let name = instance.name_any();
        let row = InstanceRow {
            name: name.clone(),
            mode: mode_name(instance.spec.mode).to_owned(),
            profile: instance.spec.profile_ref.name.clone(),
            ready: Ready::from_conditions(&status.conditions),
            selected_namespaces: i64::from(status.selected_namespaces),
            protected_workloads: i64::from(status.protected_workloads),
            injected_pods: i64::from(status.injected_pods),
            unprotected_model_servers: i64::from(status.unprotected_model_servers),
            drifted_pods: i64::from(status.drift.as_ref().map_or(0, |d| d.count)),
        };
        let listed = i64::try_from(status.unprotected.len()).unwrap_or(i64::MAX);
        report.unprotected.more += (row.unprotected_model_servers - listed).max(0);
        report
            .unprotected
            .items
            .extend(status.unprotected.into_iter().map(|u| UnprotectedRow {
                namespace: u.namespace,
                kind: u.kind,
                name: u.name,
                fingerprint: u.fingerprint,
                instance: name.clone(),
            }));
        let s = &mut report.summary;
        s.protected_workloads += row.protected_workloads;
        s.injected_pods += row.injected_pods;
        s.unprotected_model_servers += row.unprotected_model_servers;
        s.drifted_pods += row.drifted_pods;
        report.instances.push(row);
    }
    report.instances.sort_by(|a, b| a.name.cmp(&b.name));
    report.unprotected.items.sort();

    report.profiles = inputs
        .profiles
        .iter()
        .map(|p| {
            let name = p.name_any();
            let status = p.status.clone().unwrap_or_default();
            ProfileRow {
                instances: used_by.get(name.as_str()).copied().unwrap_or_default(),
                name,
                ready: Ready::from_conditions(&status.conditions),
            }
        })
        .collect();
    report.profiles.sort_by(|a, b| a.name.cmp(&b.name));

    report.address_groups = inputs
        .groups
        .iter()
        .map(|g| {
            let status = g.status.clone().unwrap_or_default();
            GroupRow {
                name: g.name_any(),
                members: i64::from(status.member_count),
                ready: Ready::from_conditions(&status.conditions),
            }
        })
        .collect();
    report.address_groups.sort_by(|a, b| a.name.cmp(&b.name));

    report.admission = inputs.admission.clone();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    report.summary.instances = count(report.instances.len());
    report.summary.profiles = count(report.profiles.len());
    report.summary.address_groups = count(report.address_groups.len());
    report
}

/// The summary line: `Airlock: 2 instances, 3 profiles, …; 12 protected workloads, …`.
pub fn summary_line(s: &Summary) -> String {
    format!(
        "Airlock: {}, {}, {}; {}, {}, {}, {}",
        plural(s.instances, "instance"),
        plural(s.profiles, "profile"),
        plural(s.address_groups, "address group"),
        plural(s.protected_workloads, "protected workload"),
        plural(s.injected_pods, "injected pod"),
        plural(s.unprotected_model_servers, "unprotected model server"),
        plural(s.drifted_pods, "drifted pod"),
    )
}

fn section(out: &mut String, title: &str, table: &Table, empty: &str) {
    out.push('\n');
    out.push_str(title);
    out.push_str(":\n");
    if table.is_empty() {
        out.push_str(empty);
        out.push('\n');
    } else {
        out.push_str(&table.render());
    }
}

/// The report as text: the summary line, then one section per kind, the unprotected model servers and
/// the admission configuration.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = summary_line(&report.summary);
    out.push('\n');

    let mut instances = Table::new([
        "NAME",
        "MODE",
        "PROFILE",
        "READY",
        "PROTECTED",
        "INJECTED",
        "UNPROTECTED",
        "DRIFT",
    ]);
    for i in &report.instances {
        instances.row([
            i.name.clone(),
            i.mode.clone(),
            i.profile.clone(),
            i.ready.cell(),
            i.protected_workloads.to_string(),
            i.injected_pods.to_string(),
            i.unprotected_model_servers.to_string(),
            i.drifted_pods.to_string(),
        ]);
    }
    section(
        &mut out,
        "AIRuntimeInstances",
        &instances,
        "No AIRuntimeInstances: nothing is protected.",
    );

    let mut profiles = Table::new(["NAME", "READY", "INSTANCES"]);
    for p in &report.profiles {
        profiles.row([p.name.clone(), p.ready.cell(), p.instances.to_string()]);
    }
    section(
        &mut out,
        "AISecurityProfiles",
        &profiles,
        "No AISecurityProfiles.",
    );

    let mut groups = Table::new(["NAME", "MEMBERS", "READY"]);
    for g in &report.address_groups {
        groups.row([g.name.clone(), g.members.to_string(), g.ready.cell()]);
    }
    section(
        &mut out,
        "DynamicAddressGroups",
        &groups,
        "No DynamicAddressGroups.",
    );

    let mut unprotected = Table::new(["NAMESPACE", "KIND", "NAME", "FINGERPRINT", "INSTANCE"]);
    for u in &report.unprotected.items {
        unprotected.row([
            u.namespace.clone(),
            u.kind.clone(),
            u.name.clone(),
            or_dash(&u.fingerprint),
            u.instance.clone(),
        ]);
    }
    out.push_str("\nUnprotected model servers:\n");
    if !unprotected.is_empty() {
        out.push_str(&unprotected.render());
    }
    match (unprotected.is_empty(), report.unprotected.more) {
        (true, 0) => out.push_str("None.\n"),
        (_, 0) => {}
        // The statuses list at most 50 each; the counts are complete.
        (_, more) => out.push_str(&format!("... and {more} more\n")),
    }

    let mut admission = Table::new(["KIND", "NAME", "STATE", "SETTINGS"]);
    for a in &report.admission {
        admission.row([a.kind.clone(), a.name.clone(), a.state.clone(), a.settings()]);
    }
    section(&mut out, "Admission", &admission, "Not checked.");
    out
}

/// Lists everything `status` needs. A missing Airlock CRD is [`Error::CrdsNotInstalled`]; admission
/// objects that cannot be read are reported as `unknown`, not as a failure.
pub async fn fetch(client: &Client) -> Result<Inputs> {
    let (instances, profiles, groups) = crate::cluster::list_instances_profiles_groups(client).await?;

    let admission = vec![
        admission_row::<MutatingWebhookConfiguration>(client, MUTATING_WEBHOOK, mutating_row).await,
        admission_row::<ValidatingWebhookConfiguration>(client, VALIDATING_WEBHOOK, validating_row).await,
        admission_row::<ValidatingAdmissionPolicy>(client, BACKSTOP_POLICY, policy_row).await,
        admission_row::<ValidatingAdmissionPolicyBinding>(client, BACKSTOP_POLICY, binding_row).await,
    ];
    Ok(Inputs {
        instances,
        profiles,
        groups,
        admission,
    })
}

/// One admission object's row; an object that cannot be read is `unknown`, with the reason.
async fn admission_row<K>(
    client: &Client,
    name: &str,
    row: impl FnOnce(Option<&K>) -> AdmissionObject,
) -> AdmissionObject
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::all(client.clone()).get_opt(name).await {
        Ok(object) => row(object.as_ref()),
        Err(e) => AdmissionObject::unknown(&K::kind(&()), name, crate::error::chain(&e)),
    }
}
