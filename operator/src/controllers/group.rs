//! `DynamicAddressGroup` status: membership from the pod index, written with bounded latency and a
//! bounded number of writes.
//!
//! The index marks a group dirty when a pod joins, leaves or changes IPs or readiness. The writer wakes
//! on a change and starts a write for every dirty group: a group not written for [`DEBOUNCE`] at once
//! (a single label change converges in one round trip), a group written more recently [`DEBOUNCE`] after
//! that write, so the rest of a burst (a rollout) lands in one write per group. Each group's write runs on
//! its own and the spacing is per group: neither a rollout in one namespace nor a slow write of a large
//! status holds back another group's change. A group's status holds the first [`MAX_INLINE_MEMBERS`]
//! members; the rest go to `DynamicAddressGroupShard` objects `<group>-<n>` owned by the group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_crds::conditions;
use airlock_crds::v1alpha1::group::{MAX_INLINE_MEMBERS, SHARD_GROUP_LABEL};
use airlock_crds::v1alpha1::{
    DynamicAddressGroup, DynamicAddressGroupShard, DynamicAddressGroupShardSpec, DynamicAddressGroupStatus,
    Member,
};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::Context;
use crate::index::GroupView;

/// The shortest time between two writes of one group: its changes arriving sooner after a write wait for
/// the next, so a burst lands in one write per group.
pub const DEBOUNCE: Duration = Duration::from_millis(15);
/// Most group writes in flight at once.
const CONCURRENT_WRITES: usize = 16;
/// The field manager of the operator's writes.
pub const FIELD_MANAGER: &str = "airlock-operator";

/// Parameters of the operator's status merge patches: named by [`FIELD_MANAGER`], so `managedFields`
/// says who wrote a status (without a name the API server records `unknown`).
pub fn status_patch() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// What the operator wants a group's status and shards to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The group's status.
    pub status: DynamicAddressGroupStatus,
    /// Members beyond the inline ones, chunked by [`MAX_INLINE_MEMBERS`]; shard n (from 1) is at n-1.
    pub shards: Vec<Vec<Member>>,
}

/// The status (and shards) of `group` given its view in the index, at `now`.
///
/// `view` is `None` when the index has not seen the group yet (the caller then writes nothing).
pub fn desired(group: &DynamicAddressGroup, view: GroupView<'_>, now: Time) -> Desired {
    let generation = group.metadata.generation;
    let mut status = DynamicAddressGroupStatus {
        conditions: group
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        observed_generation: generation,
        ..DynamicAddressGroupStatus::default()
    };
    if let Some(error) = view.expression_error() {
        conditions::set(
            &mut status.conditions,
            conditions::ready(
                false,
                "InvalidExpression",
                format!("spec.match does not parse: {error}"),
                generation,
                now,
            ),
        );
        return Desired {
            status,
            shards: Vec::new(),
        };
    }
    let mut members = view.status_members();
    let count = members.len();
    let rest = if members.len() > MAX_INLINE_MEMBERS {
        members.split_off(MAX_INLINE_MEMBERS)
    } else {
        Vec::new()
    };
    let shards: Vec<Vec<Member>> = rest.chunks(MAX_INLINE_MEMBERS).map(<[Member]>::to_vec).collect();
    status.member_count = i32::try_from(count).unwrap_or(i32::MAX);
    status.members = members;
    status.shards = i32::try_from(shards.len()).unwrap_or(i32::MAX);
    let message = match shards.len() {
        0 => format!("{count} member pods"),
        n => format!("{count} member pods; members beyond the first {MAX_INLINE_MEMBERS} are in {n} shards"),
    };
    conditions::set(
        &mut status.conditions,
        conditions::ready(true, "MembersCurrent", message, generation, now),
    );
    Desired { status, shards }
}

/// Name of shard `index` (from 1) of `group`.
pub fn shard_name(group: &str, index: usize) -> String {
    format!("{group}-{index}")
}

