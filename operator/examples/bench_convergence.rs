//! Load driver of the operator benchmark (`make bench`, bench/operator.sh, issue 4 (a)): it sets up the
//! cluster state, checks that a controller has converged, and measures how fast a label change reaches a
//! group's status. The script runs it between starting and stopping the controllers under test.
//!
//! ```text
//! bench_convergence setup                     namespaces bench-0..4 and 100 address groups
//! bench_convergence pods [--count 2000]       create the pods on the kwok nodes, wait until all run
//! bench_convergence wait-synced [--timeout S] wait until every group's status is what Airlock's own
//!                                             index computes from the cluster's pods
//! bench_convergence converge --who NAME [--changes 200] [--every-group]
//!                                             relabel pods one after another, time each until a watch
//!                                             sees the pod in the group it joined (and, with
//!                                             --every-group, until every group it touched shows it)
//! bench_convergence reset [--changes 200]     undo the relabels (nobody watching)
//! bench_convergence floor [--changes 200]     the same changes and measurement with no controller but
//!                                             this process doing only the round trips (see [`floor`])
//! ```
//!
//! The cluster comes from `KUBECONFIG`. The groups are cluster-scoped and labelled
//! `bench.airlock.dev/set=operator`; ten of them, `probe-0` … `probe-9`, select
//! `bench.airlock.dev/slot = s<n>`, a label no pod has until a change gives it one. Change `i` gives
//! pod `i * 7919 mod 2000` the slot `s<i mod 10>` and another `app`, so the pod also leaves and joins
//! ordinary groups — a realistic relabel that makes the controller write several groups — and the
//! latency is measured from the patch's response to the first watch event of `probe-<i mod 10>` that
//! lists the pod. With `--every-group`, a second figure (`all_…`) is the time until every group the change
//! touched shows it (the pod listed in the groups it joined, gone from those it left), as Airlock's own
//! index computes them. That run watches all the groups, whose events cost the driver more to read than
//! the probes' on the same two cores, so it is a separate run and the probe figure is taken without it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock_crds::DynamicAddressGroup;
use airlock_crds::v1alpha1::group::MAX_INLINE_MEMBERS;
use airlock_crds::v1alpha1::{DynamicAddressGroupSpec, Member};
use airlock_operator::index::{Index, LeanPod};
use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

const NAMESPACES: usize = 5;
const ORDINARY_GROUPS: usize = 90;
const PROBES: usize = 10;
/// Pods per Deployment-like family: they share every label but the name.
const REPLICAS: usize = 5;
const APPS: usize = 40;
const TIERS: [&str; 4] = ["api", "web", "worker", "db"];
const SET_LABEL: &str = "bench.airlock.dev/set";
const POD_LABEL: &str = "bench.airlock.dev/pod";
const SLOT_LABEL: &str = "bench.airlock.dev/slot";
/// How long one change may take before it counts as lost (and as this long in the percentiles).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between changes, so each one is measured on its own rather than inside the previous burst.
const GAP: Duration = Duration::from_millis(40);

fn namespace(n: usize) -> String {
    format!("bench-{n}")
}

/// Pod `k`: its namespace, name and original `app`.
fn pod_identity(k: usize) -> (String, String, usize) {
    let family = k / REPLICAS;
    (
        namespace(k % NAMESPACES),
        format!("chat-{}-{:05}", family % APPS, k),
        family % APPS,
    )
}

