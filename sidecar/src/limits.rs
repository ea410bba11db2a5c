//! Model-DoS protection: per-caller request and token buckets, prompt size caps, the output-token cap and
//! concurrent-stream limits, compiled from `spec.modelProtection`. Pure apart from the shared caller map;
//! every time-dependent decision takes `now`, so tests never sleep.
//!
//! # Decisions and who makes them
//!
//! The limiter only *decides*: [`Limiter::admit`], [`Limiter::open_stream`] and [`LimitConfig::check_size`]
//! return [`Limited`] whenever a limit is exceeded, also with `action: alert` ([`LimitConfig::alert_only`]).
//! The proxy then refuses (429 with `Retry-After` for rate and stream limits, 403 for size caps) or, in alert
//! mode, logs and forwards. A refused `admit` takes nothing from either bucket in both modes, so buckets never
//! go negative and, in alert mode, the logged refusals count exactly the traffic above the limit.
//! [`LimitConfig::cap_output_tokens`] is the one place that acts itself: it rewrites bodies only with
//! `action: block`; [`LimitConfig::output_tokens_over_cap`] tells the proxy what to log in alert mode.
//!
//! # Rate limits
//!
//! Each caller has a request bucket (`requestsPerMinute`, size `burst`, default one minute's allowance) and a
//! token bucket (`tokensPerMinute`, size one minute's allowance). Both refill continuously and start full.
//! Levels are kept in exact integer units (1/60,000,000,000 of a token, so one nanosecond of refill at one
//! token per minute is one unit): no rounding drift, and `Retry-After` is the exact wait rounded up to whole
//! seconds, at least 1 s. A request whose token cost exceeds the token bucket's size can never be admitted;
//! it is refused with reason `tokens`, a message saying so and a `Retry-After` of a full minute.
//!
//! Values below 1 are rejected by the CRD schema; a hand-written standalone profile that still carries one
//! is read as 1, the strictest valid value, because an operator who wrote a limit wanted one.
//!
//! # Caller keys
//!
//! `sourceIP` keys by the peer address (IPv4-mapped IPv6 normalised to IPv4). `header` keys by the header's
//! value as `header:<value>`; requests without the header, or with a value that is not UTF-8, share the key
//! `header:<none>`. Values of credential-bearing headers (`authorization`, `x-api-key`, …) are never kept or
//! logged: they key by a 64-bit fingerprint, `header:#<hex>`. Keys are at most 256 bytes; longer values keep a
//! prefix plus a fingerprint of the whole value, so distinct long values stay distinct.
//! `serviceAccount` keys by `sa:<namespace>/<name>`: the sidecar's own pod's account (downward API) for
//! outbound requests, and for inbound ones the account the operator's policy bundle names for the source
//! address (pods in the instance's namespaces). A caller the bundle does not name (another namespace, a
//! host-network pod, a standalone sidecar) is keyed by its source IP: one pod, one key, never merged
//! with an account's.
//!
//! # Memory and concurrency
//!
//! Callers live in 16 shards (`Mutex<HashMap>`, chosen by a per-process keyed hash, so a client cannot aim
//! keys at one shard); a lock is held only for a few integer operations. At most [`MAX_CALLERS`] callers are
//! tracked (an equal share per shard). When a shard is full, a sweep drops callers whose buckets have refilled
//! completely and who hold no stream: such a caller is indistinguishable from a new one, so nothing is lost.
//! Sweeps run at most once per second per shard, so a flood of fresh keys cannot make each request scan the
//! shard. A new caller that still finds no room shares the shard's overflow bucket with every other such
//! caller: under a flood of spoofed keys the newcomers are limited together, more strictly than one caller,
//! while callers already tracked keep their own buckets. Stream counts are atomics shared with the permits,
//! so dropping a [`StreamPermit`] takes no lock.
//!
//! # Token estimate
//!
//! [`estimate_tokens`] approximates OpenAI's cl100k tokenizer without its vocabulary, following how its
//! pre-tokenizer splits text: a run of letters (a new run starts at a lower-to-upper case change) costs
//! `1 + (bytes - 1) / 7`; digits cost one per group of up to 3; a run of ASCII punctuation costs one per 2
//! characters; each CJK character (Han, kana, Hangul, CJK punctuation, full-width forms) costs 1; other
//! non-ASCII symbols cost 1, or 2 for four-byte characters such as emoji. A single space, or a single
//! punctuation character, directly before letters is part of that word and costs nothing; any other run of
//! whitespace costs one per 16 characters. It lands within about 25% of cl100k on English prose, code and
//! Japanese; it underestimates scripts without spaces outside CJK (Thai, for example).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use airlock_crds::v1alpha1::profile::{CallerKeySource, LimitAction, ModelProtection};
use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

/// Most callers tracked at once, across all shards.
pub const MAX_CALLERS: usize = 65_536;

/// Longest caller key in bytes.
pub const MAX_CALLER_KEY_BYTES: usize = 256;

/// The key shared by requests that lack the configured caller header.
pub const MISSING_HEADER_KEY: &str = "header:<none>";

const SHARDS: usize = 16;

/// Shortest time between two sweeps of one full shard.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Bucket units per token: a rate of `r` tokens per minute adds `r` units per nanosecond.
const UNITS_PER_TOKEN: u128 = 60_000_000_000;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Headers whose values are credentials: keyed by fingerprint, never kept verbatim.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
];

/// Why a request was limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitReason {
    Requests,
    Tokens,
    Streams,
    PromptBytes,
    PromptTokens,
}

impl LimitReason {
    /// Metric and log label, e.g. `requests`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Requests => "requests",
            LimitReason::Tokens => "tokens",
            LimitReason::Streams => "streams",
            LimitReason::PromptBytes => "prompt_bytes",
            LimitReason::PromptTokens => "prompt_tokens",
        }
    }
}

/// A refused request: rate and stream limits answer 429 with `Retry-After`, size caps 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub reason: LimitReason,
    /// For rate limits: when the caller may try again. Zero for size caps.
    pub retry_after: Duration,
    /// Human-readable, for the response body and the log.
    pub message: String,
}

/// A token bucket's shape: how fast it refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Refill per minute.
    pub per_minute: u64,
    /// Bucket size: the most a caller may take at once.
    pub capacity: u64,
}

impl Rate {
    fn full(self) -> u128 {
        u128::from(self.capacity) * UNITS_PER_TOKEN
    }

    fn refilled(self, level: u128, elapsed: Duration) -> u128 {
        let added = u128::from(self.per_minute).saturating_mul(elapsed.as_nanos());
        level.saturating_add(added).min(self.full())
    }

    /// How long until `level` holds `cost`; `None` when it already does.
    fn wait(self, level: u128, cost: u64) -> Option<Duration> {
        let need = u128::from(cost) * UNITS_PER_TOKEN;
        let deficit = need.checked_sub(level).filter(|d| *d > 0)?;
        let nanos = deficit.div_ceil(u128::from(self.per_minute.max(1)));
        let secs = nanos.div_ceil(NANOS_PER_SEC).max(1);
        Some(Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)))
    }
}

/// Where a caller's identity comes from (`spec.modelProtection.callerKey`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CallerKeyRule {
    /// The peer's IP address.
    #[default]
    SourceIp,
    /// The source pod's service account; the source IP when unknown (see the module docs).
    ServiceAccount,
    /// A request header; `None` when the profile names none, so every request shares one key.
    Header(Option<HeaderName>),
}

/// The compiled `spec.modelProtection`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitConfig {
    /// `action: alert`: limits are computed and logged, never enforced; the proxy decides (module docs).
    pub alert_only: bool,
    /// `rateLimit.requestsPerMinute` with `burst` as the bucket size.
    pub requests: Option<Rate>,
    /// `rateLimit.tokensPerMinute`, one minute's allowance as the bucket size.
    pub tokens: Option<Rate>,
    /// `maxPromptBytes`.
    pub max_prompt_bytes: Option<usize>,
    /// `maxPromptTokens`, compared with [`estimate_tokens`].
    pub max_prompt_tokens: Option<u64>,
    /// `maxOutputTokens`.
    pub max_output_tokens: Option<u64>,
    /// `maxConcurrentStreams`.
    pub max_concurrent_streams: Option<u32>,
    /// `callerKey`.
    pub caller_key: CallerKeyRule,
}

