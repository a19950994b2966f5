//! The peer for the HTTP benchmarks: an axum server whose handlers only answer 200 with a
//! small JSON body. `caxton`'s requests/s are quoted as a ratio of this, measured in the same
//! run, because absolute figures on shared machines do not hold.

use axum::Router;
use axum::routing::post;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Bare axum handler answering 200 on POST /api/agents and /api/messages")]
struct Cli {
    /// Listen address (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ok = || async { axum::Json(serde_json::json!({"ok": true})) };
    let app = Router::new()
        .route("/api/agents", post(ok))
        .route("/api/messages", post(ok));
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!("bare-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
