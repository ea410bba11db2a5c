//! Admission against a real kube-apiserver with Airlock's webhook registered (`e2e/airlock.sh start`):
//! selected pods get the sidecar once, unprotected model servers are denied with a message that says how
//! to fix it, audit mode warns, exemptions admit — and Airlock never breaks a request it should not touch.

use std::time::Duration;

use airlock_e2e::{
    Protection, apiserver_metric, client, deployment, eventually, install_crds, label_namespace, sidecars,
    unique_name, with_temp_ns,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.9.1";

#[tokio::test]
async fn a_selected_model_server_gets_the_sidecar_exactly_once() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("inject");
        label_namespace(&client, &ns, &key).await;
        let guard = Protection::enforce(&client, &key).await;

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment("llm", VLLM_IMAGE, 2))
            .await
            .expect("admitted");

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let list = eventually("2 running injected pods", Duration::from_secs(60), || async {
            let list = pods.list(&ListParams::default().labels("app=llm")).await.ok()?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == 2).then_some(list.items)
        })
        .await;
        for pod in &list {
            assert_eq!(
                sidecars(pod),
                1,
                "{} must carry exactly one airlock-sidecar",
                pod.name_any()
            );
            let spec = pod.spec.as_ref().expect("spec");
            let native = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| c.name == "airlock-sidecar");
            let native =
                native.expect("API server >= 1.29: the sidecar is a native sidecar (init container)");
            assert_eq!(native.restart_policy.as_deref(), Some("Always"));
            assert_eq!(
                pod.annotations().get("airlock.dev/injected").map(String::as_str),
                Some("true")
            );
            assert!(pod.annotations().contains_key("airlock.dev/status"));
        }
        guard.remove().await;
    })
    .await;
}

#[tokio::test]
async fn an_unprotected_model_server_is_denied_with_how_to_fix_it() {
    with_temp_ns(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let err = deployments
            .create(&PostParams::default(), &deployment("llm", VLLM_IMAGE, 2))
            .await
            .expect_err("an unprotected vLLM Deployment must be denied");
        let kube::Error::Api(status) = err else {
            panic!("expected an API error, got {err}")
        };
        println!("denied: {}", status.message);
        for part in ["server", "vllm", "AIRuntimeInstance", "exemption"] {
            assert!(
                status.message.contains(part),
                "denial must mention {part:?}: {}",
                status.message
            );
        }

        // The same for a bare pod.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "llm" },
            "spec": { "containers": [{ "name": "server", "image": VLLM_IMAGE }] }
        }))
        .expect("pod literal");
        assert!(
            pods.create(&PostParams::default(), &pod).await.is_err(),
            "unprotected pod must be denied"
        );

        // Ordinary workloads in the same namespace are untouched.
        deployments
            .create(&PostParams::default(), &deployment("web", "nginx:1.27", 2))
            .await
            .expect("ordinary app");
    })
    .await;
}

/// `deployment` with its pod template labelled `airlock.dev/inject: "false"`.
fn opted_out(mut deployment: Deployment) -> Deployment {
    let template = deployment
        .spec
        .as_mut()
        .expect("spec")
        .template
        .metadata
        .get_or_insert_default();
    template
        .labels
        .get_or_insert_default()
        .insert("airlock.dev/inject".to_owned(), "false".to_owned());
    deployment
}

#[tokio::test]
async fn a_model_server_that_opts_out_of_injection_is_denied() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("optout");
        label_namespace(&client, &ns, &key).await;
        let guard = Protection::enforce(&client, &key).await;

        // The instance selects the namespace, but the pod template opts out of the sidecar.
        let llm = opted_out(deployment("llm", VLLM_IMAGE, 1));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let err = deployments
            .create(&PostParams::default(), &llm)
            .await
            .expect_err("a model server must not opt out");
        let kube::Error::Api(status) = err else {
            panic!("expected an API error, got {err}")
        };
        for part in ["opts out", "airlock.dev/inject", "exemption"] {
            assert!(
                status.message.contains(part),
                "denial must mention {part:?}: {}",
                status.message
            );
        }

        // An ordinary app may opt out.
        let web = opted_out(deployment("web", "nginx:1.27", 1));
        deployments
            .create(&PostParams::default(), &web)
            .await
            .expect("an ordinary app may opt out");
        guard.remove().await;
    })
    .await;
}

#[tokio::test]
async fn an_exemption_in_the_instance_admits_the_workload() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("exempt");
        label_namespace(&client, &ns, &key).await;
        // The instance selects only pods labelled tier=protected, so the Deployment below is not
        // protected; its exemption (with a reason) is what admits it.
        let guard = Protection::new(
            &client,
            &key,
            "enforce",
            json!({ "matchLabels": { "tier": "protected" } }),
            json!([{ "namespace": ns, "kind": "Deployment", "name": "llm", "reason": "benchmark rig, isolated" }]),
        )
        .await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment("llm", VLLM_IMAGE, 2))
            .await
            .expect("an exempted model server is admitted");
        let err = deployments
            .create(&PostParams::default(), &deployment("llm-2", VLLM_IMAGE, 2))
            .await
            .expect_err("the exemption names one Deployment, not its neighbours");
        assert!(err.to_string().contains("vllm"), "{err}");
        guard.remove().await;
    })
    .await;
}

