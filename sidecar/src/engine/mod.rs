//! The detection engine: given the texts of a request or response, return detections (category, detector,
//! score, span) for prompt injection, sensitive data, malicious URLs, malicious code and banned topics.
//!
//! Everything expensive happens once in [`Engine::new`]: phrase lists become one Aho-Corasick automaton per
//! detector, regexes are compiled (the `regex` crate is linear-time, so catastrophic backtracking is
//! impossible by construction) and custom patterns are validated. [`Engine::scan`] then normalizes each
//! segment once ([`normalize`]), runs the detectors over the shared views, recursively scans embedded
//! encoded blobs within [`Limits`], and maps every span back to byte offsets of the original text.

pub mod classifier;
mod code;
mod confidence;
mod decode;
mod dlp;
mod error;
mod injection;
mod intern;
mod lanes;
mod mask;
pub mod normalize;
mod phrases;
mod scan;
mod secrets;
mod topic;
mod url;
mod window;

use serde::{Deserialize, Serialize};

pub use confidence::HIGH_CONFIDENCE;
pub use error::EngineError;
pub use mask::mask;

/// What the engine looks for. `Default` turns every detector on at medium sensitivity.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EngineConfig {
    /// Prompt injection and jailbreak detection; `None` turns it off.
    pub injection: Option<InjectionConfig>,
    /// Personal data and secrets; `None` turns it off.
    pub dlp: Option<DlpConfig>,
    /// URL extraction and checks; `None` turns it off.
    pub url: Option<UrlConfig>,
    /// Malicious code and commands; `None` turns it off.
    pub code: Option<CodeConfig>,
    /// Banned topics, each a named phrase set.
    pub topics: Vec<TopicConfig>,
    /// Bounds on the work a single scan may do.
    pub limits: Limits,
}

impl EngineConfig {
    /// Every detector off, default limits: what a profile that asks for nothing compiles to.
    pub fn off() -> Self {
        EngineConfig {
            injection: None,
            dlp: None,
            url: None,
            code: None,
            topics: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            injection: Some(InjectionConfig::default()),
            dlp: Some(DlpConfig::default()),
            url: Some(UrlConfig::default()),
            code: Some(CodeConfig::default()),
            topics: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How eager a detector is: `High` fires on weaker evidence (more recall, more false positives).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Low,
    #[default]
    Medium,
    High,
}

/// Prompt-injection settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct InjectionConfig {
    pub sensitivity: Sensitivity,
    /// Also run the learned second stage (see `classifier.rs`). Default: true.
    pub classifier: bool,
}

impl Default for InjectionConfig {
    fn default() -> Self {
        InjectionConfig {
            sensitivity: Sensitivity::default(),
            classifier: true,
        }
    }
}

/// Sensitive-data settings. `Default` enables every built-in type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DlpConfig {
    pub pii: Vec<PiiType>,
    pub secrets: Vec<SecretType>,
    pub custom: Vec<CustomPattern>,
}

impl Default for DlpConfig {
    fn default() -> Self {
        DlpConfig {
            pii: PiiType::ALL.to_vec(),
            secrets: SecretType::ALL.to_vec(),
            custom: Vec::new(),
        }
    }
}

/// Personal data the engine recognises and validates.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum PiiType {
    CreditCard,
    Ssn,
    Iban,
    Email,
    Phone,
    IpAddress,
}

impl PiiType {
    pub const ALL: [PiiType; 6] = [
        PiiType::CreditCard,
        PiiType::Ssn,
        PiiType::Iban,
        PiiType::Email,
        PiiType::Phone,
        PiiType::IpAddress,
    ];
}

/// Credential families the engine recognises.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SecretType {
    Aws,
    Gcp,
    Azure,
    Github,
    Gitlab,
    Slack,
    Stripe,
    Openai,
    Anthropic,
    HuggingFace,
    Jwt,
    PrivateKey,
    GenericAssignment,
}

