//! `kubectl airlock logs`: the sidecars' threat logs, filtered.
//!
//! Parsing, filtering and rendering are pure functions over lines in the format the sidecar writes
//! (one JSON object per verdict on standard output; see `sidecar/src/threatlog.rs` and
//! `docs/sidecar.md`). Lines that are not threat-log entries (the sidecar's operational logs share the
//! container's log) are skipped. [`read_cluster`] and [`follow_cluster`] stream the `airlock-sidecar`
//! containers' logs through the API server.

use std::collections::BTreeMap;
use std::io::Write;

use airlock_webhook::mutate::SIDECAR_NAME;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::cli::{ActionFilter, DirectionFilter};
use crate::error::{Error, Result};
use crate::output::{OutputFormat, Table, render_line, to_yaml};

/// One detection of a threat-log entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `injection`, `dlp`, `url`, `code` or `topic`.
    #[serde(default)]
    pub category: String,
    /// The rule that fired, e.g. `injection.override`.
    #[serde(default)]
    pub detector: String,
    /// Confidence.
    #[serde(default)]
    pub score: f64,
    /// What the profile said to do about it.
    #[serde(default)]
    pub action: String,
}

/// Where a request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The pod (outbound requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Its namespace (outbound), or the namespace of the calling pod's service account (inbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The calling pod's service account, when the sidecar knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The source IP.
    #[serde(default)]
    pub ip: String,
    /// The source's address groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address_groups: Vec<String>,
}

/// Where a request was going.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Host of the LLM API.
    #[serde(default)]
    pub host: String,
    /// The model named in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The request path.
    #[serde(default)]
    pub path: String,
}

/// A threat-log entry, as the sidecar writes it. `report_id`, `direction` and `action` are what make a
/// line a threat-log entry; everything else may be absent (`verbosity: minimal` drops detections,
/// source and destination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreatLog {
    /// RFC 3339 time of the verdict.
    #[serde(default)]
    pub time: String,
    /// The id in the blocked response's body.
    pub report_id: String,
    /// Shared by a request's prompt and response entries.
    #[serde(default)]
    pub tr_id: String,
    /// The profile that decided.
    #[serde(default)]
    pub profile: String,
    /// The instance of the sidecar.
    #[serde(default)]
    pub instance: String,
    /// `prompt` or `response`.
    pub direction: String,
    /// `benign` or `malicious`.
    #[serde(default)]
    pub category: String,
    /// `allow`, `alert`, `mask` or `block`.
    pub action: String,
    /// `enforce` or `audit`.
    #[serde(default)]
    pub mode: String,
    /// A flag per detection category.
    #[serde(default)]
    pub detected: BTreeMap<String, bool>,
    /// The detections.
    #[serde(default)]
    pub detections: Vec<Detection>,
    /// Where the request came from.
    #[serde(default)]
    pub source: Option<Source>,
    /// Where it was going.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Time the sidecar added, in microseconds.
    #[serde(default)]
    pub latency_us: Option<u64>,
    /// Why the verdict was reached without a full scan (a limit, a rule, a scan failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The detection categories in the order the sidecar lists them.
const CATEGORY_ORDER: &[&str] = &["injection", "dlp", "url", "code", "topic"];

impl ThreatLog {
    /// The categories that were detected, in the sidecar's order (unknown ones after, by name).
    pub fn categories(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .detected
            .iter()
            .filter(|(_, hit)| **hit)
            .map(|(c, _)| c.clone())
            .chain(self.detections.iter().map(|d| d.category.clone()))
            .filter(|c| !c.is_empty())
            .collect();
        let rank = |c: &String| {
            CATEGORY_ORDER
                .iter()
                .position(|k| k == c)
                .unwrap_or(CATEGORY_ORDER.len())
        };
        found.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        found.dedup();
        found
    }
}

/// A threat-log entry with where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Namespace of the pod whose sidecar wrote it (from the entry's source in files).
    pub namespace: Option<String>,
    /// The pod.
    pub pod: Option<String>,
    /// The line as written.
    pub raw: String,
    /// The parsed entry.
    pub entry: ThreatLog,
}

/// The entry on `line`, or `None` when the line is not a threat-log entry (an operational log line,
/// a blank line, anything else).
pub fn parse_line(line: &str) -> Option<ThreatLog> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// A record for `line` read from a file: the pod is the entry's source, if it names one (outbound
/// entries). An inbound entry's source namespace is the caller's, not the writing sidecar's, so it is not
/// taken without the pod.
pub fn record_from_file(line: &str) -> Option<Record> {
    let entry = parse_line(line)?;
    let source = entry.source.clone().unwrap_or_default();
    Some(Record {
        namespace: source.namespace.filter(|_| source.pod.is_some()),
        pod: source.pod,
        raw: line.trim().to_owned(),
        entry,
    })
}

