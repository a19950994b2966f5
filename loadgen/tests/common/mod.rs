//! Shared by the integration tests: a tiny axum target and a bounded runner of the binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

pub(crate) const BENCH: &str = env!("CARGO_BIN_EXE_caxton-bench");

/// Serves `/health` and `POST /api/agents`; request number `stall_at` (1-based) sleeps
/// `stall` before answering.
pub(crate) async fn test_server(stall_at: u64, stall: Duration) -> SocketAddr {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/agents",
            post(move |State(count): State<Arc<AtomicU64>>| async move {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if n == stall_at {
                    tokio::time::sleep(stall).await;
                }
                r#"{"id":"a","agent_type":"test-agent","state":"Running"}"#
            }),
        )
        .with_state(count);
    caxton_testkit::serve(app).await.unwrap()
}

pub(crate) fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caxton-bench-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `caxton-bench ARGS` writing its report to `out/<run_id>/`, killed when dropped.
pub(crate) fn bench_command_as(run_id: &str, args: &[&str], out: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BENCH);
    command
        .args(args)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--run-id",
            run_id,
            "--progress",
            "plain",
        ])
        .kill_on_drop(true);
    command
}

/// `caxton-bench ARGS` writing its report to `out/t/`, killed when dropped.
pub(crate) fn bench_command(args: &[&str], out: &Path) -> tokio::process::Command {
    bench_command_as("t", args, out)
}

pub(crate) async fn bench(args: &[&str], out: &Path) -> Output {
    bench_as("t", args, out).await
}

/// A run with its own run id: its report goes to `out/<run_id>/report.json`.
pub(crate) async fn bench_as(run_id: &str, args: &[&str], out: &Path) -> Output {
    bench_within(Duration::from_secs(60), run_id, args, out).await
}

/// [`bench_as`] for a run that must stop by itself within `limit`.
pub(crate) async fn bench_within(
    limit: Duration,
    run_id: &str,
    args: &[&str],
    out: &Path,
) -> Output {
    let run = bench_command_as(run_id, args, out).output();
    tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("caxton-bench did not stop by itself within {limit:?}"))
        .unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A calibrated peer on its own thread (one core's worth of server, like a small service):
/// `POST /api/agents` and `/api/messages` cost `rounds` rounds of an integer hash each and
/// answer `status`; with `lives`, it stops serving (listener and connections closed) that
/// long after it started.
pub(crate) fn peer(rounds: u64, status: u16, lives: Option<Duration>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let status = axum::http::StatusCode::from_u16(status).unwrap();
            let work = move || async move {
                let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
                for _ in 0..rounds {
                    x ^= x >> 33;
                    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
                }
                let body = format!(
                    r#"{{"id":"{:x}","state":"Running"}}"#,
                    std::hint::black_box(x)
                );
                (status, body)
            };
            let app = Router::new()
                .route("/health", get(|| async { "ok" }))
                .route("/api/agents", post(work))
                .route("/api/messages", post(work));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let serve = axum::serve(listener, app);
            match lives {
                Some(d) => {
                    let _ = tokio::time::timeout(d, serve).await;
                }
                None => {
                    let _ = serve.await;
                }
            }
        });
    });
    addr
}
