//! Every `caxton_*` metric: the one place their names, types, help texts and label sets are
//! written. Rules, dashboards and tests check against what this module serves.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use thiserror::Error;

use crate::config::MetricsConfig;
use crate::system::SystemSample;

/// The seed's "Core Metrics", one constant each.
pub mod names {
    pub const AGENTS_TOTAL: &str = "caxton_agents_total";
    pub const AGENTS_ACTIVE: &str = "caxton_agents_active";
    pub const AGENT_EXECUTIONS_TOTAL: &str = "caxton_agent_executions_total";
    pub const AGENT_EXECUTION_DURATION_SECONDS: &str = "caxton_agent_execution_duration_seconds";
    pub const WASM_MEMORY_USAGE_BYTES: &str = "caxton_wasm_memory_usage_bytes";
    pub const RUNTIME_MEMORY_USAGE_BYTES: &str = "caxton_runtime_memory_usage_bytes";
    pub const RUNTIME_CPU_USAGE_RATIO: &str = "caxton_runtime_cpu_usage_ratio";
    pub const MESSAGES_SENT_TOTAL: &str = "caxton_messages_sent_total";
    pub const MESSAGES_RECEIVED_TOTAL: &str = "caxton_messages_received_total";
    pub const MESSAGE_PROCESSING_DURATION_SECONDS: &str =
        "caxton_message_processing_duration_seconds";
    pub const MESSAGE_QUEUE_SIZE: &str = "caxton_message_queue_size";
    pub const MESSAGE_ERRORS_TOTAL: &str = "caxton_message_errors_total";
    pub const HTTP_REQUESTS_TOTAL: &str = "caxton_http_requests_total";
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "caxton_http_request_duration_seconds";
    pub const HTTP_ACTIVE_CONNECTIONS: &str = "caxton_http_active_connections";
    pub const WEBSOCKET_CONNECTIONS: &str = "caxton_websocket_connections";
    pub const DISK_USAGE_BYTES: &str = "caxton_disk_usage_bytes";
    pub const NETWORK_BYTES_TOTAL: &str = "caxton_network_bytes_total";
    pub const FILE_DESCRIPTORS: &str = "caxton_file_descriptors";
}

/// The 19 names of the seed's "Core Metrics" list, in its order.
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

#[derive(Debug, Error)]
#[error("metric set-up: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

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

