//! The operator against a real kube-apiserver with kwok-run pods (`e2e/airlock.sh start` runs two
//! leader-elected replicas): address-group membership follows pods, profiles and instances report their
//! state, policy reaches the selected namespaces and leaves with the instance, and deleted webhook
//! configurations come back. (Leader takeover is in `takeover.rs`, a binary of its own.)
//!
//! These tests never create an enforcing instance, so the moment without a mutating webhook that one
//! of them causes cannot break the others.

use std::time::{Duration, Instant};

use airlock_crds::bundle::{BUNDLE_KEY, PolicyBundle, config_map_name};
use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use airlock_e2e::{client, eventually, install_crds, unique_name, with_temp_ns};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object literal");
    api.create(&PostParams::default(), &object).await.expect("create")
}

async fn pod(client: &Client, ns: &str, name: &str, labels: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(
        &pods,
        json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "containers": [{ "name": "app", "image": "python:3.12-slim" }] }
        }),
    )
    .await;
}

/// Creates the cluster-scoped Airlock object `name` of kind `K` with `spec`; returns its API.
async fn create_cluster<K>(client: &Client, name: &str, spec: Value) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    create(
        &api,
        json!({
            "apiVersion": K::api_version(&()), "kind": K::kind(&()),
            "metadata": { "name": name },
            "spec": spec
        }),
    )
    .await;
    api
}

/// Creates the `AISecurityProfile` `name` with `spec`.
async fn create_profile(client: &Client, name: &str, spec: Value) -> Api<AISecurityProfile> {
    create_cluster(client, name, spec).await
}

/// Creates the audit-mode `AIRuntimeInstance` `name` selecting namespace `ns` with `profile`, plus the
/// spec fields in `extra`.
async fn create_audit_instance(
    client: &Client,
    name: &str,
    ns: &str,
    profile: &str,
    extra: Value,
) -> Api<AIRuntimeInstance> {
    let mut spec = json!({
        "selector": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns } } },
        "profileRef": { "name": profile },
        "mode": "audit"
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    create_cluster(client, name, spec).await
}

/// Deletes the pods at once (no grace period).
async fn delete_pods(pods: &Api<Pod>, names: &[&str]) {
    for name in names {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
    }
}

/// The group's members as `namespace/name` once every member has an IP.
async fn members(client: &Client, group: &str) -> Option<Vec<String>> {
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let g = groups.get(group).await.ok()?;
    let status = g.status?;
    if status.members.iter().any(|m| m.ips.is_empty()) {
        return None;
    }
    Some(
        status
            .members
            .iter()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .collect(),
    )
}

#[tokio::test]
async fn group_membership_follows_pod_labels_ips_and_deletion() {
    with_temp_ns(|client, ns| async move {
        install_crds(&client).await;
        let key = unique_name("g");
        let name = unique_name("group");
        let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
        create(
            &groups,
            json!({
                "apiVersion": "airlock.dev/v1alpha1", "kind": "DynamicAddressGroup",
                "metadata": { "name": name },
                "spec": { "match": format!("e2e-group = {key} and tier in (api, web)") }
            }),
        )
        .await;
        pod(&client, &ns, "api", json!({ "e2e-group": key, "tier": "api" })).await;
        pod(&client, &ns, "web", json!({ "e2e-group": key, "tier": "web" })).await;
        pod(&client, &ns, "db", json!({ "e2e-group": key, "tier": "db" })).await;
        let want = vec![format!("{ns}/api"), format!("{ns}/web")];
        eventually("api and web to be members with IPs", WAIT, || async {
            members(&client, &name).await.filter(|m| *m == want)
        })
        .await;
        let g = groups.get(&name).await.expect("group");
        let status = g.status.expect("status");
        assert_eq!(status.member_count, 2);
        assert_eq!(status.observed_generation, g.metadata.generation);
        assert!(airlock_crds::conditions::is_ready(&status.conditions));

        // Relabel: db joins, web leaves.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for (pod, tier) in [("db", "api"), ("web", "cache")] {
            let patch = json!({ "metadata": { "labels": { "tier": tier } } });
            pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("relabel");
        }
        let want = vec![format!("{ns}/api"), format!("{ns}/db")];
        eventually("db to join and web to leave", WAIT, || async {
            members(&client, &name).await.filter(|m| *m == want)
        })
        .await;

        // Deletion removes the member.
        pods.delete("api", &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
        let want = vec![format!("{ns}/db")];
        eventually("the deleted pod to leave", WAIT, || async {
            members(&client, &name).await.filter(|m| *m == want)
        })
        .await;

        // A changed expression is re-evaluated over all pods.
        let patch = json!({ "spec": { "match": format!("e2e-group = {key}") } });
        groups
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("change match");
        let want = vec![format!("{ns}/db"), format!("{ns}/web")];
        eventually("the new expression's members", WAIT, || async {
            members(&client, &name).await.filter(|m| *m == want)
        })
        .await;

        // The last members leave: the status lists none (a merge patch that left `members` out would
        // keep the old list under `memberCount: 0`).
        delete_pods(&pods, &["db", "web"]).await;
        eventually("the group to be empty", WAIT, || async {
            let status = groups.get(&name).await.ok()?.status?;
            (status.member_count == 0 && status.members.is_empty()).then_some(())
        })
        .await;
        let _ = groups.delete(&name, &DeleteParams::default()).await;
    })
    .await;
}

