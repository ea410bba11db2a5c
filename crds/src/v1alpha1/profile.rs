//! `AISecurityProfile`: what the sidecar inspects in LLM traffic and what it does about each finding.
//!
//! A profile holds no selector: `AIRuntimeInstance`s (and their rules) refer to it by name, and the
//! standalone sidecar loads one from a file (`airlock-sidecar run --profile profile.yaml`). An absent
//! section or detection is off; a present one is on with the documented defaults for anything omitted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DataAction, DetectionAction, FailureMode, SecretKeyRef};

/// Default for [`AISecurityProfileSpec::max_inline_latency_ms`].
pub const DEFAULT_MAX_INLINE_LATENCY_MS: i32 = 500;
/// Default for [`Streaming::holdback_bytes`] when `mode` is `holdback`.
pub const DEFAULT_HOLDBACK_BYTES: i32 = 4096;
/// Default for [`HttpForwarder::batch_size`].
pub const DEFAULT_HTTP_BATCH_SIZE: i32 = 100;

/// Detections, limits and logging that an Airlock sidecar applies to the LLM traffic it intercepts.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "airlock.dev",
    version = "v1alpha1",
    kind = "AISecurityProfile",
    shortname = "aisp",
    category = "airlock",
    status = "AISecurityProfileStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AISecurityProfile says what Airlock's sidecar inspects in LLM traffic (prompts and responses) and \
           what it does about each finding. AIRuntimeInstances refer to profiles by name.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the profile is valid and has been distributed to the sidecars that use it"
    ),
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".status.instanceCount",
        description = "Number of AIRuntimeInstances that use this profile"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AISecurityProfileSpec {
    /// Detections that protect the application from what users and models send it: prompt injection,
    /// malicious URLs, malicious code and banned topics. Omit to turn all of them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protection: Option<AppProtection>,

    /// Limits that protect the model server from denial of service and runaway cost: rate limits,
    /// prompt and output size caps and concurrent streams. Omit for no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_protection: Option<ModelProtection>,

    /// Detections that keep personal data, secrets and custom sensitive patterns out of prompts and
    /// responses; these may `mask` what they find. Omit to turn all of them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_protection: Option<DataProtection>,

    /// How streamed responses (server-sent events) are scanned. Omit for `mode: holdback` with
    /// 4096 bytes held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<Streaming>,

    /// What happens when a scan cannot finish: a detector fails or takes longer than
    /// `maxInlineLatencyMs`. `failOpen` forwards the traffic unscanned and logs the failure; `failClosed`
    /// refuses it with HTTP 503. Default: `failOpen`.
    #[serde(default)]
    pub failure_mode: FailureMode,

    /// Longest time in milliseconds the sidecar may spend scanning one prompt or response before
    /// `failureMode` applies. Must be between 1 and 60000. Default: 500.
    #[serde(default = "default_max_inline_latency_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_inline_latency_ms: i32,

    /// What the sidecar does with requests to an API it does not recognise as an LLM API (OpenAI-,
    /// Anthropic- and Gemini-style chat, completion, embedding and response APIs are recognised).
    /// `scanAsText` scans the whole body as text, `pass` forwards it unscanned, `block` refuses it with
    /// HTTP 403. Default: `scanAsText`.
    #[serde(default)]
    pub unknown_apis: UnknownApis,

    /// Where threat logs go and how much they say. Omit to write standard threat logs of malicious
    /// verdicts to the sidecar's standard output only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

impl Default for AISecurityProfileSpec {
    fn default() -> Self {
        Self {
            app_protection: None,
            model_protection: None,
            data_protection: None,
            streaming: None,
            failure_mode: FailureMode::default(),
            max_inline_latency_ms: DEFAULT_MAX_INLINE_LATENCY_MS,
            unknown_apis: UnknownApis::default(),
            logging: None,
        }
    }
}

fn default_max_inline_latency_ms() -> i32 {
    DEFAULT_MAX_INLINE_LATENCY_MS
}

/// What the sidecar does with requests to APIs it does not recognise.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum UnknownApis {
    /// Scan the whole request and response bodies as text.
    #[default]
    ScanAsText,
    /// Forward without scanning.
    Pass,
    /// Refuse with HTTP 403.
    Block,
}

