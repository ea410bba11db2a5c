//! The `kubectl airlock` plugin against a real cluster with Airlock installed: `status` reports an
//! instance's coverage as the operator counts it (table and JSON), `explain` names the instance and
//! profile that protect a pod and says why a pod in an unselected namespace is not protected, and
//! `logs` treats unreadable sidecar logs as warnings.
//!
//! The plugin binary is built by `cargo build -p kubectl-airlock` (e2e/run.sh does it) and run as a
//! user would, with `--kubeconfig` pointing at the cluster under test.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use airlock_crds::AIRuntimeInstance;
use airlock_e2e::{
    Protection, deployment, eventually, kubeconfig_path, label_namespace, unique_name, with_temp_ns,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.9.1";
const WAIT: Duration = Duration::from_secs(60);

/// The built plugin: `$CARGO_TARGET_DIR/debug/kubectl-airlock`, else the workspace's `target/`.
fn plugin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
    let path = target.join("debug/kubectl-airlock");
    assert!(
        path.is_file(),
        "{} does not exist: build the plugin first (cargo build -p kubectl-airlock)",
        path.display()
    );
    path
}

/// Runs `kubectl-airlock --kubeconfig <cluster under test> <args>`.
async fn airlock(args: &[&str]) -> Output {
    tokio::process::Command::new(plugin())
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the plugin and returns its standard output, failing the test when it exits non-zero.
async fn airlock_ok(args: &[&str]) -> String {
    let out = airlock(args).await;
    assert!(
        out.status.success(),
        "kubectl-airlock {} exited with {:?}: {}",
        args.join(" "),
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[tokio::test]
async fn the_plugin_s_status_and_explain_describe_a_protected_model_server() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("plugin");
        label_namespace(&client, &ns, &key).await;
        let protection = Protection::enforce(&client, &key).await;
        let instance = protection.instance.clone();
        let profile = protection.profile.clone();

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment("llm", VLLM_IMAGE, 2))
            .await
            .expect("the webhook admits a selected model server");

        let instances: Api<AIRuntimeInstance> = Api::all(client.clone());
        eventually("the instance to count 2 injected pods", WAIT, || async {
            let status = instances.get(&instance).await.ok()?.status?;
            (status.injected_pods == 2
                && status.protected_workloads == 1
                && airlock_crds::conditions::is_ready(&status.conditions))
            .then_some(())
        })
        .await;

        // The JSON document carries the operator's numbers for this instance.
        let doc: Value = serde_json::from_str(&airlock_ok(&["status", "-o", "json"]).await).unwrap();
        let row = doc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == instance.as_str())
            .unwrap_or_else(|| panic!("{instance} missing from {doc:#}"))
            .clone();
        assert_eq!(row["mode"], "enforce");
        assert_eq!(row["profile"], profile.as_str());
        assert_eq!(row["ready"]["status"], "True");
        assert_eq!(row["protectedWorkloads"], 1);
        assert_eq!(row["injectedPods"], 2);
        assert_eq!(row["unprotectedModelServers"], 0);
        assert_eq!(row["selectedNamespaces"], 1);
        assert!(doc["summary"]["instances"].as_i64().unwrap() >= 1, "{doc:#}");
        assert!(doc["summary"]["injectedPods"].as_i64().unwrap() >= 2, "{doc:#}");
        let admission = doc["admission"].as_array().unwrap();
        let state = |name: &str| {
            admission
                .iter()
                .find(|a| a["name"] == name)
                .map(|a| (a["state"].clone(), a["failurePolicy"].clone()))
                .unwrap()
        };
        assert_eq!(
            state("airlock-sidecar-injector"),
            (json!("present"), json!("Ignore"))
        );
        assert_eq!(state("airlock-validator"), (json!("present"), json!("Fail")));
        assert!(
            admission.iter().any(|a| a["kind"] == "ValidatingAdmissionPolicy"),
            "{doc:#}"
        );

        // The table lists the instance with the same counts.
        let table = airlock_ok(&["status"]).await;
        println!("kubectl airlock status:\n{table}");
        assert!(table.starts_with("Airlock: "), "{table}");
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(instance.as_str()))
            .unwrap_or_else(|| panic!("{instance} missing from\n{table}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                instance.as_str(),
                "enforce",
                profile.as_str(),
                "True",
                "1",
                "2",
                "0",
                "0"
            ],
            "{table}"
        );
        assert!(table.contains("\nAdmission:\n"), "{table}");

        // `explain` names the instance and profile of one of the pods.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = pods
            .list(&ListParams::default().labels("app=llm"))
            .await
            .unwrap()
            .items[0]
            .name_any();
        let explained = airlock_ok(&["explain", &pod, "-n", &ns]).await;
        println!("kubectl airlock explain {pod} -n {ns}:\n{explained}");
        assert!(
            explained.contains(&format!("Instance:         {instance} (mode enforce)\n")),
            "{explained}"
        );
        assert!(
            explained.contains(&format!("Profile:          {profile} (Ready: ")),
            "{explained}"
        );
        assert!(
            explained.contains(&format!(
                "injected by AIRuntimeInstance {instance} as a native sidecar"
            )),
            "{explained}"
        );
        assert!(explained.contains("Model server:     yes, vllm"), "{explained}");
        let doc: Value = serde_json::from_str(
            &airlock_ok(&["explain", &format!("pod/{pod}"), "-n", &ns, "-o", "json"]).await,
        )
        .unwrap();
        assert_eq!(doc["selection"]["instance"], instance.as_str());
        assert_eq!(doc["selection"]["profile"], profile.as_str());
        assert_eq!(doc["injection"]["injected"], true);
        assert_eq!(doc["injection"]["injectedAnnotation"], "true");
        assert_eq!(doc["injection"]["status"]["instance"], instance.as_str());
        assert_eq!(doc["modelServer"]["fingerprint"], "vllm");

        // Kwok's pods run no containers: their sidecar logs cannot be read, which is a warning only.
        let logs = airlock(&["logs", "-n", &ns]).await;
        println!(
            "kubectl airlock logs -n {ns}:\n{}{}",
            text(&logs.stdout),
            text(&logs.stderr)
        );
        assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
        let stdout = text(&logs.stdout);
        assert!(
            stdout.starts_with("TIME") || stdout == "No threat-log entries found.\n",
            "{stdout}"
        );
        for warning in text(&logs.stderr).lines() {
            assert!(
                warning.starts_with("warning: cannot read the airlock-sidecar logs of pod "),
                "{warning}"
            );
        }

        deployments.delete("llm", &DeleteParams::default()).await.unwrap();
        protection.remove().await;
    })
    .await;
}

