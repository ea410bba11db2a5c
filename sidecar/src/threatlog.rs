//! Threat logs: one JSON object per verdict, in the shape DESIGN.md promises. Building an entry is pure;
//! the proxy writes it to standard output and hands it to the forwarders.
//!
//! Entries never carry the scanned text. At `verbosity: full` they carry short excerpts around each
//! detection, with every maskable span (personal data, secrets) masked first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_crds::v1alpha1::profile::Verbosity;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::Category;
use crate::verdict::{Action, Decided};

/// Which way the scanned text was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Prompt,
    Response,
}

impl Direction {
    /// As in the threat log and the metrics' `direction` label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Prompt => "prompt",
            Direction::Response => "response",
        }
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The source pod's service account (in `namespace`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    pub ip: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address_groups: Vec<String>,
}

/// Where a request was going.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestinationInfo {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub path: String,
}

/// What one entry is about.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub report_id: &'a str,
    pub tr_id: &'a str,
    pub profile: &'a str,
    pub instance: &'a str,
    pub direction: Direction,
    pub action: Action,
    /// The scan was enforced (`enforce` mode) or only observed (`audit`).
    pub enforced: bool,
    pub detections: &'a [Decided],
    pub source: &'a SourceInfo,
    pub destination: &'a DestinationInfo,
    pub latency: Duration,
    /// Why the verdict was reached without a full scan (a limit, a scan failure), if so.
    pub reason: Option<&'a str>,
    /// Masked excerpts, one per detection, for `verbosity: full`.
    pub excerpts: Option<Vec<String>>,
}

/// The JSON object for one entry.
pub fn render(entry: &Entry<'_>, verbosity: Verbosity) -> Value {
    let malicious = !entry.detections.is_empty() || entry.reason.is_some();
    let mut obj = Map::new();
    obj.insert("time".into(), Value::String(now_rfc3339()));
    obj.insert("report_id".into(), entry.report_id.into());
    obj.insert("tr_id".into(), entry.tr_id.into());
    obj.insert("profile".into(), entry.profile.into());
    obj.insert("instance".into(), entry.instance.into());
    obj.insert("direction".into(), json!(entry.direction));
    obj.insert(
        "category".into(),
        if malicious { "malicious" } else { "benign" }.into(),
    );
    obj.insert("action".into(), json!(entry.action));
    obj.insert(
        "mode".into(),
        if entry.enforced { "enforce" } else { "audit" }.into(),
    );
    let mut flags = Map::new();
    for category in [
        Category::Injection,
        Category::Dlp,
        Category::Url,
        Category::Code,
        Category::Topic,
    ] {
        let hit = entry.detections.iter().any(|d| d.detection.category == category);
        flags.insert(category.as_str().into(), hit.into());
    }
    obj.insert("detected".into(), Value::Object(flags));
    if let Some(reason) = entry.reason {
        obj.insert("reason".into(), reason.into());
    }
    if verbosity != Verbosity::Minimal {
        let detections: Vec<Value> = entry
            .detections
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut v = json!({
                    "category": d.detection.category,
                    "detector": d.detection.detector,
                    "score": d.detection.score,
                    "action": d.action,
                });
                if let Some(excerpt) = entry.excerpts.as_ref().and_then(|e| e.get(i)) {
                    v["excerpt"] = excerpt.as_str().into();
                }
                v
            })
            .collect();
        obj.insert("detections".into(), Value::Array(detections));
        obj.insert("source".into(), json!(entry.source));
        obj.insert("destination".into(), json!(entry.destination));
    }
    obj.insert(
        "latency_us".into(),
        (entry.latency.as_micros().min(u128::from(u64::MAX)) as u64).into(),
    );
    Value::Object(obj)
}

/// An excerpt of `text` around `start..end` (at most 40 bytes either side), with the masked text in
/// place of `text` where the caller masked it. Char-boundary safe.
pub fn excerpt(text: &str, start: usize, end: usize) -> String {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let from = floor(start.saturating_sub(40));
    let to = floor(end.saturating_add(40));
    text[from..to].to_string()
}

/// Ids: unique per process and across restarts (a boot nonce from the clock and the pid, then a counter).
#[derive(Debug)]
pub struct Ids {
    nonce: u64,
    next: AtomicU64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids::new()
    }
}

impl Ids {
    pub fn new() -> Ids {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let nonce = splitmix(nanos ^ (u64::from(std::process::id()) << 32));
        Ids {
            nonce,
            next: AtomicU64::new(1),
        }
    }

    /// A fresh 16-hex-digit id.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", splitmix(self.nonce ^ n))
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d)
}

fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let rem = secs % 86_400;
    let (year, month, day) = crate::forward::civil_from_days(secs / 86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Detection;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(1_795_996_800_123)),
            "2026-11-30T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn ids_are_distinct() {
        let ids = Ids::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn entries_have_the_design_fields_and_no_text() {
        let detections = [Decided {
            detection: Detection {
                category: Category::Injection,
                detector: "injection.override",
                score: 0.97,
                segment: 0,
                start: 0,
                end: 10,
                maskable: false,
            },
            action: Action::Block,
        }];
        let source = SourceInfo {
            ip: "10.0.0.7".into(),
            ..SourceInfo::default()
        };
        let destination = DestinationInfo {
            host: "api.openai.com".into(),
            model: Some("gpt-4o".into()),
            path: "/v1/chat/completions".into(),
        };
        let entry = Entry {
            report_id: "r1",
            tr_id: "t1",
            profile: "strict",
            instance: "",
            direction: Direction::Prompt,
            action: Action::Block,
            enforced: true,
            detections: &detections,
            source: &source,
            destination: &destination,
            latency: Duration::from_micros(42),
            reason: None,
            excerpts: None,
        };
        let v = render(&entry, Verbosity::Standard);
        for key in [
            "report_id",
            "tr_id",
            "profile",
            "instance",
            "direction",
            "category",
            "action",
            "detected",
            "source",
            "destination",
            "latency_us",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["category"], "malicious");
        assert_eq!(v["detected"]["injection"], true);
        assert_eq!(v["detected"]["dlp"], false);
        assert_eq!(v["destination"]["model"], "gpt-4o");
        let minimal = render(&entry, Verbosity::Minimal);
        assert!(minimal.get("detections").is_none() && minimal.get("source").is_none());
    }

    #[test]
    fn excerpts_respect_char_boundaries() {
        let text = "ééééééééééééééééééééééééééééééééééééééééééééé secret ééé";
        let e = excerpt(text, 91, 97);
        assert!(e.contains("secret"));
    }
}
