//! [`Profiler`]: the settings, counters and entry points the runtime holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::capture::{self, CaptureError, CpuProfile};
use crate::pyroscope::{IngestTarget, PushError};
use crate::settings::{ProfileType, ProfilingSettings, SettingsError};
use crate::stats::{Counters, ProfilerStats};

/// Profiles waiting for their push; beyond this the newest is dropped (and counted) rather
/// than letting a slow Pyroscope grow memory.
const PUSH_QUEUE: usize = 2;

/// Handle on the profiler: cheap to clone, shared by the router and continuous mode.
#[derive(Debug, Clone)]
pub struct Profiler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ProfilingSettings,
    counters: Counters,
}

/// Why continuous mode did not start.
#[derive(Debug, thiserror::Error)]
pub enum ContinuousError {
    /// `[profiling] endpoint` is absent.
    #[error("continuous profiling needs `profiling.endpoint` (a Pyroscope URL)")]
    NoEndpoint,
    /// `cpu` is not in `[profiling] profile_types`.
    #[error(
        "continuous profiling pushes CPU profiles but `profiling.profile_types` has no \"cpu\""
    )]
    CpuNotEnabled,
    /// The endpoint is unusable.
    #[error(transparent)]
    Endpoint(#[from] PushError),
    /// The HTTP client could not be built.
    #[error("building the Pyroscope HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl Profiler {
    /// Validates `settings` and creates the profiler. Does not start sampling.
    pub fn new(settings: ProfilingSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                counters: Counters::default(),
            }),
        })
    }

    /// Loads the symbol tables CPU captures name frames with, on a thread of its own, when
    /// `profile_types` has `cpu`: the first capture then does not pay for it inside the
    /// window it measures. Once per process; later calls do nothing.
    pub fn load_symbols(&self) {
        if self.inner.settings.has(ProfileType::Cpu) {
            crate::perf_sampler::load_symbols();
        }
    }

    /// The settings this profiler runs with.
    pub fn settings(&self) -> &ProfilingSettings {
        &self.inner.settings
    }

    /// Counters since creation (export them as metrics).
    pub fn stats(&self) -> ProfilerStats {
        self.inner.counters.snapshot()
    }

    /// Notified on every counter change: await a condition instead of polling.
    pub fn watch_stats(&self) -> watch::Receiver<ProfilerStats> {
        self.inner.counters.subscribe()
    }

    /// An on-demand capture at the configured `sample_rate`, counted in [`Profiler::stats`].
    pub async fn capture_cpu(&self, duration: Duration) -> Result<CpuProfile, CaptureError> {
        let rate = self.inner.settings.rate();
        capture::check(duration, rate.full_hz)?;
        let profile = capture::capture(duration, rate, self.inner.settings.sampler, true).await?;
        self.record(&profile);
        Ok(profile)
    }

    fn record(&self, profile: &CpuProfile) {
        self.inner.counters.record_capture(profile.samples);
    }

    /// Binds `server_address` (loopback unless configured otherwise).
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.inner.settings.server_address).await
    }

    /// Serves [`Profiler::router`] on `listener` until `shutdown` completes, warning first
    /// when the listener is not loopback (see [`warn_if_exposed`]).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        warn_if_exposed(listener.local_addr()?);
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Starts continuous mode: one CPU profile per `push_interval`, pushed to Pyroscope.
    /// Must be called inside a Tokio runtime. Failed pushes are dropped and counted; nothing
    /// here can stop the caller from serving.
    pub fn start_continuous(&self) -> Result<ContinuousProfiling, ContinuousError> {
        let settings = &self.inner.settings;
        let endpoint = settings
            .endpoint
            .as_deref()
            .ok_or(ContinuousError::NoEndpoint)?;
        if !settings.has(ProfileType::Cpu) {
            return Err(ContinuousError::CpuNotEnabled);
        }
        let target = IngestTarget::new(endpoint, &settings.application_name, &settings.labels)?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(ContinuousError::Client)?;
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        let sampler = tokio::spawn(sample_loop(self.clone(), tx));
        let pusher = tokio::spawn(push_loop(self.clone(), target, client, rx));
        tracing::info!(
            endpoint,
            name = %settings.application_name,
            hz = settings.sample_rate,
            interval = ?settings.push_interval,
            "continuous CPU profiling started"
        );
        Ok(ContinuousProfiling { sampler, pusher })
    }
}

/// Running continuous mode; stop it with [`ContinuousProfiling::shutdown`].
#[derive(Debug)]
pub struct ContinuousProfiling {
    sampler: JoinHandle<()>,
    pusher: JoinHandle<()>,
}

impl ContinuousProfiling {
    /// Stops sampling (the current window is discarded) and abandons queued pushes.
    pub async fn shutdown(self) {
        self.sampler.abort();
        self.pusher.abort();
        let _ = self.sampler.await;
        let _ = self.pusher.await;
    }
}

async fn sample_loop(profiler: Profiler, tx: mpsc::Sender<CpuProfile>) {
    let rate = profiler.inner.settings.rate();
    let window = profiler.inner.settings.push_interval;
    loop {
        match capture::capture(window, rate, profiler.inner.settings.sampler, false).await {
            Ok(profile) => {
                profiler.record(&profile);
                if tx.try_send(profile).is_err() {
                    tracing::warn!("Pyroscope pushes are backed up; CPU profile dropped");
                    profiler.inner.counters.record_dropped();
                }
            }
            Err(e) => {
                // e.g. another pprof-rs user in the process: skip a window, don't spin.
                tracing::warn!(error = %e, "continuous CPU capture failed");
                tokio::time::sleep(window).await;
            }
        }
    }
}

async fn push_loop(
    profiler: Profiler,
    target: IngestTarget,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<CpuProfile>,
) {
    while let Some(profile) = rx.recv().await {
        match target.push(&client, &profile).await {
            Ok(()) => profiler.inner.counters.record_pushed(),
            Err(e) => {
                tracing::warn!(error = %e, "CPU profile dropped: Pyroscope push failed");
                profiler.inner.counters.record_dropped();
            }
        }
    }
}

/// Logs a warning when `addr` is reachable from other hosts: profiles expose function names,
/// file paths and load of the process. Call it when mounting [`Profiler::router`] on a
/// listener of your own; [`Profiler::serve`] does.
pub fn warn_if_exposed(addr: std::net::SocketAddr) -> bool {
    let exposed = !addr.ip().is_loopback();
    if exposed {
        tracing::warn!(
            %addr,
            "pprof endpoints listen on a non-loopback address: profiles expose function names, \
             file paths and load of this process; restrict access to the port"
        );
    }
    exposed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_loopback_addresses_are_exposed() {
        assert!(warn_if_exposed("0.0.0.0:6060".parse().unwrap()));
        assert!(!warn_if_exposed("127.0.0.1:6060".parse().unwrap()));
        assert!(!warn_if_exposed("[::1]:6060".parse().unwrap()));
    }

    #[tokio::test]
    async fn continuous_mode_needs_an_endpoint_and_cpu() {
        let no_endpoint = Profiler::new(ProfilingSettings::default()).unwrap();
        assert!(matches!(
            no_endpoint.start_continuous(),
            Err(ContinuousError::NoEndpoint)
        ));
        let no_cpu = Profiler::new(ProfilingSettings {
            endpoint: Some("http://127.0.0.1:4040".into()),
            profile_types: vec![ProfileType::InuseSpace],
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            no_cpu.start_continuous(),
            Err(ContinuousError::CpuNotEnabled)
        ));
    }
}
