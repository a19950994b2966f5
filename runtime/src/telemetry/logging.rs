//! Log set-up from `[observability.logging]`, plus the OTLP trace and log layers of
//! the pipelines (`telemetry/mod.rs`).
//!
//! - `level` (or `RUST_LOG`, which overrides it) filters; the SDK's own diagnostics
//!   (`opentelemetry*` targets) are off unless `RUST_LOG` asks for them, because a dead collector
//!   would otherwise log an error per export: the pipelines log one warning per interval
//!   instead.
//! - `debug_sample_rate` / `trace_sample_rate` keep that fraction of DEBUG / TRACE *events*
//!   (independently per event; spans are never sampled here, sampling them is the tracer's job).
//!   The sampled stream is what both the log lines and the OTLP log export see.
//! - `format = "json"` writes one object per line with the configured key names
//!   (`level_key`, `message_key`, `trace_id_key`, `span_id_key`), `timestamp` in RFC 3339 UTC
//!   (microseconds), `target`, then the event's own fields. `format = "text"` writes
//!   `timestamp LEVEL target: message key=value ...` with the same trace keys.
//! - `include_trace_id` / `include_span_id` add the ids of the current span's OpenTelemetry
//!   context (present when tracing is on; the ids exist even for unsampled traces, so a log
//!   line can always be joined with the request's `x-trace-id`).
//! - With `enable_logging`, every kept event also goes to the OTLP log pipeline.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::trace::TraceContextExt;
use thiserror::Error;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogOutput, LoggingConfig};
use crate::telemetry::Telemetry;

/// Targets that never reach the OTLP layers: the exporters' own crates would otherwise feed
/// their diagnostics back into the pipeline they are reporting on.
const EXPORT_PATH_TARGETS: [&str; 7] = [
    "opentelemetry",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "tower",
];

#[derive(Debug, Error)]
pub enum LoggingError {
    #[error("cannot open log file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("logging already initialised: {0}")]
    Init(String),
    #[error("observability.logging.level: {0}")]
    Level(String),
}

/// Installs the global subscriber: log lines per `cfg`, and the OTLP trace/log layers that
/// `telemetry` holds. `RUST_LOG`, when set, overrides `level`.
pub(crate) fn init(cfg: &LoggingConfig, telemetry: &Telemetry) -> Result<(), LoggingError> {
    let writer = match &cfg.output {
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogOutput::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.display().to_string(),
                    source,
                })?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let directives = std::env::var("RUST_LOG").ok();
    subscriber(cfg, telemetry, writer, directives.as_deref())?
        .try_init()
        .map_err(|e| LoggingError::Init(e.to_string()))?;
    // try_init bridges the `log` crate at the subscriber's max-level hint, which per-layer
    // filters widen to TRACE: every `log::trace!` in wasmtime and hyper was then built and
    // handed to the bridge only to be dropped (a visible share of the message path under wrk,
    // BENCHMARKS.md). Cap the
    // bridge at the configured level unless RUST_LOG asks for more.
    if directives.is_none() {
        let max = match cfg.level.as_str() {
            "error" => log::LevelFilter::Error,
            "warn" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        };
        log::set_max_level(max);
    }
    Ok(())
}

