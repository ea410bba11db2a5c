//! Controllers for Airlock's custom resources.
//!
//! - [`group`]: `DynamicAddressGroup` status (and shards) from the pod index;
//! - [`coverage`]: what an `AIRuntimeInstance` protects (pure);
//!
//! TODO(issue 4): `profile` and `instance` reconcilers (I/O around `crate::profile` and
//! `crate::policy`).

pub mod coverage;
pub mod group;
