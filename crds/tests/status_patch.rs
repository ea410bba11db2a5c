//! The operator writes each status as a JSON merge patch (`{"status": …}`, RFC 7386), in which a field
//! left out keeps its old value. A status must therefore serialize every field — an empty list as `[]`,
//! an absent value as `null` (which removes it) — or a list that became empty would keep its old
//! entries: a group with `memberCount: 0` still listing pods, an instance still naming unprotected
//! workloads that were fixed.

#![allow(clippy::unwrap_used)]

use airlock_crds::v1alpha1::{
    AIRuntimeInstanceStatus, AISecurityProfileStatus, Drift, DynamicAddressGroupStatus, Member, PodRef,
    UnprotectedWorkload,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

fn ready() -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Current".into(),
        message: "ok".into(),
        observed_generation: Some(3),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Applies `next` as the operator does, over an object whose status is `previous`, and returns the
/// status the API server would then hold.
fn written_over<S: Serialize + DeserializeOwned>(previous: &S, next: &S) -> S {
    let mut object = json!({ "status": previous });
    json_patch::merge(&mut object, &json!({ "status": next }));
    serde_json::from_value(object["status"].clone()).unwrap()
}

/// Writing the empty (default) status over `full` leaves nothing of `full`, and writing `full` over the
/// empty status gives `full`.
fn assert_replaces<S: Serialize + DeserializeOwned + Default + PartialEq + std::fmt::Debug>(full: &S) {
    let empty = S::default();
    assert_eq!(written_over(full, &empty), empty);
    assert_eq!(written_over(&empty, full), *full);
}

#[test]
fn an_emptied_group_status_replaces_every_member() {
    let full = DynamicAddressGroupStatus {
        conditions: vec![ready()],
        observed_generation: Some(3),
        member_count: 2,
        members: vec![
            Member {
                namespace: "ns".into(),
                name: "a".into(),
                ips: vec!["10.0.0.1".into()],
                ready: true,
            },
            Member {
                namespace: "ns".into(),
                name: "b".into(),
                ips: vec![],
                ready: false,
            },
        ],
        shards: 1,
    };
    assert_replaces(&full);
}

#[test]
fn an_instance_status_without_unprotected_workloads_or_drift_clears_them() {
    let full = AIRuntimeInstanceStatus {
        conditions: vec![ready()],
        observed_generation: Some(3),
        sidecar_image: Some("ghcr.io/airlock-dev/airlock-sidecar:0.1.0".into()),
        profile_generation: Some(2),
        selected_namespaces: 1,
        protected_workloads: 4,
        injected_pods: 9,
        unprotected_model_servers: 1,
        unprotected: vec![UnprotectedWorkload {
            namespace: "ns".into(),
            name: "llm".into(),
            kind: "Deployment".into(),
            fingerprint: "vllm".into(),
        }],
        drift: Some(Drift {
            count: 1,
            pods: vec![PodRef {
                namespace: "ns".into(),
                name: "early".into(),
            }],
        }),
    };
    assert_replaces(&full);
    // Drift is merged field by field: fewer drifted pods replace the list.
    let fewer = AIRuntimeInstanceStatus {
        drift: Some(Drift {
            count: 0,
            pods: vec![],
        }),
        ..full.clone()
    };
    assert_eq!(written_over(&full, &fewer), fewer);
}

#[test]
fn a_profile_status_without_conditions_or_generation_clears_them() {
    let full = AISecurityProfileStatus {
        conditions: vec![ready()],
        observed_generation: Some(3),
        instance_count: 2,
    };
    assert_replaces(&full);
}