impl SecretType {
    pub const ALL: [SecretType; 13] = [
        SecretType::Aws,
        SecretType::Gcp,
        SecretType::Azure,
        SecretType::Github,
        SecretType::Gitlab,
        SecretType::Slack,
        SecretType::Stripe,
        SecretType::Openai,
        SecretType::Anthropic,
        SecretType::HuggingFace,
        SecretType::Jwt,
        SecretType::PrivateKey,
        SecretType::GenericAssignment,
    ];
}

/// A user-defined sensitive-data pattern. Detections are named `dlp.custom.<name>`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomPattern {
    pub name: String,
    /// A `regex` crate pattern (linear time; no look-around or back-references).
    pub regex: String,
    /// Replacement text when masking; `None` masks with one `*` per character.
    #[serde(default)]
    pub mask_with: Option<String>,
}

/// URL settings. A host on the allow list (exactly or as a subdomain) is never flagged by domain rules, even
/// when it is also on the block list.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct UrlConfig {
    pub allow_domains: Vec<String>,
    pub block_domains: Vec<String>,
}

/// Malicious-code settings (none yet; present so profiles can switch the detector on and off).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CodeConfig {}

/// A banned topic: any phrase (word-boundary aware, case- and Unicode-folded) triggers `topic.<name>`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TopicConfig {
    pub name: String,
    pub phrases: Vec<String>,
}

/// Bounds on one scan. When one is hit the result has `truncated: true`; the scan never fails.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Bytes of input scanned per call, across all segments; the rest is skipped.
    pub max_scan_bytes: usize,
    /// How many times an encoded blob inside an encoded blob is decoded.
    pub max_decode_depth: u8,
    /// Total bytes of decoded blob text scanned per call.
    pub max_decoded_bytes: usize,
    /// Detections returned per call.
    pub max_detections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_scan_bytes: 1 << 20,
            max_decode_depth: 2,
            max_decoded_bytes: 256 << 10,
            max_detections: 256,
        }
    }
}

/// One piece of text to scan and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub text: &'a str,
    pub source: Source,
}

/// Who wrote a segment. `Tool` and `Document` are indirect-injection contexts (retrieved or returned text
/// that should carry no instructions); `Assistant` is model output, where code and URLs matter most.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    System,
    User,
    Assistant,
    Tool,
    Document,
    #[default]
    Unknown,
}

/// The outcome of one scan.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ScanResult {
    /// Ordered by segment, then start offset.
    pub detections: Vec<Detection>,
    /// A limit was hit: part of the input or of its decoded content was not scanned.
    pub truncated: bool,
}

/// One finding.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Detection {
    pub category: Category,
    /// Stable rule name, e.g. `injection.override`, `dlp.credit_card`, `secret.aws_access_key`.
    pub detector: &'static str,
    /// Confidence in `0.0..=1.0`; see [`Detection::is_high_confidence`].
    pub score: f32,
    /// Index into the scanned segments.
    pub segment: usize,
    /// Byte offsets into the original segment text, on char boundaries. Findings inside decoded blobs
    /// cover the whole encoded blob.
    pub start: usize,
    pub end: usize,
    /// The span can be masked with [`mask`] (sensitive data, secrets, credentials in URLs).
    pub maskable: bool,
}

/// Detection families; serialised lowercase.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Injection,
    Dlp,
    Url,
    Code,
    Topic,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Injection => "injection",
            Category::Dlp => "dlp",
            Category::Url => "url",
            Category::Code => "code",
            Category::Topic => "topic",
        }
    }
}

