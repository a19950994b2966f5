//! The `caxton_bench_*` series (CONTRACTS.md "caxton-bench series"): their names, defined
//! once, and the conversion of live figures and of a finished report into samples for the
//! Prometheus sinks of `caxton-reports`.

use caxton_reports::history;
use caxton_reports::model::{InvalidKind, Percentiles, QUANTILES, RunReport, Stats, TargetBuild};
use caxton_reports::native_histogram::NativeHistogram;
use caxton_reports::remote_write::{HistogramSample, Sample};
use hdrhistogram::Histogram;

pub const REQUESTS_TOTAL: &str = "caxton_bench_requests_total";
pub const FAILURES_TOTAL: &str = "caxton_bench_failures_total";
pub const ERROR_RATE: &str = "caxton_bench_error_rate";
pub const RPS: &str = "caxton_bench_rps";
pub const LATENCY_SECONDS: &str = "caxton_bench_latency_seconds";
pub const CHECKS_TOTAL: &str = "caxton_bench_checks_total";
pub const USERS: &str = "caxton_bench_users";
pub const DROPPED_ITERATIONS_TOTAL: &str = "caxton_bench_dropped_iterations_total";
pub const THRESHOLD_OK: &str = "caxton_bench_threshold_ok";
pub const RUN_END_TIMESTAMP_SECONDS: &str = "caxton_bench_run_end_timestamp_seconds";
/// 1 for a valid run, 0 for an invalid one; `..._invalid_reason{reason}` says why (1 for
/// each reason that applies, 0 for the others).
pub const RUN_VALID: &str = "caxton_bench_run_valid";
pub const RUN_INVALID_REASON: &str = "caxton_bench_run_invalid_reason";
/// Corrected latency as a cumulative Prometheus histogram (`_bucket{le}`, `_sum`,
/// `_count`): unlike the quantile gauges, it sums across workers and over time, so
/// `histogram_quantile(0.95, sum by (le) (rate(..._bucket[1m])))` is a global p95. To a
/// receiver that takes native histograms the same name also goes as one (no suffix), and
/// `histogram_quantile(0.95, sum(rate(...[1m])))` needs no bucket list.
pub const REQUEST_DURATION_SECONDS: &str = "caxton_bench_request_duration_seconds";

/// The histogram's bucket bounds, seconds: from 0.1 ms (a loopback request) to a minute.
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

pub const BENCH_METRIC_NAMES: [&str; 13] = [
    REQUESTS_TOTAL,
    FAILURES_TOTAL,
    ERROR_RATE,
    RPS,
    LATENCY_SECONDS,
    CHECKS_TOTAL,
    USERS,
    DROPPED_ITERATIONS_TOTAL,
    THRESHOLD_OK,
    RUN_END_TIMESTAMP_SECONDS,
    RUN_VALID,
    RUN_INVALID_REASON,
    REQUEST_DURATION_SECONDS,
];

/// The stage label of whole-run figures.
pub const STAGE_ALL: &str = "all";

/// Labels every series carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommonLabels {
    pub run_id: String,
    pub plan: String,
    pub scenario: String,
    pub target: String,
    pub version: String,
    /// The target's build (`version+commit` from its `caxton_build_info`), or "unknown".
    pub target_version: String,
    pub worker: String,
    /// The plan's identity in a history (`history::series::plan_key`): name and stages.
    pub plan_key: String,
    /// The target's identity in a history (`history::series::target_key`): `embedded` for
    /// every embedded run (each listens on a new port).
    pub target_key: String,
}

/// How the target's build is labelled: `0.2.0+abc123`, or "unknown".
pub(crate) fn target_version(build: Option<&TargetBuild>) -> String {
    build.map_or_else(
        || "unknown".into(),
        |b| format!("{}+{}", b.version, b.commit),
    )
}

impl CommonLabels {
    pub(crate) fn of_report(report: &RunReport) -> CommonLabels {
        CommonLabels {
            run_id: report.run_id.clone(),
            plan: report.plan.name.clone(),
            scenario: report
                .plan
                .scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            target: report.target.clone(),
            version: report.tool.version.clone(),
            target_version: target_version(report.target_build.as_ref()),
            worker: match &report.distributed {
                Some(d) => d
                    .worker_index
                    .map_or_else(|| "merged".into(), |i| i.to_string()),
                None => "0".into(),
            },
            plan_key: history::series::plan_key(&report.plan),
            target_key: history::series::target_key(report),
        }
    }

    fn sample(&self, name: &str, stage: &str, value: f64, ts: i64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: self.labels(stage),
            value,
            timestamp_ms: ts,
        }
    }

    fn labels(&self, stage: &str) -> Vec<(String, String)> {
        vec![
            ("run_id".into(), self.run_id.clone()),
            ("plan".into(), self.plan.clone()),
            ("scenario".into(), self.scenario.clone()),
            ("stage".into(), stage.to_string()),
            ("target".into(), self.target.clone()),
            ("version".into(), self.version.clone()),
            ("target_version".into(), self.target_version.clone()),
            ("worker".into(), self.worker.clone()),
            ("plan_key".into(), self.plan_key.clone()),
            ("target_key".into(), self.target_key.clone()),
        ]
    }
}

