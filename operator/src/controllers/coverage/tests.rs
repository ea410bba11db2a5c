use k8s_openapi::api::core::v1::Pod;

use super::*;

fn instance(yaml: &str) -> AIRuntimeInstance {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn enforce_ml() -> AIRuntimeInstance {
    instance(
        r#"
apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: ml}
spec:
  selector:
    namespaceSelector: {matchLabels: {team: ml}}
  profileRef: {name: strict}
  sidecar: {image: "registry.example/airlock-sidecar:1.0"}
"#,
    )
}

/// The coverage of `instance` among `all` now, with the installation's default sidecar image.
fn cover(instance: &AIRuntimeInstance, all: &[&AIRuntimeInstance], index: &Index) -> Coverage {
    coverage(
        instance,
        all,
        index,
        SystemTime::now(),
        &mutate::default_sidecar_image(),
    )
}

fn add_pod(index: &mut Index, namespace: &str, yaml: &str) {
    let pod: Pod = serde_yaml_ng::from_str(yaml).unwrap();
    index.apply_pod(namespace, LeanPod::from_pod(&pod).unwrap());
}

const VLLM_DEPLOYMENT_POD: &str = r#"
metadata:
  name: llm-5c9d7-abcde
  labels: {app: llm, pod-template-hash: 5c9d7}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: llm-5c9d7, uid: u, controller: true}]
spec:
  containers: [{name: server, image: "vllm/vllm-openai:v0.9.1"}]
status: {phase: Running}
"#;

fn injected(name: &str, image: &str) -> String {
    format!(
        r#"
metadata:
  name: {name}
  labels: {{app: chat, pod-template-hash: 77f}}
  annotations: {{airlock.dev/injected: "true"}}
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: chat-77f, uid: u, controller: true}}]
spec:
  initContainers: [{{name: airlock-sidecar, image: "{image}", restartPolicy: Always}}]
  containers: [{{name: app, image: python:3.12}}]
status: {{phase: Running}}
"#
    )
}

fn ml_index() -> Index {
    let mut index = Index::new();
    index.apply_namespace("models", BTreeMap::from([("team".into(), "ml".into())]));
    index.apply_namespace("web", BTreeMap::new());
    index
}

#[test]
fn injected_pods_count_and_their_workload_is_protected() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(
        &mut index,
        "models",
        &injected("chat-77f-a", "registry.example/airlock-sidecar:1.0"),
    );
    add_pod(
        &mut index,
        "models",
        &injected("chat-77f-b", "registry.example/airlock-sidecar:1.0"),
    );
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(c.namespaces, ["models"]);
    assert_eq!(c.injected_pods, 2);
    assert_eq!(c.protected_workloads, 1);
    assert!(c.unprotected.is_empty() && c.drift.is_empty());
}

#[test]
fn a_model_server_without_the_sidecar_is_unprotected_and_drifted() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(&mut index, "models", VLLM_DEPLOYMENT_POD);
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(
        c.unprotected,
        [UnprotectedWorkload {
            namespace: "models".into(),
            name: "llm".into(),
            kind: "Deployment".into(),
            fingerprint: "vllm".into(),
        }]
    );
    assert_eq!(c.drift.len(), 1);
    assert_eq!(c.drift[0].kind, DriftKind::Missing);
    assert_eq!(c.protected_workloads, 0);
}

#[test]
fn pods_in_unselected_namespaces_are_not_counted() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(&mut index, "web", VLLM_DEPLOYMENT_POD);
    add_pod(&mut index, "kube-system", VLLM_DEPLOYMENT_POD);
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(
        c,
        Coverage {
            namespaces: vec!["models".into()],
            sidecar_image: "registry.example/airlock-sidecar:1.0".into(),
            ..Coverage::default()
        }
    );
}

