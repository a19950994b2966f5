//! OTLP export of the three signals, set up from `[observability]`.
//!
//! - **Traces** (`enable_tracing`): one tracer, parent-based trace-id-ratio sampling at
//!   `trace_sample_rate`, batch export. The runtime's own spans are built with it directly
//!   ([`Tracing`], `trace_context.rs`); `tracing` spans reach it through
//!   `tracing-opentelemetry` (`logging.rs`).
//! - **Logs** (`enable_logging`): a logger provider for the `opentelemetry-appender-tracing`
//!   bridge that `logging.rs` installs, batch export.
//! - **Metrics** (`enable_metrics`, and only when tracing or logging already talk to a
//!   collector, so a default config without a collector stays quiet): the Prometheus registry
//!   mirrored as OTLP instruments every `metrics_export_interval` (`otlp_metrics.rs`).
//!
//! Protocol is [`ObservabilityConfig::effective_otlp_protocol`]: gRPC sends to `otlp_endpoint`
//! as is; http/protobuf appends the signal path (`/v1/traces`, `/v1/metrics`, `/v1/logs`) the
//! way `OTEL_EXPORTER_OTLP_ENDPOINT` is defined. `otlp_timeout` bounds one export;
//! `otlp_headers` go on every export request. Header *values* are secrets (API keys): they are
//! marked sensitive and never appear in a log line, an error or a `Debug` output.
//!
//! **A slow or dead collector never slows the API.** Spans and log records leave the request
//! path through a bounded queue ([`QUEUE_CAPACITY`]) that a background thread drains; when it
//! is full the record is dropped, not waited for. Drops are counted
//! (`caxton_telemetry_dropped_total{signal,reason}`) and a warning is logged at most once per
//! `metrics_export_interval`. What is counted, exactly:
//! - `reason="queue_full"`: spans/log records refused because [`QUEUE_CAPACITY`] records were
//!   already waiting or being exported. The SDK's batch processors only log the first such drop
//!   and keep their count private, so admission is done here, in front of them, with a limit
//!   equal to their own queue size: their queue can then never be the one that overflows.
//! - `reason="export_failed"`: records in a batch whose export returned an error after the
//!   exporter's own retries (collector down, timeout, rejected). For metrics the unit is one
//!   failed export of the whole registry; values are cumulative, so the next successful export
//!   carries them again.
//!
//! Records still queued when the process is killed without [`Telemetry::shutdown`] are not
//! counted: nothing runs to count them.
//!
//! What is queued right now ([`queued`], `caxton_telemetry_queued{signal}`) is the backlog
//! the admission limit is checked against: it climbs toward [`QUEUE_CAPACITY`] before any
//! `queue_full` drop, and returns to 0 once an export has taken everything.
//!
//! The parts of tracing and logging around the pipelines live below: `logging` (the log
//! subscriber), `trace_context` (the runtime's spans, W3C context in headers and FIPA
//! metadata), `traceparent` (its codec), `sampling` (head sampling at the edge),
//! `otlp_metrics` (the registry mirrored into OTLP), `log_throttle` (rate-limited warnings).

pub(crate) mod log_throttle;
pub(crate) mod logging;
pub(crate) mod otlp_metrics;
pub(crate) mod sampling;
pub mod trace_context;
pub(crate) mod traceparent;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder as LogBatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter,
    LogProcessor, SdkLogRecord, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use thiserror::Error;

use crate::config::{ObservabilityConfig, OtlpProtocol};

/// Spans (and, separately, log records) that may wait for export at once. Equal to the SDK's
/// default batch queue, so telemetry memory is bounded by this many spans and records.
pub(crate) const QUEUE_CAPACITY: usize = 2048;

const TRACER_NAME: &str = "caxton-runtime";

