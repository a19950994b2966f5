//! Heap profiles from jemalloc (cargo feature `jemalloc`, off by default).
//!
//! jemalloc must be the process's allocator with profiling switched on, which only the final
//! binary can arrange:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: caxton_profiles::heap::Jemalloc = caxton_profiles::heap::Jemalloc;
//! // Read by jemalloc at start-up: sample one allocation per 512 KiB on average.
//! #[unsafe(export_name = "malloc_conf")]
//! pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
//! ```
//!
//! The dump is jemalloc's in-use heap (`inuse_space`), gzipped pprof with addresses and
//! mappings: `go tool pprof <binary> heap.pb.gz` symbolizes it.

#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;

/// Why no heap profile can be produced.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// Built without the `jemalloc` feature.
    #[error(
        "this build has no jemalloc heap profiler (build caxton-profiles with feature `jemalloc` \
         and use tikv-jemallocator as the global allocator)"
    )]
    NotCompiled,
    /// jemalloc profiling is not running in this process.
    #[error("jemalloc heap profiling is not active: {0}")]
    NotActive(&'static str),
    /// jemalloc could not dump the profile.
    #[error("dumping the jemalloc heap profile: {0}")]
    Dump(String),
}

/// The current in-use heap as a gzipped pprof protobuf.
#[cfg(feature = "jemalloc")]
pub async fn dump_heap() -> Result<Vec<u8>, HeapError> {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err(HeapError::NotActive(
            "jemalloc is not the global allocator or `malloc_conf` lacks `prof:true`",
        ));
    };
    let mut ctl = ctl.lock().await;
    if !ctl.activated() {
        return Err(HeapError::NotActive("`prof.active` is false"));
    }
    ctl.dump_pprof()
        .map_err(|e| HeapError::Dump(format!("{e:#}")))
}

/// The current in-use heap as a gzipped pprof protobuf.
#[cfg(not(feature = "jemalloc"))]
pub async fn dump_heap() -> Result<Vec<u8>, HeapError> {
    Err(HeapError::NotCompiled)
}
