//! k6's abortOnFail: a threshold judged during the run stops it when it fails, and changes
//! nothing when it holds. The real binary against small axum targets on loopback.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use caxton_reports::model::RunReport;
use common::{bench_as, bench_within, out_dir, test_server, text};

const AGENT: &str = r#"{"id":"a","agent_type":"test-agent","state":"Running"}"#;

/// A target whose every POST takes `delay`, answering `status`.
async fn slow_server(delay: Duration, status: StatusCode) -> String {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/agents",
            post(move || async move {
                tokio::time::sleep(delay).await;
                (status, AGENT)
            }),
        );
    format!("http://{}", caxton_testkit::serve(app).await.unwrap())
}

/// A 60 s plan against a target that answers in 300 ms, with p(95)<100 abortOnFail after
/// 3 s: stopped within a few seconds of the delay, exit 99, every file written and marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_abort_on_fail_threshold_stops_a_60s_run_after_its_delay() {
    let target = slow_server(Duration::from_millis(300), StatusCode::OK).await;
    let out = out_dir("abort-p95");
    let begun = Instant::now();
    let o = bench_within(
        Duration::from_secs(30),
        "t",
        &[
            "--target",
            &target,
            "--stages",
            "2s:4,58s:4",
            "--think-time",
            "10ms",
            "--no-default-thresholds",
            "--threshold",
            "http_req_duration: p(95)<100 abortOnFail delayAbortEval=3s",
            "--threshold",
            "http_req_failed: rate<0.5",
        ],
        &out,
    )
    .await;
    let took = begun.elapsed();
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    // Process start, goose's users, 3 s of delay, a tick, the wind-down, the report.
    assert!(
        took < Duration::from_secs(12),
        "took {took:?}\n{}",
        text(&o)
    );
    let report = RunReport::read(&out.join("t/report.json")).unwrap();
    let a = report.aborted.as_ref().expect("marked aborted");
    assert_eq!(a.threshold, "http_req_duration: p(95)<100");
    assert_eq!(a.stage, "hold-4");
    assert!(a.at_seconds >= 3.0 && a.at_seconds < 5.0, "{a:?}");
    assert!(a.value >= 300.0, "{a:?}");
    assert!(report.interrupted.is_none());
    assert!(!report.passed());
    assert!(report.overall.requests > 10, "{}", report.overall.requests);
    assert!(report.duration_seconds < 7.0, "{}", report.duration_seconds);
    // Every threshold is still judged at the end, on everything measured.
    assert_eq!(report.thresholds.len(), 2);
    assert!(!report.thresholds[0].ok && report.thresholds[1].ok);
    let html = std::fs::read_to_string(out.join("t/report.html")).unwrap();
    assert!(
        html.contains("ABORTED: aborted by threshold `http_req_duration: p(95)&lt;100`"),
        "no banner in report.html"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ABORTED: aborted by threshold"), "{stdout}");
    let _ = std::fs::remove_dir_all(out);
}

/// The error rate of one stage, from the TOML object form, stops the run the same way;
/// nothing is judged before delayAbortEval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_threshold_of_a_stage_aborts_from_the_toml_object_form() {
    let target = slow_server(Duration::from_millis(5), StatusCode::INTERNAL_SERVER_ERROR).await;
    let out = out_dir("abort-failed");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("thresholds.toml");
    std::fs::write(
        &file,
        "[thresholds]\n\"http_req_failed{stage:hold-2}\" = [\"rate<0.9\", { threshold = \"rate<0.1\", abortOnFail = true, delayAbortEval = \"2s\" }]\n",
    )
    .unwrap();
    let begun = Instant::now();
    let o = bench_within(
        Duration::from_secs(30),
        "t",
        &[
            "--target",
            &target,
            "--stages",
            "1s:2,59s:2",
            "--think-time",
            "20ms",
            "--no-default-thresholds",
            "--thresholds",
            file.to_str().unwrap(),
        ],
        &out,
    )
    .await;
    let took = begun.elapsed();
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}\n{}",
        text(&o)
    );
    let report = RunReport::read(&out.join("t/report.json")).unwrap();
    let a = report.aborted.as_ref().expect("marked aborted");
    assert_eq!(a.threshold, "http_req_failed{stage:hold-2}: rate<0.1");
    assert_eq!(a.stage, "hold-2");
    assert!(a.at_seconds >= 2.0 && a.at_seconds < 4.0, "{a:?}");
    assert_eq!(a.value, 1.0);
    let _ = std::fs::remove_dir_all(out);
}

