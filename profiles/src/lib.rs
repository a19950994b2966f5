//! CPU profiles of the Caxton runtime: perf_event or pprof-rs (signal) sampling, `/debug/pprof/*` HTTP endpoints,
//! continuous push to Pyroscope, and the capture client the load generator uses.
//!
//! Runtime integration: [`ProfilingSettings`] is the `[profiling]` table itself (the runtime's
//! config deserializes into it); create a [`Profiler`] from it,
//! serve [`Profiler::router`] on [`Profiler::bind`] (or merge it into another router), and call
//! [`Profiler::start_continuous`] when an endpoint is configured.

pub mod capture;
pub mod collect;
pub mod endpoints;
pub mod folded;
pub mod heap;
pub mod jit;
pub mod kallsyms;
pub(crate) mod perf_sampler;
pub mod profiler;
pub mod pyroscope;
pub mod rate;
pub mod request_tag;
mod sample_count;
pub mod settings;
pub mod stats;
pub mod threads;

pub use capture::{CaptureError, CpuProfile, SampleCount, capture_cpu, capture_in_progress};
pub use collect::{CollectError, Collected, collect};
pub use profiler::{ContinuousError, ContinuousProfiling, Profiler, warn_if_exposed};
pub use pyroscope::{IngestTarget, PushError};
pub use rate::Rate;
pub use settings::{ProfileType, ProfilingSettings, Sampler, SettingsError};
pub use stats::ProfilerStats;
