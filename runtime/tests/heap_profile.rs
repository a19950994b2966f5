//! The shipped `caxton` binary serves jemalloc heap profiles when `[profiling] profile_types`
//! names a heap type: jemalloc is its allocator (default feature `jemalloc`), profiling idles
//! until the configuration activates it. The process is the real binary, not this test
//! harness, because only the binary sets the global allocator and `malloc_conf`.
#![cfg(feature = "jemalloc")]

use caxton_testkit::{Caxton, CaxtonConfig, free_addr};
use serde_json::json;

#[tokio::test]
async fn binary_serves_an_inuse_heap_profile_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let pprof = free_addr().unwrap();
    let config = CaxtonConfig::write(
        dir.path(),
        &format!(
            "\n[profiling]\nenabled = true\n\
             server_address = \"{pprof}\"\nprofile_types = [\"cpu\", \"inuse_space\"]\n"
        ),
    )
    .unwrap();
    let caxton = Caxton::start(env!("CARGO_BIN_EXE_caxton").as_ref(), &config)
        .await
        .unwrap();
    let http = caxton.api().http();
    // Heap that is allocated after activation and retained: jemalloc samples one allocation
    // per 512 KiB on average, so small allocations would give a profile that is empty by
    // chance. Each agent keeps its `config` as one allocation: 64 x 512 KiB = 32 MiB.
    let blob = "x".repeat(512 * 1024);
    for _ in 0..64 {
        let created = caxton
            .api()
            .create_agent(&json!({"agent_type": "test-agent", "config": {"blob": blob}}))
            .await
            .unwrap();
        assert!(created.body["id"].is_string(), "{}", created.body);
    }

    let response = http
        .get(format!("http://{pprof}/debug/pprof/heap"))
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