/// The whole subscriber, writing lines to `writer`; `directives` replaces `cfg.level`.
pub(crate) fn subscriber<W>(
    cfg: &LoggingConfig,
    telemetry: &Telemetry,
    writer: W,
    directives: Option<&str>,
) -> Result<impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level_filter = || {
        let text = match directives {
            Some(d) => d.to_owned(),
            None => format!("{},opentelemetry=off", cfg.level),
        };
        EnvFilter::try_new(&text).map_err(|e| LoggingError::Level(format!("`{text}`: {e}")))
    };
    let sampler = || LevelSampler {
        debug_rate: cfg.debug_sample_rate,
        trace_rate: cfg.trace_sample_rate,
    };
    let no_export_path = || {
        EXPORT_PATH_TARGETS
            .iter()
            .fold(Targets::new().with_default(Level::TRACE), |t, target| {
                t.with_target(*target, tracing::level_filters::LevelFilter::OFF)
            })
    };
    let lines = tracing_subscriber::fmt::layer()
        .event_format(LineFormat::new(cfg))
        .with_writer(writer)
        .with_ansi(false)
        .with_filter(level_filter()?.and(sampler()));
    // Spans at INFO and above: the runtime's own; library internals stay out of traces.
    let traces = telemetry.tracer().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Per span, these cost two clock reads per poll (busy/idle time), a thread name
            // allocation and three `code.*` attributes to convert and export (always the
            // same lines of trace_context.rs): measured on the message path (BENCHMARKS.md),
            // and none of them is in the guide's spans.
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(no_export_path().with_default(Level::INFO))
    });
    let otlp_logs = match telemetry.logger_provider() {
        Some(provider) => Some(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(provider)
                .with_filter(level_filter()?.and(sampler()).and(no_export_path())),
        ),
        None => None,
    };
    Ok(tracing_subscriber::registry()
        .with(traces)
        .with(lines)
        .with(otlp_logs))
}

// ---- level sampling ----

/// Keeps DEBUG and TRACE events with the configured probabilities; everything else passes.
#[derive(Clone, Copy)]
struct LevelSampler {
    debug_rate: f64,
    trace_rate: f64,
}

impl LevelSampler {
    fn rate(&self, meta: &Metadata<'_>) -> Option<f64> {
        if !meta.is_event() {
            return None;
        }
        match *meta.level() {
            Level::DEBUG => Some(self.debug_rate),
            Level::TRACE => Some(self.trace_rate),
            _ => None,
        }
    }
}

impl<S> Filter<S> for LevelSampler {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        match self.rate(meta) {
            None => true,
            Some(rate) => keep(rate),
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Sampled callsites must be asked every time; the rest never.
        match self.rate(meta) {
            Some(rate) if rate <= 0.0 => tracing::subscriber::Interest::never(),
            Some(rate) if rate < 1.0 => tracing::subscriber::Interest::sometimes(),
            _ => tracing::subscriber::Interest::always(),
        }
    }
}

thread_local! {
    /// xorshift64 state, seeded per thread from std's random hasher keys.
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
}

/// True with probability `rate`.
fn keep(rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let x = RNG.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    // 53 random bits as a uniform value in [0, 1).
    ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
}

// ---- line format ----

/// One log line, JSON or text, with the configured key names.
pub(crate) struct LineFormat {
    json: bool,
    level_key: String,
    message_key: String,
    trace_id_key: Option<String>,
    span_id_key: Option<String>,
}

impl LineFormat {
    pub(crate) fn new(cfg: &LoggingConfig) -> Self {
        Self {
            json: cfg.format == LogFormat::Json,
            level_key: cfg.level_key.clone(),
            message_key: cfg.message_key.clone(),
            trace_id_key: cfg.include_trace_id.then(|| cfg.trace_id_key.clone()),
            span_id_key: cfg.include_span_id.then(|| cfg.span_id_key.clone()),
        }
    }

