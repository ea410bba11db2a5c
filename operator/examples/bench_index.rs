//! In-process benchmark of the operator's pod index (`make bench`, bench/operator.sh, issue 4 (b)).
//!
//! Builds 50,000 realistic pods (full `Pod` objects as a watch delivers them, `managedFields` included,
//! converted with [`LeanPod::from_pod`] so the noise is dropped the way the watch drops it) in 50
//! namespaces, and 100 address groups with varied expressions, some with namespace selectors. Then:
//!
//! - memory: process RSS (`VmRSS`) after the pods are in the index minus RSS before, per pod — what the
//!   index really costs with the allocator's overhead (the workspace forbids `unsafe`, so no counting
//!   allocator) — next to the average of [`approximate_size`];
//! - update latency: 20,000 relabel events (a pod's `app` changes and `canary` is toggled now and then,
//!   so it leaves some groups and joins others), each timed around [`Index::apply_pod`] alone.
//!
//! `cargo run --release -p airlock-operator --example bench_index [-- --pods N --updates N]`
//! Targets: update p99 ≤ 50 µs. The program prints figures; it does not fail on a target.

use std::collections::BTreeMap;
use std::time::Instant;

use airlock_crds::v1alpha1::DynamicAddressGroupSpec;
use airlock_operator::index::pod::approximate_size;
use airlock_operator::index::{Index, LeanPod};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

const NAMESPACES: usize = 50;
const GROUPS: usize = 100;
/// Pods per Deployment: replicas share every label but the name.
const REPLICAS: usize = 10;
/// Distinct `app` values; groups name `chat-0` … `chat-199`.
const APPS: usize = 200;
const TIERS: [&str; 4] = ["api", "web", "worker", "db"];
/// The source pods built and dropped before the baseline, so the allocator already holds the memory one
/// conversion needs and the baseline does not move with it.
const WARM_UP: usize = 2_000;

/// What varies between the pods; everything else is the same noise a real pod carries.
#[derive(Debug, Clone, Copy)]
struct Shape {
    index: usize,
    app: usize,
    canary: bool,
}

impl Shape {
    fn new(index: usize) -> Shape {
        let deployment = index / REPLICAS;
        Shape {
            index,
            app: deployment % APPS,
            canary: deployment.is_multiple_of(17),
        }
    }

    fn deployment(&self) -> usize {
        self.index / REPLICAS
    }

    fn namespace(&self) -> String {
        format!("ns-{:02}", self.deployment() % NAMESPACES)
    }
}

