//! Scan orchestration: budget the input, normalize each segment once, run the enabled detectors, recurse
//! into decoded blobs within the limits, and assemble the ordered, capped result.

use super::normalize::{Normalized, normalize};
use super::{Category, Detection, Engine, Limits, ScanResult, Segment, Source, decode};

/// Decoded blobs scanned per call, whatever their size.
const MAX_BLOBS: usize = 64;

/// A detection in the coordinates of the text a detector was given.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub category: Category,
    pub detector: &'static str,
    pub score: f32,
    pub start: usize,
    pub end: usize,
    pub maskable: bool,
}

impl Finding {
    pub fn new(category: Category, detector: &'static str, score: f32, start: usize, end: usize) -> Finding {
        let maskable = category == Category::Dlp;
        Finding {
            category,
            detector,
            score: score.clamp(0.0, 1.0),
            start,
            end,
            maskable,
        }
    }
}

/// Mutable per-call state: the remaining budgets and the truncation flag.
pub(crate) struct Budget {
    pub decoded_bytes_left: usize,
    pub blobs_left: usize,
    pub findings_left: usize,
    pub truncated: bool,
}

impl Budget {
    /// No decoding, room for any number of findings: for detector-level tests.
    #[cfg(test)]
    pub(crate) fn unlimited() -> Budget {
        Budget {
            decoded_bytes_left: 0,
            blobs_left: 0,
            findings_left: usize::MAX / 2,
            truncated: false,
        }
    }

    fn new(limits: &Limits) -> Budget {
        Budget {
            decoded_bytes_left: limits.max_decoded_bytes,
            blobs_left: MAX_BLOBS,
            // Detectors stop early once far past the cap; the final cap is applied after sorting.
            findings_left: limits.max_detections.saturating_mul(4).saturating_add(64),
            truncated: false,
        }
    }
}

pub(crate) fn scan(engine: &Engine, segments: &[Segment<'_>]) -> ScanResult {
    if engine.detects_nothing() {
        // A profile that turns every detector off (a pass-through): no normalization, no decoding.
        return ScanResult {
            detections: Vec::new(),
            truncated: false,
        };
    }
    let limits = &engine.limits;
    let mut budget = Budget::new(limits);
    let mut bytes_left = limits.max_scan_bytes;
    let mut detections = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        if bytes_left == 0 {
            if !segment.text.is_empty() {
                budget.truncated = true;
            }
            continue;
        }
        let text = prefix_on_char_boundary(segment.text, bytes_left);
        if text.len() < segment.text.len() {
            budget.truncated = true;
        }
        bytes_left -= text.len();
        let findings = scan_text(engine, text, segment.source, 0, &mut budget);
        detections.extend(findings.into_iter().map(|f| Detection {
            category: f.category,
            detector: f.detector,
            score: f.score,
            segment: index,
            start: f.start,
            end: f.end,
            maskable: f.maskable,
        }));
    }
    detections.sort_by(|a, b| {
        (a.segment, a.start, a.end, a.detector).cmp(&(b.segment, b.start, b.end, b.detector))
    });
    detections.dedup_by(|b, a| {
        a.segment == b.segment && a.start == b.start && a.end == b.end && a.detector == b.detector
    });
    if detections.len() > limits.max_detections {
        detections.truncate(limits.max_detections);
        budget.truncated = true;
    }
    ScanResult {
        detections,
        truncated: budget.truncated,
    }
}

fn prefix_on_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Scans one text (a segment or a decoded blob) and returns findings in its own coordinates.
pub(crate) fn scan_text(
    engine: &Engine,
    text: &str,
    source: Source,
    depth: u8,
    budget: &mut Budget,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if text.is_empty() {
        return out;
    }
    let n: Normalized = normalize(text);
    if engine.injection.is_some() {
        // Hidden text is an injection signal: with injection detection off, it is not reported.
        hidden_text(&n, &mut out);
    }
    if let Some(d) = &engine.injection {
        budget.truncated |= d.detect(&n, text, source, &mut out);
    }
    let (seen, code_anchors) = engine
        .anchors
        .as_ref()
        .map_or((Vec::new(), 0), |a| a.seen(&n.folded));
    let (code_seen, secrets_seen) = seen.split_at(code_anchors);
    if let Some(d) = &engine.code {
        d.detect(&n, source, code_seen, &mut out);
    }
    if let Some(d) = &engine.topics {
        budget.truncated |= d.detect(&n, &mut out);
    }
    if let Some(d) = &engine.dlp {
        d.detect(text, &mut out, budget);
    }
    if let Some(d) = &engine.secrets {
        d.detect(text, secrets_seen, &mut out, budget);
    }
    if let Some(d) = &engine.url {
        d.detect(text, &mut out, budget);
    }
    if out.len() > budget.findings_left {
        out.truncate(budget.findings_left);
        budget.truncated = true;
    }
    budget.findings_left -= out.len();

    for blob in decode::find_blobs(text, &n, budget) {
        if depth >= engine.limits.max_decode_depth {
            budget.truncated = true;
            break;
        }
        let inner = scan_text(engine, &blob.decoded, source, depth + 1, budget);
        let mut seen: Vec<&'static str> = Vec::new();
        for f in inner {
            // Everything inside a blob collapses onto the blob's span; keep one finding per detector.
            if seen.contains(&f.detector) {
                continue;
            }
            seen.push(f.detector);
            out.push(Finding {
                start: blob.start,
                end: blob.end,
                ..f
            });
        }
    }
    out
}

fn hidden_text(n: &Normalized, out: &mut Vec<Finding>) {
    const DETECTOR: &str = "evasion.hidden_text";
    let h = &n.hidden;
    if let Some(s) = h.tags {
        out.push(Finding::new(Category::Injection, DETECTOR, 0.95, s.start, s.end));
    }
    if let Some(s) = h.selectors {
        out.push(Finding::new(Category::Injection, DETECTOR, 0.85, s.start, s.end));
    }
    if let Some(s) = h.bidi {
        out.push(Finding::new(Category::Injection, DETECTOR, 0.7, s.start, s.end));
    }
    if let Some(s) = h.zero_width {
        let score = if h.zero_width_count >= 3 { 0.85 } else { 0.6 };
        out.push(Finding::new(Category::Injection, DETECTOR, score, s.start, s.end));
    }
}
