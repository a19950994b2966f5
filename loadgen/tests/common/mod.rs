//! Shared by the integration tests: a tiny axum target, a bounded runner of the binary, and
//! a real OTLP receiver (rotel).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

pub const BENCH: &str = env!("CARGO_BIN_EXE_caxton-bench");

/// Serves `/health` and `POST /api/agents`; request number `stall_at` (1-based) sleeps
/// `stall` before answering.
pub async fn test_server(stall_at: u64, stall: Duration) -> SocketAddr {
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
    serve(app).await
}

/// Serves `app` on a free loopback port until the test ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caxton-bench-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `caxton-bench ARGS` writing its report to `out/<run_id>/`, killed when dropped.
pub fn bench_command_as(run_id: &str, args: &[&str], out: &Path) -> tokio::process::Command {
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
pub fn bench_command(args: &[&str], out: &Path) -> tokio::process::Command {
    bench_command_as("t", args, out)
}

pub async fn bench(args: &[&str], out: &Path) -> Output {
    bench_as("t", args, out).await
}

/// A run with its own run id: its report goes to `out/<run_id>/report.json`.
pub async fn bench_as(run_id: &str, args: &[&str], out: &Path) -> Output {
    let run = bench_command_as(run_id, args, out).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("caxton-bench did not stop by itself within 60 s")
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_port(addr: SocketAddr, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rotel's collector, blackholing what it receives: its gRPC address. With `log_spans` it
/// also writes every span it receives (name, attributes, resource) into
/// [`rotel_output`]'s files, to check what arrived; without, it costs a load run nothing.
pub fn start_rotel(dir: &Path, log_spans: bool) -> (Killed, SocketAddr) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rotel is not installed (ci/install-tools installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = String::from_utf8(out.stdout).unwrap();
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new(agent.trim());
    command
        .args(["start", "--exporter", "blackhole"])
        .args(["--otlp-grpc-endpoint", &grpc.to_string()])
        .args([
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--log-file")
        .arg(dir.join("rotel.log"));
    if log_spans {
        let output = std::fs::File::create(dir.join("rotel.out")).unwrap();
        command
            .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .stdout(output.try_clone().unwrap())
            .stderr(output);
    } else {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let child = Killed(command.spawn().unwrap());
    wait_port(grpc, "rotel");
    (child, grpc)
}

/// What rotel started in `dir` logged so far.
pub fn rotel_output(dir: &Path) -> String {
    ["rotel.log", "rotel.out"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect()
}
