//! Combining the reports of one distributed run (or of runs made side by side) into one
//! report with exact global figures.
//!
//! Percentiles cannot be averaged; the serialized HDR histograms of every stage, request
//! name and the whole run are decoded and added, so a merged p95 is the p95 of every
//! request of every worker (within the histograms' 3 significant digits). Counters, status
//! codes, error kinds, checks and dropped iterations are summed. Thresholds are not
//! evaluated here: their syntax belongs to `caxton-bench`, which re-evaluates the
//! expressions [`Merged::threshold_expressions`] lists on the merged report.
//!
//! Workers start their clocks independently (each at its first user); the merge aligns
//! them at their starts. Wall-time figures (throughput, stage bounds) use the longest
//! worker's, and the per-second timeline adds requests and users second by second; its
//! per-second p95 is the highest of the workers' (an upper bound: a per-second histogram
//! is not kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use thiserror::Error;

use crate::model::{
    CheckResult, Distributed, Plan, ReportError, RunReport, SCHEMA_VERSION, SecondSample,
    StageResult, Stats, new_histogram,
};

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("merge: no reports given")]
    NoReports,
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{path}: {detail}; every merged report must come from the same plan as {first}")]
    PlanMismatch {
        path: PathBuf,
        first: PathBuf,
        detail: String,
    },
    #[error(
        "{path}: {detail}; merge either the reports of one distributed run (--workers) or plain runs"
    )]
    Distribution { path: PathBuf, detail: String },
    #[error("{second}: worker {index} already merged from {first}")]
    DuplicateWorker {
        index: u32,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "the run has {workers} workers but no report of worker(s) {missing:?} was given; a partial merge would understate the load"
    )]
    MissingWorkers { workers: u32, missing: Vec<u32> },
    #[error("merging the {what} histograms of {path}: {detail}")]
    Histogram {
        path: PathBuf,
        what: String,
        detail: String,
    },
}

/// The merged report and the thresholds to evaluate on it.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Thresholds empty; `distributed.worker_index` is `None`.
    pub report: RunReport,
    /// Every threshold expression of the inputs, first-seen order, without repeats.
    pub threshold_expressions: Vec<String>,
}

/// Merges `reports` (with the paths they were read from, for messages). `run_id` names the
/// result; by default the inputs' common run id, else the first one's with `-merged`.
pub fn merge(
    reports: &[(PathBuf, RunReport)],
    run_id: Option<&str>,
    command_line: Vec<String>,
) -> Result<Merged, MergeError> {
    let Some((_, first)) = reports.first() else {
        return Err(MergeError::NoReports);
    };
    check_same_plan(reports)?;
    let distributed = check_workers(reports)?;

    let all: Vec<&RunReport> = reports.iter().map(|(_, r)| r).collect();
    let duration = all.iter().map(|r| r.duration_seconds).fold(0.0, f64::max);
    let overall_parts: Vec<_> = reports.iter().map(|(p, r)| (p, &r.overall)).collect();
    let timeline = merge_timeline(&all);
    let max_users = timeline
        .iter()
        .map(|s| s.users)
        .chain(all.iter().map(|r| r.max_users))
        .max()
        .unwrap_or(0);
    let mut targets: Vec<&str> = Vec::new();
    for r in &all {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let earliest = all
        .iter()
        .min_by_key(|r| r.started_unix_ms)
        .unwrap_or(&first);
    let latest = all.iter().max_by_key(|r| r.ended_unix_ms).unwrap_or(&first);

    Ok(Merged {
        report: RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: merged_run_id(&all, run_id),
            tool: first.tool.clone(),
            command_line,
            target: targets.join(","),
            embedded_target: all.iter().all(|r| r.embedded_target),
            target_key: first.target_key.clone(),
            started_at: earliest.started_at.clone(),
            ended_at: latest.ended_at.clone(),
            started_unix_ms: earliest.started_unix_ms,
            ended_unix_ms: latest.ended_unix_ms,
            duration_seconds: duration,
            plan: merge_plan(&all),
            stages: merge_stages(reports)?,
            overall: merge_stats(&overall_parts, "overall", duration)?,
            requests: merge_requests(reports, duration)?,
            checks: merge_checks(&all),
            thresholds: Vec::new(),
            dropped_iterations: all.iter().map(|r| r.dropped_iterations).sum(),
            max_users,
            timeline,
            // Each worker profiled its own view; a merged flamegraph is not a thing.
            flamegraph: None,
            distributed: Some(Distributed {
                workers: distributed.unwrap_or(reports.len() as u32),
                worker_index: None,
                merged_from: merged_from(&all),
            }),
            // A merged run measured what its workers measured: one invalid worker makes
            // the whole run invalid, for each of its reasons.
            validity: crate::model::Validity::from_reasons(
                all.iter()
                    .flat_map(|r| r.validity.reasons.iter().cloned())
                    .collect(),
            ),
            target_build: all.iter().find_map(|r| r.target_build.clone()),
            interrupted: all.iter().find_map(|r| r.interrupted.clone()),
            aborted: all.iter().find_map(|r| r.aborted.clone()),
            // Each worker's generator ran on its own machine: see the workers' reports.
            generator_cpu: None,
            slices: Vec::new(),
        },
        threshold_expressions: threshold_expressions(&all),
    })
}

