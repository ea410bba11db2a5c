//! Names shared by the parts that handle the backstop: the chart installs the `ValidatingAdmissionPolicy`,
//! the operator writes its binding, and `kubectl airlock status` reports both.

/// The backstop policy's name, and its binding's.
pub const BACKSTOP_POLICY: &str = "airlock-backstop";

/// The annotation on the backstop's binding naming, per namespace the backstop stands aside in, why
/// (a JSON object).
pub const STANDS_ASIDE_ANNOTATION: &str = "airlock.dev/stands-aside";
