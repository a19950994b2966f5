//! The runtime a run starts for itself when no `--target` is given: the real
//! `caxton_runtime::start`, on free loopback ports, stopped when the run ends. It is
//! started as `caxton serve` starts it, so `--runtime-config`'s `[observability]` (OTLP
//! traces, logs, metrics; the log lines) applies, and its telemetry is flushed at the end.
//!
//! It runs on a Tokio runtime of its own, on threads named as the runtime's
//! (`caxton_runtime::threads`), and the process's profiler is told to keep only those
//! threads: the flamegraph of a run is the target's alone, and the generator's CPU time is
//! measured apart from the target's.

use std::path::Path;

#[cfg(feature = "embedded")]
use caxton_runtime::RunningServer;
#[cfg(feature = "embedded")]
use caxton_runtime::config::{Config, LogOutput};
use thiserror::Error;

/// Lowest sampling rate of the embedded runtime's profiler, Hz: the highest the profiler
/// accepts, so that the main job's profile of a nearly idle target holds enough samples.
/// `ab`'s runtimes get it too.
pub(crate) const EMBEDDED_PROFILE_HZ: u32 = 1000;

/// Lowest sample budget of the embedded runtime's profiler, samples a second: a busy target
/// keeps about the full rate on one core. A run profiles its target to explain its tail, and
/// the profile of the slow requests (a few per cent of the CPU) needs thousands of samples
/// for its diff; the runtime's own default keeps a production server's cost down instead.
/// `ab`'s runtimes get it too.
pub(crate) const EMBEDDED_SAMPLE_BUDGET: u32 = 1000;

#[derive(Debug, Error)]
pub enum EmbeddedError {
    #[error("embedded runtime configuration: {0}")]
    Config(String),
    #[error("cannot start the embedded runtime: {0}")]
    Start(String),
    #[error("no --target given and this caxton-bench was built without the `embedded` feature")]
    NotBuiltIn,
}

#[cfg(feature = "embedded")]
pub(crate) struct Embedded {
    server: RunningServer,
    runtime: tokio::runtime::Runtime,
}

#[cfg(not(feature = "embedded"))]
pub(crate) struct Embedded;

#[cfg(not(feature = "embedded"))]
impl Embedded {
    pub(crate) async fn start(
        _config_path: Option<&Path>,
        _profiling: bool,
    ) -> Result<Embedded, EmbeddedError> {
        Err(EmbeddedError::NotBuiltIn)
    }
    pub(crate) fn pprof_url(&self) -> Option<String> {
        None
    }
    pub(crate) fn base_url(&self) -> String {
        String::new()
    }
    pub(crate) fn metrics_url(&self) -> String {
        String::new()
    }
    pub(crate) async fn stop(self) {}
}

#[cfg(feature = "embedded")]
impl Embedded {
    /// Starts the runtime with `config_path` (or the defaults), its API and metrics
    /// listeners moved to free loopback ports whatever the file says: a bench run must not
    /// collide with a runtime already serving on 8080/9090.
    /// Its log lines never go to stdout, which carries the run's own output: `stdout` in the
    /// file means stderr. Without a file it logs its warnings only.
    /// `profiling` turns on the pprof endpoints (on a free loopback port) for a flamegraph.
    pub(crate) async fn start(
        config_path: Option<&Path>,
        profiling: bool,
    ) -> Result<Embedded, EmbeddedError> {
        let mut config = match config_path {
            Some(path) => Config::load(path).map_err(|e| EmbeddedError::Config(e.to_string()))?,
            None => {
                let mut c = Config::default();
                c.server.data_dir = std::env::temp_dir();
                // A load run's agents are its own: none restored from, or left for, another.
                c.server.persist_agents = false;
                c.observability.logging.level = "warn".to_owned();
                c
            }
        };
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.api_address = loopback;
        config.server.metrics_address = loopback;
        if config.observability.logging.output == LogOutput::Stdout {
            config.observability.logging.output = LogOutput::Stderr;
        }
        if profiling {
            config.profiling.enabled = true;
            config.profiling.server_address = loopback;
            // A light load (the main job's target is nearly idle) leaves too few samples at
            // the runtime's default 100 Hz; a higher rate configured in --runtime-config stays.
            config.profiling.sample_rate = config.profiling.sample_rate.max(EMBEDDED_PROFILE_HZ);
            // 0 (never lowered) stays.
            if config.profiling.sample_budget != 0 {
                config.profiling.sample_budget =
                    config.profiling.sample_budget.max(EMBEDDED_SAMPLE_BUDGET);
            }
        }
        caxton_profiles::threads::set_target_threads(caxton_runtime::threads::is_runtime_thread);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(caxton_runtime::threads::WORKER)
            .build()
            .map_err(|e| EmbeddedError::Start(format!("its Tokio runtime: {e}")))?;
        let server = runtime
            .spawn(caxton_runtime::start(config))
            .await
            .map_err(|e| EmbeddedError::Start(e.to_string()))?
            .map_err(|e| EmbeddedError::Start(e.to_string()))?;
        Ok(Embedded { server, runtime })
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.server.api_addr())
    }

    pub(crate) fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.server.metrics_addr())
    }

    pub(crate) fn pprof_url(&self) -> Option<String> {
        self.server.pprof_addr().map(|a| format!("http://{a}"))
    }

    pub(crate) async fn stop(self) {
        let Embedded { server, runtime } = self;
        let _ = runtime.spawn(server.shutdown()).await;
        // Dropping a runtime blocks, which an async caller must not do.
        runtime.shutdown_background();
    }
}
