//! Fuzzing the review handler on stable Rust inside `cargo test` (bolero): arbitrary bytes, and
//! mutations of valid reviews, must always get an answer and never a panic.
//!
//! `cargo test` replays the committed corpus in `tests/__fuzz__/review_handler/corpus` and then runs
//! random inputs for about two seconds. For a longer run outside CI:
//! `cargo bolero test review_handler --test fuzz_review` with cargo-bolero installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use airlock_webhook::review::{Reply, Route, StaticView, handle, handle_two_pass};
use serde_json::json;

fn cluster() -> StaticView {
    let instance: AIRuntimeInstance = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance", "metadata": {"name": "all"},
        "spec": {"selector": {"podSelector": {}}, "profileRef": {"name": "balanced"},
                 "modelServers": {"extraFingerprints": [{"name": "x", "imagePatterns": ["*x*y*"]}]}}}))
    .unwrap();
    let profile: AISecurityProfile = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile", "metadata": {"name": "balanced"},
        "spec": {}}))
    .unwrap();
    StaticView::new()
        .with_instance(instance)
        .with_profile(profile)
        .with_version(1, 28)
}

fn check_reply(reply: &Reply) {
    assert!(
        reply.status == 200 || reply.status == 400,
        "status {}",
        reply.status
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("the reply body is JSON");
    assert_eq!(body["kind"], "AdmissionReview");
    assert!(body["response"]["allowed"].is_boolean());
}

/// Both routes answer well-formed replies, and the one-pass read answers exactly as the two-pass one.
fn both_routes(view: &StaticView, input: &[u8]) {
    for route in [Route::Mutate, Route::Validate] {
        let reply = handle(route, input, view);
        check_reply(&reply);
        assert_eq!(reply, handle_two_pass(route, input, view), "{route:?}");
    }
}

#[test]
fn fuzz_review_handler() {
    let view = cluster();
    bolero::check!(name = "review_handler")
        .with_test_time(Duration::from_secs(2))
        .for_each(|input: &[u8]| both_routes(&view, input));
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/data/reviews", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Valid reviews with a few bytes replaced, removed or duplicated: deep inside the JSON, where the
/// random bytes of the first target rarely reach.
#[test]
fn fuzz_mutated_reviews() {
    let view = cluster();
    let seeds = seeds();
    bolero::check!(name = "mutated_reviews")
        .with_test_time(Duration::from_secs(2))
        .with_type::<(u8, Vec<(u32, u8, u8)>)>()
        .for_each(|(which, edits)| {
            let mut input = seeds[usize::from(*which) % seeds.len()].clone();
            for (at, op, byte) in edits {
                if input.is_empty() {
                    break;
                }
                let at = *at as usize % input.len();
                match op % 4 {
                    0 => input[at] = *byte,
                    1 => {
                        input.remove(at);
                    }
                    2 => input.insert(at, *byte),
                    _ => {
                        let tail = input[at..].to_vec();
                        input.extend_from_slice(&tail[..tail.len().min(64)]);
                    }
                }
            }
            both_routes(&view, &input);
        });
}
