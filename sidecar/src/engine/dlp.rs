//! Personal data (category `dlp`): payment cards, US SSNs, IBANs, e-mail addresses, phone numbers and IP
//! addresses, plus the profile's custom patterns. Every candidate from a regex is validated (Luhn and issuer
//! ranges, SSA-invalid ranges, mod-97, parsers) before it is reported. Runs on the original text: digits
//! and case matter here, so no leetspeak or case folding.

use regex::Regex;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::scan::{Budget, Finding};
use super::window::{Windows, byte_hits, digit_hits};
use super::{Category, DlpConfig, EngineError, PiiType, intern};

#[derive(Debug)]
struct Custom {
    detector: &'static str,
    regex: Regex,
}

#[derive(Debug)]
pub(crate) struct Dlp {
    card: Option<Regex>,
    ssn: Option<Regex>,
    iban: Option<Regex>,
    email: Option<Regex>,
    phone: Option<Regex>,
    ipv4: Option<Regex>,
    ipv6: Option<Regex>,
    custom: Vec<Custom>,
}

fn re(enabled: bool, pattern: &str) -> Option<Regex> {
    if enabled { Regex::new(pattern).ok() } else { None }
}

impl Dlp {
    pub(crate) fn new(config: &DlpConfig) -> Result<Dlp, EngineError> {
        let on = |t: PiiType| config.pii.contains(&t);
        let mut custom = Vec::with_capacity(config.custom.len());
        for c in &config.custom {
            if c.name.trim().is_empty() {
                return Err(EngineError::InvalidCustomPattern {
                    name: c.name.clone(),
                    reason: "empty name",
                });
            }
            let regex = regex::RegexBuilder::new(&c.regex)
                .size_limit(1 << 20)
                .build()
                .map_err(|source| EngineError::InvalidCustomRegex {
                    name: c.name.clone(),
                    source,
                })?;
            if regex.is_match("") {
                return Err(EngineError::InvalidCustomPattern {
                    name: c.name.clone(),
                    reason: "regex matches the empty string",
                });
            }
            custom.push(Custom {
                detector: intern::custom_detector(&c.name),
                regex,
            });
        }
        Ok(Dlp {
            card: re(on(PiiType::CreditCard), r"(?-u:\b)\d(?:[ -]?\d){11,18}(?-u:\b)"),
            ssn: re(
                on(PiiType::Ssn),
                r"(?-u:\b)(\d{3})([- ])(\d{2})([- ])(\d{4})(?-u:\b)",
            ),
            iban: re(
                on(PiiType::Iban),
                r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
            ),
            email: re(
                on(PiiType::Email),
                r"(?-u:\b)[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?-u:\b)",
            ),
            phone: re(
                on(PiiType::Phone),
                r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|(?-u:\b)\d{3}[.-]\d{3}[.-]\d{4}(?-u:\b)|(?-u:\b)0\d{1,4}[ ]\d{2,4}[ ]\d{2,4}(?:[ ]\d{2,4}){0,2}(?-u:\b)|(?-u:\b)0\d{2,4}[ /-]\d{5,8}(?-u:\b))",
            ),
            ipv4: re(on(PiiType::IpAddress), r"(?-u:\b)(?:\d{1,3}\.){3}\d{1,3}(?-u:\b)"),
            ipv6: re(
                on(PiiType::IpAddress),
                r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:%[0-9a-z]+)?",
            ),
            custom,
        })
    }

    pub(crate) fn patterns(&self, out: &mut Vec<String>) {
        let builtin = [
            &self.card,
            &self.ssn,
            &self.iban,
            &self.email,
            &self.phone,
            &self.ipv4,
            &self.ipv6,
        ];
        out.extend(builtin.into_iter().flatten().map(|r| r.as_str().to_string()));
        out.extend(self.custom.iter().map(|c| c.regex.as_str().to_string()));
    }

    pub(crate) fn detect(&self, text: &str, out: &mut Vec<Finding>, budget: &Budget) {
        self.detect_in(text, &DlpWindows::new(text), out, budget);
    }

    /// [`Dlp::detect`] with given windows; tests compare it against whole-text windows.
    fn detect_in(&self, text: &str, w: &DlpWindows, out: &mut Vec<Finding>, budget: &Budget) {
        let cap = budget.findings_left;
        let full = |out: &Vec<Finding>| out.len() >= cap;
        if let Some(r) = &self.card {
            for m in w.card.find_iter(r, text) {
                if full(out) {
                    return;
                }
                if valid_card(m.as_str()) {
                    out.push(Finding::new(
                        Category::Dlp,
                        "dlp.credit_card",
                        0.95,
                        m.start(),
                        m.end(),
                    ));
                }
            }
        }
        if let Some(r) = &self.ssn {
            for c in w.ssn.captures_iter(r, text) {
                if full(out) {
                    return;
                }
                let (Some(m), Some(a), Some(s1), Some(g), Some(s2), Some(n)) =
                    (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4), c.get(5))
                else {
                    continue;
                };
                let glued = neighbours(text, m.start(), m.end(), |c| c == '-' || c.is_ascii_digit());
                if s1.as_str() == s2.as_str() && !glued && valid_ssn(a.as_str(), g.as_str(), n.as_str()) {
                    let score = if s1.as_str() == "-" { 0.9 } else { 0.75 };
                    out.push(Finding::new(Category::Dlp, "dlp.ssn", score, m.start(), m.end()));
                }
            }
        }
        if let Some(r) = &self.iban {
            for m in w.iban.find_iter(r, text) {
                if full(out) {
                    return;
                }
                let compact: String = m.as_str().chars().filter(|c| *c != ' ').collect();
                if valid_iban(&compact) {
                    out.push(Finding::new(Category::Dlp, "dlp.iban", 0.95, m.start(), m.end()));
                }
            }
        }
        if let Some(r) = &self.email {
            for m in w.email.find_iter(r, text) {
                if full(out) {
                    return;
                }
                if in_url(text, m.start()) {
                    continue;
                }
                out.push(Finding::new(Category::Dlp, "dlp.email", 0.9, m.start(), m.end()));
            }
        }
        if let Some(r) = &self.phone {
            for m in w.phone.find_iter(r, text) {
                if full(out) {
                    return;
                }
                let s = m.as_str().trim_end();
                let digits = s.bytes().filter(u8::is_ascii_digit).count();
                let glued = neighbours(text, m.start(), m.start() + s.len(), |c| {
                    c.is_ascii_alphanumeric() || c == '.' || c == '/' || c == ':' || c == '-'
                });
                if (8..=15).contains(&digits)
                    && !glued
                    && !continues_digit_groups(text, m.start(), m.start() + s.len())
                    && !covered(out, m.start(), m.start() + s.len())
                    && !looks_like_date(s)
                {
                    let score = if s.starts_with('+') { 0.85 } else { 0.75 };
                    out.push(Finding::new(
                        Category::Dlp,
                        "dlp.phone",
                        score,
                        m.start(),
                        m.start() + s.len(),
                    ));
                }
            }
        }
        if let Some(r) = &self.ipv4 {
            for m in w.ipv4.find_iter(r, text) {
                if full(out) {
                    return;
                }
                let glued = neighbours(text, m.start(), m.end(), |c| c == '.' || c.is_ascii_digit());
                let version = tail(&text[..m.start()], 16).trim_end().to_ascii_lowercase();
                let ip = m.as_str().parse::<Ipv4Addr>();
                let notable =
                    ip.is_ok_and(|ip| !(ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast()));
                if !glued
                    && notable
                    && !in_url(text, m.start())
                    && !version.ends_with("version")
                    && !version.ends_with('v')
                {
                    out.push(Finding::new(
                        Category::Dlp,
                        "dlp.ip_address",
                        0.8,
                        m.start(),
                        m.end(),
                    ));
                }
            }
        }
        if let Some(r) = &self.ipv6 {
            for m in w.ipv6.find_iter(r, text) {
                if full(out) {
                    return;
                }
                let s = m.as_str();
                let glued = neighbours(text, m.start(), m.end(), |c| {
                    c.is_ascii_alphanumeric() || c == ':'
                });
                let groups = s.split(':').filter(|g| !g.is_empty()).count();
                let addr = s.split('%').next().unwrap_or(s);
                if !glued && groups >= 3 && addr.parse::<Ipv6Addr>().is_ok() && !in_url(text, m.start()) {
                    out.push(Finding::new(
                        Category::Dlp,
                        "dlp.ip_address",
                        0.8,
                        m.start(),
                        m.end(),
                    ));
                }
            }
        }
        for c in &self.custom {
            for m in c.regex.find_iter(text) {
                if full(out) {
                    return;
                }
                if m.start() < m.end() {
                    out.push(Finding::new(Category::Dlp, c.detector, 0.9, m.start(), m.end()));
                }
            }
        }
    }
}

