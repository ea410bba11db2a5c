//! Validating an `AISecurityProfile` beyond what its schema and CEL rules check, and the status that
//! reports the outcome.
//!
//! The API server already refuses what the CRD schema can express (ranges, patterns, unique names,
//! fields that need one another). What is left needs real parsing or crosses fields in ways CEL cannot
//! say cheaply: regular expressions that do not compile, size caps that contradict each other,
//! forwarder addresses that look right but cannot work. A profile with any [`Problem`] is never put
//! into a policy bundle, so a sidecar keeps its last good policy instead of refusing a broken one.
//!
//! Everything here is pure: no client, no clock.

use std::fmt;
use std::net::Ipv6Addr;

use airlock_crds::conditions;
use airlock_crds::v1alpha1::{
    AISecurityProfile, AISecurityProfileSpec, AISecurityProfileStatus, DataProtection, HttpForwarder,
    Logging, MaliciousUrl, ModelProtection, SyslogForwarder, Topics,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Most memory a custom pattern may compile to. The sidecar compiles with the same limit, so a pattern
/// accepted here is accepted there.
pub const MAX_REGEX_SIZE: usize = 1 << 20;

/// Most bytes of the `Ready` condition's message; the API server allows 32 KiB, but `kubectl describe`
/// readers and event sinks do not want that much.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `Ready=True`: the profile is valid and can be put into policy bundles.
pub const REASON_COMPILED: &str = "Compiled";

/// `Ready=False`: [`validate`] found problems; the message lists them.
pub const REASON_INVALID: &str = "Invalid";

/// Text used to look for empty matches that [`regex::Regex::is_match`] on `""` alone would miss,
/// such as `\b` or `(?m)^`: letters, digits, spaces, punctuation and a line break.
const EMPTY_MATCH_PROBE: &str = "ab 12 -.\nc";

/// Something wrong with a profile that the API server let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the offending field, e.g. `spec.dataProtection.customPatterns[2].regex`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with `spec` that the CRD schema does not already refuse, in field order; empty
/// when the profile is valid.
pub fn validate(spec: &AISecurityProfileSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(app) = &spec.app_protection {
        if let Some(url) = &app.malicious_url {
            malicious_url(url, &mut problems);
        }
        if let Some(topics_spec) = &app.topics {
            topics(topics_spec, &mut problems);
        }
    }
    if let Some(model) = &spec.model_protection {
        model_protection(model, &mut problems);
    }
    if let Some(data) = &spec.data_protection {
        data_protection(data, &mut problems);
    }
    if let Some(logging_spec) = &spec.logging {
        logging(logging_spec, &mut problems);
    }
    problems
}

fn malicious_url(url: &MaliciousUrl, problems: &mut Vec<Problem>) {
    const FIELD: &str = "spec.appProtection.maliciousUrl";
    if url.block_categories.is_empty() && url.block_domains.is_empty() {
        problems.push(Problem::new(
            format!("{FIELD}.blockCategories"),
            "is empty and so is blockDomains, so the detector can never flag a URL; add a category or \
             a domain to block, or remove maliciousUrl to turn the detector off",
        ));
    }
    for (i, blocked) in url.block_domains.iter().enumerate() {
        // allowDomains wins, so a blocked domain that an allowed one covers would silently never be
        // blocked: almost certainly not what the author meant.
        if let Some(allowed) = url.allow_domains.iter().find(|a| covers(a, blocked)) {
            let how = if allowed == blocked {
                "is also in allowDomains".to_owned()
            } else {
                format!("is a subdomain of allowDomains entry {allowed}")
            };
            problems.push(Problem::new(
                format!("{FIELD}.blockDomains[{i}]"),
                format!(
                    "{blocked} {how}, and allowDomains wins, so it is never blocked; remove it from one \
                     of the lists"
                ),
            ));
        }
    }
}

/// Whether the domain entry `parent` covers `domain`: the same name or a subdomain of it.
fn covers(parent: &str, domain: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.'))
}

fn topics(topics: &Topics, problems: &mut Vec<Problem>) {
    const FIELD: &str = "spec.appProtection.topics";
    if topics.banned.is_empty() {
        problems.push(Problem::new(
            format!("{FIELD}.banned"),
            "is empty, so the detector can never match; add a topic with its phrases, or remove \
             topics to turn the detector off",
        ));
    }
    for (i, topic) in topics.banned.iter().enumerate() {
        for (j, phrase) in topic.phrases.iter().enumerate() {
            if phrase.trim().is_empty() {
                problems.push(Problem::new(
                    format!("{FIELD}.banned[{i}].phrases[{j}]"),
                    format!(
                        "phrase of banned topic {} is blank; write the words that identify the topic, \
                         or remove the phrase",
                        topic.name
                    ),
                ));
            }
        }
    }
}

fn model_protection(model: &ModelProtection, problems: &mut Vec<Problem>) {
    if let (Some(tokens), Some(bytes)) = (model.max_prompt_tokens, model.max_prompt_bytes)
        && tokens > bytes
    {
        problems.push(Problem::new(
            "spec.modelProtection.maxPromptTokens",
            format!(
                "is {tokens}, more than maxPromptBytes ({bytes}); every token takes at least one byte, \
                 so this cap can never be reached; lower maxPromptTokens to at most {bytes} or raise \
                 maxPromptBytes"
            ),
        ));
    }
}

fn data_protection(data: &DataProtection, problems: &mut Vec<Problem>) {
    for (i, pattern) in data.custom_patterns.iter().enumerate() {
        let field = format!("spec.dataProtection.customPatterns[{i}].regex");
        let name = &pattern.name;
        match regex::RegexBuilder::new(&pattern.regex)
            .size_limit(MAX_REGEX_SIZE)
            .build()
        {
            Err(regex::Error::CompiledTooBig(_)) => problems.push(Problem::new(
                field,
                format!(
                    "regex of pattern {name} compiles to more than {} KiB; simplify it, for example with \
                     smaller counted repetitions such as {{1,64}} instead of {{1,10000}}",
                    MAX_REGEX_SIZE / 1024
                ),
            )),
            Err(error) => problems.push(Problem::new(
                field,
                format!(
                    "regex of pattern {name} does not compile ({}); use RE2 syntax, without look-around \
                     or back-references",
                    regex_error_reason(&error)
                ),
            )),
            Ok(regex) => {
                let matches_empty =
                    regex.is_match("") || regex.find_iter(EMPTY_MATCH_PROBE).any(|m| m.is_empty());
                if matches_empty {
                    problems.push(Problem::new(
                        field,
                        format!(
                            "regex of pattern {name} can match empty text, so it would match everywhere; \
                             make it require at least one character (for example `+` instead of `*`)"
                        ),
                    ));
                }
            }
        }
    }
}

/// The one-line reason of a regex error. Syntax errors span several lines (the pattern, a caret, the
/// reason), which a condition message cannot show well.
fn regex_error_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn logging(logging: &Logging, problems: &mut Vec<Problem>) {
    for (i, forwarder) in logging.forwarders.iter().enumerate() {
        let field = format!("spec.logging.forwarders[{i}]");
        if let Some(syslog) = &forwarder.syslog
            && let Some(message) = syslog_problem(syslog)
        {
            problems.push(Problem::new(format!("{field}.syslog.address"), message));
        }
        if let Some(http) = &forwarder.http
            && let Some(message) = http_problem(http)
        {
            problems.push(Problem::new(format!("{field}.http.url"), message));
        }
    }
}

fn syslog_problem(syslog: &SyslogForwarder) -> Option<String> {
    let address = &syslog.address;
    let usage = "write it as host:port, e.g. syslog.logging.svc:514 or [fd00::1]:514";
    let Some((host, port)) = split_host_port(address) else {
        return Some(format!("{address:?} is not host:port; {usage}"));
    };
    let Some(port) = port else {
        return Some(format!("{address:?} has no port; {usage}"));
    };
    host_port_problem(address, host, port).map(|problem| format!("{problem}; {usage}"))
}

fn http_problem(http: &HttpForwarder) -> Option<String> {
    let url = &http.url;
    let usage = "write it as https://host[:port]/path, e.g. https://siem.example.com/ingest";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{url:?} contains whitespace or control characters; percent-encode them"
        ));
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some(format!("{url:?} is not an http or https URL; {usage}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // Profiles are readable by anyone who may read Airlock's configuration; credentials belong in
        // a Secret.
        return Some(
            "carries credentials in the URL, where everyone who can read profiles sees them; remove \
             them and put the token in a Secret referenced by secretRef"
                .to_owned(),
        );
    }
    let Some((host, port)) = split_host_port(authority) else {
        return Some(format!("{url:?} has a malformed host; {usage}"));
    };
    let port = port.unwrap_or(if url.starts_with("https://") { "443" } else { "80" });
    host_port_problem(url, host, port).map(|problem| format!("{problem}; {usage}"))
}

