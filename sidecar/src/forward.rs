//! Threat-log forwarders: syslog (RFC 5424 over UDP, octet-counted over TCP) and batched JSON to an HTTP
//! collector. Sending never blocks traffic: each forwarder has a bounded buffer, and what does not fit
//! is dropped and counted.
//!
//! TODO(issue 5): stub with the agreed interface; the real forwarders replace the bodies.

use std::path::Path;

use airlock_crds::v1alpha1::profile::Forwarder;

use crate::Result;

/// Counters of one forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderCounts {
    /// e.g. `syslog+udp://10.0.0.1:514` or the collector URL.
    pub target: String,
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// The running forwarders of one policy.
#[derive(Debug, Default)]
pub struct Forwarders {}

impl Forwarders {
    /// Starts a task per forwarder; call inside a Tokio runtime. `token_dir` holds the bearer tokens of
    /// HTTP forwarders with a `secretRef`, as `<token_dir>/<secret name>/<key>`.
    pub fn start(config: &[Forwarder], token_dir: Option<&Path>) -> Result<Forwarders> {
        let _ = (config, token_dir);
        Ok(Forwarders {})
    }

    /// Queues one threat-log entry (a JSON object, no trailing newline). Never blocks.
    pub fn send(&self, entry: &str) {
        let _ = entry;
    }

    pub fn counts(&self) -> Vec<ForwarderCounts> {
        Vec::new()
    }
}
