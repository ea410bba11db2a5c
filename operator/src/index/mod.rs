//! The operator's in-memory index of pods, namespaces and address groups, fed by watch events.
//!
//! Every change is applied incrementally: a pod event re-evaluates that one pod against each group, a
//! namespace label change re-evaluates that namespace's pods, and only a group's own spec change
//! re-evaluates all pods for that group. Groups whose membership changed are marked dirty; the status
//! writer takes them with [`Index::take_dirty_groups`]. The index does no I/O and is tested synchronously.

pub mod pod;
pub mod watched;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use airlock_core::expr::Expr;
use airlock_crds::v1alpha1::{DynamicAddressGroupSpec, Member};
use airlock_webhook::selection::selector_matches;

pub use pod::{Interner, LeanPod};
pub use watched::WatchedPod;

/// The label the API server sets on every namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Groups without a namespace selector never include this namespace's pods.
const SYSTEM_NAMESPACE: &str = "kube-system";

/// Identifies a member pod; orders by namespace, then name (the order of `status.members`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    /// Namespace of the pod (interned: every key of one namespace shares the same allocation).
    pub namespace: Arc<str>,
    /// Name of the pod.
    pub name: Arc<str>,
}

impl Ord for PodKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Namespaces are interned, so the same namespace is the same pointer: no bytes to compare.
        let namespace = if Arc::ptr_eq(&self.namespace, &other.namespace) {
            std::cmp::Ordering::Equal
        } else {
            self.namespace.cmp(&other.namespace)
        };
        namespace.then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for PodKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What a group records about a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The pod's IPs.
    pub ips: Arc<[IpAddr]>,
    /// Whether the pod is ready.
    pub ready: bool,
}

#[derive(Debug, Default)]
struct Namespace {
    /// The namespace's labels including `kubernetes.io/metadata.name`; only that label until the
    /// namespace itself has been seen.
    labels: BTreeMap<String, String>,
    pods: HashMap<Arc<str>, LeanPod>,
}

/// A group's members. Keyed by a seeded fast hash rather than SipHash: a pod event updates one key in
/// each group it joins or leaves, and hashing the key was a large part of that.
type Members = HashMap<PodKey, MemberState, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Group {
    spec: DynamicAddressGroupSpec,
    expr: Result<Expr, String>,
    /// The label keys `expr` reads: a pod change that touches none of them keeps its membership.
    keys: Box<[Box<str>]>,
    /// Unordered: a pod event touches a member in O(1); the status order is made when it is read.
    members: Members,
    /// Waits for a status write ([`Index::take_dirty_groups`]). A flag on the group rather than a set of
    /// names: a pod event that changes twenty groups marks them without copying a name.
    dirty: bool,
}

impl Group {
    /// Marks the group for a status write; `true` when it was not marked yet.
    fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }
}

