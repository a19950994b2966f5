//! The verdict of `caxton-bench history` as Prometheus series, so an alert can fire on a
//! change point rather than on a fixed week-old comparison: the names, defined once, and the
//! samples built from a judged history.

use caxton_reports::history::{Confirmed, History, SeriesKey};
use caxton_reports::remote_write::Sample;

/// One sample per change point of the history; the value is its relative change (after /
/// before − 1). Labels `metric`, `stage`, `scenario`, `plan`, `target`, `direction`, and the
/// `run_id` and `version` of the first run after the change.
pub const CHANGE_POINT: &str = "caxton_bench_change_point";
/// One sample per judged series: 1 while its newest run lies in a segment that a regression
/// started (its last change point is a regression), with that change point's `run_id` and
/// `version`; else 0. Every series long enough to judge has one, so an alert needs no
/// `absent()`.
pub const REGRESSION: &str = "caxton_bench_regression";

/// One sample: how many series had enough runs to be judged. 0 means the history cannot
/// judge yet (a young history), which the regression series alone would show as green.
pub const JUDGED_SERIES: &str = "caxton_bench_history_judged_series";

pub const VERDICT_METRIC_NAMES: [&str; 3] = [CHANGE_POINT, REGRESSION, JUDGED_SERIES];

/// `caxton-bench ab`, one sample per metric: the paired ratio B/A (labels `metric`,
/// `run_id`, `plan_key`, `target_key`, `verdict`).
pub const AB_RATIO: &str = "caxton_bench_ab_ratio";
/// Per metric: the smallest change in its bad direction the A/B run would have detected at
/// its stated power (relative; the error rate's in absolute points).
pub const AB_MIN_DETECTABLE: &str = "caxton_bench_ab_min_detectable_change";
/// One sample: 1 regressed, 0 no regression, -1 invalid (label `outcome`).
pub const AB_OUTCOME: &str = "caxton_bench_ab_regression";

pub const AB_METRIC_NAMES: [&str; 3] = [AB_RATIO, AB_MIN_DETECTABLE, AB_OUTCOME];

/// The verdict of an A/B run as samples stamped `ts`.
pub fn ab_samples(report: &caxton_reports::paired::AbReport, ts: i64) -> Vec<Sample> {
    use caxton_reports::paired::AbOutcome;
    let base = |name: &str, value: f64| {
        Sample {
            name: name.to_string(),
            labels: Vec::new(),
            value,
            timestamp_ms: ts,
        }
        .label("run_id", report.run_id.as_str())
        .label("target_key", report.target_key.as_str())
        .label(
            "plan_key",
            caxton_reports::history::series::plan_key(&report.candidate.plan),
        )
    };
    let mut out = Vec::new();
    for row in &report.verdict.rows {
        if row.change.is_finite() {
            out.push(
                base(AB_RATIO, 1.0 + row.change)
                    .label("metric", row.metric.as_str())
                    .label("verdict", row.verdict.as_str()),
            );
        }
        if let Some(mdc) = row.min_detectable {
            out.push(base(AB_MIN_DETECTABLE, mdc).label("metric", row.metric.as_str()));
        }
    }
    let outcome = report.verdict.outcome;
    let value = match outcome {
        AbOutcome::Regressed => 1.0,
        AbOutcome::NoRegression => 0.0,
        AbOutcome::Invalid => -1.0,
    };
    let outcome_label = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    out.push(base(AB_OUTCOME, value).label("outcome", outcome_label));
    out
}

/// The Pushgateway job the verdict is pushed under: one group, replaced each night, so a
/// change point that no longer holds disappears.
pub const PUSHGATEWAY_JOB: &str = "caxton_bench_history";

fn series_sample(name: &str, key: &SeriesKey, value: f64, ts: i64) -> Sample {
    Sample {
        name: name.to_string(),
        labels: vec![
            ("metric".into(), key.metric.key().into()),
            ("stage".into(), key.stage.clone()),
            ("scenario".into(), key.scenario.clone()),
            ("plan".into(), key.plan.clone()),
            ("target".into(), key.target.clone()),
        ],
        value,
        timestamp_ms: ts,
    }
}

