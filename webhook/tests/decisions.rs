//! The admission decisions as pure functions: fingerprints and verdicts over the workload fixtures, and
//! sidecar injection over fixture pods.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use airlock_crds::AIRuntimeInstance;
use airlock_webhook::fingerprint;
use airlock_webhook::mutate::{self, InjectionStatus, MutateOutcome, SkipReason};
use airlock_webhook::review::StaticView;
use airlock_webhook::validate::{self, Verdict};
use airlock_webhook::workload::{Workload, kind_name};
use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn instance(yaml: &str) -> AIRuntimeInstance {
    serde_yaml_ng::from_str(yaml).expect("instance fixture parses")
}

fn enforce_all() -> AIRuntimeInstance {
    instance(
        "apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: protect}
spec:
  selector: {podSelector: {}}
  profileRef: {name: balanced}
  mode: enforce",
    )
}

fn audit_all() -> AIRuntimeInstance {
    instance(
        "apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: watch}
spec:
  selector: {podSelector: {}}
  profileRef: {name: audit}
  mode: audit",
    )
}

/// An instance that selects nothing but exempts one workload.
fn exempting(namespace: &str, kind: &str, name: &str) -> AIRuntimeInstance {
    instance(&format!(
        "apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {{name: exemptions}}
spec:
  selector: {{podSelector: {{matchLabels: {{selects: nothing}}}}}}
  profileRef: {{name: balanced}}
  exemptions:
  - {{namespace: {namespace}, kind: {kind}, name: {name}, reason: vendor appliance reviewed in SEC-1}}"
    ))
}

struct Fixture {
    file: String,
    expect: Option<String>,
    manifest: Value,
    workload: Workload,
}

fn fixtures() -> Vec<Fixture> {
    let mut files: Vec<_> = std::fs::read_dir(data("workloads"))
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let header = text.lines().next().unwrap_or_default();
            let expect = header.strip_prefix("# expect: ").expect("expect header");
            let expect = match expect.trim() {
                "ordinary" => None,
                other => Some(
                    other
                        .strip_prefix("model-server ")
                        .expect("model-server <fp>")
                        .to_owned(),
                ),
            };
            let manifest: Value = serde_yaml_ng::from_str(&text).expect("yaml");
            let workload = Workload::from_manifest(manifest.clone())
                .expect("reads")
                .expect("a workload");
            Fixture {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                expect,
                manifest,
                workload,
            }
        })
        .collect()
}

