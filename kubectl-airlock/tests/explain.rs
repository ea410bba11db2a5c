//! `kubectl airlock explain`: which instance applies to a pod and why, injection, model-server
//! detection, exemptions, address groups and the rules that name them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::DynamicAddressGroupShard;
use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use common::objects;
use k8s_openapi::api::core::v1::Pod;
use kubectl_airlock::explain::{self, Explanation, Inputs};

const CLUSTER: &str = "explain/cluster.yaml";

fn pod(name: &str) -> Pod {
    objects::<Pod>("explain/pods.yaml", "Pod")
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn inputs(pod: Pod, namespace_labels: &[(&str, &str)]) -> Inputs {
    Inputs {
        pod,
        namespace_labels: Some(labels(namespace_labels)),
        instances: objects::<AIRuntimeInstance>(CLUSTER, "AIRuntimeInstance"),
        profiles: objects::<AISecurityProfile>(CLUSTER, "AISecurityProfile"),
        groups: objects::<DynamicAddressGroup>(CLUSTER, "DynamicAddressGroup"),
        shards: objects::<DynamicAddressGroupShard>(CLUSTER, "DynamicAddressGroupShard"),
    }
}

fn chat() -> Explanation {
    explain::explain(&inputs(
        pod("chat-6f7d9c8b5-abcde"),
        &[
            ("kubernetes.io/metadata.name", "ml"),
            ("airlock.dev/protect", "true"),
        ],
    ))
}

fn sandbox_llm() -> Explanation {
    explain::explain(&inputs(
        pod("llm-0"),
        &[("kubernetes.io/metadata.name", "sandbox")],
    ))
}

#[test]
fn the_instance_that_applies_is_named_with_its_profile_and_mode() {
    let e = chat();
    assert_eq!(e.selection.instance.as_deref(), Some("prod"));
    assert_eq!(e.selection.mode.as_deref(), Some("enforce"));
    assert_eq!(e.selection.profile.as_deref(), Some("strict"));
    assert_eq!(e.selection.profile_ready.as_ref().unwrap().cell(), "True");
    assert_eq!(e.owner.as_deref(), Some("ReplicaSet/chat-6f7d9c8b5"));
}

#[test]
fn an_enforcing_instance_beats_an_auditing_one_that_also_selects_the_pod() {
    assert_eq!(chat().selection.also_selected_by, ["ml-audit"]);
}

#[test]
fn a_pod_no_instance_selects_gets_the_reason_for_each_instance() {
    let e = sandbox_llm();
    assert_eq!(e.selection.instance, None);
    let reasons: Vec<(String, String)> = e
        .selection
        .not_selected_by
        .iter()
        .map(|n| (n.instance.clone(), n.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "ml-audit".to_owned(),
                "namespaceSelector kubernetes.io/metadata.name=ml does not match namespace sandbox \
                 (labels: kubernetes.io/metadata.name=sandbox)"
                    .to_owned()
            ),
            (
                "prod".to_owned(),
                "namespaceSelector airlock.dev/protect=true does not match namespace sandbox (labels: \
                 kubernetes.io/metadata.name=sandbox)"
                    .to_owned()
            ),
            (
                "shadow".to_owned(),
                "namespaceSelector airlock.dev/audit=true does not match namespace sandbox (labels: \
                 kubernetes.io/metadata.name=sandbox)"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(
        e.injection.summary,
        "not injected: no AIRuntimeInstance selects it"
    );
}

#[test]
fn a_pod_selector_that_does_not_match_is_explained_with_the_pod_s_labels() {
    let e = explain::explain(&inputs(
        pod("llm-0"),
        &[
            ("kubernetes.io/metadata.name", "sandbox"),
            ("airlock.dev/audit", "true"),
        ],
    ));
    let shadow = e
        .selection
        .not_selected_by
        .iter()
        .find(|n| n.instance == "shadow")
        .unwrap();
    assert_eq!(
        shadow.reason,
        "podSelector tier in (frontend,api) does not match the pod's labels (app=llm,tier=backend)"
    );
}

#[test]
fn injection_is_read_from_the_annotations_and_a_matching_image_is_current() {
    let e = chat();
    assert!(e.injection.injected);
    assert_eq!(e.injection.injected_annotation.as_deref(), Some("true"));
    assert_eq!(e.injection.status.as_ref().unwrap().instance, "prod");
    assert_eq!(e.injection.native, Some(true));
    assert_eq!(e.injection.current, Some(true));
    assert_eq!(
        e.injection.summary,
        "injected by AIRuntimeInstance prod as a native sidecar; the sidecar is current"
    );
}

#[test]
fn a_sidecar_image_other_than_the_instance_s_is_reported_as_drift() {
    let mut p = pod("chat-6f7d9c8b5-abcde");
    p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].image =
        Some("ghcr.io/airlock-dev/airlock-sidecar:0.0.9".to_owned());
    let e = explain::explain(&inputs(p, &[("airlock.dev/protect", "true")]));
    assert_eq!(e.injection.current, Some(false));
    assert!(
        e.injection
            .summary
            .contains("drifted: the instance now asks for ghcr.io/airlock-dev/airlock-sidecar:0.1.0"),
        "{}",
        e.injection.summary
    );
}

#[test]
fn a_selected_pod_without_the_sidecar_is_drift_to_restart() {
    let mut p = pod("llm-0");
    p.metadata.namespace = Some("ml".to_owned());
    let e = explain::explain(&inputs(p, &[("airlock.dev/protect", "true")]));
    assert!(!e.injection.injected);
    assert!(
        e.injection
            .summary
            .starts_with("not injected although AIRuntimeInstance prod selects it"),
        "{}",
        e.injection.summary
    );
}

#[test]
fn a_model_server_is_recognised_by_the_webhook_s_fingerprints() {
    let model = sandbox_llm().model_server.unwrap();
    assert_eq!(
        (model.fingerprint.as_str(), model.container.as_str(), model.strong),
        ("vllm", "server", true)
    );
    assert_eq!(model.evidence, "image vllm/vllm-openai:v0.9.1");
    assert_eq!(chat().model_server, None);
}

#[test]
fn an_exemption_naming_the_pod_s_deployment_applies_to_the_pod() {
    let e = chat();
    assert_eq!(e.exemptions.len(), 1);
    let x = &e.exemptions[0];
    assert_eq!(
        (
            x.instance.as_str(),
            x.kind.as_str(),
            x.name.as_str(),
            x.reason.as_str()
        ),
        ("prod", "Deployment", "chat", "load test until Friday")
    );
}

#[test]
fn address_groups_come_from_group_status_and_shards() {
    assert_eq!(chat().address_groups, ["batch", "chat-frontends"]);
    assert!(sandbox_llm().address_groups.is_empty());
}

#[test]
fn only_the_rules_naming_the_pod_s_groups_are_listed_in_their_order() {
    let rules = chat().rules;
    let listed: Vec<(usize, &str, &str, &str)> = rules
        .iter()
        .map(|r| (r.position, r.name.as_str(), r.action.as_str(), r.pod_is.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (2, "chat-to-models", "allow", "source"),
            (3, "chat-to-openai", "alert", "source")
        ]
    );
    assert_eq!(rules[0].profile.as_deref(), Some("balanced"));
    assert_eq!(rules[1].hosts, ["api.openai.com"]);
}

#[test]
fn the_text_reads_like_kubectl_describe() {
    let expected = "\
Pod:              ml/chat-6f7d9c8b5-abcde (owned by ReplicaSet/chat-6f7d9c8b5)
Instance:         prod (mode enforce)
Profile:          strict (Ready: True)
Also selected by: ml-audit (enforce beats audit, then the first by name)
Injection:        injected by AIRuntimeInstance prod as a native sidecar; the sidecar is current
Sidecar image:    ghcr.io/airlock-dev/airlock-sidecar:0.1.0
Model server:     no
Exemptions:
  Deployment/chat by AIRuntimeInstance prod: load test until Friday
Address groups:   batch, chat-frontends
Rules:            of AIRuntimeInstance prod that name these groups, in order:
  #   NAME             ACTION   FROM                   TO                                  PROFILE    POD IS
  2   chat-to-models   allow    chat-frontends         model-servers                       balanced   source
  3   chat-to-openai   alert    chat-frontends,batch   host:api.openai.com,model:gpt-4o*   -          source
";
    assert_eq!(explain::render_text(&chat()), expected);
}

#[test]
fn the_text_of_an_unselected_pod_says_why() {
    let text = explain::render_text(&sandbox_llm());
    assert!(
        text.contains("Instance:         none selects this pod:\n"),
        "{text}"
    );
    assert!(
        text.contains("  prod: namespaceSelector airlock.dev/protect=true does not match namespace sandbox"),
        "{text}"
    );
    assert!(
        text.contains("Model server:     yes, vllm (container server: image vllm/vllm-openai:v0.9.1)"),
        "{text}"
    );
}

#[test]
fn json_is_structured_with_camel_case_names() {
    let doc = serde_json::to_value(chat()).unwrap();
    assert_eq!(doc["selection"]["instance"], "prod");
    assert_eq!(doc["selection"]["alsoSelectedBy"][0], "ml-audit");
    assert_eq!(doc["injection"]["injectedAnnotation"], "true");
    assert_eq!(doc["injection"]["status"]["initContainers"][0], "airlock-sidecar");
    assert_eq!(doc["addressGroups"][1], "chat-frontends");
    assert_eq!(doc["rules"][0]["podIs"], "source");
}
