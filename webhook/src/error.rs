//! The webhook's error type.

use std::path::PathBuf;

/// Everything that can make the admission server fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the serving certificate or key failed.
    #[error("cannot read TLS material from {path}: {source}")]
    Tls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A certificate or key file was read but holds no usable PEM.
    #[error("invalid TLS material in {path}: {reason}")]
    TlsPem { path: PathBuf, reason: String },

    /// The certificate and key parse but cannot serve together (unsupported key, key not matching).
    #[error("certificate {cert} and key {key} do not form a usable pair: {source}")]
    TlsPair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    /// An admitted object could not be read as the kind it claims to be.
    #[error("cannot read the {kind}: {source}")]
    Object {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The TLS server configuration could not be built.
    #[error("cannot configure TLS: {0}")]
    TlsConfig(#[source] rustls::Error),

    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// Talking to the Kubernetes API failed (client set-up, server version).
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    /// Waiting for OS signals could not be set up.
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// `Result` with the webhook's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Tls { .. } | Error::TlsPem { .. } | Error::TlsPair { .. } | Error::TlsConfig(_) => "tls",
            Error::Bind { .. } => "listen",
            Error::Kube(_) => "kube",
            Error::Signal(_) => "signal",
            Error::Object { .. } => "object",
        }
    }
}
