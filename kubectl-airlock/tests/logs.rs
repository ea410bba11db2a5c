//! `kubectl airlock logs`: parsing, filtering and rendering threat-log lines exactly as the sidecar's
//! renderer writes them (`airlock_sidecar::threatlog::render`), and the `--file` mode of the binary.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use airlock_crds::v1alpha1::profile::Verbosity;
use airlock_sidecar::engine::{Category, Detection};
use airlock_sidecar::threatlog::{self, DestinationInfo, Direction, Entry, SourceInfo};
use airlock_sidecar::verdict::{Action, Decided};
use common::{run, stderr, stdout};
use k8s_openapi::jiff::Timestamp;
use kubectl_airlock::cli::{ActionFilter, DirectionFilter};
use kubectl_airlock::logs::{self, Filter, Record};
use kubectl_airlock::output::OutputFormat;

fn detection(category: Category, detector: &'static str, action: Action) -> Decided {
    Decided {
        detection: Detection {
            category,
            detector,
            score: 0.97,
            segment: 0,
            start: 0,
            end: 10,
            maskable: category == Category::Dlp,
        },
        action,
    }
}

struct Spec {
    time: &'static str,
    report_id: &'static str,
    direction: Direction,
    action: Action,
    detections: Vec<Decided>,
    reason: Option<&'static str>,
    verbosity: Verbosity,
}

/// A threat-log line as the sidecar writes it, with a fixed time.
fn line(spec: Spec) -> String {
    let source = SourceInfo {
        pod: Some("chat-6f7d9c8b5-abcde".into()),
        namespace: Some("ml".into()),
        service_account: Some("chat".into()),
        ip: "10.244.1.7".into(),
        address_groups: vec!["chat-frontends".into()],
    };
    let destination = DestinationInfo {
        host: "api.openai.com".into(),
        model: Some("gpt-4o".into()),
        path: "/v1/chat/completions".into(),
    };
    let entry = Entry {
        report_id: spec.report_id,
        tr_id: "t1",
        profile: "strict",
        instance: "prod",
        direction: spec.direction,
        action: spec.action,
        enforced: true,
        detections: &spec.detections,
        source: &source,
        destination: &destination,
        latency: Duration::from_micros(420),
        reason: spec.reason,
        excerpts: None,
    };
    let mut value = threatlog::render(&entry, spec.verbosity);
    value["time"] = spec.time.into();
    value.to_string()
}

/// A sidecar's container log: threat-log lines on stdout, operational logs (JSON and not) on stderr.
fn container_log() -> String {
    [
        r#"{"timestamp":"2026-11-24T10:00:00.000Z","level":"INFO","fields":{"message":"policy loaded"},"target":"airlock_sidecar::proxy"}"#.to_owned(),
        line(Spec {
            time: "2026-11-24T10:00:01.000Z",
            report_id: "00000000000000a1",
            direction: Direction::Prompt,
            action: Action::Block,
            detections: vec![detection(Category::Injection, "injection.override", Action::Block)],
            reason: None,
            verbosity: Verbosity::Standard,
        }),
        "listening on 127.0.0.1:15001".to_owned(),
        line(Spec {
            time: "2026-11-24T10:00:02.000Z",
            report_id: "00000000000000a2",
            direction: Direction::Response,
            action: Action::Mask,
            detections: vec![
                detection(Category::Dlp, "dlp.email", Action::Mask),
                detection(Category::Url, "url.malicious", Action::Alert),
            ],
            reason: None,
            verbosity: Verbosity::Standard,
        }),
        String::new(),
        line(Spec {
            time: "2026-11-24T10:00:03.000Z",
            report_id: "00000000000000a3",
            direction: Direction::Prompt,
            action: Action::Block,
            detections: vec![],
            reason: Some("prompt exceeds 32768 bytes"),
            verbosity: Verbosity::Minimal,
        }),
        line(Spec {
            time: "2026-11-24T10:00:04.000Z",
            report_id: "00000000000000a4",
            direction: Direction::Prompt,
            action: Action::Alert,
            detections: vec![detection(Category::Topic, "topic.banned", Action::Alert)],
            reason: None,
            verbosity: Verbosity::Standard,
        }),
    ]
    .join("\n")
}

fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.entry.report_id.as_str()).collect()
}

