//! Series extraction: the one place that knows which figures of a report form a history
//! series and how such a series is named.
//!
//! A series is one metric of one set of requests (the whole run, one stage or one request
//! name) of runs of the same plan against the same target. Runs of different plans or
//! targets never share a series.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::compare::Metric;
use crate::model::{Plan, PlannedStage, RunReport, Stats};

/// The stage or scenario value that stands for "every request of the run".
pub const ALL: &str = "all";

/// What a series measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The plan's identity ([`plan_key`]).
    pub plan: String,
    /// The target ([`target_key`]).
    pub target: String,
    /// A request name, or [`ALL`].
    pub scenario: String,
    /// A stage name, or [`ALL`].
    pub stage: String,
    pub metric: Metric,
}

impl fmt::Display for SeriesKey {
    /// Prometheus-style, e.g. `p95{plan="constant(10s@4)",target="embedded",scenario="all",stage="all"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{{plan={:?},target={:?},scenario={:?},stage={:?}}}",
            self.metric.key(),
            self.plan,
            self.target,
            self.scenario,
            self.stage
        )
    }
}

/// The run a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    /// The target's version ([`version_of`]).
    pub version: String,
    pub started_unix_ms: u64,
    /// The run's CPU profile (`cpu.pb.gz`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<PathBuf>,
}

/// One series: its runs in time order and the metric's value in each.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: SeriesKey,
    /// Indexes into the history's runs, in time order.
    pub runs: Vec<usize>,
    pub values: Vec<f64>,
}

/// A plan's identity: its name and its stages (two `--stages` runs of different shapes are
/// different plans), e.g. `stages(ramp-4:1s@4,hold-4:2s@4)`.
pub fn plan_key(plan: &Plan) -> String {
    plan_key_of(&plan.name, &plan.stages)
}

/// [`plan_key`] of a plan's name and stages (for a run that has no report yet).
pub fn plan_key_of(name: &str, stages: &[PlannedStage]) -> String {
    let stages: Vec<String> = stages
        .iter()
        .map(|s| format!("{}:{}s@{}", s.name, s.duration_seconds, s.target))
        .collect();
    format!("{name}({})", stages.join(","))
}

/// The target of a run: the key it was given (`--target-key`), else its URL, or `embedded`
/// (each embedded run listens on a new port).
pub fn target_key(report: &RunReport) -> String {
    report
        .target_key
        .clone()
        .unwrap_or_else(|| target_key_of(&report.target, report.embedded_target))
}

/// [`target_key`] of a target URL and whether it is the embedded runtime.
pub fn target_key_of(target: &str, embedded: bool) -> String {
    if embedded {
        "embedded".to_string()
    } else {
        target.to_string()
    }
}

/// The target's version from its build info, else the tool's version, else `unknown`.
pub fn version_of(report: &RunReport) -> String {
    match &report.target_build {
        Some(b) if !b.version.is_empty() => b.version.clone(),
        _ if !report.tool.version.is_empty() => report.tool.version.clone(),
        _ => "unknown".to_string(),
    }
}

/// The value of `metric` in a set of requests; `None` when the set is empty (a latency of
/// nothing is not 0).
pub(crate) fn metric_value(metric: Metric, stats: &Stats) -> Option<f64> {
    if stats.requests == 0 {
        return None;
    }
    Some(match metric {
        Metric::P50 => stats.latency_ms.corrected.p50,
        Metric::P90 => stats.latency_ms.corrected.p90,
        Metric::P95 => stats.latency_ms.corrected.p95,
        Metric::P99 => stats.latency_ms.corrected.p99,
        Metric::Throughput => stats.throughput_rps,
        Metric::ErrorRate => stats.error_rate,
    })
}

/// Every (key, value) a report contributes: the whole run, each stage, each request name.
pub fn observations(report: &RunReport) -> Vec<(SeriesKey, f64)> {
    let (plan, target) = (plan_key(&report.plan), target_key(report));
    let mut sets: Vec<(&str, &str, &Stats)> = vec![(ALL, ALL, &report.overall)];
    sets.extend(
        report
            .stages
            .iter()
            .map(|s| (ALL, s.name.as_str(), &s.stats)),
    );
    sets.extend(report.requests.iter().map(|(n, s)| (n.as_str(), ALL, s)));
    let mut out = Vec::new();
    for (scenario, stage, stats) in sets {
        for metric in Metric::ALL {
            if let Some(v) = metric_value(metric, stats) {
                let key = SeriesKey {
                    plan: plan.clone(),
                    target: target.clone(),
                    scenario: scenario.to_string(),
                    stage: stage.to_string(),
                    metric,
                };
                out.push((key, v));
            }
        }
    }
    out
}

/// The scenario of the paired-ratio series an A/B run contributes.
pub const PAIRED: &str = "ab-ratio";

/// The name of an A/B run's pair in a history: its target key and the baseline's build, so
/// a new control build starts new series.
pub fn pair_name(ab: &crate::paired::AbReport) -> String {
    let reference = match &ab.baseline.target_build {
        Some(b) if !b.commit.is_empty() => format!("{}@{}", b.version, b.commit),
        _ => version_of(&ab.baseline),
    };
    format!("{} vs {reference}", ab.target_key)
}

/// Every (key, ratio B/A) an A/B run contributes: one series per latency metric and
/// throughput, named by the pair ([`pair_name`]: a bumped reference build starts new series
/// rather than a change point). Nothing from an invalid A/B run.
pub fn paired_observations(ab: &crate::paired::AbReport) -> Vec<(SeriesKey, f64)> {
    if ab.verdict.outcome == crate::paired::AbOutcome::Invalid {
        return Vec::new();
    }
    let target = pair_name(ab);
    ab.verdict
        .rows
        .iter()
        .filter_map(|r| Some((Metric::parse(&r.metric)?, r)))
        .filter(|(m, r)| *m != Metric::ErrorRate && r.change.is_finite())
        .map(|(metric, r)| {
            let key = SeriesKey {
                plan: plan_key(&ab.candidate.plan),
                target: target.clone(),
                scenario: PAIRED.to_string(),
                stage: ALL.to_string(),
                metric,
            };
            (key, 1.0 + r.change)
        })
        .collect()
}

/// Groups observations of runs (given in time order) into series.
pub fn build(per_run: &[Vec<(SeriesKey, f64)>]) -> Vec<Series> {
    let mut by_key: BTreeMap<SeriesKey, Series> = BTreeMap::new();
    for (run, obs) in per_run.iter().enumerate() {
        for (key, value) in obs {
            // Looked up before cloning: a long history has few keys and many observations.
            let s = match by_key.get_mut(key) {
                Some(s) => s,
                None => by_key.entry(key.clone()).or_insert_with(|| Series {
                    key: key.clone(),
                    runs: Vec::new(),
                    values: Vec::new(),
                }),
            };
            s.runs.push(run);
            s.values.push(*value);
        }
    }
    by_key.into_values().collect()
}
