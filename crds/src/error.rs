//! Errors of the CRD generator (`crdgen`) and of reading a policy bundle. The CRD types themselves
//! cannot fail.

use std::path::PathBuf;

/// What can go wrong while generating or checking the CRD YAML.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRD could not be serialised to YAML.
    #[error("cannot serialise CRD {name} to YAML")]
    Serialize {
        /// `metadata.name` of the CRD.
        name: String,
        /// The serialiser's error.
        #[source]
        source: serde_yaml_ng::Error,
    },

    /// The generated YAML contains `{{`, which Helm would read as a template action.
    #[error("CRD {name} contains `{{{{`, which Helm would treat as a template; reword the doc comment")]
    TemplateDelimiter {
        /// `metadata.name` of the CRD.
        name: String,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The checked-in file differs from what the generator produces.
    #[error("{} is out of date; run `cargo run -p airlock-crds --bin crdgen`", path.display())]
    Stale {
        /// The checked-in file.
        path: PathBuf,
    },

    /// `crdgen` was called with arguments it does not understand.
    #[error("unexpected argument {0:?}; usage: crdgen [--plain | --check]")]
    Usage(String),

    /// A policy bundle is not JSON, or not shaped like a bundle of its version.
    #[error("policy bundle is malformed: {source}")]
    BundleParse {
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A policy bundle has an `apiVersion` this build does not read (or none).
    #[error(
        "policy bundle has {}, but this build reads only apiVersion {expected}; \
         run the sidecar and the operator from the same Airlock release",
        found.as_deref().map_or_else(|| "no apiVersion".to_owned(), |v| format!("apiVersion {v:?}")),
        expected = crate::bundle::BUNDLE_API_VERSION
    )]
    BundleVersion {
        /// The bundle's `apiVersion`, if it has one.
        found: Option<String>,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable label for failure metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Serialize { .. } => "serialize",
            Self::TemplateDelimiter { .. } => "template_delimiter",
            Self::Io { .. } => "io",
            Self::Stale { .. } => "stale",
            Self::Usage(_) => "usage",
            Self::BundleParse { .. } => "bundle_parse",
            Self::BundleVersion { .. } => "bundle_version",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_short_snake_case() {
        let errors = [
            Error::TemplateDelimiter { name: "x".into() },
            Error::Stale {
                path: "crds.yaml".into(),
            },
            Error::Usage("--nope".into()),
            Error::BundleVersion { found: None },
            Error::Io {
                action: "read",
                path: "crds.yaml".into(),
                source: std::io::Error::other("boom"),
            },
        ];
        for error in errors {
            let label = error.metric_label();
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }

    #[test]
    fn stale_error_says_how_to_fix_it() {
        let message = Error::Stale {
            path: "charts/airlock/templates/crds.yaml".into(),
        }
        .to_string();
        assert!(
            message.contains("cargo run -p airlock-crds --bin crdgen"),
            "{message}"
        );
    }
}
