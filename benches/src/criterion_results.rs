//! Criterion's on-disk results: for every benchmark under `target/criterion`, the
//! `new/estimates.json` of the latest run, the `change/estimates.json` of its comparison with a
//! baseline, and the saved baseline's own `estimates.json`.
//!
//! Layout (criterion 0.8): `<dir>/<group>/<function>[/<parameter>]/{new,change,<baseline>}/`;
//! `new/benchmark.json` holds the benchmark's full id (`group/function/parameter`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResultsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a criterion {what} file: {source}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "no criterion results under {0}; run `cargo bench -p caxton-benches -- --baseline main` first"
    )]
    Empty(PathBuf),
}

/// A point estimate with its confidence interval, as criterion writes it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Estimate {
    pub point_estimate: f64,
    pub confidence_interval: ConfidenceInterval,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

/// `estimates.json`: times in nanoseconds per iteration (in `change/`, relative changes:
/// 0.2 = 20% slower).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Estimates {
    pub mean: Estimate,
    pub median: Estimate,
}

#[derive(Debug, Deserialize)]
struct BenchmarkId {
    full_id: String,
}

/// One benchmark's results.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Criterion's full id, e.g. `fipa/decode/4096`.
    pub name: String,
    /// The latest run.
    pub new: Estimates,
    /// The saved baseline the run was compared with, if it exists.
    pub baseline: Option<Estimates>,
    /// The latest run relative to the baseline, if criterion compared them.
    pub change: Option<Estimates>,
}

fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ResultsError::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}

fn read_optional(path: &Path, what: &'static str) -> Result<Option<Estimates>, ResultsError> {
    if path.is_file() {
        read_json(path, what).map(Some)
    } else {
        Ok(None)
    }
}

/// Every benchmark under `dir` (criterion's output directory), sorted by name. `baseline` is
/// the name given to `--save-baseline`/`--baseline`.
pub fn load(dir: &Path, baseline: &str) -> Result<Vec<BenchResult>, ResultsError> {
    let mut found = Vec::new();
    collect(dir, baseline, &mut found)?;
    if found.is_empty() {
        return Err(ResultsError::Empty(dir.to_owned()));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn collect(dir: &Path, baseline: &str, out: &mut Vec<BenchResult>) -> Result<(), ResultsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ResultsError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ResultsError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if entry.path().is_dir() {
            subdirs.push(entry.path());
        }
    }
    let new = dir.join("new");
    if new.join("estimates.json").is_file() && new.join("benchmark.json").is_file() {
        let id: BenchmarkId = read_json(&new.join("benchmark.json"), "benchmark")?;
        out.push(BenchResult {
            name: id.full_id,
            new: read_json(&new.join("estimates.json"), "estimates")?,
            baseline: read_optional(&dir.join(baseline).join("estimates.json"), "estimates")?,
            change: read_optional(&dir.join("change").join("estimates.json"), "change")?,
        });
        return Ok(());
    }
    // `report/` holds criterion's HTML, never results.
    for sub in subdirs {
        if sub.file_name().is_some_and(|n| n != "report") {
            collect(&sub, baseline, out)?;
        }
    }
    Ok(())
}
