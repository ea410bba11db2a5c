//! A CA rotation while pods are being admitted: no admission fails.
//!
//! The operator rotates the webhook's CA on request (`airlock.dev/rotate-ca` on its Secret), with the same
//! overlap as a scheduled rotation: the new bundle (new and old CA) reaches the webhook configurations
//! before the webhook serves the new certificate, and the old CA leaves the bundle only after the overlap
//! (20 s in the local environment, where the webhook reloads its mirrored files within 5 s). Meanwhile
//! workers keep asking the API server to admit pods (dry-run), so both webhooks are called throughout.
//!
//! Oracles: every injected pod carries the sidecar once, every unprotected model server is denied with
//! Airlock's own message (a webhook the API server cannot reach fails differently), and the API server's
//! counters of failed calls to Airlock's webhooks (`calling_webhook_error`, fail-open) do not move.
//!
//! In a test binary of its own: a rotation touches every admission in the cluster, and the counters are
//! cluster-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use airlock_e2e::{
    Protection, apiserver_metric, deployment, eventually, label_namespace, sidecars, unique_name,
    with_temp_ns,
};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

const NAMESPACE: &str = "airlock-system";
const SECRET: &str = "airlock-webhook-tls";
const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.9.1";
const PROTECTED: &str = "rotation-e2e";

/// What the Secret holds: the current CA, the bundle and the rotation request answered last.
struct Material {
    ca: String,
    bundle: String,
    handled: Option<String>,
}

impl Material {
    fn cas(&self) -> usize {
        self.bundle.matches("-----BEGIN CERTIFICATE-----").count()
    }
}

async fn material(client: &Client) -> Option<Material> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get(SECRET).await.ok()?;
    let data = secret.data?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Material {
        ca: text("ca.crt")?,
        bundle: text("ca-bundle.crt")?,
        handled: secret
            .metadata
            .annotations
            .and_then(|a| a.get("airlock.dev/rotate-ca-handled").cloned()),
    })
}

/// The API server's count of calls to Airlock's webhooks that failed (unreachable, TLS refused, timed
/// out), whether the failure denied the request or was ignored.
async fn failed_calls(client: &Client) -> f64 {
    let rejected = apiserver_metric(client, "apiserver_admission_webhook_rejection_count").await;
    let failed_open = apiserver_metric(client, "apiserver_admission_webhook_fail_open_count").await;
    let broken = rejected
        .iter()
        .filter(|(labels, _)| labels.contains("calling_webhook_error"))
        .chain(failed_open.iter());
    broken
        .filter(|(labels, _)| labels.contains("airlock.dev\""))
        .map(|(_, value)| value)
        .sum()
}

/// The `caBundle` each of Airlock's webhook configurations carries.
async fn configured_bundles(client: &Client) -> Vec<Vec<u8>> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let m = mutating
        .get("airlock-sidecar-injector")
        .await
        .expect("mutating configuration");
    let v = validating
        .get("airlock-validator")
        .await
        .expect("validating configuration");
    let configs = m
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.client_config);
    let configs = configs.chain(
        v.webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.client_config),
    );
    configs
        .map(|c| c.ca_bundle.map(|b| b.0).unwrap_or_default())
        .collect()
}

/// Whether the operator recorded an Event `reason` about the Secret at or after `since`.
async fn recorded_since(client: &Client, reason: &str, since: Timestamp) -> Option<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let list = events.list(&ListParams::default()).await.ok()?;
    list.items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SECRET))
        .flat_map(|e| {
            let first = e.event_time.as_ref().map(|t| t.0);
            let last = e.series.as_ref().map(|s| s.last_observed_time.0);
            [first, last]
        })
        .flatten()
        .any(|at| at >= since)
        .then_some(())
}

/// One admission a worker asked for: when it was answered, and what went wrong if anything did.
struct Outcome {
    at: Instant,
    failure: Option<String>,
}

/// The API server's message alone, not the whole `Status`.
fn short(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.message),
        other => other.to_string(),
    }
}

