//! The shipped `caxton` binary serves jemalloc heap profiles when `[profiling] profile_types`
//! names a heap type: jemalloc is its allocator (default feature `jemalloc`), profiling idles
//! until the configuration activates it. The process is the real binary, not this test
//! harness, because only the binary sets the global allocator and `malloc_conf`.
#![cfg(feature = "jemalloc")]

mod binary;

use std::time::Duration;

use serde_json::{Value, json};

use binary::{Serving, free_port};

#[tokio::test]
async fn binary_serves_an_inuse_heap_profile_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (api, metrics, pprof) = (free_port(), free_port(), free_port());
    let config = dir.path().join("caxton.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\napi_address = \"127.0.0.1:{api}\"\nmetrics_address = \"127.0.0.1:{metrics}\"\n\
             data_dir = \"{data}\"\n\n[profiling]\nenabled = true\n\
             server_address = \"127.0.0.1:{pprof}\"\nprofile_types = [\"cpu\", \"inuse_space\"]\n",
            data = dir.path().display()
        ),
    )
    .unwrap();
    let caxton = Serving::start(&config, api, &[], Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let base = &caxton.api;
    // Heap that is allocated after activation and retained: jemalloc samples one allocation
    // per 512 KiB on average, so small allocations would give a profile that is empty by
    // chance. Each agent keeps its `config` as one allocation: 64 x 512 KiB = 32 MiB.
    let blob = "x".repeat(512 * 1024);
    for _ in 0..64 {
        let created: Value = http
            .post(format!("{base}/api/agents"))
            .json(&json!({"agent_type": "test-agent", "config": {"blob": blob}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(created["id"].is_string(), "{created}");
    }

    let response = http
        .get(format!("http://127.0.0.1:{pprof}/debug/pprof/heap"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let profile = caxton_profiles::folded::decode_pprof(&response.bytes().await.unwrap())
        .expect("a gzipped pprof heap profile");
    let in_use: i64 = profile.sample.iter().filter_map(|s| s.value.last()).sum();
    assert!(
        in_use >= 8 * 1024 * 1024,
        "in-use bytes {in_use}: the agents alone retain 32 MiB"
    );
    let binary = profile.mapping.iter().any(|m| {
        usize::try_from(m.filename)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .is_some_and(|f| f.ends_with("/caxton"))
    });
    assert!(
        binary,
        "the profile maps the caxton binary, so `go tool pprof caxton heap.pb.gz` symbolizes it"
    );
}
