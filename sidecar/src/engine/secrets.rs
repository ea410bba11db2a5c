//! Credentials (category `dlp`, detectors `secret.*`): cloud keys, VCS and SaaS tokens, LLM API keys, JWTs,
//! PEM private keys and high-entropy values assigned to secret-looking names. Prefixed token formats are
//! matched exactly (prefix, alphabet, length); context-dependent ones (AWS secret keys, generic
//! assignments) need their context and enough Shannon entropy. A literal prefilter skips every rule whose
//! anchor does not occur, so clean text costs one Aho-Corasick pass.

use base64::Engine as _;
use regex::bytes::{Captures, Regex};

use super::scan::{Budget, Finding};
use super::window::Windows;
use super::{Category, DlpConfig, SecretType};

/// A generic assignment's name, optional quote and whitespace lie within this many bytes before its `=`
/// or `:`: the longest name is 16 bytes (`access_token` spelled with `ſ` and the Kelvin sign, which `(?i)`
/// also matches), then a quote and up to eight whitespace chars of up to 3 bytes each.
const ASSIGNMENT_BEFORE: usize = 48;
/// The operator's rest, whitespace and opening quote lie within this many bytes after its first byte; the
/// value holds no ASCII whitespace, so the window's run on to the next whitespace covers it (see
/// [`Windows::around`]).
const ASSIGNMENT_AFTER: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    None,
    Jwt,
    Entropy,
    /// The match is a PEM header: the span runs to the matching footer (see [`pem_end`]).
    PemBody,
}

#[derive(Debug)]
struct Rule {
    detector: &'static str,
    regex: Regex,
    /// Capture group holding the secret (0 = whole match).
    group: usize,
    score: f32,
    check: Check,
    anchors: Vec<usize>,
    /// Confirmed only in windows around `=` and `:` (every match holds one), not over the whole text:
    /// its anchors (`key`, `token`, `pass`...) are common words, so they rarely rule the text out.
    around_assignment: bool,
}

#[derive(Debug)]
pub(crate) struct Secrets {
    /// Prefilter literals (lowercase); the engine finds them all in one pass with the code detector's.
    anchors: Vec<&'static str>,
    pem_footer: Option<Regex>,
    rules: Vec<Rule>,
}

type Spec = (
    SecretType,
    &'static str,
    &'static str,
    usize,
    f32,
    Check,
    &'static [&'static str],
);

/// A PEM private key's header; the footer is found by [`pem_end`].
const PEM_HEADER: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";
/// A PEM private key's footer.
const PEM_FOOTER: &str = r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";
/// Longest PEM body searched for its footer.
const PEM_MAX_BODY: usize = 8192;
/// The whole PEM rule as one regex, as peers (`regex::Regex`, Vectorscan) run it.
const PEM_PEER: &str = r"(?s)(-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.{0,8192}?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z))";

