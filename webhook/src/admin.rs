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
    let live = warp::path!("live").map(|| text(StatusCode::OK, "ok".into()));
    let ready = warp::path!("ready").map(move || {
        if readiness.is_ready() {
            text(StatusCode::OK, "ready".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "caches not synced".into())
        }
    });
    let metrics = warp::path!("metrics").map(move || match metrics.encode() {
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
