//! `[profiling]` in a running runtime: the pprof endpoints profile real agent work, and the
//! profiler's health shows on /metrics. One test per binary: pprof-rs has one sampler per process.

mod support;

use caxton_runtime::config::Config;
use caxton_runtime::http::server;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_profile_under_load_names_the_runtime_and_counts_samples() {
    let mut cfg = Config::for_tests();
    cfg.profiling.enabled = true;
    cfg.profiling.server_address = "127.0.0.1:0".parse().unwrap();
    let srv = server::start(cfg).await.unwrap();
    let pprof = srv.pprof_addr().expect("pprof server started");
    let http = reqwest::Client::new();
    let base = format!("http://{}", srv.api_addr());
    let agent: Value = http
        .post(format!("{base}/api/agents"))
        .json(&json!({"agent_type": "cpu-heavy"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = agent["id"].as_str().unwrap().to_owned();

    // Keep agents busy while the profile is taken; bounded by the capture itself.
    let load = support::keep_busy(&http, &base, &id, 2000);
    let resp = http
        .get(format!("http://{pprof}/debug/pprof/profile?seconds=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gz = resp.bytes().await.unwrap();
    load.abort();
    let profile = caxton_profiles::folded::decode_pprof(&gz).expect("valid gzipped pprof");
    let stacks = caxton_profiles::folded::folded_stacks(&profile).expect("stacks");
    assert!(
        stacks
            .iter()
            .any(|s| s.contains("caxton_runtime::runtime::routing")),
        "the profile should contain the runtime's own hot path: {:?}",
        stacks.iter().take(5).collect::<Vec<_>>()
    );

    let busy = http
        .get(format!("http://{pprof}/debug/pprof/heap"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        busy.status(),
        404,
        "heap profiles are not enabled by default"
    );

    let metrics = http
        .get(format!("http://{}/metrics", srv.metrics_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let taken = metrics
        .lines()
        .find_map(|l| l.strip_prefix("caxton_profiler_samples_taken_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("profiler counter on /metrics");
    assert!(taken > 0.0, "{metrics}");
    srv.shutdown().await;
}
