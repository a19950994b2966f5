//! The peer for the HTTP benchmarks: an axum server whose handlers only answer 200 with a
//! small JSON body. `caxton`'s requests/s are quoted as a ratio of this, measured in the same
//! run, because absolute figures on shared machines do not hold.
//!
//! It is also the calibrated target of `caxton-bench ab`'s tests and measurements: `--work N`
//! adds a fixed CPU cost per request (N thousand rounds of an integer hash, the same
//! instructions on every machine, so B at 1.05 N really does 5 % more work than A at N), and
//! `--status` makes it answer with another status.

use std::hint::black_box;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Bare axum handler answering 200 on POST /api/agents and /api/messages")]
struct Cli {
    /// Listen address (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// CPU work per request, in thousands of rounds of an integer hash (0: none).
    #[arg(long, default_value_t = 0)]
    work: u64,
    /// The status every request is answered with.
    #[arg(long, default_value_t = 200)]
    status: u16,
}

/// `rounds` rounds of a xorshift-multiply hash: work the optimiser cannot remove.
fn burn(rounds: u64) -> u64 {
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..rounds {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    black_box(x)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let status = StatusCode::from_u16(cli.status)?;
    let rounds = cli.work * 1000;
    let ok = move || async move {
        let x = burn(rounds);
        (
            status,
            axum::Json(serde_json::json!({"ok": true, "id": format!("{x:x}")})),
        )
    };
    let app = Router::new()
        .route("/api/agents", post(ok))
        .route("/api/messages", post(ok));
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!("bare-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
