//! The gates on real inputs: criterion results from real runs (fixtures made by
//! `criterion_fixtures.rs`, see there) and instruction counts from real callgrind runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use caxton_benches::callgrind::{self, InstructionCounts};
use caxton_benches::criterion_results;
use caxton_benches::gate::{self, GateConfig, Verdict};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/criterion")
        .join(name)
}

fn bench_gate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench-gate"))
        .args(args)
        .output()
        .expect("running bench-gate")
}

/// `bench-gate --config CONFIG criterion --dir DIR`.
fn criterion_gate(config: &Path, dir: &Path) -> Output {
    bench_gate(&[
        "--config",
        config.to_str().unwrap(),
        "criterion",
        "--dir",
        dir.to_str().unwrap(),
    ])
}

/// A config path that does not exist: the gate's defaults.
const NO_CONFIG: &str = "/nonexistent/gate.toml";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_20_percent_slowdown_fails_the_gate_and_names_the_benchmark() {
    let results = criterion_results::load(&fixture("slowdown"), "main").unwrap();
    let report = gate::criterion_gate(&results, &GateConfig::defaults().criterion);
    let spin = report
        .rows
        .iter()
        .find(|r| r.bench == "gate_fixture/spin")
        .unwrap();
    assert_eq!(spin.verdict, Verdict::Regressed, "{}", report.table());
    // A 20% slower spin, as measured on a shared two-core machine.
    let change = spin.change_pct.unwrap();
    assert!((10.0..45.0).contains(&change), "{change}");
    let steady = report
        .rows
        .iter()
        .find(|r| r.bench == "gate_fixture/steady")
        .unwrap();
    assert_ne!(steady.verdict, Verdict::Regressed, "{}", report.table());

    let dir = fixture("slowdown");
    let out = criterion_gate(Path::new(NO_CONFIG), &dir);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL, regressed: gate_fixture/spin"),
        "{text}"
    );
    // The baseline column comes from the saved `main` estimates: ~20 µs.
    assert!(text.contains("20.") && text.contains("µs"), "{text}");
}

#[test]
fn identical_runs_pass() {
    let dir = fixture("identical");
    let out = criterion_gate(Path::new(NO_CONFIG), &dir);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("wall-time gate: pass (2 benchmarks)"),
        "{text}"
    );
}

#[test]
fn a_per_benchmark_threshold_from_gate_toml_lets_the_slowdown_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gate.toml");
    std::fs::write(&cfg, "[criterion.thresholds]\n\"gate_fixture/*\" = 50.0\n").unwrap();
    let dir = fixture("slowdown");
    let out = criterion_gate(&cfg, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn missing_results_and_bad_config_are_errors_not_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench_gate(&["criterion", "--dir", tmp.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no criterion results under"), "{err}");

    let cfg = tmp.path().join("gate.toml");
    std::fs::write(&cfg, "[criterion]\ndefault_threshold = 5\n").unwrap();
    let dir = fixture("identical");
    let out = criterion_gate(&cfg, &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("gate.toml") && err.contains("default_threshold"),
        "{err}"
    );
}

#[test]
fn the_repository_gate_toml_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gate.toml");
    let cfg = GateConfig::load(&path).unwrap();
    assert!(cfg.criterion.default_threshold_pct > 0.0);
}

/// Real callgrind runs of the (debug) `callgrind-paths` binary: per-iteration counts agree
/// across iteration counts, and the instruction gate fails on inflated counts.
#[test]
fn callgrind_counts_are_stable_per_iteration_and_gated() {
    let binary = Path::new(env!("CARGO_BIN_EXE_callgrind-paths"));
    let tmp = tempfile::tempdir().unwrap();
    let path = "metrics_histogram_observe";
    let ten = callgrind::count_path(binary, path, 10, tmp.path()).unwrap();
    let forty = callgrind::count_path(binary, path, 40, tmp.path()).unwrap();
    assert!(ten > 100.0, "{ten} instructions per observe is implausible");
    assert!(
        (ten - forty).abs() / forty < 0.01,
        "10 iterations: {ten}, 40 iterations: {forty}"
    );
    // The real output file parses to the figure count_path reported.
    let file = tmp.path().join(format!("callgrind.{path}.out"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        callgrind::parse_totals(&text, "f").unwrap() as f64 / 40.0,
        forty
    );

    let current = tmp.path().join("current.json");
    InstructionCounts {
        iterations: 40,
        paths: BTreeMap::from([(path.to_owned(), forty)]),
    }
    .save(&current)
    .unwrap();
    let baseline = tmp.path().join("baseline.json");
    let gate_with = |base: f64| {
        InstructionCounts {
            iterations: 40,
            paths: BTreeMap::from([(path.to_owned(), base)]),
        }
        .save(&baseline)
        .unwrap();
        bench_gate(&[
            "--config",
            "/nonexistent/gate.toml",
            "callgrind",
            "--current",
            current.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
        ])
    };
    let same = gate_with(forty);
    assert_eq!(same.status.code(), Some(0), "{}", stdout(&same));
    let slower = gate_with(forty / 1.2);
    let text = stdout(&slower);
    assert_eq!(slower.status.code(), Some(1), "{text}");
    assert!(text.contains("REGRESSED"), "{text}");
}
