//! A target that answers every request with a 1 GiB body: caxton-bench reads each body to
//! its end (so the latency is whole) but keeps at most `--max-body` of it, so its memory
//! stays bounded (it held whole bodies before: 2.7 GB peak RSS for a 1 GiB answer).

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::routing::{get, post};
use common::{BENCH, out_dir};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

/// The peak resident set of a process, from /proc (kB), while it runs.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gigabyte_response_does_not_become_a_gigabyte_of_memory() {
    let big = || async {
        let chunks = (0..GIB as usize / CHUNK)
            .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; CHUNK])));
        (
            [(header::CONTENT_LENGTH, GIB.to_string())],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/agents", post(big));
    let addr = caxton_testkit::serve(app).await.unwrap();
    let out = out_dir("gigabyte");
    let mut child = tokio::process::Command::new(BENCH)
        .args(["--target", &format!("http://{addr}")])
        .args([
            "--duration",
            "3s",
            "--concurrent-users",
            "2",
            "--think-time",
            "0s",
        ])
        .args([
            "--no-flamegraph",
            "--progress",
            "off",
            "--no-default-thresholds",
        ])
        .args(["--max-body", "65536", "--out"])
        .arg(&out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(pid) {
            peak = peak.max(kb);
        }
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "caxton-bench did not stop by itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.code().is_some(), "{status}");
    eprintln!(
        "caxton-bench peak RSS against 1 GiB answers: {} MiB",
        peak / 1024
    );
    // Two users, each holding at most 64 KiB of a body, on top of the generator itself.
    assert!(
        peak < 200 * 1024,
        "peak RSS {} MiB against 1 GiB answers",
        peak / 1024
    );
    let report = caxton_reports::model::RunReport::read(
        &out.join(
            std::fs::read_dir(&out)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name(),
        )
        .join("report.json"),
    )
    .unwrap();
    assert!(
        report.overall.requests >= 1,
        "the bodies were read to their end and timed"
    );
}
