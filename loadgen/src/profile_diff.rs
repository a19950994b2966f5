//! Two runs' CPU profiles read for [`caxton_reports::profile_diff`]: the pprof file each
//! report names, folded by `caxton-profiles`, checked to hold the target's threads only, and
//! the differential flamegraph written beside the current run's report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use caxton_reports::history::{History, LoadedRun};
use caxton_reports::model::RunReport;
use caxton_reports::profile_diff::{self, DIFF_FLAMEGRAPH_FILE, DiffOutcome, ProfileSide};

/// Whether a thread of an embedded run's profile is the runtime's (the capture keeps only
/// those; a profile that holds others was not taken of the target alone).
#[cfg(feature = "embedded")]
fn is_target_thread(name: &str) -> bool {
    caxton_runtime::threads::is_runtime_thread(name)
}

/// Built without the runtime, the capture's own thread filter is all there is to go by.
#[cfg(not(feature = "embedded"))]
fn is_target_thread(_name: &str) -> bool {
    true
}

/// One run's profile, or why it has none that can be diffed (e.g. no profile, unreadable
/// file: a reason, not an error, so a broken profile never hides the metrics' verdict).
pub(crate) fn side(
    label: &str,
    report: &RunReport,
    report_path: &Path,
) -> Result<ProfileSide, String> {
    side_of(label, report, report_path, false)
}

/// [`side`], or with `slow` the samples of the run's slow requests only (cut at the run's
/// own threshold, as its `flamegraph-slow.svg` was).
fn side_of(
    label: &str,
    report: &RunReport,
    report_path: &Path,
    slow: bool,
) -> Result<ProfileSide, String> {
    let label = match slow {
        false => format!("{label} {}", report.run_id),
        true => format!("{label} {} slow requests", report.run_id),
    };
    let Some(flamegraph) = &report.flamegraph else {
        return Err(format!("the {label} run has no CPU profile"));
    };
    let threshold_us = match (&flamegraph.slow, slow) {
        (_, false) => None,
        (Some(s), true) => Some((s.threshold_ms * 1000.0).max(0.0).round() as u64),
        (None, true) => return Err(format!("the {label} run has no profile of them")),
    };
    let Some(file) = &flamegraph.profile else {
        return Err(format!(
            "the {label} run saved only an SVG flamegraph, no pprof profile"
        ));
    };
    let path = crate::run_dir::beside(report_path, file);
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read the {label} profile {}: {e}", path.display()))?;
    let (folded, samples) = caxton_profiles::folded::decode_pprof(&bytes)
        .map(|p| match threshold_us {
            Some(us) => caxton_profiles::folded::slow_requests(&p, us).profile,
            None => p,
        })
        .and_then(|p| {
            let samples = caxton_profiles::folded::sample_count(&p);
            Ok((caxton_profiles::folded::folded_stacks(&p)?, samples))
        })
        .map_err(|e| format!("the {label} profile {}: {e}", path.display()))?;
    let not_target_only = if report.embedded_target {
        let foreign: BTreeSet<&str> = folded
            .iter()
            .filter_map(|l| l.split(';').next())
            .filter(|root| !is_target_thread(root))
            .collect();
        (!foreign.is_empty()).then(|| {
            format!(
                "it holds samples of threads other than the runtime's: {}",
                foreign.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
    } else {
        None
    };
    Ok(ProfileSide {
        label,
        folded,
        frequency_hz: flamegraph.frequency_hz,
        samples: Some(samples),
        not_target_only,
    })
}

/// The diff of two runs' profiles, or the reasons it is not drawn.
pub fn diff_runs(
    baseline: (&RunReport, &Path),
    current: (&RunReport, &Path),
) -> Result<DiffOutcome, profile_diff::ProfileDiffError> {
    match (
        side("baseline", baseline.0, baseline.1),
        side("current", current.0, current.1),
    ) {
        (Ok(b), Ok(c)) => profile_diff::diff(&b, &c),
        (b, c) => Ok(DiffOutcome::NotDrawn(
            [b.err(), c.err()].into_iter().flatten().collect(),
        )),
    }
}

/// The file `compare` writes the diff of two runs' slow requests to.
pub const SLOW_DIFF_FLAMEGRAPH_FILE: &str = "diff-slow-flamegraph.svg";

/// The diff of two runs' slow requests, each run's cut at its own threshold; `None` unless
/// both reports have a profile of their slow requests.
pub fn diff_slow_runs(
    baseline: (&RunReport, &Path),
    current: (&RunReport, &Path),
) -> Option<Result<DiffOutcome, profile_diff::ProfileDiffError>> {
    let has_slow = |r: &RunReport| r.flamegraph.as_ref().is_some_and(|f| f.slow.is_some());
    if !has_slow(baseline.0) || !has_slow(current.0) {
        return None;
    }
    Some(
        match (
            side_of("baseline", baseline.0, baseline.1, true),
            side_of("current", current.0, current.1, true),
        ) {
            (Ok(b), Ok(c)) => profile_diff::diff(&b, &c),
            (b, c) => Ok(DiffOutcome::NotDrawn(
                [b.err(), c.err()].into_iter().flatten().collect(),
            )),
        },
    )
}

/// Writes a drawn diff's SVG into `dir` as [`DIFF_FLAMEGRAPH_FILE`]; `None` when none is drawn.
pub fn write_svg(outcome: &DiffOutcome, dir: &Path) -> std::io::Result<Option<PathBuf>> {
    write_svg_as(outcome, dir, DIFF_FLAMEGRAPH_FILE)
}

/// [`write_svg`] under the file name `name`.
pub fn write_svg_as(
    outcome: &DiffOutcome,
    dir: &Path,
    name: &str,
) -> std::io::Result<Option<PathBuf>> {
    let DiffOutcome::Drawn(d) = outcome else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, &d.svg)?;
    Ok(Some(path))
}

/// The diff of the profiles either side of each change point whose runs both have one,
/// written to `diff-from-<run before>/` in the run directory after the change.
pub fn at_change_points(
    history: &History,
    runs: &[LoadedRun],
) -> BTreeMap<(String, String), Result<PathBuf, String>> {
    let find = |id: &str| runs.iter().find(|r| r.info.run_id == id).map(|r| &r.path);
    let mut out = BTreeMap::new();
    for (_, c) in history.change_points() {
        let key = (c.before.run_id.clone(), c.after.run_id.clone());
        if out.contains_key(&key) || c.before.profile.is_none() || c.after.profile.is_none() {
            continue;
        }
        let (Some(bp), Some(ap)) = (find(&key.0), find(&key.1)) else {
            continue;
        };
        // The history keeps no whole report: the two are read again.
        let (b, a) = match (RunReport::read(bp), RunReport::read(ap)) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                out.insert(key, Err(e.to_string()));
                continue;
            }
        };
        let dir = ap
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!("diff-from-{}", key.0));
        let written = diff_runs((&b, bp), (&a, ap))
            .map_err(|e| e.to_string())
            .and_then(|outcome| match &outcome {
                DiffOutcome::NotDrawn(why) => Err(why.join("; ")),
                DiffOutcome::Drawn(_) => write_svg(&outcome, &dir)
                    .map_err(|e| format!("writing into {}: {e}", dir.display()))?
                    .ok_or_else(|| "not drawn".to_string()),
            });
        out.insert(key, written);
    }
    out
}
