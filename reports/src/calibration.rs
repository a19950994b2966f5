//! `compare`'s thresholds calibrated from a history of runs: for each metric of the whole
//! run, the threshold a pair of A/A runs of that history exceeds about once in a hundred
//! ([`crate::history::noise`]), and the newest run of the plan as the baseline.
//!
//! Runs match by plan only: a loopback target gets a new port each run, so its URL names no
//! series across CI runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use thiserror::Error;

use crate::compare::{CompareOptions, Metric};
use crate::history::noise::{self, Noise};
use crate::history::series::{ALL, plan_key};
use crate::history::{HistoryError, LoadedRun, load_dir};
use crate::model::{Plan, RunReport};

/// No calibrated threshold goes below this: a history of near-identical runs would otherwise
/// turn any bootstrap-significant wobble into a regression.
pub const MIN_CALIBRATED_THRESHOLD: f64 = 0.01;

#[derive(Debug, Error)]
pub enum CalibrationError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("history {dir}: no valid run of plan {plan} to compare with")]
    NoBaseline { dir: PathBuf, plan: String },
}

/// A history's verdict inputs for one plan.
#[derive(Debug)]
pub struct Calibrated {
    /// The newest valid run of the plan: (its report.json, the report).
    pub baseline: (PathBuf, RunReport),
    /// Valid runs of the plan in the history.
    pub runs: usize,
    /// Noise per metric of the whole run; missing where the history is too short.
    pub noise: BTreeMap<Metric, Noise>,
}

/// Reads the history under `dir` for runs of `plan`.
pub fn from_history(
    dir: &std::path::Path,
    plan: &Plan,
    skip_unreadable: bool,
) -> Result<Calibrated, CalibrationError> {
    let key = plan_key(plan);
    let loaded = load_dir(dir, skip_unreadable)?;
    let runs: Vec<LoadedRun> = loaded.runs.into_iter().filter(|r| r.plan == key).collect();
    let mut noise = BTreeMap::new();
    for metric in Metric::ALL {
        // The whole run's figure: the observation of every scenario and every stage.
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                r.observations
                    .iter()
                    .find(|(k, _)| k.metric == metric && k.scenario == ALL && k.stage == ALL)
                    .map(|(_, v)| *v)
            })
            .collect();
        if let Some(n) = noise::measure(&values, metric.higher_is_worse()) {
            noise.insert(metric, n);
        }
    }
    let count = runs.len();
    let newest = runs.last().ok_or_else(|| CalibrationError::NoBaseline {
        dir: dir.to_path_buf(),
        plan: key,
    })?;
    // The history keeps no whole report: the baseline is read again.
    let report = RunReport::read(&newest.path).map_err(HistoryError::Unreadable)?;
    let baseline = (newest.path.clone(), report);
    Ok(Calibrated {
        baseline,
        runs: count,
        noise,
    })
}

impl Calibrated {
    /// Sets the calibrated threshold of every metric the user did not set explicitly.
    pub fn apply(&self, opts: &mut CompareOptions, explicit: &[Metric]) {
        for (metric, n) in &self.noise {
            if !explicit.contains(metric) {
                opts.per_metric
                    .insert(*metric, n.threshold.max(MIN_CALIBRATED_THRESHOLD));
            }
        }
    }

    /// One line per metric: the noise, the threshold and its expected false-positive rate.
    pub fn describe(&self, opts: &CompareOptions) -> String {
        let mut out = format!(
            "thresholds calibrated from {} runs of the plan (baseline: the newest, {}):\n",
            self.runs,
            self.baseline.0.display()
        );
        for metric in Metric::ALL {
            let t = opts.threshold_for(metric);
            match self.noise.get(&metric) {
                Some(n) => {
                    let _ = writeln!(
                        out,
                        "  {}: run-to-run noise {:.1}%, threshold {:.1}% (expected false positives {:.2}%)",
                        metric.key(),
                        100.0 * n.sigma,
                        100.0 * t,
                        100.0 * n.false_positive_rate(t)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  {}: too few runs to measure noise, threshold {:.1}%",
                        metric.key(),
                        100.0 * t
                    );
                }
            }
        }
        out
    }
}
