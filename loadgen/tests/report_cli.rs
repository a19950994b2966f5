//! `caxton-bench report` and `caxton-bench compare` as a user runs them, on the committed v1
//! report of a real run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use caxton_reports::model::{RunReport, encode_histogram, new_histogram};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/report-v1.json")
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caxton-bench"))
        .args(args)
        .output()
        .unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("caxton-report-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fixture with every latency multiplied by `factor` (the run got that much slower).
fn slower(factor: u64, path: &Path) {
    let mut report = RunReport::read(&fixture()).unwrap();
    let h = report.overall.histograms.decode_corrected().unwrap();
    let mut scaled = new_histogram();
    for v in h.iter_recorded() {
        scaled
            .record_n(v.value_iterated_to() * factor, v.count_at_value())
            .unwrap();
    }
    report.overall.histograms.corrected = encode_histogram(&scaled, "corrected").unwrap();
    let p = caxton_reports::model::Percentiles::from_histogram(&scaled);
    report.overall.latency_ms.corrected = p;
    report.run_id = format!("slower-x{factor}");
    report.write(path).unwrap();
}

#[test]
fn report_writes_html_beside_the_json() {
    let d = dir("report");
    let json = d.join("report.json");
    std::fs::copy(fixture(), &json).unwrap();
    let o = bench(&["report", json.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(
        html.contains("v1-fixture") && html.contains("<svg"),
        "{html}"
    );
    let missing = bench(&["report", d.join("nope.json").to_str().unwrap()]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn compare_exits_by_verdict_and_2_on_bad_input() {
    let d = dir("compare");
    let base = fixture();
    let base = base.to_str().unwrap();
    let same = bench(&["compare", base, base]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    assert!(String::from_utf8_lossy(&same.stdout).contains("no significant regression"));

    let cur = d.join("slower.json");
    slower(3, &cur);
    let html = d.join("cmp.html");
    let o = bench(&[
        "compare",
        base,
        cur.to_str().unwrap(),
        "--markdown",
        "--metric-threshold",
        "p99=50%",
        "--html",
        html.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("| p95 latency (corrected) |") && stdout.contains("**REGRESSED**"),
        "{stdout}"
    );
    assert!(stdout.contains("±50%"), "{stdout}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("baseline"));

    for bad in [
        vec!["compare", base, d.join("missing.json").to_str().unwrap()],
        vec!["compare", base, base, "--threshold", "10"],
        vec!["compare", base, base, "--metric-threshold", "p42=1%"],
    ] {
        let o = bench(&bad);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(d);
}