#[tokio::test]
async fn deleting_a_profile_still_in_use_is_denied() {
    let client = client().await;
    let key = unique_name("in-use");
    let guard = Protection::enforce(&client, &key).await;
    let profiles: Api<airlock_crds::AISecurityProfile> = Api::all(client.clone());
    let err = profiles
        .delete(&guard.profile, &DeleteParams::default())
        .await
        .expect_err("a profile an instance uses must not be deleted");
    assert!(
        err.to_string().contains(&guard.instance),
        "the denial names the instance: {err}"
    );
    guard.remove().await;
}

#[tokio::test]
async fn a_profile_and_its_instance_applied_in_one_kubectl_call_are_admitted() {
    // `kubectl apply -f dir/` sends them back to back. The webhook's watch usually keeps up; when it does
    // not, the webhook confirms the cache miss with a direct read before denying (webhook/src/cache.rs).
    // This checks the user's scenario; the race itself is too narrow to force here.
    let client = client().await;
    install_crds(&client).await;
    let profile = unique_name("together");
    let instance = unique_name("together");
    let manifest = format!(
        "apiVersion: airlock.dev/v1alpha1\nkind: AISecurityProfile\nmetadata: {{name: {profile}}}\nspec: {{}}\n---\n\
         apiVersion: airlock.dev/v1alpha1\nkind: AIRuntimeInstance\nmetadata: {{name: {instance}}}\n\
         spec:\n  selector: {{namespaceSelector: {{matchLabels: {{airlock-e2e/select: {instance}}}}}}}\n  \
         profileRef: {{name: {profile}}}\n"
    );
    let path = std::env::temp_dir().join(format!("{instance}.yaml"));
    std::fs::write(&path, manifest).expect("write manifest");
    let out = airlock_e2e::run_tool("kubectl", &["apply", "-f", path.to_str().expect("utf-8 path")]);
    assert!(out.contains("created"), "{out}");
    airlock_e2e::run_tool("kubectl", &["delete", "airuntimeinstance", &instance]);
    airlock_e2e::run_tool("kubectl", &["delete", "aisecurityprofile", &profile]);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn audit_mode_admits_with_a_warning() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("audit");
        label_namespace(&client, &ns, &key).await;
        // An audit-mode instance selects the namespace: its sidecar would only alert, so the model server
        // is not enforced; Airlock admits it and says so in a warning instead of denying it.
        let guard = Protection::new(&client, &key, "audit", json!({}), json!([])).await;
        let path = std::env::temp_dir().join(format!("{key}.yaml"));
        let manifest = serde_json::to_string(&deployment("llm", VLLM_IMAGE, 2)).expect("json");
        let manifest = manifest.replacen('{', "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",", 1);
        std::fs::write(&path, manifest).expect("write manifest");
        let out = airlock_e2e::tool("kubectl")
            .args(["apply", "-n", &ns, "-f", path.to_str().expect("utf-8 path")])
            .output()
            .expect("run kubectl");
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "audit mode must admit: {stderr}");
        println!("kubectl: {stderr}");
        assert!(
            stderr.contains("Warning:") && stderr.contains("vllm"),
            "kubectl shows the warning: {stderr}"
        );
        guard.remove().await;
    })
    .await;
}

#[tokio::test]
async fn the_api_server_never_failed_to_call_airlock() {
    // The API server's own counters are the oracle: every call to Airlock's webhooks must have reached
    // it (no `calling_webhook_error`), including for requests Airlock leaves alone.
    with_temp_ns(|client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] }
        }))
        .expect("pod literal");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("an ordinary pod is admitted");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let _ = deployments
            .create(&PostParams::default(), &deployment("llm", VLLM_IMAGE, 2))
            .await;

        let calls = apiserver_metric(
            &client,
            "apiserver_admission_webhook_admission_duration_seconds_count",
        )
        .await;
        for webhook in ["inject.airlock.dev", "workloads.airlock.dev"] {
            let called: f64 = calls
                .iter()
                .filter(|(l, _)| l.contains(&format!("name=\"{webhook}\"")))
                .map(|(_, v)| v)
                .sum();
            assert!(called > 0.0, "the API server never called {webhook}: {calls:?}");
        }
        let failures = apiserver_metric(&client, "apiserver_admission_webhook_rejection_count").await;
        let broken: Vec<_> = failures
            .iter()
            .filter(|(l, v)| l.contains("airlock.dev") && l.contains("calling_webhook_error") && *v > 0.0)
            .collect();
        assert!(
            broken.is_empty(),
            "the API server failed to call Airlock: {broken:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_job_with_the_injected_native_sidecar_still_completes() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("job");
        label_namespace(&client, &ns, &key).await;
        let guard = Protection::enforce(&client, &key).await;

        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        let job = serde_json::from_value(json!({
            "metadata": { "name": "batch-eval" },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": { "labels": { "app": "batch-eval" } },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{ "name": "eval", "image": "python:3.12-slim",
                                         "command": ["python", "-c", "print('scoring prompts')"] }]
                    }
                }
            }
        }))
        .expect("job literal");
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create job");

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = eventually("the job's pod", Duration::from_secs(30), || async {
            pods.list(&ListParams::default().labels("app=batch-eval"))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        })
        .await;
        assert_eq!(sidecars(&pod), 1, "the job's pod carries the sidecar");
        let succeeded = eventually("the job to complete", Duration::from_secs(60), || async {
            let job = jobs.get("batch-eval").await.ok()?;
            job.status?.succeeded.filter(|n| *n >= 1)
        })
        .await;
        assert_eq!(succeeded, 1);
        guard.remove().await;
    })
    .await;
}