/// Detections that protect the application.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppProtection {
    /// Detects prompt injection and jailbreak attempts in prompts (including text that tools and
    /// retrieved documents put into them). Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_injection: Option<PromptInjection>,

    /// Detects malicious or unwanted URLs in prompts and responses. Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malicious_url: Option<MaliciousUrl>,

    /// Detects malicious code in prompts and responses, such as reverse shells, download-and-execute
    /// one-liners and obfuscated payloads. Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malicious_code: Option<MaliciousCode>,

    /// Detects topics the application must not discuss, in prompts and responses. Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Topics>,
}

/// Prompt injection detection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptInjection {
    /// What to do with a prompt that carries an injection: `allow`, `alert` or `block` (`mask` is not
    /// available: an injection cannot be cut out of a prompt safely). Default: `block`.
    #[serde(default)]
    pub action: DetectionAction,

    /// How readily the detector flags a prompt: `low` flags only clear-cut attacks (fewest false
    /// positives), `high` also flags borderline phrasing (catches more, flags more benign prompts).
    /// Default: `medium`.
    #[serde(default)]
    pub sensitivity: Sensitivity,

    /// Also score each text with the built-in classifier, a linear model learned from labelled attacks and
    /// hard negatives that catches paraphrases no phrase rule was written for (about 10 microseconds per
    /// 4 KB). Its findings are reported as `injection.classifier`; on a text it is confident is benign it
    /// also drops the phrase rules' weaker findings (never structural ones). It does not judge the
    /// application's own system prompt (the phrase rules still read it). Default: true.
    #[serde(default = "default_true")]
    pub classifier: bool,
}

fn default_true() -> bool {
    true
}

impl Default for PromptInjection {
    fn default() -> Self {
        PromptInjection {
            action: DetectionAction::default(),
            sensitivity: Sensitivity::default(),
            classifier: true,
        }
    }
}

/// How readily a detector flags borderline input.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Sensitivity {
    /// Flag only high-confidence detections.
    Low,
    /// Flag high- and medium-confidence detections.
    #[default]
    Medium,
    /// Flag every detection above the detector's noise floor.
    High,
}

/// Malicious URL detection.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaliciousUrl {
    /// What to do when a prompt or response contains a flagged URL: `allow`, `alert` or `block`.
    /// Default: `block`.
    #[serde(default)]
    pub action: DetectionAction,

    /// Domains that are never flagged, whatever their category. An entry covers the domain and all its
    /// subdomains: `example.com` also allows `api.example.com`. Lower-case DNS names, at most 1000.
    /// Example: `[docs.python.org, example.com]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 253), pattern(DOMAIN_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allow_domains: Vec<String>,

    /// Domains that are always flagged; an entry covers the domain and all its subdomains. `allowDomains`
    /// wins when both match. Lower-case DNS names, at most 1000. Example: `[pastebin.com]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 253), pattern(DOMAIN_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub block_domains: Vec<String>,

    /// URL categories that are flagged when the domain is in neither list. Default:
    /// `[malware, phishing, commandAndControl]`; set `[]` to flag only `blockDomains`.
    #[serde(default = "default_url_categories")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub block_categories: Vec<UrlCategory>,
}

impl Default for MaliciousUrl {
    fn default() -> Self {
        Self {
            action: DetectionAction::default(),
            allow_domains: Vec::new(),
            block_domains: Vec::new(),
            block_categories: default_url_categories(),
        }
    }
}

/// A lower-case DNS name (no wildcard, no trailing dot).
const DOMAIN_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

fn default_url_categories() -> Vec<UrlCategory> {
    vec![
        UrlCategory::Malware,
        UrlCategory::Phishing,
        UrlCategory::CommandAndControl,
    ]
}

/// A class of URL the malicious-URL detector recognises.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum UrlCategory {
    /// Hosts known to serve malware.
    Malware,
    /// Hosts known for phishing or credential harvesting.
    Phishing,
    /// Known command-and-control infrastructure.
    CommandAndControl,
    /// Hosts that are raw IP addresses instead of names.
    IpAddress,
    /// Link shorteners that hide the real destination.
    UrlShortener,
    /// Free dynamic-DNS domains often used for throwaway infrastructure.
    DynamicDns,
}

/// Malicious code detection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaliciousCode {
    /// What to do when a prompt or response contains malicious code: `allow`, `alert` or `block`.
    /// Default: `block`.
    #[serde(default)]
    pub action: DetectionAction,
}

