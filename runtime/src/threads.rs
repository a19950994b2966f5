//! The names of the runtime's own threads.
//!
//! A process that embeds the runtime (`caxton-bench` without `--target`) tells its profiler
//! which threads are the runtime's with [`is_runtime_thread`], so the runtime's flamegraph
//! holds no frame of the embedding program. An embedded runtime runs on its own Tokio
//! runtime of [`WORKER`] threads, and every thread the runtime starts itself is named with
//! [`PREFIX`]; the OpenTelemetry SDK names its export threads itself.

/// Prefix of every thread the runtime starts (Linux keeps 15 bytes of a thread's name).
pub const PREFIX: &str = "caxton-rt";

/// The name of the runtime's Tokio worker and blocking threads.
pub const WORKER: &str = "caxton-rt";

/// The execution pool's threads (`caxton-rt-exec-N`; Linux keeps the first 15 bytes).
pub const EXECUTOR: &str = "caxton-rt-exec";

/// The wasmtime epoch ticker.
pub const EPOCH_TICKER: &str = "caxton-rt-epoch";

/// The OpenTelemetry SDK's batch export threads ("OpenTelemetry.Traces.BatchProcessor", ...).
const OTEL_PREFIX: &str = "OpenTelemetry";

/// Whether a thread of this name does the runtime's work.
pub fn is_runtime_thread(name: &str) -> bool {
    name.starts_with(PREFIX) || name.starts_with(OTEL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads_are_told_from_an_embedding_generator() {
        assert!(is_runtime_thread(WORKER));
        assert!(is_runtime_thread(EPOCH_TICKER));
        assert!(is_runtime_thread(EXECUTOR));
        assert!(is_runtime_thread("OpenTelemetry.T"));
        assert!(!is_runtime_thread("caxton-bench"));
        assert!(!is_runtime_thread("tokio-runtime-w"));
    }
}
