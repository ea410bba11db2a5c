//! The admission-review handler: bytes in, an AdmissionReview (or a 4xx) out. Pure: everything it needs
//! to know about the cluster comes through [`ClusterView`], so it is tested without a server or a cluster.
//!
//! TODO(issue 3): parse → `AdmissionResponse::from(&req)` → mutate/validate → `.into_review()`.

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};

/// Which webhook a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/mutate`: sidecar injection.
    Mutate,
    /// `/validate`: rejection of unprotected model servers and checks of Airlock's own objects.
    Validate,
}

/// What the handler may know about the cluster: a read-only view of the webhook's caches.
pub trait ClusterView: Send + Sync {
    /// Every `AIRuntimeInstance`.
    fn instances(&self) -> Vec<Arc<AIRuntimeInstance>>;
    /// The profile with this name, if it exists.
    fn profile(&self, name: &str) -> Option<Arc<AISecurityProfile>>;
    /// The labels of a namespace, or `None` when the namespace is not (yet) known.
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
    /// The API server's (major, minor) version; native sidecars need 1.29 or later.
    fn server_version(&self) -> (u32, u32);
}

/// The HTTP answer to one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200 for every well-formed AdmissionReview (even a denial); 400 for a body that is not one.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// Low-cardinality outcome for metrics: `allowed`, `patched`, `denied`, `warned` or `invalid`.
    pub verdict: &'static str,
}