/// Asks for admissions (dry-run) until `stop`: a protected vLLM pod must come back with the sidecar, an
/// unprotected vLLM Deployment must be denied with Airlock's message.
async fn worker(client: Client, ns: String, protected: bool, stop: Arc<AtomicBool>) -> Vec<Outcome> {
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "llm", "labels": { PROTECTED: "yes" } },
        "spec": { "containers": [{ "name": "server", "image": VLLM_IMAGE }] }
    }))
    .expect("pod literal");
    let unprotected = deployment("llm", VLLM_IMAGE, 1);
    let mut outcomes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let failure = if protected {
            match pods.create(&dry_run, &pod).await {
                Ok(pod) if sidecars(&pod) == 1 => None,
                Ok(pod) => Some(format!("admitted with {} sidecars", sidecars(&pod))),
                Err(error) => Some(format!("refused: {}", short(&error))),
            }
        } else {
            match deployments.create(&dry_run, &unprotected).await {
                Ok(_) => Some("an unprotected vLLM Deployment was admitted".to_owned()),
                Err(kube::Error::Api(status)) if status.message.contains("AIRuntimeInstance") => None,
                Err(error) => Some(format!("refused, but not by Airlock: {}", short(&error))),
            }
        };
        outcomes.push(Outcome {
            at: Instant::now(),
            failure,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outcomes
}

#[tokio::test]
async fn a_ca_rotation_while_pods_are_admitted_fails_no_admission() {
    with_temp_ns(|client, ns| async move {
        let key = unique_name("rotation");
        label_namespace(&client, &ns, &key).await;
        let protection = Protection::new(
            &client,
            &key,
            "enforce",
            json!({ "matchLabels": { PROTECTED: "yes" } }),
            json!([]),
        )
        .await;
        // The webhook learns about the instance through its watch. This binary runs right after the API
        // server restart of restart.rs, when the webhook's watches may still be backing off: wait until it
        // injects, so that the load below measures the rotation and nothing else.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let probe: Pod = serde_json::from_value(json!({
            "metadata": { "name": "probe", "labels": { PROTECTED: "yes" } },
            "spec": { "containers": [{ "name": "server", "image": VLLM_IMAGE }] }
        }))
        .expect("pod literal");
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        eventually(
            "the webhook to inject pods the new instance selects",
            Duration::from_secs(60),
            || {
                let (pods, probe, dry_run) = (pods.clone(), probe.clone(), dry_run.clone());
                async move {
                    pods.create(&dry_run, &probe)
                        .await
                        .ok()
                        .filter(|p| sidecars(p) == 1)
                        .map(|_| ())
                }
            },
        )
        .await;
        let before = eventually(
            "the webhook's certificate Secret",
            Duration::from_secs(30),
            || material(&client),
        )
        .await;
        assert_eq!(
            before.cas(),
            1,
            "no rotation may be in flight when the test starts"
        );
        let failed_before = failed_calls(&client).await;

        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = [true, true, false]
            .into_iter()
            .map(|protected| tokio::spawn(worker(client.clone(), ns.clone(), protected, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;

        // Ask for a rotation, as an admin would.
        let requested_at = Timestamp::now();
        let token = unique_name("rotate");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        secrets
            .patch(
                SECRET,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "annotations": { "airlock.dev/rotate-ca": token } } })),
            )
            .await
            .expect("annotate the Secret");
        let rotated = eventually("the operator to rotate the CA", Duration::from_secs(30), || {
            let (client, old_ca, token) = (client.clone(), before.ca.clone(), token.clone());
            async move {
                let m = material(&client).await?;
                (m.ca != old_ca && m.cas() == 2 && m.handled.as_deref() == Some(token.as_str())).then_some(m)
            }
        })
        .await;
        let rotated_at = Instant::now();
        println!("rotated: the bundle trusts the new and the old CA");

        let dropped = eventually("the old CA to leave the bundle", Duration::from_secs(90), || {
            let client = client.clone();
            async move { material(&client).await.filter(|m| m.cas() == 1) }
        })
        .await;
        let dropped_at = Instant::now();
        println!(
            "old CA dropped {:.1} s after the rotation",
            (dropped_at - rotated_at).as_secs_f64()
        );
        assert_eq!(dropped.ca, rotated.ca, "the CA kept is the new one");
        assert_eq!(
            dropped.handled.as_deref(),
            Some(token.as_str()),
            "dropping the old CA keeps the answered request"
        );
        // The webhook configurations follow the Secret.
        eventually(
            "caBundle to hold the new CA alone",
            Duration::from_secs(15),
            || {
                let (client, bundle) = (client.clone(), dropped.bundle.clone());
                async move {
                    let bundles = configured_bundles(&client).await;
                    bundles.iter().all(|b| b == bundle.as_bytes()).then_some(())
                }
            },
        )
        .await;
        // Both steps are on the record for the security team.
        for reason in ["CARotated", "OldCARemoved"] {
            eventually(
                &format!("a {reason} Event on the Secret"),
                Duration::from_secs(15),
                || recorded_since(&client, reason, requested_at),
            )
            .await;
        }
        // Keep admitting once the API server trusts the new CA alone.
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);

        let mut outcomes = Vec::new();
        for worker in workers {
            outcomes.extend(worker.await.expect("worker"));
        }
        let phase_of = |at: Instant| {
            if at < rotated_at {
                "before the rotation"
            } else if at < dropped_at {
                "during the overlap"
            } else {
                "after the old CA left"
            }
        };
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|o| Some(format!("{}: {}", phase_of(o.at), o.failure.as_ref()?)))
            .collect();
        let in_phase = |from: Option<Instant>, to: Option<Instant>| {
            outcomes
                .iter()
                .filter(|o| from.is_none_or(|f| o.at >= f) && to.is_none_or(|t| o.at < t))
                .count()
        };
        let phases = [
            ("before the rotation", in_phase(None, Some(rotated_at))),
            ("during the overlap", in_phase(Some(rotated_at), Some(dropped_at))),
            ("after the old CA left", in_phase(Some(dropped_at), None)),
        ];
        println!("admissions: {phases:?}; failures: {}", failures.len());
        assert!(
            failures.is_empty(),
            "{} of {} admissions failed during the rotation, e.g. {:?}",
            failures.len(),
            outcomes.len(),
            &failures[..failures.len().min(3)]
        );
        for (phase, count) in phases {
            assert!(
                count >= 10,
                "only {count} admissions {phase}: the load did not cover it"
            );
        }
        let failed_after = failed_calls(&client).await;
        assert_eq!(
            failed_after, failed_before,
            "the API server failed to call Airlock's webhooks during the rotation"
        );

        protection.remove().await;
    })
    .await;
}
