//! The `caxton_bench_*` series (CONTRACTS.md "caxton-bench series"): their names, defined
//! once, and the conversion of live figures and of a finished report into samples for the
//! Prometheus sinks of `caxton-reports`.

use caxton_reports::model::{Percentiles, QUANTILES, RunReport, Stats};
use caxton_reports::remote_write::Sample;

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

pub const BENCH_METRIC_NAMES: [&str; 10] = [
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
];

/// The stage label of whole-run figures.
pub const STAGE_ALL: &str = "all";

/// Labels every series carries.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonLabels {
    pub run_id: String,
    pub plan: String,
    pub scenario: String,
    pub target: String,
    pub version: String,
    pub worker: String,
}

impl CommonLabels {
    pub fn of_report(report: &RunReport) -> CommonLabels {
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
            worker: match &report.distributed {
                Some(d) => d
                    .worker_index
                    .map_or_else(|| "merged".into(), |i| i.to_string()),
                None => "0".into(),
            },
        }
    }

    fn sample(&self, name: &str, stage: &str, value: f64, ts: i64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: vec![
                ("run_id".into(), self.run_id.clone()),
                ("plan".into(), self.plan.clone()),
                ("scenario".into(), self.scenario.clone()),
                ("stage".into(), stage.to_string()),
                ("target".into(), self.target.clone()),
                ("version".into(), self.version.clone()),
                ("worker".into(), self.worker.clone()),
            ],
            value,
            timestamp_ms: ts,
        }
    }
}

/// Figures of the run so far, as the ticker has them.
pub struct LiveFigures<'a> {
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
pub fn live_samples(l: &CommonLabels, f: &LiveFigures<'_>, ts: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    counts(l, STAGE_ALL, f.requests, f.failures, f.rps, ts, &mut out);
    latency(l, STAGE_ALL, f.corrected, f.uncorrected, ts, &mut out);
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
            worker: "0".into(),
        };
        let p = Percentiles {
            count: 1,
            p95: 12.0,
            ..Default::default()
        };
        let s = live_samples(
            &l,
            &LiveFigures {
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
        assert!(
            s.iter()
                .all(|s| BENCH_METRIC_NAMES.contains(&s.name.as_str()))
        );
        let rate = s.iter().find(|s| s.name == ERROR_RATE).unwrap();
        assert_eq!(rate.value, 0.1);
    }
}
