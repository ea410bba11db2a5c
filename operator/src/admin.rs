//! The plain-HTTP admin server: `/live`, `/ready` and `/metrics`.
//!
//! `/ready` turns true once the pod, namespace and address-group caches have synced, on every replica:
//! a standby with warm caches is ready to take over, which is what readiness means for it.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::Filter;
use warp::reply::Response;

use crate::cache::Synced;
use crate::metrics::Metrics;

/// The admin routes: `GET /live`, `GET /ready`, `GET /metrics`; anything else is 404.
pub fn routes(
    synced: watch::Receiver<Synced>,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static {
    let live = warp::path!("live").map(|| text(StatusCode::OK, "ok".into()));
    let ready = warp::path!("ready").map(move || {
        let state = *synced.borrow();
        if state.all() {
            text(StatusCode::OK, "ready".into())
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "caches not synced: pods={} namespaces={} groups={}",
                    state.pods, state.namespaces, state.groups
                ),
            )
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
    synced: watch::Receiver<Synced>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tracing::info!(addr = ?listener.local_addr().ok(), "admin server listening");
    warp::serve(routes(synced, metrics))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_waits_for_every_cache() {
        let (tx, rx) = watch::channel(Synced::default());
        let routes = routes(rx, Arc::new(Metrics::new()));
        let res = warp::test::request().path("/ready").reply(&routes).await;
        assert_eq!(res.status(), 503);
        assert!(String::from_utf8_lossy(res.body()).contains("pods=false"));
        tx.send_modify(|s| {
            s.pods = true;
            s.namespaces = true;
        });
        assert_eq!(
            warp::test::request().path("/ready").reply(&routes).await.status(),
            503
        );
        tx.send_modify(|s| s.groups = true);
        assert_eq!(
            warp::test::request().path("/ready").reply(&routes).await.status(),
            200
        );
        assert_eq!(
            warp::test::request().path("/live").reply(&routes).await.status(),
            200
        );
        assert_eq!(
            warp::test::request().path("/nope").reply(&routes).await.status(),
            404
        );
        let metrics = warp::test::request().path("/metrics").reply(&routes).await;
        assert!(String::from_utf8_lossy(metrics.body()).contains("airlock_operator_leader"));
    }
}
