//! `kubectl airlock check`: the webhook's decisions about manifests, offline, with file and line, and
//! exit codes a CI job can rely on.

#![allow(clippy::unwrap_used)]

mod common;

use common::{fixture, manifests, run, stderr, stdout};
use kubectl_airlock::check::{self, Decision, Outcome, Report};

const WORKLOADS: &str = "tests/fixtures/check/workloads.yaml";
const CLUSTER: &str = "tests/fixtures/check/cluster.yaml";

fn report_for(namespace: &str, version: (u32, u32), show_ignored: bool) -> Report {
    check::check(
        &manifests("check/workloads.yaml"),
        &manifests("check/cluster.yaml"),
        namespace,
        version,
        show_ignored,
    )
    .unwrap()
}

fn report() -> Report {
    report_for("ml", (1, 33), false)
}

fn outcome<'a>(report: &'a Report, kind: &str, namespace: &str, name: &str) -> &'a Outcome {
    report
        .results
        .iter()
        .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {kind} {namespace}/{name} in {report:#?}"))
}

#[test]
fn an_ordinary_app_in_a_protected_namespace_gets_the_sidecar_of_its_instance() {
    let report = report();
    let chat = outcome(&report, "Deployment", "ml", "chat");
    assert_eq!(chat.decision, Decision::Injected);
    assert_eq!(chat.instance.as_deref(), Some("prod"));
    assert_eq!(chat.mode.as_deref(), Some("enforce"));
    assert_eq!(
        chat.reason,
        "AIRuntimeInstance \"prod\" (enforce) adds airlock-sidecar as a native sidecar"
    );
}

#[test]
fn a_vllm_deployment_in_an_unselected_namespace_is_denied_with_the_webhook_s_message() {
    let report = report();
    let llm = outcome(&report, "Deployment", "sandbox", "llm");
    assert_eq!(llm.decision, Decision::Denied);
    assert!(
        llm.reason.starts_with(
            "Deployment sandbox/llm runs a model server without Airlock protection: container \
             \"server\" matched fingerprint vllm (image vllm/vllm-openai:v0.9.1)."
        ),
        "{}",
        llm.reason
    );
    // The message says how to fix it.
    assert!(
        llm.reason.contains("AIRuntimeInstance (spec.selector)"),
        "{}",
        llm.reason
    );
    assert!(llm.reason.contains("exemption with a reason"), "{}", llm.reason);
    assert!(report.has_denials());
}

#[test]
fn a_model_server_under_an_auditing_instance_is_warned_and_still_injected() {
    let report = report();
    let llm = outcome(&report, "Deployment", "staging", "llm");
    assert_eq!(llm.decision, Decision::Warned);
    assert_eq!(llm.instance.as_deref(), Some("shadow"));
    assert_eq!(llm.mode.as_deref(), Some("audit"));
    assert!(llm.reason.contains("only audits"), "{}", llm.reason);
    assert!(llm.reason.contains("adds airlock-sidecar"), "{}", llm.reason);
}

#[test]
fn an_exempt_model_server_that_opts_out_is_admitted_with_the_exemption_s_reason() {
    let report = report();
    let embedder = outcome(&report, "Deployment", "ml", "legacy-embedder");
    assert_eq!(embedder.decision, Decision::Admitted);
    assert_eq!(
        embedder.reason,
        "model server (text-embeddings-inference) exempted by AIRuntimeInstance \"prod\": vendor \
         appliance, reviewed in SEC-1234; opted out with airlock.dev/inject: \"false\""
    );
}

#[test]
fn an_exempt_model_server_no_instance_selects_is_admitted() {
    let report = report();
    let research = outcome(&report, "Deployment", "sandbox", "research-llm");
    assert_eq!(research.decision, Decision::Admitted);
    assert!(
        research.reason.contains("offline research box"),
        "{}",
        research.reason
    );
}

#[test]
fn an_ordinary_app_no_instance_selects_is_admitted_untouched() {
    let report = report();
    let web = outcome(&report, "Deployment", "sandbox", "web");
    assert_eq!(web.decision, Decision::Admitted);
    assert_eq!(web.instance, None);
    assert_eq!(web.reason, "no AIRuntimeInstance selects it; not a model server");
}

#[test]
fn a_pod_without_a_namespace_is_decided_in_the_dash_n_namespace() {
    let in_ml = report_for("ml", (1, 33), false);
    assert_eq!(
        outcome(&in_ml, "Pod", "ml", "vllm-pod").decision,
        Decision::Injected
    );
    // `default` is not among the inputs and no instance selects it: an unprotected model server.
    let in_default = report_for("default", (1, 33), false);
    assert_eq!(
        outcome(&in_default, "Pod", "default", "vllm-pod").decision,
        Decision::Denied
    );
    assert!(
        in_default
            .notes
            .iter()
            .any(|n| n.contains("namespace \"default\" is not among the inputs")),
        "{:?}",
        in_default.notes
    );
}