fn namespace(f: &Fixture) -> String {
    f.workload
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

/// For a bare Pod the mutating webhook runs before validation; apply its patch as the API server would.
fn as_admitted(f: &Fixture, view: &StaticView) -> Workload {
    if kind_name(f.workload.kind) != "Pod" {
        return f.workload.clone();
    }
    let pod: Pod = serde_json::from_value(f.manifest.clone()).unwrap();
    let chosen = airlock_webhook::selection::choose(
        &f.workload.pod_labels,
        &namespace(f),
        None,
        view.instances.iter().map(|i| i.as_ref()),
    );
    let Some(instance) = chosen else {
        return f.workload.clone();
    };
    match mutate::mutate(
        &pod,
        &namespace(f),
        instance,
        (1, 33),
        &mutate::default_sidecar_image(),
    ) {
        MutateOutcome::Patch(patch) => {
            let ops = patch.to_json_patch().unwrap();
            let mut doc = f.manifest.clone();
            json_patch::patch(&mut doc, &ops).unwrap();
            Workload::from_manifest(doc).unwrap().unwrap()
        }
        MutateOutcome::Skip { .. } => f.workload.clone(),
    }
}

#[test]
fn the_fixture_set_has_at_least_thirty_of_each() {
    let all = fixtures();
    let models = all.iter().filter(|f| f.expect.is_some()).count();
    assert!(models >= 30, "{models} model servers");
    assert!(all.len() - models >= 30, "{} ordinary", all.len() - models);
}

#[test]
fn every_fixture_is_fingerprinted_as_its_header_says() {
    let mut failures = Vec::new();
    for f in fixtures() {
        let found = fingerprint::detect(&f.workload.pod_labels, &f.workload.pod_spec, &[]);
        let strong = found.as_ref().filter(|m| m.strong).map(|m| m.fingerprint.clone());
        if strong != f.expect {
            failures.push(format!("{}: expected {:?}, got {:?}", f.file, f.expect, found));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn without_an_instance_model_servers_are_denied_with_the_container_fingerprint_and_fixes() {
    let view = StaticView::new();
    for f in fixtures() {
        let verdict = validate::validate(&f.workload, &namespace(&f), &view);
        match (&f.expect, verdict) {
            (None, Verdict::Allow) => {}
            (Some(fp), Verdict::Deny(denial)) => {
                let m = fingerprint::detect(&f.workload.pod_labels, &f.workload.pod_spec, &[]).unwrap();
                let msg = &denial.message;
                for needle in [
                    format!(
                        "{} {}/{}",
                        kind_name(f.workload.kind),
                        namespace(&f),
                        f.workload.name
                    ),
                    format!("container {:?}", m.container),
                    format!("fingerprint {fp}"),
                    "spec.selector".to_owned(),
                    "spec.exemptions".to_owned(),
                ] {
                    assert!(msg.contains(&needle), "{}: {needle:?} missing from {msg}", f.file);
                }
            }
            (expect, verdict) => panic!("{}: expected {expect:?}, got {verdict:?}", f.file),
        }
    }
}

#[test]
fn an_enforcing_instance_admits_what_it_selects() {
    let view = StaticView::new().with_instance(enforce_all());
    for f in fixtures() {
        let workload = as_admitted(&f, &view);
        let verdict = validate::validate(&workload, &namespace(&f), &view);
        assert_eq!(verdict, Verdict::Allow, "{}", f.file);
    }
}

#[test]
fn an_auditing_instance_admits_model_servers_with_a_warning() {
    let view = StaticView::new().with_instance(audit_all());
    for f in fixtures() {
        let verdict = validate::validate(&f.workload, &namespace(&f), &view);
        match (&f.expect, verdict) {
            (None, Verdict::Allow) => {}
            (Some(_), Verdict::AllowWithWarnings(w)) => {
                assert!(
                    w.len() == 1 && w[0].contains("\"watch\"") && w[0].contains("audits"),
                    "{w:?}"
                );
            }
            (expect, verdict) => panic!("{}: expected {expect:?}, got {verdict:?}", f.file),
        }
    }
}

#[test]
fn an_exemption_admits_exactly_the_named_workload() {
    for f in fixtures().into_iter().filter(|f| f.expect.is_some()) {
        let kind = kind_name(f.workload.kind);
        let view = StaticView::new().with_instance(exempting(&namespace(&f), kind, &f.workload.name));
        assert_eq!(
            validate::validate(&f.workload, &namespace(&f), &view),
            Verdict::Allow,
            "{}",
            f.file
        );
        let elsewhere = StaticView::new().with_instance(exempting("other", kind, &f.workload.name));
        assert!(
            matches!(
                validate::validate(&f.workload, &namespace(&f), &elsewhere),
                Verdict::Deny(_)
            ),
            "{}",
            f.file
        );
    }
}

#[test]
fn ports_alone_never_deny() {
    let pod = pod_json(
        json!({"containers": [{"name": "app", "image": "example/app:1", "ports": [
        {"containerPort": 11434}, {"containerPort": 8000}, {"containerPort": 8080}]}]}),
    );
    let w = Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, pod).unwrap();
    let m = fingerprint::detect(&w.pod_labels, &w.pod_spec, &[]).expect("weak match");
    assert!(!m.strong && m.fingerprint == "ollama");
    assert_eq!(validate::validate(&w, "apps", &StaticView::new()), Verdict::Allow);
}

#[test]
fn an_opted_out_model_server_is_denied_unless_exempt() {
    let mut pod = pod_json(json!({"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.1"}]}));
    pod["metadata"]["labels"] = json!({"airlock.dev/inject": "false"});
    let w = Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, pod).unwrap();
    let view = StaticView::new().with_instance(enforce_all());
    let Verdict::Deny(d) = validate::validate(&w, "models", &view) else {
        panic!("not denied")
    };
    assert!(
        d.message.contains("airlock.dev/inject") && d.message.contains("exemption"),
        "{d}"
    );
    let view = view.with_instance(exempting("models", "Pod", "p"));
    assert_eq!(validate::validate(&w, "models", &view), Verdict::Allow);
}

