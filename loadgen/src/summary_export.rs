//! `--summary-export FILE`: a run's figures in the shape k6's own `--summary-export` writes,
//! so a CI step written for the Caxton Monitoring and Observability Guide's k6 script reads
//! caxton-bench's results unchanged.
//!
//! The metrics are the ones k6 users script against: `http_req_duration` (a trend, ms, from
//! the intended start), `http_req_failed` and `checks` (rates: `passes`, `fails`, `value`),
//! `http_reqs` and `dropped_iterations` (counters: `count`, `rate`), each with its
//! `thresholds` as k6 writes them (`{"p(95)<2000": false}`, where `true` means breached).
//! A threshold restricted to a stage appears under its k6 sub-metric name
//! (`http_req_duration{stage:hold-200}`) with that stage's figures.

use std::path::Path;

use caxton_reports::model::{Percentiles, RunReport, Stats, ThresholdMetric, ThresholdResult};
use serde_json::{Map, Value, json};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot write the summary export {path}: {source}")]
pub struct SummaryExportError {
    path: String,
    source: std::io::Error,
}

/// Writes the k6-shaped summary of `report` to `path`.
pub fn write(report: &RunReport, path: &Path) -> Result<(), SummaryExportError> {
    let text = serde_json::to_string_pretty(&k6_summary(report)).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| SummaryExportError {
        path: path.display().to_string(),
        source,
    })
}

/// The summary as a JSON value.
pub(crate) fn k6_summary(report: &RunReport) -> Value {
    let mut metrics = Map::new();
    let seconds = report.duration_seconds;
    let whole = |m: ThresholdMetric| thresholds_of(report, m, None);
    metrics.insert(
        ThresholdMetric::Duration.name().into(),
        trend(
            &report.overall.latency_ms.corrected,
            whole(ThresholdMetric::Duration),
        ),
    );
    metrics.insert(
        ThresholdMetric::DurationUncorrected.name().into(),
        trend(
            &report.overall.latency_ms.uncorrected,
            whole(ThresholdMetric::DurationUncorrected),
        ),
    );
    metrics.insert(
        ThresholdMetric::Failed.name().into(),
        failed(&report.overall, whole(ThresholdMetric::Failed)),
    );
    metrics.insert(
        ThresholdMetric::Reqs.name().into(),
        counter(
            report.overall.requests,
            seconds,
            whole(ThresholdMetric::Reqs),
        ),
    );
    if report.dropped_iterations > 0 || !whole(ThresholdMetric::Dropped).is_empty() {
        metrics.insert(
            ThresholdMetric::Dropped.name().into(),
            counter(
                report.dropped_iterations,
                seconds,
                whole(ThresholdMetric::Dropped),
            ),
        );
    }
    let (passes, fails) = report
        .checks
        .iter()
        .fold((0, 0), |(p, f), c| (p + c.passes, f + c.fails));
    metrics.insert(
        ThresholdMetric::Checks.name().into(),
        rate(passes, fails, whole(ThresholdMetric::Checks)),
    );
    for stage in &report.stages {
        for metric in [
            ThresholdMetric::Duration,
            ThresholdMetric::DurationUncorrected,
            ThresholdMetric::Failed,
            ThresholdMetric::Reqs,
        ] {
            let marks = thresholds_of(report, metric, Some(&stage.name));
            if marks.is_empty() {
                continue;
            }
            let s = &stage.stats;
            let value = match metric {
                ThresholdMetric::Duration => trend(&s.latency_ms.corrected, marks),
                ThresholdMetric::DurationUncorrected => trend(&s.latency_ms.uncorrected, marks),
                ThresholdMetric::Failed => failed(s, marks),
                _ => counter(
                    s.requests,
                    stage.ended_at_seconds - stage.started_at_seconds,
                    marks,
                ),
            };
            metrics.insert(format!("{}{{stage:{}}}", metric.name(), stage.name), value);
        }
    }
    let checks: Map<String, Value> = report
        .checks
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({
                    "name": c.name,
                    "path": format!("::{}", c.name),
                    "passes": c.passes,
                    "fails": c.fails,
                }),
            )
        })
        .collect();
    json!({
        "root_group": {"name": "", "path": "", "groups": {}, "checks": checks},
        "metrics": metrics,
    })
}

/// k6's threshold marks of one (sub-)metric: the expression after `metric: `, mapped to
/// whether it was breached.
fn thresholds_of(
    report: &RunReport,
    metric: ThresholdMetric,
    stage: Option<&str>,
) -> Map<String, Value> {
    report
        .thresholds
        .iter()
        .filter(|t| t.metric == metric && t.stage.as_deref() == stage)
        .map(|t: &ThresholdResult| {
            let condition = t
                .expression
                .split_once("}:")
                .or_else(|| t.expression.split_once(':'))
                .map_or(t.expression.as_str(), |(_, c)| c)
                .trim()
                .to_owned();
            (condition, Value::Bool(!t.ok))
        })
        .collect()
}

fn with_thresholds(mut value: Value, marks: Map<String, Value>) -> Value {
    if !marks.is_empty()
        && let Some(object) = value.as_object_mut()
    {
        object.insert("thresholds".into(), Value::Object(marks));
    }
    value
}

fn trend(p: &Percentiles, marks: Map<String, Value>) -> Value {
    with_thresholds(
        json!({
            "avg": p.mean, "min": p.min, "med": p.p50, "max": p.max,
            "p(90)": p.p90, "p(95)": p.p95,
        }),
        marks,
    )
}

/// A k6 rate metric: `passes` counts the samples that were true.
fn rate(passes: u64, fails: u64, marks: Map<String, Value>) -> Value {
    let total = passes + fails;
    let value = if total == 0 {
        0.0
    } else {
        passes as f64 / total as f64
    };
    with_thresholds(
        json!({"passes": passes, "fails": fails, "value": value}),
        marks,
    )
}

/// `http_req_failed` is true for a failed request, so its `passes` are the failures.
fn failed(s: &Stats, marks: Map<String, Value>) -> Value {
    rate(s.failures, s.requests - s.failures.min(s.requests), marks)
}

fn counter(count: u64, seconds: f64, marks: Map<String, Value>) -> Value {
    let rate = if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    };
    with_thresholds(json!({"count": count, "rate": rate}), marks)
}
