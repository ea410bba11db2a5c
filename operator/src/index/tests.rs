use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;

fn pod(name: &str, labels: &[(&str, &str)], ip: Option<&str>) -> LeanPod {
    let mut labels: Vec<(Arc<str>, Arc<str>)> =
        labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    labels.sort();
    LeanPod {
        name: name.into(),
        labels: labels.into(),
        ips: ip.map(|ip| ip.parse().unwrap()).into_iter().collect(),
        ready: ip.is_some(),
        terminal: false,
        host_network: false,
        opted_out: false,
        injected: false,
        sidecar_image: None,
        owner: None,
        service_account: None,
        containers: Box::new([]),
    }
}

fn group(expr: &str) -> DynamicAddressGroupSpec {
    DynamicAddressGroupSpec {
        match_expr: expr.into(),
        namespace_selector: None,
    }
}

fn members(index: &Index, name: &str) -> Vec<String> {
    index
        .group(name)
        .unwrap()
        .members()
        .map(|(k, s)| {
            let ips: Vec<String> = s.ips.iter().map(|ip| ip.to_string()).collect();
            format!("{}/{} {}", k.namespace, k.name, ips.join(","))
        })
        .collect()
}

#[test]
fn a_pod_that_matches_joins_and_marks_the_group_dirty() {
    let mut index = Index::new();
    index.apply_group("chat", &group("app = chat"));
    assert_eq!(index.take_dirty_groups(), ["chat"]);
    index.apply_pod("ml", pod("chat-1", &[("app", "chat")], Some("10.0.0.1")));
    index.apply_pod("ml", pod("other", &[("app", "other")], Some("10.0.0.2")));
    assert_eq!(members(&index, "chat"), ["ml/chat-1 10.0.0.1"]);
    assert_eq!(index.take_dirty_groups(), ["chat"]);
    assert!(index.take_dirty_groups().is_empty());
}

#[test]
fn relabelling_a_pod_moves_it_between_groups() {
    let mut index = Index::new();
    index.apply_group("blue", &group("color = blue"));
    index.apply_group("green", &group("color = green"));
    index.apply_pod("ns", pod("p", &[("color", "blue")], Some("10.0.0.1")));
    index.take_dirty_groups();
    index.apply_pod("ns", pod("p", &[("color", "green")], Some("10.0.0.1")));
    assert!(members(&index, "blue").is_empty());
    assert_eq!(members(&index, "green"), ["ns/p 10.0.0.1"]);
    assert_eq!(index.take_dirty_groups(), ["blue", "green"]);
}

#[test]
fn an_ip_assigned_later_updates_the_member() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    index.apply_pod("ns", pod("p", &[("app", "x")], None));
    assert_eq!(members(&index, "g"), ["ns/p "]);
    index.take_dirty_groups();
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("fd00::7")));
    assert_eq!(members(&index, "g"), ["ns/p fd00::7"]);
    assert_eq!(index.take_dirty_groups(), ["g"]);
    assert_eq!(index.group("g").unwrap().ips(), ["fd00::7"]);
}

#[test]
fn an_unchanged_pod_event_writes_nothing() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("10.0.0.1")));
    index.take_dirty_groups();
    let revision = index.revision();
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("10.0.0.1")));
    assert!(index.take_dirty_groups().is_empty());
    assert_eq!(index.revision(), revision);
}

#[test]
fn a_label_change_that_does_not_affect_a_group_leaves_it_clean() {
    let mut index = Index::new();
    index.apply_group("g", &group("app = chat"));
    index.apply_pod("ns", pod("p", &[("app", "chat"), ("v", "1")], Some("10.0.0.1")));
    index.take_dirty_groups();
    index.apply_pod("ns", pod("p", &[("app", "chat"), ("v", "2")], Some("10.0.0.1")));
    assert!(index.take_dirty_groups().is_empty());
}

#[test]
fn a_new_address_with_a_change_no_group_reads_still_updates_the_member() {
    let mut index = Index::new();
    index.apply_group("g", &group("app = chat"));
    index.apply_group("other", &group("tier = db"));
    index.apply_pod("ns", pod("p", &[("app", "chat"), ("v", "1")], Some("10.0.0.1")));
    index.take_dirty_groups();
    index.apply_pod("ns", pod("p", &[("app", "chat"), ("v", "2")], Some("10.0.0.2")));
    assert_eq!(members(&index, "g"), ["ns/p 10.0.0.2"]);
    // `other` never held the pod, so it has nothing to write.
    assert_eq!(index.take_dirty_groups(), ["g"]);
    // Readiness alone.
    let mut unready = pod("p", &[("app", "chat"), ("v", "2")], Some("10.0.0.2"));
    unready.ready = false;
    index.apply_pod("ns", unready);
    assert_eq!(index.take_dirty_groups(), ["g"]);
    assert!(!index.group("g").unwrap().status_members()[0].ready);
}