const SPECS: &[Spec] = &[
    (
        SecretType::Aws,
        "secret.aws_access_key",
        r"(?-u:\b)((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?-u:\b)",
        1,
        0.95,
        Check::None,
        &["akia", "asia", "abia", "acca"],
    ),
    (
        SecretType::Aws,
        "secret.aws_secret_key",
        r#"(?i)aws(?-u:[^\n]){0,30}(?:secret|private)(?-u:[^\n]){0,30}?[=:]\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        1,
        0.9,
        Check::Entropy,
        &["aws"],
    ),
    (
        SecretType::Gcp,
        "secret.gcp_api_key",
        r"(?-u:\b)(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        1,
        0.95,
        Check::None,
        &["aiza"],
    ),
    (
        SecretType::Gcp,
        "secret.gcp_service_account",
        r#""private_key_id"\s*:\s*"([a-f0-9]{40})""#,
        1,
        0.95,
        Check::None,
        &["private_key_id"],
    ),
    (
        SecretType::Azure,
        "secret.azure_storage_key",
        r"(?i:accountkey)=([A-Za-z0-9+/]{86}==)",
        1,
        0.95,
        Check::None,
        &["accountkey="],
    ),
    (
        SecretType::Azure,
        "secret.azure_sas",
        r"[?&]sv=[0-9]{4}-[0-9]{2}-[0-9]{2}(?-u:[^\s\x22'<>]){0,400}?[?&]sig=([A-Za-z0-9%+/]{30,}(?:=|%3[Dd]){0,2})",
        1,
        0.9,
        Check::None,
        &["sig="],
    ),
    (
        SecretType::Github,
        "secret.github_token",
        r"(?-u:\b)((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36})(?-u:\b)",
        1,
        0.95,
        Check::None,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
    ),
    (
        SecretType::Github,
        "secret.github_token",
        r"(?-u:\b)(github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?-u:\b)",
        1,
        0.95,
        Check::None,
        &["github_pat_"],
    ),
    (
        SecretType::Gitlab,
        "secret.gitlab_token",
        r"(?-u:\b)(glpat-[A-Za-z0-9_-]{20})(?:[^A-Za-z0-9_-]|$)",
        1,
        0.95,
        Check::None,
        &["glpat-"],
    ),
    (
        SecretType::Slack,
        "secret.slack_token",
        r"(?-u:\b)(xox[baprs]-[0-9]{8,13}-[A-Za-z0-9-]{8,})",
        1,
        0.95,
        Check::None,
        &["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"],
    ),
    (
        SecretType::Slack,
        "secret.slack_webhook",
        r"(https://hooks\.slack\.com/services/T[A-Z0-9]{8,}/B[A-Z0-9]{8,}/[A-Za-z0-9]{20,})",
        1,
        0.95,
        Check::None,
        &["hooks.slack.com"],
    ),
    (
        SecretType::Stripe,
        "secret.stripe_key",
        r"(?-u:\b)((?:sk|rk)_live_[A-Za-z0-9]{24,99})(?-u:\b)",
        1,
        0.95,
        Check::None,
        &["sk_live_", "rk_live_"],
    ),
    (
        SecretType::Openai,
        "secret.openai_key",
        r"(?-u:\b)(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,})",
        1,
        0.95,
        Check::None,
        &["t3blbkfj"],
    ),
    (
        SecretType::Openai,
        "secret.openai_key",
        r"(?-u:\b)(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})",
        1,
        0.9,
        Check::None,
        &["sk-proj-", "sk-svcacct-", "sk-admin-"],
    ),
    (
        SecretType::Openai,
        "secret.openai_key",
        r"(?-u:\b)(sk-[A-Za-z0-9]{48})(?-u:\b)",
        1,
        0.85,
        Check::Entropy,
        &["sk-"],
    ),
    (
        SecretType::Anthropic,
        "secret.anthropic_key",
        r"(?-u:\b)(sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{32,})",
        1,
        0.95,
        Check::None,
        &["sk-ant-"],
    ),
    (
        SecretType::HuggingFace,
        "secret.huggingface_token",
        r"(?-u:\b)(hf_[A-Za-z0-9]{34})(?-u:\b)",
        1,
        0.95,
        Check::None,
        &["hf_"],
    ),
    (
        SecretType::Jwt,
        "secret.jwt",
        r"(?-u:\b)(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
        1,
        0.9,
        Check::Jwt,
        &["eyj"],
    ),
    (
        SecretType::PrivateKey,
        "secret.private_key",
        PEM_HEADER,
        0,
        0.98,
        Check::PemBody,
        &["private key"],
    ),
    (
        SecretType::GenericAssignment,
        "secret.generic_assignment",
        r#"(?i)(?-u:\b)(?:password|passwd|pwd|passphrase|secret|secret[_-]?key|client[_-]?secret|api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|private[_-]?key|token|credentials?|db[_-]?pass(?:word)?)["']?\s{0,8}(?:=>|:=|=|:)\s{0,8}["'`]?((?-u:[^\s"'`,;]){8,200})"#,
        1,
        0.85,
        Check::Entropy,
        &["pass", "pwd", "secret", "key", "token", "credential"],
    ),
];

impl Secrets {
    pub(crate) fn new(config: &DlpConfig) -> Secrets {
        let mut anchors: Vec<&'static str> = Vec::new();
        let mut rules = Vec::new();
        for &(kind, detector, pattern, group, score, check, literals) in SPECS {
            if !config.secrets.contains(&kind) {
                continue;
            }
            // Built-in patterns; a failure is a bug caught by the unit tests, never a runtime error.
            let Some(regex) = super::byte_regex(pattern) else {
                continue;
            };
            let ids = super::intern_anchors(&mut anchors, literals);
            rules.push(Rule {
                detector,
                regex,
                group,
                score,
                check,
                anchors: ids,
                around_assignment: kind == SecretType::GenericAssignment,
            });
        }
        Secrets {
            anchors,
            pem_footer: super::byte_regex(PEM_FOOTER),
            rules,
        }
    }

