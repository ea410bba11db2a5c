//! Threat-log forwarders: syslog (RFC 5424 over UDP, octet-counted over TCP) and batched JSON to an HTTP
//! collector. Sending never blocks traffic: each forwarder has a bounded buffer, and what does not fit
//! is dropped and counted.
//!
//! Each forwarder is one Tokio task fed by a queue of [`QUEUE_CAPACITY`] entries. [`Forwarders::send`]
//! shares one `Arc<str>` among all queues and uses `try_send`, so a slow or dead collector only ever
//! costs its own queue: once it is full, further entries are `dropped`.
//!
//! Delivery is best effort: an entry may be lost (queue full, collector gone, shutdown) or, after a
//! retry, arrive twice. Per transport:
//! - **syslog/udp**: one datagram per entry. An entry whose message would exceed [`MAX_UDP_MESSAGE`] is
//!   replaced by a small JSON stub that keeps the verdict's identifying fields (`report_id`, `tr_id`,
//!   `profile`, `instance`, `direction`, `category`, `action`) plus `"truncated":true` and
//!   `original_bytes`: a cut-off JSON text would break collectors that parse the body. A failed
//!   datagram is counted `failed` and not retried.
//! - **syslog/tcp**: octet-counted frames (RFC 6587). The connection is opened lazily and reopened with
//!   exponential backoff after errors; entries wait in the queue meanwhile. Frames whose write failed
//!   are written again on the next connection, so a collector may see an entry twice.
//! - **http**: JSON arrays of up to `batchSize` entries, flushed when full or [`HTTP_FLUSH_AFTER`]
//!   after the batch's first entry. Transport errors, timeouts, 429 and 5xx are retried with backoff
//!   up to [`HTTP_MAX_ATTEMPTS`] times; other statuses are not retried. A batch that is given up is
//!   counted `failed`.
//!
//! A bearer token (`secretRef`) is read from `<token_dir>/<secret name>/<key>` before every batch, so a
//! rotated or late-mounted secret is picked up without a restart. While it cannot be read the forwarder
//! sends nothing (never without credentials) and counts its batches `failed`; [`Forwarders::start`]
//! still succeeds, so a missing token never keeps a new policy from being enforced.
//!
//! When [`Forwarders`] is dropped (policy reload, shutdown) each task delivers what is queued for at most
//! [`DRAIN_DEADLINE`], then counts what is left as `dropped` and ends.
//!
//! Logs name the forwarder's target (the URL without credentials or query) and never the token or
//! entry contents.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_crds::v1alpha1::profile::{
    Forwarder, HttpForwarder, SyslogFacility, SyslogForwarder, SyslogProtocol,
};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::{Error, Result};

/// Entries each forwarder buffers before it drops.
pub const QUEUE_CAPACITY: usize = 10_000;
/// How long a dropped [`Forwarders`]' tasks keep delivering what is queued.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// Largest syslog message (header and body) sent as one UDP datagram; below the IPv4 limit of 65,507.
pub const MAX_UDP_MESSAGE: usize = 60 * 1024;
/// An HTTP batch is sent this long after its first entry even when it is not full.
pub const HTTP_FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Attempts per HTTP batch, the first included.
pub const HTTP_MAX_ATTEMPTS: u32 = 5;

const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_BACKOFF_START: Duration = Duration::from_millis(250);
const HTTP_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A collector's `Retry-After` is honoured up to this long.
const HTTP_RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// A collector's response body is read (to reuse the connection) up to this size, then discarded.
const HTTP_RESPONSE_LIMIT: usize = 64 * 1024;

const SYSLOG_BACKOFF_START: Duration = Duration::from_millis(100);
const SYSLOG_BACKOFF_CAP: Duration = Duration::from_secs(30);
const SYSLOG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SYSLOG_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP frames are coalesced into writes of about this size.
const TCP_WRITE_CHUNK: usize = 256 * 1024;

const APP_NAME: &str = "airlock-sidecar";
const MSG_ID: &str = "threat";
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;

/// Top-level entry fields kept when an entry is too big for a datagram.
const STUB_FIELDS: [&str; 7] = [
    "report_id",
    "tr_id",
    "profile",
    "instance",
    "direction",
    "category",
    "action",
];