#[test]
fn before_kubernetes_1_29_the_sidecar_is_a_regular_container() {
    let report = report_for("ml", (1, 28), false);
    let chat = outcome(&report, "Deployment", "ml", "chat");
    assert_eq!(chat.decision, Decision::Injected);
    assert!(chat.reason.ends_with("as a container"), "{}", chat.reason);
}

#[test]
fn every_object_carries_the_line_where_it_starts() {
    let report = report_for("ml", (1, 33), true);
    let lines: Vec<(String, usize)> = report.results.iter().map(|o| (o.name.clone(), o.line)).collect();
    assert_eq!(
        lines,
        [
            ("chat".to_owned(), 2),
            ("llm".to_owned(), 18),
            ("llm".to_owned(), 36),
            ("research-llm".to_owned(), 52),
            ("legacy-embedder".to_owned(), 69),
            ("web".to_owned(), 87),
            ("vllm-pod".to_owned(), 104),
            ("settings".to_owned(), 113),
        ]
    );
    assert!(report.results[0].file.ends_with("check/workloads.yaml"));
}

#[test]
fn objects_that_are_not_workloads_are_listed_only_when_asked() {
    let hidden = report_for("ml", (1, 33), false);
    assert!(hidden.results.iter().all(|o| o.kind != "ConfigMap"));
    assert_eq!(hidden.summary.ignored, 1);
    let shown = report_for("ml", (1, 33), true);
    let settings = outcome(&shown, "ConfigMap", "ml", "settings");
    assert_eq!(settings.decision, Decision::Ignored);
}

#[test]
fn the_table_has_a_row_per_workload_and_a_summary() {
    let text = check::render_table(&report());
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("FILE:LINE"));
    for column in ["KIND", "NAMESPACE/NAME", "DECISION", "REASON"] {
        assert!(header.contains(column), "{header}");
    }
    let chat = text.lines().find(|l| l.contains("ml/chat")).unwrap();
    assert!(chat.contains("workloads.yaml:2 "), "{chat}");
    assert!(chat.contains("   Deployment   ml/chat   "), "{chat}");
    assert!(
        text.contains("\n7 workloads: 2 injected, 3 admitted, 1 warned, 1 denied\n"),
        "{text}"
    );
}

#[test]
fn a_controller_whose_pods_would_be_denied_is_denied() {
    // Admitted itself (the injector would add the sidecar to its pods), but its pods use hostNetwork:
    // the injector skips them and validation then rejects an unprotected model server.
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: host-llm, namespace: ml}
spec:
  selector: {matchLabels: {app: host-llm}}
  template:
    metadata: {labels: {app: host-llm}}
    spec:
      hostNetwork: true
      containers: [{name: server, image: vllm/vllm-openai:v0.9.1}]
"#;
    let inputs = kubectl_airlock::manifest::parse("host.yaml", yaml).unwrap();
    let report = check::check(
        &inputs,
        &manifests("check/cluster.yaml"),
        "default",
        (1, 33),
        false,
    )
    .unwrap();
    let host = outcome(&report, "Deployment", "ml", "host-llm");
    assert_eq!(host.decision, Decision::Denied);
    assert!(
        host.reason.starts_with(
            "the Deployment is admitted but the pods it makes would be denied: Pod ml/host-llm-*"
        ),
        "{}",
        host.reason
    );
    assert!(host.reason.contains("hostNetwork"), "{}", host.reason);
}

#[test]
fn an_ordinary_host_network_pod_in_a_protected_namespace_is_warned_that_it_runs_unprotected() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: node-agent, namespace: ml}
spec:
  hostNetwork: true
  containers: [{name: agent, image: ghcr.io/example/agent:1}]
"#;
    let inputs = kubectl_airlock::manifest::parse("agent.yaml", yaml).unwrap();
    let report = check::check(
        &inputs,
        &manifests("check/cluster.yaml"),
        "default",
        (1, 33),
        false,
    )
    .unwrap();
    let agent = outcome(&report, "Pod", "ml", "node-agent");
    assert_eq!(agent.decision, Decision::Warned);
    assert!(
        agent
            .reason
            .starts_with("airlock: Airlock did not inject its sidecar"),
        "{}",
        agent.reason
    );
}

#[test]
fn a_list_is_checked_item_by_item() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "sandbox"},
       "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "sandbox"},
       "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.9.1"}]}}
    ]}"#;
    let inputs = kubectl_airlock::manifest::parse("list.json", json).unwrap();
    let report = check::check(
        &inputs,
        &manifests("check/cluster.yaml"),
        "default",
        (1, 33),
        false,
    )
    .unwrap();
    let decisions: Vec<(&str, Decision)> = report
        .results
        .iter()
        .map(|o| (o.name.as_str(), o.decision))
        .collect();
    assert_eq!(decisions, [("a", Decision::Admitted), ("b", Decision::Denied)]);
}

