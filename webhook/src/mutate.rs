//! Sidecar injection as a pure function of a pod and the `AIRuntimeInstance`s that may select it.
//!
//! TODO(issue 3): `mutate(&pod, &instances) -> Vec<PatchOperation>`.