#[tokio::test]
async fn an_invalid_profile_says_why_and_a_fixed_one_becomes_ready() {
    let client = client().await;
    install_crds(&client).await;
    let name = unique_name("bad-profile");
    let profiles = create_profile(
        &client,
        &name,
        json!({ "dataProtection": { "customPatterns": [
            { "name": "employee-id", "regex": "EMP-(\\d{6}", "action": "block" }
        ] } }),
    )
    .await;
    let message = eventually("the profile to be marked invalid", WAIT, || async {
        let p = profiles.get(&name).await.ok()?;
        let ready = airlock_crds::conditions::find(&p.status?.conditions, "Ready")?.clone();
        (ready.status == "False").then_some((ready.reason, ready.message))
    })
    .await;
    assert_eq!(message.0, "Invalid");
    assert!(
        message.1.contains("spec.dataProtection.customPatterns[0].regex"),
        "the message names the field: {}",
        message.1
    );
    let patch = json!({ "spec": { "dataProtection": { "customPatterns": [
        { "name": "employee-id", "regex": "EMP-(\\d{6})", "action": "block" }
    ] } } });
    profiles
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("fix the profile");
    eventually("the fixed profile to become ready", WAIT, || async {
        let p = profiles.get(&name).await.ok()?;
        let status = p.status?;
        (airlock_crds::conditions::is_ready(&status.conditions)
            && status.observed_generation == p.metadata.generation)
            .then_some(())
    })
    .await;
    let _ = profiles.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn an_instance_reports_coverage_delivers_policy_and_cleans_up() {
    with_temp_ns(|client, ns| async move {
        install_crds(&client).await;
        // A pod that predates the instance: selected later, it runs without the sidecar (drift).
        pod(&client, &ns, "early", json!({ "app": "early" })).await;
        let profile = unique_name("cov-profile");
        let instance = unique_name("cov");
        let profiles = create_profile(
            &client,
            &profile,
            json!({ "appProtection": { "promptInjection": { "action": "block" } } }),
        )
        .await;
        let instances = create_audit_instance(
            &client,
            &instance,
            &ns,
            &profile,
            json!({
                "exemptions": [{ "namespace": ns, "kind": "Pod", "name": "llm", "reason": "e2e: admitted, then revoked" }]
            }),
        )
        .await;
        // The exemption reaches the webhook through its watch, and the backstop policy once the operator
        // has left the namespace out of the policy's binding.
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        eventually("the backstop's binding leaving the namespace out", WAIT, || async {
            let binding = bindings.get("airlock-backstop").await.ok()?;
            let why = binding.annotations().get("airlock.dev/stands-aside")?.clone();
            let excluded = serde_json::to_value(binding.spec?.match_resources?.namespace_selector?).ok()?;
            (excluded["matchExpressions"][0]["values"].as_array()?.contains(&json!(ns))
                && why.contains(&format!("Pod/llm by {instance}")))
            .then_some(())
        })
        .await;
        // An exempt model server that opts out of injection; then the exemption is revoked, and it runs
        // unprotected. The API server loads the binding's change a moment after it was written (its own
        // informer): until then the backstop still refuses the pod, so creation is retried.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let llm: Pod = serde_json::from_value(json!({
            "metadata": { "name": "llm", "labels": { "airlock.dev/inject": "false" } },
            "spec": { "containers": [{ "name": "server", "image": "vllm/vllm-openai:v0.9.1" }] }
        }))
        .expect("pod literal");
        eventually("the exempt model server admitted", WAIT, || async {
            match pods.create(&PostParams::default(), &llm).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("airlock-backstop") => None,
                Err(e) => panic!("create llm: {e}"),
            }
        })
        .await;
        let patch = json!({ "spec": { "exemptions": [] } });
        instances
            .patch(&instance, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("revoke the exemption");

        let status = eventually("coverage with the unprotected model server and the drifted pod", WAIT, || async {
            let i = instances.get(&instance).await.ok()?;
            let s = i.status?;
            (s.unprotected_model_servers == 1 && s.drift.as_ref().is_some_and(|d| d.count >= 1)).then_some(s)
        })
        .await;
        assert_eq!(status.selected_namespaces, 1);
        assert_eq!(status.unprotected[0].name, "llm");
        assert_eq!(status.unprotected[0].kind, "Pod");
        assert_eq!(status.unprotected[0].fingerprint, "vllm");
        let drift = status.drift.expect("drift");
        assert!(drift.pods.iter().any(|p| p.name == "early"), "{drift:?}");
        let covered = airlock_crds::conditions::find(&status.conditions, "Covered").expect("Covered");
        assert_eq!(covered.reason, "UnprotectedModelServers");
        assert!(airlock_crds::conditions::is_ready(&status.conditions));

        // The policy bundle is in the namespace, parseable, and names the instance and profile.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm = cms.get(&config_map_name(&instance)).await.expect("policy ConfigMap");
        let json = cm.data.as_ref().and_then(|d| d.get(BUNDLE_KEY)).expect("policy.json");
        let bundle = PolicyBundle::parse(json.as_bytes()).expect("bundle parses");
        assert_eq!(bundle.instance, instance);
        assert_eq!(bundle.profile.name, profile);

        // Events on the workloads concerned.
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        eventually("Unprotected and SidecarDrift events", WAIT, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let reasons: Vec<(String, String)> = list
                .items
                .iter()
                .map(|e| {
                    (
                        e.reason.clone().unwrap_or_default(),
                        e.regarding.as_ref().and_then(|r| r.name.clone()).unwrap_or_default(),
                    )
                })
                .collect();
            (reasons.contains(&("Unprotected".into(), "llm".into()))
                && reasons.contains(&("SidecarDrift".into(), "early".into())))
            .then_some(())
        })
        .await;

        // Once the unprotected model server and the drifted pod are gone, the status names neither.
        delete_pods(&pods, &["llm", "early"]).await;
        eventually("coverage without unprotected workloads or drift", WAIT, || async {
            let s = instances.get(&instance).await.ok()?.status?;
            (s.unprotected_model_servers == 0 && s.unprotected.is_empty() && s.drift.is_none()).then_some(())
        })
        .await;

        // The profile counts its instance.
        eventually("the profile to count its instance", WAIT, || async {
            let p = profiles.get(&profile).await.ok()?;
            (p.status?.instance_count == 1).then_some(())
        })
        .await;

        // Deleting the instance removes its ConfigMap (finalizer), then the instance.
        instances
            .delete(&instance, &DeleteParams::default())
            .await
            .expect("delete instance");
        eventually("the policy ConfigMap and the instance to be gone", WAIT, || async {
            let cm_gone = cms.get_opt(&config_map_name(&instance)).await.ok()?.is_none();
            let instance_gone = instances.get_opt(&instance).await.ok()?.is_none();
            (cm_gone && instance_gone).then_some(())
        })
        .await;
        let _ = profiles.delete(&profile, &DeleteParams::default()).await;
    })
    .await;
}

