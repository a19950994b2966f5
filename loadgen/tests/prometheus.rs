//! `--report-to-prometheus` against a real Prometheus (Debian's `prometheus`, installed by
//! `ci/install-tools`, started on a free loopback port by the reports test kit), and the
//! spool-then-`push` path when Prometheus is down.

mod common;

use std::time::Duration;

use caxton_reports::model::RunReport;
use caxton_testkit::{Prometheus, free_port};
use common::{BENCH, bench, out_dir, test_server, text};

/// The single value of an instant query that must return exactly one series.
async fn value(prometheus: &Prometheus, expr: &str) -> f64 {
    let result = prometheus.query(expr).await.unwrap();
    let series = result.as_array().unwrap();
    assert_eq!(series.len(), 1, "{expr}: {result}");
    series[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_push_lands_in_prometheus() {
    let prometheus = Prometheus::start(&[]).await.unwrap();
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("prom");
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--stages",
            "1s:3",
            "--think-time",
            "10ms",
            "--report-to-prometheus",
            &prometheus.url(),
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let requests = value(
        &prometheus,
        r#"caxton_bench_requests_total{run_id="t",stage="all",plan="stages",scenario="create-agent",worker="0"}"#,
    )
    .await;
    assert_eq!(requests, report.overall.requests as f64);
    let stage = value(
        &prometheus,
        r#"caxton_bench_requests_total{run_id="t",stage="ramp-3"}"#,
    )
    .await;
    assert_eq!(stage, report.stages[0].stats.requests as f64);
    let p95 = value(
        &prometheus,
        r#"caxton_bench_latency_seconds{run_id="t",stage="all",quantile="0.95",corrected="true"}"#,
    )
    .await;
    assert!((p95 - report.overall.latency_ms.corrected.p95 / 1000.0).abs() < 1e-9);
    let ok = value(
        &prometheus,
        r#"caxton_bench_threshold_ok{run_id="t",threshold="http_req_failed: rate<0.1"}"#,
    )
    .await;
    assert_eq!(ok, 1.0);
    let end = value(
        &prometheus,
        r#"caxton_bench_run_end_timestamp_seconds{run_id="t"}"#,
    )
    .await;
    assert_eq!(end, report.ended_unix_ms as f64 / 1000.0);
    let passes = value(
        &prometheus,
        r#"caxton_bench_checks_total{run_id="t",check="status is 200",result="pass"}"#,
    )
    .await;
    assert_eq!(passes, report.overall.requests as f64);
    assert!(!out.join("t").join("unsent-samples.jsonl").exists());
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_keeps_the_samples_for_push() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("prom-down");
    let port = free_port().unwrap();
    let down = format!("http://127.0.0.1:{port}");
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--stages",
            "1s:2",
            "--think-time",
            "10ms",
            "--report-to-prometheus",
            &down,
        ],
        &out,
    )
    .await;
    // The run itself passed: the report is written and the failure is printed.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("push failed") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    let report_path = out.join("t").join("report.json");
    let report = RunReport::read(&report_path).unwrap();
    assert!(out.join("t").join("unsent-samples.jsonl").exists());

    // Later, with Prometheus up on that very address: `caxton-bench push` delivers them.
    let prometheus = Prometheus::start_on_port(port, &[]).await.unwrap();
    let pushed = tokio::process::Command::new(BENCH)
        .arg("push")
        .arg(&report_path)
        .args(["--report-to-prometheus", &prometheus.url()])
        .kill_on_drop(true)
        .output();
    let pushed = tokio::time::timeout(Duration::from_secs(30), pushed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.status.code(), Some(0), "{}", text(&pushed));
    let requests = value(
        &prometheus,
        r#"caxton_bench_requests_total{run_id="t",stage="all"}"#,
    )
    .await;
    assert_eq!(requests, report.overall.requests as f64);
    assert!(!out.join("t").join("unsent-samples.jsonl").exists());
    let _ = std::fs::remove_dir_all(out);
}