    /// Trace and span id of the current span's OpenTelemetry context (or of the unsampled
    /// request being served): present only while a traced server serves, as neither exists
    /// when tracing is off.
    fn ids(&self) -> Option<(String, String)> {
        if self.trace_id_key.is_none() && self.span_id_key.is_none() {
            return None;
        }
        // The runtime's spans and entered `tracing` spans are both the current OpenTelemetry
        // context. An unsampled request has no span, but its lines still name its trace.
        let sc = match opentelemetry::Context::map_current(|cx| {
            cx.has_active_span()
                .then(|| cx.span().span_context().clone())
        }) {
            Some(sc) => sc,
            None => crate::telemetry::sampling::current()?,
        };
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let timestamp = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let ids = self.ids();
        if self.json {
            let mut line = serde_json::Map::new();
            line.insert("timestamp".into(), timestamp.into());
            line.insert(self.level_key.clone(), meta.level().as_str().into());
            line.insert(
                self.message_key.clone(),
                fields.message.unwrap_or_default().into(),
            );
            line.insert("target".into(), meta.target().into());
            if let Some((trace_id, span_id)) = ids {
                if let Some(k) = &self.trace_id_key {
                    line.insert(k.clone(), trace_id.into());
                }
                if let Some(k) = &self.span_id_key {
                    line.insert(k.clone(), span_id.into());
                }
            }
            // The fixed keys win over a same-named event field.
            for (k, v) in fields.rest {
                line.entry(k).or_insert(v);
            }
            let text = serde_json::Value::Object(line).to_string();
            writeln!(writer, "{text}")
        } else {
            write!(
                writer,
                "{timestamp} {:>5} {}: {}",
                meta.level().as_str(),
                meta.target(),
                fields.message.unwrap_or_default()
            )?;
            for (k, v) in &fields.rest {
                match v {
                    serde_json::Value::String(s) => write!(writer, " {k}={s}")?,
                    other => write!(writer, " {k}={other}")?,
                }
            }
            if let Some((trace_id, span_id)) = ids {
                if let Some(k) = &self.trace_id_key {
                    write!(writer, " {k}={trace_id}")?;
                }
                if let Some(k) = &self.span_id_key {
                    write!(writer, " {k}={span_id}")?;
                }
            }
            writeln!(writer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn capture(cfg: &LoggingConfig, f: impl FnOnce()) -> Vec<String> {
        let buf = Buffer::default();
        let sub = subscriber(cfg, &Telemetry::disabled(), buf.clone(), None).unwrap();
        tracing::subscriber::with_default(sub, f);
        buf.lines()
    }

    #[test]
    fn json_lines_use_the_configured_keys_and_rfc3339() {
        let cfg = LoggingConfig {
            level_key: "lvl".into(),
            message_key: "msg".into(),
            ..LoggingConfig::default()
        };
        let lines = capture(&cfg, || tracing::info!(agent_id = "a1", n = 3, "hello"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["lvl"], "INFO");
        assert_eq!(v["msg"], "hello");
        assert_eq!(v["agent_id"], "a1");
        assert_eq!(v["n"], 3);
        assert!(v.get("level").is_none() && v.get("message").is_none());
        let ts = v["timestamp"].as_str().unwrap();
        humantime::parse_rfc3339(ts).unwrap();
    }

    #[test]
    fn text_format_and_level_filter() {
        let cfg = LoggingConfig {
            format: LogFormat::Text,
            level: "warn".into(),
            ..LoggingConfig::default()
        };
        let lines = capture(&cfg, || {
            tracing::info!("dropped by level");
            tracing::warn!(kind = "x", "kept");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(" WARN "), "{}", lines[0]);
        assert!(lines[0].ends_with("kept kind=x"), "{}", lines[0]);
    }

    #[test]
    fn debug_and_trace_events_are_sampled_at_their_rates() {
        let count = |debug_rate: f64, trace_rate: f64| {
            let cfg = LoggingConfig {
                level: "trace".into(),
                debug_sample_rate: debug_rate,
                trace_sample_rate: trace_rate,
                ..LoggingConfig::default()
            };
            let lines = capture(&cfg, || {
                for _ in 0..2000 {
                    tracing::debug!("d");
                    tracing::trace!("t");
                    tracing::info!("i");
                }
            });
            let n = |lvl: &str| lines.iter().filter(|l| l.contains(lvl)).count();
            (n("\"DEBUG\""), n("\"TRACE\""), n("\"INFO\""))
        };
        assert_eq!(count(0.0, 1.0), (0, 2000, 2000));
        let (d, t, i) = count(0.1, 0.5);
        assert_eq!(i, 2000);
        assert!((100..300).contains(&d), "debug kept {d} of 2000 at 0.1");
        assert!((850..1150).contains(&t), "trace kept {t} of 2000 at 0.5");
    }

    #[test]
    fn rng_keeps_roughly_the_rate() {
        let kept = (0..10_000).filter(|_| keep(0.25)).count();
        assert!((2200..2800).contains(&kept), "{kept}");
    }
}