#[test]
fn deleting_a_pod_removes_it_from_its_groups() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("10.0.0.1")));
    index.take_dirty_groups();
    index.delete_pod("ns", "p");
    assert!(members(&index, "g").is_empty());
    assert_eq!(index.take_dirty_groups(), ["g"]);
    assert_eq!(index.pod_count(), 0);
    index.delete_pod("ns", "p");
    index.delete_pod("nowhere", "p");
    assert!(index.take_dirty_groups().is_empty());
}

#[test]
fn finished_pods_are_not_members() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    let mut done = pod("job-1", &[("app", "x")], Some("10.0.0.1"));
    done.terminal = true;
    index.apply_pod("ns", done);
    assert!(members(&index, "g").is_empty());
}

#[test]
fn kube_system_pods_join_only_groups_that_select_the_namespace() {
    let mut index = Index::new();
    index.apply_group("all", &group("has(app)"));
    index.apply_group(
        "system",
        &DynamicAddressGroupSpec {
            match_expr: "has(app)".into(),
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".into(),
                    "kube-system".into(),
                )])),
                ..LabelSelector::default()
            }),
        },
    );
    index.apply_pod("kube-system", pod("dns", &[("app", "dns")], Some("10.0.0.9")));
    assert!(members(&index, "all").is_empty());
    assert_eq!(members(&index, "system"), ["kube-system/dns 10.0.0.9"]);
}

#[test]
fn a_namespace_label_change_re_evaluates_its_pods() {
    let mut index = Index::new();
    let spec = DynamicAddressGroupSpec {
        match_expr: "has(app)".into(),
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "ml".into())])),
            ..LabelSelector::default()
        }),
    };
    index.apply_group("ml", &spec);
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("10.0.0.1")));
    assert!(members(&index, "ml").is_empty());
    index.take_dirty_groups();
    index.apply_namespace("ns", BTreeMap::from([("team".into(), "ml".into())]));
    assert_eq!(members(&index, "ml"), ["ns/p 10.0.0.1"]);
    assert_eq!(index.take_dirty_groups(), ["ml"]);
    index.apply_namespace("ns", BTreeMap::new());
    assert!(members(&index, "ml").is_empty());
}

#[test]
fn an_invalid_expression_is_reported_and_has_no_members() {
    let mut index = Index::new();
    index.apply_pod("ns", pod("p", &[("app", "x")], Some("10.0.0.1")));
    index.apply_group("bad", &group("app = = x"));
    let view = index.group("bad").unwrap();
    assert!(view.expression_error().unwrap().contains("column"));
    assert_eq!(view.member_count(), 0);
    index.apply_group("bad", &group("app = x"));
    assert_eq!(members(&index, "bad"), ["ns/p 10.0.0.1"]);
}

#[test]
fn a_group_created_after_its_pods_finds_them() {
    let mut index = Index::new();
    for i in 0..5 {
        index.apply_pod(
            "ns",
            pod(&format!("p{i}"), &[("app", "x")], Some(&format!("10.0.0.{i}"))),
        );
    }
    index.apply_group("g", &group("app = x"));
    assert_eq!(index.group("g").unwrap().member_count(), 5);
}

#[test]
fn a_re_list_removes_pods_deleted_while_the_watch_was_down() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    index.apply_pod("ns", pod("gone", &[("app", "x")], Some("10.0.0.1")));
    index.apply_pod("ns", pod("kept", &[("app", "x")], Some("10.0.0.2")));
    index.take_dirty_groups();
    index.replace_pods(vec![
        ("ns".into(), pod("kept", &[("app", "x")], Some("10.0.0.2"))),
        ("other".into(), pod("new", &[("app", "x")], Some("10.0.0.3"))),
    ]);
    assert_eq!(members(&index, "g"), ["ns/kept 10.0.0.2", "other/new 10.0.0.3"]);
    assert_eq!(index.pod_count(), 2);
    assert_eq!(index.take_dirty_groups(), ["g"]);
}

#[test]
fn members_are_ordered_by_namespace_then_name() {
    let mut index = Index::new();
    index.apply_group("g", &group("has(app)"));
    index.apply_pod("b", pod("a", &[("app", "x")], None));
    index.apply_pod("a", pod("z", &[("app", "x")], None));
    index.apply_pod("a", pod("b", &[("app", "x")], None));
    let names: Vec<String> = index
        .group("g")
        .unwrap()
        .status_members()
        .into_iter()
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .collect();
    assert_eq!(names, ["a/b", "a/z", "b/a"]);
}

/// A small deterministic generator for the randomized test below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every group's members, with IPs and readiness, as the status lists them.
fn all_members(index: &Index) -> Vec<(String, Vec<Member>)> {
    index
        .group_names()
        .map(|name| (name.to_owned(), index.group(name).unwrap().status_members()))
        .collect()
}

