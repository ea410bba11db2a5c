//! The operator's Prometheus metrics: one registry, served as text by the admin server.
//!
//! Names (all prefixed `airlock_operator_`):
//! - `reconciles_total{controller}` and `reconcile_duration_seconds{controller}`: passes of each
//!   controller (`profile`, `instance`, `group`, `webhooks`, `certificates`);
//! - `reconcile_failures_total{controller,reason}`: failed passes by the error's short label
//!   (`conflict`, `throttled`, `kube`, …);
//! - `status_writes_total{kind}`: status writes actually sent (unchanged statuses are not written);
//! - `watch_restarts_total{resource}`: watch errors after which the watcher backed off and resumed;
//! - `queue_depth{controller}`: work waiting (dirty address groups);
//! - `group_members{group}`: members per address group;
//! - `cached_pods`: pods in the lean index;
//! - `webhook_configuration_repairs_total{configuration,reason}`: drifted webhook configurations, and
//!   the backstop's binding (`airlock-backstop`), restored (`missing`, `changed`);
//! - `certificate_rotations_total{action}`: certificate changes (`create`, `renew_serving`, `rotate_ca`,
//!   `drop_old_ca`);
//! - `leader`: 1 while this replica holds the leader lease.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabels {
    configuration: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// All of the operator's metrics and the registry they are served from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    failures: Family<FailureLabels, Counter>,
    status_writes: Family<KindLabels, Counter>,
    watch_restarts: Family<ResourceLabels, Counter>,
    queue_depth: Family<ControllerLabels, Gauge>,
    group_members: Family<GroupLabels, Gauge>,
    cached_pods: Gauge<i64, std::sync::atomic::AtomicI64>,
    repairs: Family<RepairLabels, Counter>,
    rotations: Family<ActionLabels, Counter<u64, AtomicU64>>,
    leader: Gauge,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("airlock_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconcile passes by controller", reconciles.clone());
        let duration = Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in a reconcile pass, by controller",
            duration.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconcile passes by controller and reason",
            failures.clone(),
        );
        let status_writes = Family::<KindLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status writes sent to the API server, by kind",
            status_writes.clone(),
        );
        let watch_restarts = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watch errors after which the watch backed off and resumed, by resource",
            watch_restarts.clone(),
        );
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Work items waiting, by controller",
            queue_depth.clone(),
        );
        let group_members = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "group_members",
            "Members per address group",
            group_members.clone(),
        );
        let cached_pods = Gauge::default();
        registry.register("cached_pods", "Pods held in the lean index", cached_pods.clone());
        let repairs = Family::<RepairLabels, Counter>::default();
        registry.register(
            "webhook_configuration_repairs",
            "Drifted webhook configurations and backstop binding restored, by configuration and reason",
            repairs.clone(),
        );
        let rotations = Family::<ActionLabels, Counter>::default();
        registry.register(
            "certificate_rotations",
            "Webhook certificate changes, by action",
            rotations.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            duration,
            failures,
            status_writes,
            watch_restarts,
            queue_depth,
            group_members,
            cached_pods,
            repairs,
            rotations,
            leader,
        }
    }

    /// Records a finished reconcile pass of `controller`.
    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records a failed reconcile pass.
    pub fn reconcile_failure(&self, controller: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, reason })
            .inc();
    }

    /// Records a status write.
    pub fn status_write(&self, kind: &'static str) {
        self.status_writes.get_or_create(&KindLabels { kind }).inc();
    }

    /// Records a watch restart.
    pub fn watch_restart(&self, resource: &'static str) {
        self.watch_restarts
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    /// Sets the queue depth of `controller`.
    pub fn queue_depth(&self, controller: &'static str, depth: usize) {
        self.queue_depth
            .get_or_create(&ControllerLabels { controller })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Sets the member count of `group`.
    pub fn group_size(&self, group: &str, members: usize) {
        self.group_members
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .set(i64::try_from(members).unwrap_or(i64::MAX));
    }

    /// Forgets a deleted group's gauge.
    pub fn forget_group(&self, group: &str) {
        self.group_members.remove(&GroupLabels {
            group: group.to_owned(),
        });
    }

    /// Sets the number of cached pods.
    pub fn cached_pods(&self, pods: usize) {
        self.cached_pods.set(i64::try_from(pods).unwrap_or(i64::MAX));
    }

    /// Records a restored webhook configuration.
    pub fn webhook_repair(&self, configuration: &str, reason: &'static str) {
        self.repairs
            .get_or_create(&RepairLabels {
                configuration: configuration.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records a certificate change.
    pub fn certificate_rotation(&self, action: &'static str) {
        self.rotations.get_or_create(&ActionLabels { action }).inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_figures_appear_in_the_text_output() {
        let m = Metrics::new();
        m.reconciled("group", Duration::from_millis(3));
        m.reconcile_failure("instance", "conflict");
        m.watch_restart("pods");
        m.group_size("chat", 7);
        m.webhook_repair("airlock-validator", "missing");
        m.set_leader(true);
        let text = m.encode().unwrap();
        for needle in [
            "airlock_operator_reconciles_total{controller=\"group\"} 1",
            "airlock_operator_reconcile_failures_total{controller=\"instance\",reason=\"conflict\"} 1",
            "airlock_operator_watch_restarts_total{resource=\"pods\"} 1",
            "airlock_operator_group_members{group=\"chat\"} 7",
            "airlock_operator_webhook_configuration_repairs_total{configuration=\"airlock-validator\",reason=\"missing\"} 1",
            "airlock_operator_leader 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
