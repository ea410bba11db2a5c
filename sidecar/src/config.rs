//! Environment variables the sidecar reads; the injected container sets them.

/// Profile file or built-in profile name.
pub const ENV_PROFILE: &str = "AIRLOCK_PROFILE";
/// Upstream URL for standalone runs.
pub const ENV_UPSTREAM: &str = "AIRLOCK_UPSTREAM";
/// Listen address of the outbound proxy.
pub const ENV_LISTEN: &str = "AIRLOCK_LISTEN";
