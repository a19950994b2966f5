//! `[profiling]` in a running runtime: the pprof endpoints profile real agent work, and the
//! profiler's health shows on /metrics. One test per binary: pprof-rs has one sampler per process.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_profile_under_load_names_the_runtime_and_counts_samples() {
    let h = support::Harness::start(|c| {
        c.profiling.enabled = true;
        c.profiling.server_address = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let pprof = h.server.pprof_addr().expect("pprof server started");
    let http = h.http.clone();
    let id = h.agent("cpu-heavy").await;

    // Keep agents busy while the profile is taken; bounded by the capture itself.
    let load = support::keep_busy(&h.http, &h.base, &id, 2000);
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

    let metrics = h.metrics().await;
    let taken = metrics
        .lines()
        .find_map(|l| l.strip_prefix("caxton_profiler_samples_taken_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("profiler counter on /metrics");
    assert!(taken > 0.0, "{metrics}");
    h.server.shutdown().await;
}
