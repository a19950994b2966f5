//! Starting and stopping a runtime: its telemetry, the API listener, the metrics listener,
//! graceful shutdown. `caxton serve`, `caxton-bench`'s embedded mode and the tests all go
//! through [`start`], so a configuration's `[observability]` means the same everywhere.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::IntGauge;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::api::{self, ApiState};
use crate::http::connections;
use crate::metrics::{Metrics, MetricsError};
use crate::profiling::ProfilingService;
use crate::runtime::routing::ShutdownReport;
use crate::runtime::{Runtime, RuntimeError};
use crate::system::SystemSampler;
use crate::telemetry::logging::LoggingError;
use crate::telemetry::{Telemetry, TelemetryError};

/// How long shutdown waits for open connections (WebSockets never end on their own).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("metrics set-up failed: {0}")]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("runtime set-up task failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Profiling(#[from] crate::profiling::ProfilingError),
    #[error(transparent)]
    Access(#[from] crate::http::access::AccessError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Logging(#[from] LoggingError),
}

/// A started runtime, holding its telemetry pipelines. Dropping it without `shutdown` leaves
/// the listeners running until the tokio runtime ends, and what telemetry had queued is not
/// flushed.
pub struct RunningServer {
    api_addr: SocketAddr,
    metrics_addr: SocketAddr,
    runtime: Arc<Runtime>,
    ready: Arc<AtomicBool>,
    /// Stops the API listener, first.
    stop_api: watch::Sender<bool>,
    /// Stops the rest (metrics, profiling, the OTLP mirror), last.
    stop: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    profiling: Option<ProfilingService>,
    shutdown_timeout: Duration,
    telemetry: Telemetry,
}

impl RunningServer {
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Where the pprof endpoints listen, when `[profiling] enabled`.
    pub fn pprof_addr(&self) -> Option<SocketAddr> {
        self.profiling.as_ref().map(|p| p.addr)
    }

    /// Shuts down in the order that loses nothing silently: the API stops taking
    /// connections; queued messages execute for up to `[server] shutdown_timeout`; what is
    /// left is dropped, counted (`caxton_messages_dropped_total{reason="shutdown"}`) and
    /// logged, and waiting clients are answered; open requests finish (bounded by
    /// [`SHUTDOWN_GRACE`]); `/metrics` closes last, so a scrape during all of this works;
    /// then the telemetry pipelines export what they hold and stop.
    pub async fn shutdown(self) -> ShutdownReport {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop_api.send(true);
        let rt = self.runtime.clone();
        let timeout = self.shutdown_timeout;
        let report = tokio::task::spawn_blocking(move || rt.drain_for_shutdown(timeout))
            .await
            .unwrap_or(ShutdownReport {
                drained: false,
                dropped: 0,
                waiting_clients: 0,
            });
        let n = report.dropped;
        if n > 0 {
            tracing::warn!(
                dropped = n,
                drained = report.drained,
                waiting_clients = report.waiting_clients,
                "shutdown: {n} accepted messages were not executed"
            );
        } else {
            tracing::info!(
                dropped = 0,
                waiting_clients = report.waiting_clients,
                "shutdown: every accepted message was executed"
            );
        }
        bounded(self.api_task).await;
        let _ = self.stop.send(true);
        if let Some(p) = self.profiling {
            p.shutdown().await;
        }
        for task in self.tasks {
            bounded(task).await;
        }
        // Flushing blocks on the exporters' threads: keep it off the async workers.
        let telemetry = self.telemetry;
        if tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: flushing telemetry failed");
        }
        report
    }
}

/// Awaits `task` for up to [`SHUTDOWN_GRACE`], then aborts it.
async fn bounded(task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
        abort.abort();
    }
}

struct MetricsState {
    metrics: Arc<Metrics>,
    sampler: Mutex<SystemSampler>,
    profiler: Option<caxton_profiles::Profiler>,
}

/// System metrics are read from /proc at scrape time, so they are never staler than the
/// scrape and cost nothing between scrapes.
async fn serve_metrics(State(state): State<Arc<MetricsState>>) -> impl IntoResponse {
    let sample = state
        .sampler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sample();
    match sample {
        Ok(s) => state.metrics.set_system(&s),
        Err(e) => tracing::warn!(error = %e, "system metrics unavailable"),
    }
    crate::telemetry::sync_metrics(&state.metrics);
    if let Some(p) = &state.profiler {
        state.metrics.set_profiler(&p.stats());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode_text(),
    )
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, what, source })
}

fn spawn_serving(
    listener: TcpListener,
    app: Router,
    limits: connections::Limits,
    open: Option<IntGauge>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(connections::serve(listener, app, limits, open, stop))
}

