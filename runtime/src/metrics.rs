//! Every `caxton_*` metric: the one place their names, types, help texts and label sets are
//! written. Rules, dashboards and tests check against what this module serves.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use caxton_profiles::ProfilerStats;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use thiserror::Error;

use crate::config::MetricsConfig;
use crate::fipa::Performative;
use crate::system::SystemSample;

/// The Caxton Monitoring and Observability Guide's "Core Metrics", one constant each.
pub(crate) mod names {
    pub(crate) const AGENTS_TOTAL: &str = "caxton_agents_total";
    pub(crate) const AGENTS_ACTIVE: &str = "caxton_agents_active";
    pub(crate) const AGENT_EXECUTIONS_TOTAL: &str = "caxton_agent_executions_total";
    pub(crate) const AGENT_EXECUTION_DURATION_SECONDS: &str =
        "caxton_agent_execution_duration_seconds";
    pub(crate) const WASM_MEMORY_USAGE_BYTES: &str = "caxton_wasm_memory_usage_bytes";
    pub(crate) const RUNTIME_MEMORY_USAGE_BYTES: &str = "caxton_runtime_memory_usage_bytes";
    pub(crate) const RUNTIME_CPU_USAGE_RATIO: &str = "caxton_runtime_cpu_usage_ratio";
    pub(crate) const MESSAGES_SENT_TOTAL: &str = "caxton_messages_sent_total";
    pub(crate) const MESSAGES_RECEIVED_TOTAL: &str = "caxton_messages_received_total";
    pub(crate) const MESSAGE_PROCESSING_DURATION_SECONDS: &str =
        "caxton_message_processing_duration_seconds";
    pub(crate) const MESSAGE_QUEUE_SIZE: &str = "caxton_message_queue_size";
    pub(crate) const MESSAGE_ERRORS_TOTAL: &str = "caxton_message_errors_total";
    pub(crate) const HTTP_REQUESTS_TOTAL: &str = "caxton_http_requests_total";
    pub(crate) const HTTP_REQUEST_DURATION_SECONDS: &str = "caxton_http_request_duration_seconds";
    pub(crate) const HTTP_ACTIVE_CONNECTIONS: &str = "caxton_http_active_connections";
    pub(crate) const WEBSOCKET_CONNECTIONS: &str = "caxton_websocket_connections";
    pub(crate) const DISK_USAGE_BYTES: &str = "caxton_disk_usage_bytes";
    pub(crate) const NETWORK_BYTES_TOTAL: &str = "caxton_network_bytes_total";
    pub(crate) const FILE_DESCRIPTORS: &str = "caxton_file_descriptors";

    // Beyond the guide's list: the profiler's own health (issue 5).
    pub(crate) const PROFILER_SAMPLES_TAKEN_TOTAL: &str = "caxton_profiler_samples_taken_total";
    pub(crate) const PROFILER_SAMPLES_LOST_TOTAL: &str = "caxton_profiler_samples_lost_total";
    pub(crate) const PROFILER_SAMPLES_EXCLUDED_TOTAL: &str =
        "caxton_profiler_samples_excluded_total";

    // Beyond the guide's list: which build serves (a load test records it with its figures).
    pub(crate) const BUILD_INFO: &str = "caxton_build_info";
    pub(crate) const PROFILER_PROFILES_PUSHED_TOTAL: &str = "caxton_profiler_profiles_pushed_total";
    pub(crate) const PROFILER_PROFILES_DROPPED_TOTAL: &str =
        "caxton_profiler_profiles_dropped_total";

    // Beyond the guide's list: OTLP export health (issue 4).
    pub(crate) const TELEMETRY_DROPPED_TOTAL: &str = "caxton_telemetry_dropped_total";
    pub(crate) const TELEMETRY_QUEUED: &str = "caxton_telemetry_queued";

    // Beyond the guide's list: message accounting under hostile load (issue 17).
    pub(crate) const MESSAGES_ACCEPTED_TOTAL: &str = "caxton_messages_accepted_total";
    pub(crate) const MESSAGES_DROPPED_TOTAL: &str = "caxton_messages_dropped_total";
    pub(crate) const MESSAGE_BYTES_IN_FLIGHT: &str = "caxton_message_bytes_in_flight";

    // Beyond the guide's list: the agent registry's store (issue 18).
    pub(crate) const STORE_OPERATION_DURATION_SECONDS: &str =
        "caxton_store_operation_duration_seconds";
}

/// The version `caxton_build_info` reports: the crate's.
pub(crate) const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit `caxton_build_info` reports (`build.rs`; "unknown" outside a checkout).
pub(crate) const BUILD_COMMIT: &str = env!("CAXTON_COMMIT");

/// The `reason` of `caxton_messages_dropped_total`: why an accepted message never executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// Its receiver was deleted with the message still in its mailbox.
    AgentDeleted,
    /// The runtime shut down before the message executed.
    Shutdown,
}

impl DropReason {
    /// Every reason, each present on /metrics from the start.
    pub(crate) const ALL: [DropReason; 2] = [DropReason::AgentDeleted, DropReason::Shutdown];