/// Splits `host[:port]` or `[v6]` / `[v6]:port`; `None` when brackets do not pair up.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((authority.get(..host.len() + 2)?, None)),
            _ => Some((authority.get(..host.len() + 2)?, Some(after.strip_prefix(':')?))),
        };
    }
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// What is wrong with `host` and `port` of `whole`, if anything. `host` may be a bracketed IPv6 address.
fn host_port_problem(whole: &str, host: &str, port: &str) -> Option<String> {
    if host.is_empty() {
        return Some(format!("{whole:?} has no host"));
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => is_host_name(host),
    };
    if !host_ok {
        return Some(format!(
            "{whole:?} has {host:?}, which is not a host name or IP address"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(format!(
            "{whole:?} has port {port:?}; a port is a number from 1 to 65535"
        )),
    }
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits, `-` and `_` (found in service
/// records), none empty or starting or ending with `-`, with an optional final dot.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The status of `profile` given the outcome of [`validate`] and the number of instances that use it
/// (directly or through a rule), observed at `now`.
///
/// Keeps conditions other than `Ready`, and `Ready`'s `lastTransitionTime` when its status does not
/// change.
pub fn status(
    profile: &AISecurityProfile,
    problems: &[Problem],
    instance_count: i32,
    now: Time,
) -> AISecurityProfileStatus {
    let generation = profile.metadata.generation;
    let ready = if problems.is_empty() {
        let used_by = match instance_count {
            1 => "1 AIRuntimeInstance".to_owned(),
            n => format!("{n} AIRuntimeInstances"),
        };
        conditions::ready(
            true,
            REASON_COMPILED,
            format!("the profile is valid; used by {used_by}"),
            generation,
            now,
        )
    } else {
        conditions::ready(false, REASON_INVALID, summary(problems), generation, now)
    };
    let mut conditions = profile
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::set(&mut conditions, ready);
    AISecurityProfileStatus {
        conditions,
        observed_generation: generation,
        instance_count,
    }
}

/// The problems joined by `; `, for a condition message: at most [`MAX_MESSAGE_BYTES`] long, ending
/// with how many were left out when they do not all fit.
pub fn summary(problems: &[Problem]) -> String {
    // Room for " (and 9999 more)" and a cut marker.
    const TAIL: usize = 24;
    let budget = MAX_MESSAGE_BYTES - TAIL;
    let mut message = String::new();
    let mut shown = 0;
    for problem in problems {
        let text = problem.to_string();
        let separator = if message.is_empty() { "" } else { "; " };
        if message.len() + separator.len() + text.len() > budget {
            if message.is_empty() {
                // A single problem longer than the whole budget is cut rather than dropped.
                message.push_str(&text[..floor_char_boundary(&text, budget)]);
                message.push('…');
                shown = 1;
            }
            break;
        }
        message.push_str(separator);
        message.push_str(&text);
        shown += 1;
    }
    if shown < problems.len() {
        message.push_str(&format!(" (and {} more)", problems.len() - shown));
    }
    message
}

/// The largest index ≤ `index` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use airlock_crds::conditions::READY;
    use k8s_openapi::jiff::Timestamp;
    use serde::Deserialize;

    use super::*;

    fn profile(yaml: &str) -> AISecurityProfile {
        serde_yaml_ng::from_str(yaml).expect("fixture is an AISecurityProfile")
    }

    /// A profile named `p` with `spec` (YAML, indented by two spaces).
    fn with_spec(spec: &str) -> AISecurityProfile {
        profile(&format!(
            "apiVersion: airlock.dev/v1alpha1\nkind: AISecurityProfile\nmetadata: {{name: p, generation: 2}}\nspec:\n{spec}"
        ))
    }

    fn problems(spec: &str) -> Vec<Problem> {
        validate(&with_spec(spec).spec)
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn custom_pattern(regex: &str) -> Vec<Problem> {
        problems(&format!(
            "  dataProtection:\n    customPatterns:\n      - {{name: ok, regex: 'TCK-[0-9]+'}}\n      - {{name: x, regex: {}}}\n",
            serde_json::to_string(regex).expect("a string")
        ))
    }

    fn forwarder(yaml: &str) -> Vec<Problem> {
        problems(&format!("  logging:\n    forwarders:\n      - {yaml}\n"))
    }

    #[test]
    fn the_valid_example_profiles_have_no_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/tests/data/valid");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("fixture directory") {
            let path = entry.expect("directory entry").path();
            let text = std::fs::read_to_string(&path).expect("fixture");
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = serde_yaml_ng::Value::deserialize(doc).expect("YAML");
                if value["kind"].as_str() != Some("AISecurityProfile") {
                    continue;
                }
                let profile: AISecurityProfile = serde_yaml_ng::from_value(value).expect("a profile");
                assert_eq!(validate(&profile.spec), [], "{}", path.display());
                checked += 1;
            }
        }
        assert!(
            checked >= 3,
            "only {checked} example profiles found in {}",
            dir.display()
        );
    }

    #[test]
    fn an_empty_profile_has_no_problems() {
        assert_eq!(validate(&AISecurityProfileSpec::default()), []);
    }

    #[test]
    fn a_custom_pattern_that_does_not_compile_is_reported_with_its_field() {
        let found = custom_pattern("(unclosed");
        assert_eq!(fields(&found), ["spec.dataProtection.customPatterns[1].regex"]);
        let message = &found[0].message;
        assert!(message.contains("pattern x does not compile"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn look_around_is_reported_as_unsupported_syntax() {
        let found = custom_pattern("(?<=secret)[0-9]+");
        assert_eq!(fields(&found), ["spec.dataProtection.customPatterns[1].regex"]);
        assert!(found[0].message.contains("RE2"), "{}", found[0].message);
    }

    #[test]
    fn a_custom_pattern_beyond_the_size_limit_is_reported() {
        let found = custom_pattern(r"\w{1000}\w{1000}");
        assert_eq!(fields(&found), ["spec.dataProtection.customPatterns[1].regex"]);
        assert!(found[0].message.contains("1024 KiB"), "{}", found[0].message);
    }

    #[test]
    fn a_custom_pattern_that_matches_empty_text_is_reported() {
        for regex in ["[0-9]*", "a?", r"\b", "(?m)^", "x|"] {
            let found = custom_pattern(regex);
            assert_eq!(
                fields(&found),
                ["spec.dataProtection.customPatterns[1].regex"],
                "{regex}"
            );
            assert!(found[0].message.contains("empty text"), "{}", found[0].message);
        }
    }

    #[test]
    fn a_domain_both_allowed_and_blocked_is_reported() {
        let found = problems(
            "  appProtection:\n    maliciousUrl:\n      allowDomains: [example.com, docs.python.org]\n      blockDomains: [pastebin.com, docs.python.org, api.example.com, notexample.com]\n",
        );
        assert_eq!(
            fields(&found),
            [
                "spec.appProtection.maliciousUrl.blockDomains[1]",
                "spec.appProtection.maliciousUrl.blockDomains[2]"
            ]
        );
        assert!(
            found[0].message.contains("also in allowDomains"),
            "{}",
            found[0].message
        );
        assert!(
            found[1]
                .message
                .contains("subdomain of allowDomains entry example.com"),
            "{}",
            found[1].message
        );
    }

    #[test]
    fn a_url_detector_with_nothing_to_block_is_reported() {
        let found = problems("  appProtection:\n    maliciousUrl:\n      blockCategories: []\n");
        assert_eq!(
            fields(&found),
            ["spec.appProtection.maliciousUrl.blockCategories"]
        );
        let only_domains = problems(
            "  appProtection:\n    maliciousUrl:\n      blockCategories: []\n      blockDomains: [x.io]\n",
        );
        assert_eq!(only_domains, []);
    }

    #[test]
    fn a_topics_detector_without_banned_topics_is_reported() {
        let found = problems("  appProtection:\n    topics: {action: alert}\n");
        assert_eq!(fields(&found), ["spec.appProtection.topics.banned"]);
    }

    #[test]
    fn a_blank_banned_topic_phrase_is_reported() {
        let found = problems(
            "  appProtection:\n    topics:\n      banned:\n        - {name: weapons, phrases: [bomb, '  ']}\n",
        );
        assert_eq!(fields(&found), ["spec.appProtection.topics.banned[0].phrases[1]"]);
        assert!(found[0].message.contains("weapons"), "{}", found[0].message);
    }

    #[test]
    fn a_token_cap_above_the_byte_cap_is_reported() {
        let found = problems("  modelProtection:\n    maxPromptBytes: 1000\n    maxPromptTokens: 1001\n");
        assert_eq!(fields(&found), ["spec.modelProtection.maxPromptTokens"]);
        assert!(found[0].message.contains("at most 1000"), "{}", found[0].message);
        assert_eq!(
            problems("  modelProtection:\n    maxPromptBytes: 1000\n    maxPromptTokens: 1000\n"),
            []
        );
    }

    #[test]
    fn an_http_forwarder_without_a_host_is_reported() {
        for url in ["https://", "https:///ingest", "http://:8080/x", "https://?q"] {
            let found = forwarder(&format!("http: {{url: '{url}'}}"));
            assert_eq!(fields(&found), ["spec.logging.forwarders[0].http.url"], "{url}");
        }
    }

    #[test]
    fn an_http_forwarder_with_a_bad_host_or_port_is_reported() {
        for url in [
            "https://siem example.com/x",
            "https://siem..example.com/x",
            "https://siem.example.com:0/x",
            "https://siem.example.com:99999/x",
            "https://siem.example.com:+80/x",
            "https://[fd00::1/x",
            "https://[not-v6]:443/x",
        ] {
            let found = forwarder(&format!("http: {{url: '{url}'}}"));
            assert_eq!(fields(&found), ["spec.logging.forwarders[0].http.url"], "{url}");
        }
    }

    #[test]
    fn credentials_in_an_http_forwarder_url_are_reported() {
        let found = forwarder("http: {url: 'https://user:hunter2@siem.example.com/ingest'}");
        assert_eq!(fields(&found), ["spec.logging.forwarders[0].http.url"]);
        assert!(found[0].message.contains("secretRef"), "{}", found[0].message);
        assert!(!found[0].message.contains("hunter2"), "the secret is not echoed");
    }

    #[test]
    fn good_http_forwarder_urls_have_no_problems() {
        for url in [
            "https://siem.example.com/ingest",
            "http://collector.logging.svc:8080",
            "https://10.0.0.7:8443/a?b=c",
            "https://[fd00::1]:443/ingest",
            "https://[fd00::1]",
            "https://siem.example.com.",
        ] {
            assert_eq!(forwarder(&format!("http: {{url: '{url}'}}")), [], "{url}");
        }
    }

    #[test]
    fn a_syslog_address_with_a_port_out_of_range_is_reported() {
        for address in ["syslog.svc:0", "syslog.svc:70000", "[fd00::1]:99999"] {
            let found = forwarder(&format!("syslog: {{address: '{address}'}}"));
            assert_eq!(
                fields(&found),
                ["spec.logging.forwarders[0].syslog.address"],
                "{address}"
            );
            assert!(found[0].message.contains("1 to 65535"), "{}", found[0].message);
        }
    }

    #[test]
    fn a_syslog_address_that_is_not_host_and_port_is_reported() {
        for address in ["syslog.svc", "bad host:514", "[zz::1]:514", ":514", "[fd00::1]"] {
            let found = forwarder(&format!("syslog: {{address: '{address}'}}"));
            assert_eq!(
                fields(&found),
                ["spec.logging.forwarders[0].syslog.address"],
                "{address}"
            );
        }
        for address in ["syslog.logging.svc:514", "10.1.2.3:514", "[fd00::1]:514"] {
            assert_eq!(
                forwarder(&format!("syslog: {{address: '{address}'}}")),
                [],
                "{address}"
            );
        }
    }

    #[test]
    fn problems_say_their_field_first() {
        let problem = Problem::new("spec.a", "is wrong; fix it");
        assert_eq!(problem.to_string(), "spec.a: is wrong; fix it");
    }

    #[test]
    fn a_valid_profile_is_ready_with_reason_compiled() {
        let profile = with_spec("  failureMode: failOpen\n");
        let status = status(&profile, &[], 2, at(10));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.instance_count, 2);
        let ready = conditions::find(&status.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", REASON_COMPILED)
        );
        assert!(
            ready.message.contains("2 AIRuntimeInstances"),
            "{}",
            ready.message
        );
        assert_eq!(ready.observed_generation, Some(2));
    }

    #[test]
    fn an_invalid_profile_is_not_ready_and_lists_its_problems() {
        let profile = with_spec("  dataProtection:\n    customPatterns:\n      - {name: x, regex: '('}\n");
        let found = validate(&profile.spec);
        let status = status(&profile, &found, 0, at(10));
        let ready = conditions::find(&status.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", REASON_INVALID)
        );
        assert!(
            ready
                .message
                .starts_with("spec.dataProtection.customPatterns[0].regex: "),
            "{}",
            ready.message
        );
    }

    #[test]
    fn an_unchanged_verdict_keeps_the_transition_time() {
        let mut profile = with_spec("  failureMode: failOpen\n");
        profile.status = Some(status(&profile, &[], 1, at(10)));
        let again = status(&profile, &[], 3, at(20));
        let ready = conditions::find(&again.conditions, READY).expect("Ready");
        assert_eq!(ready.last_transition_time, at(10));
        assert!(
            ready.message.contains("3 AIRuntimeInstances"),
            "{}",
            ready.message
        );

        profile.status = Some(again);
        let broken = status(&profile, &[Problem::new("spec.x", "bad")], 3, at(30));
        let ready = conditions::find(&broken.conditions, READY).expect("Ready");
        assert_eq!(ready.last_transition_time, at(30));
    }

    #[test]
    fn other_conditions_are_kept() {
        let mut profile = with_spec("  failureMode: failOpen\n");
        profile.status = Some(AISecurityProfileStatus {
            conditions: vec![conditions::new("Distributed", true, "Synced", "", Some(1), at(5))],
            ..AISecurityProfileStatus::default()
        });
        let status = status(&profile, &[], 1, at(10));
        assert_eq!(status.conditions.len(), 2);
        assert!(conditions::is_true(&status.conditions, "Distributed"));
    }

    #[test]
    fn a_long_list_of_problems_is_cut_to_about_a_kibibyte() {
        let many: Vec<Problem> = (0..100)
            .map(|i| Problem::new(format!("spec.field[{i}]"), "is wrong in a rather long-winded way"))
            .collect();
        let message = summary(&many);
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(message.starts_with("spec.field[0]: "), "{message}");
        assert!(message.ends_with(" more)"), "{message}");

        let huge = [
            Problem::new("spec.x", "é".repeat(2000)),
            Problem::new("spec.y", "bad"),
        ];
        let message = summary(&huge);
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(message.ends_with("… (and 1 more)"), "{message}");
    }
}
