//! Format-preserving masking. Cards, SSNs and IBANs keep their separators and last four characters
//! (`****-****-****-4242`), e-mail keeps its first letter and domain (`j***@example.com`), prefixed secrets
//! keep the prefix that says what they were (`AKIA****************`), everything else becomes one `*` per
//! character. Overlapping spans are merged and masked with `*`.

use super::Detection;

/// Masks the spans of `detections` in `text` (spans out of bounds or off char boundaries are ignored).
pub fn mask(text: &str, detections: &[&Detection]) -> String {
    mask_with(text, detections, &|_| None)
}

const SECRET_PREFIXES: &[&str] = &[
    "sk-ant-api03-",
    "sk-ant-admin01-",
    "sk-proj-",
    "sk-svcacct-",
    "sk-admin-",
    "github_pat_",
    "sk_live_",
    "rk_live_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AIza",
    "hf_",
    "eyJ",
    "sk-",
];

/// `custom` returns the configured replacement for a custom detector, if any.
pub(crate) fn mask_with<'a>(
    text: &str,
    detections: &[&Detection],
    custom: &dyn Fn(&str) -> Option<&'a str>,
) -> String {
    // (start, end, detector or None when merged)
    let mut spans: Vec<(usize, usize, Option<&'static str>)> = detections
        .iter()
        .filter(|d| {
            d.start < d.end
                && d.end <= text.len()
                && text.is_char_boundary(d.start)
                && text.is_char_boundary(d.end)
        })
        .map(|d| (d.start, d.end, Some(d.detector)))
        .collect();
    spans.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
    let mut merged: Vec<(usize, usize, Option<&'static str>)> = Vec::with_capacity(spans.len());
    for s in spans {
        match merged.last_mut() {
            Some(last) if s.0 < last.1 => {
                if !(s.0 == last.0 && s.1 == last.1 && s.2 == last.2) {
                    last.2 = if s.1 <= last.1 && s.0 == last.0 && s.1 == last.1 {
                        last.2
                    } else {
                        None
                    };
                }
                last.1 = last.1.max(s.1);
            }
            _ => merged.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end, detector) in merged {
        out.push_str(&text[pos..start]);
        let value = &text[start..end];
        match detector {
            Some(d) => match custom(d) {
                Some(replacement) => out.push_str(replacement),
                None => out.push_str(&mask_value(d, value)),
            },
            None => out.push_str(&stars(value)),
        }
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

fn stars(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_whitespace() { c } else { '*' })
        .collect()
}

/// Masks alphanumerics, keeps separators and the last `keep` alphanumerics.
fn keep_last(value: &str, keep: usize) -> String {
    let total = value.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen + keep > total { c } else { '*' }
            } else {
                c
            }
        })
        .collect()
}

fn mask_value(detector: &str, value: &str) -> String {
    match detector {
        "dlp.credit_card" | "dlp.ssn" => keep_last(value, 4),
        "dlp.iban" => {
            let country: String = value.chars().take(2).collect();
            let rest: String = value.chars().skip(2).collect();
            format!("{country}{}", keep_last(&rest, 4))
        }
        "dlp.phone" => keep_last(value, 2),
        "dlp.email" => match value.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => stars(value),
        },
        "secret.private_key" => {
            let mut lines = value.lines();
            let header = lines.next().unwrap_or("");
            if header.starts_with("-----BEGIN") {
                let body: Vec<String> = value
                    .lines()
                    .skip(1)
                    .map(|l| {
                        if l.starts_with("-----END") {
                            l.to_string()
                        } else {
                            stars(l)
                        }
                    })
                    .collect();
                format!("{header}\n{}", body.join("\n"))
            } else {
                stars(value)
            }
        }
        "url.credentials" => match value.split_once("://").and_then(|(scheme, rest)| {
            let (userinfo, host) = rest.split_once('@')?;
            let user = userinfo.split(':').next().unwrap_or("");
            Some(format!("{scheme}://{user}:****@{host}"))
        }) {
            Some(m) => m,
            None => stars(value),
        },
        d if d.starts_with("secret.") => match SECRET_PREFIXES.iter().find(|p| value.starts_with(**p)) {
            Some(p) => format!("{p}{}", "*".repeat(value.chars().count() - p.chars().count())),
            None => stars(value),
        },
        _ => stars(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Category;

    fn det(detector: &'static str, text: &str, value: &str) -> Detection {
        let start = text.find(value).unwrap();
        Detection {
            category: Category::Dlp,
            detector,
            score: 0.9,
            segment: 0,
            start,
            end: start + value.len(),
            maskable: true,
        }
    }

    #[test]
    fn formats_are_preserved() {
        let t = "card 4242-4242-4242-4242, mail jane@example.com, key AKIAZ7XQ3MPLR5TNWB2E, ssn 123-45-6789";
        let ds = [
            det("dlp.credit_card", t, "4242-4242-4242-4242"),
            det("dlp.email", t, "jane@example.com"),
            det("secret.aws_access_key", t, "AKIAZ7XQ3MPLR5TNWB2E"),
            det("dlp.ssn", t, "123-45-6789"),
        ];
        let refs: Vec<&Detection> = ds.iter().collect();
        assert_eq!(
            mask(t, &refs),
            "card ****-****-****-4242, mail j***@example.com, key AKIA****************, ssn ***-**-6789"
        );
    }

    #[test]
    fn iban_phone_and_other_detectors() {
        let t = "GB82 WEST 1234 5698 7654 32 / +1 415 555 2671 / pw Xk9#mQ2$";
        let ds = [
            det("dlp.iban", t, "GB82 WEST 1234 5698 7654 32"),
            det("dlp.phone", t, "+1 415 555 2671"),
            det("secret.generic_assignment", t, "Xk9#mQ2$"),
        ];
        let refs: Vec<&Detection> = ds.iter().collect();
        assert_eq!(
            mask(t, &refs),
            "GB** **** **** **** **54 32 / +* *** *** **71 / pw ********"
        );
    }

    #[test]
    fn overlapping_spans_are_merged() {
        let t = "x abcdef y";
        let mut a = det("dlp.email", t, "abcd");
        let b = det("dlp.credit_card", t, "cdef");
        a.end = 6;
        let refs = vec![&a, &b];
        assert_eq!(mask(t, &refs), "x ****** y");
    }

    #[test]
    fn multibyte_text_and_bad_spans_are_safe() {
        let t = "名前 jané@exämple.com ok";
        let d = det("dlp.email", t, "jané@exämple.com");
        let mut bad = d.clone();
        bad.start = 1;
        assert_eq!(mask(t, &[&d, &bad]), "名前 j***@exämple.com ok");
    }
}