    /// The label value (rules, dashboards and tests read these).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DropReason::AgentDeleted => "agent_deleted",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// The `kind` label of `caxton_message_errors_total`: why a message was refused or lost.
/// The same word is the `error` of the FAILURE a refused message's sender gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MessageErrorKind {
    /// More receivers than `agents.max_receivers`.
    TooManyReceivers,
    /// The conversation passed `agents.max_hops`.
    HopLimit,
    /// One message larger than a mailbox's byte bound.
    MessageTooLarge,
    /// `agents.in_flight_bytes` reached: the runtime holds too many bytes of messages.
    InFlightBytes,
    /// The receiver's mailbox holds `agents.mailbox_capacity` messages.
    MailboxFull,
    /// The receiver's mailbox holds `agents.mailbox_bytes` bytes.
    MailboxBytes,
    /// The receiver is stopping or stopped.
    ReceiverStopped,
    /// An agent answered a FAILURE or NOT_UNDERSTOOD to its sender, which is never delivered.
    ReplyToFailure,
    /// The agent's execution failed (trap, timeout, fuel, bad output).
    ExecutionFailed,
    /// A `?wait=true` client got no reply in time.
    ReplyTimeout,
}

impl MessageErrorKind {
    /// Every kind, each present on /metrics from the start (no series appears late).
    pub(crate) const ALL: [MessageErrorKind; 10] = [
        MessageErrorKind::TooManyReceivers,
        MessageErrorKind::HopLimit,
        MessageErrorKind::MessageTooLarge,
        MessageErrorKind::InFlightBytes,
        MessageErrorKind::MailboxFull,
        MessageErrorKind::MailboxBytes,
        MessageErrorKind::ReceiverStopped,
        MessageErrorKind::ReplyToFailure,
        MessageErrorKind::ExecutionFailed,
        MessageErrorKind::ReplyTimeout,
    ];

    /// The label value (rules, dashboards and tests read these).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            MessageErrorKind::TooManyReceivers => "too_many_receivers",
            MessageErrorKind::HopLimit => "hop_limit",
            MessageErrorKind::MessageTooLarge => "message_too_large",
            MessageErrorKind::InFlightBytes => "in_flight_bytes",
            MessageErrorKind::MailboxFull => "mailbox_full",
            MessageErrorKind::MailboxBytes => "mailbox_bytes",
            MessageErrorKind::ReceiverStopped => "receiver_stopped",
            MessageErrorKind::ReplyToFailure => "reply_to_failure",
            MessageErrorKind::ExecutionFailed => "execution_failed",
            MessageErrorKind::ReplyTimeout => "reply_timeout",
        }
    }
}

impl std::fmt::Display for MessageErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Buckets of `caxton_store_operation_duration_seconds`: a group commit's fsync is about a
/// millisecond on a local disk, a restore of many agents seconds.
const STORE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The 19 names of the guide's "Core Metrics" list, in its order.
pub const ALL_METRIC_NAMES: [&str; 19] = [
    names::AGENTS_TOTAL,
    names::AGENTS_ACTIVE,
    names::AGENT_EXECUTIONS_TOTAL,
    names::AGENT_EXECUTION_DURATION_SECONDS,
    names::WASM_MEMORY_USAGE_BYTES,
    names::RUNTIME_MEMORY_USAGE_BYTES,
    names::RUNTIME_CPU_USAGE_RATIO,
    names::MESSAGES_SENT_TOTAL,
    names::MESSAGES_RECEIVED_TOTAL,
    names::MESSAGE_PROCESSING_DURATION_SECONDS,
    names::MESSAGE_QUEUE_SIZE,
    names::MESSAGE_ERRORS_TOTAL,
    names::HTTP_REQUESTS_TOTAL,
    names::HTTP_REQUEST_DURATION_SECONDS,
    names::HTTP_ACTIVE_CONNECTIONS,
    names::WEBSOCKET_CONNECTIONS,
    names::DISK_USAGE_BYTES,
    names::NETWORK_BYTES_TOTAL,
    names::FILE_DESCRIPTORS,
];

/// A metric that could not be set up, named so a bad bucket list points at its metric.
#[derive(Debug, Error)]
#[error("metric `{metric}`: {source}")]
pub struct MetricsError {
    pub(crate) metric: &'static str,
    pub(crate) source: prometheus::Error,
}

/// Which optional labels this configuration keeps (`include_labels` minus `exclude_labels`).
#[derive(Clone, Copy)]
struct Optional {
    agent_type: bool,
    agent_id: bool,
    message_type: bool,
}

/// A vector metric's label values, built on the stack in the order its label names were
/// declared: optional labels are skipped when disabled, so call sites pass everything.
struct Labels<'a> {
    values: [&'a str; 4],
    len: usize,
}

impl<'a> Labels<'a> {
    fn new() -> Self {
        Self {
            values: [""; 4],
            len: 0,
        }
    }

    fn opt(mut self, on: bool, v: &'a str) -> Self {
        if on {
            self.values[self.len] = v;
            self.len += 1;
        }
        self
    }

    fn req(self, v: &'a str) -> Self {
        self.opt(true, v)
    }

    fn get(&self) -> &[&'a str] {
        &self.values[..self.len]
    }
}

fn names_of<'a>(spec: &[(&'a str, bool)]) -> Vec<&'a str> {
    spec.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
}

