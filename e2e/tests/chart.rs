//! The Helm chart: `helm lint`, values rejected by the schema, assertions on the rendered manifests,
//! server-side validation of the rendered manifests by the real API server, and the life of the release
//! the environment runs on — install twice, upgrade, roll back, uninstall (no webhook left behind to
//! block the cluster), reinstall over the kept CRDs.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use airlock_e2e::{airlock_sh, client, deployment, eventually, tool, unique_name, with_temp_ns};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The tests that change the release (or need it in place) take turns.
static RELEASE: Mutex<()> = Mutex::const_new(());

const RELEASE_NAME: &str = "airlock";
const NAMESPACE: &str = "airlock-system";
const VLLM: &str = "vllm/vllm-openai:v0.9.1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> String {
    root().join("charts/airlock").display().to_string()
}

fn run(name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut cmd = tool(name);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(name, args, stdin);
    assert!(
        out.status.success(),
        "{name} {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` with `--set` values; the rendered text.
fn render_text(sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec!["template", RELEASE_NAME, chart.as_str(), "--namespace", NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    ok("helm", &args, None)
}

/// `helm template` with `--set` values, as JSON documents.
fn render(sets: &[&str]) -> Vec<Value> {
    let text = render_text(sets);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn kinds(docs: &[Value], kind: &str) -> usize {
    docs.iter().filter(|d| d["kind"] == kind).count()
}

fn env_of(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
fn helm_lint_passes_with_the_defaults_and_the_development_values() {
    let chart = chart();
    ok("helm", &["lint", "--strict", &chart], None);
    let local = root().join("e2e/values-local.yaml").display().to_string();
    ok("helm", &["lint", "--strict", &chart, "-f", &local], None);
}

#[test]
fn bad_values_fail_at_install_time_with_the_offending_path() {
    for (set, expect) in [
        (
            "webhook.failurePolicy.validate=Never",
            "/webhook/failurePolicy/validate",
        ),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("certificates.mode=vault", "/certificates/mode"),
        // Shorter than the kubelet takes to refresh a mounted Secret: pods would still serve the old leaf.
        (
            "certificates.caOverlapSeconds=30",
            "/certificates/caOverlapSeconds",
        ),
        ("operator.replicas=0", "/operator/replicas"),
        ("webhook.replica=3", "additional properties 'replica' not allowed"),
        ("operator.image.digest=latest", "/operator/image/digest"),
        (
            "development.webhookURL=http://127.0.0.1:1",
            "/development/webhookURL",
        ),
    ] {
        let chart = chart();
        let out = run("helm", &["template", RELEASE_NAME, &chart, "--set", set], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            stderr.contains("values don't meet the specifications of the schema") && stderr.contains(expect),
            "{set}: {stderr}"
        );
    }
}

#[test]
fn the_backstop_needs_kubernetes_1_30_and_says_so() {
    let chart = chart();
    let args = [
        "template",
        RELEASE_NAME,
        &chart,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        "1.29.5",
    ];
    let out = run("helm", &args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "1.29 with the backstop was accepted");
    assert!(
        stderr.contains("backstop.enabled needs Kubernetes 1.30 or later") && stderr.contains("v1.29.5"),
        "{stderr}"
    );
    let mut without = args.to_vec();
    without.extend(["--set", "backstop.enabled=false"]);
    let text = ok("helm", &without, None);
    assert!(text.contains("kind: Deployment") && !text.contains("kind: ValidatingAdmissionPolicy"));
    let text = ok(
        "helm",
        &["template", RELEASE_NAME, &chart, "--kube-version", "1.30.0"],
        None,
    );
    assert!(text.contains("kind: ValidatingAdmissionPolicy"));
}

#[test]
fn rendered_workloads_are_restricted_labelled_and_highly_available() {
    let docs = render(&["crds.enabled=false"]);
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "helm.sh/chart",
        ] {
            assert!(
                labels[key].is_string(),
                "{} {} lacks {key}",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
    }
    for name in ["airlock-operator", "airlock-webhook"] {
        let deployment = find(&docs, "Deployment", name).unwrap();
        assert_eq!(deployment["spec"]["replicas"], 2, "{name}");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], name);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(container["resources"]["requests"].is_object(), "{name}");
            assert!(container["resources"]["limits"]["memory"].is_string(), "{name}");
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready", "{name}");
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/live", "{name}");
            assert_eq!(container["image"], format!("ghcr.io/airlock-dev/{name}:0.1.0"));
        }
        let pdb = find(&docs, "PodDisruptionBudget", name).unwrap();
        assert_eq!(pdb["spec"]["minAvailable"], 1);
    }
    let webhook = find(&docs, "Deployment", "airlock-webhook").unwrap();
    let spread = &webhook["spec"]["template"]["spec"]["topologySpreadConstraints"];
    assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        webhook["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "airlock-webhook-tls"
    );
    let service = find(&docs, "Service", "airlock-webhook").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 443);

    // The operator writes the webhook configurations (and owns them through its ClusterRole); the chart
    // passes it their settings.
    assert_eq!(kinds(&docs, "MutatingWebhookConfiguration"), 0);
    assert_eq!(kinds(&docs, "ValidatingWebhookConfiguration"), 0);
    let operator = find(&docs, "Deployment", "airlock-operator").unwrap();
    assert_eq!(
        env_of(operator, "AIRLOCK_MUTATE_FAILURE_POLICY").as_deref(),
        Some("Ignore")
    );
    assert_eq!(
        env_of(operator, "AIRLOCK_VALIDATE_FAILURE_POLICY").as_deref(),
        Some("Fail")
    );
    assert_eq!(
        env_of(operator, "AIRLOCK_OWNER_CLUSTER_ROLE").as_deref(),
        Some("airlock-operator")
    );
    // One glibc arena, as `make bench` measures the operator's memory per cached pod.
    assert_eq!(env_of(operator, "MALLOC_ARENA_MAX").as_deref(), Some("1"));
    let role = find(&docs, "ClusterRole", "airlock-operator").unwrap();
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["clusterroles"])
                && r["resourceNames"] == json!(["airlock-operator"])
                && r["verbs"] == json!(["get"])),
        "the operator may read only its own ClusterRole"
    );
    // No development leftovers in a production render.
    let binding = find(&docs, "ClusterRoleBinding", "airlock-operator").unwrap();
    assert_eq!(binding["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(env_of(operator, "AIRLOCK_WEBHOOK_URL"), None);

    // The backstop policy, without a parameter kind (the API server freezes a ConfigMap parameter once no
    // binding names it, as during a reinstall); the operator writes its binding and may only read the
    // policy.
    let policy = find(&docs, "ValidatingAdmissionPolicy", "airlock-backstop").unwrap();
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert!(policy["spec"].get("paramKind").is_none(), "{policy}");
    assert_eq!(kinds(&docs, "ValidatingAdmissionPolicyBinding"), 0);
    assert_eq!(kinds(&docs, "ConfigMap"), 0);
    assert_eq!(
        env_of(operator, "AIRLOCK_BACKSTOP_POLICY").as_deref(),
        Some("airlock-backstop")
    );
    let rules = role["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["validatingadmissionpolicies"])
                && r["resourceNames"] == json!(["airlock-backstop"])
                && r["verbs"] == json!(["get", "list", "watch"])),
        "the operator may only read the backstop policy"
    );
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["validatingadmissionpolicybindings"])
                && r.get("resourceNames").is_none()
                && r["verbs"] == json!(["get", "list", "watch", "create"])),
        "the operator creates the backstop's binding"
    );
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["validatingadmissionpolicybindings"])
                && r["resourceNames"] == json!(["airlock-backstop"])
                && r["verbs"] == json!(["update"])),
        "the operator may replace only the backstop's binding"
    );
    assert_eq!(
        kinds(&docs, "NetworkPolicy") + kinds(&docs, "ServiceMonitor") + kinds(&docs, "Certificate"),
        0
    );
}

