//! Kube-free domain logic shared by Airlock's webhook, operator and sidecar.
//!
//! - [`expr`]: the label-expression language of `DynamicAddressGroup.spec.match`.

pub mod expr;
#[cfg(feature = "telemetry")]
pub mod telemetry;