/// Each stage from its workers' stages: the earliest start, the latest end.
fn merge_stages(reports: &[(PathBuf, RunReport)]) -> Result<Vec<StageResult>, MergeError> {
    let first = &reports[0].1;
    let mut stages = Vec::with_capacity(first.stages.len());
    for (i, stage) in first.stages.iter().enumerate() {
        let parts: Vec<_> = reports
            .iter()
            .map(|(p, r)| (p, &r.stages[i].stats))
            .collect();
        let started = reports
            .iter()
            .map(|(_, r)| r.stages[i].started_at_seconds)
            .fold(f64::INFINITY, f64::min);
        let ended = reports
            .iter()
            .map(|(_, r)| r.stages[i].ended_at_seconds)
            .fold(0.0, f64::max);
        stages.push(StageResult {
            name: stage.name.clone(),
            started_at_seconds: started,
            ended_at_seconds: ended,
            stats: merge_stats(&parts, &format!("stage {}", stage.name), ended - started)?,
        });
    }
    Ok(stages)
}

/// Every request name any worker sent, from the workers that sent it.
fn merge_requests(
    reports: &[(PathBuf, RunReport)],
    duration: f64,
) -> Result<BTreeMap<String, Stats>, MergeError> {
    let mut names: Vec<&String> = reports
        .iter()
        .flat_map(|(_, r)| r.requests.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut requests = BTreeMap::new();
    for name in names {
        let parts: Vec<_> = reports
            .iter()
            .filter_map(|(p, r)| r.requests.get(name).map(|s| (p, s)))
            .collect();
        requests.insert(
            name.clone(),
            merge_stats(&parts, &format!("request {name}"), duration)?,
        );
    }
    Ok(requests)
}

/// Checks by name, first-seen order, passes and fails summed.
fn merge_checks(all: &[&RunReport]) -> Vec<CheckResult> {
    let mut checks: Vec<CheckResult> = Vec::new();
    for c in all.iter().flat_map(|r| &r.checks) {
        match checks.iter_mut().find(|m| m.name == c.name) {
            Some(m) => {
                m.passes += c.passes;
                m.fails += c.fails;
            }
            None => checks.push(CheckResult {
                name: c.name.clone(),
                passes: c.passes,
                fails: c.fails,
                pass_rate: 0.0,
            }),
        }
    }
    for c in &mut checks {
        c.pass_rate = crate::model::ratio(c.passes, c.passes + c.fails);
    }
    checks
}

/// The plan the workers ran together: the same stages, their targets summed.
fn merge_plan(all: &[&RunReport]) -> Plan {
    let mut plan = all[0].plan.clone();
    plan.start_target = all.iter().map(|r| r.plan.start_target).sum();
    for (i, stage) in plan.stages.iter_mut().enumerate() {
        stage.target = all.iter().map(|r| r.plan.stages[i].target).sum();
    }
    plan.max_users = all.iter().map(|r| r.plan.max_users).sum::<Option<u64>>();
    plan
}

fn threshold_expressions(all: &[&RunReport]) -> Vec<String> {
    let mut expressions: Vec<String> = Vec::new();
    for t in all.iter().flat_map(|r| &r.thresholds) {
        if !expressions.contains(&t.expression) {
            expressions.push(t.expression.clone());
        }
    }
    expressions
}

fn merged_run_id(all: &[&RunReport], run_id: Option<&str>) -> String {
    let first = all[0];
    match run_id {
        Some(id) => id.to_string(),
        None if all.iter().all(|r| r.run_id == first.run_id) => first.run_id.clone(),
        None => format!("{}-merged", first.run_id),
    }
}

/// The inputs as the merged report records them: `<run-id>/worker-<I>` or the run id.
fn merged_from(all: &[&RunReport]) -> Vec<String> {
    all.iter()
        .map(|r| match &r.distributed {
            Some(Distributed {
                worker_index: Some(i),
                ..
            }) => format!("{}/worker-{i}", r.run_id),
            _ => r.run_id.clone(),
        })
        .collect()
}

/// Same model and the same stages (by name, in order): the per-stage figures line up.
fn check_same_plan(reports: &[(PathBuf, RunReport)]) -> Result<(), MergeError> {
    let (first_path, first) = &reports[0];
    let names = |r: &RunReport| r.stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let first_names = names(first);
    for (path, r) in &reports[1..] {
        let mismatch = |detail: String| MergeError::PlanMismatch {
            path: path.clone(),
            first: first_path.clone(),
            detail,
        };
        if r.plan.model != first.plan.model {
            return Err(mismatch(format!(
                "load model {:?} differs from {:?}",
                r.plan.model, first.plan.model
            )));
        }
        let these = names(r);
        if these != first_names || r.plan.stages.len() != these.len() {
            return Err(mismatch(format!(
                "stages [{}] differ from [{}]",
                these.join(", "),
                first_names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Either no report is a worker's, or all are, of one run, each index once and none
/// missing. Returns the worker count of a distributed run.
fn check_workers(reports: &[(PathBuf, RunReport)]) -> Result<Option<u32>, MergeError> {
    let workers = reports
        .iter()
        .filter(|(_, r)| r.distributed.is_some())
        .count();
    if workers == 0 {
        return Ok(None);
    }
    let mut seen: BTreeMap<u32, &PathBuf> = BTreeMap::new();
    let mut count = None;
    for (path, r) in reports {
        let Some(Distributed {
            workers: n,
            worker_index: Some(index),
            ..
        }) = &r.distributed
        else {
            let detail = if r.distributed.is_some() {
                "is itself a merged report".to_string()
            } else {
                "is not a worker's report (no --worker-index) but others are".to_string()
            };
            return Err(MergeError::Distribution {
                path: path.clone(),
                detail,
            });
        };
        match count {
            None => count = Some(*n),
            Some(c) if c != *n => {
                return Err(MergeError::Distribution {
                    path: path.clone(),
                    detail: format!("ran with --workers {n}, another report with --workers {c}"),
                });
            }
            Some(_) => {}
        }
        if let Some(first) = seen.insert(*index, path) {
            return Err(MergeError::DuplicateWorker {
                index: *index,
                first: first.clone(),
                second: path.clone(),
            });
        }
    }
    let n = count.unwrap_or(0);
    let missing: Vec<u32> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    if !missing.is_empty() {
        return Err(MergeError::MissingWorkers {
            workers: n,
            missing,
        });
    }
    Ok(count)
}

fn merge_stats(
    parts: &[(&PathBuf, &Stats)],
    what: &str,
    wall_seconds: f64,
) -> Result<Stats, MergeError> {
    let mut corrected = new_histogram();
    let mut uncorrected = new_histogram();
    let mut requests = 0;
    let mut failures = 0;
    let mut status_codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for (path, s) in parts {
        add(&mut corrected, s.histograms.decode_corrected(), path, what)?;
        add(
            &mut uncorrected,
            s.histograms.decode_uncorrected(),
            path,
            what,
        )?;
        requests += s.requests;
        failures += s.failures;
        for (k, v) in &s.status_codes {
            *status_codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    Ok(Stats::from_parts(
        &corrected,
        &uncorrected,
        requests,
        failures,
        wall_seconds,
        status_codes,
        errors,
    )?)
}

fn add(
    into: &mut Histogram<u64>,
    h: Result<Histogram<u64>, ReportError>,
    path: &Path,
    what: &str,
) -> Result<(), MergeError> {
    let h = h.map_err(|e| MergeError::Histogram {
        path: path.to_path_buf(),
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    into.add(&h).map_err(|e| MergeError::Histogram {
        path: path.to_path_buf(),
        what: what.to_string(),
        detail: format!("{e:?}"),
    })
}

fn merge_timeline(reports: &[&RunReport]) -> Vec<SecondSample> {
    let mut by_t: BTreeMap<u64, SecondSample> = BTreeMap::new();
    for s in reports.iter().flat_map(|r| &r.timeline) {
        match by_t.get_mut(&s.t) {
            Some(m) => {
                m.requests += s.requests;
                m.failures += s.failures;
                m.users += s.users;
                m.dropped_iterations += s.dropped_iterations;
                m.p95_ms = m.p95_ms.max(s.p95_ms);
                m.p95_uncorrected_ms = m.p95_uncorrected_ms.max(s.p95_uncorrected_ms);
            }
            None => {
                by_t.insert(s.t, s.clone());
            }
        }
    }
    by_t.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Aggregation, Histograms, Latency, LoadModel, Percentiles, Plan, PlannedStage,
        ScenarioWeight, ThresholdMetric, ThresholdResult, Tool,
    };

    fn stats(values_us: &[u64], failures: u64) -> Stats {
        let mut h = new_histogram();
        for v in values_us {
            h.record(*v).unwrap();
        }
        Stats::from_parts(
            &h,
            &h,
            values_us.len() as u64,
            failures,
            1.0,
            BTreeMap::from([("200".to_string(), values_us.len() as u64 - failures)]),
            BTreeMap::new(),
        )
        .unwrap()
    }

    fn worker(index: u32, workers: u32, values_us: &[u64], users: f64) -> (PathBuf, RunReport) {
        let s = stats(values_us, 1);
        let report = RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: "dist".into(),
            tool: Tool {
                name: "caxton-bench".into(),
                version: "0".into(),
            },
            command_line: vec![],
            target: "http://127.0.0.1:1".into(),
            embedded_target: false,
            target_key: None,
            started_at: format!("2026-01-01T00:00:0{index}Z"),
            ended_at: format!("2026-01-01T00:00:1{index}Z"),
            started_unix_ms: 1000 + u64::from(index),
            ended_unix_ms: 11_000 + u64::from(index),
            duration_seconds: 10.0 + f64::from(index),
            plan: Plan {
                name: "constant".into(),
                model: LoadModel::Closed,
                time_scale: 1.0,
                think_time_seconds: 1.0,
                start_target: users,
                max_users: None,
                stages: vec![PlannedStage {
                    name: "hold-3".into(),
                    duration_seconds: 10.0,
                    target: users,
                }],
                scenarios: vec![ScenarioWeight {
                    name: "create-agent".into(),
                    weight: 1,
                }],
            },
            stages: vec![StageResult {
                name: "hold-3".into(),
                started_at_seconds: 0.0,
                ended_at_seconds: 10.0,
                stats: s.clone(),
            }],
            overall: s.clone(),
            requests: BTreeMap::from([("create-agent".to_string(), s)]),
            checks: vec![CheckResult {
                name: "status is 200".into(),
                passes: 3,
                fails: 1,
                pass_rate: 0.75,
            }],
            thresholds: vec![ThresholdResult {
                expression: "http_req_duration: p(95)<2000".into(),
                metric: ThresholdMetric::Duration,
                stage: None,
                aggregation: Aggregation::Percentile(95.0),
                value: Some(1.0),
                ok: true,
            }],
            dropped_iterations: 0,
            max_users: users as u64,
            timeline: vec![SecondSample {
                t: 0,
                requests: values_us.len() as u64,
                failures: 1,
                p95_ms: 1.0 + f64::from(index),
                p95_uncorrected_ms: 1.0,
                users: users as u64,
                dropped_iterations: 0,
                stage: "hold-3".into(),
            }],
            flamegraph: None,
            distributed: Some(Distributed {
                workers,
                worker_index: Some(index),
                merged_from: vec![],
            }),
            validity: Default::default(),
            target_build: None,
            interrupted: None,
            aborted: None,
            generator_cpu: None,
            slices: Vec::new(),
        };
        (PathBuf::from(format!("w{index}/report.json")), report)
    }

    #[test]
    fn merged_percentiles_are_those_of_all_requests() {
        // Worker 0 is fast, worker 1 slow: averaging their p50s would give ~50 ms; the
        // true p50 of all six requests is the slow side's smallest value.
        let a = worker(0, 2, &[1_000, 2_000, 3_000], 2.0);
        let b = worker(1, 2, &[100_000, 200_000, 300_000], 1.0);
        let merged = merge(&[a, b], None, vec!["merge".into()]).unwrap();
        let r = &merged.report;
        let mut all = new_histogram();
        for v in [1_000, 2_000, 3_000, 100_000, 200_000, 300_000] {
            all.record(v).unwrap();
        }
        assert_eq!(
            r.overall.latency_ms.corrected,
            Percentiles::from_histogram(&all)
        );
        assert_eq!(r.overall.requests, 6);
        assert_eq!(r.overall.failures, 2);
        assert_eq!(r.overall.status_codes["200"], 4);
        assert_eq!(r.stages[0].stats.requests, 6);
        assert_eq!(r.requests["create-agent"].requests, 6);
        assert_eq!(r.checks[0].passes, 6);
        assert_eq!(r.plan.stages[0].target, 3.0);
        assert_eq!(r.max_users, 3);
        assert_eq!(r.timeline[0].requests, 6);
        assert_eq!(r.duration_seconds, 11.0);
        assert_eq!(r.run_id, "dist");
        assert!(r.thresholds.is_empty());
        assert_eq!(
            merged.threshold_expressions,
            vec!["http_req_duration: p(95)<2000"]
        );
        let d = r.distributed.as_ref().unwrap();
        assert_eq!((d.workers, d.worker_index), (2, None));
        assert_eq!(d.merged_from, vec!["dist/worker-0", "dist/worker-1"]);
        // The merged histograms are serialized too: a merged report merges again.
        assert_eq!(
            r.overall.histograms.decode_corrected().unwrap().len(),
            6,
            "{:?}",
            Latency {
                corrected: r.overall.latency_ms.corrected.clone(),
                uncorrected: Percentiles::default()
            }
        );
    }

    #[test]
    fn missing_duplicate_and_mixed_workers_are_refused() {
        let a = worker(0, 3, &[1_000], 1.0);
        let b = worker(2, 3, &[1_000], 1.0);
        let err = merge(&[a.clone(), b], None, vec![]).unwrap_err();
        assert!(
            matches!(&err, MergeError::MissingWorkers { workers: 3, missing } if missing == &[1]),
            "{err}"
        );
        let err = merge(&[a.clone(), a.clone()], None, vec![]).unwrap_err();
        assert!(err.to_string().contains("worker 0 already merged"), "{err}");
        let mut plain = worker(1, 3, &[1_000], 1.0);
        plain.1.distributed = None;
        let err = merge(&[a, plain], None, vec![]).unwrap_err().to_string();
        assert!(
            err.contains("w1/report.json") && err.contains("no --worker-index"),
            "{err}"
        );
        assert!(matches!(
            merge(&[], None, vec![]),
            Err(MergeError::NoReports)
        ));
    }

    #[test]
    fn different_plans_are_refused_naming_both_files() {
        let a = worker(0, 2, &[1_000], 1.0);
        let mut b = worker(1, 2, &[1_000], 1.0);
        b.1.stages[0].name = "hold-4".into();
        b.1.plan.stages[0].name = "hold-4".into();
        let err = merge(&[a, b], None, vec![]).unwrap_err().to_string();
        assert!(
            err.contains("w1/report.json")
                && err.contains("w0/report.json")
                && err.contains("hold-4"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_histogram_names_the_file() {
        let a = worker(0, 2, &[1_000], 1.0);
        let mut b = worker(1, 2, &[1_000], 1.0);
        b.1.overall.histograms = Histograms {
            unit: "us".into(),
            corrected: "!!".into(),
            uncorrected: "!!".into(),
        };
        let err = merge(&[a, b], None, vec![]).unwrap_err().to_string();
        assert!(
            err.contains("w1/report.json") && err.contains("overall"),
            "{err}"
        );
    }
}