#[derive(Debug, Error)]
pub enum TelemetryError {
    /// Names the header, never its value (it is usually a credential).
    #[error("observability.otlp_headers: header `{name}` is not a valid HTTP header{what}")]
    Header { name: String, what: &'static str },
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {detail}")]
    Exporter {
        signal: &'static str,
        endpoint: String,
        detail: String,
    },
}

/// The installed OTLP pipelines. Keep it alive while serving; [`Telemetry::shutdown`] flushes
/// what is queued (bounded by `otlp_timeout`) before the process exits.
pub(crate) struct Telemetry {
    tracing: Tracing,
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.tracer_provider.is_some())
            .field("logs", &self.logger_provider.is_some())
            .field("metrics", &self.meter_provider.is_some())
            .finish()
    }
}

/// A server's trace pipeline as its hot path sees it: the tracer the runtime's own spans are
/// built with and the edge's sample rate, or nothing when tracing is off (then no span is
/// built and no trace context propagated). Cloning it is a reference count.
///
/// It lives in the server's own state (the `Runtime`, the HTTP trace layer), not in a
/// process-wide slot: several servers in one process (the tests, an embedding program) each
/// export to their own collector, and one server's shutdown leaves the others' tracing alone.
#[derive(Clone, Debug, Default)]
pub struct Tracing(Option<Arc<TraceHandle>>);

#[derive(Debug)]
struct TraceHandle {
    tracer: opentelemetry_sdk::trace::Tracer,
    rate: f64,
}

impl Tracing {
    /// Tracing off.
    pub fn off() -> Self {
        Self(None)
    }

    /// Whether spans are built at all. Read once per request/message on the hot path.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The runtime's tracer, when tracing is on.
    #[inline]
    pub(crate) fn tracer(&self) -> Option<&opentelemetry_sdk::trace::Tracer> {
        self.0.as_ref().map(|h| &h.tracer)
    }

    /// The configured `trace_sample_rate` (0 when tracing is off).
    pub(crate) fn sample_rate(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |h| h.rate)
    }
}

impl Telemetry {
    /// No OTLP export at all (every signal off).
    pub(crate) fn disabled() -> Self {
        Self {
            tracing: Tracing::off(),
            tracer_provider: None,
            logger_provider: None,
            meter_provider: None,
        }
    }

    /// The trace pipeline for the server's own spans.
    pub(crate) fn tracing(&self) -> Tracing {
        self.tracing.clone()
    }

    /// The tracer for `tracing_opentelemetry::layer().with_tracer(..)`, when tracing is on.
    pub(crate) fn tracer(&self) -> Option<opentelemetry_sdk::trace::Tracer> {
        self.tracer_provider
            .as_ref()
            .map(|p| p.tracer_with_scope(scope()))
    }

    /// The logger provider for the OTLP log bridge, when `enable_logging` is on.
    pub(crate) fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.logger_provider.as_ref()
    }

    /// The meter provider the Prometheus registry is mirrored into, when metrics go over OTLP.
    pub(crate) fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// Exports what is queued and stops the pipelines. Blocking (the SDK's processors run on
    /// their own threads): async callers run it on a blocking thread.
    pub(crate) fn shutdown(self) {
        // Errors here mean "could not flush": the drop counter already saw those records.
        if let Some(p) = self.tracer_provider {
            let _ = p.shutdown();
        }
        if let Some(p) = self.meter_provider {
            let _ = p.shutdown();
        }
        if let Some(p) = self.logger_provider {
            let _ = p.shutdown();
        }
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(TRACER_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// `service.name`, `service.version`, `deployment.environment`.
pub(crate) fn resource(cfg: &ObservabilityConfig) -> Resource {
    Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", cfg.service_version.clone()),
            KeyValue::new("deployment.environment", cfg.deployment_environment.clone()),
        ])
        .build()
}

