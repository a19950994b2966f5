//! A CPU profile and flamegraph of the target taken during the whole run (by default, the
//! pseudo-stage [`WHOLE_RUN`]: a light load leaves too few samples in one stage) or during one
//! stage, saved beside the report as `flamegraph.svg` and `cpu.pb.gz`. Uses the same capture
//! client as `caxton-profiles collect`.

use std::path::PathBuf;
use std::time::Duration;

use caxton_reports::model::{FLAMEGRAPH_FILE, FlamegraphRef};
use thiserror::Error;

use crate::plan::Plan;
use crate::run_clock::RunClock;
use crate::run_dir::PROFILE_FILE;

/// Longest capture of one stage: a minute at peak is plenty.
const MAX_CAPTURE: Duration = Duration::from_secs(60);

/// Longest capture of the whole run: what the pprof endpoint accepts. A longer plan is
/// profiled during its last 300 s.
const MAX_RUN_CAPTURE: Duration =
    Duration::from_secs(caxton_profiles::capture::MAX_CAPTURE_SECONDS);

/// `--flamegraph-stage run`, the default: the whole run rather than one stage.
pub(crate) const WHOLE_RUN: &str = "run";

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

/// What a default capture profiles: the whole run ([`WHOLE_RUN`]). The main job's target
/// is nearly idle (200 users, 1 s think time): its `hold-200` stage alone held about 30
/// samples at 100 Hz.
pub(crate) fn default_stage(plan: &Plan) -> Option<String> {
    (!plan.stages.is_empty()).then(|| WHOLE_RUN.to_owned())
}

/// Where in the run the capture goes: start offset and length. One stage: its middle 80 %,
/// at most a minute. [`WHOLE_RUN`]: from the start to the last whole second of the plan, its
/// last 300 s when longer. Whole seconds, at least 1 s.
pub(crate) fn window(plan: &Plan, stage: &str) -> Result<(Duration, u64), FlamegraphError> {
    if stage == WHOLE_RUN && !plan.stages.iter().any(|s| s.name == WHOLE_RUN) {
        let total = plan.total_duration();
        let len = total.min(MAX_RUN_CAPTURE);
        let seconds = len.as_secs().max(1);
        return Ok((total.saturating_sub(len), seconds));
    }
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
pub(crate) struct Captured {
    /// `flamegraph.svg` in the run directory.
    pub svg: PathBuf,
    /// Frequency, sample count and loss of the profile.
    pub samples: caxton_profiles::Collected,
}

impl Captured {
    /// How the report names this capture of `stage`.
    pub(crate) fn reference(&self, stage: &str) -> FlamegraphRef {
        let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        FlamegraphRef {
            path: name(&self.svg).unwrap_or_else(|| FLAMEGRAPH_FILE.into()),
            stage: stage.to_owned(),
            profile: Some(PROFILE_FILE.into()),
            frequency_hz: self.samples.frequency_hz,
            lowest_frequency_hz: self.samples.lowest_hz,
            samples: self.samples.samples,
            lost_samples: self.samples.lost.unwrap_or(0),
            sampler: self.samples.sampler.clone(),
            slow: None,
        }
    }
}

/// Waits for the stage, captures, and renames the files to their stable names in `run_dir`.
pub(crate) async fn capture(
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
    fn k6_plan_profiles_the_whole_run_or_the_middle_of_hold_200() {
        let plan = Plan::k6(1.0).unwrap();
        assert_eq!(default_stage(&plan).as_deref(), Some(WHOLE_RUN));
        // 16 minutes: the last 300 s.
        assert_eq!(
            window(&plan, WHOLE_RUN).unwrap(),
            (Duration::from_secs(16 * 60 - 300), 300)
        );
        // The main job's minute, all of it.
        assert_eq!(
            window(&Plan::k6(0.0625).unwrap(), WHOLE_RUN).unwrap(),
            (Duration::ZERO, 60)
        );
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
