//! The Pushgateway sink against a real Pushgateway (Debian's `prometheus-pushgateway`, started
//! per test on a free loopback port): pushed series appear on its /metrics, grouped by run.

use std::time::Duration;

use caxton_reports::pushgateway::{PushMethod, Pushgateway, PushgatewayOptions};
use caxton_reports::remote_write::{Sample, SinkError};
use caxton_reports::sink::RetryPolicy;
use caxton_testkit::free_port;

/// The value of the one line of `text` for `name` whose labels include every `labels` pair.
fn value_of(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect();
    assert!(
        lines.len() <= 1,
        "several lines match {labels:?}: {lines:?}"
    );
    lines
        .first()
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

fn run_sample(name: &str, run: &str, stage: &str, value: f64) -> Sample {
    Sample::now(name, value)
        .label("run_id", run)
        .label("stage", stage)
        .label("plan", "k6")
}

#[tokio::test]
async fn pushed_series_are_served_grouped_by_run_id() {
    let gateway = caxton_testkit::Pushgateway::start(&[]).await.unwrap();
    let sink = Pushgateway::new(&gateway.url(), PushgatewayOptions::default()).unwrap();
    // A run id with '/' travels as run_id@base64 in the path.
    let nightly = "nightly/2026-11-24T02:00Z";
    let outcome = sink
        .push(&[
            run_sample("caxton_bench_rps", nightly, "ramp-100", 812.5),
            run_sample("caxton_bench_rps", nightly, "hold-100", 950.0),
            run_sample("caxton_bench_users", nightly, "hold-100", 100.0),
            run_sample("caxton_bench_rps", "ci 42", "all", 33.0),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.groups, outcome.series), (2, 4));

    let text = gateway.metrics_text().await.unwrap();
    let rps = |run: &str, stage: &str| {
        value_of(
            &text,
            "caxton_bench_rps",
            &[
                ("job", "caxton_bench"),
                ("run_id", run),
                ("stage", stage),
                ("plan", "k6"),
            ],
        )
    };
    assert_eq!(rps(nightly, "ramp-100"), Some(812.5), "{text}");
    assert_eq!(rps(nightly, "hold-100"), Some(950.0), "{text}");
    assert_eq!(rps("ci 42", "all"), Some(33.0), "{text}");
    assert_eq!(
        value_of(&text, "caxton_bench_users", &[("run_id", nightly)]),
        Some(100.0),
        "{text}"
    );
    assert!(text.contains("# TYPE caxton_bench_rps gauge"), "{text}");
}

/// The value of `name` in run `run`'s group.
fn run_value(text: &str, name: &str, run: &str) -> Option<f64> {
    value_of(text, name, &[("run_id", run)])
}

#[tokio::test]
async fn put_replaces_a_runs_group_and_post_adds_to_it() {
    let gateway = caxton_testkit::Pushgateway::start(&[]).await.unwrap();
    let put = Pushgateway::new(&gateway.url(), PushgatewayOptions::default()).unwrap();
    put.push(&[
        run_sample("caxton_bench_rps", "a", "all", 1.0),
        run_sample("caxton_bench_users", "a", "all", 10.0),
        run_sample("caxton_bench_rps", "b", "all", 2.0),
    ])
    .await
    .unwrap();

    // A later snapshot of run a without users: PUT drops users of run a only.
    put.push(&[run_sample("caxton_bench_rps", "a", "all", 5.0)])
        .await
        .unwrap();
    let text = gateway.metrics_text().await.unwrap();
    assert_eq!(run_value(&text, "caxton_bench_rps", "a"), Some(5.0));
    assert_eq!(run_value(&text, "caxton_bench_users", "a"), None, "{text}");
    assert_eq!(run_value(&text, "caxton_bench_rps", "b"), Some(2.0));

    let post = Pushgateway::new(
        &gateway.url(),
        PushgatewayOptions {
            method: PushMethod::Post,
            ..PushgatewayOptions::default()
        },
    )
    .unwrap();
    post.push(&[run_sample("caxton_bench_users", "a", "all", 20.0)])
        .await
        .unwrap();
    let text = gateway.metrics_text().await.unwrap();
    assert_eq!(run_value(&text, "caxton_bench_rps", "a"), Some(5.0));
    assert_eq!(run_value(&text, "caxton_bench_users", "a"), Some(20.0));
}

#[tokio::test]
async fn gives_up_naming_the_group_url_when_nothing_listens() {
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let options = PushgatewayOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..PushgatewayOptions::default()
    };
    let err = Pushgateway::new(&url, options)
        .unwrap()
        .push(&[run_sample("caxton_bench_rps", "r", "all", 1.0)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SinkError::GaveUp { attempts: 2, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("{url}/metrics/job/caxton_bench/run_id/r")),
        "{message}"
    );
}
