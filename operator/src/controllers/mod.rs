//! Controllers for Airlock's custom resources.
//!
//! TODO(issue 4): `profile` (validate + compile `AISecurityProfile`), `instance` (coverage and drift of
//! `AIRuntimeInstance`), `group` (`DynamicAddressGroup` membership from a pod index).