/// A compiled rule set for one policy. Build once, share in an `Arc`, scan from any thread.
#[derive(Debug)]
pub struct Engine {
    injection: Option<injection::Injection>,
    dlp: Option<dlp::Dlp>,
    secrets: Option<secrets::Secrets>,
    url: Option<url::UrlDetector>,
    code: Option<code::CodeDetector>,
    anchors: Option<AnchorPass>,
    topics: Option<topic::Topics>,
    custom_masks: Vec<(&'static str, String)>,
    limits: Limits,
}

impl Engine {
    /// Compiles `config`. Fails only on invalid user input (a custom regex, an empty topic), naming it.
    pub fn new(config: &EngineConfig) -> Result<Engine, EngineError> {
        let dlp_cfg = config.dlp.as_ref();
        let custom_masks = dlp_cfg
            .map(|d| {
                d.custom
                    .iter()
                    .filter_map(|c| c.mask_with.clone().map(|m| (intern::custom_detector(&c.name), m)))
                    .collect()
            })
            .unwrap_or_default();
        let secrets = dlp_cfg.map(secrets::Secrets::new);
        let code = config.code.as_ref().map(|_| code::CodeDetector::new());
        Ok(Engine {
            injection: config.injection.as_ref().map(injection::Injection::new),
            dlp: dlp_cfg.map(dlp::Dlp::new).transpose()?,
            anchors: AnchorPass::new(code.as_ref(), secrets.as_ref()),
            secrets,
            url: config.url.as_ref().map(url::UrlDetector::new),
            code,
            topics: if config.topics.is_empty() {
                None
            } else {
                Some(topic::Topics::new(&config.topics)?)
            },
            custom_masks,
            limits: config.limits.clone(),
        })
    }