/// A poisoned lock only means another recorder panicked mid-update; the numbers stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub struct Metrics {
    registry: Registry,
    build_info: IntGaugeVec,
    opt: Optional,
    agents_total: IntCounterVec,
    agents_active: IntGauge,
    executions: IntCounterVec,
    execution_duration: HistogramVec,
    wasm_memory: IntGaugeVec,
    /// Only when `agent_id` is not a label: each agent's last reported bytes, so the per-type
    /// gauge is the sum over that type's agents (what the guide's `sum by (agent_type)` panel
    /// reads) rather than whichever agent ran last.
    memory_by_agent: Option<Mutex<HashMap<String, u64>>>,
    runtime_memory: IntGauge,
    runtime_cpu: Gauge,
    messages_sent: IntCounterVec,
    messages_received: IntCounterVec,
    message_duration: HistogramVec,
    message_queue: IntGauge,
    message_errors: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_connections: IntGauge,
    websockets: IntGauge,
    disk_usage: IntGauge,
    network_bytes: IntCounterVec,
    file_descriptors: IntGauge,
    /// Last cumulative /proc network readings, to feed the counter by deltas.
    last_net: Mutex<(u64, u64)>,
    profiler: ProfilerCounters,
    /// Mirrors `telemetry::dropped` (process-wide atomics) at scrape/export time.
    telemetry_dropped: IntCounterVec,
    /// Mirrors `telemetry::queued` at scrape/export time.
    telemetry_queued: IntGaugeVec,
    messages_accepted: IntCounter,
    messages_dropped: IntCounterVec,
    message_bytes_in_flight: IntGauge,
    store_duration: HistogramVec,
    /// The message metrics' children of each performative, resolved on first use: every
    /// message updates five of them, and `with_label_values` hashes the labels and looks the
    /// child up under a lock each time.
    by_performative: [OnceLock<PerformativeSeries>; Performative::ALL.len()],
    /// Deleted agents (type, id) whose series stay until the next scrape has read them, so
    /// executions counted since the previous scrape are not lost with the agent.
    retiring: Mutex<Vec<(String, String)>>,
}

/// Most deleted agents whose series wait for a scrape; past it (nobody scrapes) the oldest
/// go at once, so the wait cannot grow the registry without bound.
const MAX_RETIRING: usize = 10_000;

/// The `agent_id` of a type's placeholder series (always 0): they keep the per-agent names
/// on /metrics when no agent of the type exists. An empty label is, to PromQL, no label,
/// so `sum by (agent_type)` and the guide's rules read them as 0.
const PLACEHOLDER_AGENT_ID: &str = "";

/// See [`Metrics::agent_series`].
pub(crate) struct AgentSeries {
    ok: IntCounter,
    error: IntCounter,
    duration: Histogram,
    memory: IntGauge,
}

struct PerformativeSeries {
    sent: IntCounter,
    received: IntCounter,
    duration: Histogram,
}

/// Counters mirroring `caxton_profiles::ProfilerStats`, which is cumulative: fed by deltas.
struct ProfilerCounters {
    taken: IntCounter,
    lost: IntCounter,
    excluded: IntCounter,
    pushed: IntCounter,
    dropped: IntCounter,
    last: Mutex<ProfilerStats>,
}

/// Builds a collector and registers it, naming the metric in any error.
fn reg<C: Collector + Clone + 'static>(
    r: &Registry,
    metric: &'static str,
    made: prometheus::Result<C>,
) -> Result<C, MetricsError> {
    let err = move |source| MetricsError { metric, source };
    let c = made.map_err(err)?;
    r.register(Box::new(c.clone())).map_err(err)?;
    Ok(c)
}

