//! The webhook's error type.

/// Everything that can make the admission server fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the serving certificate or key failed.
    #[error("cannot read TLS material from {path}: {source}")]
    Tls {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the webhook's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Tls { .. } => "tls",
        }
    }
}
