//! The foundation against a real kube-apiserver: Airlock's CRDs install, accept valid objects, reject
//! invalid ones with their validation messages, explain themselves, and the simulated nodes run pods.

use std::time::Duration;

use airlock_e2e::{
    FIELD_MANAGER, client, eventually, fixtures, install_crds, run_tool, unique_name, with_temp_ns,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
        PostParams,
    },
};
use serde_json::{Value, json};

/// The dynamic API for a fixture document, from the `apiVersion`/`kind` it declares.
fn api_for(client: &Client, doc: &Value) -> Api<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().expect("fixture has apiVersion");
    let kind = doc["kind"].as_str().expect("fixture has kind");
    let (group, version) = api_version.split_once('/').expect("airlock kinds have a group");
    let crd = airlock_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no Airlock CRD for kind {kind}"));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    Api::all_with(client.clone(), &resource)
}

/// A fixture document with a name no other run uses (all Airlock kinds are cluster-scoped).
fn with_unique_name(doc: &Value, prefix: &str) -> (String, DynamicObject) {
    let name = unique_name(prefix);
    let mut doc = doc.clone();
    doc["metadata"]["name"] = json!(name);
    (name, serde_json::from_value(doc).expect("fixture is an object"))
}

/// `true` when every field of `want` is present in `got` with the same value (`got` may hold more, e.g.
/// defaults the API server filled in).
fn is_subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            w.iter().all(|(k, v)| g.get(k).is_some_and(|gv| is_subset(v, gv)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| is_subset(a, b))
        }
        _ => want == got,
    }
}

#[tokio::test]
async fn talks_to_the_pinned_real_kube_apiserver() {
    let client = client().await;
    let info = client.apiserver_version().await.expect("GET /version");
    println!(
        "kube-apiserver {} ({}, {})",
        info.git_version, info.go_version, info.platform
    );

    let pinned = include_str!("../controlplane/versions.env")
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .expect("versions.env pins KUBERNETES_VERSION");
    assert_eq!(
        info.git_version, pinned,
        "the cluster under test is not the pinned build"
    );
    assert_eq!(info.major, "1");
}

#[tokio::test]
async fn crds_install_with_short_names_and_the_airlock_category() {
    let client = client().await;
    install_crds(&client).await;

    let resources = run_tool(
        "kubectl",
        &["api-resources", "--api-group=airlock.dev", "-o", "wide"],
    );
    for (plural, short) in [
        ("aisecurityprofiles", "aisp"),
        ("airuntimeinstances", "airi"),
        ("dynamicaddressgroups", "dag"),
    ] {
        let line = resources
            .lines()
            .find(|l| l.starts_with(plural))
            .unwrap_or_else(|| panic!("{plural} missing from api-resources:\n{resources}"));
        assert!(line.contains(short), "{plural} has no short name {short}: {line}");
        assert!(
            line.contains("false"),
            "{plural} must be cluster-scoped (NAMESPACED=false): {line}"
        );
        assert!(
            line.contains("airlock"),
            "{plural} is not in the airlock category: {line}"
        );
    }
    // The category makes `kubectl get airlock` list all three kinds.
    run_tool("kubectl", &["get", "airlock"]);
}

#[tokio::test]
async fn valid_examples_of_each_kind_are_stored_and_read_back() {
    let client = client().await;
    install_crds(&client).await;

    // Profiles first: instances must reference existing profiles (the webhook checks), so every object
    // gets a unique name and references are rewritten to the renamed profiles.
    let rank = |doc: &Value| match doc["kind"].as_str() {
        Some("AISecurityProfile") => 0,
        Some("DynamicAddressGroup") => 1,
        _ => 2,
    };
    let mut docs: Vec<(std::path::PathBuf, Value)> = fixtures::load("valid")
        .into_iter()
        .flat_map(|f| f.documents.into_iter().map(move |d| (f.path.clone(), d)))
        .collect();
    docs.sort_by_key(|(_, d)| rank(d));

    let mut renamed = std::collections::BTreeMap::new();
    let mut created = Vec::new();
    for (path, doc) in &docs {
        let mut doc = doc.clone();
        for reference in profile_refs(&mut doc) {
            if let Some(new) = reference.as_str().and_then(|old| renamed.get(old)) {
                *reference = json!(new);
            }
        }
        let api = api_for(&client, &doc);
        let old = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let (name, obj) = with_unique_name(&doc, "valid");
        renamed.insert(old, name.clone());
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: the API server rejected a valid object: {e}", path.display()));
        let back = serde_json::to_value(api.get(&name).await.expect("read back")).expect("serialisable");
        assert!(
            is_subset(&doc["spec"], &back["spec"]),
            "{}: spec changed on the way through the API server:\nsent {}\ngot  {}",
            path.display(),
            doc["spec"],
            back["spec"]
        );
        created.push((rank(&doc), api, name));
    }
    let kinds: std::collections::BTreeSet<&str> =
        docs.iter().filter_map(|(_, d)| d["kind"].as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["AIRuntimeInstance", "AISecurityProfile", "DynamicAddressGroup"],
        "the valid fixtures must cover every kind"
    );
    // Instances before the profiles they use (deleting a profile in use is denied).
    created.sort_by_key(|(rank, _, _)| std::cmp::Reverse(*rank));
    // The operator's finalizer deletes an instance asynchronously; its profile stays in use until then.
    for (_, api, name) in created {
        api.delete(&name, &DeleteParams::default()).await.expect("delete");
        eventually(&format!("{name} to be deleted"), Duration::from_secs(30), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                api.get_opt(&name)
                    .await
                    .ok()
                    .and_then(|o| o.is_none().then_some(()))
            }
        })
        .await;
    }
}

