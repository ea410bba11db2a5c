//! Helpers for Airlock's end-to-end tests against a real local control plane.
//!
//! `make test` (through `e2e/run.sh`) builds and starts the control plane of `e2e/controlplane/`, then runs
//! this crate's tests with two variables set:
//! - `AIRLOCK_E2E_KUBECONFIG`: the admin kubeconfig of that cluster;
//! - `AIRLOCK_E2E_BIN`: the directory holding the matching `kubectl` and `helm`.
//!
//! Without them the tests fail at once with a message that says how to run them: an end-to-end test that
//! passes without a cluster would prove nothing.

use std::{future::Future, path::PathBuf, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};

/// The field manager Airlock's tests write with.
pub const FIELD_MANAGER: &str = "airlock-e2e";

const KUBECONFIG_ENV: &str = "AIRLOCK_E2E_KUBECONFIG";
const BIN_ENV: &str = "AIRLOCK_E2E_BIN";

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{name} is not set: end-to-end tests need the local control plane. Run them with `make test` \
             (or `make e2e`), which builds and starts it."
        ),
    }
}

/// Path of the admin kubeconfig of the cluster under test.
pub fn kubeconfig_path() -> PathBuf {
    env_path(KUBECONFIG_ENV)
}

/// A client for the cluster under test, as its administrator.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client from kubeconfig")
}

/// A command for one of the control plane's tools (`kubectl`, `helm`), pointed at the cluster under test.
pub fn tool(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env_path(BIN_ENV).join(name));
    cmd.env("KUBECONFIG", kubeconfig_path());
    cmd
}

/// Runs a tool and returns its output, failing the test with its stderr when it exits non-zero.
pub fn run_tool(name: &str, args: &[&str]) -> String {
    let out = tool(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies Airlock's CRDs (server-side apply, as the chart's install would) and waits until each is
/// established. Safe to call from every test: applying the same CRDs again changes nothing.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in airlock_crds::crds() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} was not established within 30s"))
            .expect("watching the CRD");
    }
}

/// Runs `test` with a fresh namespace and deletes the namespace afterwards, whether the test passed or not.
/// The test's panic, if any, is re-raised after the cleanup.
pub async fn with_temp_ns<F, Fut>(test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "generateName": "airlock-e2e-",
            "labels": { "airlock.dev/e2e": "true" }
        }
    }))
    .expect("namespace literal");
    let ns = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating a temp namespace");
    let name = ns.name_any();

    let outcome = tokio::spawn(test(client.clone(), name.clone())).await;

    if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
        tracing::warn!(namespace = %name, error = %e, "could not delete the temp namespace");
    }
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// A name that no other test run uses, for cluster-scoped objects (which temp namespaces do not isolate).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xffff)
}

/// Polls `check` every 200 ms until it returns `Some`, or fails the test after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Deployment of `replicas` pods running `image`, one container `server` on port 8000.
pub fn deployment(name: &str, image: &str, replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "server", "image": image, "ports": [{ "containerPort": 8000 }] }] }
            }
        }
    }))
    .expect("deployment literal")
}

/// Deletes an `AIRuntimeInstance`, waits until it is gone (the operator's finalizer removes its policy
/// ConfigMaps first, and until then its profile counts as in use), then deletes its `AISecurityProfile`.
pub async fn delete_instance_and_profile(client: &Client, instance: &str, profile: &str) {
    let instances: Api<airlock_crds::AIRuntimeInstance> = Api::all(client.clone());
    let _ = instances.delete(instance, &DeleteParams::default()).await;
    eventually("the instance to be deleted", Duration::from_secs(30), || {
        let instances = instances.clone();
        async move {
            instances
                .get_opt(instance)
                .await
                .ok()
                .and_then(|i| i.is_none().then_some(()))
        }
    })
    .await;
    let profiles: Api<airlock_crds::AISecurityProfile> = Api::all(client.clone());
    let _ = profiles.delete(profile, &DeleteParams::default()).await;
}

/// Labels namespace `ns` `airlock-e2e/select=<key>`, so that only the test's own instance selects it.
pub async fn label_namespace(client: &Client, ns: &str, key: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = serde_json::json!({ "metadata": { "labels": { "airlock-e2e/select": key } } });
    namespaces
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label namespace");
}

/// A profile that blocks prompt injection and an instance selecting namespaces labelled
/// `airlock-e2e/select=<key>`; [`Protection::remove`] deletes both.
pub struct Protection {
    client: Client,
    /// The profile's name.
    pub profile: String,
    /// The instance's name.
    pub instance: String,
}