/// A limit from the spec; below 1 only in a hand-written file, read as 1 (module docs).
fn at_least_one(value: i32) -> u32 {
    value.max(1).unsigned_abs()
}

impl LimitConfig {
    pub fn from_spec(spec: Option<&ModelProtection>) -> LimitConfig {
        let Some(spec) = spec else {
            return LimitConfig::default();
        };
        let rate = spec.rate_limit.as_ref();
        let requests = rate.and_then(|r| r.requests_per_minute).map(|rpm| {
            let per_minute = u64::from(at_least_one(rpm));
            Rate {
                per_minute,
                capacity: rate
                    .and_then(|r| r.burst)
                    .map_or(per_minute, |b| u64::from(at_least_one(b))),
            }
        });
        let tokens = rate.and_then(|r| r.tokens_per_minute).map(|tpm| {
            let per_minute = u64::from(at_least_one(tpm));
            Rate {
                per_minute,
                capacity: per_minute,
            }
        });
        let caller_key = match spec.caller_key.as_ref().map(|k| (k.source, k)) {
            None | Some((CallerKeySource::SourceIp, _)) => CallerKeyRule::SourceIp,
            Some((CallerKeySource::ServiceAccount, _)) => CallerKeyRule::ServiceAccount,
            Some((CallerKeySource::Header, key)) => CallerKeyRule::Header(
                key.header_name
                    .as_deref()
                    .and_then(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()),
            ),
        };
        LimitConfig {
            alert_only: spec.action == LimitAction::Alert,
            requests,
            tokens,
            max_prompt_bytes: spec
                .max_prompt_bytes
                .map(|b| usize::try_from(at_least_one(b)).unwrap_or(usize::MAX)),
            max_prompt_tokens: spec.max_prompt_tokens.map(|t| u64::from(at_least_one(t))),
            max_output_tokens: spec.max_output_tokens.map(|t| u64::from(at_least_one(t))),
            max_concurrent_streams: spec.max_concurrent_streams.map(at_least_one),
            caller_key,
        }
    }

    /// Whether a limit reads the prompt's token count (`maxPromptTokens` or `tokensPerMinute`): without
    /// one, the proxy does not estimate it.
    pub fn counts_tokens(&self) -> bool {
        self.max_prompt_tokens.is_some() || self.tokens.is_some()
    }

    /// Whether [`Limiter::admit`] has anything to count.
    pub fn rate_limited(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some()
    }

    /// The caller key for a request (module docs: caller keys); `account` is the source pod's namespace
    /// and service account, when known.
    pub fn caller_key(&self, peer: SocketAddr, headers: &HeaderMap, account: Option<(&str, &str)>) -> String {
        match &self.caller_key {
            CallerKeyRule::ServiceAccount if let Some((namespace, name)) = account => {
                bounded_key("sa:", &format!("{namespace}/{name}"))
            }
            CallerKeyRule::SourceIp | CallerKeyRule::ServiceAccount => peer.ip().to_canonical().to_string(),
            CallerKeyRule::Header(name) => {
                let value = name
                    .as_ref()
                    .and_then(|name| Some((name, headers.get(name)?)))
                    .and_then(|(name, v)| Some((name, std::str::from_utf8(v.as_bytes()).ok()?)));
                match value {
                    None => MISSING_HEADER_KEY.to_string(),
                    Some((name, value)) if CREDENTIAL_HEADERS.contains(&name.as_str()) => {
                        format!("header:#{:016x}", fingerprint(value.as_bytes()))
                    }
                    Some((_, value)) => bounded_key("header:", value),
                }
            }
        }
    }

    /// Size caps: body bytes and estimated prompt tokens. The proxy answers 403.
    pub fn check_size(&self, body_bytes: usize, prompt_tokens: u64) -> Result<(), Limited> {
        if let Some(max) = self.max_prompt_bytes
            && body_bytes > max
        {
            return Err(Limited {
                reason: LimitReason::PromptBytes,
                retry_after: Duration::ZERO,
                message: format!("request body is {body_bytes} bytes; the limit is {max} bytes"),
            });
        }
        if let Some(max) = self.max_prompt_tokens
            && prompt_tokens > max
        {
            return Err(Limited {
                reason: LimitReason::PromptTokens,
                retry_after: Duration::ZERO,
                message: format!("prompt is about {prompt_tokens} tokens; the limit is {max} tokens"),
            });
        }
        Ok(())
    }

    /// Rewrites the output-token fields of a request body to at most the cap, adding one when the request
    /// sets none (see [`OutputField`] for which). Returns whether it changed the body; with `action: alert`,
    /// without a cap, or for a body that is not a JSON object it changes nothing.
    pub fn cap_output_tokens(&self, body: &mut Value) -> bool {
        let (Some(cap), false) = (self.max_output_tokens, self.alert_only) else {
            return false;
        };
        let Some(obj) = body.as_object_mut() else {
            return false;
        };
        let mut present = false;
        let mut changed = false;
        for field in OutputField::ALL {
            if let Some(value) = field.get_mut(obj) {
                present = true;
                if !within_cap(value, cap) {
                    *value = Value::from(cap);
                    changed = true;
                }
            }
        }
        if !present {
            OutputField::for_body(obj).insert(obj, cap);
            changed = true;
        }
        changed
    }

    /// Whether [`LimitConfig::cap_output_tokens`] would change the body with `action: block`: what the proxy
    /// logs in alert mode.
    pub fn output_tokens_over_cap(&self, body: &Value) -> bool {
        let (Some(cap), Some(obj)) = (self.max_output_tokens, body.as_object()) else {
            return false;
        };
        let mut present = false;
        for field in OutputField::ALL {
            if let Some(value) = field.get(obj) {
                present = true;
                if !within_cap(value, cap) {
                    return true;
                }
            }
        }
        !present
    }
}

/// A number from 1 to `cap`. Anything else, including `null` ("no limit") and Ollama's `-1` ("unlimited"),
/// is replaced by the cap.
fn within_cap(value: &Value, cap: u64) -> bool {
    value.as_f64().is_some_and(|v| v >= 1.0 && v <= cap as f64)
}

/// The largest output-token count a request asks for, across the fields of every known API; `None` when it
/// sets none (or only values that are not positive numbers). For the token cost passed to [`Limiter::admit`].
pub fn requested_output_tokens(body: &Value) -> Option<u64> {
    let obj = body.as_object()?;
    OutputField::ALL
        .iter()
        .filter_map(|field| field.get(obj)?.as_f64())
        .filter(|v| *v >= 1.0)
        .map(|v| v.ceil() as u64)
        .max()
}

/// An output-token field of one LLM API.
///
/// When a request sets none, [`OutputField::for_body`] picks the one to add from the body's shape, first
/// match wins:
/// 1. TGI (`parameters` object, or `inputs` without `messages`): `parameters.max_new_tokens`.
/// 2. Ollama native (`options` object, or a key only Ollama uses: `keep_alive`, `raw`, `template`,
///    `context`, `format`): `options.num_predict`.
/// 3. Gemini (`generationConfig` object or `contents`): `generationConfig.maxOutputTokens`.
/// 4. OpenAI Responses (`input` without `messages`): `max_output_tokens`.
/// 5. OpenAI chat for reasoning models (`messages` and a `model` starting `o1`, `o3`, `o4` or `gpt-5`,
///    which refuse `max_tokens`): `max_completion_tokens`.
/// 6. Anything else (OpenAI chat and completions, Anthropic, unknown): `max_tokens`. An Ollama request with
///    none of the hints above gets `max_tokens` too, which Ollama ignores: adding Ollama's field instead
///    would make OpenAI and Anthropic refuse the request as having an unknown parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputField {
    /// OpenAI chat and completions, Anthropic messages: `max_tokens`.
    MaxTokens,
    /// OpenAI chat (newer models): `max_completion_tokens`.
    MaxCompletionTokens,
    /// OpenAI Responses: `max_output_tokens`.
    MaxOutputTokens,
    /// Ollama native: `options.num_predict`.
    OllamaNumPredict,
    /// Text Generation Inference: `parameters.max_new_tokens`.
    TgiMaxNewTokens,
    /// Gemini: `generationConfig.maxOutputTokens`.
    GeminiMaxOutputTokens,
    /// Gemini in protobuf field spelling: `generation_config.max_output_tokens`.
    GeminiSnakeMaxOutputTokens,
}

