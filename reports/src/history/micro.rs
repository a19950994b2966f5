//! Micro-benchmark results as history runs: `micro.json`, written by `bench-gate save` after
//! the nightly's criterion run, read by `history` beside the load runs' `report.json`.
//!
//! Each benchmark is a series of its own: plan [`PLAN`], target [`TARGET`], scenario the
//! benchmark's id, metric p50 (criterion's median time per iteration, in seconds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::series::{ALL, SeriesKey};
use crate::compare::Metric;
use crate::model::ReportError;

/// The file name of one micro-benchmark run in its run directory.
pub const MICRO_FILE: &str = "micro.json";
/// The plan of micro-benchmark series: they never share a series with a load plan.
pub const PLAN: &str = "criterion";
/// The target of micro-benchmark series: the code itself, in-process.
pub const TARGET: &str = "micro";

/// One night's micro-benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicroRun {
    pub run_id: String,
    /// The version of the benchmarked build (the `version` label of the pushed series).
    pub version: String,
    pub started_unix_ms: u64,
    /// Benchmark id → criterion's median estimate of one iteration, seconds.
    pub median_seconds: BTreeMap<String, f64>,
}

impl MicroRun {
    /// Reads `path`; errors name the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<MicroRun, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes `path` (and its directory).
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let write_err = |source| ReportError::Write {
            path: PathBuf::from(path),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|source| ReportError::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text).map_err(write_err)
    }

    /// The key of a benchmark's series.
    pub fn key(benchmark: &str) -> SeriesKey {
        SeriesKey {
            plan: PLAN.to_string(),
            target: TARGET.to_string(),
            scenario: benchmark.to_string(),
            stage: ALL.to_string(),
            metric: Metric::P50,
        }
    }

    /// Every (key, value) this run contributes.
    pub fn observations(&self) -> Vec<(SeriesKey, f64)> {
        self.median_seconds
            .iter()
            .map(|(name, s)| (Self::key(name), *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_micro_run_round_trips_and_an_unknown_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m1").join(MICRO_FILE);
        let run = MicroRun {
            run_id: "m1".into(),
            version: "0.2.0".into(),
            started_unix_ms: 5,
            median_seconds: [("route/send".to_string(), 2.5e-6)].into(),
        };
        run.write(&path).unwrap();
        assert_eq!(MicroRun::read(&path).unwrap(), run);
        assert_eq!(run.observations()[0].0.scenario, "route/send");
        std::fs::write(
            &path,
            r#"{"run_id":"m1","version":"v","started_unix_ms":1,"median_seconds":{},"mean":1}"#,
        )
        .unwrap();
        let e = MicroRun::read(&path).unwrap_err().to_string();
        assert!(e.contains(MICRO_FILE) && e.contains("mean"), "{e}");
    }
}
