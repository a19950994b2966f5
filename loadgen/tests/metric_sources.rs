//! One source of truth: every metric name the rules and dashboards of k8s/ use is served by
//! the runtime's /metrics after traffic, or (caxton_bench_*) reaches a real Prometheus
//! through caxton-bench's remote write. Expressions come from ci/k8s/promql_exprs.py, the
//! extractor ci/validate-k8s and ci/promql-parse-check use.
#![cfg(feature = "embedded")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use caxton_loadgen::series::BENCH_METRIC_NAMES;
use caxton_runtime::config::Config;
use caxton_testkit::api::{agent_wat, request};
use caxton_testkit::{ApiClient, Prometheus};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `caxton_*` tokens of an expression, histogram suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(at) = expr[i..].find("caxton_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.push(base.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// name -> where it is used (file: rule or panel).
fn used_names() -> BTreeMap<String, BTreeSet<String>> {
    let o = std::process::Command::new("python3")
        .arg(repo().join("ci/k8s/promql_exprs.py"))
        .arg(repo().join("k8s"))
        .output()
        .expect("python3 runs (ci/install-tools installs pyyaml)");
    assert!(
        o.status.success(),
        "promql_exprs.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let place = format!("{}: {}", e["file"], e["where"]);
        for n in metric_names(e["expr"].as_str().unwrap_or_default()) {
            used.entry(n).or_default().insert(place.clone());
        }
    }
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_rules_and_dashboards_exists_at_its_source() {
    let used = used_names();
    assert!(used.len() > 15, "too few names found: {used:?}");
    let prom = Prometheus::start(&[]).await.unwrap();
    let out = std::env::temp_dir().join(format!("caxton-metric-sources-{}", std::process::id()));
    // With its store, so the store's series exist too.
    let mut config = Config::for_tests();
    config.server.persist_agents = true;
    config.server.data_dir = out.join("data");
    let server = caxton_runtime::start(config).await.unwrap();
    let target = format!("http://{}", server.api_addr());

    // Traffic: both scenarios, its series remote-written to the real Prometheus.
    let o = common::bench_as(
        "names",
        &[
            "--target",
            &target,
            "--duration",
            "2s",
            "--concurrent-users",
            "2",
            "--think-time",
            "50ms",
            "--scenario",
            "create-agent,messaging",
            "--no-flamegraph",
            "--report-to-prometheus",
            &prom.url(),
        ],
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    // And an agent whose executions fail: the message error counter.
    let api = ApiClient::new(&target);
    let id = api.create_wat(&agent_wat("(i32.const 1)")).await.unwrap();
    let r = api.ask(&request(&id, serde_json::json!({}))).await.unwrap();
    assert!(r.status.is_success(), "{}", r.status);

    let text = api
        .get_text(&format!("http://{}/metrics", server.metrics_addr()))
        .await
        .unwrap();
    server.shutdown().await;
    let served: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .flat_map(|l| metric_names(l.split(['{', ' ']).next().unwrap_or_default()))
        .collect();

    // What remote write delivered (bounded wait: the final push is done when the run exits).
    let mut pushed = BTreeSet::new();
    for _ in 0..50 {
        let v = prom
            .query(r#"count by (__name__) ({__name__=~"caxton_bench_.+"})"#)
            .await
            .unwrap();
        pushed = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["metric"]["__name__"].as_str())
            // A histogram's `_bucket`/`_sum`/`_count` series count under its own name.
            .flat_map(metric_names)
            .collect();
        if pushed.len() >= BENCH_METRIC_NAMES.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in BENCH_METRIC_NAMES {
        assert!(
            pushed.contains(name),
            "{name} never reached Prometheus: {pushed:?}"
        );
    }

    // `history`'s verdict series come from a history, not from one run: tests/history.rs
    // pushes them from real nights to a real Prometheus and reads them back.
    let verdict: BTreeSet<String> = caxton_loadgen::verdict::VERDICT_METRIC_NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !served.contains(*n) && !pushed.contains(*n) && !verdict.contains(*n))
        .map(|(n, places)| format!("{n} (used in {places:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "names used in k8s/ that no source produces:\n{}\nserved: {served:?}\npushed: {pushed:?}",
        missing.join("\n")
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn names_are_read_like_promql_tokens() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.95, rate(caxton_http_request_duration_seconds_bucket[5m])) / caxton_agents_active"
        ),
        vec![
            "caxton_http_request_duration_seconds",
            "caxton_agents_active"
        ]
    );
    assert!(metric_names("my_caxton_x + 1").is_empty());
}
