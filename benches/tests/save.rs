//! `bench-gate save` keeps a criterion run as one history run that `caxton-bench history`
//! reads beside the load reports.

use std::path::Path;
use std::process::Command;

use caxton_benches::criterion_results;
use caxton_reports::history::{self, MICRO_FILE, MicroRun};

#[test]
fn a_saved_criterion_run_is_a_history_run_of_its_medians() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criterion/slowdown");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("micro").join("m-1").join(MICRO_FILE);
    let o = Command::new(env!("CARGO_BIN_EXE_bench-gate"))
        .args(["save", "--run-id", "m-1", "--version", "v-test", "--dir"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let run = MicroRun::read(&out).unwrap();
    let spin = criterion_results::load(&dir, "main")
        .unwrap()
        .into_iter()
        .find(|r| r.name == "gate_fixture/spin")
        .unwrap();
    assert_eq!(
        (run.run_id.as_str(), run.version.as_str()),
        ("m-1", "v-test")
    );
    let saved = run.median_seconds["gate_fixture/spin"];
    assert!((saved - spin.new.median.point_estimate / 1e9).abs() < 1e-15);
    // history finds it under the nightly directory as a run of its own series.
    let loaded = history::load_dir(tmp.path(), false).unwrap();
    let (runs, per_run) = loaded.observations();
    assert_eq!(runs[0].run_id, "m-1");
    assert_eq!(per_run[0][0].0, MicroRun::key("gate_fixture/spin"));
}