/// Sets up the telemetry of `[observability]` (and, first in the process, the log
/// subscriber), builds the runtime (compiling the built-in agents) and starts both
/// listeners. Returns once both are bound, so the addresses are ready for clients. Must run
/// inside a tokio runtime, which the OTLP exporters then use until [`RunningServer::shutdown`].
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let api_token = crate::http::access::Token::from_config(&config.server)?;
    let telemetry = crate::telemetry::init(&config.observability)?;
    install_logging(&config, &telemetry)?;
    let metrics = Arc::new(Metrics::new(&config.observability.metrics)?);
    let setup_cfg = config.clone();
    let setup_metrics = metrics.clone();
    let tracing = telemetry.tracing();
    let runtime =
        tokio::task::spawn_blocking(move || Runtime::new(&setup_cfg, setup_metrics, tracing))
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))??;
    let runtime = Arc::new(runtime);

    let api_listener = bind(config.server.api_address, "api_address").await?;
    let metrics_listener = bind(config.server.metrics_address, "metrics_address").await?;
    let api_addr = local(&api_listener, config.server.api_address);
    let metrics_addr = local(&metrics_listener, config.server.metrics_address);

    let ready = Arc::new(AtomicBool::new(true));
    let state = ApiState {
        runtime: runtime.clone(),
        reply_timeout: config.server.reply_timeout,
        ready: ready.clone(),
        max_body_bytes: config.server.max_body_bytes,
        api_token,
    };
    let (stop, stop_rx) = watch::channel(false);
    let (stop_api, stop_api_rx) = watch::channel(false);
    let profiling = crate::profiling::start(&config.profiling, stop_rx.clone()).await?;
    let api_app = api::router(state);
    let metrics_app = Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(Arc::new(MetricsState {
            metrics: metrics.clone(),
            sampler: Mutex::new(SystemSampler::new(config.server.data_dir.clone())),
            profiler: profiling.as_ref().map(|p| p.profiler.clone()),
        }));
    let api_limits = api_connection_limits(&config);
    let metrics_limits = connections::Limits {
        max_connections: connections::METRICS_CONNECTIONS,
        probe_reserve: 0,
        ..api_limits
    };
    // The API stops first (its own signal); /metrics stays up through the drain.
    let api_task = spawn_serving(
        api_listener,
        api_app,
        api_limits,
        Some(metrics.http_active_connections().clone()),
        stop_api_rx,
    );
    let mut tasks = vec![spawn_serving(
        metrics_listener,
        metrics_app,
        metrics_limits,
        None,
        stop_rx.clone(),
    )];
    if let Some(provider) = telemetry.meter_provider() {
        let interval = config.observability.metrics_export_interval;
        let mirror =
            crate::telemetry::otlp_metrics::spawn(provider, metrics.clone(), interval, stop_rx);
        tasks.push(mirror);
    }
    tracing::info!(%api_addr, %metrics_addr, "caxton runtime serving");
    Ok(RunningServer {
        api_addr,
        metrics_addr,
        runtime,
        ready,
        stop_api,
        stop,
        api_task,
        tasks,
        profiling,
        shutdown_timeout: config.server.shutdown_timeout,
        telemetry,
    })
}

/// The log subscriber of `[observability.logging]`, installed by the first server of the
/// process. Why only the first: the subscriber is process-global and installs once, so a
/// later server (several in one test process, or a program that installed its own
/// subscriber) logs through what is there. Nothing else depends on it: each server's own
/// spans and OTLP export go through its `Tracing` and `Telemetry`, never the subscriber;
/// only `tracing` spans opened by embedding code reach the first server's tracer.
fn install_logging(config: &Config, telemetry: &Telemetry) -> Result<(), ServerError> {
    if tracing::dispatcher::has_been_set() {
        return Ok(());
    }
    match crate::telemetry::logging::init(&config.observability.logging, telemetry) {
        // Another server of this process installed it in the meantime.
        Ok(()) | Err(LoggingError::Init(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The API listener's bounds, its connection limit fitted under the open-files limit (and
/// said so in the log: a limit lower than configured explains waiting clients).
fn api_connection_limits(config: &Config) -> connections::Limits {
    let configured = config.server.max_connections;
    let open_files = crate::system::open_files_limit();
    let max_connections = connections::effective_max_connections(configured, open_files);
    if max_connections < configured {
        tracing::warn!(
            max_connections,
            configured,
            open_files_limit = open_files,
            "server.max_connections lowered to stay below the open-files limit (ulimit -n)"
        );
    }
    connections::Limits {
        header_read_timeout: config.server.header_read_timeout,
        body_read_timeout: config.server.body_read_timeout,
        idle_timeout: config.server.idle_timeout,
        probe_reserve: connections::PROBE_CONNECTIONS,
        max_connections,
    }
}

fn local(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}