#[test]
fn an_outdated_sidecar_image_is_drift_but_still_injected() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(
        &mut index,
        "models",
        &injected("chat-77f-a", "registry.example/airlock-sidecar:0.9"),
    );
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(c.injected_pods, 1);
    assert_eq!(c.drift[0].kind, DriftKind::Outdated);
    assert_eq!(c.drift_listed()[0].name, "chat-77f-a");
    // An instance that names no image wants the installation's default: with 0.9 as the default, the
    // same pod is up to date; with another default, it drifted.
    let mut unnamed = enforce_ml();
    unnamed.spec.sidecar = None;
    let now = SystemTime::now();
    let c = coverage(
        &unnamed,
        &[&unnamed],
        &index,
        now,
        "registry.example/airlock-sidecar:0.9",
    );
    assert_eq!(c.injected_pods, 1);
    assert!(c.drift.is_empty(), "{:?}", c.drift);
    let c = cover(&unnamed, &[&unnamed], &index);
    assert_eq!(c.drift.len(), 1);
}

#[test]
fn an_exempt_model_server_is_neither_unprotected_nor_drifted() {
    let mut ml = enforce_ml();
    ml.spec.exemptions = serde_yaml_ng::from_str(
        "[{namespace: models, kind: Deployment, name: llm, reason: vendor appliance}]",
    )
    .unwrap();
    let mut index = ml_index();
    add_pod(&mut index, "models", VLLM_DEPLOYMENT_POD);
    let c = cover(&ml, &[&ml], &index);
    assert!(c.unprotected.is_empty() && c.drift.is_empty());
}

#[test]
fn an_expired_exemption_no_longer_covers_the_workload() {
    let mut ml = enforce_ml();
    ml.spec.exemptions = serde_yaml_ng::from_str(
        "[{namespace: models, kind: Deployment, name: llm, reason: trial, expires: '2020-01-01T00:00:00Z'}]",
    )
    .unwrap();
    let mut index = ml_index();
    add_pod(&mut index, "models", VLLM_DEPLOYMENT_POD);
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(c.unprotected.len(), 1);
}

#[test]
fn an_opted_out_model_server_is_unprotected_but_not_drift() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(
        &mut index,
        "models",
        r#"
metadata: {name: solo, labels: {airlock.dev/inject: "false"}}
spec: {containers: [{name: s, image: "ollama/ollama:0.5.7"}]}
"#,
    );
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(c.unprotected[0].kind, "Pod");
    assert_eq!(c.unprotected[0].fingerprint, "ollama");
    assert!(c.drift.is_empty());
}

#[test]
fn a_pod_claimed_by_an_enforcing_instance_is_not_counted_by_an_auditing_one() {
    let ml = enforce_ml();
    let audit = instance(
        r#"
apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: aaa-audit}
spec:
  selector: {}
  profileRef: {name: audit}
  mode: audit
"#,
    );
    let mut index = ml_index();
    add_pod(&mut index, "models", VLLM_DEPLOYMENT_POD);
    add_pod(&mut index, "web", VLLM_DEPLOYMENT_POD);
    let all = [&ml, &audit];
    let c = cover(&audit, &all, &index);
    assert_eq!(c.namespaces, ["models", "web"]);
    assert_eq!(c.unprotected.len(), 1);
    assert_eq!(c.unprotected[0].namespace, "web");
}

#[test]
fn the_status_lists_are_bounded() {
    let ml = enforce_ml();
    let mut index = ml_index();
    for i in 0..120 {
        add_pod(
            &mut index,
            "models",
            &format!(
                "metadata: {{name: m{i:03}}}\nspec: {{containers: [{{name: s, image: 'vllm/vllm-openai:v1'}}]}}\n"
            ),
        );
    }
    let c = cover(&ml, &[&ml], &index);
    assert_eq!(c.unprotected.len(), 120);
    assert_eq!(c.unprotected_listed().len(), MAX_LISTED);
    assert_eq!(c.drift_listed().len(), MAX_LISTED);
    assert_eq!(c.unprotected_listed()[0].name, "m000");
}

#[test]
fn finished_pods_are_ignored() {
    let ml = enforce_ml();
    let mut index = ml_index();
    add_pod(
        &mut index,
        "models",
        "metadata: {name: done}\nspec: {containers: [{name: s, image: 'vllm/vllm-openai:v1'}]}\nstatus: {phase: Succeeded}\n",
    );
    let c = cover(&ml, &[&ml], &index);
    assert!(c.unprotected.is_empty() && c.drift.is_empty());
}
