//! A mocked API server for controller tests (built only for tests).
//!
//! A test hands [`client`]'s `Client` to the code under test and then states, in order, the calls it
//! expects with [`ApiServer::expect`], answering each one: a success, a conflict, a throttle. Anything
//! else the code sends fails the test, so each test pins one expected call sequence.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};

/// How long (in the test's clock, usually paused) a call may take to arrive before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The test's side of the mocked API server.
pub struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
}

/// A `Client` whose requests go to the returned [`ApiServer`].
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// One request the code under test sent, waiting for its answer.
pub struct Call {
    /// The request's JSON body (`Null` when it had none).
    pub body: Value,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its query string, e.g. `fieldManager=airlock-operator`.
    query: Option<String>,
    respond: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// Waits for the next request and asserts it is `method path` (the query string is not compared).
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let (request, respond) = tokio::time::timeout(CALL_TIMEOUT, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("expected {method} {path}, but no call came"))
            .expect("the client is gone");
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "unexpected call {}",
            request.uri()
        );
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let query = request.uri().query().map(str::to_owned);
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Call {
            body,
            content_type,
            query,
            respond,
        }
    }

    /// Asserts the code sends nothing more within `quiet`.
    pub async fn expect_no_call(&mut self, quiet: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(quiet, self.handle.next_request()).await {
            panic!("unexpected call {} {}", request.method(), request.uri());
        }
    }
}

impl Call {
    /// The value of query parameter `key`, if the request has it.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    }

    /// Answers `code` with `object` as the body.
    pub fn respond(self, code: StatusCode, object: &Value) {
        let response = Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(object).expect("JSON")))
            .expect("response");
        self.respond.send_response(response);
    }

    /// Answers 200 with `object`.
    pub fn ok(self, object: &Value) {
        self.respond(StatusCode::OK, object);
    }

    /// Answers 409 Conflict, as the API server does when the object changed underneath the writer.
    pub fn conflict(self) {
        let status = failure(
            StatusCode::CONFLICT,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to \
             the latest version and try again",
        );
        self.respond(StatusCode::CONFLICT, &status);
    }

    /// Answers 429 Too Many Requests with `Retry-After: <seconds>`, as API priority and fairness does.
    pub fn throttle(self, retry_after_seconds: u64) {
        let status = failure(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        let response = Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::RETRY_AFTER, retry_after_seconds.to_string())
            .body(Body::from(serde_json::to_vec(&status).expect("JSON")))
            .expect("response");
        self.respond.send_response(response);
    }
}

/// A `metav1.Status` failure as the API server sends it.
fn failure(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

/// Asserts a retried write carries what the failed one did, `lastTransitionTime`s aside.
pub fn assert_same_write(retried: &Value, failed: &Value) {
    assert_eq!(
        without_transition_times(retried),
        without_transition_times(failed),
        "the retry must write what the failed write did"
    );
}

/// `value` with every `lastTransitionTime` removed: a retried write recomputes its conditions, and
/// their times (whole seconds of the wall clock) may tick between attempts.
fn without_transition_times(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "lastTransitionTime")
                .map(|(key, v)| (key.clone(), without_transition_times(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_transition_times).collect()),
        other => other.clone(),
    }
}

/// The value of the sample `series` (a name with its labels, e.g. `name{a="b"}`), if it was recorded.
pub fn sample(metrics: &crate::metrics::Metrics, series: &str) -> Option<String> {
    metrics
        .encode()
        .expect("metrics encode")
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}
