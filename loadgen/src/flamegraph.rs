//! A CPU profile and flamegraph of the target taken during one stage of the run (by default
//! the last `hold-*` stage: the steady state at peak load), saved beside the report as
//! `flamegraph.svg` and `cpu.pb.gz`. Uses the same capture client as `caxton-profiles collect`.

use std::path::PathBuf;
use std::time::Duration;

use caxton_reports::model::{FLAMEGRAPH_FILE, FlamegraphRef};
use thiserror::Error;

use crate::plan::Plan;
use crate::run_clock::RunClock;
use crate::run_dir::PROFILE_FILE;

/// Longest capture: the pprof endpoint refuses more than 300 s, and a flamegraph of a minute
/// at peak is plenty.
const MAX_CAPTURE: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum FlamegraphError {
    #[error("--flamegraph-stage `{stage}`: the plan has no such stage (stages: {known})")]
    UnknownStage { stage: String, known: String },
    #[error("profiling {url}: {source}")]
    Collect {
        url: String,
        source: caxton_profiles::CollectError,
    },
    #[error("saving the flamegraph in {dir}: {source}")]
    Save { dir: String, source: std::io::Error },
}

/// The stage a default capture profiles: the last hold stage, else the longest one.
pub fn default_stage(plan: &Plan) -> Option<String> {
    plan.stages
        .iter()
        .rev()
        .find(|s| s.name.starts_with("hold"))
        .or_else(|| plan.stages.iter().max_by_key(|s| s.duration))
        .map(|s| s.name.clone())
}

/// Where in the run the capture goes: start offset and length (the middle 80 % of the stage,
/// whole seconds, at least 1 s).
pub fn window(plan: &Plan, stage: &str) -> Result<(Duration, u64), FlamegraphError> {
    let index = plan
        .stages
        .iter()
        .position(|s| s.name == stage)
        .ok_or_else(|| FlamegraphError::UnknownStage {
            stage: stage.to_owned(),
            known: plan
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let (start, end) = plan.stage_bounds(index);
    let len = end.saturating_sub(start);
    let seconds = (len.mul_f64(0.8)).min(MAX_CAPTURE).as_secs().max(1);
    Ok((start + len.mul_f64(0.1), seconds))
}

/// A capture saved beside the report.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `flamegraph.svg` in the run directory.
    pub svg: PathBuf,
    /// Frequency, sample count and loss of the profile.
    pub samples: caxton_profiles::Collected,
}

impl Captured {
    /// How the report names this capture of `stage`.
    pub fn reference(&self, stage: &str) -> FlamegraphRef {
        let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        FlamegraphRef {
            path: name(&self.svg).unwrap_or_else(|| FLAMEGRAPH_FILE.into()),
            stage: stage.to_owned(),
            profile: Some(PROFILE_FILE.into()),
            frequency_hz: self.samples.frequency_hz,
            samples: self.samples.samples,
            lost_samples: self.samples.lost.unwrap_or(0),
            sampler: self.samples.sampler.clone(),
        }
    }
}

/// Waits for the stage, captures, and renames the files to their stable names in `run_dir`.
pub async fn capture(
    pprof_base: String,
    started: &RunClock,
    (offset, seconds): (Duration, u64),
    run_dir: PathBuf,
) -> Result<Captured, FlamegraphError> {
    // Bounded by the run, which aborts this task when it ends.
    let t0 = started.wait().await;
    tokio::time::sleep_until((t0 + offset).into()).await;
    let save = |source| FlamegraphError::Save {
        dir: run_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&run_dir).map_err(save)?;
    let got = caxton_profiles::collect(&pprof_base, seconds, &run_dir)
        .await
        .map_err(|source| FlamegraphError::Collect {
            url: pprof_base.clone(),
            source,
        })?;
    let svg = run_dir.join(FLAMEGRAPH_FILE);
    std::fs::rename(&got.flamegraph_path, &svg).map_err(save)?;
    std::fs::rename(&got.pprof_path, run_dir.join(PROFILE_FILE)).map_err(save)?;
    Ok(Captured { svg, samples: got })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k6_plan_profiles_the_middle_of_hold_200() {
        let plan = Plan::k6(1.0).unwrap();
        assert_eq!(default_stage(&plan).as_deref(), Some("hold-200"));
        // hold-200 runs from 9m to 14m: capture from 9m30s, capped at 60 s.
        assert_eq!(
            window(&plan, "hold-200").unwrap(),
            (Duration::from_secs(570), 60)
        );
        let scaled = Plan::k6(0.0625).unwrap();
        let (_, secs) = window(&scaled, "hold-200").unwrap();
        assert_eq!(secs, 15);
        let err = window(&plan, "hold-300").unwrap_err().to_string();
        assert!(
            err.contains("hold-300") && err.contains("ramp-100"),
            "{err}"
        );
    }
}