/// Builds the enabled pipelines. Must run inside a tokio runtime (the gRPC channel spawns its
/// connection task on it); exports then run on the SDK's own threads.
pub(crate) fn init(cfg: &ObservabilityConfig) -> Result<Telemetry, TelemetryError> {
    let headers = validated_headers(cfg)?;
    set_warn_interval(cfg.metrics_export_interval);
    let resource = resource(cfg);
    let mut telemetry = Telemetry::disabled();
    if cfg.enable_tracing {
        let exporter = CountingSpanExporter {
            inner: span_exporter(cfg, &headers)?,
        };
        let processor = CountingSpanProcessor {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(QUEUE_CAPACITY)
                        .build(),
                )
                .build(),
        };
        let provider = SdkTracerProvider::builder()
            .with_sampler(crate::telemetry::sampling::sampler(cfg.trace_sample_rate))
            .with_id_generator(crate::telemetry::sampling::EdgeIdGenerator::default())
            .with_resource(resource.clone())
            .with_span_processor(processor)
            .build();
        // The HTTP edge decides first with the same sampler at the same rate (sampling.rs):
        // unsampled requests then build no spans at all.
        telemetry.tracing = Tracing(Some(Arc::new(TraceHandle {
            tracer: provider.tracer_with_scope(scope()),
            rate: cfg.trace_sample_rate,
        })));
        telemetry.tracer_provider = Some(provider);
    }
    if cfg.enable_logging {
        let exporter = CountingLogExporter {
            inner: log_exporter(cfg, &headers)?,
        };
        let processor = CountingLogProcessor {
            inner: BatchLogProcessor::builder(exporter)
                .with_batch_config(
                    LogBatchConfigBuilder::default()
                        .with_max_queue_size(QUEUE_CAPACITY)
                        .build(),
                )
                .build(),
        };
        telemetry.logger_provider = Some(
            SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(processor)
                .build(),
        );
    }
    if cfg.enable_metrics && (cfg.enable_tracing || cfg.enable_logging) {
        let exporter = CountingMetricExporter {
            inner: metric_exporter(cfg, &headers)?,
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(cfg.metrics_export_interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        telemetry.meter_provider = Some(provider);
    }
    Ok(telemetry)
}

/// The headers as validated name/value pairs, values marked sensitive.
fn validated_headers(
    cfg: &ObservabilityConfig,
) -> Result<Vec<(HeaderName, HeaderValue)>, TelemetryError> {
    cfg.otlp_headers
        .iter()
        .map(|(name, value)| {
            let bad = |what| TelemetryError::Header {
                name: name.clone(),
                what,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(" name"))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| bad(": its value has characters a header cannot carry"))?;
            v.set_sensitive(true);
            Ok((n, v))
        })
        .collect()
}

fn http_headers(headers: &[(HeaderName, HeaderValue)]) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn grpc_metadata(
    headers: &[(HeaderName, HeaderValue)],
) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
    let map: axum::http::HeaderMap = headers.iter().cloned().collect();
    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map)
}

fn signal_url(endpoint: &str, path: &str) -> String {
    format!("{}{path}", endpoint.trim_end_matches('/'))
}

fn build_error(
    signal: &'static str,
    cfg: &ObservabilityConfig,
) -> impl FnOnce(opentelemetry_otlp::ExporterBuildError) -> TelemetryError {
    let endpoint = cfg.otlp_endpoint.clone();
    move |e| TelemetryError::Exporter {
        signal,
        endpoint,
        detail: e.to_string(),
    }
}

/// The gRPC half every signal's exporter shares: endpoint as given, timeout, headers as
/// metadata.
fn over_grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    cfg: &ObservabilityConfig,
    headers: &[(HeaderName, HeaderValue)],
) -> B {
    builder
        .with_endpoint(cfg.otlp_endpoint.clone())
        .with_timeout(cfg.otlp_timeout)
        .with_metadata(grpc_metadata(headers))
}

/// The HTTP/protobuf half: the signal's path appended (the SDK uses a programmatic endpoint
/// as given), timeout, headers.
fn over_http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    cfg: &ObservabilityConfig,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> B {
    builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(signal_url(&cfg.otlp_endpoint, path))
        .with_timeout(cfg.otlp_timeout)
        .with_headers(http_headers(headers))
}