    /// Scans `segments` within the configured [`Limits`]. Never panics; bounded time and memory.
    pub fn scan(&self, segments: &[Segment<'_>]) -> ScanResult {
        scan::scan(self, segments)
    }

    /// Every detector is off: a scan finds nothing, so it reads nothing.
    fn detects_nothing(&self) -> bool {
        self.injection.is_none()
            && self.dlp.is_none()
            && self.secrets.is_none()
            && self.url.is_none()
            && self.code.is_none()
            && self.topics.is_none()
    }

    /// The rule set as standalone regular expressions in the `regex` crate's syntax, one per rule: phrases
    /// become their folded parts joined by a bounded gap, detectors' regexes are given as they are. For
    /// benchmarks that run the same rules through another engine (`RegexSet`, Hyperscan). Normalization,
    /// decoding, validation (Luhn, mod-97, entropy) and scoring are not expressible this way, so such a
    /// peer does strictly less work than [`Engine::scan`].
    pub fn rule_patterns(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = &self.injection {
            d.patterns(&mut out);
        }
        if let Some(d) = &self.code {
            d.patterns(&mut out);
        }
        if let Some(d) = &self.topics {
            d.patterns(&mut out);
        }
        if let Some(d) = &self.dlp {
            d.patterns(&mut out);
        }
        if let Some(d) = &self.secrets {
            d.patterns(&mut out);
        }
        if let Some(d) = &self.url {
            d.patterns(&mut out);
        }
        out
    }

    /// Like [`mask`], but custom patterns with `mask_with` are replaced by their configured text.
    pub fn mask(&self, text: &str, detections: &[&Detection]) -> String {
        mask::mask_with(text, detections, &|detector| {
            self.custom_masks
                .iter()
                .find(|(d, _)| *d == detector)
                .map(|(_, m)| m.as_str())
        })
    }
}

/// Compiles a built-in pattern as a byte regex. Built-in patterns write their wide bounded repetitions over
/// byte classes, e.g. `(?-u:[^\n]){0,300}`: repeated N times, a Unicode class compiles to N copies of its
/// UTF-8 automaton, about eight times the memory of a byte class (2 MB instead of 250 KB for one rule).
/// A match may then start or end inside a character: [`char_span`] widens it. `None` only for a bug the
/// unit tests catch.
pub(crate) fn byte_regex(pattern: &str) -> Option<regex::bytes::Regex> {
    regex::bytes::Regex::new(pattern).ok()
}

/// `start..end` widened to the character boundaries of `text`.
pub(crate) fn char_span(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    end = end.min(text.len());
    start = start.min(end);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    (start, end)
}

/// A built-in pattern as peers (`regex::Regex`, Vectorscan) read it: the byte-class groups `(?-u:…)` and
/// `(?s-u:…)` become plain groups, which match the same characters in a Unicode-aware engine.
pub(crate) fn peer_pattern(pattern: &str) -> String {
    pattern.replace("(?-u:", "(?:").replace("(?s-u:", "(?s:")
}

/// Byte offset just after the last character before `pos` that satisfies `is_delimiter` (0 when none
/// does): the start of the token `pos` is in. Delimiters may be multi-byte (U+0085 and U+3000 are
/// whitespace), so the offset is advanced by the character's length, never by one byte.
pub(crate) fn token_start(text: &str, pos: usize, is_delimiter: impl Fn(char) -> bool) -> usize {
    text[..pos]
        .char_indices()
        .rev()
        .find(|&(_, c)| is_delimiter(c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// Indices of `literals` in the shared prefilter's pattern list `anchors`, adding the ones not there yet,
/// so that one Aho-Corasick automaton serves every rule of a detector.
pub(crate) fn intern_anchors(anchors: &mut Vec<&'static str>, literals: &[&'static str]) -> Vec<usize> {
    literals
        .iter()
        .map(|l| match anchors.iter().position(|a| a == l) {
            Some(i) => i,
            None => {
                anchors.push(l);
                anchors.len() - 1
            }
        })
        .collect()
}

/// The code and secrets detectors' prefilter literals in one automaton over the folded view: code anchors
/// first, then secrets anchors.
#[derive(Debug)]
struct AnchorPass {
    ac: lanes::Dfa,
    code: usize,
    secrets: usize,
}

impl AnchorPass {
    fn new(code: Option<&code::CodeDetector>, secrets: Option<&secrets::Secrets>) -> Option<AnchorPass> {
        let code = code.map_or(&[][..], |c| c.anchors());
        let secrets = secrets.map_or(&[][..], |s| s.anchors());
        if code.is_empty() && secrets.is_empty() {
            // Nothing to look for: no pass over the text at all.
            return None;
        }
        let ac = anchor_automaton(code.iter().chain(secrets))?;
        Some(AnchorPass {
            ac,
            code: code.len(),
            secrets: secrets.len(),
        })
    }

    /// Which anchors occur in `folded`: the code detector's, then the secrets detector's.
    fn seen(&self, folded: &str) -> (Vec<bool>, usize) {
        (
            anchors_seen(&self.ac, folded, self.code + self.secrets),
            self.code,
        )
    }
}

/// A DFA over prefilter literals (one table step per byte; small, as the literals are ASCII).
fn anchor_automaton<'a>(literals: impl IntoIterator<Item = &'a &'static str>) -> Option<lanes::Dfa> {
    lanes::build(literals)
}

/// Whether any of a rule's anchors was seen; an anchor the pass has no answer for counts as seen, so a
/// missing prefilter costs speed, never a detection.
pub(crate) fn any_seen(anchors: &[usize], seen: &[bool]) -> bool {
    anchors.iter().any(|&a| seen.get(a).copied().unwrap_or(true))
}

/// Which of `anchors` occur in `folded`, with an automaton of their own: for detector-level tests.
#[cfg(test)]
pub(crate) fn anchors_in(anchors: &[&'static str], folded: &str) -> Vec<bool> {
    match anchor_automaton(anchors) {
        Some(ac) => anchors_seen(&ac, folded, anchors.len()),
        None => vec![false; anchors.len()],
    }
}

/// Which of the `anchor_count` prefilter literals occur in `text`: one overlapping pass of the automaton,
/// stopping early once every literal has been seen. Rules whose anchors are all absent are skipped without
/// running their regex.
fn anchors_seen(prefilter: &lanes::Dfa, text: &str, anchor_count: usize) -> Vec<bool> {
    let mut seen = vec![false; anchor_count];
    let mut remaining = anchor_count;
    lanes::for_each_match(prefilter, text.as_bytes(), |i, _| {
        if let Some(s) = seen.get_mut(i)
            && !*s
        {
            *s = true;
            remaining -= 1;
        }
        remaining > 0
    });
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter_anchors_fold_to_themselves() {
        // The shared anchor pass reads the folded view. Code rules match there too, so their anchors
        // need only be folded text (lowercase); secrets rules match the original text, so their anchors
        // must read the same folded as in the text (ASCII, lowercase, no whitespace to collapse).
        let e = Engine::new(&EngineConfig::default()).unwrap();
        let code = e.code.as_ref().unwrap().anchors();
        let secrets = e.secrets.as_ref().unwrap().anchors();
        assert!(!code.is_empty() && !secrets.is_empty());
        for a in code {
            assert!(a.is_ascii() && a.to_ascii_lowercase() == *a, "{a:?}");
        }
        for a in secrets {
            assert!(a.is_ascii(), "{a:?}");
            assert_eq!(normalize::fold_phrase(a, false), *a, "{a:?}");
        }
        let pass = e.anchors.as_ref().unwrap();
        assert_eq!((pass.code, pass.secrets), (code.len(), secrets.len()));
    }

    #[test]
    fn without_code_and_secrets_detectors_there_is_no_anchor_pass() {
        let config = EngineConfig {
            code: None,
            dlp: None,
            ..EngineConfig::default()
        };
        assert!(Engine::new(&config).unwrap().anchors.is_none());
        assert!(Engine::new(&EngineConfig::default()).unwrap().anchors.is_some());
    }

    #[test]
    fn a_rule_without_a_prefilter_answer_still_runs() {
        assert!(any_seen(&[3], &[]));
        assert!(!any_seen(&[0], &[false]));
        assert!(any_seen(&[0, 1], &[false, true]));
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }

    #[test]
    fn default_config_deserialises_from_empty_object() {
        let cfg: EngineConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, EngineConfig::default());
    }

    #[test]
    fn config_deserialises_camel_case() {
        let cfg: EngineConfig = serde_json::from_str(
            r#"{"injection":{"sensitivity":"high"},"dlp":{"pii":["creditCard"],"secrets":["aws"],
                "custom":[{"name":"emp","regex":"EMP-\\d{6}","maskWith":"EMP-######"}]},
                "url":{"allowDomains":["example.com"]},"code":null,"topics":[{"name":"weapons","phrases":["build a bomb"]}],
                "limits":{"maxDetections":10}}"#,
        )
        .unwrap();
        assert_eq!(cfg.injection.unwrap().sensitivity, Sensitivity::High);
        assert!(cfg.code.is_none());
        assert_eq!(cfg.limits.max_detections, 10);
        assert_eq!(cfg.limits.max_decode_depth, 2);
    }

    #[test]
    fn bad_custom_regex_is_an_error_naming_the_pattern() {
        let mut cfg = EngineConfig::default();
        if let Some(d) = cfg.dlp.as_mut() {
            d.custom.push(CustomPattern {
                name: "broken".into(),
                regex: "(unclosed".into(),
                mask_with: None,
            });
        }
        let err = Engine::new(&cfg).unwrap_err().to_string();
        assert!(err.contains("broken"), "{err}");
    }

    #[test]
    fn rule_patterns_cover_every_detector_and_compile() {
        let engine = Engine::new(&EngineConfig::default()).unwrap();
        let patterns = engine.rule_patterns();
        assert!(patterns.len() > 500, "{}", patterns.len());
        for p in &patterns {
            assert!(regex::Regex::new(p).is_ok(), "{p}");
        }
        assert!(patterns.iter().any(|p| p.contains("ignore")));
        let off = Engine::new(&EngineConfig {
            injection: None,
            ..EngineConfig::default()
        })
        .unwrap();
        assert!(off.rule_patterns().len() < 100);
    }

    #[test]
    fn category_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Category::Dlp).unwrap(), "\"dlp\"");
    }
}