#[test]
fn values_change_what_is_rendered() {
    let docs = render(&[
        "crds.enabled=false",
        "webhook.failurePolicy.mutate=Fail",
        "webhook.timeoutSeconds=9",
        "certificates.caOverlapSeconds=900",
        "operator.replicas=3",
        "webhook.replicas=1",
        "backstop.enabled=false",
        "networkPolicy.enabled=true",
        "serviceMonitor.enabled=true",
        "certificates.mode=cert-manager",
        "priorityClassName=system-cluster-critical",
        "image.registry=registry.example.com",
        "webhook.image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    let operator = find(&docs, "Deployment", "airlock-operator").unwrap();
    assert_eq!(operator["spec"]["replicas"], 3);
    assert_eq!(
        env_of(operator, "AIRLOCK_MUTATE_FAILURE_POLICY").as_deref(),
        Some("Fail")
    );
    assert_eq!(
        env_of(operator, "AIRLOCK_WEBHOOK_TIMEOUT_SECONDS").as_deref(),
        Some("9")
    );
    assert_eq!(
        env_of(operator, "AIRLOCK_CA_OVERLAP_SECONDS").as_deref(),
        Some("900")
    );
    assert_eq!(
        env_of(operator, "AIRLOCK_CERTIFICATES").as_deref(),
        Some("external")
    );
    assert_eq!(env_of(operator, "AIRLOCK_BACKSTOP_POLICY").as_deref(), Some(""));
    let role = find(&docs, "ClusterRole", "airlock-operator").unwrap();
    assert!(
        !role["rules"].to_string().contains("validatingadmissionpolic"),
        "no access to admission policies without the backstop"
    );
    assert_eq!(
        operator["spec"]["template"]["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    assert_eq!(
        operator["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/airlock-dev/airlock-operator:0.1.0"
    );
    let webhook = find(&docs, "Deployment", "airlock-webhook").unwrap();
    assert_eq!(
        webhook["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/airlock-dev/airlock-webhook@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    );
    // The injected sidecar follows the global registry too; webhook and operator agree on it.
    for deployment in [operator, webhook] {
        assert_eq!(
            env_of(deployment, "AIRLOCK_SIDECAR_IMAGE").as_deref(),
            Some("registry.example.com/airlock-dev/airlock-sidecar:0.1.0")
        );
    }
    assert!(
        find(&docs, "PodDisruptionBudget", "airlock-webhook").is_none(),
        "no PDB that would block every drain of a single replica"
    );
    assert_eq!(kinds(&docs, "ValidatingAdmissionPolicy"), 0);
    assert_eq!(kinds(&docs, "NetworkPolicy"), 2);
    assert_eq!(kinds(&docs, "ServiceMonitor"), 2);
    let certificate = find(&docs, "Certificate", "airlock-webhook").unwrap();
    assert_eq!(certificate["spec"]["secretName"], "airlock-webhook-tls");
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        "airlock-webhook.airlock-system.svc"
    );
    assert_eq!(certificate["spec"]["issuerRef"]["name"], "airlock-ca");
}

/// What `helm install` would create, validated by the real API server (schemas, CEL of the policy,
/// RBAC rules). cert-manager's and prometheus-operator's kinds are left out: their CRDs are not installed
/// here.
#[tokio::test]
async fn rendered_manifests_pass_server_side_validation() {
    let _turn = RELEASE.lock().await;
    for sets in [
        &["development.users.operator=someone"][..],
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.apiServerCIDR=10.0.0.1/32",
            "webhook.replicas=3",
        ][..],
    ] {
        let rendered = render_text(sets);
        let out = ok(
            "kubectl",
            &[
                "apply",
                "--dry-run=server",
                "--server-side",
                "--force-conflicts",
                "--field-manager=airlock-e2e-dry-run",
                "-f",
                "-",
            ],
            Some(&rendered),
        );
        for object in [
            "deployment.apps/airlock-operator",
            "deployment.apps/airlock-webhook",
            "validatingadmissionpolicy.admissionregistration.k8s.io/airlock-backstop",
            "customresourcedefinition.apiextensions.k8s.io/airuntimeinstances.airlock.dev",
        ] {
            assert!(out.contains(object), "{object} missing from:\n{out}");
        }
    }
    // The policy type-checks: the API server reports no warnings for its expressions.
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client().await);
    let policy = policies.get("airlock-backstop").await.unwrap();
    let checking = policy.status.and_then(|s| s.type_checking).unwrap_or_default();
    assert!(
        checking.expression_warnings.unwrap_or_default().is_empty(),
        "CEL type-checking warnings on airlock-backstop"
    );
}

/// Whether the mutating and validating webhook configurations, the backstop policy and its binding
/// exist.
async fn webhooks_present(client: &kube::Client) -> (bool, bool, bool, bool) {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    (
        mutating
            .get_opt("airlock-sidecar-injector")
            .await
            .unwrap()
            .is_some(),
        validating.get_opt("airlock-validator").await.unwrap().is_some(),
        policies.get_opt("airlock-backstop").await.unwrap().is_some(),
        bindings.get_opt("airlock-backstop").await.unwrap().is_some(),
    )
}

async fn available(client: &kube::Client, name: &str) -> i32 {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .get(name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn vllm_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "server", "image": VLLM }] }
    }))
    .unwrap()
}

