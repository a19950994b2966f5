//! Heap profiles from jemalloc (cargo feature `jemalloc`, off by default).
//!
//! jemalloc must be the process's allocator with profiling compiled in, which only the final
//! binary can arrange: it invokes [`jemalloc_global_allocator!`](crate::jemalloc_global_allocator)
//! once. Sampling then idles (one predictable branch per allocation) until [`activate`];
//! the `caxton` binary activates it when `[profiling] profile_types` names a heap type.
//!
//! The dump is jemalloc's in-use heap (`inuse_space`), gzipped pprof with addresses and
//! mappings: `go tool pprof <binary> heap.pb.gz` symbolizes it.

#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options, read before `main`: profiling compiled in but idle until
/// [`activate`], then one sampled allocation per 512 KiB on average (Go's and jemalloc's
/// default rate).
pub const MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";

/// Makes jemalloc the global allocator with [`MALLOC_CONF`]. Invoke once, in a binary.
#[cfg(feature = "jemalloc")]
#[macro_export]
macro_rules! jemalloc_global_allocator {
    () => {
        #[global_allocator]
        static ALLOC: $crate::heap::Jemalloc = $crate::heap::Jemalloc;

        // jemalloc reads the C string this pointer (the slice's first word) points to.
        #[unsafe(export_name = "malloc_conf")]
        pub static MALLOC_CONF: &[u8] = $crate::heap::MALLOC_CONF;
    };
}

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
    /// jemalloc refused to start sampling.
    #[error("setting jemalloc's prof.active: {0}")]
    Activate(String),
}

/// jemalloc's profiling control, when this process runs on jemalloc with `prof:true`.
#[cfg(feature = "jemalloc")]
fn prof_ctl() -> Result<&'static tokio::sync::Mutex<jemalloc_pprof::JemallocProfCtl>, HeapError> {
    jemalloc_pprof::PROF_CTL
        .as_deref()
        .ok_or(HeapError::NotActive(
            "jemalloc is not the global allocator or `malloc_conf` lacks `prof:true`",
        ))
}

/// Starts sampling allocations (`prof.active = true`): needs jemalloc as the global allocator
/// with `prof:true` in `malloc_conf`.
#[cfg(feature = "jemalloc")]
pub async fn activate() -> Result<(), HeapError> {
    let mut ctl = prof_ctl()?.lock().await;
    if ctl.activated() {
        return Ok(());
    }
    ctl.activate()
        .map_err(|e| HeapError::Activate(e.to_string()))
}

/// Starts sampling allocations: this build has no jemalloc.
#[cfg(not(feature = "jemalloc"))]
pub async fn activate() -> Result<(), HeapError> {
    Err(HeapError::NotCompiled)
}

/// The current in-use heap as a gzipped pprof protobuf.
#[cfg(feature = "jemalloc")]
pub async fn dump_heap() -> Result<Vec<u8>, HeapError> {
    let mut ctl = prof_ctl()?.lock().await;
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
