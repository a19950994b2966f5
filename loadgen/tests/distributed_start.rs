//! The workers of a distributed run start their load together although their processes do
//! not: two workers started 2.5 s apart against one loopback target send their first
//! requests within 100 ms of each other. The real binary, a real target on loopback.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use caxton_reports::model::RunReport;
use common::{BENCH, out_dir, text};

type FirstSeen = Arc<Mutex<BTreeMap<String, u128>>>;

/// A target that notes, per `x-worker` header, the unix time (µs) of its first request.
async fn recording_server() -> (String, FirstSeen) {
    let first: FirstSeen = Arc::default();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/agents",
            post(
                |State(first): State<FirstSeen>, headers: HeaderMap| async move {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_micros();
                    if let Some(w) = headers.get("x-worker").and_then(|v| v.to_str().ok()) {
                        first.lock().unwrap().entry(w.to_string()).or_insert(now);
                    }
                    r#"{"id":"a","agent_type":"test-agent","state":"Running"}"#
                },
            ),
        )
        .with_state(first.clone());
    let addr = caxton_testkit::serve(app).await.unwrap();
    (format!("http://{addr}"), first)
}

fn worker(
    target: &str,
    out: &Path,
    index: u32,
    workers: &str,
    extra: &[&str],
) -> tokio::process::Child {
    let header = format!("X-Worker: {index}");
    tokio::process::Command::new(BENCH)
        .args([
            "--target",
            target,
            "--duration",
            "3s",
            "--concurrent-users",
            "4",
            "--think-time",
            "20ms",
            "--header",
            &header,
            "--worker-index",
            &index.to_string(),
            "--workers",
            workers,
            "--run-id",
            "dist",
            "--out",
            out.to_str().unwrap(),
            "--progress",
            "plain",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn finish(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the worker ended within 60 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_started_seconds_apart_start_their_load_together() {
    let (target, first) = recording_server().await;
    let out = out_dir("dist-start");
    let w0 = worker(&target, &out, 0, "2", &[]);
    // Readiness: worker 0 has arrived at the barrier; then worker 1 comes 2.5 s late.
    let arrived = out.join("dist/barrier/worker-0");
    let waiting = Instant::now();
    while !arrived.exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "worker 0 never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let w1 = worker(&target, &out, 1, "2", &[]);
    let (o0, o1) = tokio::join!(finish(w0), finish(w1));
    assert_eq!(o0.status.code(), Some(0), "{}", text(&o0));
    assert_eq!(o1.status.code(), Some(0), "{}", text(&o1));

    let read = |i: u32| RunReport::read(&out.join(format!("dist/worker-{i}/report.json"))).unwrap();
    let (r0, r1) = (read(0), read(1));
    let arrival0: u64 = std::fs::read_to_string(&arrived)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Worker 0 waited for worker 1.
    assert!(
        r0.started_unix_ms >= arrival0 + 2500,
        "worker 0 arrived at {arrival0} and started at {}",
        r0.started_unix_ms
    );
    let started_skew = r0.started_unix_ms.abs_diff(r1.started_unix_ms);
    let first = first.lock().unwrap().clone();
    let (f0, f1) = (first["0"], first["1"]);
    let first_request_skew_ms = f0.abs_diff(f1) as f64 / 1000.0;
    eprintln!(
        "start skew: started_unix_ms {started_skew} ms, first requests {first_request_skew_ms:.1} ms"
    );
    assert!(
        started_skew <= 100,
        "started_unix_ms {started_skew} ms apart"
    );
    assert!(
        first_request_skew_ms <= 100.0,
        "first requests {first_request_skew_ms:.1} ms apart"
    );
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_comes_is_named_and_the_flag_decides() {
    let (target, _) = recording_server().await;
    let out = out_dir("dist-missing");
    let begun = Instant::now();
    let o = finish(worker(&target, &out, 0, "3", &["--start-timeout", "2s"])).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "{:?}",
        begun.elapsed()
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("worker(s) [1, 2] of 3"), "{stderr}");
    assert!(!out.join("dist/worker-0/report.json").exists());

    let o = finish(worker(
        &target,
        &out,
        0,
        "3",
        &["--start-timeout", "2s", "--missing-workers", "proceed"],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("worker(s) [1, 2] of 3"), "{stderr}");
    let r = RunReport::read(&out.join("dist/worker-0/report.json")).unwrap();
    assert!(r.overall.requests > 0);
    let _ = std::fs::remove_dir_all(out);
}
