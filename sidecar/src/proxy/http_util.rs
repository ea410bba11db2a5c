//! HTTP plumbing for the proxy: bounded body reads, hop-by-hop headers, error bodies, streamed bodies.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame};
use serde_json::{Value, json};

use crate::routes::Upstream;
use crate::stream::Framing;

/// Error type of response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Timeout,
    Body(BodyError),
}

/// Reads a whole body, refusing more than `limit` bytes (also when `Content-Length` announces more)
/// and giving up after `timeout` (slow-loris clients, stalled upstreams).
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Send + Unpin,
    B::Error: Into<BodyError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ReadError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ReadError::TooLarge)
            } else {
                Err(ReadError::Body(e))
            }
        }
    }
}

/// As header names, not strings: removing by a string parses it again on every request.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The request to send upstream: the client's method and headers (credentials included, never
/// logged), minus hop-by-hop headers, with the upstream's host, an identity encoding and the
/// (possibly rewritten) body.
pub fn upstream_request(
    parts: &Parts,
    upstream: &Upstream,
    path_and_query: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let uri = upstream.uri(path_and_query)?;
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers.clone();
        strip_hop_by_hop(headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Ok(host) = HeaderValue::from_str(upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        if !body.is_empty() || parts.method == http::Method::POST {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
    }
    builder.body(Full::new(body))
}

/// A body from bytes.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The upstream's body, passed through untouched.
pub fn passthrough(body: hyper::body::Incoming) -> ProxyBody {
    body.map_err(|e| Box::new(e) as BodyError).boxed()
}

/// A body fed through a channel, for streamed responses.
pub fn channel_body(depth: usize) -> (tokio::sync::mpsc::Sender<Result<Bytes, BodyError>>, ProxyBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(depth);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}

/// The DESIGN.md error object.
pub fn error_body(kind: &str, code: &str, message: &str, report_id: Option<&str>) -> Value {
    let mut error = json!({"type": kind, "code": code, "message": message});
    if let Some(id) = report_id {
        error["report_id"] = id.into();
    }
    json!({ "error": error })
}

/// A JSON error response.
pub fn json_error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
    report_id: Option<&str>,
) -> Response<ProxyBody> {
    let body = error_body(kind, code, message, report_id).to_string();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The frame that ends a stream with an error: an SSE `error` event or an NDJSON line.
pub fn stream_error_frame(framing: Framing, body: &Value) -> Bytes {
    match framing {
        Framing::Sse => Bytes::from(format!("event: error\ndata: {body}\n\n")),
        Framing::Ndjson => Bytes::from(format!("{body}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::AUTHORIZATION));
    }

    #[tokio::test]
    async fn bounded_reads() {
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        assert!(matches!(
            read_body(body, 10, Duration::from_secs(1)).await,
            Err(ReadError::TooLarge)
        ));
        let body = Full::new(Bytes::from_static(b"ok"));
        assert_eq!(read_body(body, 10, Duration::from_secs(1)).await.unwrap(), "ok");
    }

    #[test]
    fn error_frames() {
        let body = error_body("airlock_blocked", "injection", "no", Some("r"));
        assert_eq!(
            stream_error_frame(Framing::Sse, &body),
            format!("event: error\ndata: {body}\n\n")
        );
        assert_eq!(body["error"]["report_id"], "r");
    }
}
