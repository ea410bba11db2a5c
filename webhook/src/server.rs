//! The HTTPS admission server: warp routes for `/mutate` and `/validate`, and the accept loop that puts
//! them behind TLS.
//!
//! warp 0.4 serves only plain listeners, so connections go TCP → [`tokio_rustls::TlsAcceptor`] (with a
//! handshake deadline) → hyper-util's auto builder (HTTP/2 or HTTP/1.1 as ALPN chose) → `warp::service`.
//! Bodies are read as a stream with a hard size limit and a deadline, so neither a huge nor a trickling
//! body can hold memory or a connection: `Content-Length` alone proves nothing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use warp::Filter;
use warp::reply::Response;

use crate::Result;
use crate::metrics::{BodyRejection, Metrics};
use crate::review::{self, ClusterView, Route};
use crate::tls::ReloadingCert;

/// An UPDATE review carries the old and the new object; 8 MiB leaves room for the largest objects etcd
/// accepts (1.5 MiB each) with JSON overhead to spare.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// How the admission server treats connections and bodies.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body accepted; larger ones get 413 as soon as the limit is crossed.
    pub max_body_bytes: u64,
    /// Time allowed for a request's headers and, separately, for its whole body (408 when exceeded).
    pub request_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// How often the certificate files are checked for a new pair.
    pub cert_reload_interval: Duration,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_timeout: Duration,
    /// Where requests, body rejections and certificate reloads are counted.
    pub metrics: Arc<Metrics>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            cert_reload_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(25),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// The admission routes: `POST /mutate` and `POST /validate`; anything else is 404.
pub fn routes(
    view: Arc<dyn ClusterView>,
    metrics: Arc<Metrics>,
    max_body_bytes: u64,
    body_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let route = warp::path!("mutate")
        .map(|| Route::Mutate)
        .or(warp::path!("validate").map(|| Route::Validate))
        .unify();
    let context = warp::any().map(move || (view.clone(), metrics.clone()));
    let review = warp::post()
        .and(route)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(context)
        .then(
            move |route, length, body, (view, metrics): (Arc<dyn ClusterView>, Arc<Metrics>)| {
                answer(route, length, body, view, metrics, max_body_bytes, body_timeout)
            },
        );
    let not_found = warp::any().map(|| status_reply(StatusCode::NOT_FOUND, "not found"));
    review.or(not_found).unify()
}

async fn answer<S, B>(
    route: Route,
    content_length: Option<u64>,
    body: S,
    view: Arc<dyn ClusterView>,
    metrics: Arc<Metrics>,
    max_body_bytes: u64,
    body_timeout: Duration,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let started = Instant::now();
    let read = async {
        // An honest Content-Length over the limit is refused without reading a byte.
        if content_length.is_some_and(|n| n > max_body_bytes) {
            return Err(BodyError::TooLarge);
        }
        read_limited(body, content_length, max_body_bytes).await
    };
    let body = match tokio::time::timeout(body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            return refuse(
                &metrics,
                route,
                started,
                BodyRejection::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
            );
        }
        Err(_) => {
            return refuse(
                &metrics,
                route,
                started,
                BodyRejection::Timeout,
                StatusCode::REQUEST_TIMEOUT,
            );
        }
        Ok(Err(BodyError::Read(error))) => {
            tracing::debug!(%error, "request body could not be read");
            metrics.observe_request(route, "rejected", started.elapsed());
            return closing(status_reply(StatusCode::BAD_REQUEST, "unreadable request body"));
        }
    };
    let reply = review::handle(route, &body, view.as_ref());
    metrics.observe_request(route, reply.verdict, started.elapsed());
    let mut response = Response::new(reply.body.into());
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

enum BodyError {
    TooLarge,
    Read(warp::Error),
}

async fn read_limited<S, B>(body: S, content_length: Option<u64>, limit: u64) -> Result<Vec<u8>, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    // Trust the header for the allocation only up to the limit.
    let capacity = content_length.unwrap_or(0).min(limit);
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if (out.len() + chunk.remaining()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        out.put(chunk);
    }
    Ok(out)
}

fn refuse(
    metrics: &Metrics,
    route: Route,
    started: Instant,
    why: BodyRejection,
    status: StatusCode,
) -> Response {
    tracing::info!(route = crate::metrics::route_label(route), reason = ?why, "request body refused");
    metrics.body_rejected(why);
    metrics.observe_request(route, "rejected", started.elapsed());
    let message = match why {
        BodyRejection::TooLarge => "request body too large",
        BodyRejection::Timeout => "request body not received in time",
    };
    closing(status_reply(status, message))
}

/// The rest of an unread body is not worth draining: HTTP/1.1 connections end after this reply.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn status_reply(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serves the admission routes over TLS on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish for up to `opts.shutdown_timeout`, and returns.
///
/// Also polls `tls`'s files every `opts.cert_reload_interval` while it runs.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ReloadingCert>,
    view: Arc<dyn ClusterView>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let filter = routes(
        view,
        opts.metrics.clone(),
        opts.max_body_bytes,
        opts.request_timeout,
    );
    serve_filter(listener, tls, filter, opts, shutdown).await
}

/// [`serve`] with any warp filter in place of the admission routes: the same TLS accept loop, HTTP
/// settings, certificate reload and graceful shutdown. The webhook benchmark's bare baseline uses it, so
/// the comparison isolates what admission itself costs.
pub async fn serve_filter<F>(
    listener: TcpListener,
    tls: Arc<ReloadingCert>,
    filter: F,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(tls.server_config()?));
    let reloader = AbortOnDrop(tokio::spawn(
        tls.clone().watch(opts.cert_reload_interval, opts.metrics.clone()),
    ));

    let service = TowerToHyperService::new(warp::service(filter));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.request_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::info!(addr = ?listener.local_addr().ok(), "admission server listening");
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Per-connection failures (aborted connections, descriptor exhaustion) must not end
                    // the server; a short pause keeps descriptor exhaustion from spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // Taken before the handshake, so shutdown also waits for (bounded) handshakes in progress.
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let handshake_timeout = opts.handshake_timeout;
        connections.spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    drop(reloader);
    tracing::info!(connections = graceful.count(), "admission server draining");
    let drained = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(opts.shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?opts.shutdown_timeout, "connections still open at shutdown; closing them");
    }
    Ok(())
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Bind { addr, source })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