const OLLAMA_ONLY_KEYS: &[&str] = &["keep_alive", "raw", "template", "context", "format"];

const REASONING_MODEL_PREFIXES: &[&str] = &["o1", "o3", "o4", "gpt-5"];

impl OutputField {
    const ALL: [OutputField; 7] = [
        OutputField::MaxTokens,
        OutputField::MaxCompletionTokens,
        OutputField::MaxOutputTokens,
        OutputField::OllamaNumPredict,
        OutputField::TgiMaxNewTokens,
        OutputField::GeminiMaxOutputTokens,
        OutputField::GeminiSnakeMaxOutputTokens,
    ];

    /// `(parent object, field)`; no parent for top-level fields.
    fn path(self) -> (Option<&'static str>, &'static str) {
        match self {
            OutputField::MaxTokens => (None, "max_tokens"),
            OutputField::MaxCompletionTokens => (None, "max_completion_tokens"),
            OutputField::MaxOutputTokens => (None, "max_output_tokens"),
            OutputField::OllamaNumPredict => (Some("options"), "num_predict"),
            OutputField::TgiMaxNewTokens => (Some("parameters"), "max_new_tokens"),
            OutputField::GeminiMaxOutputTokens => (Some("generationConfig"), "maxOutputTokens"),
            OutputField::GeminiSnakeMaxOutputTokens => (Some("generation_config"), "max_output_tokens"),
        }
    }

    fn get(self, obj: &Map<String, Value>) -> Option<&Value> {
        match self.path() {
            (None, key) => obj.get(key),
            (Some(parent), key) => obj.get(parent)?.as_object()?.get(key),
        }
    }

    fn get_mut(self, obj: &mut Map<String, Value>) -> Option<&mut Value> {
        match self.path() {
            (None, key) => obj.get_mut(key),
            (Some(parent), key) => obj.get_mut(parent)?.as_object_mut()?.get_mut(key),
        }
    }

    /// Sets the field, creating (or replacing a non-object) parent.
    fn insert(self, obj: &mut Map<String, Value>, cap: u64) {
        match self.path() {
            (None, key) => {
                obj.insert(key.to_string(), Value::from(cap));
            }
            (Some(parent), key) => {
                let parent = obj
                    .entry(parent)
                    .and_modify(|p| {
                        if !p.is_object() {
                            *p = Value::Object(Map::new());
                        }
                    })
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(parent) = parent.as_object_mut() {
                    parent.insert(key.to_string(), Value::from(cap));
                }
            }
        }
    }

    /// The field to add to a request that sets none (rules on [`OutputField`]).
    pub fn for_body(obj: &Map<String, Value>) -> OutputField {
        let has = |key: &str| obj.contains_key(key);
        let has_object = |key: &str| obj.get(key).is_some_and(Value::is_object);
        if has_object("parameters") || (has("inputs") && !has("messages")) {
            OutputField::TgiMaxNewTokens
        } else if has_object("options") || OLLAMA_ONLY_KEYS.iter().any(|k| has(k)) {
            OutputField::OllamaNumPredict
        } else if has_object("generationConfig") || has("contents") {
            OutputField::GeminiMaxOutputTokens
        } else if has("input") && !has("messages") {
            OutputField::MaxOutputTokens
        } else if has("messages")
            && obj
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| REASONING_MODEL_PREFIXES.iter().any(|p| m.starts_with(p)))
        {
            OutputField::MaxCompletionTokens
        } else {
            OutputField::MaxTokens
        }
    }
}

/// FNV-1a: a stable fingerprint (the same across restarts, so logs stay comparable).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `prefix` + `value`, at most [`MAX_CALLER_KEY_BYTES`]; a longer value keeps a prefix and a fingerprint of
/// the whole.
fn bounded_key(prefix: &str, value: &str) -> String {
    if prefix.len() + value.len() <= MAX_CALLER_KEY_BYTES {
        return format!("{prefix}{value}");
    }
    let suffix = format!("#{:016x}", fingerprint(value.as_bytes()));
    let mut end = MAX_CALLER_KEY_BYTES - prefix.len() - suffix.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}{}{suffix}", &value[..end])
}

/// Held while a stream is open; dropping it frees the caller's slot.
#[derive(Debug)]
pub struct StreamPermit {
    /// The caller's open-stream count; `None` when streams are not limited.
    slot: Option<Arc<AtomicU32>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One caller's buckets and streams.
#[derive(Debug)]
struct CallerState {
    /// Request bucket level in units ([`UNITS_PER_TOKEN`] per request).
    requests: u128,
    /// Token bucket level in units.
    tokens: u128,
    /// When the levels were last brought up to date; `None` for a caller never rate-checked (full).
    refilled_at: Option<Instant>,
    /// Open streams; incremented only under the shard lock, decremented by permits without it.
    streams: Arc<AtomicU32>,
}

impl CallerState {
    fn new(config: &LimitConfig) -> CallerState {
        CallerState {
            requests: config.requests.map_or(0, Rate::full),
            tokens: config.tokens.map_or(0, Rate::full),
            refilled_at: None,
            streams: Arc::new(AtomicU32::new(0)),
        }
    }

    fn levels_at(&self, config: &LimitConfig, now: Instant) -> (u128, u128) {
        let elapsed = self
            .refilled_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (
            config.requests.map_or(0, |r| r.refilled(self.requests, elapsed)),
            config.tokens.map_or(0, |t| t.refilled(self.tokens, elapsed)),
        )
    }

    fn refill(&mut self, config: &LimitConfig, now: Instant) {
        (self.requests, self.tokens) = self.levels_at(config, now);
        // Threads may pass slightly older instants; never move the clock back.
        if self.refilled_at.is_none_or(|at| now > at) {
            self.refilled_at = Some(now);
        }
    }

    /// Full buckets and no stream: dropping this caller loses nothing.
    fn idle(&self, config: &LimitConfig, now: Instant) -> bool {
        let (requests, tokens) = self.levels_at(config, now);
        self.streams.load(Ordering::Acquire) == 0
            && config.requests.is_none_or(|r| requests >= r.full())
            && config.tokens.is_none_or(|t| tokens >= t.full())
    }