/// Banned-topic detection.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Topics {
    /// What to do when a prompt or response touches a banned topic: `allow`, `alert` or `block`.
    /// Default: `block`.
    #[serde(default)]
    pub action: DetectionAction,

    /// The banned topics, at most 64, with unique names. Example:
    /// `[{name: competitors, phrases: ["acme corp", "globex"]}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        merge_strategy = ListMerge::Atomic,
        validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))")
            .message("banned topic names must be unique")
    )]
    pub banned: Vec<BannedTopic>,
}

/// A topic the application must not discuss.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BannedTopic {
    /// Name of the topic as it appears in threat logs, e.g. `competitors`. Lower-case letters, digits
    /// and `-`, at most 63 characters.
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    pub name: String,

    /// Phrases that identify the topic, matched case-insensitively on word boundaries. 1 to 100 phrases
    /// of at most 256 characters each. Example: `["acme corp", "globex"]`.
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 256)))]
    pub phrases: Vec<String>,
}

/// A DNS label: lower-case letters, digits and `-`, starting and ending with a letter or digit.
const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Denial-of-service and cost limits on the model server.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelProtection {
    /// Per-caller request and token rates, counted per `callerKey`. Omit for no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,

    /// Largest request body in bytes the model server receives, e.g. `1048576` (1 MiB). At least 1.
    /// Omit for no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prompt_bytes: Option<i32>,

    /// Largest prompt in tokens (all messages of a request, as estimated by the sidecar), e.g. `8192`.
    /// At least 1. Omit for no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prompt_tokens: Option<i32>,

    /// Largest number of output tokens a request may ask for (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`), e.g. `4096`. At least 1. With `action: block` a request asking for more, or
    /// for no limit, is rewritten to ask for this many; with `alert` it is forwarded unchanged and
    /// logged. Omit for no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_output_tokens: Option<i32>,

    /// Most streamed responses one caller may have open at once, e.g. `4`. At least 1. Omit for no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_streams: Option<i32>,

    /// What identifies a caller for `rateLimit` and `maxConcurrentStreams`. Omit to count per source IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_key: Option<CallerKey>,

    /// What happens when a limit is exceeded: `block` answers HTTP 429 with `Retry-After` for rate and
    /// stream limits and HTTP 403 for size caps; `alert` forwards the request and logs it. Default:
    /// `block`.
    #[serde(default)]
    pub action: LimitAction,
}

/// Token-bucket rate limits per caller.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.requestsPerMinute) || has(self.tokensPerMinute)")
        .message("rateLimit needs requestsPerMinute, tokensPerMinute or both"),
    validation = Rule::new("!has(self.burst) || has(self.requestsPerMinute)")
        .message("rateLimit.burst needs requestsPerMinute: burst is the request bucket's size")
        .field_path(".burst")
)]
pub struct RateLimit {
    /// Steady number of requests per minute a caller may send, e.g. `60`. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<i32>,

    /// Steady number of tokens (prompt plus output) per minute a caller may use, e.g. `100000`. At
    /// least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<i32>,

    /// Requests a caller may send at once on top of the steady rate (the request bucket's size), e.g.
    /// `10`. At least 1. Default: `requestsPerMinute`, one minute's allowance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<i32>,
}

/// What identifies a caller for per-caller limits.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source == 'header' ? has(self.headerName) : !has(self.headerName)")
    .message("callerKey.headerName is required when source is header and not allowed otherwise")
    .field_path(".headerName"))]
pub struct CallerKey {
    /// Where the caller's identity comes from: `sourceIP` (the connection's source address),
    /// `serviceAccount` (the service account of the pod that owns the source address, for pods in the
    /// namespaces the instance selects; other callers count by source address) or `header` (the value
    /// of the request header `headerName`). Default: `sourceIP`.
    #[serde(default)]
    pub source: CallerKeySource,

    /// Request header that names the caller when `source` is `header`, e.g. `x-user-id`. Requests
    /// without the header share one bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$"))]
    pub header_name: Option<String>,
}

/// Where a caller's identity comes from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CallerKeySource {
    /// The connection's source IP address.
    #[default]
    #[serde(rename = "sourceIP")]
    SourceIp,
    /// The service account of the pod that owns the source address.
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// The value of a request header.
    #[serde(rename = "header")]
    Header,
}

/// What happens when a model-protection limit is exceeded.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum LimitAction {
    /// Refuse the request (HTTP 429 or 403) and log it.
    #[default]
    Block,
    /// Forward the request and log it.
    Alert,
}