/// Which entries to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Any of these detection categories (or verdict categories `malicious`, `benign`); empty: all.
    pub categories: Vec<String>,
    /// Any of these actions; empty: all.
    pub actions: Vec<ActionFilter>,
    /// Only this direction.
    pub direction: Option<DirectionFilter>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
}

impl Filter {
    /// The filter of `--since <age>` counted back from `now`.
    pub fn since_age(mut self, age: Option<std::time::Duration>, now: Timestamp) -> Self {
        self.since = age.and_then(|age| {
            SignedDuration::try_from(age)
                .ok()
                .and_then(|age| now.checked_sub(age).ok())
        });
        self
    }

    /// Whether `entry` passes.
    pub fn matches(&self, entry: &ThreatLog) -> bool {
        let category_ok = self.categories.is_empty() || {
            let found = entry.categories();
            self.categories
                .iter()
                .any(|c| found.contains(c) || entry.category == *c)
        };
        let action_ok = self.actions.is_empty() || self.actions.iter().any(|a| a.as_str() == entry.action);
        let direction_ok = self.direction.is_none_or(|d| d.as_str() == entry.direction);
        // An entry whose time cannot be read is kept: it cannot be shown to be too old.
        let since_ok = self.since.is_none_or(|since| {
            entry.time.parse::<Timestamp>().is_ok_and(|t| t >= since)
                || entry.time.parse::<Timestamp>().is_err()
        });
        category_ok && action_ok && direction_ok && since_ok
    }
}

/// The columns of the table.
pub const HEADERS: [&str; 7] = [
    "TIME",
    "NAMESPACE/POD",
    "DIRECTION",
    "ACTION",
    "CATEGORIES",
    "REPORT ID",
    "DESTINATION",
];

/// Column widths used while following, when rows cannot be measured in advance.
const FOLLOW_WIDTHS: [usize; 7] = [24, 40, 9, 6, 16, 16, 0];

/// The cells of one record's row.
pub fn row(record: &Record) -> Vec<String> {
    let e = &record.entry;
    let who = match (&record.namespace, &record.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        (None, Some(pod)) => pod.clone(),
        _ => "-".to_owned(),
    };
    let categories = e.categories();
    // A verdict without detections was reached by a limit, a rule or a scan failure; its `reason` is
    // in the JSON and YAML output.
    let categories = if categories.is_empty() {
        "-".to_owned()
    } else {
        categories.join(",")
    };
    let destination = match &e.destination {
        Some(d) if !d.host.is_empty() => match &d.model {
            Some(model) => format!("{} ({model})", d.host),
            None => d.host.clone(),
        },
        _ => "-".to_owned(),
    };
    vec![
        if e.time.is_empty() {
            "-".to_owned()
        } else {
            e.time.clone()
        },
        who,
        e.direction.clone(),
        e.action.clone(),
        categories,
        e.report_id.clone(),
        destination,
    ]
}

/// Records as a table, oldest first.
pub fn render_table(records: &[Record]) -> String {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| a.entry.time.cmp(&b.entry.time));
    let mut table = Table::new(HEADERS);
    for r in sorted {
        table.row(row(r));
    }
    if table.is_empty() {
        "No threat-log entries found.\n".to_owned()
    } else {
        table.render()
    }
}

/// The table's header while following.
pub fn follow_header() -> String {
    Table::new(HEADERS).render_header(&FOLLOW_WIDTHS) + "\n"
}

/// One row while following.
pub fn follow_row(record: &Record) -> String {
    render_line(&row(record), &FOLLOW_WIDTHS) + "\n"
}

/// One record in the structured format: the raw line for JSON, a YAML document for YAML.
pub fn render_structured(record: &Record, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Yaml => Ok(format!("---\n{}", to_yaml(&record.entry)?)),
        _ => Ok(format!("{}\n", record.raw)),
    }
}

/// Everything about `records` in `format`, oldest first.
pub fn render(records: &[Record], format: OutputFormat) -> Result<String> {
    if format == OutputFormat::Table {
        return Ok(render_table(records));
    }
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| a.entry.time.cmp(&b.entry.time));
    let mut out = String::new();
    for r in sorted {
        out.push_str(&render_structured(r, format)?);
    }
    Ok(out)
}

