//! The enforcement proxy: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on the outbound port for apps
//! and on the inbound port for model servers; every request and response of a recognised LLM API is
//! scanned under the policy and allowed, logged, masked or blocked; model-DoS limits apply per caller.
//!
//! Requests are read whole (bounded) because a verdict needs the whole prompt; responses are read whole
//! (bounded) unless streamed, and streamed responses (`text/event-stream`, `application/x-ndjson`) pass
//! frame by frame through the [`StreamScanner`]. The upstream is asked for an identity encoding so
//! responses can be scanned; a compressed response anyway is handled by the failure mode.

mod client;
mod http_util;
pub mod reload;
pub mod run;
pub mod serve;

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use airlock_crds::v1alpha1::profile::{StreamingMode, UnknownApis, Verbosity};
use airlock_crds::v1alpha1::{DetectionAction, FailureMode};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::admin::{DirectionLabels, Metrics, ReasonLabels, RequestLabels, VerdictLabels};
use crate::engine::{ScanResult, Source};
use crate::extract::{self, Text};
use crate::forward::Forwarders;
use crate::limits::{LimitConfig, Limited, Limiter, StreamPermit, estimate_tokens};
use crate::policyset::PolicySet;
use crate::profile::Policy;
use crate::routes::{Routes, Upstream};
use crate::scan::{mask_in_place, scan_texts};
use crate::stream::{Frame, FrameParser, Framing, StreamMode, StreamScanner};
use crate::threatlog::{self, DestinationInfo, Direction, Entry, Ids, SourceInfo};
use crate::verdict::{Action, Decided, Verdict, decide};

pub use client::{UpstreamClient, build_client};
pub use http_util::ProxyBody;
use http_util::{error_body, full, json_error, stream_error_frame};

/// Largest request body read when the profile sets no `maxPromptBytes`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Largest non-streamed response body scanned.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Bodies larger than this are scanned on the blocking pool under the latency budget.
const INLINE_SCAN_BYTES: usize = 32 << 10;

/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Outbound,
    Inbound,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Outbound => "outbound",
            Listener::Inbound => "inbound",
        }
    }
}

/// The pod the sidecar runs in (from the downward API), for threat logs.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub ip: Option<IpAddr>,
    /// `spec.serviceAccountName`.
    pub service_account: Option<String>,
}

/// Settings that do not change with the policy.
#[derive(Clone, Debug)]
pub struct Settings {
    pub routes: Routes,
    pub pod: PodInfo,
    /// `AIRLOCK_MODE=audit` forces audit whatever the policy says.
    pub force_audit: bool,
    /// `AIRLOCK_FAILURE_MODE` from the instance, overriding the profile's.
    pub failure_mode: Option<FailureMode>,
    /// Time allowed for the upstream's response head, and between body chunks.
    pub upstream_timeout: Duration,
    /// Time allowed for a client to send its whole request body.
    pub body_timeout: Duration,
    /// Directory of HTTP forwarder bearer tokens.
    pub token_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings with the given routes and the defaults: 300 s upstream timeout, 30 s body timeout.
    pub fn new(routes: Routes) -> Settings {
        Settings {
            routes,
            pod: PodInfo::default(),
            force_audit: false,
            failure_mode: None,
            upstream_timeout: Duration::from_secs(300),
            body_timeout: Duration::from_secs(30),
            token_dir: None,
        }
    }
}

/// The policy in force, swapped whole on reload.
#[derive(Debug)]
pub struct Active {
    pub set: PolicySet,
    /// One limiter per profile name (rules may pick another profile).
    limiters: Vec<(String, Arc<Limiter>)>,
    pub forwarders: Arc<Forwarders>,
}

impl Active {
    /// Builds the active state, keeping limiter state (and forwarders) of `previous` where the settings
    /// did not change.
    pub fn new(
        set: PolicySet,
        previous: Option<&Active>,
        token_dir: Option<&std::path::Path>,
    ) -> crate::Result<Active> {
        let mut limiters = Vec::new();
        let mut policies: Vec<&Arc<Policy>> = vec![&set.default];
        policies.extend(set.profiles());
        for policy in policies {
            let config = LimitConfig::from_spec(policy.spec.model_protection.as_ref());
            let reuse = previous.and_then(|p| {
                p.limiters
                    .iter()
                    .find(|(name, l)| name == &policy.name && l.config() == &config)
                    .map(|(_, l)| l.clone())
            });
            limiters.push((
                policy.name.clone(),
                reuse.unwrap_or_else(|| Arc::new(Limiter::new(config))),
            ));
        }
        let wanted = forwarder_config(&set);
        let forwarders = match previous {
            Some(p) if forwarder_config(&p.set) == wanted => p.forwarders.clone(),
            _ => Arc::new(Forwarders::start(&wanted, token_dir)?),
        };
        Ok(Active {
            set,
            limiters,
            forwarders,
        })
    }

    fn limiter(&self, policy: &str) -> Option<&Arc<Limiter>> {
        self.limiters.iter().find(|(n, _)| n == policy).map(|(_, l)| l)
    }
}

fn forwarder_config(set: &PolicySet) -> Vec<airlock_crds::v1alpha1::profile::Forwarder> {
    set.default
        .spec
        .logging
        .as_ref()
        .map(|l| l.forwarders.clone())
        .unwrap_or_default()
}