/// Detections of sensitive data.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataProtection {
    /// Detects personal data (card numbers, social security numbers, IBANs, e-mail addresses, phone
    /// numbers, IP addresses). Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<Pii>,

    /// Detects credentials such as cloud keys, API tokens and private keys. Omit to turn off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Secrets>,

    /// Your own sensitive patterns, at most 64 with unique names, e.g.
    /// `[{name: ticket-id, regex: "TCK-[0-9]{6}", action: mask}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        merge_strategy = ListMerge::Atomic,
        validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))")
            .message("customPatterns names must be unique")
    )]
    pub custom_patterns: Vec<CustomPattern>,
}

/// Personal data detection.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pii {
    /// What to do with personal data found in a prompt or response: `allow`, `alert`, `block` or `mask`
    /// (replace each match with `[REDACTED:<type>]`). Default: `mask`.
    #[serde(default)]
    pub action: DataAction,

    /// Kinds of personal data to detect. Default: all of `creditCard`, `ssn`, `iban`, `email`, `phone`
    /// and `ipAddress`.
    #[serde(default = "all_pii_types")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub types: Vec<PiiType>,
}

impl Default for Pii {
    fn default() -> Self {
        Self {
            action: DataAction::default(),
            types: all_pii_types(),
        }
    }
}

fn all_pii_types() -> Vec<PiiType> {
    vec![
        PiiType::CreditCard,
        PiiType::Ssn,
        PiiType::Iban,
        PiiType::Email,
        PiiType::Phone,
        PiiType::IpAddress,
    ]
}

/// A kind of personal data.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum PiiType {
    /// Payment card numbers (Luhn-checked).
    CreditCard,
    /// US social security numbers.
    Ssn,
    /// International bank account numbers (checksum-verified).
    Iban,
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// IPv4 and IPv6 addresses.
    IpAddress,
}

/// Credential detection.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    /// What to do with a credential found in a prompt or response: `allow`, `alert`, `block` or `mask`
    /// (replace it with `[REDACTED:<type>]`). Default: `mask`.
    #[serde(default)]
    pub action: DataAction,

    /// Kinds of credentials to detect. Default: all of `awsAccessKey`, `githubToken`, `slackToken`,
    /// `openaiApiKey`, `anthropicApiKey`, `googleApiKey`, `privateKey` and `jwt`.
    #[serde(default = "all_secret_types")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub types: Vec<SecretType>,
}

impl Default for Secrets {
    fn default() -> Self {
        Self {
            action: DataAction::default(),
            types: all_secret_types(),
        }
    }
}

fn all_secret_types() -> Vec<SecretType> {
    vec![
        SecretType::AwsAccessKey,
        SecretType::GithubToken,
        SecretType::SlackToken,
        SecretType::OpenaiApiKey,
        SecretType::AnthropicApiKey,
        SecretType::GoogleApiKey,
        SecretType::PrivateKey,
        SecretType::Jwt,
    ]
}

/// A kind of credential.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SecretType {
    /// AWS access key IDs and secret access keys.
    AwsAccessKey,
    /// GitHub personal access, OAuth and app tokens.
    GithubToken,
    /// Slack bot, user and webhook tokens.
    SlackToken,
    /// OpenAI API keys.
    OpenaiApiKey,
    /// Anthropic API keys.
    AnthropicApiKey,
    /// Google API keys.
    GoogleApiKey,
    /// PEM-encoded private keys.
    PrivateKey,
    /// JSON Web Tokens.
    Jwt,
}

/// A sensitive pattern of your own.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maskWith) || self.action == 'mask'")
    .message("maskWith is only used with action: mask")
    .field_path(".maskWith"))]
pub struct CustomPattern {
    /// Name of the pattern, unique in the profile; threat logs and masks use it, e.g. `ticket-id`.
    /// Lower-case letters, digits and `-`, at most 63 characters.
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    pub name: String,

    /// Regular expression (RE2 syntax: no look-around or back-references) matched against prompts and
    /// responses, e.g. `TCK-[0-9]{6}`. 1 to 1024 characters. A pattern that does not compile marks the
    /// profile `Ready=False` and the sidecars keep the last good policy.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("customPatterns regex must not be empty"))]
    pub regex: String,

    /// What to do with a match: `allow`, `alert`, `block` or `mask`. Default: `mask`.
    #[serde(default)]
    pub action: DataAction,