/// Figures of the run so far, as the ticker has them.
pub(crate) struct LiveFigures<'a> {
    /// Corrected latency of the whole run so far, µs.
    pub histogram: &'a Histogram<u64>,
    pub requests: u64,
    pub failures: u64,
    /// Requests per second over the last push interval.
    pub rps: f64,
    pub corrected: &'a Percentiles,
    pub uncorrected: &'a Percentiles,
    /// (check name, passes, fails)
    pub checks: Vec<(&'a str, u64, u64)>,
    pub users: u64,
    pub dropped: u64,
}

fn latency(
    l: &CommonLabels,
    stage: &str,
    c: &Percentiles,
    u: &Percentiles,
    ts: i64,
    out: &mut Vec<Sample>,
) {
    if c.count == 0 {
        return;
    }
    for (p, corrected) in [(c, "true"), (u, "false")] {
        let values = [p.p50, p.p90, p.p95, p.p99, p.p99_9, p.max];
        for ((_, q), ms) in QUANTILES.iter().zip(values) {
            out.push(
                l.sample(LATENCY_SECONDS, stage, ms / 1000.0, ts)
                    .label("quantile", format!("{q}"))
                    .label("corrected", corrected),
            );
        }
    }
}

fn counts(
    l: &CommonLabels,
    stage: &str,
    requests: u64,
    failures: u64,
    rps: f64,
    ts: i64,
    out: &mut Vec<Sample>,
) {
    out.push(l.sample(REQUESTS_TOTAL, stage, requests as f64, ts));
    out.push(l.sample(FAILURES_TOTAL, stage, failures as f64, ts));
    let rate = if requests == 0 {
        0.0
    } else {
        failures as f64 / requests as f64
    };
    out.push(l.sample(ERROR_RATE, stage, rate, ts));
    out.push(l.sample(RPS, stage, rps, ts));
}

/// The corrected-latency histogram (µs) as cumulative `_bucket`/`_sum`/`_count` samples.
fn histogram(l: &CommonLabels, h: &Histogram<u64>, ts: i64, out: &mut Vec<Sample>) {
    let bucket = format!("{REQUEST_DURATION_SECONDS}_bucket");
    for le in DURATION_BUCKETS {
        let us = (le * 1e6) as u64;
        let n = h.count_between(0, us);
        out.push(
            l.sample(&bucket, STAGE_ALL, n as f64, ts)
                .label("le", format!("{le}")),
        );
    }
    out.push(
        l.sample(&bucket, STAGE_ALL, h.len() as f64, ts)
            .label("le", "+Inf"),
    );
    let sum_us: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum();
    out.push(l.sample(
        &format!("{REQUEST_DURATION_SECONDS}_sum"),
        STAGE_ALL,
        sum_us / 1e6,
        ts,
    ));
    out.push(l.sample(
        &format!("{REQUEST_DURATION_SECONDS}_count"),
        STAGE_ALL,
        h.len() as f64,
        ts,
    ));
}

/// The corrected-latency histogram (µs) as a native histogram in seconds.
pub(crate) fn native_histogram(l: &CommonLabels, h: &Histogram<u64>, ts: i64) -> HistogramSample {
    HistogramSample {
        name: REQUEST_DURATION_SECONDS.into(),
        labels: l.labels(STAGE_ALL),
        histogram: NativeHistogram::from_observations(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to() as f64 / 1e6, v.count_at_value())),
        ),
        timestamp_ms: ts,
    }
}

/// The final push's native histogram, when the report's histogram decodes.
pub fn final_native_histograms(report: &RunReport, ts: i64) -> Vec<HistogramSample> {
    let l = CommonLabels::of_report(report);
    report
        .overall
        .histograms
        .decode_corrected()
        .map(|h| native_histogram(&l, &h, ts))
        .into_iter()
        .collect()
}

fn checks(l: &CommonLabels, all: &[(&str, u64, u64)], ts: i64, out: &mut Vec<Sample>) {
    for (name, pass, fail) in all {
        for (result, n) in [("pass", pass), ("fail", fail)] {
            out.push(
                l.sample(CHECKS_TOTAL, STAGE_ALL, *n as f64, ts)
                    .label("check", *name)
                    .label("result", result),
            );
        }
    }
}

/// The samples of a periodic push during the run.
pub(crate) fn live_samples(l: &CommonLabels, f: &LiveFigures<'_>, ts: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    counts(l, STAGE_ALL, f.requests, f.failures, f.rps, ts, &mut out);
    latency(l, STAGE_ALL, f.corrected, f.uncorrected, ts, &mut out);
    histogram(l, f.histogram, ts, &mut out);
    checks(l, &f.checks, ts, &mut out);
    out.push(l.sample(USERS, STAGE_ALL, f.users as f64, ts));
    out.push(l.sample(DROPPED_ITERATIONS_TOTAL, STAGE_ALL, f.dropped as f64, ts));
    out
}