#[test]
fn a_pod_of_an_exempt_deployment_is_exempt_through_its_replicaset() {
    let mut pod = pod_json(json!({"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.1"}]}));
    pod["metadata"]["name"] = json!("llm-5d9f7c-abcde");
    pod["metadata"]["labels"] = json!({"pod-template-hash": "5d9f7c"});
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "llm-5d9f7c", "uid": "u", "controller": true}]);
    let w = Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, pod).unwrap();
    assert!(matches!(
        validate::validate(&w, "models", &StaticView::new()),
        Verdict::Deny(_)
    ));
    let view = StaticView::new().with_instance(exempting("models", "Deployment", "llm"));
    assert_eq!(validate::validate(&w, "models", &view), Verdict::Allow);
}

#[test]
fn kube_system_and_airlocks_namespace_are_never_checked() {
    let pod = pod_json(json!({"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.1"}]}));
    let w = Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, pod).unwrap();
    for ns in ["kube-system", "airlock-system"] {
        assert_eq!(validate::validate(&w, ns, &StaticView::new()), Verdict::Allow);
    }
}

#[test]
fn extra_fingerprints_from_an_instance_recognise_in_house_servers() {
    let mut inst = instance(
        "apiVersion: airlock.dev/v1alpha1
kind: AIRuntimeInstance
metadata: {name: inhouse}
spec:
  selector: {podSelector: {matchLabels: {selects: nothing}}}
  profileRef: {name: balanced}
  modelServers:
    extraFingerprints:
    - {name: in-house-llm, imagePatterns: ['registry.example.com/llm/*']}",
    );
    let pod =
        pod_json(json!({"containers": [{"name": "engine", "image": "registry.example.com/llm/engine:3"}]}));
    let w = Workload::from_value(airlock_crds::v1alpha1::WorkloadKind::Pod, pod).unwrap();
    let view = StaticView::new().with_instance(inst.clone());
    let Verdict::Deny(d) = validate::validate(&w, "models", &view) else {
        panic!("not denied")
    };
    assert!(
        d.message
            .contains("fingerprint in-house-llm (image registry.example.com/llm/engine:3)"),
        "{d}"
    );
    inst.spec.model_servers = None;
    let view = StaticView::new().with_instance(inst);
    assert_eq!(validate::validate(&w, "models", &view), Verdict::Allow);
}

// ---- mutation ----

fn pod_json(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "models"}, "spec": spec})
}

fn pod(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).unwrap()
}

/// `mutate` for a pod in namespace `models`, with the installation's default sidecar image.
fn mutate_models(pod: &Pod, instance: &AIRuntimeInstance, version: (u32, u32)) -> MutateOutcome {
    mutate::mutate(pod, "models", instance, version, &mutate::default_sidecar_image())
}

fn patch_of(outcome: MutateOutcome) -> Vec<PatchOperation> {
    match outcome {
        MutateOutcome::Patch(patch) => patch.to_json_patch().expect("the patch is JSON Patch").0,
        MutateOutcome::Skip { reason } => panic!("skipped: {reason:?}"),
    }
}

