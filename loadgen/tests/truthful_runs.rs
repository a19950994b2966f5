//! Every figure of a run is true or flagged: open-model latency measured from the intended
//! start whatever the pool size, runs that could not produce their load end invalid (exit
//! 98), and the latency histogram two workers push sums to the merged run's p95 in a real
//! Prometheus.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use caxton_reports::model::{InvalidKind, RunReport};
use caxton_testkit::Prometheus;
use common::{BENCH, bench, out_dir, test_server, text};

const BODY: &str = r#"{"id":"a","agent_type":"test-agent","state":"Running"}"#;

/// A target that answers `POST /api/agents` at once, except for the first second of every
/// five (counted from its first such request, so two runs see their stalls at the same
/// offsets of their plans), when it holds every request until that second is over.
async fn stall_server() -> SocketAddr {
    let epoch: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/agents",
            post(move || {
                let epoch = epoch.clone();
                async move {
                    let t0 = *epoch.get_or_init(Instant::now);
                    let phase = t0.elapsed().as_secs_f64() % 5.0;
                    if phase < 1.0 {
                        tokio::time::sleep(Duration::from_secs_f64(1.0 - phase)).await;
                    }
                    BODY
                }
            }),
        );
    caxton_testkit::serve(app).await.unwrap()
}

/// A target that takes `latency` for every request.
async fn slow_server(latency: Duration) -> SocketAddr {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/agents",
            post(move || async move {
                tokio::time::sleep(latency).await;
                BODY
            }),
        );
    caxton_testkit::serve(app).await.unwrap()
}

