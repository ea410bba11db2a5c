//! Model-DoS protection: per-caller request and token buckets, prompt size caps, the `max_tokens` cap and
//! concurrent-stream limits. Pure apart from the shared bucket map; time is passed in.
//!
//! TODO(issue 5): stub with the agreed interface; the real limiter replaces the bodies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use airlock_crds::v1alpha1::profile::ModelProtection;

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

/// The compiled `spec.modelProtection`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitConfig {
    /// `action: alert`: limits are logged, never enforced.
    pub alert_only: bool,
}

impl LimitConfig {
    pub fn from_spec(spec: Option<&ModelProtection>) -> LimitConfig {
        let _ = spec;
        LimitConfig::default()
    }

    /// The caller key for a request.
    pub fn caller_key(&self, peer: SocketAddr, headers: &http::HeaderMap) -> String {
        let _ = headers;
        peer.ip().to_string()
    }

    /// Size caps: body bytes and estimated prompt tokens.
    pub fn check_size(&self, body_bytes: usize, prompt_tokens: u64) -> Result<(), Limited> {
        let _ = (body_bytes, prompt_tokens);
        Ok(())
    }

    /// Rewrites the output-token fields of a request body to at most the cap. Returns whether it changed.
    pub fn cap_output_tokens(&self, body: &mut serde_json::Value) -> bool {
        let _ = body;
        false
    }
}

/// Held while a stream is open; dropping it frees the caller's slot.
#[derive(Debug)]
pub struct StreamPermit {}

/// Shared per-caller state.
#[derive(Debug, Default)]
pub struct Limiter {
    config: LimitConfig,
}

impl Limiter {
    pub fn new(config: LimitConfig) -> Limiter {
        Limiter { config }
    }

    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    /// Takes one request and `tokens` (estimated prompt plus requested output) from the caller's buckets.
    pub fn admit(&self, caller: &str, now: Instant, tokens: u64) -> Result<(), Limited> {
        let _ = (caller, now, tokens);
        Ok(())
    }

    /// Takes a concurrent-stream slot for the caller.
    pub fn open_stream(&self, caller: &str) -> Result<StreamPermit, Limited> {
        let _ = caller;
        Ok(StreamPermit {})
    }
}

/// Estimated tokens in `text` (documented estimate, no vocabulary download).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}
