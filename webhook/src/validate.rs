//! Rejection of unprotected model-serving workloads as a pure function.
//!
//! TODO(issue 3): `validate(&workload, &instances) -> Result<(), Denial>` with the model-server fingerprints.
