//! The sidecar's error type.

use std::path::PathBuf;

use crate::engine::EngineError;

/// Everything that can make the sidecar fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile file could not be read.
    #[error("cannot read profile file {}", path.display())]
    ProfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A profile file is not valid YAML or does not match the `AISecurityProfile` schema.
    #[error("profile file {} is not a valid AISecurityProfile: {source}", path.display())]
    ProfileYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },

    /// A profile file holds some other kind of object.
    #[error(
        "profile file {} holds `{found}`, expected apiVersion `airlock.dev/v1alpha1` and kind `AISecurityProfile`",
        path.display()
    )]
    ProfileKind { path: PathBuf, found: String },

    /// The profile parsed but its detections do not compile (a custom regex, an empty topic).
    #[error("profile `{profile}` is invalid: {source}")]
    ProfileInvalid {
        profile: String,
        #[source]
        source: EngineError,
    },

    /// Reading the scan input or writing verdicts failed.
    #[error("scan I/O failed")]
    ScanIo(#[source] std::io::Error),

    /// A command-line or environment setting is invalid (a route, a port list, a URL).
    #[error("invalid setting {name}: {message}")]
    Config { name: &'static str, message: String },

    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// TLS client setup failed (custom CA file unreadable or invalid).
    #[error("TLS setup failed: {0}")]
    Tls(String),

    /// A policy bundle from the operator could not be used.
    #[error("policy bundle {} is not usable: {message}", path.display())]
    Bundle { path: PathBuf, message: String },

    /// `airlock-sidecar init` could not install the inbound redirect.
    #[error("cannot install the inbound redirect: {0}")]
    Init(String),

    /// A threat-log forwarder could not be set up.
    #[error("threat-log forwarder {target}: {message}")]
    Forwarder { target: String, message: String },
}

/// `Result` with the sidecar's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ProfileRead { .. } => "profile_read",
            Error::ProfileYaml { .. } | Error::ProfileKind { .. } => "profile_parse",
            Error::ProfileInvalid { .. } => "profile_invalid",
            Error::ScanIo(_) => "scan_io",
            Error::Config { .. } => "config",
            Error::Bind { .. } => "bind",
            Error::Tls(_) => "tls",
            Error::Bundle { .. } => "bundle",
            Error::Init(_) => "init",
            Error::Forwarder { .. } => "forwarder",
        }
    }
}