/// Where each built-in pattern can match (see [`super::window`]). Every match lies within these distances
/// of a trigger byte it contains, and a window with fewer digits than a valid match needs is dropped: a
/// card has 13 to 19 digits, an SSN 9, a phone number 8 to 15, an IPv4 address at least 4.
struct DlpWindows {
    card: Windows,
    ssn: Windows,
    phone: Windows,
    ipv4: Windows,
    iban: Windows,
    email: Windows,
    ipv6: Windows,
}

impl DlpWindows {
    fn new(text: &str) -> DlpWindows {
        let bytes = text.as_bytes();
        let digit = |b: u8| b.is_ascii_digit();
        let numbers = Windows::around(text, digit_hits(text), 8, 8);
        // IBAN: its first digit follows two capital letters; up to 30 more characters follow.
        let iban_start =
            |p: usize| p >= 2 && bytes[p - 2].is_ascii_uppercase() && bytes[p - 1].is_ascii_uppercase();
        DlpWindows {
            card: numbers.with_at_least(text, digit, 13),
            ssn: numbers.with_at_least(text, digit, 9),
            phone: numbers.with_at_least(text, digit, 8),
            ipv4: numbers.with_at_least(text, digit, 4),
            iban: Windows::around(text, digit_hits(text).filter(|&p| iban_start(p)), 4, 80),
            // E-mail: a local part of up to 64 characters.
            email: Windows::around(text, byte_hits(text, b'@'), 72, 8),
            ipv6: Windows::around(text, byte_hits(text, b':'), 48, 8).with_at_least(text, |b| b == b':', 2),
        }
    }