    /// Text that replaces each match when `action` is `mask`, e.g. `TCK-######`. Default:
    /// `[REDACTED:<name>]`. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub mask_with: Option<String>,
}

/// How streamed responses are scanned.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.holdbackBytes) || self.mode == 'holdback'")
    .message("holdbackBytes is only used with mode: holdback")
    .field_path(".holdbackBytes"))]
pub struct Streaming {
    /// `buffer` scans the whole response before the client sees any of it (safest, slowest first byte);
    /// `holdback` streams while holding back the last `holdbackBytes`, so a detection can end the stream
    /// before the offending text reaches the client; `passAndAlert` streams at once and can only alert.
    /// Default: `holdback`.
    #[serde(default)]
    pub mode: StreamingMode,

    /// Bytes of a streamed response held back in `holdback` mode, between 1 and 1048576, e.g. `4096`.
    /// Only allowed with `mode: holdback`. Default: 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_048_576))]
    pub holdback_bytes: Option<i32>,
}

impl Streaming {
    /// Bytes held back in `holdback` mode, with the default applied; `None` in the other modes.
    pub fn effective_holdback_bytes(&self) -> Option<i32> {
        (self.mode == StreamingMode::Holdback).then(|| self.holdback_bytes.unwrap_or(DEFAULT_HOLDBACK_BYTES))
    }
}

/// How streamed responses are scanned.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum StreamingMode {
    /// Buffer and scan the whole response, then send it.
    Buffer,
    /// Stream, holding back the tail so a detection can stop the stream in time.
    #[default]
    Holdback,
    /// Stream at once; detections can only alert.
    PassAndAlert,
}

/// Threat-log settings.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    /// What threat logs contain. Omit for `verbosity: standard` without benign verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_logs: Option<ThreatLogs>,

    /// Where threat logs are sent besides the sidecar's standard output, at most 8 forwarders, e.g.
    /// `[{syslog: {address: "syslog.logging.svc:514"}}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub forwarders: Vec<Forwarder>,
}

/// What threat logs contain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThreatLogs {
    /// `minimal`: verdict, action, category and ids; `standard`: also the detections, source and
    /// destination; `full`: also masked excerpts around each detection. Secrets and personal data are
    /// never logged unmasked. Default: `standard`.
    #[serde(default)]
    pub verbosity: Verbosity,

    /// Also log benign verdicts (every scanned prompt and response), not only malicious ones. Default:
    /// `false`.
    #[serde(default)]
    pub include_benign: bool,
}

/// How much a threat log entry says.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Verbosity {
    /// Verdict, action, category and ids.
    Minimal,
    /// Also detections, source and destination.
    #[default]
    Standard,
    /// Also masked excerpts around each detection.
    Full,
}

/// One threat-log destination: exactly one of `syslog` or `http`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.syslog) != has(self.http)")
    .message("a forwarder sets exactly one of syslog or http"))]
pub struct Forwarder {
    /// Send each threat log entry as a syslog message (RFC 5424, JSON body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogForwarder>,

    /// POST threat log entries in batches, as a JSON array, to an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpForwarder>,
}

/// A syslog destination.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyslogForwarder {
    /// `host:port` of the syslog server, e.g. `syslog.logging.svc:514` or `[fd00::1]:514`.
    #[schemars(length(max = 261))]
    #[x_kube(validation = Rule::new(r"self.matches('^([^:\\[\\]]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$')")
        .message("syslog address must be host:port, e.g. syslog.logging.svc:514"))]
    pub address: String,

    /// Transport: `udp` or `tcp`. Default: `udp`.
    #[serde(default)]
    pub protocol: SyslogProtocol,

    /// Syslog facility of the messages. Default: `local0`.
    #[serde(default)]
    pub facility: SyslogFacility,
}

/// Syslog transport.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SyslogProtocol {
    /// UDP datagrams.
    #[default]
    Udp,
    /// Octet-counted messages over TCP.
    Tcp,
}

/// Syslog facility.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SyslogFacility {
    /// `user`.
    User,
    /// `daemon`.
    Daemon,
    /// `auth`.
    Auth,
    /// `local0`.
    #[default]
    Local0,
    /// `local1`.
    Local1,
    /// `local2`.
    Local2,
    /// `local3`.
    Local3,
    /// `local4`.
    Local4,
    /// `local5`.
    Local5,
    /// `local6`.
    Local6,
    /// `local7`.
    Local7,
}