/// Pods, namespaces and address groups, with each group's current membership.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<Arc<str>, Namespace>,
    groups: BTreeMap<String, Group>,
    /// How many groups are marked dirty.
    dirty: usize,
    pod_count: usize,
    revision: u64,
    strings: Interner,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds or replaces a pod.
    pub fn apply_pod(&mut self, namespace: &str, mut pod: LeanPod) {
        let ns_name = self.intern(namespace);
        let Some(ns) = self.namespaces.get_mut(&ns_name) else {
            return;
        };
        let old = ns.pods.get(&pod.name);
        if old == Some(&pod) {
            return;
        }
        pod.intern(&mut self.strings);
        let key = PodKey {
            namespace: ns_name.clone(),
            name: pod.name.clone(),
        };
        // An update that changes no label a group reads (and not whether the pod runs) keeps the pod in
        // or out of that group: only a member's addresses or readiness may need writing. Relabelling one
        // label re-evaluates only the groups that read it.
        let changed = old
            .filter(|old| old.terminal == pod.terminal)
            .map(|old| changed_keys(&old.labels, &pod.labels));
        let same_state = old.is_some_and(|old| old.ips == pod.ips && old.ready == pod.ready);
        for group in self.groups.values_mut() {
            if let Some(changed) = &changed
                && !group.keys.iter().any(|k| changed.contains(&&**k))
            {
                if !same_state && let Some(member) = group.members.get_mut(&key) {
                    *member = MemberState {
                        ips: pod.ips.clone(),
                        ready: pod.ready,
                    };
                    if group.mark_dirty() {
                        self.dirty += 1;
                    }
                }
                continue;
            }
            let state = member_state(group, &ns_name, &ns.labels, &pod);
            // A group's members are exactly the stored pods its expression matches (every change to a
            // group, a namespace's labels or a pod keeps it so), so re-evaluating the stored pod says
            // whether it is a member without searching the group: most groups neither held the pod nor
            // take it, and those cost no lookup.
            let was_member = old.is_some_and(|old| member_state(group, &ns_name, &ns.labels, old).is_some());
            if state.is_none() && !was_member {
                continue;
            }
            if update_member(&mut group.members, &key, state) && group.mark_dirty() {
                self.dirty += 1;
            }
        }
        if ns.pods.insert(pod.name.clone(), pod).is_none() {
            self.pod_count += 1;
        }
        self.revision += 1;
    }

    /// Removes a pod; unknown pods are ignored.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return;
        };
        if ns.pods.remove(name).is_none() {
            return;
        }
        self.pod_count -= 1;
        self.revision += 1;
        let Some((ns_name, _)) = self.namespaces.get_key_value(namespace) else {
            return;
        };
        let key = PodKey {
            namespace: ns_name.clone(),
            name: name.into(),
        };
        for group in self.groups.values_mut() {
            if group.members.remove(&key).is_some() && group.mark_dirty() {
                self.dirty += 1;
            }
        }
    }

    /// Replaces every pod with `pods` (after a watch re-list): pods missing from the list are removed,
    /// the others applied, so a group only changes where the cluster did.
    pub fn replace_pods(&mut self, pods: Vec<(String, LeanPod)>) {
        let mut listed: HashMap<String, BTreeSet<Arc<str>>> = HashMap::new();
        for (namespace, pod) in &pods {
            listed
                .entry(namespace.clone())
                .or_default()
                .insert(pod.name.clone());
        }
        let stale: Vec<(Arc<str>, Arc<str>)> = self
            .namespaces
            .iter()
            .flat_map(|(ns_name, ns)| {
                let keep = listed.get(&**ns_name);
                ns.pods
                    .keys()
                    .filter(move |name| keep.is_none_or(|k| !k.contains(*name)))
                    .map(move |name| (ns_name.clone(), name.clone()))
            })
            .collect();
        for (namespace, name) in stale {
            self.delete_pod(&namespace, &name);
        }
        for (namespace, pod) in pods {
            self.apply_pod(&namespace, pod);
        }
    }

    /// Records a namespace's labels and re-evaluates its pods when they changed.
    pub fn apply_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        let ns_name = self.intern(name);
        let mut labels = labels;
        labels
            .entry(NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| name.to_owned());
        let Some(ns) = self.namespaces.get_mut(&ns_name) else {
            return;
        };
        if ns.labels == labels {
            return;
        }
        ns.labels = labels;
        self.revision += 1;
        for group in self.groups.values_mut() {
            if group.spec.namespace_selector.is_none() {
                continue;
            }
            let mut changed = false;
            for pod in ns.pods.values() {
                let key = PodKey {
                    namespace: ns_name.clone(),
                    name: pod.name.clone(),
                };
                let state = member_state(group, &ns_name, &ns.labels, pod);
                changed |= update_member(&mut group.members, &key, state);
            }
            if changed && group.mark_dirty() {
                self.dirty += 1;
            }
        }
    }

    /// Forgets a namespace's labels (its pods go with their own delete events).
    pub fn delete_namespace(&mut self, name: &str) {
        if let Some(ns) = self.namespaces.get(name)
            && ns.pods.is_empty()
        {
            self.namespaces.remove(name);
            self.revision += 1;
        }
    }

    /// Adds or updates a group; its membership is recomputed only when its spec changed.
    pub fn apply_group(&mut self, name: &str, spec: &DynamicAddressGroupSpec) {
        if self.groups.get(name).is_some_and(|g| g.spec == *spec) {
            return;
        }
        let expr = airlock_core::expr::parse(&spec.match_expr).map_err(|e| e.to_string());
        let keys = expr
            .as_ref()
            .map(|e| e.keys().into_iter().map(Into::into).collect())
            .unwrap_or_default();
        let mut group = Group {
            spec: spec.clone(),
            expr,
            keys,
            members: Members::default(),
            dirty: true,
        };
        for (ns_name, ns) in &self.namespaces {
            for pod in ns.pods.values() {
                if let Some(state) = member_state(&group, ns_name, &ns.labels, pod) {
                    let key = PodKey {
                        namespace: ns_name.clone(),
                        name: pod.name.clone(),
                    };
                    group.members.insert(key, state);
                }
            }
        }
        let replaced = self.groups.insert(name.to_owned(), group);
        if !replaced.is_some_and(|old| old.dirty) {
            self.dirty += 1;
        }
        self.revision += 1;
    }

    /// Removes a group.
    pub fn delete_group(&mut self, name: &str) {
        if let Some(group) = self.groups.remove(name) {
            self.revision += 1;
            if group.dirty {
                self.dirty = self.dirty.saturating_sub(1);
            }
        }
    }

    /// Whether any group waits for a status write.
    pub fn has_dirty_groups(&self) -> bool {
        self.dirty > 0
    }

    /// Names of the groups whose membership (or expression) changed since the last call.
    pub fn take_dirty_groups(&mut self) -> Vec<String> {
        if self.dirty == 0 {
            return Vec::new();
        }
        self.dirty = 0;
        self.groups
            .iter_mut()
            .filter_map(|(name, group)| std::mem::replace(&mut group.dirty, false).then(|| name.clone()))
            .collect()
    }

    /// Marks a group for a status write even though its membership did not change (e.g. its
    /// generation did).
    pub fn mark_dirty(&mut self, name: &str) {
        if let Some(group) = self.groups.get_mut(name)
            && group.mark_dirty()
        {
            self.dirty += 1;
        }
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<GroupView<'_>> {
        self.groups.get(name).map(|group| GroupView { group })
    }

    /// Names of all groups.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The pods of a namespace.
    pub fn pods_in(&self, namespace: &str) -> impl Iterator<Item = &LeanPod> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.pods.values())
    }

    /// Every known namespace with its labels (including `kubernetes.io/metadata.name`).
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.namespaces.iter().map(|(name, ns)| (&**name, &ns.labels))
    }

    /// Number of pods in the index.
    pub fn pod_count(&self) -> usize {
        self.pod_count
    }

    /// A counter that grows with every change to pods, namespaces or groups, so consumers can tell whether
    /// anything happened since they last looked.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn intern(&mut self, namespace: &str) -> Arc<str> {
        if let Some((name, _)) = self.namespaces.get_key_value(namespace) {
            return name.clone();
        }
        let name: Arc<str> = namespace.into();
        let labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())]);
        self.namespaces.insert(
            name.clone(),
            Namespace {
                labels,
                pods: HashMap::new(),
            },
        );
        name
    }
}

