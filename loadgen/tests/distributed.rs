//! Distributed load on loopback: two workers sharing one real runtime, each running half
//! the users, merge to the same totals and about the same percentiles as one run with all
//! the users; the thresholds are judged once, by `caxton-bench merge`.
#![cfg(feature = "embedded")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use caxton_reports::model::{Percentiles, RunReport, new_histogram};
use caxton_runtime::config::Config;
use common::{BENCH, text};

const USERS: &str = "6";
/// A breach on purpose: workers must still exit 0, merge must exit 99.
const IMPOSSIBLE: &str = "http_req_duration: p(95)<0.001";

async fn bench(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BENCH)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("caxton-bench did not stop by itself within 60 s")
        .unwrap()
}

fn load_args<'a>(target: &'a str, out: &'a Path, run_id: &'a str) -> Vec<&'a str> {
    vec![
        "--target",
        target,
        "--duration",
        "3s",
        "--concurrent-users",
        USERS,
        "--think-time",
        "50ms",
        "--no-flamegraph",
        "--progress",
        "plain",
        "--threshold",
        IMPOSSIBLE,
        "--run-id",
        run_id,
        "--out",
        out.to_str().unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_merge_to_the_figures_of_one_run() {
    let server = caxton_runtime::start(Config::for_tests()).await.unwrap();
    let target = format!("http://{}", server.api_addr());
    let out = std::env::temp_dir().join(format!("caxton-bench-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    let single = bench(&load_args(&target, &out, "single")).await;
    assert_eq!(single.status.code(), Some(99), "{}", text(&single));
    let single = RunReport::read(&out.join("single/report.json")).unwrap();

    let mut w0 = load_args(&target, &out, "dist");
    w0.extend(["--worker-index", "0", "--workers", "2"]);
    let mut w1 = load_args(&target, &out, "dist");
    w1.extend(["--worker-index", "1", "--workers", "2"]);
    let (o0, o1) = tokio::join!(bench(&w0), bench(&w1));
    // A worker's breach is not its verdict.
    assert_eq!(o0.status.code(), Some(0), "{}", text(&o0));
    assert_eq!(o1.status.code(), Some(0), "{}", text(&o1));
    let paths: Vec<PathBuf> = (0..2)
        .map(|i| out.join(format!("dist/worker-{i}/report.json")))
        .collect();
    let workers: Vec<RunReport> = paths.iter().map(|p| RunReport::read(p).unwrap()).collect();
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w.plan.start_target, 3.0, "worker {i} runs half the users");
        assert_eq!(w.distributed.as_ref().unwrap().worker_index, Some(i as u32));
        assert!(w.thresholds.iter().any(|t| !t.ok));
    }

    let merge = bench(&[
        "merge",
        paths[0].to_str().unwrap(),
        paths[1].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(merge.status.code(), Some(99), "{}", text(&merge));
    let merged = RunReport::read(&out.join("dist/report.json")).unwrap();
    server.shutdown().await;

    // Totals: exactly the workers' sums.
    let sum = |f: fn(&RunReport) -> u64| workers.iter().map(f).sum::<u64>();
    assert_eq!(merged.overall.requests, sum(|r| r.overall.requests));
    assert_eq!(merged.overall.failures, sum(|r| r.overall.failures));
    assert_eq!(
        merged.stages[0].stats.requests,
        sum(|r| r.stages[0].stats.requests)
    );
    assert_eq!(merged.plan.start_target, single.plan.start_target);
    assert_eq!(merged.plan.stages[0].name, single.plan.stages[0].name);
    // Percentiles: exactly those of every request of both workers, not an average.
    let mut all = new_histogram();
    for w in &workers {
        all.add(w.overall.histograms.decode_corrected().unwrap())
            .unwrap();
    }
    let (got, want) = (
        &merged.overall.latency_ms.corrected,
        Percentiles::from_histogram(&all),
    );
    // Quantiles are HDR bucket values (exact); the mean is a float sum whose last digit
    // depends on the order the histograms were added in.
    assert_eq!(
        (
            got.count, got.min, got.p50, got.p90, got.p95, got.p99, got.p99_9, got.max
        ),
        (
            want.count, want.min, want.p50, want.p90, want.p95, want.p99, want.p99_9, want.max
        )
    );
    assert!(
        (got.mean - want.mean).abs() <= 1e-9 * want.mean.abs().max(1.0),
        "{got:?} vs {want:?}"
    );
    assert_eq!(all.len(), merged.overall.requests);
    // About the same load as one run with all the users (same users, same think time,
    // same server; the machine is shared, so within a factor).
    let (m, s) = (
        merged.overall.requests as f64,
        single.overall.requests as f64,
    );
    assert!(m > 0.5 * s && m < 2.0 * s, "merged {m} vs single {s}");
    let (mp, sp) = (
        merged.overall.latency_ms.corrected.p50,
        single.overall.latency_ms.corrected.p50,
    );
    assert!(
        mp < sp * 5.0 + 5.0 && sp < mp * 5.0 + 5.0,
        "p50 merged {mp} ms vs single {sp} ms"
    );
    // The thresholds were judged once, globally: the Caxton Monitoring and Observability Guide's
    // pass, the impossible one fails.
    let verdicts: Vec<(&str, bool)> = merged
        .thresholds
        .iter()
        .map(|t| (t.expression.as_str(), t.ok))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("http_req_duration: p(95)<2000", true),
            ("http_req_failed: rate<0.1", true),
            (IMPOSSIBLE, false)
        ],
        "{}",
        text(&merge)
    );

    // A missing worker is an error (exit 1) that says which.
    let partial = bench(&[
        "merge",
        paths[1].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(partial.status.code(), Some(1), "{}", text(&partial));
    assert!(
        text(&partial).contains("worker(s) [0]"),
        "{}",
        text(&partial)
    );
    let _ = std::fs::remove_dir_all(&out);
}
