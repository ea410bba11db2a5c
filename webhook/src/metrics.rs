//! The webhook's Prometheus metrics: one registry, served as text by the admin server.
//!
//! Names (all prefixed `airlock_webhook_`):
//! - `requests_total{route,verdict}`: admission requests answered, by route and the handler's verdict
//!   (`allowed`, `patched`, `denied`, `warned`, `invalid`), or `rejected` for bodies refused unread;
//! - `request_duration_seconds{route}`: time from the request's arrival to its reply, body read included;
//! - `certificate_reloads_total{result}`: certificate reloads that were applied (`success`) or refused
//!   (`error`, the old pair kept serving);
//! - `body_rejections_total{reason}`: bodies refused before reaching the handler (`too_large`, `timeout`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::review::Route;

/// Latency buckets from 100 µs to 2.5 s: the API server's own webhook timeout is 10 s at most and
/// our targets are in the low milliseconds, so the resolution sits there.
const DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a request body was refused before it reached the review handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRejection {
    /// Larger than the configured limit (413).
    TooLarge,
    /// Not fully received within the configured time (408).
    Timeout,
}

impl BodyRejection {
    fn label(self) -> &'static str {
        match self {
            BodyRejection::TooLarge => "too_large",
            BodyRejection::Timeout => "timeout",
        }
    }
}

/// The low-cardinality label of a route.
pub fn route_label(route: Route) -> &'static str {
    match route {
        Route::Mutate => "mutate",
        Route::Validate => "validate",
    }
}

/// All of the webhook's metrics and the registry they are served from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ResultLabels, Counter>,
    body_rejections: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry holding every webhook metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("airlock_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let reloads = Family::<ResultLabels, Counter>::default();
        let body_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests answered, by route and verdict",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer an admission request, body read included",
            duration.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving-certificate reloads, by result (error: the previous pair kept serving)",
            reloads.clone(),
        );
        registry.register(
            "body_rejections",
            "Request bodies refused before review, by reason",
            body_rejections.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            reloads,
            body_rejections,
        }
    }

    /// Records one answered admission request.
    pub fn observe_request(&self, route: Route, verdict: &'static str, elapsed: Duration) {
        let route = route_label(route);
        self.requests
            .get_or_create(&RequestLabels { route, verdict })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a refused request body.
    pub fn body_rejected(&self, why: BodyRejection) {
        self.body_rejections
            .get_or_create(&ReasonLabels { reason: why.label() })
            .inc();
    }

    /// Records a certificate reload attempt that found changed files.
    pub fn certificate_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
