//! `kubectl airlock status`: the report built from Airlock's objects as the operator leaves them, its
//! table and its JSON document.

#![allow(clippy::unwrap_used)]

mod common;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use common::objects;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use kubectl_airlock::status::{self, Inputs, StatusReport};

const OBJECTS: &str = "status/objects.yaml";

fn inputs() -> Inputs {
    let mutating: Vec<MutatingWebhookConfiguration> = objects(OBJECTS, "MutatingWebhookConfiguration");
    let validating: Vec<ValidatingWebhookConfiguration> = objects(OBJECTS, "ValidatingWebhookConfiguration");
    Inputs {
        instances: objects::<AIRuntimeInstance>(OBJECTS, "AIRuntimeInstance"),
        profiles: objects::<AISecurityProfile>(OBJECTS, "AISecurityProfile"),
        groups: objects::<DynamicAddressGroup>(OBJECTS, "DynamicAddressGroup"),
        admission: vec![
            status::mutating_row(mutating.first()),
            status::validating_row(validating.first()),
            // An install from before the backstop policy existed.
            status::policy_row(None),
            status::binding_row(None),
        ],
    }
}

fn report() -> StatusReport {
    status::build(&inputs())
}

#[test]
fn the_summary_line_adds_up_every_instance() {
    assert_eq!(
        status::summary_line(&report().summary),
        "Airlock: 2 instances, 3 profiles, 2 address groups; 12 protected workloads, 14 injected pods, \
         52 unprotected model servers, 1 drifted pod"
    );
    assert_eq!(
        status::summary_line(&status::build(&Inputs::default()).summary),
        "Airlock: 0 instances, 0 profiles, 0 address groups; 0 protected workloads, 0 injected pods, \
         0 unprotected model servers, 0 drifted pods"
    );
}

#[test]
fn the_table_shows_every_section_like_kubectl() {
    let expected = "\
Airlock: 2 instances, 3 profiles, 2 address groups; 12 protected workloads, 14 injected pods, 52 unprotected model servers, 1 drifted pod

AIRuntimeInstances:
NAME     MODE      PROFILE      READY                     PROTECTED   INJECTED   UNPROTECTED   DRIFT
prod     enforce   strict       True                      10          12         52            1
shadow   audit     audit-only   False (ProfileNotFound)   2           2          0             0

AISecurityProfiles:
NAME       READY                INSTANCES
balanced   True                 1
strict     True                 1
unused     Unknown (NoStatus)   0

DynamicAddressGroups:
NAME             MEMBERS   READY
chat-frontends   0         False (InvalidExpression)
model-servers    4         True

Unprotected model servers:
NAMESPACE   KIND          NAME         FINGERPRINT   INSTANCE
ml          Deployment    llm-legacy   vllm          prod
ml          StatefulSet   ollama       ollama        prod
... and 50 more

Admission:
KIND                               NAME                       STATE     SETTINGS
MutatingWebhookConfiguration       airlock-sidecar-injector   present   failurePolicy=Ignore
ValidatingWebhookConfiguration     airlock-validator          present   failurePolicy=Fail
ValidatingAdmissionPolicy          airlock-backstop           missing   -
ValidatingAdmissionPolicyBinding   airlock-backstop           missing   -
";
    assert_eq!(status::render_table(&report()), expected);
}

#[test]
fn a_profile_counts_the_instances_that_use_it_directly_or_through_a_rule() {
    let report = report();
    let count = |name: &str| {
        report
            .profiles
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.instances)
            .unwrap()
    };
    // `balanced` is only named by a rule of `prod`.
    assert_eq!((count("strict"), count("balanced"), count("unused")), (1, 1, 0));
}

#[test]
fn ready_shows_the_reason_only_when_not_true() {
    let report = report();
    assert_eq!(report.instances[0].ready.cell(), "True");
    assert_eq!(report.instances[1].ready.cell(), "False (ProfileNotFound)");
    assert_eq!(
        report.instances[1].ready.message,
        "AISecurityProfile audit-only does not exist"
    );
}

#[test]
fn unprotected_servers_beyond_the_bounded_list_are_counted_as_more() {
    let report = report();
    assert_eq!(report.unprotected.items.len(), 2);
    assert_eq!(report.unprotected.more, 50);

    let mut none = inputs();
    none.instances.truncate(0);
    let text = status::render_table(&status::build(&none));
    assert!(text.contains("Unprotected model servers:\nNone.\n"), "{text}");
    assert!(
        text.contains("No AIRuntimeInstances: nothing is protected."),
        "{text}"
    );
}

