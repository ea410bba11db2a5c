//! The operator's error type.

/// Everything that can make a reconcile or the operator itself fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),

    /// Generating, parsing or storing a certificate failed.
    #[error("certificate error: {0}")]
    Certificate(String),

    /// An object could not be encoded (a policy bundle, a status).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// Adding or removing the cleanup finalizer was refused because the object's finalizers had changed
    /// since it was read (the cache was behind the API server): retried at once from the fresh object.
    #[error("the finalizers changed since the object was read: {0}")]
    StaleFinalizers(#[source] kube::Error),

    /// The operator's own configuration (flags) is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),

    /// A server (admin) could not start.
    #[error("cannot serve {what}: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the operator's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Error::Kube(error)
    }
}

impl Error {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::StaleFinalizers(_) => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 429 => "throttled",
            Error::Kube(kube::Error::Api(status)) if status.code == 404 => "not_found",
            Error::Kube(_) => "kube",
            Error::Certificate(_) => "certificate",
            Error::Encode { .. } => "encode",
            Error::Config(_) => "config",
            Error::Lease(_) => "lease",
            Error::Serve { .. } => "serve",
        }
    }
}
