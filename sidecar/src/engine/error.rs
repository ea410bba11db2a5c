//! Errors from compiling an engine configuration.

/// A configuration the engine cannot compile. Built-in rules always compile; only user input fails.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A custom DLP pattern is not a valid `regex` crate pattern (or is too large).
    #[error("custom pattern `{name}` has an invalid regex")]
    InvalidCustomRegex {
        name: String,
        #[source]
        source: regex::Error,
    },
    /// A custom DLP pattern has no name or matches the empty string.
    #[error("custom pattern `{name}` is invalid: {reason}")]
    InvalidCustomPattern { name: String, reason: &'static str },
    /// A topic has no name or no usable phrase.
    #[error("topic `{name}` is invalid: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    /// The phrase automaton could not be built (too many or too long phrases).
    #[error("topic phrases could not be compiled")]
    TopicAutomaton(#[source] aho_corasick::BuildError),
    /// An injection model file could not be read or fitted.
    #[error("injection model: {reason}")]
    InvalidModel { reason: &'static str },
    /// A labelled set for fitting could not be read.
    #[error("labelled set {path}: {reason}")]
    LabelledSet { path: String, reason: String },
}

impl EngineError {
    /// A short, low-cardinality label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EngineError::InvalidCustomRegex { .. } | EngineError::InvalidCustomPattern { .. } => {
                "custom_pattern"
            }
            EngineError::InvalidTopic { .. } | EngineError::TopicAutomaton(_) => "topic",
            EngineError::InvalidModel { .. } | EngineError::LabelledSet { .. } => "model",
        }
    }
}
