//! The plain-HTTP admin server: `/live`, `/ready` and `/metrics`, on a port of its own so probes and
//! scrapes need no TLS and never compete with admission traffic.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::Response;

use crate::metrics::Metrics;

/// Whether the webhook may receive admission traffic: set once its caches have synced.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the webhook ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the webhook is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The admin routes: `GET /live`, `GET /ready`, `GET /metrics`; anything else is 404.
pub fn routes(
    readiness: Readiness,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static {
    generic_routes(
        move || {
            readiness
                .is_ready()
                .then_some(())
                .ok_or_else(|| "caches not synced".to_owned())
        },
        move || metrics.encode(),
    )
}

/// The admin routes of any Airlock process: `GET /live`; `GET /ready`, 200 when `ready` returns `Ok`,
/// else 503 with its message; `GET /metrics`, what `metrics` encodes in the OpenMetrics text format.
/// Anything else is 404. The operator serves the same surface.
pub fn generic_routes<R, M>(
    ready: R,
    metrics: M,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
where
    R: Fn() -> Result<(), String> + Clone + Send + Sync + 'static,
    M: Fn() -> Result<String, std::fmt::Error> + Clone + Send + Sync + 'static,
{
    let live = warp::path!("live").map(|| text(StatusCode::OK, "ok".into()));
    let ready = warp::path!("ready").map(move || match ready() {
        Ok(()) => text(StatusCode::OK, "ready".into()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
    });
    let metrics = warp::path!("metrics").map(move || match metrics() {
        Ok(body) => {
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed".into(),
        ),
    });
    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found".into()));
    warp::get()
        .and(live.or(ready).unify().or(metrics).unify())
        .or(not_found)
        .unify()
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tracing::info!(addr = ?listener.local_addr().ok(), "admin server listening");
    warp::serve(routes(readiness, metrics))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