#[test]
fn the_backstop_policy_and_its_binding_show_their_settings_when_present() {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "airlock-backstop"},
        "spec": {"failurePolicy": "Fail", "validations": [{"expression": "true"}]}
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "airlock-backstop"},
        "spec": {"policyName": "airlock-backstop", "validationActions": ["Deny"]}
    }))
    .unwrap();
    let policy = status::policy_row(Some(&policy));
    let binding = status::binding_row(Some(&binding));
    assert_eq!(
        (policy.state.as_str(), policy.failure_policy.as_deref()),
        ("present", Some("Fail"))
    );
    assert_eq!(
        (binding.state.as_str(), binding.validation_actions.as_deref()),
        ("present", Some("Deny"))
    );
    assert!(binding.stands_aside_in.is_empty());
}

#[test]
fn the_backstop_binding_row_names_the_namespaces_it_stands_aside_in() {
    let binding = |why: serde_json::Value| -> ValidatingAdmissionPolicyBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "airlock-backstop", "annotations": {"airlock.dev/stands-aside": why.to_string()}},
            "spec": {"policyName": "airlock-backstop", "validationActions": ["Deny"]}
        }))
        .unwrap()
    };
    let row = status::binding_row(Some(&binding(serde_json::json!({
        "ml": "Pod/debug by models", "audit": "audited by observe"
    }))));
    assert_eq!(row.stands_aside_in, ["audit", "ml"]);
    let doc = serde_json::to_value(&row).unwrap();
    assert_eq!(doc["standsAsideIn"], serde_json::json!(["audit", "ml"]));
    let many: serde_json::Map<String, serde_json::Value> = (0..7)
        .map(|i| (format!("ns{i}"), serde_json::json!("r")))
        .collect();
    let row = status::binding_row(Some(&binding(serde_json::Value::Object(many))));
    assert_eq!(
        row.settings(),
        "validationActions=Deny standsAsideIn=ns0,ns1,ns2,ns3,ns4,+2"
    );
}

#[test]
fn json_has_the_same_content_with_camel_case_names() {
    let doc = serde_json::to_value(report()).unwrap();
    assert_eq!(doc["summary"]["instances"], 2);
    assert_eq!(doc["summary"]["addressGroups"], 2);
    assert_eq!(doc["summary"]["protectedWorkloads"], 12);
    assert_eq!(doc["summary"]["injectedPods"], 14);
    assert_eq!(doc["summary"]["unprotectedModelServers"], 52);
    assert_eq!(doc["summary"]["driftedPods"], 1);
    let prod = &doc["instances"][0];
    assert_eq!(prod["name"], "prod");
    assert_eq!(prod["mode"], "enforce");
    assert_eq!(prod["profile"], "strict");
    assert_eq!(prod["ready"]["status"], "True");
    assert_eq!(prod["ready"]["reason"], "PolicyDelivered");
    assert_eq!(prod["protectedWorkloads"], 10);
    assert_eq!(prod["injectedPods"], 12);
    assert_eq!(prod["unprotectedModelServers"], 52);
    assert_eq!(prod["driftedPods"], 1);
    assert_eq!(prod["selectedNamespaces"], 3);
    assert_eq!(doc["profiles"][0]["instances"], 1);
    assert_eq!(doc["addressGroups"][1]["members"], 4);
    assert_eq!(doc["unprotected"]["items"][0]["fingerprint"], "vllm");
    assert_eq!(doc["unprotected"]["more"], 50);
    assert_eq!(doc["admission"][0]["failurePolicy"], "Ignore");
    assert_eq!(doc["admission"][2]["state"], "missing");
}

#[test]
fn a_cluster_without_the_crds_gets_a_clear_error_naming_the_install_command() {
    let not_found = kube::Error::Api(
        kube::core::Status::failure("404 page not found", "Failed to parse error data")
            .with_code(404)
            .boxed(),
    );
    let error = kubectl_airlock::Error::from_airlock_list("list AIRuntimeInstances", not_found);
    assert_eq!(
        error.to_string(),
        "Airlock's CRDs are not installed in this cluster: install the chart (helm install airlock \
         charts/airlock -n airlock-system --create-namespace)"
    );
    assert_eq!(error.exit_code(), 1);

    let forbidden = kube::Error::Api(
        kube::core::Status::failure("forbidden", "Forbidden")
            .with_code(403)
            .boxed(),
    );
    let error = kubectl_airlock::Error::from_airlock_list("list AIRuntimeInstances", forbidden);
    assert_eq!(error.to_string(), "cannot list AIRuntimeInstances");
}

#[test]
fn status_without_a_reachable_cluster_fails_with_an_error_not_a_panic() {
    let out = common::run(&["status", "--kubeconfig", "/nonexistent/kubeconfig"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.starts_with("error: cannot load the kubeconfig: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
