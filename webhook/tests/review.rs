//! The review handler end to end over AdmissionReview JSON fixtures: bytes in, HTTP status and
//! AdmissionReview out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use airlock_webhook::review::{Reply, Route, StaticView, handle};
use serde_json::{Value, json};

/// The patch bytes of a response: base64, as the API server (Go's `[]byte`) expects, with its type.
fn patch_bytes(resp: &Value) -> Vec<u8> {
    use base64::Engine as _;
    assert_eq!(resp["patchType"], "JSONPatch", "{resp}");
    let text = resp["patch"].as_str().expect("patch is a base64 string");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("patch is valid base64")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/reviews/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn cluster() -> StaticView {
    let instance: AIRuntimeInstance = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance", "metadata": {"name": "chat"},
        "spec": {"selector": {"namespaceSelector": {"matchLabels": {"airlock.dev/protect": "true"}}},
                 "profileRef": {"name": "balanced"}}}))
    .unwrap();
    let profile: AISecurityProfile = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile", "metadata": {"name": "balanced"},
        "spec": {}}))
    .unwrap();
    StaticView::new()
        .with_instance(instance)
        .with_profile(profile)
        .with_namespace("apps", &[("airlock.dev/protect", "true")])
        .with_namespace("models", &[])
}

fn response(reply: &Reply) -> Value {
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON body");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    body["response"].clone()
}

fn run(route: Route, name: &str) -> (Reply, Value) {
    let reply = handle(route, &fixture(name), &cluster());
    let response = response(&reply);
    (reply, response)
}

#[test]
fn a_selected_pod_create_is_patched_with_the_sidecar() {
    let (reply, resp) = run(Route::Mutate, "pod-create-app.json");
    assert_eq!((reply.status, reply.verdict), (200, "patched"));
    assert_eq!(resp["uid"], "uid-pods-create");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch: Value = serde_json::from_slice(&patch_bytes(&resp)).unwrap();
    let review: Value = serde_json::from_slice(&fixture("pod-create-app.json")).unwrap();
    let mut pod = review["request"]["object"].clone();
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "airlock-sidecar");
}

#[test]
fn dry_run_requests_are_handled_like_any_other() {
    let (reply, resp) = run(Route::Mutate, "pod-create-dryrun.json");
    assert_eq!(reply.verdict, "patched");
    assert!(!patch_bytes(&resp).is_empty());
}

#[test]
fn pods_outside_any_instance_are_allowed_without_a_patch() {
    let (reply, resp) = run(Route::Mutate, "pod-create-vllm.json");
    assert_eq!((reply.status, reply.verdict), (200, "allowed"));
    assert!(resp.get("patch").is_none());
}

#[test]
fn updates_ephemeral_containers_and_non_pods_are_never_injected() {
    for name in [
        "pod-update.json",
        "pod-ephemeral-containers.json",
        "deployment-create-nginx.json",
        "configmap-create.json",
        "pod-delete-no-object.json",
    ] {
        let (reply, resp) = run(Route::Mutate, name);
        assert_eq!((reply.status, reply.verdict), (200, "allowed"), "{name}");
        assert_eq!(resp["allowed"], true, "{name}");
        assert!(resp.get("patch").is_none(), "{name}");
    }
}

#[test]
fn an_unprotected_vllm_deployment_is_denied_with_the_reason() {
    let (reply, resp) = run(Route::Validate, "deployment-create-vllm.json");
    assert_eq!((reply.status, reply.verdict), (200, "denied"));
    assert_eq!(resp["allowed"], false);
    let message = resp["status"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "Deployment models/vllm-deployment runs a model server without Airlock protection: container \
         \"server\" matched fingerprint vllm (image vllm/vllm-openai:v0.9.1). Fix it by selecting this \
         workload with an AIRuntimeInstance (spec.selector) or by adding an exemption with a reason to \
         one (spec.exemptions)."
    );
}

#[test]
fn an_unprotected_vllm_pod_is_denied_and_ordinary_workloads_are_allowed() {
    let (_, resp) = run(Route::Validate, "pod-create-vllm.json");
    assert_eq!(resp["allowed"], false);
    for name in [
        "deployment-create-nginx.json",
        "pod-create-app.json",
        "configmap-create.json",
        "pod-delete-no-object.json",
        "pod-update.json",
    ] {
        let (reply, resp) = run(Route::Validate, name);
        assert_eq!(
            (reply.status, reply.verdict, resp["allowed"].clone()),
            (200, "allowed", json!(true)),
            "{name}"
        );
    }
}

#[test]
fn deleting_a_profile_in_use_is_denied_naming_the_instances() {
    let (reply, resp) = run(Route::Validate, "profile-delete-in-use.json");
    assert_eq!(reply.verdict, "denied");
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"balanced\"") && message.contains("AIRuntimeInstance \"chat\""),
        "{message}"
    );
    let unused = handle(
        Route::Validate,
        &fixture("profile-delete-in-use.json"),
        &StaticView::new(),
    );
    assert_eq!(unused.verdict, "allowed");
}

