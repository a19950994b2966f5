//! Remote write against a real Prometheus (Debian's `prometheus`, started per test on a free
//! loopback port by the `testkit` feature): what is written can be queried back.

use std::time::Duration;

use caxton_reports::remote_write::{RemoteWriteOptions, RemoteWriter, Sample, SinkError, now_ms};
use caxton_reports::sink::RetryPolicy;
use caxton_testkit::{Prometheus, free_port};
use serde_json::Value;

fn options(max_attempts: u32, backoff_ms: u64) -> RemoteWriteOptions {
    RemoteWriteOptions {
        retry: RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_millis(backoff_ms * 4),
            ..RetryPolicy::default()
        },
        headers: Vec::new(),
    }
}

/// The one series of `result` whose labels include all of `labels`, as (labels, value).
fn series<'a>(result: &'a Value, labels: &[(&str, &str)]) -> (&'a Value, f64) {
    let matching: Vec<&Value> = result
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "want one series with {labels:?} in {result}"
    );
    let value = matching[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no value in {}", matching[0]));
    (&matching[0]["metric"], value)
}

fn bench_sample(name: &str, stage: &str, value: f64) -> Sample {
    Sample::now(name, value)
        .label("stage", stage)
        .label("run_id", "nightly/2026-11-24T02:00Z")
        .label("plan", "k6")
        .label("target", "http://caxton:8080")
}

#[tokio::test]
async fn written_samples_come_back_from_a_query() {
    let prometheus = Prometheus::start(&[]).await.unwrap();
    // A base URL, as the Caxton Monitoring and Observability Guide's CronJob passes it: the writer
    // appends /api/v1/write.
    let writer = RemoteWriter::new(&prometheus.url(), RemoteWriteOptions::default()).unwrap();
    assert_eq!(writer.url(), format!("{}/api/v1/write", prometheus.url()));

    let samples = vec![
        bench_sample("caxton_bench_rps", "ramp-100", 812.5),
        bench_sample("caxton_bench_rps", "hold-100", 950.25),
        bench_sample("caxton_bench_latency_seconds", "all", 0.0421)
            .label("quantile", "0.95")
            .label("corrected", "true"),
        Sample::now("caxton_bench_threshold_ok", 1.0)
            .label("threshold", "http_req_duration: p(95)<2000")
            .label("run_id", "nightly/2026-11-24T02:00Z"),
    ];
    let outcome = writer.write(&samples).await.unwrap();
    assert_eq!(
        (outcome.series, outcome.samples, outcome.attempts),
        (4, 4, 1)
    );

    let rps = prometheus.query("caxton_bench_rps").await.unwrap();
    assert_eq!(rps.as_array().map(Vec::len), Some(2), "{rps}");
    let (labels, value) = series(&rps, &[("stage", "ramp-100")]);
    assert_eq!(value, 812.5);
    assert_eq!(labels["run_id"], "nightly/2026-11-24T02:00Z");
    assert_eq!(labels["target"], "http://caxton:8080");
    assert_eq!(labels["plan"], "k6");
    assert_eq!(series(&rps, &[("stage", "hold-100")]).1, 950.25);

    let p95 = prometheus
        .query(r#"caxton_bench_latency_seconds{quantile="0.95",corrected="true"}"#)
        .await
        .unwrap();
    assert_eq!(series(&p95, &[("stage", "all")]).1, 0.0421);

    let verdict = prometheus
        .query(r#"caxton_bench_threshold_ok{threshold="http_req_duration: p(95)<2000"}"#)
        .await
        .unwrap();
    assert_eq!(series(&verdict, &[]).1, 1.0);
}

#[tokio::test]
async fn full_write_url_and_later_samples_update_the_series() {
    let prometheus = Prometheus::start(&[]).await.unwrap();
    let url = format!("{}/api/v1/write", prometheus.url());
    let writer = RemoteWriter::new(&url, RemoteWriteOptions::default()).unwrap();
    let earlier = now_ms() - 20_000;
    let at = |value: f64, timestamp_ms: i64| Sample {
        timestamp_ms,
        ..Sample::now("caxton_bench_requests_total", value).label("run_id", "r1")
    };
    // Out of order within one batch: the writer sorts, so Prometheus accepts it.
    let outcome = writer
        .write(&[at(30.0, now_ms()), at(10.0, earlier)])
        .await
        .unwrap();
    assert_eq!((outcome.series, outcome.samples), (1, 2));

    let latest = prometheus
        .query("caxton_bench_requests_total")
        .await
        .unwrap();
    assert_eq!(series(&latest, &[("run_id", "r1")]).1, 30.0);
    let both = prometheus
        .query("count_over_time(caxton_bench_requests_total[1m])")
        .await
        .unwrap();
    assert_eq!(series(&both, &[("run_id", "r1")]).1, 2.0);
}

#[tokio::test]
async fn an_out_of_order_sample_is_rejected_once_not_retried() {
    let prometheus = Prometheus::start(&[]).await.unwrap();
    // Long backoff: a retry would show as a GaveUp error after seconds, not a Rejected one.
    let writer = RemoteWriter::new(&prometheus.url(), options(5, 2_000)).unwrap();
    let sample = Sample::now("caxton_bench_users", 100.0).label("run_id", "r2");
    writer.write(std::slice::from_ref(&sample)).await.unwrap();

    let older = Sample {
        value: 5.0,
        timestamp_ms: sample.timestamp_ms - 60_000,
        ..sample.clone()
    };
    let started = std::time::Instant::now();
    let err = writer.write(&[older]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "was retried");
    match &err {
        SinkError::Rejected { status, body, url } => {
            assert_eq!(*status, 400);
            assert!(body.contains("out of order"), "{body}");
            assert_eq!(url, writer.url());
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    assert!(err.to_string().contains(&prometheus.url()), "{err}");

    // The accepted value stands.
    let users = prometheus.query("caxton_bench_users").await.unwrap();
    assert_eq!(series(&users, &[("run_id", "r2")]).1, 100.0);
}

#[tokio::test]
async fn gives_up_naming_the_url_when_nothing_listens() {
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let writer = RemoteWriter::new(&url, options(3, 10)).unwrap();
    let err = writer
        .write(&[Sample::now("caxton_bench_rps", 1.0)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SinkError::GaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("{url}/api/v1/write")),
        "{message}"
    );
    assert!(message.contains("after 3 attempts"), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
}

#[tokio::test]
async fn waits_for_a_prometheus_that_comes_up_during_the_retries() {
    let port = free_port().unwrap();
    let writer = RemoteWriter::new(&format!("http://127.0.0.1:{port}"), options(60, 100)).unwrap();
    let sample = Sample::now("caxton_bench_run_end_timestamp_seconds", 1.7e9).label("run_id", "r3");
    // The write starts against a closed port; the server comes up while it backs off.
    let write = tokio::spawn(async move { writer.write(&[sample]).await });
    tokio::task::yield_now().await;
    let prometheus = Prometheus::start_on_port(port, &[]).await.unwrap();

    let outcome = write.await.unwrap().unwrap();
    assert!(outcome.attempts >= 2, "{outcome:?}");
    let end = prometheus
        .query("caxton_bench_run_end_timestamp_seconds")
        .await
        .unwrap();
    assert_eq!(series(&end, &[("run_id", "r3")]).1, 1.7e9);
}