/// The final push: whole-run and per-stage figures, threshold verdicts, the end time.
pub fn final_samples(report: &RunReport, ts: i64) -> Vec<Sample> {
    let l = CommonLabels::of_report(report);
    let mut out = Vec::new();
    let mut stats = |stage: &str, s: &Stats| {
        counts(
            &l,
            stage,
            s.requests,
            s.failures,
            s.throughput_rps,
            ts,
            &mut out,
        );
        latency(
            &l,
            stage,
            &s.latency_ms.corrected,
            &s.latency_ms.uncorrected,
            ts,
            &mut out,
        );
    };
    stats(STAGE_ALL, &report.overall);
    for s in &report.stages {
        stats(&s.name, &s.stats);
    }
    // A report whose histogram cannot be decoded still pushes its other figures.
    if let Ok(h) = report.overall.histograms.decode_corrected() {
        histogram(&l, &h, ts, &mut out);
    }
    out.push(l.sample(
        RUN_VALID,
        STAGE_ALL,
        if report.validity.valid { 1.0 } else { 0.0 },
        ts,
    ));
    // Every reason has a series (0 or 1), so an alert on one needs no absent().
    for kind in InvalidKind::ALL {
        let found = report.validity.reasons.iter().any(|r| r.kind == kind);
        out.push(
            l.sample(
                RUN_INVALID_REASON,
                STAGE_ALL,
                if found { 1.0 } else { 0.0 },
                ts,
            )
            .label("reason", kind.as_str()),
        );
    }
    let all: Vec<_> = report
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.passes, c.fails))
        .collect();
    checks(&l, &all, ts, &mut out);
    out.push(l.sample(USERS, STAGE_ALL, 0.0, ts));
    out.push(l.sample(
        DROPPED_ITERATIONS_TOTAL,
        STAGE_ALL,
        report.dropped_iterations as f64,
        ts,
    ));
    for t in &report.thresholds {
        out.push(
            l.sample(
                THRESHOLD_OK,
                t.stage.as_deref().unwrap_or(STAGE_ALL),
                if t.ok { 1.0 } else { 0.0 },
                ts,
            )
            .label("threshold", t.expression.clone()),
        );
    }
    out.push(l.sample(
        RUN_END_TIMESTAMP_SECONDS,
        STAGE_ALL,
        report.ended_unix_ms as f64 / 1000.0,
        ts,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_contract_names() {
        for name in BENCH_METRIC_NAMES {
            assert!(name.starts_with("caxton_bench_"), "{name}");
        }
        let l = CommonLabels {
            run_id: "r".into(),
            plan: "k6".into(),
            scenario: "create-agent".into(),
            target: "t".into(),
            version: "v".into(),
            target_version: "unknown".into(),
            worker: "0".into(),
            plan_key: "constant(hold:1s@4)".into(),
            target_key: "t".into(),
        };
        let mut h = caxton_reports::model::new_histogram();
        for us in [200, 800, 3_000, 40_000] {
            h.record(us).unwrap();
        }
        let p = Percentiles {
            count: 1,
            p95: 12.0,
            ..Default::default()
        };
        let s = live_samples(
            &l,
            &LiveFigures {
                histogram: &h,
                requests: 10,
                failures: 1,
                rps: 5.0,
                corrected: &p,
                uncorrected: &p,
                checks: vec![("status is 200", 9, 1)],
                users: 3,
                dropped: 0,
            },
            1,
        );
        let p95 = s
            .iter()
            .find(|s| {
                s.name == LATENCY_SECONDS
                    && s.labels.contains(&("quantile".into(), "0.95".into()))
                    && s.labels.contains(&("corrected".into(), "true".into()))
            })
            .unwrap();
        assert_eq!(p95.value, 0.012);
        assert!(s.iter().all(|s| {
            let base = s
                .name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            BENCH_METRIC_NAMES.contains(&base)
        }));
        let rate = s.iter().find(|s| s.name == ERROR_RATE).unwrap();
        assert_eq!(rate.value, 0.1);
        // Buckets are cumulative: 200 µs is under 0.25 ms, all four under 0.05 s.
        let bucket = |le: &str| {
            s.iter()
                .find(|s| {
                    s.name == format!("{REQUEST_DURATION_SECONDS}_bucket")
                        && s.labels.contains(&("le".into(), le.into()))
                })
                .unwrap()
                .value
        };
        assert_eq!(
            (
                bucket("0.0001"),
                bucket("0.00025"),
                bucket("0.05"),
                bucket("+Inf")
            ),
            (0.0, 1.0, 4.0, 4.0)
        );
    }
}
