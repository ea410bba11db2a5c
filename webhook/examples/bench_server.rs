//! The two servers `make bench` compares (bench/webhook.sh):
//!
//! - `admission`: Airlock's admission server (`airlock_webhook::serve`) deciding real reviews against an
//!   in-memory view of one enforcing instance — the same in-memory lookups the production caches serve,
//!   so the API server is not in the request path in either case;
//! - `bare`: the same TLS accept loop and HTTP stack (`serve_filter`) answering every request with a
//!   canned AdmissionReview, the floor that admission's own cost is measured against.
//!
//! `cargo run --release -p airlock-webhook --example bench_server -- <admission|bare> <addr> <cert> <key>`

use std::sync::Arc;

use airlock_crds::{AIRuntimeInstance, AISecurityProfile};
use airlock_webhook::review::StaticView;
use airlock_webhook::server::serve_filter;
use airlock_webhook::tls::ReloadingCert;
use airlock_webhook::{ServeOptions, serve};
use warp::Filter;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