// --- The binary: exit codes, formats, inputs. ---

#[test]
fn exit_code_is_1_when_something_would_be_denied() {
    let out = run(
        &["check", "-f", WORKLOADS, "--cluster-state", CLUSTER, "-n", "ml"],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("denied"));
}

#[test]
fn exit_code_is_0_when_nothing_would_be_denied_and_stdin_is_read_for_dash() {
    let chat = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: chat, namespace: ml}
spec:
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec: {containers: [{name: app, image: ghcr.io/example/chat:1.4}]}
"#;
    let out = run(&["check", "-f", "-", "--cluster-state", CLUSTER], chat);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("<stdin>:2 "), "{text}");
    assert!(text.contains("injected"), "{text}");
}

#[test]
fn json_output_is_one_document_with_results_and_summary() {
    let out = run(
        &[
            "check",
            "-f",
            WORKLOADS,
            "--cluster-state",
            CLUSTER,
            "-n",
            "ml",
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["denied"], 1);
    assert_eq!(doc["summary"]["injected"], 2);
    let first = &doc["results"][0];
    assert_eq!(first["kind"], "Deployment");
    assert_eq!(first["namespace"], "ml");
    assert_eq!(first["decision"], "injected");
    assert_eq!(first["instance"], "prod");
    assert_eq!(first["line"], 2);
}

#[test]
fn malformed_yaml_is_exit_2_pointing_at_file_line_and_column() {
    // The error is in the second document, on line 10 of the file.
    let out = run(&["check", "-f", "tests/fixtures/check/bad.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: tests/fixtures/check/bad.yaml:10:12: mapping values are not allowed in this context\n"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_document_that_is_no_kubernetes_object_is_exit_2_at_its_line() {
    let out = run(&["check", "-f", "tests/fixtures/check/not-an-object.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(
            "error: tests/fixtures/check/not-an-object.yaml:7: not a Kubernetes object (no apiVersion, no kind)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unusable_input_and_flags_are_exit_2() {
    let missing = run(&["check", "-f", "tests/fixtures/check/nope.yaml"], "");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).starts_with("error: cannot read tests/fixtures/check/nope.yaml: "),
        "{}",
        stderr(&missing)
    );

    let version = run(&["check", "-f", WORKLOADS, "--kube-version", "latest"], "");
    assert_eq!(version.status.code(), Some(2));
    assert!(
        stderr(&version).contains("--kube-version \"latest\""),
        "{}",
        stderr(&version)
    );

    let usage = run(&["check"], "");
    assert_eq!(usage.status.code(), Some(2), "clap's usage errors");
}

#[test]
fn a_directory_reads_its_yaml_and_json_files_in_name_order() {
    let out = run(
        &[
            "check",
            "-f",
            "tests/fixtures/check/dir",
            "--cluster-state",
            CLUSTER,
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "tests/fixtures/check/dir/a-app.yaml",
            "tests/fixtures/check/dir/b-job.json"
        ]
    );
    assert!(
        fixture("check/dir/notes.txt").exists(),
        "the directory also holds a file that must be skipped"
    );
}

#[test]
fn airlock_objects_the_webhook_would_refuse_are_denied_the_others_are_part_of_the_view() {
    let report = check::check(
        &manifests("check/airlock-objects.yaml"),
        &manifests("check/cluster.yaml"),
        "ml",
        (1, 33),
        true,
    )
    .unwrap();
    let typo = outcome(&report, "AIRuntimeInstance", "", "typo");
    assert_eq!(typo.decision, Decision::Denied);
    assert!(typo.reason.contains("balnced"), "{}", typo.reason);
    let broken = outcome(&report, "DynamicAddressGroup", "", "broken");
    assert_eq!(broken.decision, Decision::Denied);
    assert!(
        broken.reason.contains("spec.match does not parse"),
        "{}",
        broken.reason
    );
    assert_eq!(
        outcome(&report, "AIRuntimeInstance", "", "good").decision,
        Decision::Ignored
    );
    assert_eq!(
        outcome(&report, "DynamicAddressGroup", "", "frontends").decision,
        Decision::Ignored
    );
    assert_eq!(report.summary.denied, 2);
    assert!(report.has_denials());
    // Cluster-scoped objects live in no namespace: no note about one.
    assert!(report.notes.is_empty(), "{:?}", report.notes);

    let output = run(
        &[
            "check",
            "-f",
            fixture("check/airlock-objects.yaml").to_str().unwrap(),
            "--cluster-state",
            CLUSTER,
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("balnced"), "{text}");
    // The parser's two-line message is one table row; the summary counts objects, not workloads.
    assert!(
        text.contains("spec.match does not parse: app = chat and (tier in (web ^ expected"),
        "{text}"
    );
    assert!(
        text.contains("\n2 objects: 0 injected, 0 admitted, 0 warned, 2 denied\n"),
        "{text}"
    );
}