impl Metrics {
    /// Label sets are fixed here: a label the configuration disables is absent from the
    /// series (not present and empty), and help texts are the guide's descriptions.
    pub fn new(cfg: &MetricsConfig) -> Result<Metrics, MetricsError> {
        let opt = Optional {
            agent_type: cfg.label_enabled("agent_type"),
            agent_id: cfg.label_enabled("agent_id"),
            message_type: cfg.label_enabled("message_type"),
        };
        let registry = Registry::new();
        let r = &registry;
        let counter = |name: &'static str, help: &str, labels: &[(&str, bool)]| {
            reg(
                r,
                name,
                IntCounterVec::new(Opts::new(name, help), &names_of(labels)),
            )
        };
        let histogram =
            |name: &'static str, help: &str, buckets: &[f64], labels: &[(&str, bool)]| {
                let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
                // The crate checks buckets only when a labelled child is first made, where
                // `with_label_values` would panic on the hot path: check them here instead.
                let checked = Histogram::with_opts(opts.clone())
                    .and_then(|_| HistogramVec::new(opts, &names_of(labels)));
                reg(r, name, checked)
            };
        let gauge = |name: &'static str, help: &str| reg(r, name, IntGauge::new(name, help));
        let plain_counter =
            |name: &'static str, help: &str| reg(r, name, IntCounter::new(name, help));
        let by_type = [("agent_type", opt.agent_type)];
        let per_agent = [("agent_type", opt.agent_type), ("agent_id", opt.agent_id)];
        let by_message = [("message_type", opt.message_type)];
        let http = &cfg.http_duration_buckets;
        let exec = &cfg.agent_execution_buckets;
        use names::*;
        let m = Metrics {
            agents_total: counter(AGENTS_TOTAL, "Total number of agents", &by_type)?,
            agents_active: gauge(AGENTS_ACTIVE, "Currently active agents")?,
            executions: counter(
                AGENT_EXECUTIONS_TOTAL,
                "Total agent executions",
                &[per_agent[0], per_agent[1], ("status", true)],
            )?,
            execution_duration: histogram(
                AGENT_EXECUTION_DURATION_SECONDS,
                "Agent execution time",
                exec,
                &by_type,
            )?,
            wasm_memory: reg(
                r,
                WASM_MEMORY_USAGE_BYTES,
                IntGaugeVec::new(
                    Opts::new(WASM_MEMORY_USAGE_BYTES, "WASM memory usage per agent"),
                    &names_of(&per_agent),
                ),
            )?,
            memory_by_agent: (!opt.agent_id).then(|| Mutex::new(HashMap::new())),
            runtime_memory: gauge(RUNTIME_MEMORY_USAGE_BYTES, "Runtime memory usage")?,
            runtime_cpu: reg(
                r,
                RUNTIME_CPU_USAGE_RATIO,
                Gauge::new(RUNTIME_CPU_USAGE_RATIO, "CPU utilization"),
            )?,
            messages_sent: counter(MESSAGES_SENT_TOTAL, "FIPA messages sent", &by_message)?,
            messages_received: counter(
                MESSAGES_RECEIVED_TOTAL,
                "FIPA messages received",
                &by_message,
            )?,
            message_duration: histogram(
                MESSAGE_PROCESSING_DURATION_SECONDS,
                "Message processing time",
                exec,
                &by_message,
            )?,
            message_queue: gauge(MESSAGE_QUEUE_SIZE, "Current message queue size")?,
            message_errors: counter(
                MESSAGE_ERRORS_TOTAL,
                "Message processing errors",
                &[("kind", true)],
            )?,
            http_requests: counter(
                HTTP_REQUESTS_TOTAL,
                "HTTP requests by method/status",
                &[("method", true), ("route", true), ("status", true)],
            )?,
            http_duration: histogram(
                HTTP_REQUEST_DURATION_SECONDS,
                "HTTP request duration",
                http,
                &[("method", true), ("route", true)],
            )?,
            http_connections: gauge(HTTP_ACTIVE_CONNECTIONS, "Active HTTP connections")?,
            websockets: gauge(WEBSOCKET_CONNECTIONS, "Active WebSocket connections")?,
            disk_usage: gauge(DISK_USAGE_BYTES, "Disk space usage")?,
            network_bytes: counter(NETWORK_BYTES_TOTAL, "Network I/O", &[("direction", true)])?,
            file_descriptors: gauge(FILE_DESCRIPTORS, "Open file descriptors")?,
            last_net: Mutex::new((0, 0)),
            profiler: ProfilerCounters {
                taken: plain_counter(PROFILER_SAMPLES_TAKEN_TOTAL, "CPU profile samples recorded")?,
                lost: plain_counter(
                    PROFILER_SAMPLES_LOST_TOTAL,
                    "CPU profile samples the target's CPU time called for but pprof did not record",
                )?,
                excluded: plain_counter(
                    PROFILER_SAMPLES_EXCLUDED_TOTAL,
                    "CPU profile samples of threads that are not the runtime's (an embedding \
                     load generator), left out of the profile",
                )?,
                pushed: plain_counter(
                    PROFILER_PROFILES_PUSHED_TOTAL,
                    "Profiles Pyroscope accepted",
                )?,
                dropped: plain_counter(
                    PROFILER_PROFILES_DROPPED_TOTAL,
                    "Profiles dropped: Pyroscope unreachable or the push queue full",
                )?,
                last: Mutex::new(ProfilerStats::default()),
            },
            telemetry_dropped: counter(
                TELEMETRY_DROPPED_TOTAL,
                "Spans, log records and metric exports the OTLP pipelines dropped",
                &[("signal", true), ("reason", true)],
            )?,
            telemetry_queued: reg(
                r,
                TELEMETRY_QUEUED,
                IntGaugeVec::new(
                    Opts::new(
                        TELEMETRY_QUEUED,
                        "Spans and log records waiting for or inside an OTLP export",
                    ),
                    &["signal"],
                ),
            )?,
            build_info: reg(
                r,
                BUILD_INFO,
                IntGaugeVec::new(
                    Opts::new(BUILD_INFO, "Always 1: the version and commit of this build"),
                    &["version", "commit"],
                ),
            )?,
            messages_accepted: plain_counter(
                MESSAGES_ACCEPTED_TOTAL,
                "Messages a mailbox accepted, one per receiver",
            )?,
            messages_dropped: counter(
                MESSAGES_DROPPED_TOTAL,
                "Accepted messages that were never executed, by reason",
                &[("reason", true)],
            )?,
            message_bytes_in_flight: gauge(
                MESSAGE_BYTES_IN_FLIGHT,
                "Bytes of messages queued or executing (agents.in_flight_bytes bounds it)",
            )?,
            store_duration: histogram(
                STORE_OPERATION_DURATION_SECONDS,
                "Agent store operations, from the request's submit to durable (insert, delete) or the whole restore (load)",
                &STORE_BUCKETS,
                &[("operation", true)],
            )?,
            opt,
            registry,
            by_performative: Default::default(),
            retiring: Mutex::new(Vec::new()),
        };
        m.build_info
            .with_label_values(&[BUILD_VERSION, BUILD_COMMIT])
            .set(1);
        // Present at 0 from the start, so the accounting can be checked before any drop.
        for reason in DropReason::ALL {
            m.messages_dropped.with_label_values(&[reason.as_str()]);
        }
        // Present at 0 from the start, so the guide's name is on /metrics before any error.
        for kind in MessageErrorKind::ALL {
            m.message_errors.with_label_values(&[kind.as_str()]);
        }
        // The process collector exports only process_* names, so it cannot clash with ours.
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|source| MetricsError {
                metric: "process_*",
                source,
            })?;
        Ok(m)
    }

    /// One store operation (`insert`, `delete`, `load`) and how long it took.
    pub(crate) fn store_operation(&self, operation: &str, seconds: f64) {
        self.store_duration
            .with_label_values(&[operation])
            .observe(seconds);
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric. The series of agents deleted before this
    /// scrape are in it one last time, then removed.
    pub(crate) fn encode_text(&self) -> String {
        let retired = std::mem::take(&mut *lock(&self.retiring));
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        for (agent_type, agent_id) in &retired {
            self.remove_agent_series(agent_type, agent_id);
        }
        String::from_utf8(out).unwrap_or_default()
    }

    pub(crate) fn agent_created(&self, agent_type: &str) {
        let l = Labels::new().opt(self.opt.agent_type, agent_type);
        self.agents_total.with_label_values(l.get()).inc();
        if self.opt.agent_id {
            // Idempotent: a lookup of existing children after the type's first agent.
            self.agent_series(agent_type, PLACEHOLDER_AGENT_ID);
        }
    }

    pub(crate) fn agents_active(&self) -> &IntGauge {
        &self.agents_active
    }

    /// The children of the per-agent metrics for one agent: resolved once (at its first
    /// execution) and kept with the agent, so an execution does not hash the agent id into
    /// three label lookups.
    pub(crate) fn agent_series(&self, agent_type: &str, agent_id: &str) -> AgentSeries {
        let o = self.opt;
        let status = |status| {
            let l = Labels::new()
                .opt(o.agent_type, agent_type)
                .opt(o.agent_id, agent_id)
                .req(status);
            self.executions.with_label_values(l.get())
        };
        let by_type = Labels::new().opt(o.agent_type, agent_type);
        let per_agent = Labels::new()
            .opt(o.agent_type, agent_type)
            .opt(o.agent_id, agent_id);
        AgentSeries {
            ok: status("ok"),
            error: status("error"),
            duration: self.execution_duration.with_label_values(by_type.get()),
            memory: self.wasm_memory.with_label_values(per_agent.get()),
        }
    }

    pub(crate) fn execution(&self, series: &AgentSeries, ok: bool, seconds: f64) {
        if ok {
            series.ok.inc();
        } else {
            series.error.inc();
        }
        series.duration.observe(seconds);
    }

    pub(crate) fn wasm_memory(&self, series: &AgentSeries, agent_id: &str, bytes: u64) {
        let gauge = &series.memory;
        let Some(by_agent) = &self.memory_by_agent else {
            gauge.set(as_i64(bytes));
            return;
        };
        // The gauge is changed under the lock so concurrent agents' deltas cannot interleave.
        let mut by_agent = lock(by_agent);
        let prev = match by_agent.get_mut(agent_id) {
            Some(v) => std::mem::replace(v, bytes),
            None => {
                by_agent.insert(agent_id.to_owned(), bytes);
                0
            }
        };
        gauge.add(as_i64(bytes) - as_i64(prev));
    }

    /// Drops a deleted agent's per-agent series (after the next scrape has read them) so
    /// they do not pile up; with `agent_id` disabled, takes its memory out of its type's
    /// total instead.
    pub(crate) fn forget_agent(&self, agent_type: &str, agent_id: &str) {
        if self.memory_by_agent.is_some() {
            self.remove_agent_series(agent_type, agent_id);
            return;
        }
        let overflow = {
            let mut retiring = lock(&self.retiring);
            retiring.push((agent_type.to_owned(), agent_id.to_owned()));
            (retiring.len() > MAX_RETIRING).then(|| retiring.remove(0))
        };
        if let Some((t, id)) = overflow {
            self.remove_agent_series(&t, &id);
        }
    }

    fn remove_agent_series(&self, agent_type: &str, agent_id: &str) {
        let o = self.opt;
        if let Some(by_agent) = &self.memory_by_agent {
            let mut by_agent = lock(by_agent);
            if let Some(prev) = by_agent.remove(agent_id) {
                let l = Labels::new().opt(o.agent_type, agent_type);
                self.wasm_memory
                    .with_label_values(l.get())
                    .sub(as_i64(prev));
            }
            return;
        }
        let l = Labels::new().opt(o.agent_type, agent_type).req(agent_id);
        // "Not found" only means the agent never ran or reported memory.
        let _ = self.wasm_memory.remove_label_values(l.get());
        for status in ["ok", "error"] {
            let l = Labels::new()
                .opt(o.agent_type, agent_type)
                .req(agent_id)
                .req(status);
            let _ = self.executions.remove_label_values(l.get());
        }
    }

    fn performative(&self, p: Performative) -> &PerformativeSeries {
        self.by_performative[p as usize].get_or_init(|| {
            let l = Labels::new().opt(self.opt.message_type, p.as_str());
            PerformativeSeries {
                sent: self.messages_sent.with_label_values(l.get()),
                received: self.messages_received.with_label_values(l.get()),
                duration: self.message_duration.with_label_values(l.get()),
            }
        })
    }

    pub fn message_sent(&self, p: Performative) {
        self.performative(p).sent.inc();
    }

    pub(crate) fn message_received(&self, p: Performative) {
        self.performative(p).received.inc();
    }

    pub fn message_processed(&self, p: Performative, seconds: f64) {
        self.performative(p).duration.observe(seconds);
    }

    pub(crate) fn message_queue(&self) -> &IntGauge {
        &self.message_queue
    }

    pub(crate) fn message_accepted(&self) {
        self.messages_accepted.inc();
    }

    pub(crate) fn messages_dropped(&self, reason: DropReason, n: u64) {
        self.messages_dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    pub(crate) fn message_bytes_in_flight(&self) -> &IntGauge {
        &self.message_bytes_in_flight
    }

    pub(crate) fn message_error(&self, kind: MessageErrorKind) {
        self.message_errors
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let code = itoa_status(status);
        let code = code.as_str();
        self.http_requests
            .with_label_values(&[method, route, code])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    pub(crate) fn http_active_connections(&self) -> &IntGauge {
        &self.http_connections
    }

    pub(crate) fn websocket_connections(&self) -> &IntGauge {
        &self.websockets
    }

    /// Gauges take the sample as is. The network counter grows by the difference from the
    /// previous sample; the first sample adds the whole /proc reading, so the counter tracks
    /// the namespace's cumulative bytes like /proc itself.
    pub(crate) fn set_system(&self, s: &SystemSample) {
        self.runtime_memory.set(as_i64(s.rss_bytes));
        self.runtime_cpu.set(s.cpu_ratio);
        self.file_descriptors.set(as_i64(s.open_fds));
        self.disk_usage.set(as_i64(s.disk_usage_bytes));
        let mut last = lock(&self.last_net);
        // /proc counters only grow; a smaller reading means a reset, which adds nothing.
        let rx = s.net_rx_bytes.saturating_sub(last.0);
        let tx = s.net_tx_bytes.saturating_sub(last.1);
        self.network_bytes.with_label_values(&["rx"]).inc_by(rx);
        self.network_bytes.with_label_values(&["tx"]).inc_by(tx);
        *last = (s.net_rx_bytes, s.net_tx_bytes);
    }
}

impl Metrics {
    /// Mirrors the profiler's cumulative counters (read at scrape time).
    pub(crate) fn set_profiler(&self, s: &ProfilerStats) {
        let p = &self.profiler;
        let mut last = lock(&p.last);
        p.taken
            .inc_by(s.samples_taken.saturating_sub(last.samples_taken));
        p.lost
            .inc_by(s.samples_lost.saturating_sub(last.samples_lost));
        p.excluded
            .inc_by(s.samples_excluded.saturating_sub(last.samples_excluded));
        p.pushed
            .inc_by(s.profiles_pushed.saturating_sub(last.profiles_pushed));
        p.dropped
            .inc_by(s.profiles_dropped.saturating_sub(last.profiles_dropped));
        *last = *s;
    }
}

impl Metrics {
    /// Raises `caxton_telemetry_dropped_total{signal,reason}` to `total`, a count that only
    /// grows (the telemetry pipelines' own; `telemetry::sync_metrics` passes them).
    pub(crate) fn telemetry_dropped_to(&self, signal: &str, reason: &str, total: u64) {
        let c = self.telemetry_dropped.with_label_values(&[signal, reason]);
        c.inc_by(total.saturating_sub(c.get()));
    }

    /// Sets `caxton_telemetry_queued{signal}`: what waits for or is inside an OTLP export.
    pub(crate) fn set_telemetry_queued(&self, signal: &str, n: u64) {
        self.telemetry_queued
            .with_label_values(&[signal])
            .set(as_i64(n));
    }
}

/// A status code as a label without allocating.
struct StatusText([u8; 3]);

impl StatusText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000")
    }
}