/// An abortOnFail threshold that holds changes nothing: exit 0, no mark, the same order of
/// requests as the same run without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_on_fail_threshold_that_holds_changes_nothing() {
    let addr = test_server(0, Duration::ZERO).await;
    let target = format!("http://{addr}");
    let out = out_dir("abort-holds");
    let args = |extra: &'static [&'static str]| {
        let mut a = vec![
            "--target",
            target.as_str(),
            "--duration",
            "4s",
            "--concurrent-users",
            "2",
            "--think-time",
            "50ms",
        ];
        a.extend_from_slice(extra);
        a
    };
    let plain = bench_as("plain", &args(&[]), &out).await;
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain));
    let with = bench_as(
        "with",
        &args(&[
            "--threshold",
            "http_req_duration: p(95)<5000 abortOnFail",
            "--threshold",
            "checks: rate>0.9 abortOnFail delayAbortEval=1s",
        ]),
        &out,
    )
    .await;
    assert_eq!(with.status.code(), Some(0), "{}", text(&with));
    let plain = RunReport::read(&out.join("plain/report.json")).unwrap();
    let with = RunReport::read(&out.join("with/report.json")).unwrap();
    assert!(with.aborted.is_none() && with.passed());
    let raw = std::fs::read_to_string(out.join("with/report.json")).unwrap();
    assert!(!raw.contains("\"aborted\""));
    let ratio = with.overall.requests as f64 / plain.overall.requests as f64;
    assert!(
        (0.7..1.4).contains(&ratio),
        "{} requests with, {} without",
        with.overall.requests,
        plain.overall.requests
    );
    assert!(with.duration_seconds > 3.5, "{}", with.duration_seconds);
    let _ = std::fs::remove_dir_all(out);
}

/// A threshold that cannot be judged mid-run is refused before any load, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_lower_bound_with_abort_on_fail_is_refused_at_start() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("abort-refused");
    let o = bench_as(
        "t",
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "30s",
            "--threshold",
            "http_reqs: count>1000 abortOnFail",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("`http_reqs: count>1000 abortOnFail`") && stderr.contains("lower bound"),
        "{stderr}"
    );
    assert!(!out.join("t/report.json").exists());
}

/// Distributed workers pushing to one Prometheus judge abortOnFail on the run's global
/// figures there: both stop (exit 99, marked), and merge carries the mark (exit 99).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_workers_abort_together_on_the_global_figures_in_prometheus() {
    let prometheus = caxton_testkit::Prometheus::start(&[]).await.unwrap();
    let target = slow_server(Duration::from_millis(300), StatusCode::OK).await;
    let out = out_dir("abort-global");
    let url = prometheus.url();
    let worker = |i: &'static str| {
        vec![
            "--target",
            target.as_str(),
            "--stages",
            "1s:4,59s:4",
            "--think-time",
            "10ms",
            "--no-default-thresholds",
            "--threshold",
            "http_req_duration: p(95)<100 abortOnFail delayAbortEval=2s",
            "--report-to-prometheus",
            url.as_str(),
            "--worker-index",
            i,
            "--workers",
            "2",
        ]
    };
    let (w0, w1) = (worker("0"), worker("1"));
    let begun = Instant::now();
    let (o0, o1) = tokio::join!(
        bench_within(Duration::from_secs(45), "g", &w0, &out),
        bench_within(Duration::from_secs(45), "g", &w1, &out)
    );
    let took = begun.elapsed();
    assert_eq!(o0.status.code(), Some(99), "{}", text(&o0));
    assert_eq!(o1.status.code(), Some(99), "{}", text(&o1));
    // The global figures exist from the first live push (10 s), then a second to judge.
    assert!(took < Duration::from_secs(25), "took {took:?}");
    let mut reports = Vec::new();
    for i in 0..2 {
        let r = RunReport::read(&out.join(format!("g/worker-{i}/report.json"))).unwrap();
        let a = r.aborted.as_ref().expect("marked aborted");
        assert_eq!(a.threshold, "http_req_duration: p(95)<100");
        assert!(a.at_seconds >= 10.0 && a.at_seconds < 15.0, "{a:?}");
        assert!(a.value >= 250.0, "{a:?}");
        let figure = a.global.as_deref().expect("the abort says it was global");
        assert!(figure.contains("histogram_quantile"), "{figure}");
        reports.push(out.join(format!("g/worker-{i}/report.json")));
    }
    let merge = tokio::process::Command::new(common::BENCH)
        .arg("merge")
        .args(&reports)
        .args(["--out", out.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(merge.status.code(), Some(99), "{}", text(&merge));
    let merged = RunReport::read(&out.join("g/report.json")).unwrap();
    assert!(merged.aborted.is_some());

    // A threshold the pushed series cannot give is refused before any load, by name.
    let mut tagged = worker("0");
    tagged[8] = "http_req_duration{stage:hold-4}: p(95)<100 abortOnFail";
    let o = bench_within(Duration::from_secs(30), "refused", &tagged, &out).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("`http_req_duration{stage:hold-4}: p(95)<100`")
            && stderr.contains("across distributed workers"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(out);
}

/// The open model stops as promptly: users waiting for an arrival end at once instead of
/// after one more iteration each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_model_run_stops_at_once_when_it_aborts() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("abort-open");
    let o = bench_within(
        Duration::from_secs(30),
        "t",
        &[
            "--target",
            &format!("http://{addr}"),
            "--arrival-rate",
            "60s:20",
            "--no-default-thresholds",
            "--threshold",
            "http_req_duration: p(95)<0.001 abortOnFail delayAbortEval=2s",
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let report = RunReport::read(&out.join("t/report.json")).unwrap();
    let a = report.aborted.as_ref().expect("marked aborted");
    assert!(a.at_seconds >= 2.0 && a.at_seconds < 4.0, "{a:?}");
    assert!(
        report.duration_seconds < a.at_seconds + 1.5,
        "ran {} s after an abort at {} s",
        report.duration_seconds,
        a.at_seconds
    );
    let _ = std::fs::remove_dir_all(out);
}