    /// Takes one request and `tokens`, both or neither.
    fn take(&mut self, config: &LimitConfig, now: Instant, tokens: u64) -> Result<(), Limited> {
        self.refill(config, now);
        let request_wait = config.requests.and_then(|r| r.wait(self.requests, 1));
        let token_wait = config.tokens.and_then(|t| t.wait(self.tokens, tokens));
        let limited = match (request_wait, token_wait) {
            (None, None) => None,
            (Some(r), Some(t)) if t > r => Some((LimitReason::Tokens, t)),
            (Some(r), _) => Some((LimitReason::Requests, r)),
            (None, Some(t)) => Some((LimitReason::Tokens, t)),
        };
        match limited {
            None => {
                if config.requests.is_some() {
                    self.requests = self.requests.saturating_sub(UNITS_PER_TOKEN);
                }
                if config.tokens.is_some() {
                    self.tokens = self.tokens.saturating_sub(u128::from(tokens) * UNITS_PER_TOKEN);
                }
                Ok(())
            }
            Some((reason, retry_after)) => Err(rate_limited(config, reason, retry_after)),
        }
    }
}

fn rate_limited(config: &LimitConfig, reason: LimitReason, retry_after: Duration) -> Limited {
    let limit = match (reason, config.requests, config.tokens) {
        (LimitReason::Requests, Some(r), _) => {
            format!("{} requests per minute (burst {})", r.per_minute, r.capacity)
        }
        (_, _, Some(t)) => format!("{} tokens per minute", t.per_minute),
        _ => "the rate limit".to_string(),
    };
    Limited {
        reason,
        retry_after,
        message: format!(
            "rate limit of {limit} exceeded; retry in {} s",
            retry_after.as_secs()
        ),
    }
}

#[derive(Debug, Default)]
struct Shard {
    callers: HashMap<String, CallerState>,
    /// Shared by new callers that find the shard full.
    overflow: Option<CallerState>,
    /// Earliest time the next sweep may run.
    next_sweep: Option<Instant>,
}

impl Shard {
    /// The caller's state: tracked, newly tracked, or the overflow bucket when there is no room.
    fn state(
        &mut self,
        caller: &str,
        now: Instant,
        config: &LimitConfig,
        capacity: usize,
    ) -> &mut CallerState {
        if !self.callers.contains_key(caller) {
            if self.callers.len() >= capacity && self.next_sweep.is_none_or(|at| now >= at) {
                self.callers.retain(|_, state| !state.idle(config, now));
                self.next_sweep = Some(now + SWEEP_INTERVAL);
            }
            if self.callers.len() < capacity {
                self.callers.insert(caller.to_owned(), CallerState::new(config));
            }
        }
        match self.callers.get_mut(caller) {
            Some(state) => state,
            None => self.overflow.get_or_insert_with(|| CallerState::new(config)),
        }
    }
}

/// Shared per-caller state: one per policy, in an `Arc` across connections.
pub struct Limiter {
    config: LimitConfig,
    shards: Box<[Mutex<Shard>]>,
    /// Keyed per process so clients cannot aim keys at one shard.
    hasher: RandomState,
    shard_capacity: usize,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .field("shard_capacity", &self.shard_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::new(LimitConfig::default())
    }
}

impl Limiter {
    pub fn new(config: LimitConfig) -> Limiter {
        Limiter::with_max_callers(config, MAX_CALLERS)
    }

    /// A limiter that tracks at most `max_callers` (rounded down to a multiple of the shard count, at least
    /// one per shard) before new callers share overflow buckets.
    pub fn with_max_callers(config: LimitConfig, max_callers: usize) -> Limiter {
        Limiter {
            config,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            shard_capacity: (max_callers / SHARDS).max(1),
        }
    }

    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    #[cfg(test)]
    fn is_tracked(&self, caller: &str) -> bool {
        self.shard(caller).callers.contains_key(caller)
    }

    /// Callers tracked now, overflow buckets not counted.
    pub fn tracked_callers(&self) -> usize {
        self.shards.iter().map(|s| lock(s).callers.len()).sum()
    }

    fn shard(&self, caller: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(caller) % SHARDS as u64;
        lock(&self.shards[usize::try_from(index).unwrap_or(0)])
    }

    /// Takes one request and `tokens` (estimated prompt plus requested output) from the caller's buckets,
    /// both or neither. Refused even in alert mode (module docs); a cost larger than the token bucket can
    /// ever hold is refused with a full minute's `Retry-After`.
    pub fn admit(&self, caller: &str, now: Instant, tokens: u64) -> Result<(), Limited> {
        let config = &self.config;
        if !config.rate_limited() {
            return Ok(());
        }
        if let Some(rate) = config.tokens
            && tokens > rate.capacity
        {
            return Err(Limited {
                reason: LimitReason::Tokens,
                retry_after: Duration::from_secs(60),
                message: format!(
                    "request needs about {tokens} tokens (prompt plus requested output) but the limit is {} tokens \
                     per minute, so it can never be admitted; shorten the prompt or ask for fewer output tokens",
                    rate.per_minute
                ),
            });
        }
        let mut shard = self.shard(caller);
        shard
            .state(caller, now, config, self.shard_capacity)
            .take(config, now, tokens)
    }

    /// Takes a concurrent-stream slot for the caller.
    pub fn open_stream(&self, caller: &str) -> Result<StreamPermit, Limited> {
        self.open_stream_at(caller, Instant::now())
    }

    /// [`Limiter::open_stream`] at a given time (which matters only for making room in a full shard).
    pub fn open_stream_at(&self, caller: &str, now: Instant) -> Result<StreamPermit, Limited> {
        let Some(max) = self.config.max_concurrent_streams else {
            return Ok(StreamPermit { slot: None });
        };
        let mut shard = self.shard(caller);
        let state = shard.state(caller, now, &self.config, self.shard_capacity);
        if state.streams.load(Ordering::Acquire) >= max {
            return Err(Limited {
                reason: LimitReason::Streams,
                retry_after: Duration::from_secs(1),
                message: format!("at most {max} concurrent streams per caller; retry when one has finished"),
            });
        }
        state.streams.fetch_add(1, Ordering::AcqRel);
        Ok(StreamPermit {
            slot: Some(Arc::clone(&state.streams)),
        })
    }
}

/// A poisoned shard still holds consistent integers (no update spans a panic point), so keep using it.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// Estimated cl100k tokens in `text`; the formula is in the module docs.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_ascii() {
        estimate_ascii(text.as_bytes())
    } else {
        estimate_chars(text)
    }
}

/// [`estimate_tokens`] for ASCII text, byte by byte (the common case, several times faster than decoding
/// chars; a property test compares the two).
fn estimate_ascii(bytes: &[u8]) -> u64 {
    let class = |b: u8| {
        if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Digit
        } else if matches!(b, b'\t'..=b'\r' | b' ') {
            Class::Space
        } else {
            Class::Punct
        }
    };
    let run_end = |from: usize, of: Class| {
        bytes[from..]
            .iter()
            .position(|&b| class(b) != of)
            .map_or(bytes.len(), |p| from + p)
    };
    let mut tokens = 0u64;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let kind = class(b);
        let end = match kind {
            Class::Letter => {
                let mut j = i + 1;
                let mut prev_lower = b.is_ascii_lowercase();
                while let Some(&n) = bytes.get(j) {
                    if class(n) != Class::Letter || (prev_lower && n.is_ascii_uppercase()) {
                        break;
                    }
                    prev_lower = n.is_ascii_lowercase();
                    j += 1;
                }
                tokens += 1 + (j - i - 1) as u64 / 7;
                j
            }
            _ => run_end(i + 1, kind),
        };
        let run = (end - i) as u64;
        let next = bytes.get(end).map(|&n| class(n));
        match kind {
            Class::Digit => tokens += run.div_ceil(3),
            Class::Space => {
                let attaches = run == 1 && b == b' ' && matches!(next, Some(Class::Letter | Class::Punct));
                if !attaches {
                    tokens += run.div_ceil(16);
                }
            }
            Class::Punct => {
                let attaches = run == 1 && next == Some(Class::Letter);
                if !attaches {
                    tokens += run.div_ceil(2);
                }
            }
            _ => {}
        }
        i = end;
    }
    tokens
}