fn span_exporter(
    cfg: &ObservabilityConfig,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match cfg.effective_otlp_protocol() {
        OtlpProtocol::Grpc => over_grpc(builder.with_tonic(), cfg, headers).build(),
        OtlpProtocol::HttpProtobuf => {
            over_http(builder.with_http(), cfg, "/v1/traces", headers).build()
        }
    }
    .map_err(build_error("trace", cfg))
}

fn log_exporter(
    cfg: &ObservabilityConfig,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
    let builder = opentelemetry_otlp::LogExporter::builder();
    match cfg.effective_otlp_protocol() {
        OtlpProtocol::Grpc => over_grpc(builder.with_tonic(), cfg, headers).build(),
        OtlpProtocol::HttpProtobuf => {
            over_http(builder.with_http(), cfg, "/v1/logs", headers).build()
        }
    }
    .map_err(build_error("log", cfg))
}

fn metric_exporter(
    cfg: &ObservabilityConfig,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let builder = opentelemetry_otlp::MetricExporter::builder();
    match cfg.effective_otlp_protocol() {
        OtlpProtocol::Grpc => over_grpc(builder.with_tonic(), cfg, headers).build(),
        OtlpProtocol::HttpProtobuf => {
            over_http(builder.with_http(), cfg, "/v1/metrics", headers).build()
        }
    }
    .map_err(build_error("metric", cfg))
}

// ---- drop accounting ----

/// A telemetry signal, as the `signal` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Logs,
    Metrics,
}

/// Why data was dropped, as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    QueueFull,
    ExportFailed,
}

impl Signal {
    pub(crate) const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 2] = [DropReason::QueueFull, DropReason::ExportFailed];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailed => "export_failed",
        }
    }
}

/// Process-wide: every server of the process counts into the same totals, which each
/// server's `/metrics` reports (the exporters' callbacks know no server).
static DROPPED: [[AtomicU64; 2]; 3] = [
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
];
static LAST_WARN_MS: AtomicU64 = AtomicU64::new(0);
static WARN_INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);

fn set_warn_interval(interval: Duration) {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    WARN_INTERVAL_MS.store(ms.max(1), Ordering::Relaxed);
}

/// Spans and log records admitted and not yet returned by an export, per queued signal
/// (traces, logs; metrics are not queued). Process-wide like [`DROPPED`].
static QUEUED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// The signals that go through a bounded export queue.
pub(crate) const QUEUED_SIGNALS: [Signal; 2] = [Signal::Traces, Signal::Logs];

/// Records of `signal` waiting for or inside an export (read by `/metrics`); 0 for metrics.
pub(crate) fn queued(signal: Signal) -> u64 {
    QUEUED
        .get(signal as usize)
        .map_or(0, |q| q.load(Ordering::Acquire) as u64)
}

/// Takes one record of `signal` into the queue, or counts it dropped when [`QUEUE_CAPACITY`]
/// are already there.
fn admit(signal: Signal) -> bool {
    let q = &QUEUED[signal as usize];
    if q.fetch_add(1, Ordering::AcqRel) >= QUEUE_CAPACITY {
        q.fetch_sub(1, Ordering::AcqRel);
        record_drop(signal, DropReason::QueueFull, 1);
        return false;
    }
    true
}

/// `n` records of `signal` left the queue through an export that returned `result`.
fn release(signal: Signal, n: usize, result: &OTelSdkResult) {
    QUEUED[signal as usize].fetch_sub(n, Ordering::AcqRel);
    if result.is_err() {
        record_drop(signal, DropReason::ExportFailed, n as u64);
    }
}

/// Cumulative drops since the process started (read by `/metrics`).
pub(crate) fn dropped(signal: Signal, reason: DropReason) -> u64 {
    DROPPED[signal as usize][reason as usize].load(Ordering::Relaxed)
}