fn pod_manifest(k: usize, node: &str) -> serde_json::Value {
    let family = k / REPLICAS;
    let (ns, name, app) = pod_identity(k);
    let app = format!("chat-{app}");
    let mut labels = json!({
        POD_LABEL: "true",
        "app": app,
        "app.kubernetes.io/name": app,
        "pod-template-hash": format!("{:08x}", family.wrapping_mul(2_654_435_761) & 0xffff_ffff),
        "team": format!("t{}", family % 10),
        "tier": TIERS[family % TIERS.len()],
        "version": format!("v{}", family % 3 + 1),
        "environment": "production",
    });
    if family.is_multiple_of(13) {
        labels["canary"] = json!("true");
    }
    let env: Vec<_> = (0..8)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-{family}")}))
        .collect();
    let mut containers = vec![json!({
        "name": "server",
        "image": format!("registry.example.com/assistant/chat-server:1.{}.0", family % 20),
        "args": ["--port", "8080", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"],
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
        "env": env,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    })];
    if family.is_multiple_of(2) {
        containers.push(json!({
            "name": "envoy", "image": "envoyproxy/envoy:v1.31.0",
            "args": ["-c", "/etc/envoy/envoy.yaml"],
            "ports": [{"name": "admin", "containerPort": 15000}],
        }));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
        // Bound at creation: the bench measures the operator, not the scheduler.
        "spec": {"nodeName": node, "containers": containers,
                 "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]}
    })
}

fn group_spec(i: usize) -> DynamicAddressGroupSpec {
    let selector = |key: &str, value: String| {
        Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_owned(), value)])),
            ..LabelSelector::default()
        })
    };
    let (match_expr, namespace_selector) = match i % 5 {
        0 => (format!("app = chat-{} and tier in (api, web)", i % APPS), None),
        1 => (format!("team = t{} or has(canary)", i % 10), None),
        2 => (
            format!(
                "app in (chat-{}, chat-{}) and version != v1",
                i % APPS,
                (i + 1) % APPS
            ),
            selector("env", "prod".to_owned()),
        ),
        3 => (
            format!(
                "tier = worker and team in (t{}, t{}) and not has(canary)",
                i % 10,
                (i + 1) % 10
            ),
            None,
        ),
        _ => (
            format!(
                "has(app.kubernetes.io/name) and app = chat-{} or team = t{} and tier = db",
                i % APPS,
                i % 10
            ),
            selector("team", format!("t{}", i % NAMESPACES)),
        ),
    };
    DynamicAddressGroupSpec {
        match_expr,
        namespace_selector,
    }
}

fn probe_spec(slot: usize) -> DynamicAddressGroupSpec {
    DynamicAddressGroupSpec {
        match_expr: format!("{SLOT_LABEL} = s{slot} and has(app)"),
        namespace_selector: None,
    }
}

/// The pod change `i` relabels, and the labels it sets.
fn change(i: usize, count: usize) -> (usize, serde_json::Value, String) {
    let k = i * 7919 % count;
    let (_, _, app) = pod_identity(k);
    let slot = i % PROBES;
    let labels = json!({SLOT_LABEL: format!("s{slot}"), "app": format!("chat-{}", (app + 1 + i) % APPS)});
    (k, labels, format!("probe-{slot}"))
}

async fn setup(client: &Client) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let apply = PatchParams::apply("airlock-bench").force();
    for n in 0..NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace(n), "labels": {"team": format!("t{n}"),
                "env": if n.is_multiple_of(2) { "prod" } else { "staging" }}}});
        namespaces
            .patch(&namespace(n), &apply, &Patch::Apply(&ns))
            .await?;
    }
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let specs = (0..ORDINARY_GROUPS)
        .map(|i| (format!("bench-{i:03}"), group_spec(i), "ordinary"))
        .chain((0..PROBES).map(|s| (format!("probe-{s}"), probe_spec(s), "probe")));
    for (name, spec, role) in specs {
        let mut group = DynamicAddressGroup::new(&name, spec);
        group.metadata.labels = Some(BTreeMap::from([
            (SET_LABEL.to_owned(), "operator".to_owned()),
            ("bench.airlock.dev/role".to_owned(), role.to_owned()),
        ]));
        groups.patch(&name, &apply, &Patch::Apply(&group)).await?;
    }
    // Pods need their namespace's default ServiceAccount, which the controller manager creates.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..NAMESPACES {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace(n));
        while accounts.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                bail!("no default ServiceAccount in {} after 60 s", namespace(n));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "setup: {NAMESPACES} namespaces, {} groups",
        ORDINARY_GROUPS + PROBES
    );
    Ok(())
}