async fn stall_run(users: &str) -> (Option<i32>, RunReport, String) {
    let addr = stall_server().await;
    let out = out_dir(&format!("stall-{users}"));
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--arrival-rate",
            "10s:200",
            "--concurrent-users",
            users,
            "--no-default-thresholds",
            "--threshold",
            "http_req_duration: p(95)<100",
        ],
        &out,
    )
    .await;
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let _ = std::fs::remove_dir_all(out);
    (o.status.code(), report, text(&o))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_pool_keeps_the_latency_a_large_pool_measures() {
    let (large_code, large, large_log) = stall_run("400").await;
    let (small_code, small, small_log) = stall_run("5").await;
    let p95 = |r: &RunReport| r.overall.latency_ms.corrected.p95;
    eprintln!(
        "corrected p95: 400 users {:.1} ms (valid {}), 5 users {:.1} ms (valid {}, dropped {})",
        p95(&large),
        large.validity.valid,
        p95(&small),
        small.validity.valid,
        small.dropped_iterations
    );
    // Both runs saw the stalls: neither may pass a 100 ms p95 (k6 reported 4.4 ms here).
    assert_ne!(large_code, Some(0), "{large_log}");
    assert_ne!(small_code, Some(0), "{small_log}");
    assert!(
        p95(&large) > 300.0,
        "400 users: p95 {} ms\n{large_log}",
        p95(&large)
    );
    if small.validity.valid {
        let gap = (p95(&small) - p95(&large)).abs() / p95(&large);
        assert!(
            gap <= 0.10,
            "5 users: p95 {} ms, 400 users: {} ms ({:.0}% apart)\n{small_log}",
            p95(&small),
            p95(&large),
            gap * 100.0
        );
        assert_eq!(small.dropped_iterations, 0, "{small_log}");
        assert_eq!(small_code, Some(99), "{small_log}");
    } else {
        assert_eq!(small_code, Some(98), "{small_log}");
    }
    // Every scheduled iteration was measured or counted against the run.
    assert_eq!(
        small.overall.requests + small.dropped_iterations,
        large.overall.requests + large.dropped_iterations,
        "{small_log}\n{large_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrival_rate_the_pool_cannot_hold_ends_invalid_with_its_own_code() {
    // Two users at 100 ms serve 20/s; the plan ramps to 100/s.
    let addr = slow_server(Duration::from_millis(100)).await;
    let out = out_dir("cannot-hold");
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--arrival-rate",
            "3s:100",
            "--concurrent-users",
            "2",
            "--request-timeout",
            "2s",
        ],
        &out,
    )
    .await;
    let log = text(&o);
    assert_eq!(o.status.code(), Some(98), "{log}");
    assert!(log.contains("INVALID RUN"), "{log}");
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    assert!(!report.validity.valid);
    assert!(
        report
            .validity
            .reasons
            .iter()
            .any(|r| r.kind == InvalidKind::ArrivalRateNotHeld),
        "{:?}",
        report.validity
    );
    let html = std::fs::read_to_string(out.join("t").join("report.html")).unwrap();
    assert!(html.contains("INVALID") && html.contains("arrival_rate_not_held"));
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_histograms_sum_to_the_merged_p95_in_prometheus() {
    // With native histograms on, both forms arrive: the native one and the classic buckets.
    let prometheus = Prometheus::start(&["--enable-feature=native-histograms"])
        .await
        .unwrap();
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("hist");
    let target = format!("http://{addr}");
    let worker = |index: &'static str| {
        let (target, out, url) = (target.clone(), out.clone(), prometheus.url());
        async move {
            let run = tokio::process::Command::new(BENCH)
                .args(["--target", &target, "--duration", "3s"])
                .args(["--concurrent-users", "4", "--think-time", "5ms"])
                .args(["--workers", "2", "--worker-index", index, "--run-id", "h"])
                .args(["--report-to-prometheus", &url, "--progress", "plain"])
                .arg("--out")
                .arg(&out)
                .kill_on_drop(true)
                .output();
            tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (a, b) = tokio::join!(worker("0"), worker("1"));
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let merged = tokio::process::Command::new(BENCH)
        .arg("merge")
        .arg(out.join("h/worker-0/report.json"))
        .arg(out.join("h/worker-1/report.json"))
        .arg("--out")
        .arg(out.join("merged"))
        .args(["--run-id", "m"])
        .output()
        .await
        .unwrap();
    assert_eq!(merged.status.code(), Some(0), "{}", text(&merged));
    let report = RunReport::read(&out.join("merged/m/report.json")).unwrap();
    let p95 = report.overall.latency_ms.corrected.p95 / 1000.0;
    // The closed model's correction adds the requests a stall kept from being sent, so the
    // histogram counts at least the requests made: compare with its own count.
    let recorded = report.overall.histograms.decode_corrected().unwrap().len() as f64;
    assert!(recorded >= report.overall.requests as f64);

    let result = prometheus
        .query(
            r#"histogram_quantile(0.95, sum by (le) (caxton_bench_request_duration_seconds_bucket{run_id="h"}))"#,
        )
        .await
        .unwrap();
    let promql: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    let bounds = caxton_loadgen::series::DURATION_BUCKETS;
    let hi = bounds.iter().copied().find(|b| *b >= p95).unwrap();
    let lo = bounds
        .iter()
        .copied()
        .rev()
        .find(|b| *b < p95)
        .unwrap_or(0.0);
    assert!(
        (promql - p95).abs() <= hi - lo,
        "PromQL p95 {promql} s, merged p95 {p95} s, bucket ({lo}, {hi}]"
    );
    let count = prometheus
        .query(r#"sum(caxton_bench_request_duration_seconds_count{run_id="h"})"#)
        .await
        .unwrap();
    let count: f64 = count[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(count, recorded);

    // The native histogram: no bucket list, so the bound is its own bucket's width.
    let result = prometheus
        .query(
            r#"histogram_quantile(0.95, sum(caxton_bench_request_duration_seconds{run_id="h"}))"#,
        )
        .await
        .unwrap();
    let native: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    let factor = 2f64.powf(2f64.powi(-caxton_reports::native_histogram::SCHEMA));
    assert!(
        native <= p95 * factor && native >= p95 / factor,
        "native PromQL p95 {native} s, merged p95 {p95} s, one bucket is a factor {factor}"
    );
    let count = prometheus
        .query(r#"histogram_count(sum(caxton_bench_request_duration_seconds{run_id="h"}))"#)
        .await
        .unwrap();
    let count: f64 = count[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(count, recorded);
    let _ = std::fs::remove_dir_all(out);
}
