//! The listeners: accept loops for the outbound and inbound ports, HTTP/1.1 and HTTP/2 with header and
//! idle limits, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{Listener, Proxy};
use crate::routes::Upstream;
use crate::{Error, Result};

/// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list); larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Time a client has to send a complete request head (slow-loris protection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How an inbound connection's upstream is found.
#[derive(Clone, Debug)]
pub struct InboundTarget {
    /// The model server's ports; a connection not redirected (explicit mode, clients dial `airlock-in`)
    /// goes to the first.
    pub ports: Vec<u16>,
}

impl InboundTarget {
    fn upstream(&self, stream: &TcpStream) -> Option<Upstream> {
        let local = stream.local_addr().ok()?;
        let original = crate::init::original_destination(stream).unwrap_or(local);
        let port = if original == local {
            *self.ports.first()?
        } else {
            original.port()
        };
        Upstream::parse("inbound", &format!("http://127.0.0.1:{port}")).ok()
    }
}

/// Binds a proxy port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Serves `listener` until `shutdown` resolves, then lets open connections finish (up to `drain`).
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    kind: Listener,
    inbound: Option<InboundTarget>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let builder = builder();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let upstream = match &inbound {
            Some(target) => match target.upstream(&stream) {
                Some(u) => Some(u),
                None => {
                    tracing::warn!(%peer, "inbound connection without a model-server port; closed");
                    continue;
                }
            },
            None => None,
        };
        let proxy = proxy.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let proxy = proxy.clone();
            let upstream = upstream.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(kind, peer, upstream, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!("connections still open after the drain period; closing"),
    }
}