/// [`estimate_tokens`] over chars, for any text.
fn estimate_chars(text: &str) -> u64 {
    let mut tokens = 0u64;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match class(c) {
            Class::Letter => {
                let mut bytes = c.len_utf8();
                let mut prev_lower = c.is_lowercase();
                while let Some(&next) = chars.peek() {
                    if class(next) != Class::Letter || (prev_lower && next.is_uppercase()) {
                        break;
                    }
                    bytes += next.len_utf8();
                    prev_lower = next.is_lowercase();
                    chars.next();
                }
                tokens += 1 + (bytes as u64 - 1) / 7;
            }
            Class::Digit => {
                let mut run = 1u64;
                while chars.next_if(|n| class(*n) == Class::Digit).is_some() {
                    run += 1;
                }
                tokens += run.div_ceil(3);
            }
            Class::Space => {
                let mut run = 1u64;
                while chars.next_if(|n| class(*n) == Class::Space).is_some() {
                    run += 1;
                }
                let attaches = run == 1
                    && c == ' '
                    && chars
                        .peek()
                        .is_some_and(|n| matches!(class(*n), Class::Letter | Class::Punct | Class::Cjk));
                if !attaches {
                    tokens += run.div_ceil(16);
                }
            }
            Class::Punct => {
                let mut run = 1u64;
                while chars.next_if(|n| class(*n) == Class::Punct).is_some() {
                    run += 1;
                }
                let attaches = run == 1 && chars.peek().is_some_and(|n| class(*n) == Class::Letter);
                if !attaches {
                    tokens += run.div_ceil(2);
                }
            }
            Class::Cjk => tokens += 1,
            Class::Symbol => tokens += if c.len_utf8() == 4 { 2 } else { 1 },
        }
    }
    tokens
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Punct,
    Cjk,
    Symbol,
}

