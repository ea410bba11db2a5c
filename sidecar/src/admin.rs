//! The admin port (`15020`): `/live`, `/ready` and `/metrics`, on plain HTTP, separate from the proxy
//! ports so probes and scrapes never queue behind traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `outbound` or `inbound`.
    pub listener: &'static str,
    /// HTTP status sent to the client.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `prompt` or `response`.
    pub direction: &'static str,
    /// `benign` or the category of the strongest detection.
    pub category: &'static str,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `prompt` or `response`.
    pub direction: &'static str,
}

/// Buckets of [`Metrics::scan_seconds`]: 10 µs to about 0.33 s, doubling.
fn scan_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        10e-6, 2.0, 16,
    ))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The sidecar's metrics, all prefixed `airlock_sidecar_`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub verdicts: Family<VerdictLabels, Counter>,
    /// Time the sidecar added to a request: reading, scanning and deciding, upstream time excluded.
    pub added_latency: Histogram,
    /// Engine time per scanned body, by direction: the part of [`Metrics::added_latency`] that detection
    /// takes.
    pub scan_seconds: Family<DirectionLabels, Histogram, fn() -> Histogram>,
    pub limited: Family<ReasonLabels, Counter>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    pub scan_failures: Family<ReasonLabels, Counter>,
    pub reloads: Family<ReasonLabels, Counter>,
    pub open_streams: Gauge,
    pub forwarder_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("airlock_sidecar");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by listener and status",
            requests.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "verdicts",
            "Verdicts, by direction, category and action",
            verdicts.clone(),
        );
        // 25 µs to ~0.8 s.
        let added_latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            25e-6, 2.0, 16,
        ));
        registry.register(
            "added_latency_seconds",
            "Time the sidecar added to a request (reading, scanning, deciding; not upstream time)",
            added_latency.clone(),
        );
        let scan_seconds: Family<DirectionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(scan_histogram);
        registry.register(
            "scan_seconds",
            "Time the detection engine took on one request body or buffered response body, by direction \
             (windows of streamed responses are not included)",
            scan_seconds.clone(),
        );
        let limited = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "limited",
            "Requests refused or flagged by model-DoS limits, by limit",
            limited.clone(),
        );
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures, by kind",
            upstream_errors.clone(),
        );
        let scan_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "scan_failures",
            "Scans that could not finish (timeout, engine failure, undecodable body), by reason",
            scan_failures.clone(),
        );
        let reloads = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads, by result (ok, invalid)",
            reloads.clone(),
        );
        let open_streams = Gauge::default();
        registry.register(
            "open_streams",
            "Streamed responses in flight",
            open_streams.clone(),
        );
        let forwarder_dropped = Gauge::default();
        registry.register(
            "forwarder_dropped_entries",
            "Threat-log entries dropped by forwarders because their buffer was full or delivery failed",
            forwarder_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            verdicts,
            added_latency,
            scan_seconds,
            limited,
            upstream_errors,
            scan_failures,
            reloads,
            open_streams,
            forwarder_dropped,
        }
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Readiness, flipped once the listeners are bound and a policy is loaded.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Binds the admin port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves the admin endpoints until the task is dropped. `refresh` runs before each scrape.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    refresh: Arc<dyn Fn() + Send + Sync>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, ready, refresh) = (metrics.clone(), ready.clone(), refresh.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(req.uri().path(), &metrics, &ready, &*refresh);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    path: &str,
    metrics: &Metrics,
    ready: &Readiness,
    refresh: &(dyn Fn() + Send + Sync),
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/live" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/ready" if ready.get() => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: listeners or policy not loaded yet\n".to_string(),
        ),
        "/metrics" => {
            refresh();
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.encode(),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /live, /ready or /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_answer() {
        let metrics = Metrics::new();
        let ready = Readiness::default();
        let refresh = || {};
        assert_eq!(
            respond("/live", &metrics, &ready, &refresh).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond("/ready", &metrics, &ready, &refresh).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.set(true);
        assert_eq!(
            respond("/ready", &metrics, &ready, &refresh).status(),
            StatusCode::OK
        );
        metrics
            .requests
            .get_or_create(&RequestLabels {
                listener: "outbound",
                code: 200,
            })
            .inc();
        let text = metrics.encode();
        assert!(
            text.contains("airlock_sidecar_requests_total{listener=\"outbound\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("airlock_sidecar_added_latency_seconds"), "{text}");
        assert_eq!(
            respond("/nope", &metrics, &ready, &refresh).status(),
            StatusCode::NOT_FOUND
        );
    }
}
