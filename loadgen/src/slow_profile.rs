//! The profile of a run's slow requests: the samples of the run's CPU profile that the target
//! labelled with a request at or above a latency threshold (the run's uncorrected p95, or
//! `--slow-threshold`), drawn as `flamegraph-slow.svg` beside `flamegraph.svg`, with the
//! differential flamegraph of slow against all (`diff-slow.svg`) and the frames whose share
//! rose most: what the slow requests do that the others do not.
//!
//! The labels are the runtime's (`request_latency_us`, see `caxton_profiles::request_tag`):
//! a target without them gets a `flamegraph.slow` that says so.

use std::path::Path;
use std::time::Duration;

use caxton_profiles::folded::{self, FoldError};
use caxton_reports::model::{
    RunReport, SLOW_DIFF_FILE, SLOW_FLAMEGRAPH_FILE, SlowFrame, SlowProfile,
};
use caxton_reports::profile_diff::{self, DiffOutcome, ProfileDiffError, ProfileSide};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum SlowProfileError {
    #[error("reading the run's profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the run's profile {path}: {source}")]
    Fold { path: String, source: FoldError },
    #[error(transparent)]
    Diff(#[from] ProfileDiffError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Adds `flamegraph.slow` to a report whose profile was saved beside `report_path`; a
/// failure is a warning, never the run's failure (a side channel).
pub(crate) fn add_to(report: &mut RunReport, report_path: &Path, threshold: Option<Duration>) {
    let Some(flamegraph) = &report.flamegraph else {
        return;
    };
    let Some(profile) = &flamegraph.profile else {
        return;
    };
    let (threshold_ms, from) = match threshold {
        Some(t) => (t.as_secs_f64() * 1000.0, "--slow-threshold"),
        None => (report.overall.latency_ms.uncorrected.p95, "p95"),
    };
    if report.overall.requests == 0 {
        return;
    }
    let dir = crate::run_dir::dir_of(report_path);
    let pprof = crate::run_dir::beside(report_path, profile);
    match build(&pprof, dir, threshold_ms, from, flamegraph.frequency_hz) {
        Ok(slow) => {
            if let Some(f) = report.flamegraph.as_mut() {
                f.slow = Some(slow);
            }
        }
        Err(e) => eprintln!("caxton-bench: warning: no profile of the slow requests: {e}"),
    }
}

/// Cuts the profile at `pprof` down to the requests of at least `threshold_ms`, writes its
/// flamegraph and the diff into `dir`, and says what it found.
pub(crate) fn build(
    pprof: &Path,
    dir: &Path,
    threshold_ms: f64,
    threshold_from: &str,
    frequency_hz: u32,
) -> Result<SlowProfile, SlowProfileError> {
    let shown = pprof.display().to_string();
    let bytes = std::fs::read(pprof).map_err(|source| SlowProfileError::Read {
        path: shown.clone(),
        source,
    })?;
    let fold = |source| SlowProfileError::Fold {
        path: shown.clone(),
        source,
    };
    let all = folded::decode_pprof(&bytes).map_err(fold)?;
    let threshold_us = (threshold_ms * 1000.0).max(0.0).round() as u64;
    let slow = folded::slow_requests(&all, threshold_us);
    let mut out = SlowProfile {
        threshold_ms,
        threshold_from: threshold_from.to_owned(),
        samples: slow.samples,
        labelled_samples: slow.labelled,
        ..Default::default()
    };
    if slow.labelled == 0 {
        out.not_drawn.push(
            "the target labelled no sample with its request's latency (a caxton runtime \
             sampling with perf_event does)"
                .into(),
        );
        return Ok(out);
    }
    if slow.samples == 0 {
        out.not_drawn.push(format!(
            "no sample of a request of {threshold_ms:.2} ms or more"
        ));
        return Ok(out);
    }
    let write = |name: &str, body: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| SlowProfileError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    let slow_lines = folded::folded_stacks(&slow.profile).map_err(fold)?;
    let title = format!("Requests of {threshold_ms:.2} ms or more ({threshold_from})");
    write(
        SLOW_FLAMEGRAPH_FILE,
        &folded::folded_flamegraph(&slow_lines, Some(&title)).map_err(fold)?,
    )?;
    out.path = Some(SLOW_FLAMEGRAPH_FILE.into());
    let side = |label: &str, folded: Vec<String>, samples: u64| ProfileSide {
        label: label.into(),
        folded,
        frequency_hz,
        samples: Some(samples),
        not_target_only: None,
    };
    let all_side = side(
        "all requests",
        folded::folded_stacks(&all).map_err(fold)?,
        folded::sample_count(&all),
    );
    let slow_side = side("slow requests", slow_lines, slow.samples);
    match profile_diff::diff(&all_side, &slow_side)? {
        DiffOutcome::Drawn(d) => {
            write(SLOW_DIFF_FILE, &d.svg)?;
            out.diff_path = Some(SLOW_DIFF_FILE.into());
            out.top_frames = profile_diff::self_risers(&all_side, &slow_side)?
                .into_iter()
                .map(|s| SlowFrame {
                    frame: s.frame,
                    slow_share: s.current_share,
                    all_share: s.baseline_share,
                })
                .collect();
        }
        DiffOutcome::NotDrawn(why) => out.not_drawn = why,
    }
    Ok(out)
}