#[tokio::test]
async fn the_release_installs_upgrades_rolls_back_uninstalls_cleanly_and_reinstalls() {
    let _turn = RELEASE.lock().await;
    let client = client().await;
    let chart = chart();

    // Installed by the environment (e2e/airlock.sh): both Deployments available, two replicas each.
    let status = ok(
        "helm",
        &["status", RELEASE_NAME, "-n", NAMESPACE, "-o", "json"],
        None,
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    let revision = status["version"].as_i64().unwrap();
    assert_eq!(available(&client, "airlock-operator").await, 2);
    assert_eq!(available(&client, "airlock-webhook").await, 2);
    assert_eq!(webhooks_present(&client).await, (true, true, true, true));

    // Installing twice is refused, and says why.
    let out = run("helm", &["install", RELEASE_NAME, &chart, "-n", NAMESPACE], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reuse a name that is still in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Upgrade with changed values: three operator replicas, injection failing closed, no backstop.
    ok(
        "helm",
        &[
            "upgrade",
            RELEASE_NAME,
            &chart,
            "-n",
            NAMESPACE,
            "--reuse-values",
            "--wait",
            "--timeout",
            "120s",
            "--set",
            "operator.replicas=3",
            "--set",
            "webhook.failurePolicy.mutate=Fail",
            "--set",
            "backstop.enabled=false",
        ],
        None,
    );
    eventually("three operator replicas", Duration::from_secs(60), || {
        let client = client.clone();
        async move { (available(&client, "airlock-operator").await == 3).then_some(()) }
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let operator = serde_json::to_value(deployments.get("airlock-operator").await.unwrap()).unwrap();
    assert_eq!(
        env_of(&operator, "AIRLOCK_MUTATE_FAILURE_POLICY").as_deref(),
        Some("Fail")
    );
    eventually(
        "the backstop removed by the upgrade",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            // The binding goes with its owner, the policy.
            async move {
                let (_, _, policy, binding) = webhooks_present(&client).await;
                (!policy && !binding).then_some(())
            }
        },
    )
    .await;

    // Roll back to what the environment installed.
    ok(
        "helm",
        &[
            "rollback",
            RELEASE_NAME,
            &revision.to_string(),
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    );
    eventually("the rollback", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let (_, _, policy, binding) = webhooks_present(&client).await;
            (available(&client, "airlock-operator").await == 2 && policy && binding).then_some(())
        }
    })
    .await;

    // A profile, to see that the CRDs and Airlock's objects outlive the release.
    let profiles: Api<airlock_crds::AISecurityProfile> = Api::all(client.clone());
    let profile_name = unique_name("kept");
    let profile: airlock_crds::AISecurityProfile = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile",
        "metadata": { "name": profile_name }, "spec": {}
    }))
    .unwrap();
    profiles.create(&PostParams::default(), &profile).await.unwrap();

    // Uninstall while the operator processes keep running: the webhook configurations go with the
    // operator's ClusterRole (garbage collector) and are not recreated, the backstop goes with the
    // release, and model servers are admitted again — nothing is left to block the cluster.
    ok(
        "helm",
        &[
            "uninstall",
            RELEASE_NAME,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    );
    eventually(
        "no Airlock admission left after uninstall",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move { (webhooks_present(&client).await == (false, false, false, false)).then_some(()) }
        },
    )
    .await;
    // Stays that way: the running operator cannot (and does not try to) bring them back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(webhooks_present(&client).await, (false, false, false, false));
    with_temp_ns(|client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.create(&PostParams::default(), &vllm_pod("llm"))
            .await
            .expect("without Airlock, a model server is admitted");
    })
    .await;
    assert!(
        profiles.get_opt(&profile_name).await.unwrap().is_some(),
        "CRDs and objects are kept"
    );

    // Reinstall over the kept CRDs; the running operator regains its permissions and re-registers the
    // webhooks, and the webhook rejects unprotected model servers again.
    airlock_sh("helm-install");
    eventually("the webhooks re-registered", Duration::from_secs(60), || {
        let client = client.clone();
        async move { (webhooks_present(&client).await == (true, true, true, true)).then_some(()) }
    })
    .await;
    with_temp_ns(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let err = eventually("the webhook rejecting again", Duration::from_secs(60), || {
            let deployments = deployments.clone();
            async move {
                match deployments
                    .create(&PostParams::default(), &deployment("llm", VLLM, 0))
                    .await
                {
                    Err(err) => Some(err),
                    Ok(_) => {
                        let _ = deployments.delete("llm", &DeleteParams::default()).await;
                        None
                    }
                }
            }
        })
        .await;
        assert!(err.to_string().contains("workloads.airlock.dev"), "{err}");
        // The API server loads a re-created policy and binding asynchronously; until then the webhook
        // refuses the pod instead, so wait for the backstop's own refusal.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let err = eventually("the backstop refusing again", Duration::from_secs(60), || {
            let pods = pods.clone();
            async move {
                match pods.create(&PostParams::default(), &vllm_pod("llm")).await {
                    Err(err) if err.to_string().contains("airlock-backstop") => Some(err),
                    Err(_) => None,
                    Ok(_) => {
                        let _ = pods.delete("llm", &DeleteParams::default()).await;
                        None
                    }
                }
            }
        })
        .await;
        assert!(err.to_string().contains("airlock-backstop"), "{err}");
    })
    .await;
    // The operator's controllers work again (its watches recovered): a new profile becomes Ready.
    let again = unique_name("after-reinstall");
    let profile: airlock_crds::AISecurityProfile = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile",
        "metadata": { "name": again }, "spec": {}
    }))
    .unwrap();
    profiles.create(&PostParams::default(), &profile).await.unwrap();
    eventually(
        "the operator reconciling after the reinstall",
        Duration::from_secs(90),
        || {
            let profiles = profiles.clone();
            let again = again.clone();
            async move {
                let p = profiles.get(&again).await.ok()?;
                let ready = p
                    .status?
                    .conditions
                    .into_iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            }
        },
    )
    .await;
    // The backstop still learns where to stand aside: an exemption made after the reinstall admits the
    // exempt model server. (With the exemptions in a ConfigMap parameter, the API server would still
    // evaluate the copy it froze when the uninstall removed the last binding naming it.)
    with_temp_ns(|client, ns| {
        let again = again.clone();
        async move {
            let instances: Api<airlock_crds::AIRuntimeInstance> = Api::all(client.clone());
            let instance = unique_name("exempt-after-reinstall");
            let object: airlock_crds::AIRuntimeInstance = serde_json::from_value(json!({
                "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance",
                "metadata": { "name": instance },
                "spec": {
                    "selector": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns } } },
                    "profileRef": { "name": again },
                    "exemptions": [{ "namespace": ns, "kind": "Pod", "name": "llm", "reason": "e2e: after a reinstall" }]
                }
            }))
            .unwrap();
            instances.create(&PostParams::default(), &object).await.unwrap();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let mut llm = vllm_pod("llm");
            llm.metadata.labels = Some([("airlock.dev/inject".to_owned(), "false".to_owned())].into());
            eventually("the backstop standing aside for the exemption", Duration::from_secs(30), || {
                let (pods, llm) = (pods.clone(), llm.clone());
                async move {
                    match pods.create(&PostParams::default(), &llm).await {
                        Ok(_) => Some(()),
                        Err(err) if err.to_string().contains("airlock-backstop") => None,
                        Err(err) => panic!("create llm: {err}"),
                    }
                }
            })
            .await;
            airlock_e2e::delete_instance_and_profile(&client, &instance, &again).await;
        }
    })
    .await;
    let _ = profiles.delete(&profile_name, &DeleteParams::default()).await;
}

/// With the webhook process stopped, the backstop policy (inside the API server) still denies a
/// model server without the sidecar, with its own message; other pods meet validation's `Fail` policy.
#[tokio::test]
async fn with_the_webhook_down_the_backstop_denies_unprotected_model_servers() {
    let _turn = RELEASE.lock().await;
    airlock_sh("webhook-stop");
    let outcome = tokio::spawn(async {
        with_temp_ns(|client, ns| async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let err = pods
                .create(&PostParams::default(), &vllm_pod("llm"))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("ValidatingAdmissionPolicy 'airlock-backstop'"),
                "{err}"
            );
            assert!(
                err.contains("Airlock: this pod runs a model server (image vllm/vllm-openai"),
                "{err}"
            );
            assert!(
                err.contains(&format!("Select namespace {ns} with an AIRuntimeInstance")),
                "{err}"
            );
            let web: Pod = serde_json::from_value(json!({
                "metadata": { "name": "web" },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] }
            }))
            .unwrap();
            let err = pods
                .create(&PostParams::default(), &web)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("failed calling webhook \"workloads.airlock.dev\""),
                "{err}"
            );
        })
        .await;
    })
    .await;
    airlock_sh("webhook-start");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