    #[cfg(test)]
    fn whole(text: &str) -> DlpWindows {
        let w = || Windows::whole(text);
        DlpWindows {
            card: w(),
            ssn: w(),
            phone: w(),
            ipv4: w(),
            iban: w(),
            email: w(),
            ipv6: w(),
        }
    }
}

/// The last `max` bytes of `text` or a little more, on a char boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    &text[start..]
}

/// The character right before or after the span matches `glue` (the match is part of something longer).
fn neighbours(text: &str, start: usize, end: usize, glue: impl Fn(char) -> bool) -> bool {
    text[..start].chars().next_back().is_some_and(&glue) || text[end..].chars().next().is_some_and(&glue)
}

/// The span is the tail or the head of a longer run of digit groups (`4532 0198 7654 3217` failing Luhn,
/// `DE51 5001 0517 …` failing mod-97): a number of another kind, not a phone number.
fn continues_digit_groups(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start]
        .strip_suffix(' ')
        .is_some_and(|t| t.ends_with(|c: char| c.is_ascii_digit()));
    let after = text[end..]
        .strip_prefix(' ')
        .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit()));
    before || after
}

/// The position is inside a URL token; URL hosts and credentials belong to the `url` detector.
fn in_url(text: &str, pos: usize) -> bool {
    let token_start = super::token_start(text, pos, |c| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '<' | '`')
    });
    text[token_start..pos].contains("://")
}