/// A pod as the API server sends it: labels, owner, two containers with env, probes and resources,
/// status with conditions and container statuses, and the `managedFields` of three field managers.
fn source_pod(shape: Shape) -> Pod {
    let d = shape.deployment();
    let app = format!("chat-{}", shape.app);
    let hash = format!("{:09x}", (d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 28);
    // The name stays what the Deployment gave the pod when a relabel changes `app`.
    let name = format!("chat-{}-{hash}-{:05x}", d % APPS, shape.index);
    let ip = format!(
        "10.{}.{}.{}",
        64 + (shape.index >> 16),
        (shape.index >> 8) & 0xff,
        shape.index & 0xff
    );
    let mut labels = json!({
        "app": app,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "assistant",
        "pod-template-hash": hash,
        "team": format!("t{}", d % 10),
        "tier": TIERS[d % TIERS.len()],
        "version": format!("v{}", d % 3 + 1),
        "environment": "production",
    });
    if shape.canary {
        labels["canary"] = json!("true");
    }
    let env: Vec<_> = (0..10)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-{d}")}))
        .collect();
    let mut containers = vec![json!({
        "name": "server",
        "image": format!("registry.example.com/assistant/chat-server:1.{}.0", d % 20),
        "args": ["--port", "8080", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
        "terminationMessagePath": "/dev/termination-log",
        "imagePullPolicy": "IfNotPresent"
    })];
    if d.is_multiple_of(2) {
        containers.push(json!({
            "name": "envoy",
            "image": "envoyproxy/envoy:v1.31.0",
            "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"],
            "ports": [{"name": "admin", "containerPort": 15000, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}
        }));
    }
    // managedFields are what makes a stored pod large; the lean form drops them.
    let fields = |manager: &str, operation: &str, subresource: Option<&str>| {
        json!({
            "manager": manager, "operation": operation, "apiVersion": "v1",
            "time": "2026-11-20T10:00:00Z", "fieldsType": "FieldsV1",
            "subresource": subresource,
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {},
                "f:team": {}, "f:tier": {}, "f:version": {}}, "f:ownerReferences": {".": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"server\"}": {".": {}, "f:args": {}, "f:env": {
                    ".": {}, "k:{\"name\":\"SETTING_0\"}": {".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {}, "f:ports": {}, "f:resources": {}}}, "f:dnsPolicy": {},
                    "f:restartPolicy": {}, "f:schedulerName": {}, "f:terminationGracePeriodSeconds": {}},
                "f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:podIP": {}, "f:podIPs": {}}}
        })
    };
    let conditions: Vec<_> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-11-20T10:00:02Z"}))
    .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": shape.namespace(),
            "uid": format!("{:08x}-0000-4000-8000-{:012x}", d, shape.index),
            "resourceVersion": format!("{}", 100_000 + shape.index),
            "creationTimestamp": "2026-11-20T10:00:00Z",
            "generateName": format!("{app}-{hash}-"),
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T09:59:00Z",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"),
                                 "uid": format!("{:08x}-1111-4000-8000-000000000000", d),
                                 "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [fields("kube-controller-manager", "Update", None),
                              fields("kube-scheduler", "Update", Some("status")),
                              fields("kubelet", "Update", Some("status"))]
        },
        "spec": {
            "containers": containers,
            "nodeName": format!("node-{}", shape.index % 40),
            "serviceAccountName": "default", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]
        },
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.240.0.1",
            "qosClass": "Burstable", "startTime": "2026-11-20T10:00:01Z",
            "conditions": conditions,
            "containerStatuses": [{"name": "server", "ready": true, "restartCount": 0, "started": true,
                "image": format!("registry.example.com/assistant/chat-server:1.{}.0", d % 20),
                "imageID": "registry.example.com/assistant/chat-server@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "containerID": format!("containerd://{:064x}", shape.index),
                "state": {"running": {"startedAt": "2026-11-20T10:00:02Z"}}}]
        }
    });
    serde_json::from_value(pod).expect("the benchmark's pod is a valid Pod")
}

/// Namespace labels: a team and an environment, for the groups' namespace selectors.
fn namespace_labels(n: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("team".to_owned(), format!("t{}", n % 10)),
        (
            "env".to_owned(),
            if n.is_multiple_of(2) { "prod" } else { "staging" }.to_owned(),
        ),
    ])
}

/// Group `i`: five kinds of expression, two of them with a namespace selector.
fn group_spec(i: usize) -> DynamicAddressGroupSpec {
    let selector = |key: &str, value: String| {
        Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_owned(), value)])),
            ..LabelSelector::default()
        })
    };
    let (match_expr, namespace_selector) = match i % 5 {
        0 => (format!("app = chat-{i} and tier in (api, web)"), None),
        1 => (format!("team = t{} or has(canary)", i % 10), None),
        2 => (
            format!("app in (chat-{i}, chat-{}) and version != v1", i + 100),
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
                "has(app.kubernetes.io/name) and app = chat-{i} or team = t{} and tier = db",
                i % 10
            ),
            selector("team", format!("t{}", i % 10)),
        ),
    };
    DynamicAddressGroupSpec {
        match_expr,
        namespace_selector,
    }
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable (Linux)");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("/proc/self/status has a VmRSS line")
}