fn itoa_status(status: u16) -> StatusText {
    let s = status.min(999);
    StatusText([
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(m: &Metrics) {
        m.agent_created("test-agent");
        m.agents_active().inc();
        let a1 = m.agent_series("test-agent", "a1");
        m.execution(&a1, true, 0.002);
        m.execution(&a1, false, 0.2);
        m.wasm_memory(&a1, "a1", 65536);
        m.message_sent(Performative::Request);
        m.message_received(Performative::Request);
        m.message_processed(Performative::Request, 0.003);
        m.message_queue().inc();
        m.message_error(MessageErrorKind::MailboxFull);
        m.http_request("POST", "/api/agents", 200, 0.004);
        m.http_active_connections().inc();
        m.websocket_connections().inc();
        m.set_system(&SystemSample {
            rss_bytes: 1 << 20,
            cpu_ratio: 0.25,
            open_fds: 12,
            disk_usage_bytes: 4096,
            net_rx_bytes: 100,
            net_tx_bytes: 50,
        });
    }

    fn with_labels(include: &[&str], exclude: &[&str]) -> Metrics {
        let cfg = MetricsConfig {
            include_labels: include.iter().map(|s| s.to_string()).collect(),
            exclude_labels: exclude.iter().map(|s| s.to_string()).collect(),
            ..MetricsConfig::default()
        };
        Metrics::new(&cfg).unwrap()
    }

    /// The sample lines of one metric family (no comments, no other families).
    fn series<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn all_19_seed_names_are_exposed_with_their_types_after_traffic() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        exercise(&m);
        let text = m.encode_text();
        for name in ALL_METRIC_NAMES {
            let kind = if name.ends_with("_total") {
                "counter"
            } else if name.ends_with("_seconds") {
                "histogram"
            } else {
                "gauge"
            };
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} missing or not a {kind}:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name} help");
        }
        assert!(text.contains("# HELP caxton_message_queue_size Current message queue size\n"));
        assert!(text.contains(
            r#"caxton_http_requests_total{method="POST",route="/api/agents",status="200"} 1"#
        ));
        assert!(text.contains(r#"caxton_network_bytes_total{direction="rx"} 100"#));
        assert!(text.contains(r#"caxton_network_bytes_total{direction="tx"} 50"#));
        assert!(text.contains("caxton_runtime_cpu_usage_ratio 0.25\n"));
        // The process collector rides along without clashing.
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    }

    #[test]
    fn default_labels_are_present_where_the_seed_queries_them() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        exercise(&m);
        let text = m.encode_text();
        for line in [
            r#"caxton_agents_total{agent_type="test-agent"} 1"#,
            r#"caxton_agent_executions_total{agent_id="a1",agent_type="test-agent",status="ok"} 1"#,
            r#"caxton_agent_executions_total{agent_id="a1",agent_type="test-agent",status="error"} 1"#,
            r#"caxton_wasm_memory_usage_bytes{agent_id="a1",agent_type="test-agent"} 65536"#,
            r#"caxton_messages_sent_total{message_type="REQUEST"} 1"#,
            r#"caxton_messages_received_total{message_type="REQUEST"} 1"#,
            r#"caxton_message_processing_duration_seconds_count{message_type="REQUEST"} 1"#,
            r#"caxton_message_errors_total{kind="mailbox_full"} 1"#,
            r#"caxton_agent_execution_duration_seconds_count{agent_type="test-agent"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        // The duration histogram is per type only: per-agent buckets would be 10+ series each.
        assert!(
            series(&text, "caxton_agent_execution_duration_seconds_bucket")
                .iter()
                .all(|l| !l.contains("agent_id="))
        );
    }

    #[test]
    fn disabled_optional_labels_are_absent_not_empty() {
        let m = with_labels(&["agent_type", "agent_id", "message_type"], &["agent_id"]);
        exercise(&m);
        let text = m.encode_text();
        assert!(
            text.contains(
                r#"caxton_agent_executions_total{agent_type="test-agent",status="ok"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("agent_id="), "{text}");

        let m = with_labels(&[], &[]);
        exercise(&m);
        let text = m.encode_text();
        assert!(text.contains("caxton_agents_total 1\n"), "{text}");
        assert!(text.contains("caxton_messages_sent_total 1\n"), "{text}");
        assert!(text.contains(r#"caxton_agent_executions_total{status="error"} 1"#));
        assert!(
            text.contains("caxton_wasm_memory_usage_bytes 65536\n"),
            "{text}"
        );
        for label in ["agent_type=", "agent_id=", "message_type="] {
            assert!(!text.contains(label), "{label} present:\n{text}");
        }
        // Mandatory labels stay whatever the configuration says.
        assert!(text.contains(r#"caxton_message_errors_total{kind="mailbox_full"} 1"#));
    }

    #[test]
    fn histogram_buckets_are_the_configured_ones() {
        let cfg = MetricsConfig {
            http_duration_buckets: vec![0.1, 1.0],
            agent_execution_buckets: vec![0.001, 0.5, 7.0],
            ..MetricsConfig::default()
        };
        let m = Metrics::new(&cfg).unwrap();
        exercise(&m);
        let text = m.encode_text();
        let les = |name: &str| -> Vec<String> {
            series(&text, name)
                .iter()
                .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
                .map(String::from)
                .collect()
        };
        assert_eq!(
            les("caxton_http_request_duration_seconds_bucket"),
            ["0.1", "1", "+Inf"]
        );
        assert_eq!(
            les("caxton_agent_execution_duration_seconds_bucket"),
            ["0.001", "0.5", "7", "+Inf"]
        );
        assert_eq!(
            les("caxton_message_processing_duration_seconds_bucket"),
            ["0.001", "0.5", "7", "+Inf"]
        );
        // 0.004 s lands in the first HTTP bucket; 0.2 s executions only from 0.5 up.
        assert!(text.contains(
            r#"caxton_http_request_duration_seconds_bucket{method="POST",route="/api/agents",le="0.1"} 1"#
        ));
        assert!(text.contains(
            r#"caxton_agent_execution_duration_seconds_bucket{agent_type="test-agent",le="0.5"} 2"#
        ));
    }

    #[test]
    fn bad_buckets_name_the_metric() {
        let cfg = MetricsConfig {
            agent_execution_buckets: vec![1.0, 0.5],
            ..MetricsConfig::default()
        };
        let err = Metrics::new(&cfg)
            .err()
            .expect("decreasing buckets rejected");
        let msg = err.to_string();
        assert!(
            msg.contains("caxton_agent_execution_duration_seconds") && msg.contains("increasing"),
            "{msg}"
        );
    }

    #[test]
    fn forget_agent_removes_only_that_agents_series() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        exercise(&m);
        let a2 = m.agent_series("test-agent", "a2");
        m.execution(&a2, true, 0.01);
        m.wasm_memory(&a2, "a2", 1024);
        m.forget_agent("test-agent", "a1");
        m.forget_agent("test-agent", "never-ran");
        let last = m.encode_text();
        assert!(
            last.contains(r#"agent_id="a1""#),
            "the next scrape still reads a1: {last}"
        );
        let text = m.encode_text();
        assert!(!text.contains(r#"agent_id="a1""#), "{text}");
        assert!(text.contains(
            r#"caxton_agent_executions_total{agent_id="a2",agent_type="test-agent",status="ok"} 1"#
        ));
        assert!(text.contains(
            r#"caxton_wasm_memory_usage_bytes{agent_id="a2",agent_type="test-agent"} 1024"#
        ));
        // Per-type history survives the agent.
        assert!(text.contains(
            r#"caxton_agent_execution_duration_seconds_count{agent_type="test-agent"} 3"#
        ));
    }

    #[test]
    fn without_agent_id_wasm_memory_is_the_sum_over_the_types_agents() {
        let m = with_labels(&["agent_type"], &[]);
        let memory = |ty: &str, id: &str, bytes: u64| {
            m.wasm_memory(&m.agent_series(ty, id), id, bytes);
        };
        memory("test-agent", "a1", 1000);
        memory("test-agent", "a2", 300);
        memory("echo", "e1", 7);
        memory("test-agent", "a1", 2000);
        let gauge = |ty: &str| m.wasm_memory.with_label_values(&[ty]).get();
        assert_eq!(gauge("test-agent"), 2300);
        assert_eq!(gauge("echo"), 7);
        m.forget_agent("test-agent", "a1");
        m.forget_agent("test-agent", "a1");
        assert_eq!(gauge("test-agent"), 300);
        assert!(
            m.encode_text()
                .contains(r#"caxton_wasm_memory_usage_bytes{agent_type="test-agent"} 300"#)
        );
    }

    #[test]
    fn network_counter_follows_deltas_and_ignores_resets() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        let mut s = SystemSample {
            net_rx_bytes: 100,
            net_tx_bytes: 10,
            ..SystemSample::default()
        };
        m.set_system(&s);
        // A reset (interface re-created): nothing is subtracted, counting resumes from it.
        s.net_rx_bytes = 40;
        m.set_system(&s);
        s.net_rx_bytes = 70;
        s.net_tx_bytes = 25;
        m.set_system(&s);
        let text = m.encode_text();
        assert!(
            text.contains(r#"caxton_network_bytes_total{direction="rx"} 130"#),
            "{text}"
        );
        assert!(
            text.contains(r#"caxton_network_bytes_total{direction="tx"} 25"#),
            "{text}"
        );
    }

    #[test]
    fn status_codes_render_as_three_digits() {
        assert_eq!(itoa_status(200).as_str(), "200");
        assert_eq!(itoa_status(429).as_str(), "429");
        assert_eq!(itoa_status(5).as_str(), "005");
    }

    #[test]
    fn every_error_kind_and_drop_reason_is_on_metrics_at_zero_from_the_start() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        let text = m.encode_text();
        assert_eq!(
            series(&text, names::MESSAGE_ERRORS_TOTAL).len(),
            MessageErrorKind::ALL.len()
        );
        for kind in MessageErrorKind::ALL {
            let line = format!("{}{{kind=\"{kind}\"}} 0", names::MESSAGE_ERRORS_TOTAL);
            assert!(text.contains(&line), "{line} missing");
        }
        assert_eq!(
            series(&text, names::MESSAGES_DROPPED_TOTAL).len(),
            DropReason::ALL.len()
        );
        for reason in DropReason::ALL {
            let line = format!(
                "{}{{reason=\"{}\"}} 0",
                names::MESSAGES_DROPPED_TOTAL,
                reason.as_str()
            );
            assert!(text.contains(&line), "{line} missing");
        }
        // ALL holds each variant once, in declaration order: a kind added in the middle or
        // left out of ALL shifts a discriminant (a new last one must extend both).
        for (i, kind) in MessageErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind}");
        }
        assert_eq!(
            MessageErrorKind::ReplyTimeout as usize + 1,
            MessageErrorKind::ALL.len()
        );
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i);
        }
    }
}