/// Threat-log output: a writer thread behind a bounded queue, so a blocked stdout never stalls traffic.
#[derive(Debug)]
pub struct ThreatLog {
    tx: std::sync::mpsc::SyncSender<String>,
    dropped: std::sync::atomic::AtomicU64,
}

impl ThreatLog {
    /// Writes lines to `out` on a thread of its own.
    pub fn spawn(mut out: Box<dyn std::io::Write + Send>) -> ThreatLog {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(8192);
        std::thread::Builder::new()
            .name("threat-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    if writeln!(out, "{line}").is_err() {
                        break;
                    }
                    // Flush when the queue is drained, so lines appear promptly but writes batch.
                    if let Err(std::sync::mpsc::TryRecvError::Empty) = rx.try_recv().map(|l| {
                        let _ = writeln!(out, "{l}");
                    }) {
                        let _ = out.flush();
                    }
                }
                let _ = out.flush();
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the threat-log writer"));
        ThreatLog {
            tx,
            dropped: Default::default(),
        }
    }

    fn write(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    active: RwLock<Arc<Active>>,
    client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    ids: Ids,
    settings: Settings,
    log: ThreatLog,
}

/// An early answer: the request is refused before it reaches the upstream.
struct Refusal {
    status: StatusCode,
    body: Value,
    retry_after: Option<Duration>,
}

impl Proxy {
    pub fn new(active: Active, client: UpstreamClient, settings: Settings, log: ThreatLog) -> Proxy {
        Proxy {
            active: RwLock::new(Arc::new(active)),
            client,
            metrics: Arc::new(Metrics::new()),
            ids: Ids::new(),
            settings,
            log,
        }
    }

