//! `caxton-bench` end to end over loopback HTTP: the binary against a tiny axum server
//! started by each test (real HTTP; the runtime itself is exercised in `embedded.rs`).

mod common;

use std::time::Duration;

use caxton_reports::model::RunReport;
use common::{bench, out_dir, test_server, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_thresholds_exit_0_and_write_the_report() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("pass");
    let target = format!("http://{addr}");
    let o = bench(
        &[
            "--target",
            &target,
            "--stages",
            "1s:4,1s:4",
            "--think-time",
            "20ms",
            "--threshold",
            "http_req_duration{stage:hold-4}: p(99)<5000",
            "--threshold",
            "checks: rate>0.99",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    assert_eq!(report.schema_version, caxton_reports::model::SCHEMA_VERSION);
    assert_eq!(report.target, target);
    let names: Vec<_> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ramp-4", "hold-4"]);
    // The ramp is counted too (goose would have reset it away).
    assert!(
        report.stages[0].stats.requests > 0,
        "{:?}",
        report.stages[0]
    );
    assert_eq!(
        report.overall.requests,
        report.stages.iter().map(|s| s.stats.requests).sum::<u64>()
    );
    assert_eq!(
        report.overall.status_codes.get("200"),
        Some(&report.overall.requests)
    );
    assert_eq!(report.thresholds.len(), 4);
    assert!(
        report.thresholds.iter().all(|t| t.ok && t.value.is_some()),
        "{:?}",
        report.thresholds
    );
    assert!(report.timeline.len() >= 2);
    assert_eq!(report.max_users, 4);
    assert!(report.command_line.iter().any(|a| a == "1s:4,1s:4"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("✓ http_req_duration{stage:hold-4}: p(99)<5000"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_threshold_exits_99_with_its_value() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("breach");
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "1s",
            "--concurrent-users",
            "2",
            "--threshold",
            "http_req_duration: p(95)<0.001",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let t = report
        .thresholds
        .iter()
        .find(|t| t.expression == "http_req_duration: p(95)<0.001")
        .unwrap();
    assert!(!t.ok && t.value.unwrap() > 0.001, "{t:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("✗ http_req_duration: p(95)<0.001"));
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_target_exits_1_naming_the_url() {
    // A port that was just free: nothing listens on it.
    let port = caxton_testkit::free_port().unwrap();
    let target = format!("http://127.0.0.1:{port}");
    let out = out_dir("refused");
    let o = bench(&["--target", &target, "--stages", "1s:1"], &out).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("target {target} is unreachable")),
        "{stderr}"
    );
    assert!(!out.join("t").join("report.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_1_and_say_what_is_wrong() {
    let out = out_dir("badargs");
    let o = bench(
        &[
            "--target",
            "http://127.0.0.1:9",
            "--threshold",
            "http_req_duration: p95<1",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown aggregation `p95`"));
    let o = bench(
        &[
            "--target",
            "http://127.0.0.1:9",
            "--threshold",
            "http_req_duration{stage:hold-300}: p(95)<1",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown stage `hold-300`"));
}

/// One request stalls for 1 s while the others take well under a millisecond. A single
/// user without think time would have sent ~thousands of requests in that second: the
/// corrected p99 shows the stall, the uncorrected one (one slow sample) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinated_omission_is_corrected_and_reported_uncorrected_too() {
    let stall = Duration::from_secs(1);
    let addr = test_server(200, stall).await;
    let out = out_dir("co");
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "3s",
            "--concurrent-users",
            "1",
            "--think-time",
            "0s",
            "--no-default-thresholds",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let lat = &report.overall.latency_ms;
    assert!(
        lat.uncorrected.max >= 1000.0,
        "the stall itself is measured: {lat:?}"
    );
    assert!(
        lat.uncorrected.p99 < 100.0,
        "uncorrected p99 hides the stall: {lat:?}"
    );
    assert!(
        lat.corrected.p99 > 500.0,
        "corrected p99 reflects the stall: {lat:?}"
    );
    assert!(lat.corrected.count > lat.uncorrected.count);
    assert_eq!(lat.uncorrected.count, report.overall.requests);
    let _ = std::fs::remove_dir_all(out);
}