#[tokio::test]
async fn a_profile_counting_callers_by_service_account_brings_the_pods_accounts_to_the_sidecars() {
    with_temp_ns(|client, ns| async move {
        install_crds(&client).await;
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
        create(&accounts, json!({ "metadata": { "name": "frontend" } })).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(
            &pods,
            json!({
                "metadata": { "name": "chat" },
                "spec": { "serviceAccountName": "frontend", "automountServiceAccountToken": false,
                          "containers": [{ "name": "app", "image": "python:3.12-slim" }] }
            }),
        )
        .await;
        pod(&client, &ns, "batch", json!({ "app": "batch" })).await;
        let profile = unique_name("sa-profile");
        let instance = unique_name("sa");
        let profiles = create_profile(
            &client,
            &profile,
            json!({ "modelProtection": {
                "rateLimit": { "requestsPerMinute": 60 },
                "callerKey": { "source": "serviceAccount" } } }),
        )
        .await;
        let instances = create_audit_instance(&client, &instance, &ns, &profile, json!({})).await;
        // Each pod's address under its account, as the API server recorded the account (`default` when
        // the pod named none).
        let ip_and_account = |pod: Pod| {
            let ip = pod.status.and_then(|s| s.pod_ip)?;
            let account = pod
                .spec
                .and_then(|s| s.service_account_name)
                .unwrap_or_else(|| "default".into());
            Some((ip, format!("{ns}/{account}")))
        };
        let expected = eventually("both pods to have addresses", WAIT, || async {
            let chat = ip_and_account(pods.get("chat").await.ok()?)?;
            let batch = ip_and_account(pods.get("batch").await.ok()?)?;
            Some([chat, batch])
        })
        .await;
        assert_eq!(expected[0].1, format!("{ns}/frontend"));
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let delivered = || async {
            let cm = cms.get(&config_map_name(&instance)).await.ok()?;
            PolicyBundle::parse(cm.data?.get(BUNDLE_KEY)?.as_bytes()).ok()
        };
        let bundle = eventually("the bundle to name both pods' accounts", WAIT, || async {
            let bundle = delivered().await?;
            expected
                .iter()
                .all(|(ip, account)| {
                    bundle
                        .service_accounts
                        .get(account)
                        .is_some_and(|ips| ips.contains(ip))
                })
                .then_some(bundle)
        })
        .await;
        assert_eq!(bundle.service_accounts.len(), 2, "{:?}", bundle.service_accounts);

        // Deleting a pod takes its address out of the bundle.
        pods.delete("chat", &DeleteParams::default().grace_period(0))
            .await
            .expect("delete chat");
        eventually("the deleted pod's account to leave the bundle", WAIT, || async {
            let bundle = delivered().await?;
            (!bundle.service_accounts.contains_key(&expected[0].1)).then_some(())
        })
        .await;

        instances
            .delete(&instance, &DeleteParams::default())
            .await
            .expect("delete instance");
        eventually("the instance to be gone", WAIT, || async {
            instances.get_opt(&instance).await.ok()?.is_none().then_some(())
        })
        .await;
        let _ = profiles.delete(&profile, &DeleteParams::default()).await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_or_edited_webhook_configuration_is_restored_within_ten_seconds() {
    let client = client().await;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let name = "airlock-sidecar-injector";
    api.get(name).await.expect("the operator registered the injector");

    let started = Instant::now();
    api.delete(name, &DeleteParams::default()).await.expect("delete");
    eventually("the injector to be restored", Duration::from_secs(10), || async {
        api.get_opt(name).await.ok()?.map(|_| ())
    })
    .await;
    let restored_after = started.elapsed();

    let patch = json!({ "webhooks": [{ "name": "inject.airlock.dev", "timeoutSeconds": 29 }] });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("edit the timeout");
    eventually(
        "the edited timeout to be reverted",
        Duration::from_secs(10),
        || async {
            let c = api.get(name).await.ok()?;
            (c.webhooks?.first()?.timeout_seconds == Some(5)).then_some(())
        },
    )
    .await;
    println!(
        "webhook configuration restored {} ms after deletion",
        restored_after.as_millis()
    );
}

/// The backstop's binding is the operator's: owned by the policy, restored after a deletion, and its
/// settings reverted after an edit.
#[tokio::test]
async fn a_deleted_or_edited_backstop_binding_is_restored_within_ten_seconds() {
    let client = client().await;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let name = "airlock-backstop";
    let policy = policies
        .get(name)
        .await
        .expect("the chart installed the backstop");
    let owned_by_policy = |b: &ValidatingAdmissionPolicyBinding| {
        b.owner_references()
            .iter()
            .any(|o| o.kind == "ValidatingAdmissionPolicy" && Some(&o.uid) == policy.metadata.uid.as_ref())
    };
    let binding = eventually("the operator's binding", Duration::from_secs(10), || async {
        bindings.get_opt(name).await.ok()?
    })
    .await;
    assert!(owned_by_policy(&binding), "{:?}", binding.metadata);

    bindings
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    let restored = eventually("the binding to be restored", Duration::from_secs(10), || async {
        bindings.get_opt(name).await.ok()?
    })
    .await;
    assert!(owned_by_policy(&restored), "{:?}", restored.metadata);
    assert_ne!(restored.metadata.uid, binding.metadata.uid, "a new object");

    let patch = json!({ "spec": { "validationActions": ["Warn"] } });
    bindings
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("weaken the binding");
    eventually(
        "the binding's action to be reverted",
        Duration::from_secs(10),
        || async {
            let b = bindings.get(name).await.ok()?;
            (b.spec?.validation_actions? == ["Deny"]).then_some(())
        },
    )
    .await;
}