/// An HTTP destination.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpForwarder {
    /// Endpoint that receives the batches, e.g. `https://siem.example.com/ingest`. Must start with
    /// `https://` or `http://`; at most 2048 characters.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')")
        .message("http forwarder url must start with https:// or http://"))]
    pub url: String,

    /// Most entries per request, between 1 and 10000. Default: 100.
    #[serde(default = "default_http_batch_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: i32,

    /// Secret key whose value is sent as `Authorization: Bearer <value>`. Omit to send no credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

impl Default for HttpForwarder {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_size: DEFAULT_HTTP_BATCH_SIZE,
            secret_ref: None,
        }
    }
}

fn default_http_batch_size() -> i32 {
    DEFAULT_HTTP_BATCH_SIZE
}

/// Observed state of an `AISecurityProfile`, written by the operator.
// Every field is serialized, an empty list as `[]` and an absent value as `null`: the operator writes
// the status as a JSON merge patch, in which a field left out would keep its old value
// (crds/tests/status_patch.rs).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AISecurityProfileStatus {
    /// Current state of the profile. `Ready` is `True` when the profile is valid and has been handed to
    /// every sidecar that uses it. Written by the operator.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes. Written by the operator.
    #[serde(default)]
    pub observed_generation: Option<i64>,

    /// Number of `AIRuntimeInstance`s that use this profile, directly or through a rule. Written by the
    /// operator.
    #[serde(default)]
    pub instance_count: i32,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("deserialises")
    }

    #[test]
    fn omitted_fields_take_the_documented_defaults() {
        assert_eq!(
            from_json::<AISecurityProfileSpec>(json!({})),
            AISecurityProfileSpec::default()
        );
        assert_eq!(AISecurityProfileSpec::default().max_inline_latency_ms, 500);
        assert_eq!(
            from_json::<PromptInjection>(json!({})),
            PromptInjection::default()
        );
        assert!(PromptInjection::default().classifier);
        assert_eq!(from_json::<MaliciousUrl>(json!({})), MaliciousUrl::default());
        assert_eq!(from_json::<Topics>(json!({})), Topics::default());
        assert_eq!(
            from_json::<ModelProtection>(json!({})),
            ModelProtection::default()
        );
        assert_eq!(from_json::<CallerKey>(json!({})), CallerKey::default());
        assert_eq!(from_json::<Pii>(json!({})), Pii::default());
        assert_eq!(from_json::<Secrets>(json!({})), Secrets::default());
        assert_eq!(from_json::<Streaming>(json!({})), Streaming::default());
        assert_eq!(from_json::<Logging>(json!({})), Logging::default());
        assert_eq!(from_json::<ThreatLogs>(json!({})), ThreatLogs::default());
        assert_eq!(
            from_json::<SyslogForwarder>(json!({"address": ""})),
            SyslogForwarder::default()
        );
        assert_eq!(
            from_json::<HttpForwarder>(json!({"url": ""})),
            HttpForwarder::default()
        );
        assert_eq!(
            from_json::<SecretKeyRef>(json!({"name": "siem"})),
            SecretKeyRef {
                name: "siem".into(),
                key: "token".into()
            }
        );
    }

    #[test]
    fn data_detections_default_to_mask_and_the_others_to_block() {
        assert_eq!(Pii::default().action, DataAction::Mask);
        assert_eq!(Secrets::default().action, DataAction::Mask);
        assert_eq!(PromptInjection::default().action, DetectionAction::Block);
        assert_eq!(ModelProtection::default().action, LimitAction::Block);
    }

    #[test]
    fn holdback_bytes_apply_only_in_holdback_mode() {
        let mut streaming = Streaming::default();
        assert_eq!(streaming.effective_holdback_bytes(), Some(DEFAULT_HOLDBACK_BYTES));
        streaming.holdback_bytes = Some(16384);
        assert_eq!(streaming.effective_holdback_bytes(), Some(16384));
        streaming.mode = StreamingMode::Buffer;
        assert_eq!(streaming.effective_holdback_bytes(), None);
    }

    #[test]
    fn caller_key_sources_use_the_api_spelling() {
        let json = serde_json::to_value([CallerKeySource::SourceIp, CallerKeySource::ServiceAccount])
            .expect("serialises");
        assert_eq!(json, json!(["sourceIP", "serviceAccount"]));
    }
}
