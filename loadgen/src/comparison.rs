//! `caxton-bench compare`: one run judged against a baseline (a report, or a history
//! directory calibrated into one), with the differential flamegraph of their profiles. The
//! verdict is the exit code (0 or 1); every error is the caller's exit 2, so a broken
//! baseline is never mistaken for a regression.

use std::path::{Path, PathBuf};

use caxton_reports::calibration::{self, CalibrationError};
use caxton_reports::compare::{self, CompareError, CompareOptions};
use caxton_reports::html::{self, HtmlError};
use caxton_reports::model::{ReportError, RunReport};
use caxton_reports::profile_diff::ProfileDiffError;
use thiserror::Error;

use crate::cli::CompareArgs;
use crate::profile_diff;

/// Why a comparison gave no verdict.
#[derive(Debug, Error)]
pub enum ComparisonError {
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error(transparent)]
    ProfileDiff(#[from] ProfileDiffError),
    #[error("writing the differential flamegraph in {dir}: {source}")]
    DiffSvg {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Html(#[from] HtmlError),
}

/// Compares, prints the verdict and the profiles' difference (text or Markdown), writes the
/// differential flamegraph and the HTML page when asked; returns the exit code.
pub fn compare(args: &CompareArgs) -> Result<u8, ComparisonError> {
    let mut opts = CompareOptions::from_flags(Some(&args.threshold), &args.metric_thresholds)?;
    let current = RunReport::read(&args.current)?;
    let (baseline_path, baseline) = if args.baseline.is_dir() {
        let calibrated = calibration::from_history(&args.baseline, &current.plan, false)?;
        let explicit: Vec<_> = opts.per_metric.keys().copied().collect();
        calibrated.apply(&mut opts, &explicit);
        eprint!("{}", calibrated.describe(&opts));
        calibrated.baseline
    } else {
        (args.baseline.clone(), RunReport::read(&args.baseline)?)
    };
    let result = compare::compare(&baseline, &current, &opts)?;
    let profiles = profile_diff::diff_runs((&baseline, &baseline_path), (&current, &args.current))?;
    let diff_dir = match &args.diff_dir {
        Some(d) => d.clone(),
        None => args
            .current
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let svg = profile_diff::write_svg(&profiles, &diff_dir).map_err(|source| {
        ComparisonError::DiffSvg {
            dir: diff_dir.clone(),
            source,
        }
    })?;
    let svg = svg.map(|p| p.display().to_string());
    if args.markdown {
        print!("{}", result.to_markdown());
        print!("{}", profiles.to_markdown(svg.as_deref()));
    } else {
        print!("{}", result.to_text());
        print!("{}", profiles.to_text(svg.as_deref()));
    }
    // Slow requests against slow requests, when both runs profiled theirs.
    let slow = profile_diff::diff_slow_runs((&baseline, &baseline_path), (&current, &args.current))
        .transpose()?;
    if let Some(slow) = &slow {
        let file = profile_diff::SLOW_DIFF_FLAMEGRAPH_FILE;
        let svg = profile_diff::write_svg_as(slow, &diff_dir, file)
            .map_err(|source| ComparisonError::DiffSvg {
                dir: diff_dir.clone(),
                source,
            })?
            .map(|p| p.display().to_string());
        if args.markdown {
            print!("\n#### Slow requests\n{}", slow.to_markdown(svg.as_deref()));
        } else {
            print!("\nslow requests:{}", slow.to_text(svg.as_deref()));
        }
    }
    if let Some(out) = &args.html {
        let page =
            html::render_comparison(&baseline, &current, &result, Some(&profiles), slow.as_ref())?;
        html::write_file(out, &page)?;
        println!("html: {}", out.display());
    }
    Ok(result.exit_code())
}