fn covered(out: &[Finding], start: usize, end: usize) -> bool {
    out.iter()
        .any(|f| f.category == Category::Dlp && f.start < end && start < f.end)
}

fn looks_like_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split(['-', '.', ' ', '/']).collect();
    parts.len() == 3 && parts[0].len() == 4 && parts[1].len() == 2 && parts[2].len() == 2
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Luhn, a known issuer range with a valid length, and consistent grouping.
pub(crate) fn valid_card(candidate: &str) -> bool {
    let seps: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let digits: Vec<u8> = candidate
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let len = digits.len();
    if !(13..=19).contains(&len) || digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let issuer = match digits[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && len == 16,
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        3 => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
                || ((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
                    && (14..=19).contains(&len)
        }
        6 => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) || prefix(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    };
    issuer && luhn(&digits)
}

/// SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub(crate) fn valid_ssn(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn iban_length(country: &str) -> Option<usize> {
    const LENGTHS: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BR", 29),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NL", 18),
        ("NO", 15),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("SA", 24),
        ("SC", 31),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VG", 24),
        ("XK", 20),
    ];
    LENGTHS.iter().find(|(c, _)| *c == country).map(|(_, l)| *l)
}

/// Country length and ISO 7064 mod-97 check on an IBAN without spaces.
pub(crate) fn valid_iban(iban: &str) -> bool {
    if !iban.is_ascii() || iban.len() < 15 || iban_length(&iban[..2]) != Some(iban.len()) {
        return false;
    }
    let rearranged = iban[4..].chars().chain(iban[..4].chars());
    let mut rem = 0u32;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {

    #[test]
    fn windows_find_exactly_what_the_whole_text_does() {
        let d = Dlp::new(&DlpConfig::default()).unwrap();
        let budget = super::super::scan::Budget::unlimited;
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(2))
            .for_each(|bytes: &[u8]| {
                let text = crate::engine::window::tricky_text(bytes);
                let mut windowed = Vec::new();
                d.detect_in(&text, &DlpWindows::new(&text), &mut windowed, &budget());
                let mut reference = Vec::new();
                d.detect_in(&text, &DlpWindows::whole(&text), &mut reference, &budget());
                assert_eq!(windowed, reference, "{text:?}");
            });
    }
    use super::*;
    use crate::engine::{CustomPattern, Limits};

    fn found(text: &str) -> Vec<(&'static str, String)> {
        static D: std::sync::LazyLock<Dlp> =
            std::sync::LazyLock::new(|| Dlp::new(&DlpConfig::default()).unwrap());
        let dlp = &*D;
        let mut out = Vec::new();
        let budget = Budget {
            decoded_bytes_left: 0,
            blobs_left: 0,
            findings_left: Limits::default().max_detections,
            truncated: false,
        };
        dlp.detect(text, &mut out, &budget);
        out.into_iter()
            .map(|f| (f.detector, text[f.start..f.end].to_string()))
            .collect()
    }

    fn has(text: &str, detector: &str, value: &str) -> bool {
        found(text).iter().any(|(d, v)| *d == detector && v == value)
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        assert!(has(
            "card 4242 4242 4242 4242 exp 12/27",
            "dlp.credit_card",
            "4242 4242 4242 4242"
        ));
        assert!(has(
            "amex 3782-822463-10005.",
            "dlp.credit_card",
            "3782-822463-10005"
        ));
        assert!(has("mc:5555555555554444", "dlp.credit_card", "5555555555554444"));
        assert!(!valid_card("4242 4242 4242 4241"), "bad Luhn");
        assert!(!valid_card("1234 5678 9012 3452"), "no issuer");
        assert!(!valid_card("4242-4242 4242-4242"), "mixed separators");
        assert!(found("order id 100000000000000000").is_empty());
    }

    #[test]
    fn ssn_invalid_ranges_are_excluded() {
        assert!(has("SSN: 123-45-6789", "dlp.ssn", "123-45-6789"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(!found(bad).iter().any(|(d, _)| *d == "dlp.ssn"), "{bad}");
        }
        assert!(!found("part 123-45-6789-01").iter().any(|(d, _)| *d == "dlp.ssn"));
    }

    #[test]
    fn iban_needs_mod97_and_country_length() {
        assert!(has(
            "IBAN GB82 WEST 1234 5698 7654 32 thanks",
            "dlp.iban",
            "GB82 WEST 1234 5698 7654 32"
        ));
        assert!(has(
            "DE89370400440532013000",
            "dlp.iban",
            "DE89370400440532013000"
        ));
        assert!(!valid_iban("GB82WEST12345698765433"));
        assert!(!valid_iban("DE8937040044053201300"));
    }

    #[test]
    fn digit_groups_of_a_failed_card_or_iban_are_not_a_phone_number() {
        let none = |t: &str| {
            let mut out = Vec::new();
            Dlp::new(&DlpConfig::default())
                .unwrap()
                .detect(t, &mut out, &Budget::unlimited());
            assert!(out.is_empty(), "{t}: {out:?}");
        };
        none("My card number 4532 0198 7654 3217 keeps getting rejected as invalid.");
        none("The form rejects DE51 5001 0517 5407 3249 31 with 'invalid check digits'.");
    }

    #[test]
    fn emails_phones_and_ips() {
        assert!(has(
            "mail jane.doe+x@mail.example.co.uk now",
            "dlp.email",
            "jane.doe+x@mail.example.co.uk"
        ));
        assert!(has("call +1 415 555 2671 today", "dlp.phone", "+1 415 555 2671"));
        assert!(has("call (415) 555-2671", "dlp.phone", "(415) 555-2671"));
        assert!(has("ruf an: 030 1234 5678", "dlp.phone", "030 1234 5678"));
        assert!(has("+44 20 7946 0958", "dlp.phone", "+44 20 7946 0958"));
        assert!(has("host 192.168.1.20 is down", "dlp.ip_address", "192.168.1.20"));
        assert!(has(
            "v6 2001:db8::8a2e:370:7334 ok",
            "dlp.ip_address",
            "2001:db8::8a2e:370:7334"
        ));
    }

    #[test]
    fn digit_runs_dates_versions_and_times_are_not_pii() {
        for t in [
            "build 20240115123456 finished",
            "released 2024-01-15 10:30:45",
            "version 1.2.3.4 is out",
            "python3.11.4.1",
            "std::vector<int> and a::b::c",
            "ratio 300:1 at 12:30",
            "order #12345678",
            "pi is 3.14159265358979",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn custom_patterns_are_reported_under_their_name() {
        let cfg = DlpConfig {
            custom: vec![CustomPattern {
                name: "employee_id".into(),
                regex: r"(?-u:\b)EMP-\d{6}(?-u:\b)".into(),
                mask_with: None,
            }],
            ..DlpConfig::default()
        };
        let dlp = Dlp::new(&cfg).unwrap();
        let mut out = Vec::new();
        let budget = Budget {
            decoded_bytes_left: 0,
            blobs_left: 0,
            findings_left: 10,
            truncated: false,
        };
        dlp.detect("id EMP-123456", &mut out, &budget);
        assert_eq!(out[0].detector, "dlp.custom.employee_id");
    }

    #[test]
    fn custom_pattern_matching_empty_is_refused() {
        let cfg = DlpConfig {
            custom: vec![CustomPattern {
                name: "any".into(),
                regex: "x*".into(),
                mask_with: None,
            }],
            ..DlpConfig::default()
        };
        assert!(Dlp::new(&cfg).is_err());
    }
}
