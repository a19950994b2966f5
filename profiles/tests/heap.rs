//! `/debug/pprof/heap` with jemalloc profiling on (feature `jemalloc`:
//! `cargo test -p caxton-profiles --features jemalloc --test heap`).
#![cfg(feature = "jemalloc")]

use caxton_profiles::folded::decode_pprof;
use caxton_profiles::{ProfileType, Profiler, ProfilingSettings};

#[global_allocator]
static ALLOC: caxton_profiles::heap::Jemalloc = caxton_profiles::heap::Jemalloc;

/// Sample every allocation (lg_prof_sample:0) so a small test heap shows up.
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:0\0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_profile_is_served_when_enabled() {
    let profiler = Profiler::new(ProfilingSettings {
        profile_types: vec![ProfileType::Cpu, ProfileType::InuseSpace],
        ..Default::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = profiler.clone();
    tokio::spawn(async move { served.serve(listener, std::future::pending()).await });

    let retained: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
    let response = reqwest::get(format!("{base}/debug/pprof/heap"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let profile = decode_pprof(&response.bytes().await.unwrap()).unwrap();
    let in_use: i64 = profile.sample.iter().filter_map(|s| s.value.first()).sum();
    assert!(
        in_use >= 4 * 1024 * 1024,
        "in-use bytes {in_use} miss the 4 MiB retained"
    );
    drop(retained);
}
