//! Types shared by more than one `airlock.dev/v1alpha1` kind: actions, failure modes and references.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the sidecar does with traffic that a detection (or a policy rule) matched.
///
/// Detections that cannot rewrite the content use this type, so `mask` is rejected for them by the
/// API server's enum check; data-protection detections use [`DataAction`] instead.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum DetectionAction {
    /// Let the traffic through and record nothing beyond the usual metrics.
    Allow,
    /// Let the traffic through and write a threat log entry.
    Alert,
    /// Refuse the request (HTTP 403, `airlock_blocked`) or end the stream, and write a threat log entry.
    #[default]
    Block,
}

/// What the sidecar does with a data-protection match (personal data, secrets, custom patterns).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum DataAction {
    /// Let the traffic through unchanged.
    Allow,
    /// Let the traffic through unchanged and write a threat log entry.
    Alert,
    /// Refuse the request or end the stream, and write a threat log entry.
    Block,
    /// Replace each match with a placeholder such as `[REDACTED:email]` and let the rest through.
    #[default]
    Mask,
}

/// What happens to traffic when Airlock cannot decide about it in time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Forward the traffic unscanned and record the failure (availability first).
    #[default]
    FailOpen,
    /// Refuse the traffic (HTTP 503 from the sidecar) until Airlock can decide again (security first).
    FailClosed,
}

/// A reference to an `AISecurityProfile` by name (profiles are cluster-scoped).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRef {
    /// Name of the `AISecurityProfile`, e.g. `strict`. The object need not exist yet: until it does, the
    /// referencing object reports `Ready=False` with reason `ProfileNotFound`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl ProfileRef {
    /// A reference to the profile called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A key of a `Secret` in Airlock's own namespace (the Helm release namespace, `airlock-system` by
/// convention).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the `Secret` in Airlock's namespace, e.g. `siem-token`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the `Secret` whose value is used. Default: `token`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "token".to_owned()
}
