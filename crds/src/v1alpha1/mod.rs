//! The `airlock.dev/v1alpha1` API: three cluster-scoped kinds and the types they share.
//!
//! - [`AISecurityProfile`] ([`profile`]): what the sidecar inspects and what it does about each finding.
//! - [`AIRuntimeInstance`] ([`instance`]): which workloads are protected, how, and with which rules.
//! - [`DynamicAddressGroup`] ([`group`]): named sets of pods for those rules, with
//!   [`DynamicAddressGroupShard`] holding members of large groups beyond the first 1000.

pub mod common;
pub mod group;
pub mod instance;
pub mod profile;

pub use common::{DataAction, DetectionAction, FailureMode, ProfileRef, SecretKeyRef};
pub use group::{
    DynamicAddressGroup, DynamicAddressGroupShard, DynamicAddressGroupShardSpec, DynamicAddressGroupSpec,
    DynamicAddressGroupStatus, Member,
};
pub use instance::{
    AIRuntimeInstance, AIRuntimeInstanceSpec, AIRuntimeInstanceStatus, Drift, Exemption, Fingerprint,
    InboundMode, Interception, Mode, ModelServers, PodRef, PolicyRule, PullPolicy, RuleDestination,
    RuleSource, SidecarSpec, UnprotectedWorkload, WorkloadKind, WorkloadSelector,
};
pub use profile::{
    AISecurityProfile, AISecurityProfileSpec, AISecurityProfileStatus, AppProtection, BannedTopic, CallerKey,
    CallerKeySource, CustomPattern, DataProtection, Forwarder, HttpForwarder, LimitAction, Logging,
    MaliciousCode, MaliciousUrl, ModelProtection, Pii, PiiType, PromptInjection, RateLimit, SecretType,
    Secrets, Sensitivity, Streaming, StreamingMode, SyslogFacility, SyslogForwarder, SyslogProtocol,
    ThreatLogs, Topics, UnknownApis, UrlCategory, Verbosity,
};