fn injected(doc: &Value, instance: &AIRuntimeInstance, version: (u32, u32)) -> Value {
    let ops = patch_of(mutate_models(&pod(doc), instance, version));
    for op in &ops {
        assert!(
            matches!(op, PatchOperation::Add(_)),
            "only add operations: {op:?}"
        );
    }
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).expect("the patch applies");
    out
}

fn status(doc: &Value) -> InjectionStatus {
    let raw = doc["metadata"]["annotations"]["airlock.dev/status"]
        .as_str()
        .expect("status annotation");
    serde_json::from_str(raw).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| a.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn app_pod() -> Value {
    pod_json(json!({"containers": [{"name": "app", "image": "registry.example.com/chat:1"}]}))
}

#[test]
fn native_sidecar_on_1_29_and_later_is_the_first_init_container() {
    let doc = pod_json(json!({
        "initContainers": [{"name": "setup", "image": "busybox"}],
        "containers": [{"name": "app", "image": "registry.example.com/chat:1"}],
        "volumes": [{"name": "data", "emptyDir": {}}]}));
    let out = injected(&doc, &enforce_all(), (1, 29));
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["airlock-sidecar", "setup"]
    );
    assert_eq!(names(&out["spec"]["containers"]), ["app"]);
    assert_eq!(names(&out["spec"]["volumes"]), ["data", "airlock-policy"]);
    let sidecar = &out["spec"]["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 15020);
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/live");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/ready");
    let ports: Vec<_> = sidecar["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["containerPort"].clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (json!("airlock-out"), json!(15001)),
            (json!("airlock-in"), json!(15006)),
            (json!("airlock-admin"), json!(15020))
        ]
    );
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        sidecar["volumeMounts"][0],
        json!({"name": "airlock-policy", "mountPath": "/etc/airlock/policy", "readOnly": true})
    );
    assert_eq!(
        out["spec"]["volumes"][1]["configMap"],
        json!({"name": "airlock-policy-protect", "optional": true})
    );
    let env = names(&sidecar["env"]);
    for v in [
        "AIRLOCK_INSTANCE",
        "AIRLOCK_MODE",
        "POD_NAME",
        "POD_NAMESPACE",
        "POD_IP",
        "POD_SERVICE_ACCOUNT",
    ] {
        assert!(env.contains(&v.to_owned()), "{v}");
    }
    // The sidecar counts its app by this account when a profile keys callers by service account.
    let account = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_SERVICE_ACCOUNT")
        .unwrap();
    assert_eq!(
        account["valueFrom"],
        json!({"fieldRef": {"fieldPath": "spec.serviceAccountName"}})
    );
    assert_eq!(out["metadata"]["annotations"]["airlock.dev/injected"], "true");
    let st = status(&out);
    assert_eq!(st.init_containers, ["airlock-sidecar"]);
    assert!(st.containers.is_empty());
    assert_eq!(st.instance, "protect");
}

#[test]
fn a_regular_sidecar_before_1_29_is_appended_to_the_containers() {
    let out = injected(&app_pod(), &enforce_all(), (1, 28));
    assert_eq!(names(&out["spec"]["containers"]), ["app", "airlock-sidecar"]);
    assert!(out["spec"]["containers"][1].get("restartPolicy").is_none());
    assert!(out["spec"].get("initContainers").is_none());
    assert_eq!(status(&out).containers, ["airlock-sidecar"]);
}