pub struct Metrics {
    registry: Registry,
    opt: Optional,
    agents_total: IntCounterVec,
    agents_active: IntGauge,
    executions: IntCounterVec,
    execution_duration: HistogramVec,
    wasm_memory: IntGaugeVec,
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
    last_net: std::sync::Mutex<(u64, u64)>,
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig) -> Result<Metrics, MetricsError> {
        let opt = Optional {
            agent_type: cfg.label_enabled("agent_type"),
            agent_id: cfg.label_enabled("agent_id"),
            message_type: cfg.label_enabled("message_type"),
        };
        let registry = Registry::new();
        fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> Result<C, MetricsError> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let counter = |name: &str, help: &str, labels: &[(&str, bool)]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &names_of(labels))?,
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[(&str, bool)]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            reg(&registry, HistogramVec::new(opts, &names_of(labels))?)
        };
        let gauge = |name: &str, help: &str| reg(&registry, IntGauge::new(name, help)?);
        let by_type = [("agent_type", opt.agent_type)];
        let by_message = [("message_type", opt.message_type)];
        let http = &cfg.http_duration_buckets;
        let exec = &cfg.agent_execution_buckets;
        use names::*;
        let m = Metrics {
            agents_total: counter(AGENTS_TOTAL, "Total number of agents created", &by_type)?,
            agents_active: gauge(AGENTS_ACTIVE, "Currently active (Running) agents")?,
            executions: counter(
                AGENT_EXECUTIONS_TOTAL,
                "Total agent executions, by outcome",
                &[
                    ("agent_type", opt.agent_type),
                    ("agent_id", opt.agent_id),
                    ("status", true),
                ],
            )?,
            execution_duration: histogram(
                AGENT_EXECUTION_DURATION_SECONDS,
                "Agent execution time",
                exec,
                &by_type,
            )?,
            wasm_memory: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(WASM_MEMORY_USAGE_BYTES, "WASM linear memory per agent"),
                    &names_of(&[("agent_type", opt.agent_type), ("agent_id", opt.agent_id)]),
                )?,
            )?,
            runtime_memory: gauge(RUNTIME_MEMORY_USAGE_BYTES, "Runtime resident memory")?,
            runtime_cpu: reg(
                &registry,
                Gauge::new(
                    RUNTIME_CPU_USAGE_RATIO,
                    "CPU utilization of the runtime, 0 to 1",
                )?,
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
            message_queue: gauge(MESSAGE_QUEUE_SIZE, "Messages waiting in agent mailboxes")?,
            message_errors: counter(
                MESSAGE_ERRORS_TOTAL,
                "Message processing errors, by kind",
                &[("kind", true)],
            )?,
            http_requests: counter(
                HTTP_REQUESTS_TOTAL,
                "HTTP requests by method, route and status",
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
            disk_usage: gauge(DISK_USAGE_BYTES, "Disk space used by the data directory")?,
            network_bytes: counter(
                NETWORK_BYTES_TOTAL,
                "Network I/O of the runtime's network namespace",
                &[("direction", true)],
            )?,
            file_descriptors: gauge(FILE_DESCRIPTORS, "Open file descriptors")?,
            last_net: std::sync::Mutex::new((0, 0)),
            opt,
            registry,
        };
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn encode_text(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn agent_created(&self, agent_type: &str) {
        let l = Labels::new().opt(self.opt.agent_type, agent_type);
        self.agents_total.with_label_values(l.get()).inc();
    }

    pub fn agents_active(&self) -> &IntGauge {
        &self.agents_active
    }

    pub fn execution(&self, agent_type: &str, agent_id: &str, ok: bool, seconds: f64) {
        let o = self.opt;
        let status = if ok { "ok" } else { "error" };
        let l = Labels::new()
            .opt(o.agent_type, agent_type)
            .opt(o.agent_id, agent_id)
            .req(status);
        self.executions.with_label_values(l.get()).inc();
        let l = Labels::new().opt(o.agent_type, agent_type);
        self.execution_duration
            .with_label_values(l.get())
            .observe(seconds);
    }

    pub fn wasm_memory(&self, agent_type: &str, agent_id: &str, bytes: u64) {
        let o = self.opt;
        let l = Labels::new()
            .opt(o.agent_type, agent_type)
            .opt(o.agent_id, agent_id);
        self.wasm_memory
            .with_label_values(l.get())
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Drops a deleted agent's per-agent series so they do not pile up.
    pub fn forget_agent(&self, agent_type: &str, agent_id: &str) {
        let o = self.opt;
        if !o.agent_id {
            return;
        }
        let l = Labels::new()
            .opt(o.agent_type, agent_type)
            .opt(true, agent_id);
        let _ = self.wasm_memory.remove_label_values(l.get());
        for status in ["ok", "error"] {
            let l = Labels::new()
                .opt(o.agent_type, agent_type)
                .opt(true, agent_id)
                .req(status);
            let _ = self.executions.remove_label_values(l.get());
        }
    }

    pub fn message_sent(&self, message_type: &str) {
        let l = Labels::new().opt(self.opt.message_type, message_type);
        self.messages_sent.with_label_values(l.get()).inc();
    }

    pub fn message_received(&self, message_type: &str) {
        let l = Labels::new().opt(self.opt.message_type, message_type);
        self.messages_received.with_label_values(l.get()).inc();
    }

    pub fn message_processed(&self, message_type: &str, seconds: f64) {
        let l = Labels::new().opt(self.opt.message_type, message_type);
        self.message_duration
            .with_label_values(l.get())
            .observe(seconds);
    }

    pub fn message_queue(&self) -> &IntGauge {
        &self.message_queue
    }

    pub fn message_error(&self, kind: &str) {
        self.message_errors.with_label_values(&[kind]).inc();
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

    pub fn http_active_connections(&self) -> &IntGauge {
        &self.http_connections
    }

    pub fn websocket_connections(&self) -> &IntGauge {
        &self.websockets
    }

    pub fn set_system(&self, s: &SystemSample) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.runtime_memory.set(clamp(s.rss_bytes));
        self.runtime_cpu.set(s.cpu_ratio);
        self.file_descriptors.set(clamp(s.open_fds));
        self.disk_usage.set(clamp(s.disk_usage_bytes));
        let mut last = self.last_net.lock().unwrap_or_else(|p| p.into_inner());
        // /proc counters only grow; a smaller reading means a reset, which adds nothing.
        let rx = s.net_rx_bytes.saturating_sub(last.0);
        let tx = s.net_tx_bytes.saturating_sub(last.1);
        self.network_bytes.with_label_values(&["rx"]).inc_by(rx);
        self.network_bytes.with_label_values(&["tx"]).inc_by(tx);
        *last = (s.net_rx_bytes, s.net_tx_bytes);
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
        m.execution("test-agent", "a1", true, 0.002);
        m.execution("test-agent", "a1", false, 0.2);
        m.wasm_memory("test-agent", "a1", 65536);
        m.message_sent("REQUEST");
        m.message_received("REQUEST");
        m.message_processed("REQUEST", 0.003);
        m.message_queue().inc();
        m.message_error("mailbox_full");
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

    #[test]
    fn all_19_seed_names_are_exposed_after_traffic() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        exercise(&m);
        let text = m.encode_text();
        for name in ALL_METRIC_NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(text.contains("# TYPE caxton_agent_executions_total counter"));
        assert!(text.contains("# TYPE caxton_http_request_duration_seconds histogram"));
        assert!(text.contains("# TYPE caxton_message_queue_size gauge"));
        assert!(text.contains(
            r#"caxton_http_requests_total{method="POST",route="/api/agents",status="200"} 1"#
        ));
        assert!(text.contains(r#"caxton_network_bytes_total{direction="rx"} 100"#));
    }

    #[test]
    fn excluded_labels_are_absent_and_buckets_follow_the_config() {
        let cfg = MetricsConfig {
            exclude_labels: vec!["agent_id".into()],
            http_duration_buckets: vec![0.1, 1.0],
            ..MetricsConfig::default()
        };
        let m = Metrics::new(&cfg).unwrap();
        exercise(&m);
        let text = m.encode_text();
        assert!(
            text.contains(
                r#"caxton_agent_executions_total{agent_type="test-agent",status="ok"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("agent_id="));
        assert!(text.contains(r#"caxton_http_request_duration_seconds_bucket{method="POST",route="/api/agents",le="0.1"} 1"#));
        assert!(!text.contains(r#"route="/api/agents",le="0.005""#));
    }

    #[test]
    fn forget_agent_removes_its_series_and_network_counter_never_decreases() {
        let m = Metrics::new(&MetricsConfig::default()).unwrap();
        exercise(&m);
        m.forget_agent("test-agent", "a1");
        let text = m.encode_text();
        assert!(!text.contains(r#"agent_id="a1""#), "{text}");
        let mut s = SystemSample {
            net_rx_bytes: 40,
            ..SystemSample::default()
        };
        m.set_system(&s);
        s.net_rx_bytes = 70;
        m.set_system(&s);
        assert!(
            m.encode_text()
                .contains(r#"caxton_network_bytes_total{direction="rx"} 130"#)
        );
    }

    #[test]
    fn status_codes_render_as_three_digits() {
        assert_eq!(itoa_status(200).as_str(), "200");
        assert_eq!(itoa_status(429).as_str(), "429");
        assert_eq!(itoa_status(5).as_str(), "005");
    }
}