/// The shard object `index` (from 1) of `group` holding `members`.
pub fn shard(group: &DynamicAddressGroup, index: usize, members: Vec<Member>) -> DynamicAddressGroupShard {
    let name = group.name_any();
    let owner = OwnerReference {
        api_version: DynamicAddressGroup::api_version(&()).into_owned(),
        kind: DynamicAddressGroup::kind(&()).into_owned(),
        name: name.clone(),
        uid: group.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    DynamicAddressGroupShard {
        metadata: ObjectMeta {
            name: Some(shard_name(&name, index)),
            labels: Some(
                [
                    (SHARD_GROUP_LABEL.to_owned(), name.clone()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        FIELD_MANAGER.to_owned(),
                    ),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DynamicAddressGroupShardSpec {
            group: name,
            index: i32::try_from(index).unwrap_or(i32::MAX),
            members,
        },
    }
}

/// Whether a status write would change what the API server has (conditions compared without their
/// transition times, which [`conditions::set`] already carries over).
pub fn status_differs(
    current: Option<&DynamicAddressGroupStatus>,
    desired: &DynamicAddressGroupStatus,
) -> bool {
    current != Some(desired)
}

/// A failed write is retried no sooner than this after it failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Writes the status of dirty groups until the operator stops.
///
/// Each group's write is its own task: a slow write (a large status, a busy API server) holds back only
/// later changes of that group, never another group's. A group is written by one write at a time; a
/// change that arrives while it is in flight is written after it, no sooner than [`DEBOUNCE`] after the
/// write began (or [`RETRY_AFTER`] after it failed).
pub async fn run_status_writer(ctx: Arc<Context>) {
    let mut written: HashMap<String, Desired> = HashMap::new();
    // The earliest time each group may be written again: DEBOUNCE after its last write began, or
    // RETRY_AFTER after a failed one.
    let mut not_before: HashMap<String, tokio::time::Instant> = HashMap::new();
    // Dirty groups waiting: for their time, for their write in flight, or for a free write slot.
    let mut held: HashSet<String> = HashSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut writes = futures::stream::FuturesUnordered::new();
    loop {
        // Groups waiting for their own write or for a free slot are woken by a write's completion.
        let due = if writes.len() >= CONCURRENT_WRITES {
            None
        } else {
            held.iter()
                .filter(|name| !in_flight.contains(*name))
                .filter_map(|name| not_before.get(name))
                .min()
                .copied()
        };
        tokio::select! {
            // A notification that arrives while another branch wins is kept by `Notify` for the next wait.
            () = ctx.groups_dirty.notified() => {}
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
            Some((name, outcome)) = writes.next(), if !writes.is_empty() => {
                in_flight.remove(&name);
                match outcome {
                    Some(desired) => {
                        written.insert(name, desired);
                    }
                    None => {
                        not_before.insert(name.clone(), tokio::time::Instant::now() + RETRY_AFTER);
                        held.insert(name);
                    }
                }
            }
        }
        let now = tokio::time::Instant::now();
        let mut candidates = ctx.index_write().take_dirty_groups();
        candidates.extend(held.drain());
        candidates.sort_unstable();
        candidates.dedup();
        if candidates.is_empty() {
            continue;
        }
        let index = ctx.index_read();
        // Forget deleted groups (their deletion does not mark them dirty).
        written.retain(|name, _| index.group(name).is_some());
        not_before.retain(|name, _| index.group(name).is_some() || in_flight.contains(name));
        let stamp = Time(k8s_openapi::jiff::Timestamp::now());
        for name in candidates {
            let waiting = in_flight.contains(&name)
                || writes.len() >= CONCURRENT_WRITES
                || not_before.get(&name).is_some_and(|&at| now < at);
            if waiting {
                held.insert(name);
                continue;
            }
            let cached = ctx
                .stores
                .groups
                .get(&kube::runtime::reflector::ObjectRef::new(&name));
            let (Some(group), Some(view)) = (cached, index.group(&name)) else {
                // Deleted (or not cached yet: its watch event marks it dirty again).
                written.remove(&name);
                not_before.remove(&name);
                continue;
            };
            ctx.metrics.group_size(&name, view.member_count());
            let desired = desired(&group, view, stamp.clone());
            let previous = written.get(&name).cloned();
            not_before.insert(name.clone(), now + DEBOUNCE);
            in_flight.insert(name.clone());
            let ctx = ctx.clone();
            let group = (*group).clone();
            writes.push(async move {
                let started = Instant::now();
                let outcome = match write_group(&ctx, &group, &desired, previous.as_ref()).await {
                    Ok(()) => Some(desired),
                    Err(error) => {
                        ctx.metrics.reconcile_failure("group", error.metric_label());
                        tracing::warn!(group = %name, %error, "writing group status failed; will retry");
                        None
                    }
                };
                ctx.metrics.reconciled("group", started.elapsed());
                (name, outcome)
            });
        }
    }
}

async fn write_group(
    ctx: &Context,
    group: &DynamicAddressGroup,
    desired: &Desired,
    previous: Option<&Desired>,
) -> crate::Result<()> {
    let name = group.name_any();
    let shards: Api<DynamicAddressGroupShard> = Api::all(ctx.client.clone());
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for (i, members) in desired.shards.iter().enumerate() {
        let unchanged = previous.and_then(|p| p.shards.get(i)) == Some(members);
        if !unchanged {
            let object = shard(group, i + 1, members.clone());
            shards
                .patch(&shard_name(&name, i + 1), &apply, &Patch::Apply(&object))
                .await?;
        }
    }
    let had = previous.map(|p| p.shards.len()).unwrap_or_else(|| {
        group
            .status
            .as_ref()
            .map_or(0, |s| usize::try_from(s.shards).unwrap_or(0))
    });
    for index in desired.shards.len() + 1..=had {
        match shards
            .delete(&shard_name(&name, index), &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    let current = previous.map(|p| &p.status).or(group.status.as_ref());
    if status_differs(current, &desired.status) {
        let groups: Api<DynamicAddressGroup> = Api::all(ctx.client.clone());
        let patch = json!({ "status": desired.status });
        groups
            .patch_status(&name, &status_patch(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.status_write("group");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, LeanPod};

    fn group(name: &str, expr: &str) -> DynamicAddressGroup {
        let mut g = DynamicAddressGroup::new(
            name,
            airlock_crds::v1alpha1::DynamicAddressGroupSpec {
                match_expr: expr.into(),
                namespace_selector: None,
            },
        );
        g.metadata.generation = Some(3);
        g.metadata.uid = Some("uid-1".into());
        g
    }

    fn pod(name: &str, ip: u32) -> LeanPod {
        LeanPod {
            name: name.into(),
            labels: Box::new([("app".into(), "x".into())]),
            ips: std::sync::Arc::new([std::net::IpAddr::from(std::net::Ipv4Addr::from(ip))]),
            ready: true,
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

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_small_group_lists_all_members_inline_and_is_ready() {
        let g = group("g", "app = x");
        let mut index = Index::new();
        index.apply_group("g", &g.spec);
        index.apply_pod("ns", pod("a", 0x0a000001));
        let d = desired(&g, index.group("g").unwrap(), now());
        assert_eq!(d.status.member_count, 1);
        assert_eq!(d.status.members[0].ips, ["10.0.0.1"]);
        assert_eq!(d.status.shards, 0);
        assert_eq!(d.status.observed_generation, Some(3));
        assert!(conditions::is_ready(&d.status.conditions));
        assert!(d.shards.is_empty());
    }

    #[test]
    fn ten_thousand_members_are_split_into_shards_of_a_thousand() {
        let g = group("big", "app = x");
        let mut index = Index::new();
        index.apply_group("big", &g.spec);
        for i in 0..10_500u32 {
            index.apply_pod(&format!("ns{}", i % 7), pod(&format!("p{i:05}"), 0x0a000000 + i));
        }
        let d = desired(&g, index.group("big").unwrap(), now());
        assert_eq!(d.status.member_count, 10_500);
        assert_eq!(d.status.members.len(), MAX_INLINE_MEMBERS);
        assert_eq!(d.status.shards, 10);
        assert_eq!(d.shards.len(), 10);
        assert_eq!(d.shards[9].len(), 500);
        assert!(d.shards.iter().all(|s| s.len() <= MAX_INLINE_MEMBERS));
        // Every member appears exactly once, in order, across the status and the shards.
        let all: Vec<&Member> = d.status.members.iter().chain(d.shards.iter().flatten()).collect();
        assert_eq!(all.len(), 10_500);
        assert!(
            all.windows(2)
                .all(|w| (&w[0].namespace, &w[0].name) < (&w[1].namespace, &w[1].name))
        );
        // Each object stays far below the API server's 1.5 MiB request limit.
        let status_bytes = serde_json::to_vec(&d.status).unwrap().len();
        let shard_bytes = serde_json::to_vec(&shard(&g, 1, d.shards[0].clone()))
            .unwrap()
            .len();
        assert!(status_bytes < 256 * 1024, "{status_bytes}");
        assert!(shard_bytes < 256 * 1024, "{shard_bytes}");
    }

    #[test]
    fn a_shard_is_named_labelled_and_owned_by_its_group() {
        let g = group("big", "app = x");
        let s = shard(&g, 2, vec![]);
        assert_eq!(s.metadata.name.as_deref(), Some("big-2"));
        assert_eq!(s.spec.index, 2);
        assert_eq!(s.labels().get(SHARD_GROUP_LABEL).map(String::as_str), Some("big"));
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DynamicAddressGroup", "uid-1")
        );
    }

    #[test]
    fn an_invalid_expression_makes_the_group_not_ready_with_the_parser_message() {
        let g = group("bad", "app = = x");
        let mut index = Index::new();
        index.apply_group("bad", &g.spec);
        let d = desired(&g, index.group("bad").unwrap(), now());
        let ready = conditions::find(&d.status.conditions, conditions::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidExpression")
        );
        assert!(ready.message.contains("column"), "{}", ready.message);
        assert_eq!(d.status.member_count, 0);
    }

    /// Status writes of groups against a mocked API server: the expected calls, in order.
    mod api {
        use std::time::Duration;

        use http::Method;
        use kube::runtime::{reflector, watcher};
        use serde_json::Value;
        use tokio::time::Instant;

        use super::*;
        use crate::fixtures::{self, ApiServer, Call, assert_same_write, sample};

        const STATUS_PATH: &str = "/apis/airlock.dev/v1alpha1/dynamicaddressgroups/g/status";

        /// A writer running against the mock, with group `g` cached and one member pod indexed.
        fn writer_for_group_g() -> (
            Arc<Context>,
            ApiServer,
            tokio::task::JoinHandle<()>,
            DynamicAddressGroup,
        ) {
            writer_for_group_g_caching(&[])
        }

        /// [`writer_for_group_g`], with `others` also cached (not yet indexed).
        fn writer_for_group_g_caching(
            others: &[&DynamicAddressGroup],
        ) -> (
            Arc<Context>,
            ApiServer,
            tokio::task::JoinHandle<()>,
            DynamicAddressGroup,
        ) {
            let (client, api) = fixtures::client();
            let (store, mut cache) = reflector::store();
            let g = group("g", "app = x");
            cache.apply_watcher_event(&watcher::Event::Apply(g.clone()));
            for other in others {
                cache.apply_watcher_event(&watcher::Event::Apply((*other).clone()));
            }
            let ctx = Arc::new(Context::for_tests(client, store));
            {
                let mut index = ctx.index_write();
                index.apply_group("g", &g.spec);
                index.apply_pod("ns", pod("a", 0x0a00_0001));
            }
            ctx.groups_dirty.notify_one();
            let writer = tokio::spawn(run_status_writer(ctx.clone()));
            (ctx, api, writer, g)
        }

        /// The group as the API server returns it after the status patch in `body`.
        fn patched(group: &DynamicAddressGroup, body: &Value) -> Value {
            let mut object = serde_json::to_value(group).unwrap();
            object["status"] = body["status"].clone();
            object
        }

        fn failures(ctx: &Context, reason: &str) -> Option<String> {
            sample(
                &ctx.metrics,
                &format!(
                    "airlock_operator_reconcile_failures_total{{controller=\"group\",reason=\"{reason}\"}}"
                ),
            )
        }

        fn status_writes(ctx: &Context) -> Option<String> {
            sample(
                &ctx.metrics,
                "airlock_operator_status_writes_total{kind=\"group\"}",
            )
        }

        /// The first status write (named by the operator's field manager) gets `fail`; the retry, at least a second later, must carry the same
        /// status and is answered 200; then nothing more is sent. Returns the first write's content type
        /// and body.
        async fn failed_then_retried(
            api: &mut ApiServer,
            g: &DynamicAddressGroup,
            fail: impl FnOnce(Call),
        ) -> (Option<String>, Value) {
            let first = api.expect(Method::PATCH, STATUS_PATH).await;
            assert_eq!(first.query_param("fieldManager"), Some("airlock-operator"));
            let (content_type, sent) = (first.content_type.clone(), first.body.clone());
            fail(first);
            let failed_at = Instant::now();

            let second = api.expect(Method::PATCH, STATUS_PATH).await;
            assert!(
                failed_at.elapsed() >= Duration::from_secs(1),
                "retried without backing off"
            );
            assert_same_write(&second.body, &sent);
            let object = patched(g, &second.body);
            second.ok(&object);

            // Written once it succeeded: nothing more to send.
            api.expect_no_call(Duration::from_secs(30)).await;
            (content_type, sent)
        }

        #[tokio::test(start_paused = true)]
        async fn a_status_write_answered_409_is_counted_and_retried_with_the_same_status() {
            let (ctx, mut api, writer, g) = writer_for_group_g();

            let (content_type, sent) = failed_then_retried(&mut api, &g, Call::conflict).await;
            assert_eq!(content_type.as_deref(), Some("application/merge-patch+json"));
            assert_eq!(sent["status"]["memberCount"], 1);
            assert_eq!(sent["status"]["members"][0]["ips"][0], "10.0.0.1");
            assert_eq!(failures(&ctx, "conflict").as_deref(), Some("1"));
            assert_eq!(status_writes(&ctx).as_deref(), Some("1"));
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_status_write_answered_429_is_counted_as_throttled_and_retried_after_a_pause() {
            let (ctx, mut api, writer, g) = writer_for_group_g();

            failed_then_retried(&mut api, &g, |call| call.throttle(1)).await;
            assert_eq!(failures(&ctx, "throttled").as_deref(), Some("1"));
            assert_eq!(failures(&ctx, "conflict"), None);
            assert_eq!(status_writes(&ctx).as_deref(), Some("1"));
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_write_of_one_group_never_holds_back_another_groups_change() {
            let h = group("h", "app = y");
            let (ctx, mut api, writer, g) = writer_for_group_g_caching(&[&h]);
            let started = Instant::now();
            let first = api.expect(Method::PATCH, STATUS_PATH).await;
            let object = patched(&g, &first.body);
            first.ok(&object);

            // Right after g's write: group h appears with a member, and another pod joins g.
            let mut b = pod("b", 0x0a00_0002);
            b.labels = Box::new([("app".into(), "y".into())]);
            ctx.index_write().apply_group("h", &h.spec);
            ctx.index_write().apply_pod("ns", b);
            ctx.index_write().apply_pod("ns", pod("c", 0x0a00_0003));
            ctx.groups_dirty.notify_one();
            let second = api
                .expect(
                    Method::PATCH,
                    "/apis/airlock.dev/v1alpha1/dynamicaddressgroups/h/status",
                )
                .await;
            assert!(
                started.elapsed() < DEBOUNCE,
                "h waited for g's debounce: {:?}",
                started.elapsed()
            );
            assert_eq!(second.body["status"]["memberCount"], 1);
            let object = patched(&h, &second.body);
            second.ok(&object);
            let third = api.expect(Method::PATCH, STATUS_PATH).await;
            assert!(
                started.elapsed() >= DEBOUNCE,
                "g was written twice within its debounce"
            );
            assert_eq!(third.body["status"]["memberCount"], 2);
            let object = patched(&g, &third.body);
            third.ok(&object);
            api.expect_no_call(Duration::from_secs(30)).await;
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_slow_write_of_one_group_never_holds_back_another_groups_change() {
            let h = group("h", "app = y");
            let (ctx, mut api, writer, g) = writer_for_group_g_caching(&[&h]);
            // g's write is sent and the API server sits on it.
            let slow = api.expect(Method::PATCH, STATUS_PATH).await;
            assert_eq!(slow.body["status"]["memberCount"], 1);

            // Meanwhile group h appears with a member, and another pod joins g.
            let mut b = pod("b", 0x0a00_0002);
            b.labels = Box::new([("app".into(), "y".into())]);
            ctx.index_write().apply_group("h", &h.spec);
            ctx.index_write().apply_pod("ns", b);
            ctx.index_write().apply_pod("ns", pod("c", 0x0a00_0003));
            ctx.groups_dirty.notify_one();
            let other = api
                .expect(
                    Method::PATCH,
                    "/apis/airlock.dev/v1alpha1/dynamicaddressgroups/h/status",
                )
                .await;
            assert_eq!(other.body["status"]["memberCount"], 1);
            let object = patched(&h, &other.body);
            other.ok(&object);
            // g is written by one write at a time: its new member waits for the slow write's answer.
            api.expect_no_call(Duration::from_secs(5)).await;
            let object = patched(&g, &slow.body);
            slow.ok(&object);

            let next = api.expect(Method::PATCH, STATUS_PATH).await;
            assert_eq!(next.body["status"]["memberCount"], 2);
            let object = patched(&g, &next.body);
            next.ok(&object);
            api.expect_no_call(Duration::from_secs(30)).await;
            assert_eq!(status_writes(&ctx).as_deref(), Some("3"));
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_change_after_a_quiet_spell_is_written_at_once_and_a_burst_in_one_write() {
            let (ctx, mut api, writer, g) = writer_for_group_g();
            let started = Instant::now();
            let first = api.expect(Method::PATCH, STATUS_PATH).await;
            assert!(
                started.elapsed() < DEBOUNCE,
                "a lone change waited for the debounce"
            );
            assert_eq!(first.body["status"]["memberCount"], 1);
            let object = patched(&g, &first.body);
            first.ok(&object);

            // A rollout right after: ten pods join one after another.
            for i in 0..10u32 {
                ctx.index_write()
                    .apply_pod("ns", pod(&format!("b{i}"), 0x0a00_0010 + i));
                ctx.groups_dirty.notify_one();
            }
            let second = api.expect(Method::PATCH, STATUS_PATH).await;
            assert!(started.elapsed() >= DEBOUNCE, "the burst was not held back");
            assert_eq!(
                second.body["status"]["memberCount"], 11,
                "one write carries the burst"
            );
            let object = patched(&g, &second.body);
            second.ok(&object);

            api.expect_no_call(Duration::from_secs(30)).await;
            assert_eq!(status_writes(&ctx).as_deref(), Some("2"));
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_member_that_joins_after_a_failed_write_is_in_the_next_write() {
            let (ctx, mut api, writer, g) = writer_for_group_g();

            let first = api.expect(Method::PATCH, STATUS_PATH).await;
            assert_eq!(first.body["status"]["memberCount"], 1);
            first.conflict();
            // The pod watch indexes a second member before the retry.
            ctx.index_write().apply_pod("ns", pod("b", 0x0a00_0002));
            ctx.groups_dirty.notify_one();

            let second = api.expect(Method::PATCH, STATUS_PATH).await;
            assert_eq!(second.body["status"]["memberCount"], 2);
            let object = patched(&g, &second.body);
            second.ok(&object);

            api.expect_no_call(Duration::from_secs(30)).await;
            assert_eq!(failures(&ctx, "conflict").as_deref(), Some("1"));
            writer.abort();
        }
    }

    #[test]
    fn an_unchanged_membership_needs_no_write() {
        let mut g = group("g", "app = x");
        let mut index = Index::new();
        index.apply_group("g", &g.spec);
        index.apply_pod("ns", pod("a", 1));
        let first = desired(&g, index.group("g").unwrap(), now());
        g.status = Some(first.status.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(60).unwrap());
        let second = desired(&g, index.group("g").unwrap(), later);
        assert!(!status_differs(g.status.as_ref(), &second.status));
    }
}