/// The change points and per-series regression flags of `history`, stamped `ts`.
pub fn verdict_samples(history: &History, ts: i64) -> Vec<Sample> {
    let mut out: Vec<Sample> = history
        .change_points()
        .map(|(key, c)| {
            series_sample(CHANGE_POINT, key, c.point.change, ts)
                .label("direction", c.direction.as_str())
                .label("run_id", c.after.run_id.as_str())
                .label("version", c.after.version.as_str())
        })
        .collect();
    // A ratio series whose newest paired nights confirm a regression raises its flag (and so
    // the alert), even before it is long enough for a change point.
    let confirmed = |key: &SeriesKey| {
        history.confirmed.iter().find(|c| {
            key.scenario == caxton_reports::history::series::PAIRED
                && c.pair == key.target
                && c.metric == key.metric.key()
        })
    };
    let flagged = history
        .verdicts
        .iter()
        .filter(|v| !v.too_short || confirmed(&v.series.key).is_some());
    out.extend(flagged.map(|v| {
        let sample = series_sample(REGRESSION, &v.series.key, 0.0, ts);
        if let Some(c) = confirmed(&v.series.key) {
            return Sample {
                value: 1.0,
                ..sample.label("run_id", c.run_ids.last().map_or("", String::as_str))
            };
        }
        match v.change_points.last() {
            Some(c) if v.in_regression() => Sample {
                value: 1.0,
                ..sample
                    .label("run_id", c.after.run_id.as_str())
                    .label("version", c.after.version.as_str())
            },
            _ => sample,
        }
    }));
    // A confirmed metric with no ratio series (the error rate, whose ratio to a control that
    // made no errors is undefined) raises a flag of its own, labelled as its series would be.
    let has_series = |c: &Confirmed| {
        history.verdicts.iter().any(|v| {
            let key = &v.series.key;
            key.scenario == caxton_reports::history::series::PAIRED
                && key.target == c.pair
                && key.metric.key() == c.metric
        })
    };
    out.extend(
        history
            .confirmed
            .iter()
            .filter(|c| !has_series(c))
            .map(|c| Sample {
                name: REGRESSION.to_string(),
                labels: vec![
                    ("metric".into(), c.metric.clone()),
                    ("stage".into(), caxton_reports::history::series::ALL.into()),
                    (
                        "scenario".into(),
                        caxton_reports::history::series::PAIRED.into(),
                    ),
                    ("plan".into(), c.plan.clone()),
                    ("target".into(), c.pair.clone()),
                    (
                        "run_id".into(),
                        c.run_ids.last().cloned().unwrap_or_default(),
                    ),
                ],
                value: 1.0,
                timestamp_ms: ts,
            }),
    );
    out.push(Sample {
        name: JUDGED_SERIES.to_string(),
        labels: Vec::new(),
        value: history.judged() as f64,
        timestamp_ms: ts,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use caxton_reports::history::{self, DetectOptions, fixtures};

    /// The value of label `n` of `s`, empty when it has none.
    fn label(s: &Sample, n: &str) -> String {
        s.labels
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn judged(nights: usize) -> History {
        history::analyse(
            fixtures::runs(nights),
            &fixtures::observations(nights),
            &DetectOptions::default(),
        )
    }

    #[test]
    fn a_regression_is_one_change_point_and_a_raised_flag_on_its_series_only() {
        let samples = verdict_samples(&judged(30), 7);
        let points: Vec<_> = samples.iter().filter(|s| s.name == CHANGE_POINT).collect();
        assert_eq!(points.len(), 1, "{samples:?}");
        assert_eq!(label(points[0], "metric"), "p95");
        assert_eq!(label(points[0], "run_id"), "night-20");
        assert_eq!(label(points[0], "version"), "1.1");
        assert_eq!(label(points[0], "direction"), "regression");
        assert!(points[0].value > 0.2, "{:?}", points[0]);
        let flags: Vec<_> = samples
            .iter()
            .filter(|s| s.name == REGRESSION)
            .map(|s| (label(s, "metric"), s.value))
            .collect();
        assert_eq!(
            flags,
            vec![("p95".to_string(), 1.0), ("throughput".to_string(), 0.0)]
        );
        assert!(
            samples
                .iter()
                .all(|s| s.timestamp_ms == 7 && VERDICT_METRIC_NAMES.contains(&s.name.as_str()))
        );
    }

    #[test]
    fn a_confirmed_error_rate_raises_a_flag_of_its_own() {
        let mut history = judged(30);
        let pair = "nightly vs 0.2.0@abc123";
        history.confirmed.push(Confirmed {
            pair: pair.into(),
            plan: "k6".into(),
            metric: "error_rate".into(),
            run_ids: vec!["night-1".into(), "night-2".into()],
            changes: vec![f64::INFINITY, f64::INFINITY],
        });
        let samples = verdict_samples(&history, 7);
        let flags: Vec<_> = samples
            .iter()
            .filter(|s| s.name == REGRESSION && label(s, "metric") == "error_rate")
            .collect();
        assert_eq!(flags.len(), 1, "{samples:?}");
        let flag = flags[0];
        assert_eq!(flag.value, 1.0);
        assert_eq!(label(flag, "target"), pair);
        assert_eq!(
            label(flag, "scenario"),
            caxton_reports::history::series::PAIRED
        );
        assert_eq!(label(flag, "run_id"), "night-2");
    }
}