/// A read-only view of one group.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'a> {
    group: &'a Group,
}

impl<'a> GroupView<'a> {
    /// The parser's message when `spec.match` does not parse.
    pub fn expression_error(&self) -> Option<&'a str> {
        self.group.expr.as_ref().err().map(String::as_str)
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.group.members.len()
    }

    /// Members ordered by namespace and name.
    pub fn members(&self) -> impl Iterator<Item = (&'a PodKey, &'a MemberState)> + 'a {
        let mut members: Vec<(&'a PodKey, &'a MemberState)> = self.group.members.iter().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        members.into_iter()
    }

    /// Members in the status form.
    pub fn status_members(&self) -> Vec<Member> {
        self.members()
            .map(|(key, state)| Member {
                namespace: key.namespace.to_string(),
                name: key.name.to_string(),
                ips: state.ips.iter().map(IpAddr::to_string).collect(),
                ready: state.ready,
            })
            .collect()
    }

    /// Every member IP, sorted and without duplicates.
    pub fn ips(&self) -> Vec<String> {
        let ips: BTreeSet<IpAddr> = self
            .group
            .members
            .values()
            .flat_map(|s| s.ips.iter().copied())
            .collect();
        ips.iter().map(IpAddr::to_string).collect()
    }
}

/// The keys whose values differ between two label lists sorted by key (added, removed or changed).
fn changed_keys<'a>(old: &'a [(Arc<str>, Arc<str>)], new: &'a [(Arc<str>, Arc<str>)]) -> Vec<&'a str> {
    let mut changed = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                std::cmp::Ordering::Equal => {
                    if ov != nv {
                        changed.push(&**ok);
                    }
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    changed.push(&**ok);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    changed.push(&**nk);
                    j += 1;
                }
            },
            (Some((ok, _)), None) => {
                changed.push(&**ok);
                i += 1;
            }
            (None, Some((nk, _))) => {
                changed.push(&**nk);
                j += 1;
            }
            (None, None) => break,
        }
    }
    changed
}

/// Whether `pod` in namespace `ns_name` (with `ns_labels`) belongs to `group`, and as what.
fn member_state(
    group: &Group,
    ns_name: &str,
    ns_labels: &BTreeMap<String, String>,
    pod: &LeanPod,
) -> Option<MemberState> {
    let expr = group.expr.as_ref().ok()?;
    if pod.terminal {
        return None;
    }
    let namespace_ok = match &group.spec.namespace_selector {
        None => ns_name != SYSTEM_NAMESPACE,
        Some(selector) => selector_matches(selector, ns_labels),
    };
    (namespace_ok && expr.matches(pod)).then(|| MemberState {
        ips: pod.ips.clone(),
        ready: pod.ready,
    })
}

/// Sets `key`'s membership to `state`; whether anything changed.
fn update_member(members: &mut Members, key: &PodKey, state: Option<MemberState>) -> bool {
    match state {
        Some(state) => match members.get_mut(key) {
            Some(current) if *current == state => false,
            Some(current) => {
                *current = state;
                true
            }
            None => {
                members.insert(key.clone(), state);
                true
            }
        },
        None => members.remove(key).is_some(),
    }
}

#[cfg(test)]
mod tests;
