//! A stub LLM upstream that speaks the APIs the sidecar understands, for tests, the demo and the
//! benchmark. The answer echoes the request: a last user message `ECHO:<text>` is answered with
//! `<text>`, anything else with a fixed greeting; the header `x-stub-answer` sets the answer outright. Streams (`"stream": true`, Ollama by default) send
//! the answer in deltas of `x-stub-chunk` bytes (default 8). `GET /_last` returns the last request
//! (headers and body) as JSON.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What the stub saw last.
#[derive(Clone, Debug, Default)]
pub struct Last {
    pub path: String,
    /// The HTTP version, e.g. `HTTP/2.0`.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// Starts the stub on `addr` (port 0 for any); returns its address.
pub async fn start(addr: SocketAddr) -> (SocketAddr, Arc<Mutex<Last>>) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind stub");
    let local = listener.local_addr().expect("stub addr");
    let last = Arc::new(Mutex::new(Last::default()));
    let shared = last.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let last = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, last.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (local, last)
}

/// Starts the stub over TLS with `config` (its ALPN protocols choose HTTP/1.1 or HTTP/2).
pub async fn start_tls(
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> (SocketAddr, Arc<Mutex<Last>>) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind stub");
    let local = listener.local_addr().expect("stub addr");
    let last = Arc::new(Mutex::new(Last::default()));
    let shared = last.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (last, acceptor) = (shared.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| handle(req, last.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (local, last)
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).map_err(|never| match never {}).boxed())
        .expect("response")
}

fn streamed(content_type: &str, frames: Vec<String>, abort: bool) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        for f in frames {
            if tx.send(Ok(Bytes::from(f))).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        if abort {
            let _ = tx
                .send(Err(std::io::Error::other("stub aborts the stream")))
                .await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b.map(Frame::data), rx))
    });
    Response::builder()
        .header("content-type", content_type)
        .body(StreamBody::new(stream).boxed())
        .expect("response")
}

fn last_user_text(body: &Value) -> String {
    let from_messages = body.get("messages").and_then(Value::as_array).and_then(|m| {
        m.iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect(),
                _ => String::new(),
            })
    });
    from_messages
        .or_else(|| body.get("prompt").and_then(Value::as_str).map(str::to_string))
        .or_else(|| body.get("inputs").and_then(Value::as_str).map(str::to_string))
        .or_else(|| body.get("input").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn answer_for(body: &Value) -> String {
    let text = last_user_text(body);
    match text.find("ECHO:") {
        Some(i) => text[i + 5..].to_string(),
        None => "Hello! The capital of France is Paris.".to_string(),
    }
}

fn chunks(text: &str, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if cur.len() >= size {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn handle(req: Request<Incoming>, last: Arc<Mutex<Last>>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let version = format!("{:?}", req.version());
    if path == "/_last" {
        let l = last.lock().map(|l| l.clone()).unwrap_or_default();
        let v = json!({"path": l.path, "headers": l.headers, "body": l.body});
        return Ok(full(200, "application/json", v.to_string()));
    }
    let abort = req.headers().contains_key("x-stub-abort");
    let unterminated = req.headers().contains_key("x-stub-unterminated");
    let forced = req
        .headers()
        .get("x-stub-answer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let chunk: usize = req
        .headers()
        .get("x-stub-chunk")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Ok(mut l) = last.lock() {
        *l = Last {
            path: path.clone(),
            version,
            headers,
            body: body.clone(),
        };
    }
    let answer = forced.unwrap_or_else(|| answer_for(&body));
    let stream = body.get("stream").and_then(Value::as_bool);
    let resp = match path.as_str() {
        "/v1/chat/completions" if stream == Some(true) => {
            let mut frames: Vec<String> = chunks(&answer, chunk)
                .into_iter()
                .map(|c| format!("data: {}\n\n", json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c}}]})))
                .collect();
            if !abort {
                frames.push("data: [DONE]\n\n".into());
            }
            streamed("text/event-stream", frames, abort)
        }
        "/v1/chat/completions" => full(
            200,
            "application/json",
            json!({"id": "c1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
            .to_string(),
        ),
        "/v1/completions" => full(200, "application/json", json!({"choices": [{"text": answer}]}).to_string()),
        "/v1/embeddings" => full(200, "application/json", json!({"data": [{"embedding": [0.1, 0.2]}]}).to_string()),
        "/v1/responses" => full(
            200,
            "application/json",
            json!({"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}]}).to_string(),
        ),
        "/v1/messages" if stream == Some(true) => {
            let mut frames = vec![format!("event: message_start\ndata: {}\n\n", json!({"type": "message_start", "message": {"id": "m1", "content": []}}))];
            for c in chunks(&answer, chunk) {
                frames.push(format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}})));
            }
            frames.push(format!("event: message_stop\ndata: {}\n\n", json!({"type": "message_stop"})));
            streamed("text/event-stream", frames, false)
        }
        "/v1/messages" => full(200, "application/json", json!({"id": "m1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": answer}]}).to_string()),
        "/api/chat" | "/api/generate" if stream != Some(false) => {
            let chat = path == "/api/chat";
            let mut frames: Vec<String> = chunks(&answer, chunk)
                .into_iter()
                .map(|c| {
                    let v = if chat { json!({"model": "llama", "message": {"role": "assistant", "content": c}, "done": false}) } else { json!({"model": "llama", "response": c, "done": false}) };
                    format!("{v}\n")
                })
                .collect();
            frames.push(format!("{}\n", json!({"model": "llama", "done": true})));
            if unterminated && let Some(last) = frames.last_mut() {
                last.pop();
            }
            streamed("application/x-ndjson", frames, false)
        }
        "/api/chat" => full(200, "application/json", json!({"model": "llama", "message": {"role": "assistant", "content": answer}, "done": true}).to_string()),
        "/api/generate" => full(200, "application/json", json!({"model": "llama", "response": answer, "done": true}).to_string()),
        "/generate" => full(200, "application/json", json!({"generated_text": answer}).to_string()),
        "/_garbage" => full(200, "application/json", "{not json at all"),
        _ => full(404, "application/json", json!({"error": "not found"}).to_string()),
    };
    Ok(resp)
}
