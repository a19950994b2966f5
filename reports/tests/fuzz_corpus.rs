//! Replays the `run_report_read` cargo-fuzz corpus (fuzz/corpus) on stable, through the
//! same function the fuzz target calls.

use std::path::PathBuf;

use caxton_reports::model::RunReport;

#[test]
fn run_report_read_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/run_report_read");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        RunReport::fuzz_read(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
