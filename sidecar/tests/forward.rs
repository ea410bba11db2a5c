//! Threat-log forwarders against real local collectors: a UDP socket, a TCP listener and a small hyper
//! server. Waits are generous bounds, never exact timings.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_crds::v1alpha1::common::SecretKeyRef;
use airlock_crds::v1alpha1::profile::{
    Forwarder, HttpForwarder, SyslogFacility, SyslogForwarder, SyslogProtocol,
};
use airlock_sidecar::Error;
use airlock_sidecar::forward::{ForwarderCounts, Forwarders};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn syslog(address: SocketAddr, protocol: SyslogProtocol, facility: SyslogFacility) -> Forwarder {
    Forwarder {
        syslog: Some(SyslogForwarder {
            address: address.to_string(),
            protocol,
            facility,
        }),
        http: None,
    }
}

fn http(url: String, batch_size: i32, secret: Option<(&str, &str)>) -> Forwarder {
    Forwarder {
        syslog: None,
        http: Some(HttpForwarder {
            url,
            batch_size,
            secret_ref: secret.map(|(name, key)| SecretKeyRef {
                name: name.to_owned(),
                key: key.to_owned(),
            }),
        }),
    }
}

fn entry(seq: usize, action: &str) -> String {
    json!({"report_id": format!("r{seq}"), "seq": seq, "action": action, "category": "malicious"}).to_string()
}