/// The records on `text` (a file or stdin) that pass `filter`.
pub fn from_text(text: &str, filter: &Filter) -> Vec<Record> {
    text.lines()
        .filter_map(record_from_file)
        .filter(|r| filter.matches(&r.entry))
        .collect()
}

/// Whether a pod runs Airlock's sidecar (as a container or a native sidecar).
pub fn has_sidecar(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(airlock_webhook::workload::has_sidecar)
}

/// The pods with a sidecar in `namespace` (every namespace for `None`), by namespace and name.
pub async fn sidecar_pods(client: &Client, namespace: Option<&str>) -> Result<Vec<Pod>> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut pods: Vec<Pod> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("list pods", e))?
        .items
        .into_iter()
        .filter(has_sidecar)
        .collect();
    pods.sort_by_key(|p| (p.namespace().unwrap_or_default(), p.name_any()));
    Ok(pods)
}

fn log_params(follow: bool, since: Option<std::time::Duration>) -> LogParams {
    LogParams {
        container: Some(SIDECAR_NAME.to_owned()),
        follow,
        since_seconds: since.map(|s| i64::try_from(s.as_secs().max(1)).unwrap_or(i64::MAX)),
        ..LogParams::default()
    }
}

/// Why one pod's log could not be read.
#[derive(Debug)]
enum LogError {
    Api(kube::Error),
    Read(std::io::Error),
}

impl From<kube::Error> for LogError {
    fn from(e: kube::Error) -> Self {
        LogError::Api(e)
    }
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Read(e)
    }
}

fn record_from_pod(pod: &Pod, line: &str) -> Option<Record> {
    let entry = parse_line(line)?;
    Some(Record {
        namespace: pod.namespace(),
        pod: Some(pod.name_any()),
        raw: line.trim().to_owned(),
        entry,
    })
}

fn warn(err: &mut dyn Write, pod: &Pod, e: &(dyn std::error::Error + 'static)) {
    // A closed stderr leaves nothing to report to.
    let _ = writeln!(
        err,
        "warning: cannot read the {SIDECAR_NAME} logs of pod {}/{}: {}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        crate::error::chain(e)
    );
}

/// Reads the sidecars' logs of `pods` to their current end; a pod whose logs cannot be read is a
/// warning on `err`.
pub async fn read_cluster(
    client: &Client,
    pods: &[Pod],
    since: Option<std::time::Duration>,
    filter: &Filter,
    err: &mut dyn Write,
) -> Vec<Record> {
    let params = log_params(false, since);
    let reads = pods.iter().map(|pod| {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let params = params.clone();
        async move {
            let lines: std::result::Result<Vec<String>, LogError> = async {
                let reader = api.log_stream(&pod.name_any(), &params).await?;
                Ok(reader.lines().try_collect().await?)
            }
            .await;
            (pod, lines)
        }
    });
    let results: Vec<_> = futures::stream::iter(reads).buffered(8).collect().await;
    let mut records = Vec::new();
    for (pod, lines) in results {
        match lines {
            Ok(lines) => records.extend(
                lines
                    .iter()
                    .filter_map(|l| record_from_pod(pod, l))
                    .filter(|r| filter.matches(&r.entry)),
            ),
            Err(LogError::Api(e)) => warn(err, pod, &e),
            Err(LogError::Read(e)) => warn(err, pod, &e),
        }
    }
    records
}

/// Follows the sidecars' logs of `pods`, writing each entry that passes `filter` to `out` as it
/// arrives, until every stream ends.
pub async fn follow_cluster(
    client: &Client,
    pods: &[Pod],
    since: Option<std::time::Duration>,
    filter: &Filter,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let params = log_params(true, since);
    let mut streams = Vec::new();
    for pod in pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        match api.log_stream(&pod.name_any(), &params).await {
            Ok(reader) => {
                let pod = pod.clone();
                streams.push(reader.lines().map(move |line| (pod.clone(), line)).boxed());
            }
            Err(e) => warn(err, pod, &e),
        }
    }
    if format == OutputFormat::Table {
        out.write_all(follow_header().as_bytes()).map_err(Error::Output)?;
    }
    let mut merged = futures::stream::select_all(streams);
    while let Some((pod, line)) = merged.next().await {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                warn(err, &pod, &e);
                continue;
            }
        };
        let Some(record) = record_from_pod(&pod, &line).filter(|r| filter.matches(&r.entry)) else {
            continue;
        };
        let text = match format {
            OutputFormat::Table => follow_row(&record),
            _ => render_structured(&record, format)?,
        };
        out.write_all(text.as_bytes()).map_err(Error::Output)?;
        out.flush().map_err(Error::Output)?;
    }
    Ok(())
}