async fn create_pods(client: &Client, count: usize) -> anyhow::Result<()> {
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    if nodes.is_empty() {
        bail!("the cluster has no nodes");
    }
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|k| {
            let client = client.clone();
            let node = nodes[k % nodes.len()].clone();
            async move {
                let (ns, _, _) = pod_identity(k);
                let pod: Pod = serde_json::from_value(pod_manifest(k, &node))?;
                let api: Api<Pod> = Api::namespaced(client, &ns);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => Err(anyhow::Error::from(error)),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    let api: Api<Pod> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{POD_LABEL}=true"));
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let pods = api.list(&selector).await?.items;
        let running = pods
            .iter()
            .filter_map(LeanPod::from_pod)
            .filter(|p| p.ready && !p.ips.is_empty())
            .count();
        if running == count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {count} pods are running with an IP after 240 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "pods: {count} created in {:.1} s, all running with IPs after {:.1} s",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cluster as Airlock's index sees it: namespaces, pods (also returned whole, by namespace and name)
/// and the benchmark's groups.
async fn cluster_index(
    client: &Client,
) -> anyhow::Result<(Index, HashMap<(String, String), Pod>, Vec<DynamicAddressGroup>)> {
    let mut index = Index::new();
    for ns in Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        index.apply_namespace(&ns.name_any(), ns.metadata.labels.clone().unwrap_or_default());
    }
    let mut pods = HashMap::new();
    for pod in Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(lean) = LeanPod::from_pod(&pod) {
            index.apply_pod(&ns, lean);
        }
        pods.insert((ns, pod.name_any()), pod);
    }
    let by_set = ListParams::default().labels(&format!("{SET_LABEL}=operator"));
    let groups = Api::<DynamicAddressGroup>::all(client.clone())
        .list(&by_set)
        .await?
        .items;
    for group in &groups {
        index.apply_group(&group.name_any(), &group.spec);
    }
    index.take_dirty_groups();
    Ok((index, pods, groups))
}

/// Waits until every group's status lists what Airlock's index computes from the cluster as it is.
async fn wait_synced(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (index, _, listed) = cluster_index(client).await?;
        let mut behind = Vec::new();
        let mut memberships = 0;
        for group in &listed {
            let name = group.name_any();
            let view = index.group(&name).context("the group was just applied")?;
            memberships += view.member_count();
            let status = group.status.clone().unwrap_or_default();
            let count_ok = usize::try_from(status.member_count).ok() == Some(view.member_count());
            if !count_ok || status.members != view.status_members() {
                behind.push(name);
            }
        }
        if behind.is_empty() && listed.len() == ORDINARY_GROUPS + PROBES {
            println!(
                "synced: {} groups, {memberships} memberships, after {:.1} s",
                listed.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "{} groups are not current after {} s: {}",
                behind.len(),
                timeout.as_secs(),
                behind.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The change being measured: what each group it touches must show, and when the watch first saw it.
#[derive(Default)]
struct Pending {
    state: Mutex<PendingState>,
    changed: Notify,
}

#[derive(Default)]
struct PendingState {
    /// Namespace and name of the relabelled pod.
    pod: (String, String),
    /// Per group the change touches: whether its status must list the pod.
    expected: HashMap<String, bool>,
    /// Per group, when a watch event first showed it as expected.
    met: HashMap<String, Instant>,
}

async fn converge(
    client: &Client,
    who: &str,
    changes: usize,
    count: usize,
    every_group: bool,
) -> anyhow::Result<()> {
    let (mut index, mut pods, _) = cluster_index(client).await?;
    let pending = Arc::new(Pending::default());
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let role = if every_group {
        format!("{SET_LABEL}=operator")
    } else {
        "bench.airlock.dev/role=probe".to_owned()
    };
    let config = watcher::Config::default().labels(&role);
    let watch = tokio::spawn({
        let pending = pending.clone();
        async move {
            let mut listed = Some(listed_tx);
            let mut stream = watcher(groups, config).boxed();
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                let group = match event {
                    Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => g,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(error) => {
                        println!("converge: watch error {error}; resuming");
                        continue;
                    }
                };
                let name = group.name_any();
                let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(&want) = state.expected.get(&name) else {
                    continue;
                };
                if state.met.contains_key(&name) {
                    continue;
                }
                let (ns, pod) = state.pod.clone();
                let listed = group
                    .status
                    .iter()
                    .flat_map(|s| s.members.iter())
                    .any(|m| m.namespace == ns && m.name == pod);
                if listed == want {
                    state.met.insert(name, now);
                    drop(state);
                    pending.changed.notify_waiters();
                }
            }
        }
    });
    listed_rx.await.context("the group watch ended before listing")?;

    let mut probe_latencies = Vec::with_capacity(changes);
    let mut all_latencies = Vec::with_capacity(changes);
    let (mut lost, mut all_lost, mut touched) = (0, 0, 0);
    for i in 0..changes {
        let (k, labels, probe) = change(i, count);
        let (ns, name, _) = pod_identity(k);
        // What the change must make each group show, from the index with the new labels applied.
        let pod = pods
            .get_mut(&(ns.clone(), name.clone()))
            .with_context(|| format!("pod {ns}/{name} is not in the cluster"))?;
        let pod_labels = pod.metadata.labels.get_or_insert_default();
        for (key, value) in labels.as_object().into_iter().flatten() {
            pod_labels.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
        }
        index.apply_pod(&ns, LeanPod::from_pod(pod).context("the pod has a name")?);
        let mut expected = HashMap::new();
        for group in index.take_dirty_groups() {
            let view = index.group(&group).context("a dirty group is in the index")?;
            if !every_group && group != probe || view.member_count() > MAX_INLINE_MEMBERS {
                continue;
            }
            let listed = view
                .members()
                .any(|(key, _)| *key.namespace == *ns && *key.name == *name);
            expected.insert(group, listed);
        }
        if expected.get(&probe) != Some(&true) {
            bail!("change {i} does not make {ns}/{name} a member of {probe}");
        }
        touched += expected.len();
        {
            let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.pod = (ns.clone(), name.clone());
            state.expected = expected;
            state.met.clear();
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
        let patched = Instant::now();
        let deadline = patched + CHANGE_TIMEOUT;
        loop {
            let notified = pending.changed.notified();
            {
                let state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.met.len() == state.expected.len() {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                break;
            }
        }
        {
            let state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
            // A watch event that beat the patch's response counts as zero.
            match state.met.get(&probe) {
                Some(at) => probe_latencies.push(at.saturating_duration_since(patched)),
                None => {
                    lost += 1;
                    probe_latencies.push(CHANGE_TIMEOUT);
                }
            }
            if state.met.len() == state.expected.len() {
                let last = state.met.values().max().copied().unwrap_or(patched);
                all_latencies.push(last.saturating_duration_since(patched));
            } else {
                all_lost += 1;
                all_latencies.push(CHANGE_TIMEOUT);
            }
        }
        tokio::time::sleep(GAP).await;
    }
    watch.abort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let figures = |mut latencies: Vec<Duration>, prefix: &str| {
        latencies.sort_unstable();
        let pick = |p: f64| {
            let rank = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
            ms(latencies[rank - 1])
        };
        format!(
            "{prefix}p50_ms={:.1} {prefix}p90_ms={:.1} {prefix}p99_ms={:.1} {prefix}max_ms={:.1}",
            pick(0.50),
            pick(0.90),
            pick(0.99),
            latencies.last().map_or(0.0, |d| ms(*d)),
        )
    };
    let mut line = format!(
        "converge who={who} changes={changes} {} lost={lost}",
        figures(probe_latencies, "")
    );
    if every_group {
        line += &format!(
            " {} all_lost={all_lost} groups_per_change={:.2}",
            figures(all_latencies, "all_"),
            touched as f64 / changes as f64
        );
    }
    println!("{line}");
    Ok(())
}

/// The floor of convergence on this cluster: the same changes and the same measurement as
/// [`converge`], but the controller is a task of this process that does nothing except the round trips
/// every controller needs — it watches the pods that carry a slot label and, for each event, sends one
/// status write to the probe group the pod joined (the members it has seen so far, as a merge patch, in
/// the operator's form), one write at a time. It evaluates no expression and writes none of the
/// ordinary groups the pod left or joined, which a real controller must, so no controller converges
/// faster on this cluster. The probe groups are emptied first, as a controller does after `reset`.
async fn floor(client: &Client, changes: usize, count: usize) -> anyhow::Result<()> {
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let merge = PatchParams {
        field_manager: Some("airlock-bench-floor".to_owned()),
        ..PatchParams::default()
    };
    for slot in 0..PROBES {
        let empty = json!({"status": {"memberCount": 0, "members": []}});
        groups
            .patch_status(&format!("probe-{slot}"), &merge, &Patch::Merge(&empty))
            .await?;
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = tokio::spawn(async move {
        let mut members: HashMap<String, BTreeMap<(String, String), Member>> = HashMap::new();
        let mut stream = watcher(pods, watcher::Config::default().labels(SLOT_LABEL)).boxed();
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                Ok(_) => continue,
                Err(error) => {
                    println!("floor: pod watch error {error}; resuming");
                    continue;
                }
            };
            let Some(slot) = pod.labels().get(SLOT_LABEL).and_then(|s| s.strip_prefix('s')) else {
                continue;
            };
            let group = format!("probe-{slot}");
            // IPs and readiness as the operator's index reads them.
            let Some(lean) = LeanPod::from_pod(&pod) else {
                continue;
            };
            let member = Member {
                namespace: pod.namespace().unwrap_or_default(),
                name: lean.name.to_string(),
                ips: lean.ips.iter().map(ToString::to_string).collect(),
                ready: lean.ready,
            };
            let list = members.entry(group.clone()).or_default();
            let key = (member.namespace.clone(), member.name.clone());
            if list.get(&key) == Some(&member) {
                continue;
            }
            list.insert(key, member);
            let patch =
                json!({"status": {"memberCount": list.len(), "members": list.values().collect::<Vec<_>>()}});
            if let Err(error) = groups.patch_status(&group, &merge, &Patch::Merge(&patch)).await {
                println!("floor: writing {group} failed: {error}");
            }
        }
    });
    let measured = converge(client, "floor", changes, count, false).await;
    controller.abort();
    measured
}

/// Puts the relabelled pods back as they were created.
async fn reset(client: &Client, changes: usize, count: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..changes)
        .map(|i| {
            let client = client.clone();
            async move {
                let (k, _, _) = change(i, count);
                let (ns, name, app) = pod_identity(k);
                let labels = json!({SLOT_LABEL: null, "app": format!("chat-{app}")});
                Api::<Pod>::namespaced(client, &ns)
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"labels": labels}})),
                    )
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    println!("reset: {changes} pods relabelled back");
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn number(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    flag(args, name).map_or(Ok(default), |v| {
        v.parse()
            .with_context(|| format!("{name} takes a number, not {v:?}"))
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::try_default().await?;
    let count = number(&args, "--count", 2000)?;
    let changes = number(&args, "--changes", 200)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&client).await,
        Some("pods") => create_pods(&client, count).await,
        Some("wait-synced") => {
            let timeout = Duration::from_secs(number(&args, "--timeout", 60)? as u64);
            wait_synced(&client, timeout).await
        }
        Some("converge") => {
            let who = flag(&args, "--who").context("converge needs --who NAME")?;
            converge(
                &client,
                &who,
                changes,
                count,
                args.iter().any(|a| a == "--every-group"),
            )
            .await
        }
        Some("reset") => reset(&client, changes, count).await,
        Some("floor") => floor(&client, changes, count).await,
        _ => bail!(
            "usage: bench_convergence setup|pods|wait-synced|converge --who NAME [--every-group]|reset|floor [--count N] [--changes N]"
        ),
    }
}