    pub(crate) fn patterns(&self, out: &mut Vec<String>) {
        out.extend(self.rules.iter().map(|r| match r.check {
            Check::PemBody => PEM_PEER.to_string(),
            _ => super::peer_pattern(r.regex.as_str()),
        }));
    }

    pub(crate) fn anchors(&self) -> &[&'static str] {
        &self.anchors
    }

    /// Finds secrets in `text`; `seen` says which of [`Secrets::anchors`] occur in its folded view (each
    /// anchor is ASCII and folds to itself, so one that occurs in `text` in any case occurs there).
    pub(crate) fn detect(&self, text: &str, seen: &[bool], out: &mut Vec<Finding>, budget: &Budget) {
        let mut assignments: Option<Windows> = None;
        for rule in &self.rules {
            if !super::any_seen(&rule.anchors, seen) {
                continue;
            }
            let complete = if rule.around_assignment {
                let windows = assignments.get_or_insert_with(|| {
                    let ops = memchr::memchr2_iter(b'=', b':', text.as_bytes());
                    Windows::around(text, ops, ASSIGNMENT_BEFORE, ASSIGNMENT_AFTER)
                });
                windows
                    .captures_iter_bytes(&rule.regex, text)
                    .all(|c| self.confirm(rule, text, &c, out, budget))
            } else {
                rule.regex
                    .captures_iter(text.as_bytes())
                    .all(|c| self.confirm(rule, text, &c, out, budget))
            };
            if !complete {
                return;
            }
        }
    }

    /// Checks one match of `rule` and records it unless a finding already covers it. Returns `false` once
    /// `out` holds as many findings as the budget allows.
    fn confirm(
        &self,
        rule: &Rule,
        text: &str,
        c: &Captures<'_>,
        out: &mut Vec<Finding>,
        budget: &Budget,
    ) -> bool {
        if out.len() >= budget.findings_left {
            return false;
        }
        let Some(m) = c.get(rule.group) else {
            return true;
        };
        // Byte regexes (see `byte_regex`): the span is widened to character boundaries.
        let (start, mut end) = super::char_span(text, m.start(), m.end());
        let value = &text[start..end];
        let ok = match rule.check {
            Check::None => true,
            Check::Jwt => jwt_header_ok(value),
            Check::Entropy => high_entropy(value),
            Check::PemBody => {
                end = pem_end(self.pem_footer.as_ref(), text, end);
                true
            }
        };
        let dup = out
            .iter()
            .any(|f| f.category == Category::Dlp && f.start <= start && end <= f.end);
        if ok && !dup {
            out.push(Finding::new(Category::Dlp, rule.detector, rule.score, start, end));
        }
        true
    }
}

/// End of a PEM private key whose header ends at `from`: the end of its footer when one starts within
/// [`PEM_MAX_BODY`] bytes, else the end of the text when that is as near, else `PEM_MAX_BODY` bytes on (a
/// key cut short is still a key).
fn pem_end(footer: Option<&Regex>, text: &str, from: usize) -> usize {
    let limit = from.saturating_add(PEM_MAX_BODY).min(text.len());
    // The footer may start up to `limit` and runs on past it.
    let search_end = limit.saturating_add(64).min(text.len());
    if let Some(m) = footer.and_then(|f| f.find(&text.as_bytes()[from..search_end]))
        && from + m.start() <= limit
    {
        return from + m.end();
    }
    super::char_span(text, from, limit).1
}

/// The header of a JWT decodes to a JSON object with an `alg`.
fn jwt_header_ok(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

pub(crate) fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let len = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) / len)
        .map(|p| -p * p.log2())
        .sum()
}