#[tokio::test]
async fn the_plugin_explains_why_a_pod_in_an_unselected_namespace_is_not_protected() {
    with_temp_ns(|client, ns| async move {
        // The instance selects namespaces labelled with a key this namespace does not carry.
        let key = unique_name("elsewhere");
        let protection = Protection::enforce(&client, &key).await;
        let instance = protection.instance.clone();

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "nginx", "image": "nginx:1.27" }] }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();

        let explained = airlock_ok(&["explain", "web", "-n", &ns]).await;
        println!("kubectl airlock explain web -n {ns}:\n{explained}");
        assert!(explained.contains("Instance:         none selects this pod:\n"), "{explained}");
        assert!(
            explained.contains(&format!(
                "  {instance}: namespaceSelector airlock-e2e/select={key} does not match namespace {ns} (labels: "
            )),
            "{explained}"
        );
        assert!(
            explained.contains("Injection:        not injected: no AIRuntimeInstance selects it"),
            "{explained}"
        );
        let doc: Value = serde_json::from_str(&airlock_ok(&["explain", "web", "-n", &ns, "-o", "json"]).await).unwrap();
        assert!(doc["selection"].get("instance").is_none(), "{doc:#}");
        assert!(
            doc["selection"]["notSelectedBy"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["instance"] == instance.as_str()),
            "{doc:#}"
        );

        // A pod that does not exist is an error, not a panic.
        let missing = airlock(&["explain", "nope", "-n", &ns]).await;
        assert_eq!(missing.status.code(), Some(1));
        assert_eq!(text(&missing.stderr), format!("error: pod {ns}/nope not found\n"));

        protection.remove().await;
    })
    .await;
}
