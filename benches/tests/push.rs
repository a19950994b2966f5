//! `bench-gate push` lands criterion estimates and instruction counts in a real Prometheus
//! (Debian `prometheus`, remote-write receiver on), where they can be queried by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use caxton_benches::callgrind::InstructionCounts;
use caxton_benches::criterion_results;
use caxton_benches::series::{INSTRUCTIONS, MICRO_SECONDS};
use caxton_testkit::Prometheus;

fn value(result: &serde_json::Value) -> f64 {
    let series = result.as_array().expect("result array");
    assert_eq!(series.len(), 1, "{result}");
    series[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("sample value")
}

#[tokio::test]
async fn pushed_bench_results_can_be_queried_in_prometheus() {
    let prometheus = Prometheus::start(&[]).await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criterion/slowdown");
    let tmp = tempfile::tempdir().unwrap();
    let counts = tmp.path().join("instructions.json");
    InstructionCounts {
        iterations: 100,
        paths: BTreeMap::from([("handle_message".to_owned(), 41234.5)]),
    }
    .save(&counts)
    .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_bench-gate"))
        .args(["push", "--url", &prometheus.url(), "--version", "v-test"])
        .arg("--dir")
        .arg(&dir)
        .arg("--instructions")
        .arg(&counts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let results = criterion_results::load(&dir, "main").unwrap();
    let spin = results
        .iter()
        .find(|r| r.name == "gate_fixture/spin")
        .unwrap();
    for (stat, ns) in [
        ("mean", spin.new.mean.point_estimate),
        ("lower", spin.new.mean.confidence_interval.lower_bound),
        ("upper", spin.new.mean.confidence_interval.upper_bound),
    ] {
        let q = format!(
            r#"{MICRO_SECONDS}{{benchmark="gate_fixture/spin",stat="{stat}",version="v-test"}}"#
        );
        let got = value(&prometheus.query(&q).await.unwrap());
        assert!((got - ns / 1e9).abs() < 1e-15, "{q}: {got} vs {}", ns / 1e9);
    }
    let q = format!(r#"{INSTRUCTIONS}{{path="handle_message",version="v-test"}}"#);
    assert_eq!(value(&prometheus.query(&q).await.unwrap()), 41234.5);
    // Every benchmark of the run is there, three stats each.
    let all = prometheus
        .query(&format!("count({MICRO_SECONDS})"))
        .await
        .unwrap();
    assert_eq!(value(&all), (results.len() * 3) as f64);
}