/// Looks like a real secret value rather than a placeholder, variable reference or type name.
fn high_entropy(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const PLACEHOLDERS: [&str; 22] = [
        "xxxx",
        "****",
        "<",
        ">",
        "${",
        "{{",
        "$(",
        "your",
        "changeme",
        "example",
        "placeholder",
        "redacted",
        "os.environ",
        "process.env",
        "getenv",
        "env(",
        "env.",
        "config.",
        "settings.",
        "secrets.",
        "self.",
        "none",
    ];
    // A link after `password:` in prose ("keep your current password: https://…") is not a password.
    let link = lower.starts_with("http://") || lower.starts_with("https://");
    if link
        || PLACEHOLDERS.iter().any(|p| lower.contains(p))
        || lower.starts_with('$')
        || lower.starts_with('%')
    {
        return false;
    }
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
        value.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    // Identifiers and calls (`get_password()`, `str`, `Optional[str]`) are code, not values.
    let identifier = value
        .bytes()
        .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'(' | b')' | b'[' | b']'));
    !identifier && classes >= 2 && shannon_entropy(value) >= 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::normalize::normalize;

    fn found(text: &str) -> Vec<(&'static str, String)> {
        static S: std::sync::LazyLock<Secrets> =
            std::sync::LazyLock::new(|| Secrets::new(&DlpConfig::default()));
        let s = &*S;
        let mut out = Vec::new();
        let budget = Budget {
            decoded_bytes_left: 0,
            blobs_left: 0,
            findings_left: 100,
            truncated: false,
        };
        let seen = crate::engine::anchors_in(s.anchors(), &normalize(text).folded);
        s.detect(text, &seen, &mut out, &budget);
        out.into_iter()
            .map(|f| (f.detector, text[f.start..f.end].to_string()))
            .collect()
    }

    fn finds(text: &str, detector: &str, value: &str) {
        let f = found(text);
        assert!(
            f.iter().any(|(d, v)| *d == detector && v == value),
            "{text}: {f:?}"
        );
    }

    #[test]
    fn all_specs_compile() {
        for spec in SPECS {
            assert!(super::super::byte_regex(spec.2).is_some(), "{}", spec.1);
        }
    }

    #[test]
    fn prefixed_tokens() {
        finds(
            "key AKIAZ7XQ3MPLR5TNWB2E here",
            "secret.aws_access_key",
            "AKIAZ7XQ3MPLR5TNWB2E",
        );
        finds(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8nR2vT4k",
            "secret.aws_secret_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8nR2vT4k",
        );
        finds(
            "k=AIzaSyD3x8Q-2kLm9vNpQrStUvWxYz012345678",
            "secret.gcp_api_key",
            "AIzaSyD3x8Q-2kLm9vNpQrStUvWxYz012345678",
        );
        let gh = format!("ghp_{}", "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5");
        finds(&format!("token: {gh}"), "secret.github_token", &gh);
        finds(
            "glpat-x9Yz8W7v6U5t4S3r2Q1p end",
            "secret.gitlab_token",
            "glpat-x9Yz8W7v6U5t4S3r2Q1p",
        );
        finds(
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "secret.slack_token",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        );
        finds(
            "sk_live_51H8xYzAbCdEfGhIjKlMnOpQr",
            "secret.stripe_key",
            "sk_live_51H8xYzAbCdEfGhIjKlMnOpQr",
        );
        let oa = "sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vx7Za9Ce1Gi3Km5Oq7Su9Wy1Ac3Eg5";
        finds(oa, "secret.openai_key", oa);
        let ant = "sk-ant-api03-Xy9_Ab3De5Gh7Jk9Mn1Pq3St5Vx7Za9Ce1Gi3Km5Oq7Su9Wy1-AA";
        finds(ant, "secret.anthropic_key", ant);
        finds(
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
            "secret.huggingface_token",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        );
    }

    #[test]
    fn jwt_needs_a_json_header_with_alg() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        finds(&format!("Bearer {jwt}"), "secret.jwt", jwt);
        assert!(found("eyJub3RhIjoiand0In0.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU").is_empty());
    }

    #[test]
    fn pem_private_key_and_service_account() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----";
        finds(&format!("here:\n{pem}\nbye"), "secret.private_key", pem);
        finds(
            r#"{"type":"service_account","private_key_id":"0123456789abcdef0123456789abcdef01234567"}"#,
            "secret.gcp_service_account",
            "0123456789abcdef0123456789abcdef01234567",
        );
        assert!(found("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn pem_bodies_run_to_their_footer_or_a_bounded_length() {
        let header = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
        let footer = "-----END ENCRYPTED PRIVATE KEY-----";
        // The footer found past multi-byte characters, and a footer right at the length bound.
        let body = "Zé9+/\n".repeat(100);
        let pem = format!("{header}\n{body}{footer}");
        finds(&format!("key: {pem} end"), "secret.private_key", &pem);
        let body = "A".repeat(PEM_MAX_BODY);
        let pem = format!("{header}{body}{footer}");
        finds(&format!("{pem}\nmore"), "secret.private_key", &pem);
        // No footer: to the end of the text when near, else PEM_MAX_BODY bytes (on a char boundary).
        let cut = format!("{header}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
        finds(&format!("x {cut}"), "secret.private_key", &cut);
        let long = format!("{header}{}", "é".repeat(PEM_MAX_BODY));
        finds(&long, "secret.private_key", &long[..header.len() + PEM_MAX_BODY]);
        let odd = format!("{header}x{}", "é".repeat(PEM_MAX_BODY));
        // Widened to a character boundary.
        finds(
            &odd,
            "secret.private_key",
            &odd[..header.len() + PEM_MAX_BODY + 1],
        );
    }

    #[test]
    fn generic_assignments_need_entropy() {
        finds(
            "DB_PASSWORD=Xk9#mQ2$vL8pR4wZ",
            "secret.generic_assignment",
            "Xk9#mQ2$vL8pR4wZ",
        );
        finds(
            "api_key: \"a8f5f167f44f4964e6c998dee827110c\"",
            "secret.generic_assignment",
            "a8f5f167f44f4964e6c998dee827110c",
        );
        for t in [
            "password: str",
            "def login(password: Optional[str]) -> bool:",
            "password = os.environ['DB_PASSWORD']",
            "api_key=YOUR_API_KEY_HERE",
            "token: ${{ secrets.GITHUB_TOKEN }}",
            "secret: changeme123",
            "The password must contain 12 characters.",
            "password=aaaaaaaaaaaa",
            "Keep your current password: https://account.example.com/owa/keep",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn assignments_are_found_with_spacing_and_wide_whitespace() {
        let value = "Xk9#mQ2$vL8pR4wZ";
        for t in [
            format!("password   =   {value}"),
            format!("client_secret\u{3000}:\u{3000}'{value}'"),
            format!("{}db_password => \"{value}\"", "x ".repeat(600)),
            format!("access-token:={value}"),
            format!(
                "ACCEſſ_TO\u{212A}EN\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}={value}"
            ),
        ] {
            finds(&t, "secret.generic_assignment", value);
        }
    }

    /// The generic assignment rule is confirmed in windows around `=` and `:`; it must find exactly what a
    /// search of the whole text finds.
    #[test]
    fn assignment_windows_find_exactly_what_the_whole_text_does() {
        const PIECES: &[&str] = &[
            "password",
            "PASSWD",
            "client-secret",
            "api_key",
            "Token",
            "credentials",
            "db_pass",
            "secret_key",
            "=",
            ":",
            "=>",
            ":=",
            "\"",
            "'",
            "`",
            " ",
            "   ",
            "\t",
            "\n",
            "\u{3000}",
            "\u{a0}",
            ",",
            ";",
            "Xk9#mQ2$vL8pR4wZ",
            "a8f5f167f44f4964e6c998dee827110c",
            "é",
            "x",
            "passwordpassword",
            "ACCEſſ_TO\u{212A}EN",
            "\u{2003}",
        ];
        let rule = Secrets::new(&DlpConfig::default())
            .rules
            .into_iter()
            .find(|r| r.around_assignment)
            .unwrap();
        let spans = |found: &mut dyn Iterator<Item = Captures<'_>>| -> Vec<(usize, usize)> {
            found
                .map(|c| c.get(1).map(|m| (m.start(), m.end())).unwrap())
                .collect()
        };
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(2))
            .for_each(|bytes: &[u8]| {
                let text: String = bytes
                    .iter()
                    .map(|&b| PIECES[usize::from(b) % PIECES.len()])
                    .collect();
                let ops = memchr::memchr2_iter(b'=', b':', text.as_bytes());
                let windows = Windows::around(&text, ops, ASSIGNMENT_BEFORE, ASSIGNMENT_AFTER);
                let windowed = spans(&mut windows.captures_iter_bytes(&rule.regex, &text));
                let whole = spans(&mut rule.regex.captures_iter(text.as_bytes()));
                assert_eq!(windowed, whole, "{text:?}");
            });
    }

    #[test]
    fn lookalike_words_are_not_tokens() {
        for t in [
            "the skies are grey",
            "ghp_short",
            "AKIA is a prefix",
            "sk-ant is Anthropic's prefix",
            "hf_hub_download(repo)",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }
}
