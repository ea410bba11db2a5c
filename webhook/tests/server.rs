//! The admission server over real sockets: TLS, HTTP/1.1 and HTTP/2, body limits, certificate rotation,
//! the admin port and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock_webhook::ServeOptions;
use airlock_webhook::tls::ReloadingCert;
use common::{Ca, TestServer, pod_review, raw_tls, test_options};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

fn review_uid(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(value["kind"], "AdmissionReview", "{value}");
    value["response"]["uid"].as_str().unwrap().to_string()
}

async fn metrics_text(server: &TestServer) -> String {
    reqwest::get(server.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn validate_and_mutate_answer_reviews_over_https() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let client = common::client_builder(&ca).http1_only().build().unwrap();
    for path in ["/validate", "/mutate"] {
        let response = client
            .post(server.url(path))
            .body(pod_review("uid-1", 0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(review_uid(&response.bytes().await.unwrap()), "uid-1");
    }
}

#[tokio::test]
async fn http2_is_negotiated_through_alpn() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let response = ca
        .client()
        .post(server.url("/validate"))
        .body(pod_review("uid-2", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(review_uid(&response.bytes().await.unwrap()), "uid-2");
}

#[tokio::test]
async fn other_paths_and_methods_are_not_found() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let client = ca.client();
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/mutate/x"),
        ("GET", "/validate"),
        ("PUT", "/mutate"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_quickly_and_one_under_it_is_reviewed() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let client = ca.client();

    let started = Instant::now();
    let response = client
        .post(server.url("/validate"))
        .body(vec![b' '; 9 * MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Without Content-Length only the streaming limit can notice.
    let chunks = (0..9)
        .map(|_| Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![b' '; MIB]))));
    let body = reqwest::Body::wrap(http_body_util::StreamBody::new(futures::stream::iter(chunks)));
    let response = client
        .post(server.url("/validate"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let review = pod_review("uid-big", 7 * MIB);
    assert!(review.len() > 7 * MIB && review.len() < 8 * MIB);
    let response = client
        .post(server.url("/mutate"))
        .body(review)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(review_uid(&response.bytes().await.unwrap()), "uid-big");

    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(r#"airlock_webhook_body_rejections_total{reason="too_large"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_over_http1_too() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let mut tls = raw_tls(&ca, server.addr).await;
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        9 * MIB
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_by_the_request_timeout() {
    let ca = Ca::new("ca");
    let opts = ServeOptions {
        request_timeout: Duration::from_millis(500),
        ..test_options()
    };
    let server = TestServer::start_with(&ca, opts).await;
    let mut tls = raw_tls(&ca, server.addr).await;
    let started = Instant::now();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n{\"apiVersion\"",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("the server kept a stalled connection open")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(r#"airlock_webhook_body_rejections_total{reason="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn stalled_headers_are_cut_off_too() {
    let ca = Ca::new("ca");
    let opts = ServeOptions {
        request_timeout: Duration::from_millis(500),
        ..test_options()
    };
    let server = TestServer::start_with(&ca, opts).await;
    let mut tls = raw_tls(&ca, server.addr).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("the server kept a connection with stalled headers open")
        .ok();
}

#[tokio::test]
async fn certificate_rotation_keeps_old_connections_and_serves_the_new_pair() {
    let ca_a = Ca::new("ca-a");
    let ca_b = Ca::new("ca-b");
    let server = TestServer::start(&ca_a).await;

    // One keep-alive client trusting only CA A keeps sending requests across the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (client, url) = (ca_a.client(), server.url("/validate"));
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.post(&url).body(pod_review("load", 0)).send().await {
                    Ok(response) if response.status() == StatusCode::OK => {}
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(error) => failures.push(format!("{error:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (cert_b, key_b) = ca_b.serving_pair();
    server.secret.update(&cert_b, &key_b);
    let rotated = Instant::now();
    let client_b = ca_b.client();
    loop {
        // A fresh client every time: a new handshake, so the new certificate must be served.
        match client_b
            .post(server.url("/validate"))
            .body(pod_review("b", 0))
            .send()
            .await
        {
            Ok(response) if response.status() == StatusCode::OK => break,
            _ if rotated.elapsed() > Duration::from_secs(3) => panic!("certificate B never served"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(
        sent.load(Ordering::Relaxed) > 10,
        "too few requests to prove anything"
    );
    assert!(
        failures.is_empty(),
        "requests failed during rotation: {failures:?}"
    );

    // A corrupt pair is refused; B keeps serving new connections.
    server.secret.update(
        "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
        "garbage",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = ca_b
        .client()
        .post(server.url("/validate"))
        .body(pod_review("c", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(r#"airlock_webhook_certificate_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"airlock_webhook_certificate_reloads_total{result="error"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn missing_or_mismatched_tls_files_are_named_in_the_error() {
    common::install_provider();
    let ca = Ca::new("ca");
    let (cert, key) = ca.serving_pair();
    let (_, other_key) = ca.serving_pair();
    let secret = common::SecretDir::new(&cert, &other_key);

    let missing = secret.root().join("absent.crt");
    let error = ReloadingCert::from_files(&missing, secret.key_path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("absent.crt"), "{error}");

    let error = ReloadingCert::from_files(secret.cert_path(), secret.key_path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("tls.crt") && error.contains("tls.key"), "{error}");

    secret.update(&cert, "not a key");
    let error = ReloadingCert::from_files(secret.cert_path(), secret.key_path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("tls.key"), "{error}");

    secret.update(&cert, &key);
    assert!(ReloadingCert::from_files(secret.cert_path(), secret.key_path()).is_ok());
}

#[tokio::test]
async fn admin_port_reports_liveness_readiness_and_metrics() {
    let ca = Ca::new("ca");
    let server = TestServer::start(&ca).await;
    let get = |path: &str| reqwest::get(server.admin_url(path));

    assert_eq!(get("/live").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/ready").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.readiness.set(true);
    assert_eq!(get("/ready").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/nope").await.unwrap().status(), StatusCode::NOT_FOUND);

    let response = ca
        .client()
        .post(server.url("/validate"))
        .body(pod_review("m", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = metrics_text(&server).await;
    let counted = metrics.lines().any(|line| {
        line.starts_with(r#"airlock_webhook_requests_total{route="validate",verdict=""#)
            && line.ends_with(" 1")
    });
    assert!(counted, "{metrics}");
    assert!(
        metrics.contains(r#"airlock_webhook_request_duration_seconds_bucket{le="0.001",route="validate"}"#)
            || metrics.contains(r#"airlock_webhook_request_duration_seconds_count{route="validate"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_still_completes() {
    let ca = Ca::new("ca");
    let mut server = TestServer::start(&ca).await;
    let review = pod_review("late", 0);
    let (first, rest) = review.split_at(review.len() / 2);

    let mut tls = raw_tls(&ca, server.addr).await;
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        review.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once shutdown has begun.
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );

    tls.write_all(rest).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"late\""), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server.stopped())
        .await
        .unwrap()
        .unwrap();
}
