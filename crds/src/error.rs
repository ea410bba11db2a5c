//! Errors of the generator (`crdgen`: the chart's CRD YAML and the configuration reference) and of
//! reading a policy bundle. The CRD types themselves cannot fail.

use std::path::PathBuf;

/// What can go wrong while generating or checking the CRD YAML and the reference, or reading a bundle.
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

    /// Checked-in generated files are missing or differ from what the generator produces.
    #[error(
        "{} out of date with the CRD types; run `make crds` (or `cargo run -p airlock-crds --bin crdgen`) \
         and commit the result",
        stale_subject(paths)
    )]
    Stale {
        /// The stale files, relative to the workspace root.
        paths: Vec<PathBuf>,
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

/// `a is`, `a and b are`, `a, b and c are`.
fn stale_subject(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match names.as_slice() {
        [] => "nothing is".to_owned(),
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
    }
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
                paths: vec!["crds.yaml".into()],
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
    fn stale_error_names_the_files_and_says_how_to_fix_it() {
        let one = Error::Stale {
            paths: vec!["docs/reference.md".into()],
        }
        .to_string();
        assert!(one.starts_with("docs/reference.md is out of date"), "{one}");
        assert!(one.contains("run `make crds`"), "{one}");
        let two = Error::Stale {
            paths: vec![
                "charts/airlock/templates/crds.yaml".into(),
                "docs/reference.md".into(),
            ],
        }
        .to_string();
        assert!(
            two.starts_with("charts/airlock/templates/crds.yaml and docs/reference.md are out of date"),
            "{two}"
        );
    }
}