fn class(c: char) -> Class {
    if c.is_ascii_alphabetic() {
        Class::Letter
    } else if c.is_ascii_digit() {
        Class::Digit
    } else if c.is_whitespace() {
        Class::Space
    } else if c.is_ascii() {
        Class::Punct
    } else if is_cjk(c) {
        Class::Cjk
    } else if c.is_alphabetic() {
        Class::Letter
    } else if c.is_numeric() {
        Class::Digit
    } else {
        Class::Symbol
    }
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x11FF       // Hangul Jamo
        | 0x2E80..=0x2FDF     // CJK radicals, Kangxi radicals
        | 0x3000..=0x303F     // CJK symbols and punctuation
        | 0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3130..=0x318F     // Hangul compatibility Jamo
        | 0x31F0..=0x31FF     // Katakana phonetic extensions
        | 0x3400..=0x4DBF     // CJK extension A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFF00..=0xFFEF     // half- and full-width forms
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use airlock_crds::v1alpha1::profile::{CallerKey, RateLimit};
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn spec(json: Value) -> ModelProtection {
        serde_json::from_value(json).expect("valid modelProtection")
    }

    fn config_for(json: Value) -> LimitConfig {
        LimitConfig::from_spec(Some(&spec(json)))
    }

    fn limiter_for(json: Value) -> Limiter {
        Limiter::new(config_for(json))
    }

    fn peer(ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, 40000)
    }

    // --- from_spec ---

    #[test]
    fn no_spec_means_no_limits() {
        let config = LimitConfig::from_spec(None);
        assert_eq!(config, LimitConfig::default());
        assert!(!config.rate_limited());
        let limiter = Limiter::new(config);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.admit("a", now, 1_000_000), Ok(()));
        }
        assert_eq!(
            limiter.tracked_callers(),
            0,
            "no state is kept without rate limits"
        );
        assert_eq!(
            LimitConfig::from_spec(Some(&ModelProtection::default())),
            LimitConfig::default()
        );
    }

    #[test]
    fn from_spec_applies_the_documented_defaults() {
        let config = config_for(json!({"rateLimit": {"requestsPerMinute": 60, "tokensPerMinute": 1000}}));
        assert_eq!(
            config.requests,
            Some(Rate {
                per_minute: 60,
                capacity: 60
            }),
            "burst defaults to a minute"
        );
        assert_eq!(
            config.tokens,
            Some(Rate {
                per_minute: 1000,
                capacity: 1000
            })
        );
        assert_eq!(config.caller_key, CallerKeyRule::SourceIp);
        assert!(!config.alert_only, "action defaults to block");

        let config = config_full();
        assert_eq!(
            config.requests,
            Some(Rate {
                per_minute: 60,
                capacity: 10
            })
        );
        assert_eq!(config.max_prompt_bytes, Some(1_048_576));
        assert_eq!(config.max_prompt_tokens, Some(8192));
        assert_eq!(config.max_output_tokens, Some(4096));
        assert_eq!(config.max_concurrent_streams, Some(4));
        assert_eq!(
            config.caller_key,
            CallerKeyRule::Header(Some(HeaderName::from_static("x-user-id")))
        );
        assert!(config.alert_only);
    }

    fn config_full() -> LimitConfig {
        config_for(json!({
            "rateLimit": {"requestsPerMinute": 60, "burst": 10},
            "maxPromptBytes": 1_048_576,
            "maxPromptTokens": 8192,
            "maxOutputTokens": 4096,
            "maxConcurrentStreams": 4,
            "callerKey": {"source": "header", "headerName": "X-User-Id"},
            "action": "alert",
        }))
    }

    #[test]
    fn values_below_one_from_a_hand_written_file_read_as_one() {
        let spec = ModelProtection {
            rate_limit: Some(RateLimit {
                requests_per_minute: Some(0),
                tokens_per_minute: Some(-5),
                burst: Some(0),
            }),
            max_prompt_bytes: Some(0),
            ..ModelProtection::default()
        };
        let config = LimitConfig::from_spec(Some(&spec));
        assert_eq!(
            config.requests,
            Some(Rate {
                per_minute: 1,
                capacity: 1
            })
        );
        assert_eq!(
            config.tokens,
            Some(Rate {
                per_minute: 1,
                capacity: 1
            })
        );
        assert_eq!(config.max_prompt_bytes, Some(1));
    }

    // --- request and token buckets ---

    #[test]
    fn request_bucket_refills_continuously_and_reports_retry_after() {
        // 6 per minute: one request every 10 s, bucket of 6.
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 6}}));
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        }
        let limited = limiter.admit("a", t0, 0).expect_err("bucket empty");
        assert_eq!(limited.reason, LimitReason::Requests);
        assert_eq!(limited.retry_after, secs(10));
        assert!(
            limited.message.contains("6 requests per minute"),
            "{}",
            limited.message
        );

        // 3.5 s later: 6.5 s to go, rounded up.
        let limited = limiter
            .admit("a", t0 + Duration::from_millis(3500), 0)
            .expect_err("still empty");
        assert_eq!(limited.retry_after, secs(7));
        // Exactly when Retry-After said, one request fits, and only one.
        assert_eq!(limiter.admit("a", t0 + secs(10), 0), Ok(()));
        assert_eq!(
            limiter
                .admit("a", t0 + secs(10), 0)
                .expect_err("empty")
                .retry_after,
            secs(10)
        );
        // After a long idle time the bucket is full again but never beyond its size.
        let later = t0 + secs(3600);
        for _ in 0..6 {
            assert_eq!(limiter.admit("a", later, 0), Ok(()));
        }
        assert!(limiter.admit("a", later, 0).is_err());
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        // 600 per minute: a request every 100 ms.
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 600, "burst": 1}}));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        assert_eq!(
            limiter.admit("a", t0, 0).expect_err("burst of one").retry_after,
            secs(1)
        );
        assert_eq!(limiter.admit("a", t0 + Duration::from_millis(100), 0), Ok(()));
    }

    #[test]
    fn burst_sets_the_bucket_size_not_the_rate() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 60, "burst": 3}}));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        }
        assert_eq!(
            limiter.admit("a", t0, 0).expect_err("burst spent").retry_after,
            secs(1)
        );
        // A minute idle refills only to the burst.
        let t1 = t0 + secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.admit("a", t1, 0), Ok(()));
        }
        assert!(limiter.admit("a", t1, 0).is_err());
        // A burst larger than the rate lets a caller save up beyond one minute.
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 1, "burst": 5}}));
        for _ in 0..5 {
            assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        }
        assert_eq!(
            limiter.admit("a", t0, 0).expect_err("spent").retry_after,
            secs(60)
        );
    }

    #[test]
    fn token_bucket_takes_the_request_cost_and_both_buckets_move_together() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 100, "tokensPerMinute": 600}}));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0, 500), Ok(()));
        let limited = limiter.admit("a", t0, 200).expect_err("100 tokens left");
        assert_eq!(limited.reason, LimitReason::Tokens);
        // 100 missing at 10 per second.
        assert_eq!(limited.retry_after, secs(10));
        assert!(
            limited.message.contains("600 tokens per minute"),
            "{}",
            limited.message
        );
        // The refusal took nothing: 100 tokens and 99 requests are still there.
        assert_eq!(limiter.admit("a", t0, 100), Ok(()));
        assert_eq!(
            limiter.admit("a", t0, 0),
            Ok(()),
            "a request costing no tokens still fits"
        );
        assert_eq!(
            limiter.admit("a", t0, 1).expect_err("tokens spent").reason,
            LimitReason::Tokens
        );
    }

    #[test]
    fn a_refused_request_takes_nothing_from_the_other_bucket() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 2, "tokensPerMinute": 100}}));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0, 10), Ok(()));
        assert_eq!(limiter.admit("a", t0, 10), Ok(()));
        // Requests empty: 80 tokens stay.
        for _ in 0..5 {
            assert_eq!(
                limiter.admit("a", t0, 10).expect_err("no requests").reason,
                LimitReason::Requests
            );
        }
        // Both short: the longer wait decides reason and Retry-After.
        assert_eq!(limiter.admit("a", t0 + secs(30), 80), Ok(()));
        // 1 request missing: 30 s; 20 tokens missing: 12 s.
        let limited = limiter.admit("a", t0 + secs(30), 40).expect_err("both short");
        assert_eq!(
            (limited.reason, limited.retry_after),
            (LimitReason::Requests, secs(30))
        );
        // 1 request missing: 30 s; 80 tokens missing: 48 s.
        let limited = limiter.admit("a", t0 + secs(30), 100).expect_err("both short");
        assert_eq!(
            (limited.reason, limited.retry_after),
            (LimitReason::Tokens, secs(48))
        );
    }

    #[test]
    fn a_cost_larger_than_the_token_bucket_is_refused_for_a_minute() {
        let limiter = limiter_for(json!({"rateLimit": {"tokensPerMinute": 1000}}));
        let t0 = Instant::now();
        let limited = limiter.admit("a", t0, 1001).expect_err("can never fit");
        assert_eq!(limited.reason, LimitReason::Tokens);
        assert_eq!(limited.retry_after, secs(60));
        assert!(limited.message.contains("never"), "{}", limited.message);
        assert_eq!(limiter.admit("a", t0, 1000), Ok(()), "the refusal took nothing");
    }

    #[test]
    fn alert_mode_still_reports_and_never_overdraws() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 2}, "action": "alert"}));
        assert!(limiter.config().alert_only);
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        assert_eq!(limiter.admit("a", t0, 0), Ok(()));
        // The proxy forwards these, but the limiter reports each one and keeps the bucket at zero.
        for _ in 0..100 {
            assert_eq!(limiter.admit("a", t0, 0).expect_err("over").retry_after, secs(30));
        }
        assert_eq!(
            limiter.admit("a", t0 + secs(30), 0),
            Ok(()),
            "refill starts from zero, not below"
        );
    }

    #[test]
    fn callers_are_isolated() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 5, "tokensPerMinute": 100}}));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.admit("noisy", t0, 10), Ok(()));
        }
        assert!(limiter.admit("noisy", t0, 10).is_err());
        for _ in 0..5 {
            assert_eq!(limiter.admit("quiet", t0, 20), Ok(()));
        }
        assert_eq!(limiter.tracked_callers(), 2);
    }

    #[test]
    fn an_older_instant_from_another_thread_does_not_rewind_the_clock() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 60, "burst": 1}}));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0 + secs(5), 0), Ok(()));
        assert_eq!(limiter.admit("a", t0, 0).expect_err("spent").retry_after, secs(1));
        assert_eq!(limiter.admit("a", t0 + secs(6), 0), Ok(()));
    }

    // --- size caps ---

    #[test]
    fn size_caps_answer_with_zero_retry_after() {
        let config = config_for(json!({"maxPromptBytes": 100, "maxPromptTokens": 10}));
        assert_eq!(config.check_size(100, 10), Ok(()));
        let limited = config.check_size(101, 0).expect_err("too big");
        assert_eq!(
            (limited.reason, limited.retry_after),
            (LimitReason::PromptBytes, Duration::ZERO)
        );
        assert!(limited.message.contains("101 bytes"), "{}", limited.message);
        let limited = config.check_size(50, 11).expect_err("too many tokens");
        assert_eq!(limited.reason, LimitReason::PromptTokens);
        assert_eq!(LimitConfig::default().check_size(usize::MAX, u64::MAX), Ok(()));
    }

    // --- output-token cap ---

    fn capped(body: Value) -> (bool, Value) {
        let config = config_for(json!({"maxOutputTokens": 100}));
        let mut body = body;
        let changed = config.cap_output_tokens(&mut body);
        (changed, body)
    }

    #[test]
    fn output_cap_lowers_every_present_field_and_keeps_smaller_values() {
        let (changed, body) = capped(json!({"model": "gpt-4o", "messages": [], "max_tokens": 5000}));
        assert!(changed);
        assert_eq!(body["max_tokens"], 100);
        let (changed, body) = capped(json!({"messages": [], "max_tokens": 50}));
        assert!(!changed);
        assert_eq!(body["max_tokens"], 50);
        let (changed, body) =
            capped(json!({"messages": [], "max_tokens": 50, "max_completion_tokens": 9000}));
        assert!(changed);
        assert_eq!(
            (body["max_tokens"].clone(), body["max_completion_tokens"].clone()),
            (json!(50), json!(100))
        );
    }

    #[test]
    fn output_cap_per_api_shape() {
        // Anthropic messages: max_tokens is required, so it is present.
        let (_, body) =
            capped(json!({"model": "claude-sonnet-4", "max_tokens": 8192, "system": "s", "messages": []}));
        assert_eq!(body["max_tokens"], 100);
        // OpenAI Responses.
        let (_, body) = capped(json!({"model": "gpt-4.1", "input": "hi", "max_output_tokens": 1000}));
        assert_eq!(body["max_output_tokens"], 100);
        // Ollama: -1 means unlimited.
        let (_, body) = capped(json!({"model": "llama3", "prompt": "hi", "options": {"num_predict": -1}}));
        assert_eq!(body["options"]["num_predict"], 100);
        // TGI.
        let (_, body) =
            capped(json!({"inputs": "hi", "parameters": {"max_new_tokens": 300, "temperature": 0.2}}));
        assert_eq!(
            body["parameters"],
            json!({"max_new_tokens": 100, "temperature": 0.2})
        );
        // Gemini.
        let (_, body) = capped(json!({"contents": [], "generationConfig": {"maxOutputTokens": 8192}}));
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
    }

    #[test]
    fn output_cap_adds_the_field_that_fits_the_body() {
        let cases = [
            (json!({"model": "gpt-4o", "messages": []}), "/max_tokens"),
            (
                json!({"model": "o3-mini", "messages": []}),
                "/max_completion_tokens",
            ),
            (
                json!({"model": "gpt-5", "messages": []}),
                "/max_completion_tokens",
            ),
            (
                json!({"model": "claude-x", "messages": [], "system": "s"}),
                "/max_tokens",
            ),
            (
                json!({"model": "gpt-4.1", "input": [{"role": "user", "content": "hi"}]}),
                "/max_output_tokens",
            ),
            (
                json!({"model": "llama3", "prompt": "hi", "options": {"temperature": 0}}),
                "/options/num_predict",
            ),
            (
                json!({"model": "llama3", "messages": [], "keep_alive": "5m"}),
                "/options/num_predict",
            ),
            (json!({"inputs": "hi"}), "/parameters/max_new_tokens"),
            (json!({"contents": []}), "/generationConfig/maxOutputTokens"),
            (
                json!({"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}),
                "/max_tokens",
            ),
            (json!({}), "/max_tokens"),
        ];
        for (body, pointer) in cases {
            let before = body.clone();
            let (changed, body) = capped(body);
            assert!(changed, "{before}");
            assert_eq!(body.pointer(pointer), Some(&json!(100)), "{before} -> {body}");
        }
        // Other options survive.
        let (_, body) = capped(json!({"model": "llama3", "prompt": "hi", "options": {"temperature": 0}}));
        assert_eq!(body["options"]["temperature"], 0);
    }

    #[test]
    fn output_cap_replaces_values_that_are_not_numbers_in_range() {
        for value in [
            json!(null),
            json!("5000"),
            json!(0),
            json!(-2),
            json!(100.5),
            json!([1]),
        ] {
            let (changed, body) = capped(json!({"messages": [], "max_tokens": value.clone()}));
            assert!(changed, "{value}");
            assert_eq!(body["max_tokens"], 100, "{value}");
        }
    }

    #[test]
    fn output_cap_leaves_alert_mode_uncapped_and_odd_bodies_alone() {
        let alert = config_for(json!({"maxOutputTokens": 100, "action": "alert"}));
        let mut body = json!({"messages": [], "max_tokens": 5000});
        assert!(!alert.cap_output_tokens(&mut body));
        assert_eq!(body["max_tokens"], 5000);
        assert!(alert.output_tokens_over_cap(&body), "the proxy can still log it");
        assert!(
            alert.output_tokens_over_cap(&json!({"messages": []})),
            "no limit asked for is over the cap"
        );
        assert!(!alert.output_tokens_over_cap(&json!({"messages": [], "max_tokens": 10})));

        let block = config_for(json!({"maxOutputTokens": 100}));
        for odd in [json!([1, 2]), json!("text"), json!(null)] {
            let mut body = odd.clone();
            assert!(!block.cap_output_tokens(&mut body));
            assert_eq!(body, odd);
        }
        let mut body = json!({"messages": []});
        assert!(
            !LimitConfig::default().cap_output_tokens(&mut body),
            "no cap configured"
        );
        assert_eq!(body, json!({"messages": []}));
    }

    #[test]
    fn requested_output_tokens_reads_every_shape() {
        assert_eq!(
            requested_output_tokens(&json!({"max_tokens": 50, "max_completion_tokens": 70})),
            Some(70)
        );
        assert_eq!(
            requested_output_tokens(&json!({"options": {"num_predict": 30}})),
            Some(30)
        );
        assert_eq!(
            requested_output_tokens(&json!({"options": {"num_predict": -1}})),
            None
        );
        assert_eq!(requested_output_tokens(&json!({"messages": []})), None);
    }

    #[test]
    fn only_token_limits_need_the_token_count() {
        assert!(!LimitConfig::default().counts_tokens());
        assert!(
            !config_for(json!({"rateLimit": {"requestsPerMinute": 5}, "maxPromptBytes": 10})).counts_tokens()
        );
        assert!(config_for(json!({"rateLimit": {"tokensPerMinute": 5}})).counts_tokens());
        assert!(config_for(json!({"maxPromptTokens": 5})).counts_tokens());
    }

    // --- caller keys ---

    #[test]
    fn source_ip_keys_normalise_mapped_ipv6() {
        let config = LimitConfig::default();
        let headers = HeaderMap::new();
        assert_eq!(
            config.caller_key(peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))), &headers, None),
            "10.0.0.7"
        );
        let mapped = Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped();
        assert_eq!(
            config.caller_key(peer(IpAddr::V6(mapped)), &headers, None),
            "10.0.0.7"
        );
        assert_eq!(
            config.caller_key(peer(IpAddr::V6(Ipv6Addr::LOCALHOST)), &headers, None),
            "::1"
        );
    }

    #[test]
    fn service_account_keys_name_the_account_and_fall_back_to_the_source_ip() {
        let config = config_for(json!({"callerKey": {"source": "serviceAccount"}}));
        assert_eq!(config.caller_key, CallerKeyRule::ServiceAccount);
        let a = peer(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let b = peer(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4)));
        let account = Some(("chat", "frontend"));
        // Two pods of one account share a key; the namespace is part of it.
        assert_eq!(
            config.caller_key(a, &HeaderMap::new(), account),
            "sa:chat/frontend"
        );
        assert_eq!(
            config.caller_key(b, &HeaderMap::new(), account),
            "sa:chat/frontend"
        );
        assert_ne!(
            config.caller_key(a, &HeaderMap::new(), Some(("batch", "frontend"))),
            "sa:chat/frontend"
        );
        // Unknown: the source IP.
        assert_eq!(config.caller_key(a, &HeaderMap::new(), None), "10.1.2.3");
        // Other rules ignore the account.
        assert_eq!(
            LimitConfig::default().caller_key(a, &HeaderMap::new(), account),
            "10.1.2.3"
        );
    }

    #[test]
    fn header_keys_use_the_value_and_share_one_key_when_missing() {
        let config = config_for(json!({"callerKey": {"source": "header", "headerName": "X-User-Id"}}));
        let ip = peer(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut headers = HeaderMap::new();
        assert_eq!(config.caller_key(ip, &headers, None), MISSING_HEADER_KEY);
        headers.insert("x-user-id", HeaderValue::from_static("alice"));
        assert_eq!(config.caller_key(ip, &headers, None), "header:alice");
        // Not UTF-8: shares the missing key.
        headers.insert(
            "x-user-id",
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes"),
        );
        assert_eq!(config.caller_key(ip, &headers, None), MISSING_HEADER_KEY);
        // UTF-8 beyond visible ASCII is still a name.
        headers.insert(
            "x-user-id",
            HeaderValue::from_bytes("jürgen".as_bytes()).expect("utf-8"),
        );
        assert_eq!(config.caller_key(ip, &headers, None), "header:jürgen");

        // Long values are bounded and still distinct.
        let long_a = format!("{}a", "é".repeat(300));
        let long_b = format!("{}b", "é".repeat(300));
        headers.insert(
            "x-user-id",
            HeaderValue::from_bytes(long_a.as_bytes()).expect("utf-8"),
        );
        let key_a = config.caller_key(ip, &headers, None);
        headers.insert(
            "x-user-id",
            HeaderValue::from_bytes(long_b.as_bytes()).expect("utf-8"),
        );
        let key_b = config.caller_key(ip, &headers, None);
        assert!(key_a.len() <= MAX_CALLER_KEY_BYTES && key_b.len() <= MAX_CALLER_KEY_BYTES);
        assert_ne!(key_a, key_b);

        // A profile naming no header: every request shares one key.
        let spec = ModelProtection {
            caller_key: Some(CallerKey {
                source: CallerKeySource::Header,
                header_name: None,
            }),
            ..ModelProtection::default()
        };
        let config = LimitConfig::from_spec(Some(&spec));
        assert_eq!(config.caller_key(ip, &headers, None), MISSING_HEADER_KEY);
    }

    #[test]
    fn credential_headers_key_by_fingerprint() {
        let config = config_for(json!({"callerKey": {"source": "header", "headerName": "Authorization"}}));
        let ip = peer(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-secret-1"));
        let first = config.caller_key(ip, &headers, None);
        assert!(
            first.starts_with("header:#") && !first.contains("secret"),
            "{first}"
        );
        assert_eq!(config.caller_key(ip, &headers, None), first, "stable");
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-secret-2"));
        assert_ne!(config.caller_key(ip, &headers, None), first);
    }

    // --- streams ---

    #[test]
    fn stream_permits_are_released_on_drop() {
        let limiter = limiter_for(json!({"maxConcurrentStreams": 2}));
        let a1 = limiter.open_stream("a").expect("first");
        let a2 = limiter.open_stream("a").expect("second");
        let limited = limiter.open_stream("a").expect_err("third");
        assert_eq!(
            (limited.reason, limited.retry_after),
            (LimitReason::Streams, secs(1))
        );
        let b = limiter.open_stream("b").expect("other caller unaffected");
        drop(a1);
        let a3 = limiter.open_stream("a").expect("slot freed");
        assert!(limiter.open_stream("a").is_err());
        drop((a2, a3, b));
        let _again = (
            limiter.open_stream("a").expect("1"),
            limiter.open_stream("a").expect("2"),
        );
    }

    #[test]
    fn unlimited_streams_keep_no_state() {
        let limiter = Limiter::default();
        let permits: Vec<_> = (0..1000)
            .map(|_| limiter.open_stream("a").expect("unlimited"))
            .collect();
        assert_eq!(permits.len(), 1000);
        assert_eq!(limiter.tracked_callers(), 0);
    }

    // --- memory bound and concurrency ---

    #[test]
    fn a_flood_of_callers_stays_within_the_cap_and_shares_overflow() {
        let limiter = limiter_for(json!({"rateLimit": {"requestsPerMinute": 60, "burst": 2}}));
        let t0 = Instant::now();
        for i in 0..200_000 {
            let _ = limiter.admit(&format!("spoofed-{i}"), t0, 0);
        }
        assert_eq!(
            limiter.tracked_callers(),
            MAX_CALLERS,
            "every shard full, none beyond"
        );
        // New callers now share overflow buckets, which the flood has emptied.
        let refused = (0..100)
            .filter(|i| limiter.admit(&format!("newcomer-{i}"), t0, 0).is_err())
            .count();
        assert!(refused > 90, "{refused}");
        // Once the flooding callers' buckets have refilled (2 s), a sweep makes room and newcomers get
        // buckets of their own again.
        let later = t0 + secs(3);
        assert_eq!(limiter.admit("newcomer-after-refill", later, 0), Ok(()));
        assert_eq!(limiter.admit("newcomer-after-refill", later, 0), Ok(()));
        assert!(limiter.tracked_callers() < MAX_CALLERS);
    }

    #[test]
    fn sweeps_keep_callers_that_still_owe_refill_or_hold_streams() {
        let config = config_for(
            json!({"rateLimit": {"requestsPerMinute": 60, "burst": 1}, "maxConcurrentStreams": 1}),
        );
        // One caller per shard.
        let limiter = Limiter::with_max_callers(config, SHARDS);
        let t0 = Instant::now();
        let mut permits = Vec::new();
        for i in 0.. {
            if limiter.tracked_callers() == SHARDS {
                break;
            }
            let name = format!("c{i}");
            let _ = limiter.admit(&name, t0, 0);
            if limiter.is_tracked(&name) {
                permits.push(
                    limiter
                        .open_stream_at(&name, t0)
                        .expect("a tracked caller's first stream"),
                );
            }
        }
        // Buckets drained: a newcomer finds no room and no idle caller to drop.
        let _ = limiter.admit("early", t0, 0);
        assert!(!limiter.is_tracked("early"));
        // Ten seconds on the buckets are full, but the open streams keep every caller tracked.
        let later = t0 + secs(10);
        for i in 0..100 {
            let _ = limiter.admit(&format!("new{i}"), later, 0);
            assert!(!limiter.is_tracked(&format!("new{i}")));
        }
        assert_eq!(limiter.tracked_callers(), SHARDS);
        // Streams closed and buckets full: once the sweep interval has passed, the room is reused.
        drop(permits);
        let after = later + SWEEP_INTERVAL;
        assert_eq!(limiter.admit("after", after, 0), Ok(()));
        assert!(limiter.is_tracked("after"));
        assert!(limiter.tracked_callers() <= SHARDS);
    }

    #[test]
    fn threads_share_one_limiter_without_losing_counts() {
        let limiter = Arc::new(limiter_for(json!({
            "rateLimit": {"requestsPerMinute": 1000, "tokensPerMinute": 1_000_000},
            "maxConcurrentStreams": 3,
        })));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|thread| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for i in 0..500 {
                        let caller = if i % 2 == 0 {
                            "shared".to_string()
                        } else {
                            format!("own-{thread}")
                        };
                        if limiter.admit(&caller, t0, 1).is_ok() {
                            admitted += 1;
                        }
                        if let Ok(permit) = limiter.open_stream_at("shared", t0) {
                            drop(permit);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u32 = handles.into_iter().map(|h| h.join().expect("no panic")).sum();
        // "shared" gets exactly its bucket of 1000 from 8 × 250 attempts; each own caller all 250.
        assert_eq!(admitted, 1000 + 8 * 250);
        // Every permit was dropped: all three slots are free.
        let permits: Vec<_> = (0..3)
            .map(|_| limiter.open_stream("shared").expect("free"))
            .collect();
        assert!(limiter.open_stream("shared").is_err());
        drop(permits);
    }

    #[test]
    fn a_poisoned_shard_keeps_working() {
        let limiter = Arc::new(limiter_for(json!({"rateLimit": {"requestsPerMinute": 10}})));
        let poisoner = Arc::clone(&limiter);
        let result = std::thread::spawn(move || {
            let _guard = poisoner.shard("a");
            panic!("poison the shard");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limiter.admit("a", Instant::now(), 0), Ok(()));
    }

    // --- token estimate ---

    /// cl100k counts (from OpenAI's tiktoken) and the tolerance the estimate must meet.
    #[test]
    fn estimate_is_close_to_cl100k() {
        let cases: &[(&str, u64)] = &[
            ("Hello, world!", 4),
            ("The quick brown fox jumps over the lazy dog.", 10),
            ("tiktoken is great!", 6),
            ("antidisestablishmentarianism", 6),
            ("2 + 2 = 4", 7),
            ("お誕生日おめでとう", 9),
        ];
        for (text, expected) in cases {
            let estimate = estimate_tokens(text);
            let tolerance = (expected / 4).max(2);
            assert!(
                estimate.abs_diff(*expected) <= tolerance,
                "{text:?}: estimated {estimate}, cl100k {expected}"
            );
        }
    }

    #[test]
    fn the_ascii_estimate_counts_like_the_char_estimate() {
        bolero::check!()
            .with_test_time(Duration::from_secs(1))
            .for_each(|bytes: &[u8]| {
                // A small alphabet so that runs of each class, case changes and lone spaces are common.
                const ALPHABET: &[u8] = b"aZbY09 \t\n\r\x0b.,!(){}_-";
                let text: String = bytes
                    .iter()
                    .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
                    .collect();
                assert_eq!(estimate_ascii(text.as_bytes()), estimate_chars(&text), "{text:?}");
            });
    }

    #[test]
    fn estimate_is_robust_for_odd_input() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("   "), 1);
        // One per CJK character, whatever the script.
        assert_eq!(estimate_tokens("你好世界"), 4);
        assert_eq!(estimate_tokens("안녕하세요"), 5);
        // Digits in groups of three.
        assert_eq!(estimate_tokens("1234567"), 3);
        // Random mixed case (keys, base64) costs far more than prose of the same length.
        let base64 = "aGVsbG8gV29ybGQhIFRoaXMgSXMgQmFzZTY0";
        assert!(estimate_tokens(base64) >= 12, "{}", estimate_tokens(base64));
        // Emoji cost more than a letter; a long run of whitespace is not free.
        assert_eq!(estimate_tokens("🙂"), 2);
        // Code: punctuation runs and indentation count, common identifiers are one token.
        let code = "fn main() {\n    println!(\"Hello, world!\");\n}";
        assert!(
            (10..=16).contains(&estimate_tokens(code)),
            "{}",
            estimate_tokens(code)
        );
        assert_eq!(estimate_tokens(&" ".repeat(160)), 10);
        // Grows linearly: a megabyte of prose is about a quarter of a million tokens.
        let prose = "The model server answers questions about Kubernetes. ".repeat(20_000);
        let per_byte = estimate_tokens(&prose) as f64 / prose.len() as f64;
        assert!((0.15..0.35).contains(&per_byte), "{per_byte}");
    }
}
