//! Run-vs-baseline comparison on reports built from real HDR histograms.

mod common;

use caxton_reports::compare::{self, CompareOptions, EXIT_OK, EXIT_REGRESSED, Metric, Verdict};
use common::synthetic_report;

fn verdict(c: &compare::Comparison, m: Metric) -> Verdict {
    c.rows.iter().find(|r| r.metric == m).unwrap().verdict
}

#[test]
fn an_injected_20_percent_p95_regression_is_flagged() {
    let baseline = synthetic_report(1, 20_000, 1.0);
    let current = synthetic_report(2, 20_000, 1.2);
    let c = compare::compare(&baseline, &current, &CompareOptions::default()).unwrap();
    let p95 = c.rows.iter().find(|r| r.metric == Metric::P95).unwrap();
    assert!((p95.change - 0.2).abs() < 0.05, "{p95:?}");
    assert_eq!(p95.verdict, Verdict::Regressed, "{}", c.to_text());
    assert!(p95.interval.unwrap().low > 0.0);
    assert_eq!(c.exit_code(), EXIT_REGRESSED);
    // Throughput and error rate did not move.
    assert_ne!(verdict(&c, Metric::Throughput), Verdict::Regressed);
    let md = c.to_markdown();
    assert!(
        md.contains("| p95 latency (corrected) |") && md.contains("**REGRESSED**"),
        "{md}"
    );
    assert!(
        c.to_text().contains("regressed: p50, p90, p95, p99"),
        "{}",
        c.to_text()
    );
}

#[test]
fn two_runs_of_the_same_build_pass() {
    let baseline = synthetic_report(3, 20_000, 1.0);
    let current = synthetic_report(4, 20_000, 1.0);
    let c = compare::compare(&baseline, &current, &CompareOptions::default()).unwrap();
    assert_eq!(c.exit_code(), EXIT_OK, "{}", c.to_text());
    assert!(
        c.rows.iter().all(|r| r.verdict == Verdict::Ok),
        "{}",
        c.to_text()
    );
    assert!(c.to_text().contains("no significant regression"));
}

#[test]
fn a_small_regression_passes_the_default_threshold_but_not_a_tight_one() {
    let baseline = synthetic_report(5, 20_000, 1.0);
    let current = synthetic_report(6, 20_000, 1.06);
    let lenient = compare::compare(&baseline, &current, &CompareOptions::default()).unwrap();
    assert_eq!(
        verdict(&lenient, Metric::P95),
        Verdict::Ok,
        "{}",
        lenient.to_text()
    );
    let strict = CompareOptions::from_flags(None, &["p50=3%".into()]).unwrap();
    let tight = compare::compare(&baseline, &current, &strict).unwrap();
    assert_eq!(
        verdict(&tight, Metric::P50),
        Verdict::Regressed,
        "{}",
        tight.to_text()
    );
    assert_eq!(verdict(&tight, Metric::P95), Verdict::Ok);
}

#[test]
fn a_large_change_in_a_tiny_run_is_not_significant() {
    // 30 requests: a 20% shift is within the noise; the verdict says so instead of failing CI.
    let baseline = synthetic_report(7, 30, 1.0);
    let current = synthetic_report(8, 30, 1.2);
    let c = compare::compare(&baseline, &current, &CompareOptions::default()).unwrap();
    let p99 = verdict(&c, Metric::P99);
    assert!(
        matches!(p99, Verdict::NotSignificant | Verdict::Ok),
        "{}",
        c.to_text()
    );
    assert_ne!(
        verdict(&c, Metric::P95),
        Verdict::Regressed,
        "{}",
        c.to_text()
    );
}

#[test]
fn the_same_reports_give_the_same_verdict() {
    let baseline = synthetic_report(9, 5_000, 1.0);
    let current = synthetic_report(10, 5_000, 1.1);
    let opts = CompareOptions::default();
    let a = compare::compare(&baseline, &current, &opts).unwrap();
    let b = compare::compare(&baseline, &current, &opts).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_history_directory_calibrates_the_threshold_from_its_noise() {
    use caxton_reports::calibration;
    let dir = common::temp_dir("calibration");
    // Nights whose p95 wanders by about ±25 % with nothing changed.
    let wander = [1.0, 1.25, 0.8, 1.2, 0.85, 1.3, 0.9, 1.15, 0.75, 1.0];
    for (i, w) in wander.iter().enumerate() {
        let mut r = synthetic_report(100 + i as u64, 20_000, *w);
        r.started_unix_ms = 1_000 + i as u64;
        let path = dir.join(format!("night-{i:02}/report.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        r.write(&path).unwrap();
    }
    let current = synthetic_report(200, 20_000, 1.2);
    let calibrated = calibration::from_history(&dir, &current.plan, false).unwrap();
    assert_eq!(calibrated.runs, wander.len());
    // The newest night (x1.0) is the baseline: +20 % against it.
    assert!(calibrated.baseline.0.ends_with("night-09/report.json"));
    let fixed =
        compare::compare(&calibrated.baseline.1, &current, &CompareOptions::default()).unwrap();
    assert_eq!(verdict(&fixed, Metric::P95), Verdict::Regressed);
    let mut opts = CompareOptions::default();
    calibrated.apply(&mut opts, &[]);
    assert!(opts.threshold_for(Metric::P95) > 0.3, "{opts:?}");
    let c = compare::compare(&calibrated.baseline.1, &current, &opts).unwrap();
    assert_eq!(verdict(&c, Metric::P95), Verdict::Ok, "{}", c.to_text());
    let described = calibrated.describe(&opts);
    assert!(
        described.contains("calibrated from 10 runs")
            && described.contains("p95: run-to-run noise"),
        "{described}"
    );
    // An explicit --metric-threshold wins over the calibration.
    let mut explicit = CompareOptions::from_flags(None, &["p95=5%".into()]).unwrap();
    calibrated.apply(&mut explicit, &[Metric::P95]);
    assert_eq!(explicit.threshold_for(Metric::P95), 0.05);
}

#[test]
fn a_report_whose_figures_disagree_with_its_histogram_is_refused() {
    let baseline = synthetic_report(1, 20_000, 1.0);
    let mut doctored = synthetic_report(2, 20_000, 1.0);
    doctored.overall.latency_ms.corrected.p95 *= 1.5;
    let err = compare::compare(&baseline, &doctored, &CompareOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&doctored.run_id) && text.contains("p95") && text.contains("histogram"),
        "{text}"
    );
}

#[test]
fn every_comparison_says_what_its_interval_cannot_see() {
    let c = compare::compare(
        &synthetic_report(1, 20_000, 1.0),
        &synthetic_report(2, 20_000, 1.0),
        &CompareOptions::default(),
    )
    .unwrap();
    assert_eq!(c.resampled, compare::Resampled::Requests);
    for out in [c.to_text(), c.to_markdown()] {
        assert!(
            out.contains("caxton-bench ab") && out.contains("too narrow"),
            "{out}"
        );
    }
}
