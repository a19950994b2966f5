//! Distributed load: a worker's share of the plan (`--worker-index I --workers N`) and
//! `caxton-bench merge`, which combines the workers' reports and judges the thresholds
//! once, on the global figures.
//!
//! A share keeps the plan's stage names and durations (so `{stage:hold-200}` thresholds and
//! the merge line up) and splits every target: users as integers, the first `total % N`
//! workers taking one more, so the shares add up to exactly the total at every stage;
//! arrival rates (open model) as exact fractions.

use std::path::{Path, PathBuf};

use caxton_reports::merge::{self, MergeError};
use caxton_reports::model::{Distributed, LoadModel, ReportError, RunReport};
use thiserror::Error;

use crate::plan::Plan;
use crate::run_dir;
use crate::thresholds::{Threshold, ThresholdError};

#[derive(Debug, Error)]
pub enum DistributedError {
    #[error("--worker-index {index}: must be below --workers {workers}")]
    Index { index: u32, workers: u32 },
    #[error(
        "--workers {workers}: worker {index} would get no users (the plan peaks at {peak} users); use at most {peak} workers"
    )]
    NoShare { index: u32, workers: u32, peak: u64 },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// One worker's place in a distributed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerShare {
    pub index: u32,
    pub workers: u32,
}

impl WorkerShare {
    pub fn new(index: u32, workers: u32) -> Result<WorkerShare, DistributedError> {
        if index >= workers {
            return Err(DistributedError::Index { index, workers });
        }
        Ok(WorkerShare { index, workers })
    }

    /// This worker's part of `total` whole users: `total / N`, plus one for the first
    /// `total % N` workers.
    pub fn count(&self, total: u64) -> u64 {
        let n = u64::from(self.workers);
        total / n + u64::from(u64::from(self.index) < total % n)
    }

    /// The worker's share of a target: whole users for the closed model, an exact
    /// fraction of the rate for the open model.
    fn target(&self, model: LoadModel, total: f64) -> f64 {
        match model {
            LoadModel::Closed => self.count(total.round() as u64) as f64,
            LoadModel::Open => total / f64::from(self.workers),
        }
    }

    /// The plan this worker runs: same stages, its share of every target.
    pub fn plan(&self, plan: &Plan) -> Result<Plan, DistributedError> {
        let mut mine = plan.clone();
        mine.start_target = self.target(plan.model, plan.start_target);
        for s in &mut mine.stages {
            s.target = self.target(plan.model, s.target);
        }
        if mine.peak() <= 0.0 {
            return Err(DistributedError::NoShare {
                index: self.index,
                workers: self.workers,
                peak: plan.peak().round() as u64,
            });
        }
        Ok(mine)
    }

    /// The report's record of the share.
    pub fn record(&self) -> Distributed {
        Distributed {
            workers: self.workers,
            worker_index: Some(self.index),
            merged_from: Vec::new(),
        }
    }
}

/// What `caxton-bench merge` produced.
pub struct MergeOutcome {
    pub report: RunReport,
    pub report_path: PathBuf,
}

impl MergeOutcome {
    pub fn passed(&self) -> bool {
        self.report.passed()
    }
}

/// Reads the reports, merges them, evaluates the workers' thresholds (plus `extra`) on the
/// merged figures and writes `<out_dir>/<run-id>/report.json`.
pub fn merge_files(
    paths: &[PathBuf],
    run_id: Option<&str>,
    out_dir: &Path,
    extra: Vec<Threshold>,
    command_line: Vec<String>,
) -> Result<MergeOutcome, DistributedError> {
    let mut reports = Vec::with_capacity(paths.len());
    for p in paths {
        reports.push((p.clone(), RunReport::read(p)?));
    }
    let merged = merge::merge(&reports, run_id, command_line)?;
    let mut thresholds = Vec::new();
    for text in &merged.threshold_expressions {
        thresholds.push(Threshold::parse(text)?);
    }
    for t in extra {
        if !thresholds.iter().any(|have| have.text == t.text) {
            thresholds.push(t);
        }
    }
    let mut report = merged.report;
    let stages: Vec<String> = report.stages.iter().map(|s| s.name.clone()).collect();
    for t in &thresholds {
        t.check_stage(&stages)?;
    }
    report.thresholds = thresholds.iter().map(|t| t.evaluate(&report)).collect();
    let report_path = run_dir::report_path(out_dir, &report.run_id, None);
    report.write(&report_path)?;
    Ok(MergeOutcome {
        report,
        report_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn user_shares_add_up_to_the_total_at_every_stage() {
        let plan = Plan::k6(1.0).unwrap();
        for workers in 1..=7 {
            let shares: Vec<Plan> = (0..workers)
                .map(|i| WorkerShare::new(i, workers).unwrap().plan(&plan).unwrap())
                .collect();
            for (s, stage) in plan.stages.iter().enumerate() {
                let sum: f64 = shares.iter().map(|p| p.stages[s].target).sum();
                assert_eq!(sum, stage.target, "{workers} workers, stage {}", stage.name);
                assert!(shares.iter().all(|p| p.stages[s].name == stage.name));
                assert!(
                    shares
                        .iter()
                        .all(|p| p.stages[s].duration == stage.duration)
                );
            }
        }
        // 100 users over 3 workers: 34, 33, 33.
        let counts: Vec<u64> = (0..3)
            .map(|i| WorkerShare::new(i, 3).unwrap().count(100))
            .collect();
        assert_eq!(counts, vec![34, 33, 33]);
    }

    #[test]
    fn arrival_rates_split_exactly() {
        let plan = Plan::from_stages(
            "arrival-rate",
            LoadModel::Open,
            0.0,
            vec![(Duration::from_secs(10), 10.0)],
            1.0,
        )
        .unwrap();
        let p = WorkerShare::new(3, 4).unwrap().plan(&plan).unwrap();
        assert_eq!(p.stages[0].target, 2.5);
    }

    #[test]
    fn impossible_shares_are_refused() {
        assert!(matches!(
            WorkerShare::new(2, 2),
            Err(DistributedError::Index { .. })
        ));
        let plan = Plan::constant(2, Duration::from_secs(1), 1.0).unwrap();
        let err = WorkerShare::new(2, 3).unwrap().plan(&plan).unwrap_err();
        assert!(err.to_string().contains("at most 2 workers"), "{err}");
    }
}
