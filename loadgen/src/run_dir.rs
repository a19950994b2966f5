//! Where a run's files go. A run writes `<out>/<run-id>/`; a distributed worker writes
//! `<out>/<run-id>/worker-<I>/`, so the workers of one run id sit side by side and
//! `caxton-bench merge` writes the merged report to `<out>/<run-id>/`. Beside each
//! [`REPORT_FILE`]: `report.html` (`caxton_reports::html::REPORT_HTML`), the flamegraph
//! (`caxton_reports::model::FLAMEGRAPH_FILE`) and its profile ([`PROFILE_FILE`]), and the
//! samples a push could not deliver ([`SPOOL_FILE`]).

use std::path::{Path, PathBuf};

/// The run's report.
pub const REPORT_FILE: &str = "report.json";

/// The pprof file a run's profile is saved under, beside its flamegraph.
pub const PROFILE_FILE: &str = "cpu.pb.gz";

/// Samples that could not be delivered, beside the report.
pub const SPOOL_FILE: &str = "unsent-samples.jsonl";

/// The report of run `run_id`, or of worker `worker` of it.
pub(crate) fn report_path(out_dir: &Path, run_id: &str, worker: Option<u32>) -> PathBuf {
    let dir = out_dir.join(run_id);
    match worker {
        Some(index) => dir.join(format!("worker-{index}")),
        None => dir,
    }
    .join(REPORT_FILE)
}

/// The directory the report at `report_path` and its companions are in.
pub(crate) fn dir_of(report_path: &Path) -> &Path {
    report_path.parent().unwrap_or(Path::new(""))
}

/// `file` beside the report at `report_path`.
pub(crate) fn beside(report_path: &Path, file: &str) -> PathBuf {
    dir_of(report_path).join(file)
}

/// The spool of the run whose report is at `report_path`.
pub(crate) fn spool_path(report_path: &Path) -> PathBuf {
    beside(report_path, SPOOL_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_write_side_by_side_under_the_run() {
        assert_eq!(
            report_path(Path::new("out"), "r", None),
            PathBuf::from("out/r/report.json")
        );
        assert_eq!(
            report_path(Path::new("out"), "r", Some(1)),
            PathBuf::from("out/r/worker-1/report.json")
        );
        assert_eq!(
            spool_path(Path::new("out/r/report.json")),
            PathBuf::from("out/r/unsent-samples.jsonl")
        );
    }
}