#[test]
fn app_containers_get_the_sdk_base_urls_without_overriding_their_own() {
    let doc = pod_json(json!({"containers": [
        {"name": "app", "image": "registry.example.com/chat:1",
         "env": [{"name": "OPENAI_BASE_URL", "value": "https://gateway.example.com/v1"}]},
        {"name": "worker", "image": "registry.example.com/worker:1"},
        {"name": "configured", "image": "registry.example.com/x:1", "envFrom": [{"configMapRef": {"name": "llm"}}]}]}));
    let out = injected(&doc, &enforce_all(), (1, 33));
    let env = |i: usize| out["spec"]["containers"][i]["env"].clone();
    assert_eq!(
        env(0)[0],
        json!({"name": "OPENAI_BASE_URL", "value": "https://gateway.example.com/v1"})
    );
    assert_eq!(
        names(&env(0)).iter().filter(|n| *n == "OPENAI_BASE_URL").count(),
        1
    );
    assert!(names(&env(0)).contains(&"ANTHROPIC_BASE_URL".to_owned()));
    assert!(
        env(1)
            .as_array()
            .unwrap()
            .contains(&json!({"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:15001/v1"}))
    );
    assert!(
        env(1)
            .as_array()
            .unwrap()
            .contains(&json!({"name": "OLLAMA_HOST", "value": "http://127.0.0.1:15001"}))
    );
    assert!(env(2).is_null(), "envFrom containers keep their own settings");
    let st = status(&out);
    assert!(!st.env["app"].contains(&"OPENAI_BASE_URL".to_owned()));
    assert_eq!(st.env["worker"].len(), mutate::APP_ENV.len());
    assert!(!st.env.contains_key("configured"));
}

#[test]
fn no_app_env_when_outbound_interception_is_off() {
    let mut inst = enforce_all();
    inst.spec.sidecar = Some(serde_json::from_value(json!({"interception": {"outbound": false}})).unwrap());
    let out = injected(&app_pod(), &inst, (1, 33));
    assert!(out["spec"]["containers"][0].get("env").is_none());
    assert!(status(&out).env.is_empty());
}

#[test]
fn injection_is_idempotent_and_never_duplicates() {
    for version in [(1, 28), (1, 33)] {
        let once = injected(&app_pod(), &enforce_all(), version);
        assert_eq!(
            mutate_models(&pod(&once), &enforce_all(), version),
            MutateOutcome::Skip {
                reason: SkipReason::AlreadyInjected
            }
        );
        // The sidecar alone (no annotation, e.g. added by hand) also counts.
        let mut by_hand = once.clone();
        by_hand["metadata"]["annotations"] = json!({});
        assert_eq!(
            mutate_models(&pod(&by_hand), &enforce_all(), version),
            MutateOutcome::Skip {
                reason: SkipReason::AlreadyInjected
            }
        );
    }
}

#[test]
fn containers_airlock_did_not_add_only_gain_recorded_env() {
    let doc = pod_json(json!({
        "initContainers": [{"name": "setup", "image": "busybox", "command": ["true"]}],
        "containers": [{"name": "app", "image": "registry.example.com/chat:1", "ports": [{"containerPort": 8080}]}]}));
    let out = injected(&doc, &enforce_all(), (1, 33));
    let st = status(&out);
    let mut app = out["spec"]["containers"][0].clone();
    let env = app.as_object_mut().unwrap().remove("env").unwrap();
    assert_eq!(app, doc["spec"]["containers"][0]);
    assert_eq!(names(&env), st.env["app"]);
    assert_eq!(out["spec"]["initContainers"][1], doc["spec"]["initContainers"][0]);
}

#[test]
fn host_network_pods_and_opted_out_pods_are_skipped() {
    let mut doc = app_pod();
    doc["spec"]["hostNetwork"] = json!(true);
    let outcome = mutate_models(&pod(&doc), &enforce_all(), (1, 33));
    assert_eq!(
        outcome,
        MutateOutcome::Skip {
            reason: SkipReason::HostNetwork
        }
    );
    assert!(SkipReason::HostNetwork.message().contains("hostNetwork"));
    let mut doc = app_pod();
    doc["metadata"]["labels"] = json!({"airlock.dev/inject": "false"});
    let outcome = mutate_models(&pod(&doc), &enforce_all(), (1, 33));
    assert_eq!(
        outcome,
        MutateOutcome::Skip {
            reason: SkipReason::OptedOut
        }
    );
}

