//! A stub LLM server for the demo and the benchmark: `cargo run -p airlock-sidecar --example stub_llm -- 127.0.0.1:18000`.

#[path = "../tests/support/stub.rs"]
mod stub;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18000".into())
        .parse()?;
    let (local, _) = stub::start(addr).await;
    println!("stub LLM listening on {local}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
