//! Reports for the tests: the committed v1 fixture (a real `caxton-bench` run) and reports
//! built from latencies recorded into real HDR histograms.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use caxton_reports::model::{RunReport, SecondSample, Stats, new_histogram};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// `caxton-bench --stages "2s:5,2s:0" --think-time 100ms` against the embedded runtime,
/// written by schema 1 and committed unchanged.
pub(crate) fn fixture_v1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-v1.json")
}

pub(crate) fn read_fixture_v1() -> RunReport {
    RunReport::read(&fixture_v1()).unwrap()
}

/// A 60 s run of `requests` requests whose latencies (µs) are log-normal around 2 ms,
/// multiplied by `slowdown`; ~300 requests/s with a few failures. `seed` picks the sample, so
/// two seeds are two runs of the same build.
pub(crate) fn synthetic_report(seed: u64, requests: u64, slowdown: f64) -> RunReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut corrected = new_histogram();
    let mut uncorrected = new_histogram();
    for _ in 0..requests {
        // Sum of uniforms ≈ normal; exp of it ≈ log-normal, a realistic latency shape.
        let z: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
        let us = (2000.0 * (0.5 * z).exp() * slowdown) as u64;
        corrected.record(us.max(1)).unwrap();
        uncorrected.record((us / 2).max(1)).unwrap();
    }
    let seconds = 60u64;
    let failures = requests / 1000;
    let mut report = read_fixture_v1();
    report.run_id = format!("synthetic-{seed}-x{slowdown}");
    report.duration_seconds = seconds as f64;
    let stats = Stats::from_parts(
        &corrected,
        &uncorrected,
        requests,
        failures,
        seconds as f64,
        [
            ("200".to_string(), requests - failures),
            ("500".to_string(), failures),
        ]
        .into(),
        [("status".to_string(), failures)].into(),
    )
    .unwrap();
    report.overall = stats.clone();
    for (i, stage) in report.stages.iter_mut().enumerate() {
        stage.started_at_seconds = (i as u64 * seconds / 2) as f64;
        stage.ended_at_seconds = ((i as u64 + 1) * seconds / 2) as f64;
        stage.stats = stats.clone();
    }
    let per_second = requests / seconds;
    report.timeline = (0..seconds)
        .map(|t| SecondSample {
            t,
            requests: (per_second + rng.random_range(0..=20)).saturating_sub(10),
            failures: u64::from(rng.random_range(0..1000) < failures * 1000 / requests.max(1) * 16),
            p95_ms: 4.0 * slowdown,
            p95_uncorrected_ms: 2.0 * slowdown,
            users: 5,
            dropped_iterations: 0,
            stage: report.stages[usize::from(t >= seconds / 2)].name.clone(),
        })
        .collect();
    report
}

/// A fresh directory under the target's temp dir.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caxton-reports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