/// Polls the first forwarder's counters until `done` holds.
async fn wait_for_counts(
    forwarders: &Forwarders,
    done: impl Fn(&ForwarderCounts) -> bool,
) -> ForwarderCounts {
    let started = Instant::now();
    loop {
        let counts = forwarders.counts().remove(0);
        if done(&counts) {
            return counts;
        }
        assert!(started.elapsed() < WAIT, "counters never got there: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("airlock-forward-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// --- syslog ---

/// The fields of an RFC 5424 message with our shape: PRI, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID,
/// STRUCTURED-DATA, MSG.
fn rfc5424_fields(message: &str) -> Vec<&str> {
    let fields: Vec<&str> = message.splitn(8, ' ').collect();
    assert_eq!(fields.len(), 8, "{message}");
    let (pri, version) = fields[0].split_once('>').unwrap();
    assert!(
        pri.starts_with('<') && pri[1..].parse::<u8>().is_ok(),
        "{message}"
    );
    assert_eq!(version, "1");
    let timestamp = fields[1].as_bytes();
    assert_eq!(timestamp.len(), "2024-02-29T13:05:09.004200Z".len(), "{message}");
    assert!(timestamp[4] == b'-' && timestamp[10] == b'T' && timestamp[19] == b'.' && timestamp[26] == b'Z');
    assert!(!fields[2].is_empty());
    assert_eq!(fields[3], "airlock-sidecar");
    assert_eq!(fields[4], std::process::id().to_string());
    assert_eq!(fields[5], "threat");
    assert_eq!(fields[6], "-");
    fields
}

async fn recv_datagram(socket: &UdpSocket) -> String {
    let mut buf = vec![0; 70_000];
    let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(buf[..len].to_vec()).unwrap()
}

#[tokio::test]
async fn udp_receiver_gets_an_rfc5424_message_carrying_the_entry() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = receiver.local_addr().unwrap();
    let forwarders = Forwarders::start(
        &[syslog(address, SyslogProtocol::Udp, SyslogFacility::Local3)],
        None,
    )
    .unwrap();
    assert_eq!(forwarders.counts()[0].target, format!("syslog+udp://{address}"));

    let blocked = entry(1, "block");
    forwarders.send(&blocked);
    let message = recv_datagram(&receiver).await;
    let fields = rfc5424_fields(&message);
    assert_eq!(fields[0], "<156>1", "local3 (19) * 8 + warning (4)");
    assert_eq!(fields[7], blocked);

    let alerted = entry(2, "alert");
    forwarders.send(&alerted);
    let message = recv_datagram(&receiver).await;
    let fields = rfc5424_fields(&message);
    assert_eq!(fields[0], "<157>1", "local3 (19) * 8 + notice (5)");
    assert_eq!(fields[7], alerted);

    let counts = wait_for_counts(&forwarders, |counts| counts.sent == 2).await;
    assert_eq!((counts.dropped, counts.failed), (0, 0));
}

#[tokio::test]
async fn udp_entries_too_big_for_a_datagram_arrive_as_a_parsable_stub() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = receiver.local_addr().unwrap();
    let forwarders = Forwarders::start(
        &[syslog(address, SyslogProtocol::Udp, SyslogFacility::User)],
        None,
    )
    .unwrap();

    let big = json!({"report_id": "r-big", "action": "block", "excerpt": "x".repeat(100_000)}).to_string();
    forwarders.send(&big);
    let message = recv_datagram(&receiver).await;
    let body: Value = serde_json::from_str(rfc5424_fields(&message)[7]).unwrap();
    assert_eq!(body["truncated"], true);
    assert_eq!(body["report_id"], "r-big");
    assert_eq!(body["original_bytes"], big.len());
}

/// Reads one octet-counted frame (`LEN SP MSG`).
async fn read_frame(reader: &mut BufReader<TcpStream>) -> String {
    let mut length = Vec::new();
    tokio::time::timeout(WAIT, reader.read_until(b' ', &mut length))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(length.pop(), Some(b' '), "frame length ends with a space");
    let length: usize = String::from_utf8(length).unwrap().parse().unwrap();
    let mut message = vec![0; length];
    tokio::time::timeout(WAIT, reader.read_exact(&mut message))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(message).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_receiver_gets_octet_counted_frames_and_the_sender_reconnects_after_a_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let forwarders = Forwarders::start(
        &[syslog(address, SyslogProtocol::Tcp, SyslogFacility::Local0)],
        None,
    )
    .unwrap();

    for seq in 0..3 {
        forwarders.send(&entry(seq, "block"));
    }
    let (first, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut first = BufReader::new(first);
    for seq in 0..3 {
        let message = read_frame(&mut first).await;
        let fields = rfc5424_fields(&message);
        assert_eq!(fields[0], "<132>1");
        assert_eq!(fields[7], entry(seq, "block"));
    }
    drop(first);

    // Keep sending until the forwarder notices the drop and connects again.
    let started = Instant::now();
    let mut seq = 100;
    let second = loop {
        forwarders.send(&entry(seq, "alert"));
        seq += 1;
        if let Ok(accepted) = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await {
            break accepted.unwrap().0;
        }
        assert!(started.elapsed() < WAIT, "the forwarder never reconnected");
    };
    let mut second = BufReader::new(second);
    let message = read_frame(&mut second).await;
    let fields = rfc5424_fields(&message);
    assert_eq!(fields[0], "<133>1");
    let body: Value = serde_json::from_str(fields[7]).unwrap();
    assert!(
        body["seq"].as_u64().unwrap() >= 100,
        "an entry sent after the drop: {body}"
    );

    let counts = wait_for_counts(&forwarders, |counts| counts.sent >= 4).await;
    assert_eq!(counts.failed, 0);
}

#[tokio::test]
async fn tcp_entries_wait_while_no_collector_listens_and_only_the_overflow_is_dropped() {
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let forwarders = Forwarders::start(
        &[syslog(address, SyslogProtocol::Tcp, SyslogFacility::Local0)],
        None,
    )
    .unwrap();
    for seq in 0..15_000 {
        forwarders.send(&entry(seq, "alert"));
    }
    let counts = forwarders.counts().remove(0);
    assert_eq!(counts.sent, 0);
    assert!(counts.dropped > 0 && counts.dropped <= 5_000, "{counts:?}");

    // A collector that shows up late still gets the queued entries.
    let listener = TcpListener::bind(address).await.unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(40), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut stream = BufReader::new(stream);
    let fields_seq = |message: &str| -> u64 {
        let body: Value = serde_json::from_str(rfc5424_fields(message)[7]).unwrap();
        body["seq"].as_u64().unwrap()
    };
    assert_eq!(fields_seq(&read_frame(&mut stream).await), 0);
}

// --- HTTP ---

#[derive(Debug)]
struct Received {
    authorization: Option<String>,
    content_type: Option<String>,
    entries: Vec<Value>,
}

/// A collector that answers each request with the next scripted status (then 200), or never answers.
struct Collector {
    url: String,
    requests: mpsc::UnboundedReceiver<Received>,
}

impl Collector {
    async fn start(statuses: &[u16]) -> Collector {
        Self::serve(statuses, false).await
    }

    async fn stalled() -> Collector {
        Self::serve(&[], true).await
    }

    async fn serve(statuses: &[u16], stall: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/ingest?token=in-the-query",
            listener.local_addr().unwrap()
        );
        let (tx, requests) = mpsc::unbounded_channel();
        let statuses = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<u16>>()));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, statuses) = (tx.clone(), Arc::clone(&statuses));
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (tx, statuses) = (tx.clone(), Arc::clone(&statuses));
                    async move {
                        if stall {
                            std::future::pending::<()>().await;
                        }
                        let header = |name| {
                            request
                                .headers()
                                .get(name)
                                .map(|value: &http::HeaderValue| value.to_str().unwrap().to_owned())
                        };
                        let authorization = header(http::header::AUTHORIZATION);
                        let content_type = header(http::header::CONTENT_TYPE);
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let entries: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        let _ = tx.send(Received {
                            authorization,
                            content_type,
                            entries,
                        });
                        let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .body(Full::new(Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { url, requests }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .unwrap()
            .unwrap()
    }
}

fn seqs(received: &Received) -> Vec<u64> {
    received
        .entries
        .iter()
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn http_collector_receives_batches_of_batch_size_with_the_bearer_token() {
    let mut collector = Collector::start(&[]).await;
    let tokens = TempDir::new("bearer");
    std::fs::create_dir_all(tokens.0.join("siem")).unwrap();
    std::fs::write(tokens.0.join("siem/token"), "s3cret-token\n").unwrap();
    let forwarders = Forwarders::start(
        &[http(collector.url.clone(), 3, Some(("siem", "token")))],
        Some(&tokens.0),
    )
    .unwrap();
    let target = &forwarders.counts()[0].target;
    assert!(
        target.ends_with("/ingest") && !target.contains("in-the-query"),
        "{target}"
    );

    for seq in 0..7 {
        forwarders.send(&entry(seq, "block"));
    }
    let mut batches = Vec::new();
    for _ in 0..3 {
        let received = collector.next().await;
        assert_eq!(received.authorization.as_deref(), Some("Bearer s3cret-token"));
        assert_eq!(received.content_type.as_deref(), Some("application/json"));
        batches.push(seqs(&received));
    }
    assert_eq!(
        batches,
        [vec![0, 1, 2], vec![3, 4, 5], vec![6]],
        "full batches, then the rest after a second"
    );
    let counts = wait_for_counts(&forwarders, |counts| counts.sent == 7).await;
    assert_eq!((counts.dropped, counts.failed), (0, 0));
}

#[tokio::test]
async fn http_collector_answering_500_then_429_then_200_gets_the_batch_after_retries() {
    let mut collector = Collector::start(&[500, 429]).await;
    let forwarders = Forwarders::start(&[http(collector.url.clone(), 2, None)], None).unwrap();
    forwarders.send(&entry(1, "alert"));
    forwarders.send(&entry(2, "alert"));

    for _ in 0..3 {
        let received = collector.next().await;
        assert_eq!(received.authorization, None);
        assert_eq!(seqs(&received), [1, 2]);
    }
    let counts = wait_for_counts(&forwarders, |counts| counts.sent == 2).await;
    assert_eq!(counts.failed, 0);
}

#[tokio::test]
async fn http_collector_answering_400_is_not_retried_and_the_batch_counts_as_failed() {
    let mut collector = Collector::start(&[400]).await;
    let forwarders = Forwarders::start(&[http(collector.url.clone(), 2, None)], None).unwrap();
    forwarders.send(&entry(1, "alert"));
    forwarders.send(&entry(2, "alert"));
    assert_eq!(seqs(&collector.next().await), [1, 2]);
    wait_for_counts(&forwarders, |counts| counts.failed == 2).await;

    // The next request carries the next batch, not the rejected one again.
    forwarders.send(&entry(3, "alert"));
    forwarders.send(&entry(4, "alert"));
    assert_eq!(seqs(&collector.next().await), [3, 4]);
    let counts = wait_for_counts(&forwarders, |counts| counts.sent == 2).await;
    assert_eq!(counts.failed, 2);
}

#[tokio::test]
async fn http_forwarder_without_a_readable_token_sends_nothing_until_the_token_appears() {
    let mut collector = Collector::start(&[]).await;
    let tokens = TempDir::new("late-token");
    let forwarders = Forwarders::start(
        &[http(collector.url.clone(), 1, Some(("siem", "token")))],
        Some(&tokens.0),
    )
    .unwrap();

    forwarders.send(&entry(1, "block"));
    let counts = wait_for_counts(&forwarders, |counts| counts.failed == 1).await;
    assert_eq!(counts.sent, 0);
    assert!(
        collector.requests.try_recv().is_err(),
        "nothing is sent without credentials"
    );

    std::fs::create_dir_all(tokens.0.join("siem")).unwrap();
    std::fs::write(tokens.0.join("siem/token"), "  mounted-later  ").unwrap();
    forwarders.send(&entry(2, "block"));
    let received = collector.next().await;
    assert_eq!(received.authorization.as_deref(), Some("Bearer mounted-later"));
    assert_eq!(seqs(&received), [2]);
}

#[tokio::test]
async fn http_forwarder_with_a_secret_but_no_token_directory_starts_and_never_sends() {
    let mut collector = Collector::start(&[]).await;
    let forwarders =
        Forwarders::start(&[http(collector.url.clone(), 1, Some(("siem", "token")))], None).unwrap();
    forwarders.send(&entry(1, "block"));
    wait_for_counts(&forwarders, |counts| counts.failed == 1).await;
    assert!(collector.requests.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_does_not_slow_send() {
    let collector = Collector::stalled().await;
    let forwarders = Forwarders::start(&[http(collector.url.clone(), 100, None)], None).unwrap();
    let entry = entry(1, "block");

    let started = Instant::now();
    for _ in 0..50_000 {
        forwarders.send(&entry);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "50,000 sends took {elapsed:?}");
    let counts = forwarders.counts().remove(0);
    assert!(counts.dropped > 0, "{counts:?}");
    assert_eq!(counts.sent, 0);
}

#[tokio::test]
async fn dropping_the_forwarders_delivers_what_is_queued() {
    let mut collector = Collector::start(&[]).await;
    let forwarders = Forwarders::start(&[http(collector.url.clone(), 100, None)], None).unwrap();
    for seq in 0..5 {
        forwarders.send(&entry(seq, "alert"));
    }
    drop(forwarders);
    assert_eq!(seqs(&collector.next().await), [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn one_entry_reaches_every_forwarder() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut collector = Collector::start(&[]).await;
    let forwarders = Forwarders::start(
        &[
            syslog(
                receiver.local_addr().unwrap(),
                SyslogProtocol::Udp,
                SyslogFacility::Local0,
            ),
            http(collector.url.clone(), 1, None),
        ],
        None,
    )
    .unwrap();
    forwarders.send(&entry(7, "block"));
    assert!(recv_datagram(&receiver).await.ends_with(&entry(7, "block")));
    assert_eq!(seqs(&collector.next().await), [7]);
    assert_eq!(forwarders.counts().len(), 2);
}

// --- configuration ---

fn start_error(config: Forwarder) -> String {
    match Forwarders::start(&[config], None) {
        Err(error @ Error::Forwarder { .. }) => error.to_string(),
        other => panic!("expected a forwarder error, got {other:?}"),
    }
}

#[test]
fn a_forwarder_with_both_syslog_and_http_is_an_error() {
    let mut both = syslog(
        "127.0.0.1:514".parse().unwrap(),
        SyslogProtocol::Udp,
        SyslogFacility::Local0,
    );
    both.http = http("http://127.0.0.1:1/".to_owned(), 1, None).http;
    assert!(start_error(both).contains("exactly one of syslog or http"));
}

#[test]
fn a_forwarder_with_neither_syslog_nor_http_is_an_error() {
    let neither = Forwarder {
        syslog: None,
        http: None,
    };
    assert!(start_error(neither).contains("exactly one of syslog or http"));
}

#[test]
fn invalid_addresses_urls_batch_sizes_and_secret_names_are_errors() {
    let bad_address = Forwarder {
        syslog: Some(SyslogForwarder {
            address: "syslog.logging.svc".to_owned(),
            ..SyslogForwarder::default()
        }),
        http: None,
    };
    assert!(start_error(bad_address).contains("host:port"));
    assert!(start_error(http("ftp://collector/x".to_owned(), 1, None)).contains("http"));
    assert!(start_error(http("https://user:pw@collector/x".to_owned(), 1, None)).contains("credentials"));
    assert!(start_error(http("https://collector/x".to_owned(), 0, None)).contains("batchSize"));
    assert!(start_error(http("https://collector/x".to_owned(), 10_001, None)).contains("batchSize"));
    assert!(
        start_error(http("https://collector/x".to_owned(), 1, Some(("..", "token")))).contains("secretRef")
    );
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let error = start_error(http("https://collector.example/x".to_owned(), 1, None));
    assert!(error.contains("Tokio runtime"), "{error}");
}

#[test]
fn no_forwarders_need_no_runtime_and_send_is_a_no_op() {
    let forwarders = Forwarders::start(&[], None).unwrap();
    assert!(forwarders.is_empty());
    forwarders.send(&entry(1, "block"));
    assert!(forwarders.counts().is_empty());
}

#[tokio::test]
async fn https_collectors_are_accepted() {
    let forwarders = Forwarders::start(
        &[http("https://siem.example.com/ingest".to_owned(), 100, None)],
        None,
    );
    assert_eq!(
        forwarders.unwrap().counts()[0].target,
        "https://siem.example.com/ingest"
    );
}

#[test]
fn forwarders_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync + std::fmt::Debug>() {}
    assert_send_sync::<Forwarders>();
}