    /// The policy in force.
    pub fn active(&self) -> Arc<Active> {
        self.active.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a new policy in force; requests in flight finish under the old one.
    pub fn swap(&self, active: Active) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Entries the threat log dropped, and entries forwarders dropped.
    pub fn dropped_log_entries(&self) -> u64 {
        let forwarders: u64 = self
            .active()
            .forwarders
            .counts()
            .iter()
            .map(|c| c.dropped + c.failed)
            .sum();
        self.log.dropped.load(std::sync::atomic::Ordering::Relaxed) + forwarders
    }

    /// Handles one request. Never fails: every problem becomes a response.
    pub async fn handle(
        self: Arc<Self>,
        listener: Listener,
        peer: SocketAddr,
        upstream: Option<Upstream>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let response = self.handle_inner(listener, peer, upstream, req).await;
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                listener: listener.label(),
                code: response.status().as_u16(),
            })
            .inc();
        response
    }

    async fn handle_inner(
        self: &Arc<Self>,
        listener: Listener,
        peer: SocketAddr,
        upstream: Option<Upstream>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let active = self.active();
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let upstream = upstream.unwrap_or_else(|| self.settings.routes.pick(&path).clone());
        let tr_id = self.ids.next();
        let source_ip = canonical_ip(peer.ip());
        let enforce = active.set.enforce && !self.settings.force_audit;

        if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "airlock_invalid_request",
                "content_encoding",
                "compressed request bodies cannot be scanned; send the body uncompressed",
                None,
            );
        }

        // Size cap: the profile's maxPromptBytes (403, a model-DoS limit) or the proxy's own (413).
        let profile_cap = active
            .set
            .default
            .spec
            .model_protection
            .as_ref()
            .and_then(|m| m.max_prompt_bytes)
            .and_then(|b| usize::try_from(b).ok());
        let cap = profile_cap.map_or(DEFAULT_MAX_BODY_BYTES, |c| c.min(DEFAULT_MAX_BODY_BYTES));
        let body = match http_util::read_body(body, cap, self.settings.body_timeout).await {
            Ok(b) => b,
            Err(http_util::ReadError::TooLarge) => {
                let limited = profile_cap.is_some() && enforce;
                self.metrics
                    .limited
                    .get_or_create(&ReasonLabels {
                        reason: "prompt_bytes",
                    })
                    .inc();
                return if limited {
                    json_error(
                        StatusCode::FORBIDDEN,
                        "airlock_blocked",
                        "model_dos",
                        &format!(
                            "the request body is larger than the profile's maxPromptBytes ({cap} bytes)"
                        ),
                        Some(&self.ids.next()),
                    )
                } else {
                    json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "airlock_invalid_request",
                        "body_too_large",
                        &format!("the request body is larger than {cap} bytes"),
                        None,
                    )
                };
            }
            Err(http_util::ReadError::Timeout) => {
                return json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "airlock_invalid_request",
                    "body_timeout",
                    "the request body did not arrive in time",
                    None,
                );
            }
            Err(http_util::ReadError::Body(e)) => {
                tracing::debug!(error = %e, "client body failed");
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "airlock_invalid_request",
                    "body",
                    "the request body could not be read",
                    None,
                );
            }
        };

        let api = classify(&parts.method, &path);
        let mut json: Option<Value> = None;
        if !body.is_empty() {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) => json = Some(v),
                Err(e) if api.known() => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "airlock_invalid_request",
                        "invalid_json",
                        &format!("the request body of {path} is not valid JSON: {e}"),
                        None,
                    );
                }
                Err(_) => {}
            }
        }
        if api.known() && json.as_ref().is_some_and(|v| !v.is_object()) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "airlock_invalid_request",
                "invalid_json",
                &format!("the request body of {path} must be a JSON object"),
                None,
            );
        }
        let model = json
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let dest_ip = match listener {
            Listener::Inbound => self.settings.pod.ip,
            Listener::Outbound => upstream.host().parse().ok(),
        };
        let selected = active
            .set
            .select(source_ip, upstream.host(), dest_ip, model.as_deref());
        let policy = selected.policy.clone();
        let rule = selected.rule.map(str::to_string);
        let rule_action = selected.action;
        let ctx = LogContext {
            tr_id: tr_id.clone(),
            policy: policy.clone(),
            instance: active.set.instance.clone(),
            enforce,
            source: self.source_info(listener, source_ip, &active.set),
            destination: DestinationInfo {
                host: upstream.host().to_string(),
                model: model.clone(),
                path: path.clone(),
            },
            forwarders: active.forwarders.clone(),
        };

        if rule_action == DetectionAction::Block {
            let message = format!(
                "blocked by rule `{}` of instance `{}`",
                rule.as_deref().unwrap_or("?"),
                active.set.instance
            );
            let refusal = self.refuse_prompt(&ctx, "policy", &message, started);
            if enforce {
                return refusal;
            }
        }

        // Extracted once: the limits count its tokens and the scan reads it.
        let mut texts = prompt_texts(json.as_ref(), &body);
        let limiter = active.limiter(&policy.name).cloned();
        let mut body = body;
        let mut stream_permit: Option<StreamPermit> = None;
        let streaming_requested = json.as_ref().is_some_and(|v| wants_stream(api, v));
        if let (Some(limiter), Some(v)) = (limiter.as_ref(), json.as_mut()) {
            match self.apply_limits(
                &ctx,
                limiter,
                peer,
                &parts.headers,
                v,
                body.len(),
                // Counted only when a limit reads the count: it costs about as much as a DLP pass.
                if limiter.config().counts_tokens() {
                    texts.iter().map(|t| estimate_tokens(&t.text)).sum()
                } else {
                    0
                },
                streaming_requested,
                started,
            ) {
                Ok((changed, permit)) => {
                    stream_permit = permit;
                    if changed {
                        // The cap may have replaced a string field; the scan must see the body as sent.
                        texts = prompt_texts(Some(v), &body);
                        if enforce {
                            body = Bytes::from(serde_json::to_vec(v).unwrap_or_else(|_| body.to_vec()));
                        }
                    }
                }
                Err(refusal) => {
                    if enforce {
                        return refusal_response(refusal);
                    }
                }
            }
        }

        // Scan the prompt.
        let unknown_policy = policy.spec.unknown_apis;
        let skip_scan = !api.known() && unknown_policy == UnknownApis::Pass;
        if !api.known() && unknown_policy == UnknownApis::Block && enforce && parts.method != Method::GET {
            let message = format!("{path} is not a recognised LLM API and the profile blocks unknown APIs");
            return self.refuse_prompt(&ctx, "unknown_api", &message, started);
        }
        if !skip_scan && !body.is_empty() {
            let outcome = self.scan(&policy, &texts, Direction::Prompt).await;
            let report_id = self.ids.next();
            match outcome {
                Ok(result) => {
                    let verdict = decide(&policy.actions, &result);
                    let action = effective(verdict.action, enforce);
                    let excerpts = excerpts(&policy, &texts, &verdict.detections);
                    let forced_alert =
                        rule_action == DetectionAction::Alert && verdict.action == Action::Allow;
                    let logged_action = if forced_alert {
                        Action::Alert
                    } else {
                        verdict.action
                    };
                    self.count_verdict(Direction::Prompt, &verdict);
                    let reason = rule
                        .as_ref()
                        .filter(|_| forced_alert)
                        .map(|r| format!("rule `{r}` alerts"));
                    self.log_verdict(
                        &ctx,
                        &report_id,
                        Direction::Prompt,
                        logged_action,
                        &verdict.detections,
                        started.elapsed(),
                        reason.as_deref(),
                        excerpts,
                    );
                    match action {
                        Action::Block => {
                            return json_error(
                                StatusCode::FORBIDDEN,
                                "airlock_blocked",
                                strongest_category(&verdict),
                                &block_message(&verdict, Direction::Prompt),
                                Some(&report_id),
                            );
                        }
                        Action::Mask => {
                            body = match json.as_mut() {
                                Some(v) => {
                                    mask_in_place(&policy, v, &texts, &verdict);
                                    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
                                }
                                None => {
                                    let spans: Vec<_> = verdict.to_mask().collect();
                                    let text = texts.first().map(|t| t.text.as_str()).unwrap_or("");
                                    Bytes::from(policy.engine.mask(text, &spans))
                                }
                            };
                        }
                        Action::Alert | Action::Allow => {}
                    }
                }
                Err(failure) => {
                    if let Some(response) =
                        self.scan_failed(&ctx, &report_id, Direction::Prompt, failure, started)
                    {
                        return response;
                    }
                }
            }
        }
        let added_before = started.elapsed();

        // Forward.
        let upstream_req = match http_util::upstream_request(&parts, &upstream, &path_and_query, body) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "airlock_invalid_request",
                    "uri",
                    &format!("cannot build the upstream request: {e}"),
                    None,
                );
            }
        };
        let response = match tokio::time::timeout(
            self.settings.upstream_timeout,
            self.client.request(upstream_req),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&ReasonLabels { reason: "connect" })
                    .inc();
                tracing::warn!(upstream = %upstream.authority, error = %error_chain(&e), "upstream request failed");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "airlock_upstream_error",
                    "upstream_unavailable",
                    &format!("the upstream {} could not be reached", upstream.authority),
                    None,
                );
            }
            Err(_) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&ReasonLabels { reason: "timeout" })
                    .inc();
                return json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "airlock_upstream_error",
                    "upstream_timeout",
                    &format!("the upstream {} did not answer in time", upstream.authority),
                    None,
                );
            }
        };
        let (mut resp_parts, resp_body) = response.into_parts();
        http_util::strip_hop_by_hop(&mut resp_parts.headers);
        let content_type = resp_parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let encoded = resp_parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let response_scanned = !skip_scan && (api.known() || unknown_policy == UnknownApis::ScanAsText);

        if !response_scanned {
            self.metrics.added_latency.observe(added_before.as_secs_f64());
            return Response::from_parts(resp_parts, http_util::passthrough(resp_body));
        }
        if encoded {
            self.metrics
                .scan_failures
                .get_or_create(&ReasonLabels {
                    reason: "encoded_response",
                })
                .inc();
            let report_id = self.ids.next();
            if let Some(r) = self.scan_failed(
                &ctx,
                &report_id,
                Direction::Response,
                ScanFailure::Encoded,
                started,
            ) {
                return r;
            }
            return Response::from_parts(resp_parts, http_util::passthrough(resp_body));
        }
        let framing = if content_type.starts_with("text/event-stream") {
            Some(Framing::Sse)
        } else if content_type.starts_with("application/x-ndjson") {
            Some(Framing::Ndjson)
        } else {
            None
        };
        if let Some(framing) = framing {
            self.metrics.added_latency.observe(added_before.as_secs_f64());
            resp_parts.headers.remove(header::CONTENT_LENGTH);
            let body = self
                .clone()
                .stream_response(ctx, framing, resp_body, stream_permit);
            return Response::from_parts(resp_parts, body);
        }

        // A whole response.
        let resp_started = Instant::now();
        let bytes = match http_util::read_body(resp_body, MAX_RESPONSE_BYTES, self.settings.upstream_timeout)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&ReasonLabels {
                        reason: "response_body",
                    })
                    .inc();
                let message = match e {
                    http_util::ReadError::TooLarge => format!(
                        "the upstream response is larger than {MAX_RESPONSE_BYTES} bytes and cannot be scanned"
                    ),
                    http_util::ReadError::Timeout => {
                        "the upstream response body did not arrive in time".to_string()
                    }
                    http_util::ReadError::Body(_) => {
                        "the upstream closed the connection in the middle of the response".to_string()
                    }
                };
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "airlock_upstream_error",
                    "upstream_response",
                    &message,
                    None,
                );
            }
        };
        let mut out = bytes.clone();
        if !bytes.is_empty() {
            let parsed = serde_json::from_slice::<Value>(&bytes).ok();
            let texts = match &parsed {
                Some(v) => extract::response_texts(v).texts,
                None => vec![Text {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    source: Source::Assistant,
                    pointer: String::new(),
                }],
            };
            let report_id = self.ids.next();
            match self.scan(&policy, &texts, Direction::Response).await {
                Ok(result) => {
                    let verdict = decide(&policy.actions, &result);
                    let action = effective(verdict.action, enforce);
                    self.count_verdict(Direction::Response, &verdict);
                    let excerpts = excerpts(&policy, &texts, &verdict.detections);
                    self.log_verdict(
                        &ctx,
                        &report_id,
                        Direction::Response,
                        verdict.action,
                        &verdict.detections,
                        added_before + resp_started.elapsed(),
                        None,
                        excerpts,
                    );
                    match action {
                        Action::Block => {
                            self.metrics
                                .added_latency
                                .observe((added_before + resp_started.elapsed()).as_secs_f64());
                            return json_error(
                                StatusCode::FORBIDDEN,
                                "airlock_blocked",
                                strongest_category(&verdict),
                                &block_message(&verdict, Direction::Response),
                                Some(&report_id),
                            );
                        }
                        Action::Mask => {
                            out = match parsed {
                                Some(mut v) => {
                                    mask_in_place(&policy, &mut v, &texts, &verdict);
                                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                                }
                                None => {
                                    let spans: Vec<_> = verdict.to_mask().collect();
                                    Bytes::from(policy.engine.mask(&texts[0].text, &spans))
                                }
                            };
                        }
                        Action::Alert | Action::Allow => {}
                    }
                }
                Err(failure) => {
                    if let Some(r) = self.scan_failed(&ctx, &report_id, Direction::Response, failure, started)
                    {
                        return r;
                    }
                }
            }
        }
        self.metrics
            .added_latency
            .observe((added_before + resp_started.elapsed()).as_secs_f64());
        resp_parts.headers.remove(header::CONTENT_LENGTH);
        if let Ok(len) = HeaderValue::from_str(&out.len().to_string()) {
            resp_parts.headers.insert(header::CONTENT_LENGTH, len);
        }
        Response::from_parts(resp_parts, full(out))
    }

    /// Logs a prompt refused before scanning (by a rule or the unknown-API setting) and answers 403.
    fn refuse_prompt(
        &self,
        ctx: &LogContext,
        code: &str,
        message: &str,
        started: Instant,
    ) -> Response<ProxyBody> {
        let report_id = self.ids.next();
        self.log_verdict(
            ctx,
            &report_id,
            Direction::Prompt,
            Action::Block,
            &[],
            started.elapsed(),
            Some(message),
            None,
        );
        json_error(
            StatusCode::FORBIDDEN,
            "airlock_blocked",
            code,
            message,
            Some(&report_id),
        )
    }

    /// Who sent a request. Outbound requests come from the app in this very pod; inbound ones from
    /// elsewhere, named by the bundle's service accounts when it carries them.
    fn source_info(&self, listener: Listener, source_ip: IpAddr, set: &PolicySet) -> SourceInfo {
        let own = &self.settings.pod;
        let (pod, namespace, service_account) = match listener {
            Listener::Outbound => (
                own.name.clone(),
                own.namespace.clone(),
                own.service_account.clone(),
            ),
            Listener::Inbound => match set.service_account_of(source_ip) {
                Some((namespace, name)) => (None, Some(namespace.to_owned()), Some(name.to_owned())),
                None => (None, None, None),
            },
        };
        SourceInfo {
            pod,
            // A service account without its namespace names no one.
            service_account: service_account.filter(|_| namespace.is_some()),
            namespace,
            ip: source_ip.to_string(),
            address_groups: set.groups_of(source_ip),
        }
    }

    /// Size caps, the output-token cap, rate limits and the stream slot. `Ok((body changed, permit))`.
    #[allow(clippy::too_many_arguments)]
    fn apply_limits(
        &self,
        ctx: &LogContext,
        limiter: &Limiter,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: &mut Value,
        body_bytes: usize,
        prompt_tokens: u64,
        streaming: bool,
        started: Instant,
    ) -> Result<(bool, Option<StreamPermit>), Refusal> {
        let config = limiter.config();
        let account = ctx
            .source
            .namespace
            .as_deref()
            .zip(ctx.source.service_account.as_deref());
        let caller = config.caller_key(peer, headers, account);
        let refuse = |limited: Limited, status: StatusCode| {
            self.metrics
                .limited
                .get_or_create(&ReasonLabels {
                    reason: limited.reason.as_str(),
                })
                .inc();
            let report_id = self.ids.next();
            let reason = format!(
                "model-DoS limit `{}`: {}",
                limited.reason.as_str(),
                limited.message
            );
            self.log_verdict(
                ctx,
                &report_id,
                Direction::Prompt,
                if config.alert_only {
                    Action::Alert
                } else {
                    Action::Block
                },
                &[],
                started.elapsed(),
                Some(&reason),
                None,
            );
            let (kind, retry) = if status == StatusCode::TOO_MANY_REQUESTS {
                (
                    "airlock_rate_limited",
                    Some(limited.retry_after.max(Duration::from_secs(1))),
                )
            } else {
                ("airlock_blocked", None)
            };
            Refusal {
                status,
                body: error_body(kind, "model_dos", &limited.message, Some(&report_id)),
                retry_after: retry,
            }
        };
        let alert_only = config.alert_only;
        if let Err(limited) = config.check_size(body_bytes, prompt_tokens) {
            let r = refuse(limited, StatusCode::FORBIDDEN);
            if !alert_only {
                return Err(r);
            }
        }
        let changed = config.cap_output_tokens(body);
        let output = requested_output_tokens(body);
        if let Err(limited) = limiter.admit(&caller, Instant::now(), prompt_tokens + output) {
            let r = refuse(limited, StatusCode::TOO_MANY_REQUESTS);
            if !alert_only {
                return Err(r);
            }
        }
        let mut permit = None;
        if streaming {
            match limiter.open_stream(&caller) {
                Ok(p) => permit = Some(p),
                Err(limited) => {
                    let r = refuse(limited, StatusCode::TOO_MANY_REQUESTS);
                    if !alert_only {
                        return Err(r);
                    }
                }
            }
        }
        Ok((changed, permit))
    }

    /// Scans `texts`, inline when small, else on the blocking pool within the profile's latency budget;
    /// a finished scan's time goes to `airlock_sidecar_scan_seconds`.
    async fn scan(
        &self,
        policy: &Arc<Policy>,
        texts: &[Text],
        direction: Direction,
    ) -> Result<ScanResult, ScanFailure> {
        let started = Instant::now();
        let result = self.scan_inner(policy, texts).await;
        if result.is_ok() {
            self.metrics
                .scan_seconds
                .get_or_create(&DirectionLabels {
                    direction: direction.label(),
                })
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn scan_inner(&self, policy: &Arc<Policy>, texts: &[Text]) -> Result<ScanResult, ScanFailure> {
        let size: usize = texts.iter().map(|t| t.text.len()).sum();
        if size <= INLINE_SCAN_BYTES {
            return std::panic::catch_unwind(AssertUnwindSafe(|| scan_texts(policy, texts)))
                .map_err(|_| ScanFailure::Engine);
        }
        let budget =
            Duration::from_millis(u64::try_from(policy.spec.max_inline_latency_ms.max(1)).unwrap_or(500));
        let (policy, texts) = (policy.clone(), texts.to_vec());
        match tokio::time::timeout(
            budget,
            tokio::task::spawn_blocking(move || scan_texts(&policy, &texts)),
        )
        .await
        {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(ScanFailure::Engine),
            Err(_) => Err(ScanFailure::Timeout),
        }
    }

    /// Applies the failure mode. `Some(response)` when the request must be refused.
    fn scan_failed(
        &self,
        ctx: &LogContext,
        report_id: &str,
        direction: Direction,
        failure: ScanFailure,
        started: Instant,
    ) -> Option<Response<ProxyBody>> {
        self.metrics
            .scan_failures
            .get_or_create(&ReasonLabels {
                reason: failure.label(),
            })
            .inc();
        let mode = self.settings.failure_mode.unwrap_or(ctx.policy.spec.failure_mode);
        let reason = format!("scan failed ({}); failure mode {:?}", failure.label(), mode);
        tracing::warn!(tr_id = %ctx.tr_id, reason = %reason, "scan could not finish");
        let closed = mode == FailureMode::FailClosed && ctx.enforce;
        self.log_verdict(
            ctx,
            report_id,
            direction,
            if closed { Action::Block } else { Action::Alert },
            &[],
            started.elapsed(),
            Some(&reason),
            None,
        );
        closed.then(|| {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "airlock_unavailable",
                failure.label(),
                "the request could not be scanned and the profile fails closed",
                Some(report_id),
            )
        })
    }

    fn count_verdict(&self, direction: Direction, verdict: &Verdict) {
        let category = if verdict.detections.is_empty() {
            "benign"
        } else {
            strongest_category(verdict)
        };
        self.metrics
            .verdicts
            .get_or_create(&VerdictLabels {
                direction: direction.label(),
                category,
                action: action_str(verdict.action),
            })
            .inc();
    }

    #[allow(clippy::too_many_arguments)]
    fn log_verdict(
        &self,
        ctx: &LogContext,
        report_id: &str,
        direction: Direction,
        action: Action,
        detections: &[Decided],
        latency: Duration,
        reason: Option<&str>,
        excerpts: Option<Vec<String>>,
    ) {
        let logging = ctx
            .policy
            .spec
            .logging
            .as_ref()
            .and_then(|l| l.threat_logs.as_ref());
        let verbosity = logging.map(|t| t.verbosity).unwrap_or(Verbosity::Standard);
        let include_benign = logging.is_some_and(|t| t.include_benign);
        if detections.is_empty() && reason.is_none() && !include_benign {
            return;
        }
        let entry = Entry {
            report_id,
            tr_id: &ctx.tr_id,
            profile: &ctx.policy.name,
            instance: &ctx.instance,
            direction,
            action: effective(action, ctx.enforce),
            enforced: ctx.enforce,
            detections,
            source: &ctx.source,
            destination: &ctx.destination,
            latency,
            reason,
            excerpts: if verbosity == Verbosity::Full {
                excerpts
            } else {
                None
            },
        };
        let line = threatlog::render(&entry, verbosity).to_string();
        ctx.forwarders.send(&line);
        self.log.write(line);
    }

    /// A streamed response, scanned frame by frame on a task of its own.
    fn stream_response(
        self: Arc<Self>,
        ctx: LogContext,
        framing: Framing,
        mut upstream: Incoming,
        permit: Option<StreamPermit>,
    ) -> ProxyBody {
        let (tx, body) = http_util::channel_body(16);
        let policy = ctx.policy.clone();
        let mode = match policy.spec.streaming.as_ref() {
            None => StreamMode::Holdback(4096),
            Some(s) => match s.mode {
                StreamingMode::Buffer => StreamMode::Buffer,
                StreamingMode::PassAndAlert => StreamMode::PassAndAlert,
                StreamingMode::Holdback => StreamMode::Holdback(
                    usize::try_from(s.effective_holdback_bytes().unwrap_or(4096)).unwrap_or(4096),
                ),
            },
        };
        let timeout = self.settings.upstream_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            self.metrics.open_streams.inc();
            let started = Instant::now();
            let mut parser = FrameParser::new(framing);
            let mut scanner = StreamScanner::new(framing, mode, ctx.enforce);
            let mut scan_time = Duration::ZERO;
            let mut alerts: Vec<Decided> = Vec::new();
            let mut stop: Option<Verdict> = None;
            let mut upstream_failed: Option<&'static str> = None;
            'read: loop {
                let frame = match tokio::time::timeout(timeout, upstream.frame()).await {
                    Ok(Some(Ok(f))) => f,
                    Ok(None) => break,
                    Ok(Some(Err(_))) => {
                        upstream_failed = Some("the upstream closed the stream early");
                        break;
                    }
                    Err(_) => {
                        upstream_failed = Some("the upstream stream stalled");
                        break;
                    }
                };
                let Ok(data) = frame.into_data() else { continue };
                let t = Instant::now();
                let frames: Vec<Frame> = match parser.push(&data) {
                    Ok(f) => f,
                    Err(e) => {
                        upstream_failed = Some("the upstream sent a frame that is too large");
                        tracing::warn!(tr_id = %ctx.tr_id, error = %e, "stream frame too large");
                        break;
                    }
                };
                for f in frames {
                    let step = scanner.push(&policy, f);
                    alerts.extend(step.alerts);
                    if let Some(v) = step.stop {
                        stop = Some(v);
                        scan_time += t.elapsed();
                        break 'read;
                    }
                    for bytes in step.release {
                        if tx.send(Ok(bytes)).await.is_err() {
                            // The client went away: stop reading the upstream.
                            tracing::debug!(tr_id = %ctx.tr_id, "client closed the stream");
                            self.metrics.open_streams.dec();
                            return;
                        }
                    }
                }
                scan_time += t.elapsed();
            }
            if stop.is_none()
                && let Some(last) = parser.finish()
            {
                // The last frame had no terminator; what its push releases goes out before the rest.
                let step = scanner.push(&policy, last);
                alerts.extend(step.alerts);
                stop = step.stop;
                if stop.is_none() {
                    for bytes in step.release {
                        if tx.send(Ok(bytes)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            if stop.is_none() {
                let step = scanner.finish(&policy);
                alerts.extend(step.alerts);
                stop = step.stop;
                if stop.is_none() {
                    for bytes in step.release {
                        if tx.send(Ok(bytes)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let report_id = self.ids.next();
            if let Some(verdict) = stop {
                let mut all = alerts;
                all.extend(verdict.detections.iter().cloned());
                let verdict = Verdict {
                    action: Action::Block,
                    detections: all,
                };
                self.count_verdict(Direction::Response, &verdict);
                self.log_verdict(
                    &ctx,
                    &report_id,
                    Direction::Response,
                    Action::Block,
                    &verdict.detections,
                    scan_time,
                    None,
                    None,
                );
                let body = error_body(
                    "airlock_blocked",
                    strongest_category(&verdict),
                    &block_message(&verdict, Direction::Response),
                    Some(&report_id),
                );
                let _ = tx.send(Ok(stream_error_frame(framing, &body))).await;
            } else {
                let action = alerts.iter().map(|d| d.action).max().unwrap_or(Action::Allow);
                let verdict = Verdict {
                    action,
                    detections: alerts,
                };
                self.count_verdict(Direction::Response, &verdict);
                self.log_verdict(
                    &ctx,
                    &report_id,
                    Direction::Response,
                    action,
                    &verdict.detections,
                    scan_time,
                    upstream_failed,
                    None,
                );
                if let Some(reason) = upstream_failed {
                    self.metrics
                        .upstream_errors
                        .get_or_create(&ReasonLabels { reason: "stream" })
                        .inc();
                    let body = error_body("airlock_upstream_error", "upstream_stream", reason, None);
                    let _ = tx.send(Ok(stream_error_frame(framing, &body))).await;
                }
            }
            tracing::debug!(tr_id = %ctx.tr_id, elapsed_ms = started.elapsed().as_millis() as u64, "stream ended");
            self.metrics.open_streams.dec();
        });
        body
    }
}

/// What a log entry needs about its request.
#[derive(Clone, Debug)]
struct LogContext {
    tr_id: String,
    policy: Arc<Policy>,
    instance: String,
    enforce: bool,
    source: SourceInfo,
    destination: DestinationInfo,
    forwarders: Arc<Forwarders>,
}

/// Why a scan did not produce a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanFailure {
    Engine,
    Timeout,
    Encoded,
}

impl ScanFailure {
    fn label(self) -> &'static str {
        match self {
            ScanFailure::Engine => "engine_failure",
            ScanFailure::Timeout => "scan_timeout",
            ScanFailure::Encoded => "encoded_response",
        }
    }
}

/// The LLM APIs the proxy recognises, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    OpenAiChat,
    OpenAiCompletions,
    OpenAiResponses,
    OpenAiEmbeddings,
    AnthropicMessages,
    OllamaChat,
    OllamaGenerate,
    TgiGenerate,
    Unknown,
}

impl Api {
    pub fn known(self) -> bool {
        self != Api::Unknown
    }
}

/// Recognises an API by method and path (any prefix before the API's own path is allowed, e.g. Azure's
/// `/openai/deployments/<name>/chat/completions`).
pub fn classify(method: &Method, path: &str) -> Api {
    if method != Method::POST {
        return Api::Unknown;
    }
    let path = path.trim_end_matches('/');
    let ends = |suffix: &str| path.ends_with(suffix);
    if ends("/chat/completions") {
        Api::OpenAiChat
    } else if ends("/v1/completions") || ends("/completions") && path.contains("/deployments/") {
        Api::OpenAiCompletions
    } else if ends("/v1/responses") || ends("/openai/responses") {
        Api::OpenAiResponses
    } else if ends("/embeddings") {
        Api::OpenAiEmbeddings
    } else if ends("/v1/messages") {
        Api::AnthropicMessages
    } else if ends("/api/chat") {
        Api::OllamaChat
    } else if ends("/api/generate") {
        Api::OllamaGenerate
    } else if ends("/generate") || ends("/generate_stream") {
        Api::TgiGenerate
    } else {
        Api::Unknown
    }
}

/// Whether the request asks for a streamed answer (Ollama streams unless told not to).
fn wants_stream(api: Api, body: &Value) -> bool {
    match body.get("stream") {
        Some(Value::Bool(b)) => *b,
        _ => matches!(api, Api::OllamaChat | Api::OllamaGenerate),
    }
}

/// Output tokens the request asks for, for the token budget.
///
/// Looked up key by key: `Value::pointer` builds a string per path segment, which made this about a
/// twentieth of a pass-through request's own work.
fn requested_output_tokens(body: &Value) -> u64 {
    let nested = |outer: &str, inner: &str| body.get(outer).and_then(|o| o.get(inner));
    [
        body.get("max_tokens"),
        body.get("max_completion_tokens"),
        body.get("max_output_tokens"),
        nested("options", "num_predict"),
        nested("parameters", "max_new_tokens"),
    ]
    .into_iter()
    .find_map(|v| v.and_then(Value::as_u64))
    .unwrap_or(0)
}

/// The texts of a request: every string of a JSON body, or the whole body as text.
fn prompt_texts(json: Option<&Value>, body: &Bytes) -> Vec<Text> {
    match json {
        Some(v) => extract::request_texts(v).texts,
        None if body.is_empty() => Vec::new(),
        None => vec![Text {
            text: String::from_utf8_lossy(body).into_owned(),
            source: Source::Unknown,
            pointer: String::new(),
        }],
    }
}

/// Masked excerpts around each detection, for `verbosity: full`.
fn excerpts(policy: &Policy, texts: &[Text], detections: &[Decided]) -> Option<Vec<String>> {
    let wants = policy
        .spec
        .logging
        .as_ref()
        .and_then(|l| l.threat_logs.as_ref())
        .is_some_and(|t| t.verbosity == Verbosity::Full);
    if !wants {
        return None;
    }
    Some(
        detections
            .iter()
            .map(|d| {
                let Some(text) = texts.get(d.detection.segment) else {
                    return String::new();
                };
                // Mask every maskable span of the segment first, so no personal data reaches the log.
                let result = scan_texts(policy, std::slice::from_ref(text));
                let maskable: Vec<_> = result.detections.iter().filter(|x| x.maskable).collect();
                if maskable.is_empty() {
                    threatlog::excerpt(&text.text, d.detection.start, d.detection.end)
                } else {
                    let masked = policy.engine.mask(&text.text, &maskable);
                    let ratio_start = d.detection.start.min(masked.len());
                    threatlog::excerpt(
                        &masked,
                        ratio_start,
                        ratio_start + (d.detection.end - d.detection.start),
                    )
                }
            })
            .collect(),
    )
}

/// In audit mode nothing is blocked or masked.
fn effective(action: Action, enforce: bool) -> Action {
    if enforce {
        action
    } else {
        action.min(Action::Alert)
    }
}

fn action_str(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Alert => "alert",
        Action::Mask => "mask",
        Action::Block => "block",
    }
}

/// The category of the strongest detection (for the `code` of a block).
fn strongest_category(verdict: &Verdict) -> &'static str {
    verdict
        .detections
        .iter()
        .max_by(|a, b| {
            a.action
                .cmp(&b.action)
                .then(a.detection.score.total_cmp(&b.detection.score))
        })
        .map(|d| d.detection.category.as_str())
        .unwrap_or("policy")
}