/// The `profileRef.name` fields of an instance (its own and its rules').
fn profile_refs(doc: &mut Value) -> Vec<&mut Value> {
    let mut refs = Vec::new();
    let Some(spec) = doc["spec"].as_object_mut() else {
        return refs;
    };
    for (field, value) in spec.iter_mut() {
        match field.as_str() {
            "profileRef" => refs.extend(value.get_mut("name")),
            "rules" => refs.extend(
                value
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.pointer_mut("/profileRef/name")),
            ),
            _ => {}
        }
    }
    refs
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_their_validation_message() {
    let client = client().await;
    install_crds(&client).await;

    let invalid = fixtures::load("invalid");
    assert!(
        invalid.len() >= 6,
        "expected at least 6 invalid fixtures, found {}",
        invalid.len()
    );
    let mut failures = Vec::new();
    for fixture in &invalid {
        let expect = fixture
            .expect
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", fixture.path.display()));
        let [doc] = fixture.documents.as_slice() else {
            panic!("{} must hold exactly one object", fixture.path.display());
        };
        let api = api_for(&client, doc);
        let (name, obj) = with_unique_name(doc, "invalid");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                let _ = api.delete(&name, &DeleteParams::default()).await;
                failures.push(format!(
                    "{}: accepted, expected rejection with {expect:?}",
                    fixture.path.display()
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(expect) => {
                println!("{}: rejected: {}", fixture.path.display(), status.message);
            }
            Err(e) => failures.push(format!(
                "{}: expected a 422 containing {expect:?}, got {e}",
                fixture.path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let client = client().await;
    install_crds(&client).await;

    // The expected text comes from the generated schema, so this checks what users see, not a copy.
    let crd = airlock_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "AISecurityProfile")
        .expect("profile CRD");
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
    let doc = schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["dataProtection"]["description"]
        .as_str()
        .expect("spec.dataProtection has a description")
        .to_owned();
    let first_words: String = doc.split_whitespace().take(6).collect::<Vec<_>>().join(" ");

    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let out = eventually(
        "kubectl explain to show spec.dataProtection",
        Duration::from_secs(60),
        || async {
            let out = airlock_e2e::tool("kubectl")
                .args(["explain", "aisecurityprofile.spec.dataProtection"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            (out.status.success() && flat.contains(&first_words)).then_some(text)
        },
    )
    .await;
    assert!(out.contains("FIELD: dataProtection"), "{out}");
    assert!(out.contains("FIELDS:"), "explain lists the nested fields: {out}");
}

#[tokio::test]
async fn status_subresource_keeps_conditions_and_printer_columns_show_them() {
    let client = client().await;
    install_crds(&client).await;

    let profile = fixtures::load("valid")
        .into_iter()
        .flat_map(|f| f.documents)
        .find(|d| d["kind"] == "AISecurityProfile")
        .expect("a valid profile fixture");
    let api = api_for(&client, &profile);
    let (name, obj) = with_unique_name(&profile, "status");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create profile");

    // The operator owns this status and may rewrite it at any moment; write what it would write for a
    // valid, unused profile, so the columns read the same whoever wrote last.
    let status = json!({
        "apiVersion": profile["apiVersion"], "kind": "AISecurityProfile",
        "status": {
            "observedGeneration": 1,
            "instanceCount": 0,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Compiled",
                "message": "profile compiled", "lastTransitionTime": "2026-11-23T00:00:00Z",
                "observedGeneration": 1
            }]
        }
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("status subresource accepts conditions");

    let table = run_tool("kubectl", &["get", "aisp", &name]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["NAME", "READY", "INSTANCES", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {table}");
    }
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert!(
        row.get(1) == Some(&"True") && row.get(2) == Some(&"0"),
        "row shows READY and INSTANCES: {table}"
    );

    // A spec change must not be able to overwrite status (the subresource separates them).
    let back = api.get(&name).await.expect("get");
    let back = serde_json::to_value(&back).expect("json");
    assert_eq!(back["status"]["conditions"][0]["reason"], "Compiled");
    api.delete(&name, &DeleteParams::default()).await.expect("delete");
}

#[tokio::test]
async fn a_deployment_gets_running_pods_with_ips_on_simulated_nodes() {
    with_temp_ns(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "registry.k8s.io/pause:3.10" }] }
                }
            }
        }))
        .expect("deployment literal");
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create deployment");

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let running = eventually("2 running pods with IPs", Duration::from_secs(60), || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
            let ready: Vec<(String, String, String)> = list
                .items
                .iter()
                .filter_map(|p| {
                    let status = p.status.as_ref()?;
                    (status.phase.as_deref() == Some("Running")).then_some(())?;
                    let ip = status.pod_ip.clone()?;
                    let node = p.spec.as_ref()?.node_name.clone()?;
                    Some((p.name_any(), ip, node))
                })
                .collect();
            (ready.len() == 2).then_some(ready)
        })
        .await;
        for (pod, ip, node) in &running {
            println!("{ns}/{pod} Running on {node} with IP {ip}");
            assert!(node.starts_with("kwok-node-"), "{pod} was scheduled to {node}");
            assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{pod} has IP {ip}");
        }
    })
    .await;
}