#[test]
fn an_instance_with_a_missing_profile_is_denied() {
    let (reply, resp) = run(Route::Validate, "instance-missing-profile.json");
    assert_eq!(reply.verdict, "denied");
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"does-not-exist\"") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn a_group_whose_match_does_not_parse_is_denied_with_the_parser_message() {
    let (reply, resp) = run(Route::Validate, "group-bad-match.json");
    assert_eq!(reply.verdict, "denied");
    let message = resp["status"]["message"].as_str().unwrap();
    let rendered = airlock_core::expr::parse("app = chat and (tier in (web")
        .unwrap_err()
        .render("app = chat and (tier in (web");
    assert!(
        message.contains("spec.match does not parse") && message.contains(&rendered),
        "{message}"
    );
}

#[test]
fn bodies_that_are_not_admission_reviews_get_a_400() {
    for name in ["malformed.json", "wrong-api-version.json", "wrong-kind.json"] {
        for route in [Route::Mutate, Route::Validate] {
            let reply = handle(route, &fixture(name), &cluster());
            assert_eq!((reply.status, reply.verdict), (400, "invalid"), "{name}");
            let body: Value = serde_json::from_slice(&reply.body).expect("JSON error body");
            assert_eq!(body["response"]["allowed"], false, "{name}");
        }
    }
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
    ] {
        assert_eq!(handle(Route::Validate, body, &cluster()).status, 400);
    }
}

#[test]
fn the_uid_of_the_request_is_echoed() {
    let (_, resp) = run(Route::Validate, "deployment-create-nginx.json");
    assert_eq!(resp["uid"], "uid-deployments-create");
}

#[test]
fn an_object_that_is_not_an_object_fails_open_on_mutate_and_closed_on_validate() {
    let mut review: Value = serde_json::from_slice(&fixture("pod-create-vllm.json")).unwrap();
    for object in [json!(5), json!("pod"), json!([1, 2]), json!({ "spec": 7 })] {
        review["request"]["object"] = object.clone();
        let body = serde_json::to_vec(&review).unwrap();

        let mutate = handle(Route::Mutate, &body, &cluster());
        assert_eq!((mutate.status, mutate.verdict), (200, "allowed"), "{object}");
        assert!(response(&mutate).get("patch").is_none(), "{object}");

        let validate = handle(Route::Validate, &body, &cluster());
        assert_eq!((validate.status, validate.verdict), (200, "denied"), "{object}");
        let message = response(&validate)["status"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with("cannot read the Pod"), "{object}: {message}");
    }
    // A review without the fields the API server always sends is not one.
    for field in ["uid", "kind", "resource", "operation", "userInfo"] {
        let mut review: Value = serde_json::from_slice(&fixture("pod-create-vllm.json")).unwrap();
        review["request"].as_object_mut().unwrap().remove(field);
        let body = serde_json::to_vec(&review).unwrap();
        assert_eq!(
            handle(Route::Validate, &body, &cluster()).status,
            400,
            "without {field}"
        );
    }
}

/// An UPDATE review of the unprotected vLLM Deployment, from `old` to the object `change` makes of it.
fn deployment_update(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&fixture("deployment-create-vllm.json")).unwrap();
    let old = review["request"]["object"].clone();
    let mut new = old.clone();
    change(&mut new);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = old;
    review["request"]["object"] = new;
    serde_json::to_vec(&review).unwrap()
}

#[test]
fn an_update_that_leaves_the_pods_as_they_were_is_allowed_any_other_is_checked() {
    let unchanged: [fn(&mut Value); 3] = [
        |d| d["spec"]["replicas"] = json!(5),
        |d| d["metadata"]["labels"] = json!({"team": "ml"}),
        |d| d["metadata"]["finalizers"] = json!(["example.com/hold"]),
    ];
    for (i, change) in unchanged.into_iter().enumerate() {
        let reply = handle(Route::Validate, &deployment_update(change), &cluster());
        assert_eq!(reply.verdict, "allowed", "unchanged case {i}");
    }
    // Changes to what runs roll out new pods: checked, also those admission's lean view does not read.
    let changed: [fn(&mut Value); 4] = [
        |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("vllm/vllm-openai:v0.10.0"),
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "4"}});
        },
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"] =
                json!([{"name": "HF_TOKEN", "value": "a"}]);
        },
        |d| d["spec"]["template"]["spec"]["nodeSelector"] = json!({"gpu": "a100"}),
    ];
    for (i, change) in changed.into_iter().enumerate() {
        let reply = handle(Route::Validate, &deployment_update(change), &cluster());
        assert_eq!(reply.verdict, "denied", "changed case {i}");
    }
}

#[test]
fn a_body_that_is_not_utf8_is_not_a_review_even_where_no_decision_reads() {
    // An invalid byte inside an environment variable's value: a field admission never reads.
    let text = String::from_utf8(fixture("deployment-create-vllm.json")).unwrap();
    let at = text.find("meta-llama").expect("a string in the object");
    let mut body = text.into_bytes();
    body.insert(at, 0x9c);
    for route in [Route::Mutate, Route::Validate] {
        let reply = handle(route, &body, &cluster());
        assert_eq!((reply.status, reply.verdict), (400, "invalid"), "{route:?}");
        let message = response(&reply)["status"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("not UTF-8"), "{message}");
    }
}

#[test]
fn the_one_pass_read_answers_as_the_two_pass_read_on_every_fixture() {
    let dir = format!("{}/tests/data/reviews", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let body = std::fs::read(entry.unwrap().path()).unwrap();
        for route in [Route::Mutate, Route::Validate] {
            assert_eq!(
                handle(route, &body, &cluster()),
                airlock_webhook::review::handle_two_pass(route, &body, &cluster())
            );
        }
    }
}