impl Protection {
    /// An instance in `mode` (`enforce` or `audit`) with the given pod selector and exemptions.
    pub async fn new(
        client: &Client,
        key: &str,
        mode: &str,
        pod_selector: serde_json::Value,
        exemptions: serde_json::Value,
    ) -> Self {
        install_crds(client).await;
        let profile = unique_name("profile");
        let instance = unique_name("instance");
        let profiles: Api<airlock_crds::AISecurityProfile> = Api::all(client.clone());
        let p: airlock_crds::AISecurityProfile = serde_json::from_value(serde_json::json!({
            "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile",
            "metadata": { "name": profile },
            "spec": { "appProtection": { "promptInjection": { "action": "block" } } }
        }))
        .expect("profile literal");
        profiles
            .create(&PostParams::default(), &p)
            .await
            .expect("create profile");
        let instances: Api<airlock_crds::AIRuntimeInstance> = Api::all(client.clone());
        let i: airlock_crds::AIRuntimeInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance",
            "metadata": { "name": instance },
            "spec": {
                "selector": {
                    "namespaceSelector": { "matchLabels": { "airlock-e2e/select": key } },
                    "podSelector": pod_selector
                },
                "profileRef": { "name": profile },
                "mode": mode,
                "exemptions": exemptions
            }
        }))
        .expect("instance literal");
        instances
            .create(&PostParams::default(), &i)
            .await
            .expect("create instance");
        // The webhook learns about the instance through its watch.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Protection {
            client: client.clone(),
            profile,
            instance,
        }
    }

    /// An enforcing instance selecting every pod of the labelled namespaces.
    pub async fn enforce(client: &Client, key: &str) -> Self {
        Self::new(
            client,
            key,
            "enforce",
            serde_json::json!({}),
            serde_json::json!([]),
        )
        .await
    }

    /// Deletes the instance (waiting for its finalizer), then the profile.
    pub async fn remove(self) {
        delete_instance_and_profile(&self.client, &self.instance, &self.profile).await;
    }
}

/// How many `airlock-sidecar` containers `pod` has, init and regular together.
pub fn sidecars(pod: &k8s_openapi::api::core::v1::Pod) -> usize {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let in_init = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.name == "airlock-sidecar")
        .count();
    let in_main = spec
        .containers
        .iter()
        .filter(|c| c.name == "airlock-sidecar")
        .count();
    in_init + in_main
}

/// Samples of one metric family from the API server's `/metrics`, as (labels, value).
pub async fn apiserver_metric(client: &Client, family: &str) -> Vec<(String, f64)> {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(request).await.expect("GET /metrics");
    text.lines()
        .filter_map(|l| l.strip_prefix(family))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Runs `e2e/airlock.sh <command>` on the environment under test (`AIRLOCK_ENV_DIR`, set by e2e/run.sh),
/// failing the test when it fails.
pub fn airlock_sh(command: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("airlock.sh");
    let env_dir = std::env::var("AIRLOCK_ENV_DIR").expect("AIRLOCK_ENV_DIR is set by e2e/run.sh");
    let status = std::process::Command::new(&script)
        .args([command, &env_dir])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "e2e/airlock.sh {command} failed");
}

/// The YAML fixtures shared by the CRD crate's unit tests and these end-to-end tests.
pub mod fixtures {
    use std::path::{Path, PathBuf};

    /// A fixture file: its path, the documents it holds, and (for invalid fixtures) the text the API
    /// server's error must contain, taken from its `# expect: ...` first line.
    #[derive(Debug)]
    pub struct Fixture {
        pub path: PathBuf,
        pub documents: Vec<serde_json::Value>,
        pub expect: Option<String>,
    }

    fn dir(kind: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crds/tests/data")
            .join(kind)
    }

    /// Every fixture in `crds/tests/data/<kind>/`, sorted by file name.
    pub fn load(kind: &str) -> Vec<Fixture> {
        let dir = dir(kind);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).expect("fixture is readable");
                let expect = text
                    .lines()
                    .find_map(|l| l.strip_prefix("# expect:"))
                    .map(|s| s.trim().to_owned());
                let documents = serde_yaml_ng::Deserializer::from_str(&text)
                    .map(|doc| {
                        serde::Deserialize::deserialize(doc)
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    })
                    .filter(|v: &serde_json::Value| !v.is_null())
                    .collect();
                Fixture {
                    path,
                    documents,
                    expect,
                }
            })
            .collect()
    }
}