/// Brings `caxton_telemetry_dropped_total` up to the pipelines' counts, which only grow, and
/// sets `caxton_telemetry_queued` to their backlog. Every signal/reason pair is present (0
/// until something drops). Called at scrape and export time.
pub(crate) fn sync_metrics(metrics: &crate::metrics::Metrics) {
    for signal in QUEUED_SIGNALS {
        metrics.set_telemetry_queued(signal.as_str(), queued(signal));
    }
    for signal in Signal::ALL {
        for reason in DropReason::ALL {
            metrics.telemetry_dropped_to(signal.as_str(), reason.as_str(), dropped(signal, reason));
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn record_drop(signal: Signal, reason: DropReason, n: u64) {
    if n == 0 {
        return;
    }
    let total = DROPPED[signal as usize][reason as usize].fetch_add(n, Ordering::Relaxed) + n;
    let now = now_ms();
    let last = LAST_WARN_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= WARN_INTERVAL_MS.load(Ordering::Relaxed)
        && LAST_WARN_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            target: "caxton::telemetry",
            signal = signal.as_str(),
            reason = reason.as_str(),
            dropped_total = total,
            "telemetry data dropped: the OTLP collector is unreachable or too slow \
             (see caxton_telemetry_dropped_total)"
        );
    }
}

/// Admits a span only while fewer than [`QUEUE_CAPACITY`] are waiting or being exported.
#[derive(Debug)]
struct CountingSpanProcessor {
    inner: BatchSpanProcessor,
}

impl SpanProcessor for CountingSpanProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if admit(Signal::Traces) {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingSpanExporter {
    inner: opentelemetry_otlp::SpanExporter,
}

impl SpanExporter for CountingSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        release(Signal::Traces, n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingLogProcessor {
    inner: BatchLogProcessor,
}

impl LogProcessor for CountingLogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        if admit(Signal::Logs) {
            self.inner.emit(data, instrumentation);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingLogExporter {
    inner: opentelemetry_otlp::LogExporter,
}

impl LogExporter for CountingLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        release(Signal::Logs, n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

struct CountingMetricExporter {
    inner: opentelemetry_otlp::MetricExporter,
}

impl PushMetricExporter for CountingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if result.is_err() {
            record_drop(Signal::Metrics, DropReason::ExportFailed, 1);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_header_error_names_the_header_but_never_its_value() {
        let mut cfg = ObservabilityConfig::default();
        cfg.otlp_headers
            .insert("api-key".into(), "s3cret\nvalue".into());
        let err = validated_headers(&cfg).unwrap_err().to_string();
        assert!(err.contains("`api-key`"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        cfg.otlp_headers.clear();
        cfg.otlp_headers.insert("bad name".into(), "v".into());
        assert!(validated_headers(&cfg).is_err());
    }

    #[test]
    fn header_values_are_sensitive_and_redacted_in_debug() {
        let mut cfg = ObservabilityConfig::default();
        cfg.otlp_headers.insert("api-key".into(), "s3cret".into());
        let headers = validated_headers(&cfg).unwrap();
        assert!(headers[0].1.is_sensitive());
        assert!(!format!("{headers:?}").contains("s3cret"));
    }

    #[test]
    fn http_signal_urls_append_the_otlp_paths() {
        assert_eq!(
            signal_url("http://c:4318", "/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:4318/", "/v1/logs"),
            "http://c:4318/v1/logs"
        );
    }

    #[test]
    fn resource_carries_service_attributes() {
        let cfg = ObservabilityConfig {
            service_name: "svc".into(),
            service_version: "9.9.9".into(),
            deployment_environment: "staging".into(),
            ..ObservabilityConfig::default()
        };
        let r = resource(&cfg);
        let get = |k: &'static str| r.get(&opentelemetry::Key::from_static_str(k));
        assert_eq!(get("service.name").unwrap().as_str(), "svc");
        assert_eq!(get("service.version").unwrap().as_str(), "9.9.9");
        assert_eq!(get("deployment.environment").unwrap().as_str(), "staging");
    }
}