#[test]
fn only_threat_log_lines_are_parsed() {
    let records = logs::from_text(&container_log(), &Filter::default());
    assert_eq!(
        ids(&records),
        [
            "00000000000000a1",
            "00000000000000a2",
            "00000000000000a3",
            "00000000000000a4"
        ]
    );
    let first = &records[0].entry;
    assert_eq!(first.direction, "prompt");
    assert_eq!(first.action, "block");
    assert_eq!(first.category, "malicious");
    assert_eq!(first.categories(), ["injection"]);
    assert_eq!(
        first.destination.as_ref().unwrap().model.as_deref(),
        Some("gpt-4o")
    );
    // From a file, the pod is the entry's source.
    assert_eq!(records[0].namespace.as_deref(), Some("ml"));
    assert_eq!(records[0].pod.as_deref(), Some("chat-6f7d9c8b5-abcde"));
    assert!(logs::parse_line("not json").is_none());
    assert!(logs::parse_line(r#"{"level":"INFO","message":"x"}"#).is_none());
    let source = first.source.as_ref().unwrap();
    assert_eq!(source.service_account.as_deref(), Some("chat"));
}

#[test]
fn an_inbound_entry_from_a_file_names_no_pod_or_namespace() {
    // Inbound, `source` is the caller: its service account's namespace is not the writer's.
    let mut value: serde_json::Value = serde_json::from_str(&line(Spec {
        time: "2026-11-24T10:00:05.000Z",
        report_id: "00000000000000b1",
        direction: Direction::Prompt,
        action: Action::Block,
        detections: vec![],
        reason: Some("rate limit"),
        verbosity: Verbosity::Standard,
    }))
    .unwrap();
    value["source"] =
        serde_json::json!({"namespace": "chat", "service_account": "frontend", "ip": "10.0.0.9"});
    let record = logs::record_from_file(&value.to_string()).unwrap();
    assert_eq!((record.namespace, record.pod), (None, None));
    let source = record.entry.source.unwrap();
    assert_eq!(source.namespace.as_deref(), Some("chat"));
    assert_eq!(source.service_account.as_deref(), Some("frontend"));
}

#[test]
fn category_filters_match_any_detected_category() {
    let filter = Filter {
        categories: vec!["dlp".into(), "topic".into()],
        ..Filter::default()
    };
    assert_eq!(
        ids(&logs::from_text(&container_log(), &filter)),
        ["00000000000000a2", "00000000000000a4"]
    );
    let url = Filter {
        categories: vec!["url".into()],
        ..Filter::default()
    };
    assert_eq!(
        ids(&logs::from_text(&container_log(), &url)),
        ["00000000000000a2"]
    );
}

#[test]
fn action_and_direction_filters_combine() {
    let blocks = Filter {
        actions: vec![ActionFilter::Block],
        ..Filter::default()
    };
    assert_eq!(
        ids(&logs::from_text(&container_log(), &blocks)),
        ["00000000000000a1", "00000000000000a3"]
    );
    let responses = Filter {
        actions: vec![ActionFilter::Block, ActionFilter::Mask],
        direction: Some(DirectionFilter::Response),
        ..Filter::default()
    };
    assert_eq!(
        ids(&logs::from_text(&container_log(), &responses)),
        ["00000000000000a2"]
    );
}

#[test]
fn since_keeps_entries_no_older_than_the_age() {
    let now: Timestamp = "2026-11-24T10:00:05Z".parse().unwrap();
    let filter = Filter::default().since_age(Some(Duration::from_secs(3)), now);
    assert_eq!(
        ids(&logs::from_text(&container_log(), &filter)),
        ["00000000000000a2", "00000000000000a3", "00000000000000a4"]
    );
}

#[test]
fn the_table_shows_time_pod_direction_action_categories_report_and_destination() {
    let records = logs::from_text(&container_log(), &Filter::default());
    let expected = "\
TIME                       NAMESPACE/POD             DIRECTION   ACTION   CATEGORIES   REPORT ID          DESTINATION
2026-11-24T10:00:01.000Z   ml/chat-6f7d9c8b5-abcde   prompt      block    injection    00000000000000a1   api.openai.com (gpt-4o)
2026-11-24T10:00:02.000Z   ml/chat-6f7d9c8b5-abcde   response    mask     dlp,url      00000000000000a2   api.openai.com (gpt-4o)
2026-11-24T10:00:03.000Z   -                         prompt      block    -            00000000000000a3   -
2026-11-24T10:00:04.000Z   ml/chat-6f7d9c8b5-abcde   prompt      alert    topic        00000000000000a4   api.openai.com (gpt-4o)
";
    assert_eq!(logs::render_table(&records), expected);
    assert_eq!(logs::render_table(&[]), "No threat-log entries found.\n");
}

#[test]
fn json_output_is_the_raw_lines_and_yaml_one_document_each() {
    let records = logs::from_text(&container_log(), &Filter::default());
    let json = logs::render(&records, OutputFormat::Json).unwrap();
    let originals: Vec<String> = container_log()
        .lines()
        .filter(|l| l.contains("report_id"))
        .map(str::to_owned)
        .collect();
    assert_eq!(json.lines().map(str::to_owned).collect::<Vec<_>>(), originals);
    let yaml = logs::render(&records, OutputFormat::Yaml).unwrap();
    assert_eq!(yaml.matches("---\n").count(), 4);
    assert!(yaml.contains("report_id: 00000000000000a1"), "{yaml}");
}

#[test]
fn rows_while_following_use_fixed_widths() {
    let records = logs::from_text(&container_log(), &Filter::default());
    let header = logs::follow_header();
    assert!(
        header.starts_with("TIME                       NAMESPACE/POD"),
        "{header}"
    );
    let row = logs::follow_row(&records[0]);
    assert!(
        row.starts_with("2026-11-24T10:00:01.000Z   ml/chat-6f7d9c8b5-abcde"),
        "{row}"
    );
    assert!(row.ends_with("api.openai.com (gpt-4o)\n"), "{row}");
}

#[test]
fn the_binary_reads_a_file_and_filters_it() {
    let dir = tempfile::Builder::new()
        .prefix("kubectl-airlock-logs-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("sidecar.log");
    std::fs::write(&path, container_log()).unwrap();
    let path = path.to_str().unwrap();

    let out = run(&["logs", "--file", path, "--action", "block"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("00000000000000a1") && text.contains("00000000000000a3"),
        "{text}"
    );

    let out = run(&["logs", "--file", path, "--category", "dlp", "-o", "json"], "");
    let text = stdout(&out);
    let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(entry["report_id"], "00000000000000a2");

    let missing = run(&["logs", "--file", "/nonexistent/sidecar.log"], "");
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).starts_with("error: cannot read /nonexistent/sidecar.log: "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_follows_stdin_as_entries_arrive() {
    let out = run(
        &["logs", "--file", "-", "--follow", "--direction", "response"],
        &container_log(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("TIME"));
    assert!(lines[1].contains("00000000000000a2"));
}