fn block_message(verdict: &Verdict, direction: Direction) -> String {
    let mut detectors: Vec<&str> = verdict
        .detections
        .iter()
        .filter(|d| d.action >= Action::Mask)
        .map(|d| d.detection.detector)
        .collect();
    detectors.dedup();
    let what = match direction {
        Direction::Prompt => "the request",
        Direction::Response => "the response",
    };
    format!("Airlock blocked {what}: {}", detectors.join(", "))
}

fn refusal_response(refusal: Refusal) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(refusal.body.to_string())));
    *response.status_mut() = refusal.status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(retry) = refusal.retry_after
        && let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_output_tokens_are_read_from_each_api_s_field_in_order() {
        use serde_json::json;
        for (body, tokens) in [
            (json!({"max_tokens": 7}), 7),
            (json!({"max_completion_tokens": 8}), 8),
            (json!({"max_output_tokens": 9}), 9),
            (json!({"options": {"num_predict": 10}}), 10),
            (json!({"parameters": {"max_new_tokens": 11}}), 11),
            // The first one set wins; a field of another type does not count.
            (json!({"max_tokens": 1, "max_completion_tokens": 2}), 1),
            (json!({"max_tokens": "5", "options": {"num_predict": 3}}), 3),
            (json!({"max_tokens": -1}), 0),
            (json!({"options": 4}), 0),
            (json!([{"max_tokens": 6}]), 0),
            (json!({}), 0),
        ] {
            assert_eq!(requested_output_tokens(&body), tokens, "{body}");
        }
    }

    #[test]
    fn apis_are_recognised_by_path() {
        let post = Method::POST;
        for (path, api) in [
            ("/v1/chat/completions", Api::OpenAiChat),
            ("/openai/deployments/gpt/chat/completions", Api::OpenAiChat),
            ("/v1/completions", Api::OpenAiCompletions),
            ("/v1/responses", Api::OpenAiResponses),
            ("/v1/embeddings", Api::OpenAiEmbeddings),
            ("/v1/messages", Api::AnthropicMessages),
            ("/api/chat", Api::OllamaChat),
            ("/api/generate", Api::OllamaGenerate),
            ("/generate", Api::TgiGenerate),
            ("/generate_stream", Api::TgiGenerate),
            ("/v1/models", Api::Unknown),
        ] {
            assert_eq!(classify(&post, path), api, "{path}");
        }
        assert_eq!(classify(&Method::GET, "/v1/chat/completions"), Api::Unknown);
    }

    #[test]
    fn ollama_streams_by_default() {
        assert!(wants_stream(Api::OllamaChat, &serde_json::json!({})));
        assert!(!wants_stream(
            Api::OllamaChat,
            &serde_json::json!({"stream": false})
        ));
        assert!(!wants_stream(Api::OpenAiChat, &serde_json::json!({})));
        assert!(wants_stream(
            Api::OpenAiChat,
            &serde_json::json!({"stream": true})
        ));
    }

    #[test]
    fn audit_never_blocks() {
        assert_eq!(effective(Action::Block, false), Action::Alert);
        assert_eq!(effective(Action::Mask, false), Action::Alert);
        assert_eq!(effective(Action::Block, true), Action::Block);
    }
}