#[test]
fn a_jobs_pod_gets_a_native_sidecar_so_the_job_still_completes() {
    let job: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(data("workloads/ordinary-migration-job.yaml")).unwrap(),
    )
    .unwrap();
    let mut doc = pod_json(job["spec"]["template"]["spec"].clone());
    doc["metadata"]["labels"] = job["spec"]["template"]["metadata"]["labels"].clone();
    let out = injected(&doc, &enforce_all(), (1, 30));
    assert_eq!(out["spec"]["restartPolicy"], "Never");
    assert_eq!(names(&out["spec"]["containers"]), ["migrate"]);
    assert_eq!(out["spec"]["initContainers"][0]["restartPolicy"], "Always");
}

#[test]
fn annotation_keys_are_escaped_and_existing_annotations_kept() {
    let mut doc = app_pod();
    doc["metadata"]["annotations"] = json!({"team": "ml"});
    let ops = patch_of(mutate_models(&pod(&doc), &enforce_all(), (1, 33)));
    let paths: Vec<String> = ops
        .iter()
        .map(|op| match op {
            PatchOperation::Add(a) => a.path.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/airlock.dev~1injected".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/metadata/annotations/airlock.dev~1status".to_owned()),
        "{paths:?}"
    );
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).unwrap();
    assert_eq!(out["metadata"]["annotations"]["team"], "ml");
    // Without annotations, the whole map is added in one operation.
    let ops = patch_of(mutate_models(&pod(&app_pod()), &enforce_all(), (1, 33)));
    assert!(
        ops.iter()
            .any(|op| matches!(op, PatchOperation::Add(a) if a.path == "/metadata/annotations"))
    );
}

#[test]
fn model_servers_get_the_inbound_redirect_or_explicit_mode() {
    let doc = pod_json(
        json!({"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.1",
        "ports": [{"containerPort": 8000}]}]}),
    );
    let out = injected(&doc, &enforce_all(), (1, 33));
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["airlock-init", "airlock-sidecar"]
    );
    let init = &out["spec"]["initContainers"][0];
    assert_eq!(init["args"], json!(["init"]));
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"])
    );
    assert!(
        init["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "AIRLOCK_INBOUND_PORTS", "value": "8000"}))
    );
    // The model server is not pointed at the proxy as if it were a client.
    assert!(out["spec"]["containers"][0].get("env").is_none());

    let mut explicit = enforce_all();
    explicit.spec.sidecar =
        Some(serde_json::from_value(json!({"interception": {"inbound": "explicit"}})).unwrap());
    let out = injected(&doc, &explicit, (1, 33));
    assert_eq!(names(&out["spec"]["initContainers"]), ["airlock-sidecar"]);
    assert!(
        out["spec"]["initContainers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "AIRLOCK_INBOUND_MODE", "value": "explicit"}))
    );

    // Before 1.29 the redirect is the last init container, the sidecar a regular one.
    let out = injected(&doc, &enforce_all(), (1, 27));
    assert_eq!(names(&out["spec"]["initContainers"]), ["airlock-init"]);
    assert_eq!(names(&out["spec"]["containers"]), ["server", "airlock-sidecar"]);
}

#[test]
fn the_sidecar_image_comes_from_the_instance_or_the_default() {
    let out = injected(&app_pod(), &enforce_all(), (1, 33));
    let image = out["spec"]["initContainers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        image.starts_with("ghcr.io/airlock-dev/airlock-sidecar:"),
        "{image}"
    );
    let mut inst = enforce_all();
    inst.spec.sidecar = Some(
        serde_json::from_value(json!({"image": "example.com/airlock:dev", "imagePullPolicy": "Always"}))
            .unwrap(),
    );
    let out = injected(&app_pod(), &inst, (1, 33));
    assert_eq!(
        out["spec"]["initContainers"][0]["image"],
        "example.com/airlock:dev"
    );
    assert_eq!(out["spec"]["initContainers"][0]["imagePullPolicy"], "Always");
}

#[test]
fn strong_image_patterns_match_the_fixture_images_they_name() {
    let patterns = fingerprint::strong_image_patterns();
    assert!(patterns.len() >= 10);
    for image in [
        "vllm/vllm-openai:v0.9.1",
        "docker.io/ollama/ollama:0.5",
        "nvcr.io/nim/meta/llama3:1",
    ] {
        assert!(patterns.iter().any(|p| image.contains(p)), "{image}");
    }
    for image in ["nginx:1.27", "redis:7", "python:3.12"] {
        assert!(!patterns.iter().any(|p| image.contains(p)), "{image}");
    }
}

/// The chart's `ValidatingAdmissionPolicy` backstop carries the same image patterns as the webhook, and
/// every image it would deny is one the webhook also treats as a (strong) model server — so with the
/// webhook up, the backstop never rejects what the webhook would admit for that reason.
#[test]
fn the_backstop_policy_in_the_chart_lists_exactly_the_strong_image_patterns() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/airlock/templates/backstop.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("variables.images.filter(i, [")
        .expect("the pattern list");
    let end = start
        + text[start..]
            .find("].exists(p, i.contains(p))")
            .expect("the list's end");
    let listed: Vec<&str> = text[start..end]
        .lines()
        .skip(1)
        .map(|line| line.trim().trim_end_matches(',').trim_matches('"'))
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(
        listed,
        fingerprint::strong_image_patterns(),
        "update charts/airlock/templates/backstop.yaml"
    );
    for pattern in fingerprint::strong_image_patterns() {
        // An image reference built around the pattern, as a registry mirror might spell it.
        let prefix = if pattern.starts_with('/') {
            "mirror.example.com/team"
        } else {
            "mirror.example.com/"
        };
        let suffix = match (pattern.ends_with(':'), pattern.contains(':')) {
            (true, _) => "1.0",
            (false, true) => "",
            (false, false) => ":1.0",
        };
        let image = format!("{prefix}{pattern}{suffix}");
        assert!(image.contains(pattern));
        let pod: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{ "name": "server", "image": image }]
        }))
        .unwrap();
        let found = fingerprint::detect(&Default::default(), &pod, &[]);
        assert!(
            found.is_some_and(|m| m.strong),
            "{image} is a strong model server for the webhook"
        );
    }
}

