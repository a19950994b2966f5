//! `[profiling]` (the profiler's [`ProfilingSettings`]) in the runtime: the pprof endpoints on their own listener and, with an
//! `endpoint`, continuous push to Pyroscope. The profiling itself lives in `caxton-profiles`.

use std::net::SocketAddr;

use caxton_profiles::{
    ContinuousError, ContinuousProfiling, Profiler, ProfilingSettings, SettingsError,
};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum ProfilingError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot listen on profiling.server_address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("continuous profiling: {0}")]
    Continuous(#[from] ContinuousError),
}

/// The running profiler; `None` from `start` when `[profiling] enabled = false`.
pub(crate) struct ProfilingService {
    pub(crate) profiler: Profiler,
    pub addr: SocketAddr,
    continuous: Option<ContinuousProfiling>,
    server: JoinHandle<()>,
}

/// Starts the pprof server (warning when it is not loopback: profiles expose internals) and,
/// when an endpoint is configured, continuous push.
pub(crate) async fn start(
    cfg: &ProfilingSettings,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<ProfilingService>, ProfilingError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let profiler = Profiler::new(cfg.clone())?;
    profiler.load_symbols();
    if profiler.settings().wants_heap() {
        // Until now jemalloc only counted bytes; sampling starts here. Failing leaves CPU
        // profiles working, and `/debug/pprof/heap` answers 404 with this same reason.
        if let Err(e) = caxton_profiles::heap::activate().await {
            tracing::warn!(error = %e, "heap profiles unavailable");
        }
    }
    let listener = profiler
        .bind()
        .await
        .map_err(|source| ProfilingError::Bind {
            addr: cfg.server_address,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.server_address);
    let serving = profiler.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = serving.serve(listener, shutdown).await {
            tracing::error!(error = %e, "pprof server stopped");
        }
    });
    let continuous = match cfg.endpoint {
        Some(_) => Some(profiler.start_continuous()?),
        None => None,
    };
    tracing::info!(%addr, continuous = continuous.is_some(), "profiling enabled");
    Ok(Some(ProfilingService {
        profiler,
        addr,
        continuous,
        server,
    }))
}

impl ProfilingService {
    pub(crate) async fn shutdown(self) {
        if let Some(c) = self.continuous {
            c.shutdown().await;
        }
        // The server task ends with the shared stop signal; a capture in flight may hold it
        // for up to its duration, so do not wait on it.
        self.server.abort();
    }
}