type Entry = Arc<str>;
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Counters of one forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderCounts {
    /// e.g. `syslog+udp://10.0.0.1:514` or the collector URL.
    pub target: String,
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// The running forwarders of one policy.
#[derive(Debug, Default)]
pub struct Forwarders {
    queues: Vec<Queue>,
    /// Never sent on: dropping it tells the tasks to drain and end.
    _closing: Option<watch::Sender<()>>,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<Entry>,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    target: String,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn new(target: String) -> Self {
        Self {
            target,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ForwarderCounts {
        ForwarderCounts {
            target: self.target.clone(),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

impl Forwarders {
    /// Starts a task per forwarder; call inside a Tokio runtime. `token_dir` holds the bearer tokens of
    /// HTTP forwarders with a `secretRef`, as `<token_dir>/<secret name>/<key>`.
    ///
    /// Fails, starting nothing, when a forwarder is invalid: neither or both of `syslog` and `http`, a
    /// syslog address that is not `host:port`, an HTTP URL that is not `http(s)://host…` or carries
    /// credentials, a `batchSize` outside 1..=10000, or a `secretRef` name or key that is not a plain
    /// file name. A token that cannot be read is not an error here (see the module docs).
    pub fn start(config: &[Forwarder], token_dir: Option<&Path>) -> Result<Forwarders> {
        let plans = config
            .iter()
            .map(|forwarder| Plan::from_config(forwarder, token_dir))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = plans.first() else {
            return Ok(Forwarders::default());
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Forwarder {
            target: first.target().to_owned(),
            message: "forwarders must be started inside a Tokio runtime".to_owned(),
        })?;
        // One client (and one load of the root certificates) for all HTTP forwarders.
        let mut client: Option<HttpClient> = None;
        let mut workers = Vec::with_capacity(plans.len());
        for plan in plans {
            let counters = Arc::new(Counters::new(plan.target().to_owned()));
            let worker = match plan {
                Plan::Syslog(plan) => {
                    Worker::Syslog(Box::new(SyslogWorker::new(plan, Arc::clone(&counters))))
                }
                Plan::Http(plan) => {
                    let client = match &client {
                        Some(client) => client.clone(),
                        None => client.insert(http_client(&plan.target)?).clone(),
                    };
                    Worker::Http(Box::new(HttpWorker::new(plan, client, Arc::clone(&counters))))
                }
            };
            workers.push((worker, counters));
        }

        let (closing, closed) = watch::channel(());
        let mut queues = Vec::with_capacity(workers.len());
        for (worker, counters) in workers {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            runtime.spawn(supervise(worker, rx, closed.clone(), Arc::clone(&counters)));
            queues.push(Queue { tx, counters });
        }
        Ok(Forwarders {
            queues,
            _closing: Some(closing),
        })
    }

    /// Queues one threat-log entry (a JSON object, no trailing newline). Never blocks.
    pub fn send(&self, entry: &str) {
        if self.queues.is_empty() {
            return;
        }
        let entry: Entry = Arc::from(entry);
        for queue in &self.queues {
            // Full, or closed because the task is gone: either way the entry is lost.
            if queue.tx.try_send(Arc::clone(&entry)).is_err() {
                Counters::add(&queue.counters.dropped, 1);
            }
        }
    }

    /// Counters per forwarder, in configuration order.
    pub fn counts(&self) -> Vec<ForwarderCounts> {
        self.queues
            .iter()
            .map(|queue| queue.counters.snapshot())
            .collect()
    }

    /// True when no forwarder is configured.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

/// A validated forwarder configuration.
#[derive(Debug)]
enum Plan {
    Syslog(SyslogPlan),
    Http(HttpPlan),
}

#[derive(Debug)]
struct SyslogPlan {
    target: String,
    host: String,
    port: u16,
    protocol: SyslogProtocol,
    facility: SyslogFacility,
}

#[derive(Debug)]
struct HttpPlan {
    target: String,
    uri: Uri,
    batch_size: usize,
    token: Option<TokenSource>,
}

/// Where an HTTP forwarder's bearer token comes from.
#[derive(Debug)]
enum TokenSource {
    File(PathBuf),
    /// A `secretRef` without a token directory: the forwarder can never authenticate.
    NoTokenDir,
}

impl Plan {
    fn from_config(forwarder: &Forwarder, token_dir: Option<&Path>) -> Result<Plan> {
        match (&forwarder.syslog, &forwarder.http) {
            (Some(syslog), None) => SyslogPlan::from_config(syslog).map(Plan::Syslog),
            (None, Some(http)) => HttpPlan::from_config(http, token_dir).map(Plan::Http),
            (Some(syslog), Some(_)) => Err(Error::Forwarder {
                target: syslog_target(syslog),
                message: "a forwarder sets exactly one of syslog or http, not both".to_owned(),
            }),
            (None, None) => Err(Error::Forwarder {
                target: "(none)".to_owned(),
                message: "a forwarder sets exactly one of syslog or http".to_owned(),
            }),
        }
    }

    fn target(&self) -> &str {
        match self {
            Plan::Syslog(plan) => &plan.target,
            Plan::Http(plan) => &plan.target,
        }
    }
}

fn syslog_target(syslog: &SyslogForwarder) -> String {
    let transport = match syslog.protocol {
        SyslogProtocol::Udp => "udp",
        SyslogProtocol::Tcp => "tcp",
    };
    format!("syslog+{transport}://{}", syslog.address)
}

impl SyslogPlan {
    fn from_config(syslog: &SyslogForwarder) -> Result<SyslogPlan> {
        let target = syslog_target(syslog);
        let Some((host, port)) = parse_address(&syslog.address) else {
            return Err(Error::Forwarder {
                target,
                message: "syslog address must be host:port or [IPv6]:port with a port from 1 to 65535"
                    .to_owned(),
            });
        };
        Ok(SyslogPlan {
            target,
            host,
            port,
            protocol: syslog.protocol,
            facility: syslog.facility,
        })
    }
}

/// Splits `host:port` or `[v6]:port` into a host for `lookup_host` (brackets removed) and a port.
fn parse_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => {
            let v6 = bracketed.strip_suffix(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            v6
        }
        None if host.is_empty() || host.contains([':', '[', ']', ' ', '/']) => return None,
        None => host,
    };
    Some((host.to_owned(), port))
}

impl HttpPlan {
    fn from_config(http: &HttpForwarder, token_dir: Option<&Path>) -> Result<HttpPlan> {
        let invalid = |target: &str, message: &str| Error::Forwarder {
            target: target.to_owned(),
            message: message.to_owned(),
        };
        let uri: Uri = http.url.parse().map_err(|_| {
            invalid(
                &redacted_url_text(&http.url),
                "url is not a valid http:// or https:// URL",
            )
        })?;
        let target = redacted_target(&uri).ok_or_else(|| {
            invalid(
                &redacted_url_text(&http.url),
                "url must be http:// or https:// with a host",
            )
        })?;
        if uri
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'))
        {
            return Err(invalid(
                &target,
                "url must not carry credentials; use secretRef for a bearer token",
            ));
        }
        let batch_size = usize::try_from(http.batch_size)
            .ok()
            .filter(|size| (1..=10_000).contains(size))
            .ok_or_else(|| invalid(&target, "batchSize must be between 1 and 10000"))?;
        let token = match &http.secret_ref {
            None => None,
            Some(secret) => {
                if !is_plain_file_name(&secret.name) || !is_plain_file_name(&secret.key) {
                    return Err(invalid(
                        &target,
                        "secretRef name and key must be plain names (no `/`, `.` or `..`)",
                    ));
                }
                Some(match token_dir {
                    Some(dir) => TokenSource::File(dir.join(&secret.name).join(&secret.key)),
                    None => TokenSource::NoTokenDir,
                })
            }
        };
        Ok(HttpPlan {
            target,
            uri,
            batch_size,
            token,
        })
    }
}

/// A name that stays inside the directory it is joined to.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// `scheme://host[:port]/path`: what logs and metrics may show of a collector URL (no user info, no
/// query, which may hold credentials). `None` unless the scheme is http(s) and there is a host.
fn redacted_target(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = uri.authority()?.as_str();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host_port.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host_port}{}", uri.path()))
}

/// For an unparsable URL: the text up to the first `?`, without user info.
fn redacted_url_text(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_owned(),
    }
}

/// A client for `http://` and `https://` collectors. Its connection pool belongs to the current runtime,
/// so each [`Forwarders`] builds its own; the TLS settings are built once per process.
fn http_client(target: &str) -> Result<HttpClient> {
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(target)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// The shared TLS settings ([`crate::tls::client_config`]: system and webpki roots). Cached because
/// loading the system store reads files, and forwarders are rebuilt on every policy reload.
fn tls_config(target: &str) -> Result<rustls::ClientConfig> {
    static TLS: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(config) = TLS.get() {
        return Ok(config.clone());
    }
    let config = crate::tls::client_config(None).map_err(|error| Error::Forwarder {
        target: target.to_owned(),
        message: error.to_string(),
    })?;
    Ok(TLS.get_or_init(|| config).clone())
}

enum Worker {
    Syslog(Box<SyslogWorker>),
    Http(Box<HttpWorker>),
}

impl Worker {
    /// Delivers entries until the queue is closed and empty.
    async fn run(&mut self, rx: &mut mpsc::Receiver<Entry>) {
        match self {
            Worker::Syslog(worker) => worker.run(rx).await,
            Worker::Http(worker) => worker.run(rx).await,
        }
    }

    /// Entries taken from the queue but not delivered or given up yet.
    fn in_flight(&self) -> usize {
        match self {
            Worker::Syslog(worker) => worker.staged_entries,
            Worker::Http(worker) => worker.batch.len(),
        }
    }

    fn target(&self) -> &str {
        match self {
            Worker::Syslog(worker) => &worker.plan.target,
            Worker::Http(worker) => &worker.plan.target,
        }
    }
}

/// Runs a worker until its queue is drained after [`Forwarders`] is dropped, or until the drain
/// deadline; what is left then is counted as dropped.
async fn supervise(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Entry>,
    mut closed: watch::Receiver<()>,
    counters: Arc<Counters>,
) {
    let drained = tokio::select! {
        () = worker.run(&mut rx) => true,
        () = drain_deadline(&mut closed) => false,
    };
    if drained {
        tracing::debug!(
            target_url = worker.target(),
            "threat-log forwarder drained and stopped"
        );
        return;
    }
    rx.close();
    let mut lost = worker.in_flight();
    while rx.try_recv().is_ok() {
        lost += 1;
    }
    Counters::add(&counters.dropped, lost);
    tracing::warn!(
        target_url = worker.target(),
        lost,
        "threat-log forwarder stopped before delivering everything"
    );
}

/// Resolves [`DRAIN_DEADLINE`] after the owning [`Forwarders`] is dropped.
async fn drain_deadline(closed: &mut watch::Receiver<()>) {
    // Nothing is ever sent, so `changed` only returns, with an error, once the sender is dropped.
    while closed.changed().await.is_ok() {}
    tokio::time::sleep(DRAIN_DEADLINE).await;
}

/// Exponential backoff with equal jitter: each wait is between half and all of the current step.
#[derive(Debug)]
struct Backoff {
    start: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    fn new(start: Duration, cap: Duration) -> Self {
        Self {
            start,
            cap,
            step: start,
        }
    }

    fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.cap);
        // Sub-second clock noise is jitter enough to keep many sidecars from reconnecting in lockstep.
        let noise = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| now.subsec_nanos() % 1000);
        step / 2 + (step / 2) * noise / 1000
    }

    fn reset(&mut self) {
        self.step = self.start;
    }
}

/// Logs a forwarder's failures once per outage rather than once per attempt.
#[derive(Debug)]
struct Health {
    healthy: bool,
}

impl Health {
    fn new() -> Self {
        Self { healthy: true }
    }

    fn failed(&mut self, target: &str, error: &str) {
        if self.healthy {
            tracing::warn!(target_url = target, %error, "threat-log forwarder cannot deliver");
        } else {
            tracing::debug!(target_url = target, %error, "threat-log forwarder still cannot deliver");
        }
        self.healthy = false;
    }

    fn succeeded(&mut self, target: &str) {
        if !self.healthy {
            tracing::info!(target_url = target, "threat-log forwarder delivers again");
        }
        self.healthy = true;
    }
}

// --- syslog ---

/// The parts of a syslog message that are fixed for the life of the process.
#[derive(Debug)]
struct SyslogHeader {
    hostname: String,
    procid: String,
}

impl SyslogHeader {
    fn from_env() -> Self {
        let pod_name = std::env::var("POD_NAME").ok();
        let hostname = std::env::var("HOSTNAME").ok();
        Self {
            hostname: syslog_hostname(pod_name.as_deref(), hostname.as_deref()),
            procid: std::process::id().to_string(),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD ` (RFC 5424), ready for the JSON body.
    fn prefix(&self, facility: SyslogFacility, severity: u8, now: SystemTime) -> String {
        format!(
            "<{}>1 {} {} {APP_NAME} {} {MSG_ID} - ",
            syslog_pri(facility, severity),
            rfc3339_utc(now),
            self.hostname,
            self.procid,
        )
    }
}

/// The first of `POD_NAME` and `HOSTNAME` that is non-empty once reduced to printable ASCII (RFC 5424
/// `PRINTUSASCII`, at most 255), or the nil value `-`.
fn syslog_hostname(pod_name: Option<&str>, hostname: Option<&str>) -> String {
    [pod_name, hostname]
        .into_iter()
        .flatten()
        .map(|name| {
            name.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(255)
                .collect::<String>()
        })
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

fn facility_code(facility: SyslogFacility) -> u8 {
    match facility {
        SyslogFacility::User => 1,
        SyslogFacility::Daemon => 3,
        SyslogFacility::Auth => 4,
        SyslogFacility::Local0 => 16,
        SyslogFacility::Local1 => 17,
        SyslogFacility::Local2 => 18,
        SyslogFacility::Local3 => 19,
        SyslogFacility::Local4 => 20,
        SyslogFacility::Local5 => 21,
        SyslogFacility::Local6 => 22,
        SyslogFacility::Local7 => 23,
    }
}

fn syslog_pri(facility: SyslogFacility, severity: u8) -> u8 {
    facility_code(facility) * 8 + severity
}

/// `warning` for entries whose top-level `action` is `block`, `notice` for everything else (alerts,
/// masks, allows, and entries that are not JSON objects).
fn entry_severity(entry: &str) -> u8 {
    #[derive(serde::Deserialize)]
    struct ActionOnly<'a> {
        #[serde(borrow, default)]
        action: Option<Cow<'a, str>>,
    }
    match serde_json::from_str::<ActionOnly<'_>>(entry) {
        Ok(ActionOnly { action: Some(action) }) if action == "block" => SEVERITY_WARNING,
        _ => SEVERITY_NOTICE,
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2024-02-29T13:05:09.004200Z`. Times before 1970 (a broken
/// clock) are written as the epoch.
fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_micros(),
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097; // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The JSON stub sent instead of an entry too big for a datagram.
fn truncation_stub(entry: &str) -> String {
    let mut stub = serde_json::Map::new();
    stub.insert("truncated".to_owned(), serde_json::Value::Bool(true));
    stub.insert("original_bytes".to_owned(), serde_json::Value::from(entry.len()));
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(entry) {
        for key in STUB_FIELDS {
            if let Some(value @ serde_json::Value::String(text)) = fields.get(key)
                && text.len() <= 256
            {
                stub.insert(key.to_owned(), value.clone());
            }
        }
    }
    serde_json::Value::Object(stub).to_string()
}

/// Appends one entry's syslog message to `out`: a bare message for UDP, an octet-counted frame
/// (`LEN SP MSG`, RFC 6587) for TCP.
fn push_syslog_message(
    out: &mut Vec<u8>,
    header: &SyslogHeader,
    facility: SyslogFacility,
    protocol: SyslogProtocol,
    now: SystemTime,
    entry: &str,
) {
    let prefix = header.prefix(facility, entry_severity(entry), now);
    let body: Cow<'_, str> = match protocol {
        SyslogProtocol::Udp if prefix.len() + entry.len() > MAX_UDP_MESSAGE => {
            tracing::debug!(
                bytes = entry.len(),
                "threat-log entry too big for a datagram; sending a stub"
            );
            Cow::Owned(truncation_stub(entry))
        }
        _ => Cow::Borrowed(entry),
    };
    if protocol == SyslogProtocol::Tcp {
        let mut length = String::new();
        let _ = write!(length, "{} ", prefix.len() + body.len());
        out.extend_from_slice(length.as_bytes());
    }
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

#[derive(Debug)]
enum SyslogConn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

struct SyslogWorker {
    plan: SyslogPlan,
    header: SyslogHeader,
    counters: Arc<Counters>,
    conn: Option<SyslogConn>,
    /// Formatted messages not yet delivered: one datagram, or a run of TCP frames.
    staged: Vec<u8>,
    staged_entries: usize,
    backoff: Backoff,
    health: Health,
}

impl SyslogWorker {
    fn new(plan: SyslogPlan, counters: Arc<Counters>) -> Self {
        Self {
            plan,
            header: SyslogHeader::from_env(),
            counters,
            conn: None,
            staged: Vec::new(),
            staged_entries: 0,
            backoff: Backoff::new(SYSLOG_BACKOFF_START, SYSLOG_BACKOFF_CAP),
            health: Health::new(),
        }
    }

    async fn run(&mut self, rx: &mut mpsc::Receiver<Entry>) {
        loop {
            if self.staged_entries == 0 {
                let Some(entry) = self.next_entry(rx).await else {
                    return;
                };
                self.stage(&entry);
                if self.plan.protocol == SyslogProtocol::Tcp {
                    while self.staged.len() < TCP_WRITE_CHUNK {
                        let Ok(entry) = rx.try_recv() else { break };
                        self.stage(&entry);
                    }
                }
            }
            if self.conn.is_none() {
                match tokio::time::timeout(SYSLOG_CONNECT_TIMEOUT, self.connect()).await {
                    Ok(Ok(conn)) => self.conn = Some(conn),
                    Ok(Err(error)) => {
                        self.health.failed(&self.plan.target, &error);
                        tokio::time::sleep(self.backoff.next_wait()).await;
                        continue;
                    }
                    Err(_) => {
                        self.health.failed(&self.plan.target, "connecting timed out");
                        tokio::time::sleep(self.backoff.next_wait()).await;
                        continue;
                    }
                }
            }
            match self.write_staged().await {
                Ok(()) => {
                    Counters::add(&self.counters.sent, self.staged_entries);
                    self.clear_staged();
                    self.backoff.reset();
                    self.health.succeeded(&self.plan.target);
                }
                Err(error) => {
                    self.conn = None;
                    if self.plan.protocol == SyslogProtocol::Udp {
                        Counters::add(&self.counters.failed, self.staged_entries);
                        self.clear_staged();
                    }
                    self.health.failed(&self.plan.target, &error);
                    tokio::time::sleep(self.backoff.next_wait()).await;
                }
            }
        }
    }

    /// The next queued entry. While idle on TCP it also watches the connection, so a collector that
    /// closed it is noticed before the next write rather than by losing that write.
    async fn next_entry(&mut self, rx: &mut mpsc::Receiver<Entry>) -> Option<Entry> {
        enum Wake {
            Entry(Option<Entry>),
            Closed,
            Data,
        }
        loop {
            let Some(SyslogConn::Tcp(stream)) = &mut self.conn else {
                return rx.recv().await;
            };
            let mut scratch = [0u8; 512];
            let wake = tokio::select! {
                biased;
                read = stream.read(&mut scratch) => match read {
                    Ok(0) | Err(_) => Wake::Closed,
                    Ok(_) => Wake::Data,
                },
                entry = rx.recv() => Wake::Entry(entry),
            };
            match wake {
                Wake::Entry(entry) => return entry,
                Wake::Closed => {
                    tracing::debug!(target_url = %self.plan.target, "syslog collector closed the connection");
                    self.conn = None;
                }
                // Syslog collectors send nothing; whatever this is, it is not ours to read.
                Wake::Data => {}
            }
        }
    }

    fn stage(&mut self, entry: &str) {
        push_syslog_message(
            &mut self.staged,
            &self.header,
            self.plan.facility,
            self.plan.protocol,
            SystemTime::now(),
            entry,
        );
        self.staged_entries += 1;
    }

    fn clear_staged(&mut self) {
        self.staged.clear();
        self.staged_entries = 0;
        if self.staged.capacity() > 2 * TCP_WRITE_CHUNK {
            self.staged.shrink_to(TCP_WRITE_CHUNK);
        }
    }

    /// Resolves the address afresh (a collector's Service IP or DNS may change) and connects.
    async fn connect(&self) -> Result<SyslogConn, String> {
        let addrs = tokio::net::lookup_host((self.plan.host.as_str(), self.plan.port))
            .await
            .map_err(|error| format!("cannot resolve {}: {error}", self.plan.host))?;
        let mut last_error = format!("{} resolves to no address", self.plan.host);
        for addr in addrs {
            let connected = match self.plan.protocol {
                SyslogProtocol::Tcp => TcpStream::connect(addr).await.map(|stream| {
                    let _ = stream.set_nodelay(true);
                    SyslogConn::Tcp(stream)
                }),
                SyslogProtocol::Udp => {
                    let local: std::net::SocketAddr = if addr.is_ipv4() {
                        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    match UdpSocket::bind(local).await {
                        Ok(socket) => socket.connect(addr).await.map(|()| SyslogConn::Udp(socket)),
                        Err(error) => Err(error),
                    }
                }
            };
            match connected {
                Ok(conn) => return Ok(conn),
                Err(error) => last_error = format!("cannot connect to {addr}: {error}"),
            }
        }
        Err(last_error)
    }

    async fn write_staged(&mut self) -> Result<(), String> {
        match &mut self.conn {
            None => Err("not connected".to_owned()),
            Some(SyslogConn::Udp(socket)) => match socket.send(&self.staged).await {
                Ok(written) if written == self.staged.len() => Ok(()),
                Ok(written) => Err(format!(
                    "datagram cut to {written} of {} bytes",
                    self.staged.len()
                )),
                Err(error) => Err(format!("send failed: {error}")),
            },
            Some(SyslogConn::Tcp(stream)) => {
                // A collector that closed while we were busy: reconnect rather than write into the void.
                let mut scratch = [0u8; 512];
                match stream.try_read(&mut scratch) {
                    Ok(0) => return Err("collector closed the connection".to_owned()),
                    Err(error) if error.kind() != std::io::ErrorKind::WouldBlock => {
                        return Err(format!("connection failed: {error}"));
                    }
                    _ => {}
                }
                match tokio::time::timeout(SYSLOG_WRITE_TIMEOUT, stream.write_all(&self.staged)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(format!("write failed: {error}")),
                    Err(_) => Err("write timed out".to_owned()),
                }
            }
        }
    }
}

// --- HTTP ---

struct HttpWorker {
    plan: HttpPlan,
    client: HttpClient,
    counters: Arc<Counters>,
    batch: Vec<Entry>,
    health: Health,
}

impl HttpWorker {
    fn new(plan: HttpPlan, client: HttpClient, counters: Arc<Counters>) -> Self {
        Self {
            batch: Vec::with_capacity(plan.batch_size.min(1024)),
            plan,
            client,
            counters,
            health: Health::new(),
        }
    }

    async fn run(&mut self, rx: &mut mpsc::Receiver<Entry>) {
        loop {
            match rx.recv().await {
                Some(entry) => self.batch.push(entry),
                None => return,
            }
            let flush_at = Instant::now() + HTTP_FLUSH_AFTER;
            while self.batch.len() < self.plan.batch_size {
                match tokio::time::timeout_at(flush_at, rx.recv()).await {
                    Ok(Some(entry)) => self.batch.push(entry),
                    // Closed (flush now, then the next `recv` ends the task) or the batch is due.
                    Ok(None) | Err(_) => break,
                }
            }
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        match self.deliver().await {
            Ok(()) => {
                Counters::add(&self.counters.sent, self.batch.len());
                self.health.succeeded(&self.plan.target);
            }
            Err(error) => {
                Counters::add(&self.counters.failed, self.batch.len());
                self.health.failed(&self.plan.target, &error);
            }
        }
        self.batch.clear();
    }

    async fn deliver(&self) -> Result<(), String> {
        let authorization = match &self.plan.token {
            None => None,
            Some(source) => Some(read_token(source).await?),
        };
        let body = batch_body(&self.batch);
        let mut backoff = Backoff::new(HTTP_BACKOFF_START, HTTP_BACKOFF_CAP);
        let mut last_error = String::new();
        for attempt in 1..=HTTP_MAX_ATTEMPTS {
            let request = self.request(body.clone(), authorization.as_ref())?;
            let wait = match tokio::time::timeout(HTTP_REQUEST_TIMEOUT, post(&self.client, request)).await {
                Ok(Ok((status, _))) if status.is_success() => return Ok(()),
                Ok(Ok((status, retry_after)))
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() =>
                {
                    last_error = format!("collector answered {status}");
                    retry_after.unwrap_or_else(|| backoff.next_wait())
                }
                Ok(Ok((status, _))) => return Err(format!("collector answered {status} (not retried)")),
                Ok(Err(error)) => {
                    last_error = error;
                    backoff.next_wait()
                }
                Err(_) => {
                    last_error = format!("no answer within {HTTP_REQUEST_TIMEOUT:?}");
                    backoff.next_wait()
                }
            };
            if attempt < HTTP_MAX_ATTEMPTS {
                tracing::debug!(target_url = %self.plan.target, attempt, error = %last_error, ?wait, "retrying threat-log batch");
                tokio::time::sleep(wait).await;
            }
        }
        Err(format!(
            "gave up after {HTTP_MAX_ATTEMPTS} attempts: {last_error}"
        ))
    }

    fn request(
        &self,
        body: Bytes,
        authorization: Option<&HeaderValue>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let mut request = http::Request::post(self.plan.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("airlock-sidecar/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|error| format!("cannot build the request: {error}"))?;
        if let Some(authorization) = authorization {
            request.headers_mut().insert(AUTHORIZATION, authorization.clone());
        }
        Ok(request)
    }
}

/// `Bearer <token>` from the token file, trimmed. The errors name the file, never its contents.
async fn read_token(source: &TokenSource) -> Result<HeaderValue, String> {
    let path = match source {
        TokenSource::File(path) => path,
        TokenSource::NoTokenDir => {
            return Err(
                "secretRef is set but no token directory is configured; not sending without credentials"
                    .to_owned(),
            );
        }
    };
    let raw = tokio::fs::read_to_string(path).await.map_err(|error| {
        format!(
            "cannot read the bearer token {}: {error}; not sending without credentials",
            path.display()
        )
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(format!(
            "the bearer token {} is empty; not sending without credentials",
            path.display()
        ));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| format!("the bearer token {} is not a valid header value", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A JSON array of the entries, each already a JSON object.
fn batch_body(entries: &[Entry]) -> Bytes {
    let length = entries.iter().map(|entry| entry.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(length);
    body.push(b'[');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(entry.as_bytes());
    }
    body.push(b']');
    Bytes::from(body)
}

/// Sends one request; the status and a `Retry-After` in seconds (capped) if there is one.
async fn post(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<Duration>), String> {
    let response = client
        .request(request)
        .await
        .map_err(|error| error_chain(&error))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(HTTP_RETRY_AFTER_CAP));
    // Read what the collector says so the connection can be reused; its content does not matter.
    let _ = Limited::new(response.into_body(), HTTP_RESPONSE_LIMIT)
        .collect()
        .await;
    Ok((status, retry_after))
}

/// An error and its sources, `outer: inner: …` (hyper's top-level messages alone say little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339_utc(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_utc(at(951_782_400, 1)), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            rfc3339_utc(at(951_868_799, 999_999)),
            "2000-02-29T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339_utc(at(1_709_211_909, 4_200)),
            "2024-02-29T13:05:09.004200Z"
        );
        assert_eq!(
            rfc3339_utc(at(1_735_689_599, 500_000)),
            "2024-12-31T23:59:59.500000Z"
        );
        assert_eq!(rfc3339_utc(at(1_735_689_600, 0)), "2025-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_utc(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000000Z");
        assert_eq!(rfc3339_utc(at(253_402_300_799, 0)), "9999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn a_clock_before_1970_is_written_as_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339_utc(before), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn civil_from_days_walks_every_day_of_four_centuries() {
        // Compare against a naive calendar walk from 1970-01-01 over 400 years (a full Gregorian cycle).
        let is_leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u64, m: u64| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        assert_eq!(syslog_pri(SyslogFacility::User, SEVERITY_NOTICE), 13);
        assert_eq!(syslog_pri(SyslogFacility::Daemon, SEVERITY_WARNING), 28);
        assert_eq!(syslog_pri(SyslogFacility::Auth, SEVERITY_NOTICE), 37);
        assert_eq!(syslog_pri(SyslogFacility::Local0, SEVERITY_WARNING), 132);
        assert_eq!(syslog_pri(SyslogFacility::Local0, SEVERITY_NOTICE), 133);
        assert_eq!(syslog_pri(SyslogFacility::Local7, SEVERITY_NOTICE), 189);
    }

    #[test]
    fn blocks_are_warnings_and_everything_else_is_a_notice() {
        assert_eq!(
            entry_severity(r#"{"report_id":"r1","action":"block"}"#),
            SEVERITY_WARNING
        );
        assert_eq!(entry_severity(r#"{ "action" : "block" }"#), SEVERITY_WARNING);
        assert_eq!(entry_severity(r#"{"action":"alert"}"#), SEVERITY_NOTICE);
        assert_eq!(entry_severity(r#"{"action":"mask"}"#), SEVERITY_NOTICE);
        assert_eq!(
            entry_severity(r#"{"detail":{"action":"block"}}"#),
            SEVERITY_NOTICE
        );
        assert_eq!(
            entry_severity(r#"{"text":"\"action\":\"block\""}"#),
            SEVERITY_NOTICE
        );
        assert_eq!(entry_severity("not json"), SEVERITY_NOTICE);
    }

    #[test]
    fn hostname_is_pod_name_then_hostname_then_nil() {
        assert_eq!(syslog_hostname(Some("app-7d9"), Some("node")), "app-7d9");
        assert_eq!(syslog_hostname(None, Some("node")), "node");
        assert_eq!(syslog_hostname(Some(""), Some("node")), "node");
        assert_eq!(syslog_hostname(Some("a b\tc"), None), "abc");
        assert_eq!(syslog_hostname(Some(" \u{e9} "), None), "-");
        assert_eq!(syslog_hostname(None, None), "-");
        assert_eq!(syslog_hostname(Some(&"x".repeat(300)), None).len(), 255);
    }

    #[test]
    fn messages_follow_rfc5424_and_tcp_frames_are_octet_counted() {
        let header = SyslogHeader {
            hostname: "pod-1".to_owned(),
            procid: "42".to_owned(),
        };
        let entry = r#"{"action":"block","report_id":"r1"}"#;
        let now = at(1_709_211_909, 4_200);

        let mut udp = Vec::new();
        push_syslog_message(
            &mut udp,
            &header,
            SyslogFacility::Local0,
            SyslogProtocol::Udp,
            now,
            entry,
        );
        let message = format!("<132>1 2024-02-29T13:05:09.004200Z pod-1 airlock-sidecar 42 threat - {entry}");
        assert_eq!(String::from_utf8(udp).unwrap(), message);

        let mut tcp = Vec::new();
        push_syslog_message(
            &mut tcp,
            &header,
            SyslogFacility::Local0,
            SyslogProtocol::Tcp,
            now,
            entry,
        );
        push_syslog_message(
            &mut tcp,
            &header,
            SyslogFacility::Local0,
            SyslogProtocol::Tcp,
            now,
            entry,
        );
        let frame = format!("{} {message}", message.len());
        assert_eq!(String::from_utf8(tcp).unwrap(), format!("{frame}{frame}"));
    }

    #[test]
    fn entries_too_big_for_a_datagram_become_a_stub_with_the_verdict_ids() {
        let header = SyslogHeader {
            hostname: "-".to_owned(),
            procid: "1".to_owned(),
        };
        let entry = serde_json::json!({
            "report_id": "r1", "tr_id": "t1", "profile": "strict", "action": "block",
            "excerpt": "x".repeat(MAX_UDP_MESSAGE),
        })
        .to_string();
        let mut out = Vec::new();
        push_syslog_message(
            &mut out,
            &header,
            SyslogFacility::User,
            SyslogProtocol::Udp,
            at(0, 0),
            &entry,
        );
        assert!(out.len() <= MAX_UDP_MESSAGE);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<12>1 "), "still a warning: {text}");
        let body: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "truncated": true, "original_bytes": entry.len(),
                "report_id": "r1", "tr_id": "t1", "profile": "strict", "action": "block",
            })
        );

        // TCP has no such limit.
        let mut tcp = Vec::new();
        push_syslog_message(
            &mut tcp,
            &header,
            SyslogFacility::User,
            SyslogProtocol::Tcp,
            at(0, 0),
            &entry,
        );
        assert!(String::from_utf8(tcp).unwrap().ends_with(&entry));
    }

    #[test]
    fn a_stub_of_something_that_is_not_json_only_says_how_big_it_was() {
        assert_eq!(
            truncation_stub("garbage"),
            r#"{"original_bytes":7,"truncated":true}"#
        );
    }

    #[test]
    fn addresses_are_host_port_or_bracketed_ipv6() {
        assert_eq!(
            parse_address("syslog.logging.svc:514"),
            Some(("syslog.logging.svc".to_owned(), 514))
        );
        assert_eq!(
            parse_address("10.0.0.1:6514"),
            Some(("10.0.0.1".to_owned(), 6514))
        );
        assert_eq!(parse_address("[fd00::1]:514"), Some(("fd00::1".to_owned(), 514)));
        for bad in [
            "syslog",
            "syslog:",
            ":514",
            "host:0",
            "host:70000",
            "fd00::1:514",
            "[host]:514",
            "[fd00::1:514",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_show_no_credentials_or_query() {
        let target = |url: &str| redacted_target(&url.parse().unwrap());
        assert_eq!(
            target("https://siem.example.com/ingest?token=secret").as_deref(),
            Some("https://siem.example.com/ingest")
        );
        assert_eq!(
            target("HTTP://user:pw@10.0.0.1:8080/a/b").as_deref(),
            Some("http://10.0.0.1:8080/a/b")
        );
        assert_eq!(
            target("https://siem.example.com").as_deref(),
            Some("https://siem.example.com/")
        );
        assert_eq!(target("ftp://siem.example.com/x"), None);
        assert_eq!(target("/relative"), None);
        assert_eq!(
            redacted_url_text("https://user:pw@host/p?q=secret"),
            "https://host/p"
        );
    }

    #[test]
    fn secret_names_cannot_leave_the_token_directory() {
        assert!(is_plain_file_name("siem-token"));
        assert!(is_plain_file_name("token"));
        for bad in ["", ".", "..", "../etc", "a/b", "a\\b"] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn batches_are_json_arrays_of_the_entries() {
        let entries: Vec<Entry> = vec![Arc::from(r#"{"a":1}"#), Arc::from(r#"{"b":2}"#)];
        assert_eq!(&batch_body(&entries)[..], br#"[{"a":1},{"b":2}]"#);
        assert_eq!(&batch_body(&entries[..1])[..], br#"[{"a":1}]"#);
        let parsed: serde_json::Value = serde_json::from_slice(&batch_body(&entries)).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let expected_steps = [100, 200, 400, 800, 1000, 1000];
        for step in expected_steps {
            let wait = backoff.next_wait();
            let step = Duration::from_millis(step);
            assert!(wait >= step / 2 && wait <= step, "{wait:?} for step {step:?}");
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_missing_token_is_reported_without_its_contents() {
        let error = read_token(&TokenSource::File(PathBuf::from("/nonexistent/airlock/token")))
            .await
            .unwrap_err();
        assert!(error.contains("/nonexistent/airlock/token"), "{error}");
        assert!(error.contains("not sending without credentials"), "{error}");
        assert!(read_token(&TokenSource::NoTokenDir).await.is_err());
    }
}
