//! Controllers: the reconcile loops the leader runs, each with its pure steps beside it.
//!
//! - [`group`]: `DynamicAddressGroup` status (and shards) from the pod index;
//! - [`coverage`]: what an `AIRuntimeInstance` protects (pure);
//! - [`instance`]: the `AISecurityProfile` and `AIRuntimeInstance` reconcilers (validation, policy
//!   delivery, coverage status, events, finalizer);
//! - [`admission`]: the webhook's certificates and Airlock's webhook configurations;
//! - [`backstop`]: the binding of the `ValidatingAdmissionPolicy` backstop, which stands aside where
//!   instances exempt or audit.

pub mod admission;
pub mod backstop;
pub mod coverage;
pub mod group;
pub mod instance;
