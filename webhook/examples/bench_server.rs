//! The two servers `make bench` compares (bench/webhook.sh):
//!
//! - `admission`: Airlock's admission server (`airlock_webhook::serve`) deciding real reviews against an
//!   in-memory view of one enforcing instance — the same in-memory lookups the production caches serve,
//!   so the API server is not in the request path in either case;
//! - `bare`: the same TLS accept loop and HTTP stack (`serve_filter`) answering every request with a
//!   canned AdmissionReview, the floor that admission's own cost is measured against.
//!
//! `cargo run --release -p airlock-webhook --example bench_server -- <admission|bare> <addr> <cert> <key>`
//!
//! A third mode, `cost <mutate.json> <validate.json>`, times the handler alone (`review::handle`, no
//! TLS, no HTTP) on the same reviews, on one thread, and prints p50/p99 per call (`COST_CALLS` calls,
//! default 20,000); and the same with serde's reader in place of the direct one (`handle_serde`).

use std::sync::Arc;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use airlock_webhook::review::{ClusterView, Reply, Route, StaticView, handle, handle_serde};
use airlock_webhook::server::serve_filter;
use airlock_webhook::tls::ReloadingCert;
use airlock_webhook::{ServeOptions, serve};
use warp::Filter;

/// The allocator the webhook binary uses (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CANNED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"bench","allowed":true}}"#;

fn view() -> anyhow::Result<StaticView> {
    let instance: AIRuntimeInstance = serde_json::from_value(serde_json::json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance",
        "metadata": { "name": "bench" },
        "spec": {
            "selector": { "namespaceSelector": { "matchLabels": { "airlock.dev/protect": "true" } } },
            "profileRef": { "name": "strict" }
        }
    }))?;
    let profile: AISecurityProfile = serde_json::from_value(serde_json::json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "AISecurityProfile",
        "metadata": { "name": "strict" }, "spec": {}
    }))?;
    Ok(StaticView::new()
        .with_instance(instance)
        .with_profile(profile)
        .with_namespace("bench", &[("airlock.dev/protect", "true")])
        .with_version(1, 37))
}

fn canned() -> warp::reply::Response {
    let mut response = warp::reply::Response::new(CANNED.into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Times `review::handle` on each review file: a warm-up, then 20,000 calls, one at a time.
fn cost(files: &[(Route, &str)]) -> anyhow::Result<()> {
    let view = view()?;
    // COST_CALLS: fewer calls, for a run under valgrind.
    let calls: usize = std::env::var("COST_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    for (route, file) in files {
        let body = std::fs::read(file)?;
        let answer = handle(*route, &body, &view);
        anyhow::ensure!(
            answer.status == 200,
            "{file}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        for _ in 0..calls / 10 {
            std::hint::black_box(handle(*route, &body, &view));
        }
        anyhow::ensure!(
            answer == handle_serde(*route, &body, &view),
            "{file}: the readers differ"
        );
        let time = |handler: fn(Route, &[u8], &dyn ClusterView) -> Reply| {
            let mut times: Vec<std::time::Duration> = (0..calls)
                .map(|_| {
                    let started = std::time::Instant::now();
                    std::hint::black_box(handler(*route, std::hint::black_box(&body), &view));
                    started.elapsed()
                })
                .collect();
            times.sort_unstable();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
            (at(0.5), at(0.99))
        };
        let (p50, p99) = time(handle);
        let (serde_p50, serde_p99) = time(handle_serde);
        println!(
            "handler {route:?} ({} bytes, verdict {}): p50 {p50:.1} us, p99 {p99:.1} us \
             (with serde's reader for the review: p50 {serde_p50:.1} us, p99 {serde_p99:.1} us)",
            body.len(),
            answer.verdict,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, mutate, validate] = args.as_slice()
        && mode == "cost"
    {
        return cost(&[(Route::Mutate, mutate), (Route::Validate, validate)]);
    }
    let [mode, addr, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: bench_server <admission|bare> <addr> <cert.pem> <key.pem>");
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = ReloadingCert::from_files(std::path::Path::new(cert), std::path::Path::new(key))?;
    let listener = airlock_webhook::server::bind(addr.parse()?).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let opts = ServeOptions::default();
    match mode.as_str() {
        "admission" => serve(listener, tls, Arc::new(view()?), opts, shutdown).await?,
        "bare" => {
            // Reads the whole body, as admission does, then answers with the canned review.
            let filter = warp::body::bytes()
                .map(|_: bytes::Bytes| canned())
                .or(warp::any().map(canned))
                .unify();
            serve_filter(listener, tls, filter, opts, shutdown).await?;
        }
        other => anyhow::bail!("unknown mode {other:?}: use admission or bare"),
    }
    Ok(())
}