#[test]
fn incremental_updates_end_where_a_fresh_index_of_the_final_state_starts() {
    let namespaces = ["a", "b", "kube-system"];
    let specs = [
        group("app = web"),
        group("app = web and tier = front"),
        group("not app = web"),
        group("app in (web, api) or canary"),
        DynamicAddressGroupSpec {
            match_expr: "app = api".into(),
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("env".to_owned(), "prod".to_owned())])),
                ..LabelSelector::default()
            }),
        },
        group("app = ("),
    ];
    let values = [("app", ["web", "api", "db"]), ("tier", ["front", "back", "x"])];
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut index = Index::new();
        let mut ns_labels: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        for step in 0..300 {
            let ns = namespaces[rng.below(namespaces.len())];
            let name = format!("p{}", rng.below(12));
            match rng.below(10) {
                0 => {
                    let labels: BTreeMap<String, String> = if rng.below(2) == 0 {
                        BTreeMap::from([("env".to_owned(), "prod".to_owned())])
                    } else {
                        BTreeMap::new()
                    };
                    ns_labels.insert(ns, labels.clone());
                    index.apply_namespace(ns, labels);
                }
                1 => index.delete_pod(ns, &name),
                2 if step % 50 == 0 => {
                    let i = rng.below(specs.len());
                    index.apply_group(&format!("g{i}"), &specs[i]);
                }
                _ => {
                    let mut labels = Vec::new();
                    for (key, options) in values {
                        if rng.below(4) != 0 {
                            labels.push((key, options[rng.below(options.len())]));
                        }
                    }
                    if rng.below(5) == 0 {
                        labels.push(("canary", "true"));
                    }
                    // A label no group reads: changing it alone must not lose an address change.
                    if rng.below(2) == 0 {
                        labels.push(("version", ["1", "2"][rng.below(2)]));
                    }
                    let ip = format!("10.0.{}.{}", rng.below(3), rng.below(3));
                    let mut p = pod(&name, &labels, (rng.below(4) != 0).then_some(ip.as_str()));
                    p.terminal = rng.below(10) == 0;
                    index.apply_pod(ns, p);
                }
            }
        }
        // The same final state, built from scratch: groups first, then namespaces, then pods.
        let mut fresh = Index::new();
        for name in index.group_names() {
            let i: usize = name[1..].parse().unwrap();
            fresh.apply_group(name, &specs[i]);
        }
        for (ns, labels) in &ns_labels {
            fresh.apply_namespace(ns, labels.clone());
        }
        for ns in namespaces {
            for p in index.pods_in(ns) {
                fresh.apply_pod(ns, p.clone());
            }
        }
        assert_eq!(all_members(&index), all_members(&fresh), "seed {seed}");
    }
}

#[test]
fn pods_share_one_copy_of_their_repeated_strings() {
    let mut index = Index::new();
    index.apply_group("web", &group("app = web"));
    index.apply_pod("a", pod("one", &[("app", "web")], Some("10.0.0.1")));
    index.apply_pod("a", pod("two", &[("app", "web")], Some("10.0.0.2")));
    let pods: Vec<&LeanPod> = index.pods_in("a").collect();
    assert_eq!(pods.len(), 2);
    let (first, second) = (&pods[0].labels[0], &pods[1].labels[0]);
    assert!(Arc::ptr_eq(&first.0, &second.0), "the key is stored once");
    assert!(Arc::ptr_eq(&first.1, &second.1), "the value is stored once");
}

#[test]
fn the_string_pool_forgets_what_no_pod_uses() {
    let mut strings = Interner::default();
    let kept: Arc<str> = "app".into();
    let shared = strings.intern(&kept);
    assert!(Arc::ptr_eq(&shared, &strings.intern(&"app".into())));
    drop(strings.intern(&"gone".into()));
    assert_eq!(strings.len(), 2);
    strings.sweep();
    assert_eq!(strings.len(), 1, "only the string still in use stays");
    assert!(Arc::ptr_eq(&shared, &strings.intern(&"app".into())));
}

#[test]
fn a_group_is_dirty_once_until_taken_whatever_replaces_or_removes_it() {
    let mut index = Index::new();
    // A group replaced while it waits for a write is written once.
    index.apply_group("g", &group("app = a"));
    index.apply_group("g", &group("app = b"));
    assert!(index.has_dirty_groups());
    assert_eq!(index.take_dirty_groups(), ["g"]);
    assert!(!index.has_dirty_groups());
    // A removed group no longer waits for a write, whether it was dirty or not.
    index.apply_group("h", &group("app = h"));
    index.delete_group("h");
    index.delete_group("g");
    assert!(!index.has_dirty_groups());
    assert!(index.take_dirty_groups().is_empty());
    // Marking a group twice, or a group that does not exist, does not count it twice.
    index.apply_group("k", &group("app = k"));
    index.take_dirty_groups();
    index.mark_dirty("k");
    index.mark_dirty("k");
    index.mark_dirty("missing");
    assert_eq!(index.take_dirty_groups(), ["k"]);
    assert!(!index.has_dirty_groups());
}
