//! The sidecar's error type.

/// Everything that can make the sidecar fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The subcommand exists in the interface but is not built yet.
    #[error("`airlock-sidecar {0}` is not implemented yet")]
    NotImplemented(&'static str),
}

/// `Result` with the sidecar's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotImplemented(_) => "not_implemented",
        }
    }
}