/// A small deterministic generator, so every run replays the same events.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("flag values are numbers"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods = flag(&args, "--pods", 50_000);
    let updates = flag(&args, "--updates", 20_000);

    let mut index = Index::new();
    for n in 0..NAMESPACES {
        index.apply_namespace(&format!("ns-{n:02}"), namespace_labels(n));
    }
    for i in 0..GROUPS {
        index.apply_group(&format!("group-{i:03}"), &group_spec(i));
    }
    index.take_dirty_groups();

    let mut source_bytes = 0usize;
    for i in 0..WARM_UP {
        let pod = source_pod(Shape::new(i));
        source_bytes += serde_json::to_vec(&pod).map_or(0, |v| v.len());
        std::hint::black_box(LeanPod::from_pod(&pod));
    }
    let before = rss_bytes();
    let started = Instant::now();
    let mut estimate = 0usize;
    for i in 0..pods {
        let shape = Shape::new(i);
        let lean = LeanPod::from_pod(&source_pod(shape)).expect("the benchmark's pods have names");
        estimate += approximate_size(&lean);
        index.apply_pod(&shape.namespace(), lean);
    }
    let load = started.elapsed();
    let after = rss_bytes();
    assert_eq!(index.pod_count(), pods, "every pod is in the index");
    let memberships: usize = index
        .group_names()
        .filter_map(|name| index.group(name))
        .map(|g| g.member_count())
        .sum();
    index.take_dirty_groups();

    // Relabel events: a pod moves to another app (leaving and joining groups), and its canary label is
    // toggled one time in four. The event is built and converted outside the timed region, as the watch
    // does before it takes the index lock.
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut current: Vec<Shape> = (0..pods).map(Shape::new).collect();
    let mut latencies = Vec::with_capacity(updates);
    let mut changed_groups = 0usize;
    for _ in 0..updates {
        let i = rng.below(pods);
        let mut shape = current[i];
        shape.app = rng.below(APPS);
        if rng.below(4) == 0 {
            shape.canary = !shape.canary;
        }
        current[i] = shape;
        let namespace = shape.namespace();
        let lean = LeanPod::from_pod(&source_pod(shape)).expect("the benchmark's pods have names");
        let t = Instant::now();
        index.apply_pod(&namespace, lean);
        latencies.push(t.elapsed().as_nanos() as u64);
        changed_groups += index.take_dirty_groups().len();
    }
    latencies.sort_unstable();
    let us = |nanos: u64| nanos as f64 / 1000.0;
    let (p50, p99, max) = (
        us(percentile(&latencies, 0.50)),
        us(percentile(&latencies, 0.99)),
        us(latencies[latencies.len() - 1]),
    );
    let rss_per_pod = after.saturating_sub(before) as f64 / pods as f64;
    let estimate_per_pod = estimate as f64 / pods as f64;

    println!(
        "index: {pods} pods in {NAMESPACES} namespaces, {GROUPS} groups ({memberships} memberships), loaded in {:.2} s",
        load.as_secs_f64()
    );
    println!(
        "index: source pods average {:.1} KiB as JSON (managedFields included); the lean form keeps {:.0} B (estimate)",
        source_bytes as f64 / WARM_UP as f64 / 1024.0,
        estimate_per_pod
    );
    println!(
        "index: {updates} relabel events ({:.1} groups changed per event): update p50 {p50:.1} µs p99 {p99:.1} µs max {max:.0} µs (target p99 ≤ 50 µs)",
        changed_groups as f64 / updates as f64
    );
    println!(
        "index: RSS {:.1} MiB before the pods, {:.1} MiB after",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
    );
    // The summary line bench/operator.sh repeats in its figures.
    println!(
        "index: {pods} pods, {GROUPS} groups: update p50 {p50:.1} µs p99 {p99:.1} µs (target ≤ 50 µs); memory {:.2} KiB/pod (RSS) / {:.2} KiB/pod (estimate)",
        rss_per_pod / 1024.0,
        estimate_per_pod / 1024.0
    );
}
