//! The plain-HTTP admin server: `/live`, `/ready` and `/metrics`.
//!
//! `/ready` turns true once the pod, namespace and address-group caches have synced, on every replica:
//! a standby with warm caches is ready to take over, which is what readiness means for it.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::Filter;
use warp::reply::Response;

use crate::cache::Synced;
use crate::metrics::Metrics;

/// The admin routes (the webhook's surface, `airlock_webhook::admin::generic_routes`): `/ready` says which
/// caches have not synced yet.
pub fn routes(
    synced: watch::Receiver<Synced>,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static {
    airlock_webhook::admin::generic_routes(
        move || {
            let state = *synced.borrow();
            if state.all() {
                Ok(())
            } else {
                Err(format!(
                    "caches not synced: pods={} namespaces={} groups={}",
                    state.pods, state.namespaces, state.groups
                ))
            }
        },
        move || metrics.encode(),
    )
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