#[test]
fn the_installation_default_image_applies_unless_the_instance_names_one() {
    let mirror = "registry.example.com/mirror/airlock-sidecar:0.1.0";
    // A transparent-inbound model server gets both the sidecar and airlock-init from the mirror.
    let mut doc = pod_json(
        json!({"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.1", "ports": [{"containerPort": 8000}]}]}),
    );
    doc["metadata"]["labels"] = json!({"app": "llm"});
    let ops = patch_of(mutate::mutate(
        &pod(&doc),
        "models",
        &enforce_all(),
        (1, 33),
        mirror,
    ));
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).unwrap();
    let images: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert!(
        !images.is_empty() && images.iter().all(|i| *i == mirror),
        "{images:?}"
    );
    // An instance's own image wins.
    let mut named = enforce_all();
    named.spec.sidecar.get_or_insert_default().image = Some("example.org/custom-sidecar:2".to_owned());
    assert_eq!(
        mutate::sidecar_image(&named, mirror),
        "example.org/custom-sidecar:2"
    );
    assert_eq!(mutate::sidecar_image(&enforce_all(), mirror), mirror);
    assert!(mutate::default_sidecar_image().ends_with(concat!(":", env!("CARGO_PKG_VERSION"))));
    // `--sidecar-image` refuses what cannot be an image reference.
    assert_eq!(mutate::parse_image(&format!(" {mirror} ")).unwrap(), mirror);
    assert!(mutate::parse_image("  ").unwrap_err().contains("empty"));
    assert!(
        mutate::parse_image("a b:1")
            .unwrap_err()
            .contains("not an image reference")
    );
}
