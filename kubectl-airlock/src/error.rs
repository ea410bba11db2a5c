//! The plugin's errors, and the exit code each maps to.
//!
//! Messages never repeat their source: `main` prints an error followed by its `source()` chain, the
//! way `kubectl` prints "error: <what>: <why>".

use std::path::PathBuf;

/// Exit code of `check` when an input or the command line is unusable (also clap's usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a command that failed for any other reason (and of `check` when something is denied).
pub const EXIT_FAILURE: u8 = 1;

/// What the chart install command is, for messages that tell people how to fix a missing install.
pub const INSTALL_HINT: &str = "helm install airlock charts/airlock -n airlock-system --create-namespace";

/// Everything that can go wrong in `kubectl airlock`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value that clap cannot check by itself (e.g. `--kube-version`).
    #[error("{0}")]
    Usage(String),

    /// A file, directory or stdin could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path as given (`-` for stdin).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// An input is not what it should be: malformed YAML, or a document that is no Kubernetes object.
    /// `location` is `file:line[:column]`.
    #[error("{location}: {message}")]
    Input {
        /// Where, as `file:line[:column]`.
        location: String,
        /// What is wrong.
        message: String,
    },

    /// The kubeconfig could not be read or has no usable context.
    #[error("cannot load the kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    /// The client could not be built from the configuration.
    #[error("cannot create a Kubernetes client")]
    Client(#[source] kube::Error),

    /// The `airlock.dev` CRDs are not installed in the cluster.
    #[error("Airlock's CRDs are not installed in this cluster: install the chart ({INSTALL_HINT})")]
    CrdsNotInstalled,

    /// A request to the API server failed.
    #[error("cannot {action}")]
    Kube {
        /// What was being done, e.g. `list AIRuntimeInstances`.
        action: String,
        /// Why it failed.
        #[source]
        source: kube::Error,
    },

    /// The pod `explain` was asked about does not exist.
    #[error("pod {namespace}/{name} not found")]
    PodNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },

    /// A structured document could not be produced.
    #[error("cannot render the output as {format}")]
    Render {
        /// `json` or `yaml`.
        format: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Standard output went away (a closed pipe is not reported: see `main`).
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error: [`EXIT_USAGE`] for unusable input or flags, else
    /// [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Read { .. } | Error::Input { .. } => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// A failed API request, turned into [`Error::CrdsNotInstalled`] when the server does not know
    /// Airlock's resources (HTTP 404 on a list of an `airlock.dev` kind).
    pub fn from_airlock_list(action: impl Into<String>, source: kube::Error) -> Self {
        match &source {
            kube::Error::Api(status) if status.code == 404 => Error::CrdsNotInstalled,
            _ => Error::Kube {
                action: action.into(),
                source,
            },
        }
    }

    /// A failed API request.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }
}

/// One error of a chain as a sentence: an API server refusal is its message and code, not kube's debug
/// dump of the whole `Status`.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    match error.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) if !status.message.is_empty() => {
            format!("{} (HTTP {})", status.message, status.code)
        }
        _ => error.to_string(),
    }
}

/// `error` followed by its causes, joined by `: ` as kubectl prints them.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut next = Some(error);
    while let Some(current) = next {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&describe(current));
        // An API refusal's source is the `Status` just described.
        next = match current.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(_)) => None,
            _ => current.source(),
        };
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_refusals_read_as_their_message() {
        let refused = kube::Error::Api(
            kube::core::Status::failure("pods \"x\" is forbidden: User \"me\" cannot get", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        let error = Error::kube("get pod ml/x", refused);
        assert_eq!(
            chain(&error),
            "cannot get pod ml/x: pods \"x\" is forbidden: User \"me\" cannot get (HTTP 403)"
        );
    }
}
