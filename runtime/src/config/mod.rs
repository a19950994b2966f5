//! The runtime's configuration file (`caxton.toml`).
//!
//! Every table of the monitoring guide (`[observability]`, `[observability.metrics]`,
//! `[observability.logging]`, `[profiling]`) is accepted exactly as the guide prints it, next to
//! the runtime's own `[server]` and `[agents]` tables. Every key is optional; the documented
//! default applies when it is absent, so an empty file (or no file) is a working configuration.
//! `runtime/caxton.example.toml` lists every key with its default.
//!
//! Mistakes are reported, never guessed around: an unknown key, a value of the wrong type or a
//! value out of range is a [`ConfigError`] naming the file, the line and column and the dotted key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::access::Secret;
pub use caxton_profiles::{ProfileType, ProfilingSettings};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Size of one WebAssembly page: the smallest memory an agent can have.
pub const WASM_PAGE_BYTES: u64 = 64 * KIB;

/// The log levels `[observability.logging] level` accepts.
pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The whole `caxton.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listeners and request limits.
    pub server: ServerConfig,
    /// `[agents]`: per-agent resource budgets.
    pub agents: AgentsConfig,
    /// `[observability]`: OpenTelemetry export, metrics and logging (the guide's tables).
    pub observability: ObservabilityConfig,
    /// `[profiling]`: continuous profiling (the guide's table), the profiler's own type.
    pub profiling: ProfilingSettings,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address of the HTTP API (`/api`, `/api/v1`, `/health`, `/ready`, `/ws`).
    /// Default `"127.0.0.1:8080"`.
    #[serde(with = "socket_addr")]
    pub api_address: SocketAddr,
    /// Listen address of the Prometheus endpoint `/metrics`, apart from the API so scrapes
    /// never queue behind API traffic. Default `"127.0.0.1:9090"`.
    #[serde(with = "socket_addr")]
    pub metrics_address: SocketAddr,
    /// Largest accepted request body in bytes; bigger bodies get 413. Default `1048576` (1 MiB).
    pub max_body_bytes: usize,
    /// Most agents that may exist at once; creating one more gets 429. Default `200000`.
    pub max_agents: usize,
    /// Directory for the runtime's files; `caxton_disk_usage_bytes` measures it.
    /// Default `"./data"`.
    pub data_dir: PathBuf,
    /// Keep the agent registry (agents and custom modules) in `<data_dir>/registry.sqlite3`,
    /// so a restart restores every agent not deleted. Mailboxes are not kept. Default `true`.
    pub persist_agents: bool,
    /// When a create or delete counts as on disk: `"full"` (the store's commit is fsynced
    /// first: it survives a power loss) or `"normal"` (written to the OS: it survives a
    /// crash of the runtime, not of the machine; group commits then cost no fsync).
    /// Default `"full"`.
    pub store_sync: StoreSync,
    /// How long `POST /api/messages?wait=true` waits for the agent's reply before answering 504.
    /// Default `"5s"`.
    #[serde(with = "duration_text")]
    pub reply_timeout: Duration,
    /// On SIGTERM, how long queued messages may still execute before the rest are dropped
    /// (counted in `caxton_messages_dropped_total{reason="shutdown"}` and logged). The k8s
    /// Deployment's `terminationGracePeriodSeconds` leaves room for it. Default `"10s"`.
    #[serde(with = "duration_text")]
    pub shutdown_timeout: Duration,
    /// Time a new connection (or a request begun on it) has to send its complete headers
    /// before it is closed. Default `"10s"`.
    #[serde(with = "duration_text")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Default `"30s"`.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// Most open API connections; more wait in the listen backlog. Lowered at start to stay
    /// below the open-files limit (`ulimit -n`), with a log line saying so. Default `10000`.
    pub max_connections: usize,
    /// A token every `/api/*` and `/ws` request must carry as `Authorization: Bearer <token>`
    /// (else 401); `/health` and `/ready` stay open. Never logged nor printed. Default:
    /// absent, the API is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token: Option<Secret>,
    /// A file holding the token (e.g. a mounted Kubernetes Secret), read on start; trailing
    /// newlines are ignored. Not together with `api_token`. Default: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token_file: Option<PathBuf>,
}

/// What [`Config::redacted`] writes in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_address: SocketAddr::new(LOCALHOST, 8080),
            metrics_address: SocketAddr::new(LOCALHOST, 9090),
            max_body_bytes: MIB as usize,
            max_agents: 200_000,
            data_dir: PathBuf::from("./data"),
            persist_agents: true,
            store_sync: StoreSync::Full,
            reply_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            api_token: None,
            api_token_file: None,
        }
    }
}

/// `[server] store_sync`: SQLite's `synchronous` for the agent store (WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreSync {
    Full,
    Normal,
}

/// `[agents]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// Linear-memory cap of one agent instance, in bytes. TOML takes an integer (`16777216`) or
    /// a string with a unit (`"16MiB"`, `"64MB"`, `"1GiB"`; KiB/MiB/GiB/TiB are powers of 1024,
    /// KB/MB/GB/TB powers of 1000). At least 64 KiB (one wasm page). Default `"16MiB"`.
    #[serde(with = "byte_size")]
    pub memory_limit: u64,
    /// Fuel (roughly: wasm instructions) one message may burn before its execution fails.
    /// Default `10000000`.
    pub fuel_per_message: u64,
    /// Wall-clock budget of one `handle_message` call. Default `"1s"`.
    #[serde(with = "duration_text")]
    pub execution_timeout: Duration,
    /// Messages one agent's mailbox holds; a send to a full mailbox is refused (429).
    /// Default `1024`.
    pub mailbox_capacity: usize,
    /// Instance slots of the pooling allocator, i.e. executions that may run at the same time.
    /// Threads' spare stores may keep up to half of them for spent instances (wasm.rs); with
    /// fewer than 4 slots per CPU, stores are not reused. Default `1000`.
    pub max_instances: u32,
    /// Threads that run executions, apart from the async workers that serve HTTP, so that
    /// `/health`, `/metrics` and other agents never wait behind a slow agent. `0` picks
    /// twice the CPUs, at least 4: a slow agent holds one thread for up to
    /// `execution_timeout`, and a few of them must not take every thread. Default `0`.
    pub execution_threads: usize,
    /// Bytes of messages one agent's mailbox holds (the same size units as `memory_limit`);
    /// a send past it is refused (429), a message larger than it can never be queued (413).
    /// Default `"16MiB"`.
    #[serde(with = "byte_size")]
    pub mailbox_bytes: u64,
    /// Bytes of messages queued or executing in the whole runtime; a message shared by
    /// several receivers counts once. A send past it is refused (429). Default `"256MiB"`.
    #[serde(with = "byte_size")]
    pub in_flight_bytes: u64,
    /// Most receivers one message may name (client or agent); more is refused (413).
    /// Default `1024`.
    pub max_receivers: usize,
    /// Most hops of a conversation chain: a message an agent sends while handling a message
    /// of hop `n` is hop `n + 1` (FIPA metadata `caxton-hops`); past this it is refused and
    /// its sender gets a FAILURE. Bounds how long one request can keep agents busy.
    /// Default `16`.
    pub max_hops: u32,
    /// `console_log` lines one execution may write; the rest are dropped and counted in one
    /// warning. Default `100`.
    pub log_lines_per_execution: u32,
    /// `console_log` bytes one execution may write. Default `"64KiB"`.
    #[serde(with = "byte_size")]
    pub log_bytes_per_execution: u64,
    /// Compiled custom agent types kept (compiled code plus module bytes); past it the least
    /// recently used types no agent holds are evicted, and an upload that cannot fit is
    /// refused (429). Same units as `memory_limit`. Default `"256MiB"`.
    #[serde(with = "byte_size")]
    pub module_cache_bytes: u64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            memory_limit: 16 * MIB,
            fuel_per_message: 10_000_000,
            execution_timeout: Duration::from_secs(1),
            mailbox_capacity: 1024,
            max_instances: 1000,
            execution_threads: 0,
            mailbox_bytes: 16 * MIB,
            in_flight_bytes: 256 * MIB,
            max_receivers: 1024,
            max_hops: 16,
            log_lines_per_execution: 100,
            log_bytes_per_execution: 64 * KIB,
            module_cache_bytes: 256 * MIB,
        }
    }
}

impl AgentsConfig {
    /// `execution_threads` with `0` resolved.
    pub fn execution_pool_size(&self) -> usize {
        if self.execution_threads > 0 {
            return self.execution_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (2 * cpus).max(4)
    }
}

/// Wire protocol of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// `"grpc"` (conventionally port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// `"http/protobuf"` (conventionally port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `[observability]`: every key of the guide's `caxton.toml` example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Export traces over OTLP. Default `false` (nothing to send to without a collector).
    pub enable_tracing: bool,
    /// Serve Prometheus metrics on `server.metrics_address`. Default `true`.
    pub enable_metrics: bool,
    /// Export logs over OTLP. Default `false`.
    pub enable_logging: bool,
    /// OTLP collector URL, `http://` or `https://`. Default `"http://127.0.0.1:4317"`.
    pub otlp_endpoint: String,
    /// `"grpc"` or `"http/protobuf"`. Default: absent, meaning chosen from the endpoint's port
    /// (4318 is http/protobuf, anything else gRPC); see
    /// [`ObservabilityConfig::effective_otlp_protocol`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Timeout of one OTLP export. Default `"10s"`.
    #[serde(with = "duration_text")]
    pub otlp_timeout: Duration,
    /// Extra headers on every OTLP request (e.g. `{ "api-key" = "..." }`). Default `{}`.
    pub otlp_headers: BTreeMap<String, String>,
    /// Fraction of traces sampled at the root, within [0, 1]. Default `0.1`.
    pub trace_sample_rate: f64,
    /// Period of the OTLP metrics export. Default `"10s"`.
    #[serde(with = "duration_text")]
    pub metrics_export_interval: Duration,
    /// `service.name` resource attribute. Default `"caxton-runtime"`.
    pub service_name: String,
    /// `service.version` resource attribute. Default: the version of this build.
    pub service_version: String,
    /// `deployment.environment` resource attribute. Default `"development"`.
    pub deployment_environment: String,
    /// `[observability.metrics]`
    pub metrics: MetricsConfig,
    /// `[observability.logging]`
    pub logging: LoggingConfig,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            enable_tracing: false,
            enable_metrics: true,
            enable_logging: false,
            otlp_endpoint: "http://127.0.0.1:4317".to_owned(),
            otlp_protocol: None,
            otlp_timeout: Duration::from_secs(10),
            otlp_headers: BTreeMap::new(),
            trace_sample_rate: 0.1,
            metrics_export_interval: Duration::from_secs(10),
            service_name: "caxton-runtime".to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            deployment_environment: "development".to_owned(),
            metrics: MetricsConfig::default(),
            logging: LoggingConfig::default(),
        }
    }
}

impl ObservabilityConfig {
    /// The OTLP protocol to use: `otlp_protocol` when set, otherwise http/protobuf for an
    /// endpoint on port 4318 (the OTLP/HTTP convention) and gRPC for anything else.
    pub fn effective_otlp_protocol(&self) -> OtlpProtocol {
        if let Some(protocol) = self.otlp_protocol {
            return protocol;
        }
        match parse_http_url(&self.otlp_endpoint) {
            Ok(url) if url.port == Some(4318) => OtlpProtocol::HttpProtobuf,
            _ => OtlpProtocol::Grpc,
        }
    }
}

/// `[observability.metrics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Upper bounds (seconds) of the HTTP request-duration histogram buckets; non-empty, > 0,
    /// strictly increasing. Default: the guide's
    /// `[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]`.
    pub http_duration_buckets: Vec<f64>,
    /// Upper bounds (seconds) of the agent-execution and message-processing histograms; same
    /// rules. Default: the guide's `[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0]`.
    pub agent_execution_buckets: Vec<f64>,
    /// Optional labels to attach where a metric supports them.
    /// Default `["agent_type", "agent_id", "message_type"]`.
    pub include_labels: Vec<String>,
    /// Labels never attached, even when included. Default `["sensitive_data"]`.
    pub exclude_labels: Vec<String>,
    /// Period of the OTLP metrics export. Default `"15s"`.
    #[serde(with = "duration_text")]
    pub export_interval: Duration,
    /// Timeout of one metrics export. Default `"5s"`.
    #[serde(with = "duration_text")]
    pub export_timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            http_duration_buckets: vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            agent_execution_buckets: vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0],
            include_labels: ["agent_type", "agent_id", "message_type"]
                .map(String::from)
                .to_vec(),
            exclude_labels: vec!["sensitive_data".to_owned()],
            export_interval: Duration::from_secs(15),
            export_timeout: Duration::from_secs(5),
        }
    }
}

impl MetricsConfig {
    /// Whether the optional label `label` is attached: it is included and not excluded.
    pub fn label_enabled(&self, label: &str) -> bool {
        self.include_labels.iter().any(|l| l == label)
            && !self.exclude_labels.iter().any(|l| l == label)
    }
}

/// Log line encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `"json"`: one JSON object per line.
    Json,
    /// `"text"`: human-readable lines.
    Text,
}

/// Where log lines go. TOML: `"stdout"`, `"stderr"`, or any other string as a file path
/// (write `"./stdout"` for a file that happens to be called stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogOutput {
    /// `"stdout"`
    Stdout,
    /// `"stderr"`
    Stderr,
    /// Any other string: append to this file.
    File(PathBuf),
}

impl TryFrom<String> for LogOutput {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "stdout" => Ok(LogOutput::Stdout),
            "stderr" => Ok(LogOutput::Stderr),
            "" => Err(r#"empty log output; expected "stdout", "stderr" or a file path"#.to_owned()),
            _ => Ok(LogOutput::File(PathBuf::from(value))),
        }
    }
}

impl From<LogOutput> for String {
    fn from(value: LogOutput) -> Self {
        match value {
            LogOutput::Stdout => "stdout".to_owned(),
            LogOutput::Stderr => "stderr".to_owned(),
            LogOutput::File(path) => path.to_string_lossy().into_owned(),
        }
    }
}

/// `[observability.logging]`: every key of the guide's example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Minimum level: one of `trace`, `debug`, `info`, `warn`, `error`. Default `"info"`.
    pub level: String,
    /// `"json"` or `"text"`. Default `"json"`.
    pub format: LogFormat,
    /// `"stdout"`, `"stderr"` or a file path. Default `"stdout"`.
    pub output: LogOutput,
    /// Add the current trace id to each log line. Default `true`.
    pub include_trace_id: bool,
    /// Add the current span id to each log line. Default `true`.
    pub include_span_id: bool,
    /// Timestamp encoding; `"rfc3339"` is the only one supported. Default `"rfc3339"`.
    pub timestamp_format: String,
    /// JSON field name of the level. Default `"level"`.
    pub level_key: String,
    /// JSON field name of the message. Default `"message"`.
    pub message_key: String,
    /// JSON field name of the trace id. Default `"trace_id"`.
    pub trace_id_key: String,
    /// JSON field name of the span id. Default `"span_id"`.
    pub span_id_key: String,
    /// Fraction of debug-level events kept, within [0, 1]. Default `0.01`.
    pub debug_sample_rate: f64,
    /// Fraction of trace-level events kept, within [0, 1]. Default `0.1`.
    pub trace_sample_rate: f64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Json,
            output: LogOutput::Stdout,
            include_trace_id: true,
            include_span_id: true,
            timestamp_format: "rfc3339".to_owned(),
            level_key: "level".to_owned(),
            message_key: "message".to_owned(),
            trace_id_key: "trace_id".to_owned(),
            span_id_key: "span_id".to_owned(),
            debug_sample_rate: 0.01,
            trace_sample_rate: 0.1,
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`; errors name `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` (usually the file name) starts every error message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| parse_error(&e, text, origin))?;
        config
            .check()
            .map_err(|violation| violation.into_error(origin, Some(text)))?;
        Ok(config)
    }

    /// The `config_parse` fuzz target (fuzz/) and its corpus replay: any text parses or is
    /// refused with an error; an accepted configuration validates and prints.
    #[doc(hidden)]
    pub fn fuzz_parse(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(config) = Config::from_toml_str(text, "fuzz.toml") {
            config
                .validate()
                .expect("an accepted configuration validates");
            toml::to_string(&config.redacted()).expect("an accepted configuration prints");
        }
    }

    /// Checks the rules a value's type cannot express (ranges, orderings, URL shapes). The error
    /// carries no file position; [`Config::from_toml_str`] adds it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|violation| violation.into_error("<in-memory config>", None))
    }

    /// The defaults, but listening on ephemeral loopback ports and keeping files in the system
    /// temp dir, so tests can run side by side.
    pub fn for_tests() -> Config {
        let mut config = Config::default();
        config.server.api_address = SocketAddr::new(LOCALHOST, 0);
        config.server.metrics_address = SocketAddr::new(LOCALHOST, 0);
        config.server.data_dir = std::env::temp_dir();
        // Tests share the temp dir: one that wants a store gives its own directory.
        config.server.persist_agents = false;
        // The first server of a test process installs the log subscriber: its warnings go
        // where a failing test's output is read, without every request's info line.
        config.observability.logging.output = LogOutput::Stderr;
        config.observability.logging.level = "warn".to_owned();
        config
    }

    /// This configuration with its secrets replaced by [`REDACTED`], for printing: the
    /// values of `otlp_headers` (API keys, bearer tokens) and any user info in
    /// `otlp_endpoint` (`https://user:pass@host`).
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        let o = &mut shown.observability;
        for value in o.otlp_headers.values_mut() {
            *value = REDACTED.to_owned();
        }
        if let Some((scheme, rest)) = o.otlp_endpoint.split_once("://")
            && let Some((_userinfo, host)) = rest.split_once('@')
        {
            o.otlp_endpoint = format!("{scheme}://{REDACTED}@{host}");
        }
        shown
    }

    fn check(&self) -> Result<(), Violation> {
        let server = &self.server;
        positive("server.max_body_bytes", server.max_body_bytes as u64)?;
        positive("server.max_agents", server.max_agents as u64)?;
        nonzero_duration("server.reply_timeout", server.reply_timeout)?;
        nonzero_duration("server.shutdown_timeout", server.shutdown_timeout)?;
        nonzero_duration("server.header_read_timeout", server.header_read_timeout)?;
        nonzero_duration("server.idle_timeout", server.idle_timeout)?;
        positive("server.max_connections", server.max_connections as u64)?;
        if let Some(token) = &server.api_token {
            ensure(
                !token.expose().is_empty(),
                "server.api_token",
                "\"\"",
                "must not be empty (leave it out for an open API)",
            )?;
            ensure(
                server.api_token_file.is_none(),
                "server.api_token_file",
                "set",
                "give server.api_token or server.api_token_file, not both",
            )?;
        }

        let agents = &self.agents;
        ensure(
            agents.memory_limit >= WASM_PAGE_BYTES,
            "agents.memory_limit",
            agents.memory_limit,
            "must be at least 65536 bytes (64KiB, one wasm page)",
        )?;
        positive("agents.fuel_per_message", agents.fuel_per_message)?;
        nonzero_duration("agents.execution_timeout", agents.execution_timeout)?;
        positive("agents.mailbox_capacity", agents.mailbox_capacity as u64)?;
        positive("agents.max_instances", u64::from(agents.max_instances))?;
        positive("agents.mailbox_bytes", agents.mailbox_bytes)?;
        positive("agents.in_flight_bytes", agents.in_flight_bytes)?;
        positive("agents.max_receivers", agents.max_receivers as u64)?;
        positive("agents.max_hops", u64::from(agents.max_hops))?;

        let obs = &self.observability;
        http_url("observability.otlp_endpoint", &obs.otlp_endpoint)?;
        nonzero_duration("observability.otlp_timeout", obs.otlp_timeout)?;
        sample_rate("observability.trace_sample_rate", obs.trace_sample_rate)?;
        nonzero_duration(
            "observability.metrics_export_interval",
            obs.metrics_export_interval,
        )?;
        non_empty("observability.service_name", &obs.service_name)?;

        let metrics = &obs.metrics;
        buckets(
            "observability.metrics.http_duration_buckets",
            &metrics.http_duration_buckets,
        )?;
        buckets(
            "observability.metrics.agent_execution_buckets",
            &metrics.agent_execution_buckets,
        )?;
        nonzero_duration(
            "observability.metrics.export_interval",
            metrics.export_interval,
        )?;
        nonzero_duration(
            "observability.metrics.export_timeout",
            metrics.export_timeout,
        )?;

        let logging = &obs.logging;
        ensure(
            LOG_LEVELS.contains(&logging.level.as_str()),
            "observability.logging.level",
            quoted(&logging.level),
            "must be one of trace, debug, info, warn, error",
        )?;
        ensure(
            logging.timestamp_format == "rfc3339",
            "observability.logging.timestamp_format",
            quoted(&logging.timestamp_format),
            r#"only "rfc3339" is supported"#,
        )?;
        let field_keys = [
            ("observability.logging.level_key", &logging.level_key),
            ("observability.logging.message_key", &logging.message_key),
            ("observability.logging.trace_id_key", &logging.trace_id_key),
            ("observability.logging.span_id_key", &logging.span_id_key),
        ];
        for (i, (key, value)) in field_keys.iter().enumerate() {
            non_empty(key, value)?;
            // Two fields under one JSON name would overwrite each other in every log line.
            if let Some((other, _)) = field_keys[..i].iter().find(|(_, v)| v == value) {
                return Err(Violation::new(
                    key,
                    quoted(value),
                    format!("must differ from {other}"),
                ));
            }
        }
        sample_rate(
            "observability.logging.debug_sample_rate",
            logging.debug_sample_rate,
        )?;
        sample_rate(
            "observability.logging.trace_sample_rate",
            logging.trace_sample_rate,
        )?;

        // `[profiling]` is the profiler's own type and carries its own rules.
        self.profiling.validate().map_err(|e| {
            let value = toml::Value::try_from(&self.profiling)
                .ok()
                .and_then(|table| table.get(e.key).map(ToString::to_string))
                .unwrap_or_default();
            Violation::new(&format!("profiling.{}", e.key), value, e.reason)
        })?;
        Ok(())
    }
}

/// Why a configuration was refused. The message names the file, the position (`line:column`,
/// 1-based) where known, and the dotted key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not TOML, or a key or value does not fit the schema (unknown key, wrong type,
    /// unparsable duration, size or address).
    #[error("{at}: {message}{}", key_note(.key.as_deref()))]
    Parse {
        /// Where.
        at: Location,
        /// Dotted key the error is about, when it can be told.
        key: Option<String>,
        /// The parser's description.
        message: String,
    },
    /// A well-formed value breaks a rule (range, ordering, URL shape).
    #[error("{at}: {key} = {value}: {reason}")]
    Invalid {
        /// Where.
        at: Location,
        /// Dotted key, e.g. `observability.trace_sample_rate`.
        key: String,
        /// The offending value as TOML.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// The 1-based line of the error in the file, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => {
                at.position.map(|p| p.line)
            }
        }
    }
}

fn key_note(key: Option<&str>) -> String {
    key.map(|k| format!(", key `{k}`")).unwrap_or_default()
}

/// A place in a configuration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or whatever the caller passed as origin).
    pub origin: String,
    /// Line and column, when the place is known.
    pub position: Option<LineCol>,
}

/// 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
}

impl LineCol {
    fn of_offset(text: &str, offset: usize) -> Option<LineCol> {
        let before = text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(LineCol {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        Ok(())
    }
}

fn parse_error(err: &toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let offset = err.span().map(|span| span.start);
    ConfigError::Parse {
        at: Location {
            origin: origin.to_owned(),
            position: offset.and_then(|o| LineCol::of_offset(text, o)),
        },
        key: offset.and_then(|o| key_at_offset(text, o)),
        message: err.message().trim_end().to_owned(),
    }
}

/// The dotted key whose name or value covers byte `offset` of `text`. serde's messages name
/// only the innermost field; this recovers the table path around it.
fn key_at_offset(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_path_in_table(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn key_path_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key_segment(key.get_ref()));
        // Children first: a table's span (its header or braces) may enclose its keys.
        if key.span().contains(&offset)
            || key_path_in_value(value, offset, path)
            || value.span().contains(&offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

fn key_path_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => key_path_in_table(table, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut inner = Vec::new();
                if key_path_in_value(item, offset, &mut inner) || item.span().contains(&offset) {
                    if let Some(last) = path.last_mut() {
                        last.push_str(&format!("[{i}]"));
                    }
                    path.extend(inner);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { key.to_owned() } else { quoted(key) }
}

/// Byte span of the key `dotted` (plain segments, no quoting) in `text`.
fn key_span(text: &str, dotted: &str) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut segments = dotted.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == segment)?;
        if segments.peek().is_none() {
            return Some(key.span());
        }
        table = value.get_ref().as_table()?;
    }
    None
}

/// A broken rule, before it is placed in a file.
#[derive(Debug)]
struct Violation {
    key: String,
    value: String,
    reason: String,
}

impl Violation {
    fn new(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn into_error(self, origin: &str, text: Option<&str>) -> ConfigError {
        let position = text.and_then(|text| {
            let span = key_span(text, &self.key)?;
            LineCol::of_offset(text, span.start)
        });
        ConfigError::Invalid {
            at: Location {
                origin: origin.to_owned(),
                position,
            },
            key: self.key,
            value: self.value,
            reason: self.reason,
        }
    }
}

fn ensure(ok: bool, key: &str, value: impl fmt::Display, reason: &str) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation::new(key, value, reason))
    }
}

fn positive(key: &str, value: u64) -> Result<(), Violation> {
    ensure(value > 0, key, value, "must be > 0")
}

fn nonzero_duration(key: &str, value: Duration) -> Result<(), Violation> {
    ensure(
        !value.is_zero(),
        key,
        quoted(&humantime::format_duration(value).to_string()),
        "must be longer than zero",
    )
}

fn non_empty(key: &str, value: &str) -> Result<(), Violation> {
    ensure(!value.is_empty(), key, quoted(value), "must not be empty")
}

fn sample_rate(key: &str, value: f64) -> Result<(), Violation> {
    ensure(
        (0.0..=1.0).contains(&value),
        key,
        value,
        "must be within [0, 1]",
    )
}

fn buckets(key: &str, bounds: &[f64]) -> Result<(), Violation> {
    let shown = format!("{bounds:?}");
    if bounds.is_empty() {
        return Err(Violation::new(key, shown, "must not be empty"));
    }
    if let Some(bad) = bounds.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
        return Err(Violation::new(
            key,
            shown,
            format!("every bound must be finite and > 0, found {bad}"),
        ));
    }
    if let Some(pair) = bounds.windows(2).find(|w| w[1] <= w[0]) {
        return Err(Violation::new(
            key,
            shown,
            format!(
                "must be strictly increasing, found {} after {}",
                pair[1], pair[0]
            ),
        ));
    }
    Ok(())
}

fn http_url(key: &str, value: &str) -> Result<(), Violation> {
    parse_http_url(value)
        .map(|_| ())
        .map_err(|reason| Violation::new(key, quoted(value), reason))
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The parts of an `http(s)://host[:port][/path]` URL the runtime needs.
struct HttpUrl {
    port: Option<u16>,
}

/// A deliberately small check: scheme, non-empty host, numeric port. Enough to catch the usual
/// mistakes (`otel-collector:4317` without a scheme, a typo in the port) before an exporter
/// fails at run time far from the config file.
fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| "must be an http:// or https:// URL".to_owned())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "unterminated [IPv6] host".to_owned())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the IPv6 host"))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("must name a host".to_owned());
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number in 0..=65535"))
        })
        .transpose()?;
    Ok(HttpUrl { port })
}

/// Parses `"16MiB"`, `"64MB"`, `"1GiB"`, `"4096"`. Binary units (KiB, MiB, GiB, TiB, also
/// Kubernetes' Ki/Mi/Gi/Ti) are powers of 1024; decimal ones (kB, MB, GB, TB) powers of 1000.
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return Err(format!(
            "invalid byte size {text:?}: expected a whole number with an optional unit, e.g. \"16MiB\""
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid byte size {text:?}: number too large"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" => KIB,
        "mib" | "mi" => MIB,
        "gib" | "gi" => GIB,
        "tib" | "ti" => TIB,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "invalid byte size {text:?}: unknown unit {other:?}, expected one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid byte size {text:?}: does not fit in 64 bits"))
}

/// Byte sizes as an integer or a string with a unit; written back in the largest exact
/// binary unit so a dumped config reads like a hand-written one.
mod byte_size {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    use super::{GIB, KIB, MIB, parse_byte_size};

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        let bytes = *bytes;
        for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if bytes >= size && bytes.is_multiple_of(size) {
                return s.collect_str(&format_args!("{}{unit}", bytes / size));
            }
        }
        s.serialize_u64(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }

    struct ByteSizeVisitor;

    impl Visitor<'_> for ByteSizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a byte count such as 16777216 or "16MiB""#)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("invalid byte size {v}: negative")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_byte_size(v).map_err(E::custom)
        }
    }
}

/// Socket addresses as `"IP:port"` strings. serde's own impl says only "invalid socket address
/// syntax"; this names the value and the expected shape (host names are not resolved).
mod socket_addr {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        d.deserialize_str(AddrVisitor)
    }

    struct AddrVisitor;

    impl Visitor<'_> for AddrVisitor {
        type Value = SocketAddr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"an address such as "127.0.0.1:8080" or "[::1]:8080""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            v.parse().map_err(|_| {
                E::custom(format!(
                    r#"invalid address {v:?}: expected IP:port such as "127.0.0.1:8080" or "[::1]:8080" (host names are not resolved)"#
                ))
            })
        }
    }
}

/// Durations as human-readable strings ("10s", "500ms", "2m", "1h 30m").
mod duration_text {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration string such as "10s", "500ms" or "2m""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    r#"invalid duration {v:?}: {e}; expected e.g. "10s", "500ms", "2m""#
                ))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_TABLES: &str = include_str!("../tests/fixtures/seed-tables.toml");
    const EXAMPLE: &str = include_str!("../caxton.example.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "caxton.toml")
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_validate_and_empty_file_is_defaults() {
        Config::default().validate().unwrap();
        Config::for_tests().validate().unwrap();
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn redacted_hides_header_values_and_endpoint_credentials_only() {
        let mut c = Config::default();
        c.observability
            .otlp_headers
            .insert("api-key".into(), "s3cret".into());
        c.observability.otlp_endpoint = "https://user:pw@collector:4318".into();
        let shown = toml::to_string(&c.redacted()).unwrap();
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
        assert!(
            shown.contains("api-key") && shown.contains("collector:4318"),
            "{shown}"
        );
        assert_eq!(c.redacted().server, c.server);
    }

    #[test]
    fn for_tests_uses_ephemeral_loopback_ports() {
        let c = Config::for_tests();
        assert_eq!(c.server.api_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.server.metrics_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.server.data_dir, std::env::temp_dir());
        assert_eq!(c.agents, AgentsConfig::default());
    }

    #[test]
    fn documented_defaults() {
        let c = Config::default();
        assert_eq!(c.server.api_address, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.metrics_address, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.server.max_body_bytes, 1_048_576);
        assert_eq!(c.server.max_agents, 200_000);
        assert_eq!(c.server.reply_timeout, Duration::from_secs(5));
        assert_eq!(c.agents.memory_limit, 16_777_216);
        assert_eq!(c.agents.fuel_per_message, 10_000_000);
        assert_eq!(c.agents.mailbox_capacity, 1024);
        assert_eq!(c.agents.max_instances, 1000);
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.agents.execution_threads, 0);
        assert!(c.agents.execution_pool_size() >= 4);
        assert_eq!(c.agents.mailbox_bytes, 16 << 20);
        assert_eq!(c.agents.in_flight_bytes, 256 << 20);
        assert_eq!(c.agents.max_receivers, 1024);
        assert_eq!(c.agents.max_hops, 16);
        assert_eq!(c.agents.log_lines_per_execution, 100);
        assert_eq!(c.agents.log_bytes_per_execution, 65536);
        let o = &c.observability;
        assert!((!o.enable_tracing, o.enable_metrics, !o.enable_logging) == (true, true, true));
        assert_eq!(o.trace_sample_rate, 0.1);
        assert_eq!(o.metrics.http_duration_buckets.len(), 12);
        assert_eq!(o.metrics.agent_execution_buckets.len(), 9);
        assert_eq!(
            c.profiling.server_address,
            "127.0.0.1:6060".parse().unwrap()
        );
        assert_eq!(c.profiling.sample_rate, 100);
    }

    #[test]
    fn seed_tables_parse_unchanged() {
        let c = Config::from_toml_str(SEED_TABLES, "seed-tables.toml").unwrap();
        let o = &c.observability;
        assert!(o.enable_tracing && o.enable_metrics && o.enable_logging);
        assert_eq!(o.otlp_endpoint, "http://otel-collector:4317");
        assert_eq!(o.otlp_timeout, Duration::from_secs(10));
        assert_eq!(
            o.otlp_headers.get("api-key").map(String::as_str),
            Some("your-api-key")
        );
        assert_eq!(o.trace_sample_rate, 0.1);
        assert_eq!(o.deployment_environment, "production");
        assert_eq!(
            o.metrics.http_duration_buckets,
            [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
            ]
        );
        assert_eq!(
            o.metrics.agent_execution_buckets,
            [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0]
        );
        assert_eq!(o.metrics.export_interval, Duration::from_secs(15));
        assert_eq!(o.metrics.export_timeout, Duration::from_secs(5));
        assert!(o.metrics.label_enabled("agent_id"));
        assert!(!o.metrics.label_enabled("sensitive_data"));
        assert_eq!(o.logging.format, LogFormat::Json);
        assert_eq!(o.logging.output, LogOutput::Stdout);
        assert_eq!(o.logging.debug_sample_rate, 0.01);
        assert_eq!(o.logging.trace_id_key, "trace_id");
        let p = &c.profiling;
        assert!(p.enabled);
        assert_eq!(p.endpoint.as_deref(), Some("http://pyroscope:4040"));
        assert_eq!(p.server_address, "0.0.0.0:6060".parse().unwrap());
        assert_eq!(p.sample_rate, 100);
        assert_eq!(p.profile_types.len(), 5);
        assert_eq!(p.profile_types[4], ProfileType::InuseSpace);
    }

    #[test]
    fn example_file_equals_defaults() {
        let example = Config::from_toml_str(EXAMPLE, "caxton.example.toml").unwrap();
        assert_eq!(example, Config::default());
    }

    /// Parsing alone cannot notice a key missing from the example (its default fills in), so
    /// compare the example's keys with every key a config serializes to. Keys without a fixed
    /// default (optional ones, the build's version) may appear as a commented `# key = ...`.
    #[test]
    fn example_file_spells_out_every_key() {
        fn leaves(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            match value.as_table() {
                Some(table) if !table.is_empty() => {
                    for (k, v) in table {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(v, &path, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut every_key_set = Config::default();
        every_key_set.observability.otlp_protocol = Some(OtlpProtocol::Grpc);
        every_key_set.profiling.endpoint = Some("http://127.0.0.1:4040".into());
        every_key_set.server.api_token = Some(Secret::new("t"));
        every_key_set.server.api_token_file = Some("/run/secrets/caxton/api-token".into());
        let mut expected = Vec::new();
        leaves(
            &toml::Value::try_from(every_key_set).unwrap(),
            "",
            &mut expected,
        );
        let example: toml::Value = toml::from_str(EXAMPLE).unwrap();
        let commented = |key: &str| {
            let leaf = key.rsplit('.').next().unwrap();
            EXAMPLE
                .lines()
                .any(|line| line.starts_with(&format!("# {leaf} = ")))
        };
        let missing: Vec<_> = expected
            .iter()
            .filter(|key| {
                key.split('.')
                    .try_fold(&example, |v, segment| v.get(segment))
                    .is_none()
                    && !commented(key)
            })
            .collect();
        assert!(missing.is_empty(), "caxton.example.toml lacks {missing:?}");
        assert!(expected.len() > 40, "only {} keys found", expected.len());
    }

    #[test]
    fn serialized_config_parses_back_identical() {
        let mut c = Config::default();
        c.agents.memory_limit = 3 * MIB + 1;
        c.observability.otlp_protocol = Some(OtlpProtocol::HttpProtobuf);
        c.observability.logging.output = LogOutput::File("/var/log/caxton.log".into());
        c.observability
            .otlp_headers
            .insert("api-key".into(), "k".into());
        c.profiling.endpoint = Some("https://pyroscope.example:4040".into());
        c.server.reply_timeout = Duration::from_millis(1500);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn unknown_key_names_key_table_file_and_line() {
        let msg = error("[server]\napi_adress = \"127.0.0.1:1\"\n");
        assert!(msg.starts_with("caxton.toml:2:1: "), "{msg}");
        assert!(msg.contains("unknown field `api_adress`"), "{msg}");
        assert!(msg.contains("key `server.api_adress`"), "{msg}");

        let msg = error("[observability.logging]\nlevel = \"info\"\n  colour = true\n");
        assert!(msg.starts_with("caxton.toml:3:3: "), "{msg}");
        assert!(msg.contains("key `observability.logging.colour`"), "{msg}");

        let msg = error("[agents]\nmailbox_capacity = 8\n[sever]\nx = 1\n");
        assert!(msg.starts_with("caxton.toml:3:"), "{msg}");
        assert!(msg.contains("`sever`"), "{msg}");
    }

    #[test]
    fn unknown_key_inside_inline_table_is_located() {
        let msg = error("observability = { metrics = { buckets = [1.0] } }\n");
        assert!(msg.contains("unknown field `buckets`"), "{msg}");
        assert!(msg.contains("key `observability.metrics.buckets`"), "{msg}");
        assert!(msg.starts_with("caxton.toml:1:"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let msg = error("[server]\nmax_agents = \"many\"\n");
        assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
        assert!(msg.contains("key `server.max_agents`"), "{msg}");
    }

    #[test]
    fn bad_enum_in_array_names_element() {
        let msg = error("[profiling]\nprofile_types = [\"cpu\", \"heap\"]\n");
        assert!(msg.contains("heap"), "{msg}");
        assert!(msg.contains("key `profiling.profile_types[1]`"), "{msg}");
        assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
    }

    #[test]
    fn syntax_error_has_position() {
        let msg = error("[server]\napi_address = \n");
        assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
    }

    #[test]
    fn out_of_range_sample_rate_names_key_and_line() {
        let msg = error("[observability]\ntrace_sample_rate = 1.5\n");
        assert_eq!(
            msg,
            "caxton.toml:2:1: observability.trace_sample_rate = 1.5: must be within [0, 1]"
        );
        let err = parse("[observability.logging]\ndebug_sample_rate = -0.1\n").unwrap_err();
        assert_eq!(err.key(), Some("observability.logging.debug_sample_rate"));
        assert_eq!(err.line(), Some(2));
        let err = parse("observability.logging.trace_sample_rate = nan\n").unwrap_err();
        assert_eq!(err.key(), Some("observability.logging.trace_sample_rate"));
        assert_eq!(err.line(), Some(1));
        parse("[observability]\ntrace_sample_rate = 1\n").unwrap();
    }

    #[test]
    fn buckets_must_be_positive_and_strictly_increasing() {
        let msg = error("[observability.metrics]\nhttp_duration_buckets = [0.1, 0.5, 0.5, 1.0]\n");
        assert!(
            msg.starts_with("caxton.toml:2:1: observability.metrics.http_duration_buckets = "),
            "{msg}"
        );
        assert!(
            msg.contains("strictly increasing, found 0.5 after 0.5"),
            "{msg}"
        );

        let err = parse("[observability.metrics]\nagent_execution_buckets = [1.0, 0.5]\n");
        assert_eq!(
            err.unwrap_err().key(),
            Some("observability.metrics.agent_execution_buckets")
        );
        let msg = error("[observability.metrics]\nagent_execution_buckets = []\n");
        assert!(msg.contains("must not be empty"), "{msg}");
        let msg = error("[observability.metrics]\nhttp_duration_buckets = [0.0, 1.0]\n");
        assert!(msg.contains("finite and > 0"), "{msg}");
        let msg = error("[observability.metrics]\nhttp_duration_buckets = [1.0, inf]\n");
        assert!(msg.contains("finite and > 0"), "{msg}");
    }

    #[test]
    fn memory_limit_accepts_bytes_and_units() {
        let limit = |v: &str| {
            parse(&format!("[agents]\nmemory_limit = {v}\n")).map(|c| c.agents.memory_limit)
        };
        assert_eq!(limit("\"16MiB\"").unwrap(), 16_777_216);
        assert_eq!(limit("16777216").unwrap(), 16_777_216);
        assert_eq!(limit("\"64MB\"").unwrap(), 64_000_000);
        assert_eq!(limit("\"1GiB\"").unwrap(), 1_073_741_824);
        assert_eq!(limit("\"512 KiB\"").unwrap(), 524_288);
        assert_eq!(limit("\"256Mi\"").unwrap(), 256 * MIB);

        let msg = limit("\"16 parsecs\"").unwrap_err().to_string();
        assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
        assert!(msg.contains("unknown unit \"parsecs\""), "{msg}");
        assert!(msg.contains("key `agents.memory_limit`"), "{msg}");
        let msg = limit("-5").unwrap_err().to_string();
        assert!(msg.contains("negative"), "{msg}");
        let msg = limit("\"1000\"").unwrap_err().to_string();
        assert_eq!(
            msg,
            "caxton.toml:2:1: agents.memory_limit = 1000: must be at least 65536 bytes (64KiB, one wasm page)"
        );
        assert!(
            limit("\"99999999TiB\"")
                .unwrap_err()
                .to_string()
                .contains("64 bits")
        );
    }

    #[test]
    fn durations_parse_and_bad_ones_name_key() {
        let c = parse(
            "[observability]\notlp_timeout = \"500ms\"\n[agents]\nexecution_timeout = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(c.observability.otlp_timeout, Duration::from_millis(500));
        assert_eq!(c.agents.execution_timeout, Duration::from_secs(120));

        let msg = error("[observability]\notlp_timeout = \"10 parsecs\"\n");
        assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
        assert!(msg.contains("invalid duration \"10 parsecs\""), "{msg}");
        assert!(msg.contains("key `observability.otlp_timeout`"), "{msg}");

        let msg = error("[server]\nreply_timeout = 5\n");
        assert!(msg.contains("key `server.reply_timeout`"), "{msg}");
        assert!(msg.contains("a duration string"), "{msg}");

        let err = parse("[agents]\nexecution_timeout = \"0s\"\n").unwrap_err();
        assert_eq!(err.key(), Some("agents.execution_timeout"));
    }

    #[test]
    fn bad_address_names_key() {
        let msg = error("[server]\n\nmetrics_address = \"localhost\"\n");
        assert!(msg.starts_with("caxton.toml:3:"), "{msg}");
        assert!(
            msg.contains("invalid address \"localhost\": expected IP:port"),
            "{msg}"
        );
        assert!(msg.contains("key `server.metrics_address`"), "{msg}");
        let c = parse("[server]\napi_address = \"[::1]:8081\"\n").unwrap();
        assert_eq!(c.server.api_address, "[::1]:8081".parse().unwrap());
    }

    #[test]
    fn zero_limits_are_rejected() {
        for (table, key) in [
            ("agents", "mailbox_capacity"),
            ("agents", "fuel_per_message"),
            ("agents", "max_instances"),
            ("agents", "mailbox_bytes"),
            ("agents", "max_receivers"),
            ("agents", "max_hops"),
            ("server", "max_agents"),
            ("server", "max_body_bytes"),
        ] {
            let err = parse(&format!("[{table}]\n{key} = 0\n")).unwrap_err();
            let dotted = format!("{table}.{key}");
            assert_eq!(err.key(), Some(dotted.as_str()));
            assert!(err.to_string().ends_with("= 0: must be > 0"), "{err}");
        }
    }

    #[test]
    fn otlp_endpoint_must_be_http_url() {
        let msg = error("[observability]\notlp_endpoint = \"otel-collector:4317\"\n");
        assert!(
            msg.contains("observability.otlp_endpoint = \"otel-collector:4317\": must be an http:// or https:// URL"),
            "{msg}"
        );
        let msg = error("[observability]\notlp_endpoint = \"http://collector:43x7\"\n");
        assert!(msg.contains("port \"43x7\""), "{msg}");
        assert!(
            error("[observability]\notlp_endpoint = \"http://\"\n").contains("must name a host")
        );
        parse("[observability]\notlp_endpoint = \"https://[::1]:4318/v1\"\n").unwrap();
        let msg = error("[profiling]\nendpoint = \"pyroscope:4040\"\n");
        assert!(msg.contains("profiling.endpoint"), "{msg}");
    }

    #[test]
    fn otlp_protocol_explicit_or_from_port() {
        let protocol = |toml: &str| parse(toml).unwrap().observability.effective_otlp_protocol();
        assert_eq!(protocol(""), OtlpProtocol::Grpc);
        assert_eq!(
            protocol("[observability]\notlp_endpoint = \"http://c:4318\"\n"),
            OtlpProtocol::HttpProtobuf
        );
        assert_eq!(
            protocol(
                "[observability]\notlp_endpoint = \"http://c:4318\"\notlp_protocol = \"grpc\"\n"
            ),
            OtlpProtocol::Grpc
        );
        assert_eq!(
            protocol("[observability]\notlp_protocol = \"http/protobuf\"\n"),
            OtlpProtocol::HttpProtobuf
        );
        assert!(error("[observability]\notlp_protocol = \"http\"\n").contains("otlp_protocol"));
    }

    #[test]
    fn profiling_sample_rate_bounds() {
        for bad in ["0", "1001"] {
            let err = parse(&format!("[profiling]\nsample_rate = {bad}\n")).unwrap_err();
            assert_eq!(err.key(), Some("profiling.sample_rate"));
            assert!(err.to_string().contains("1..=1000"), "{err}");
        }
        parse("[profiling]\nsample_rate = 1000\n").unwrap();
        let err = parse("[profiling]\nenabled = true\nprofile_types = []\n").unwrap_err();
        assert_eq!(err.key(), Some("profiling.profile_types"));
    }

    #[test]
    fn profiling_sampler_names() {
        for (name, want) in [
            ("auto", caxton_profiles::Sampler::Auto),
            ("perf_event", caxton_profiles::Sampler::PerfEvent),
            ("signal", caxton_profiles::Sampler::Signal),
        ] {
            let c = parse(&format!("[profiling]\nsampler = \"{name}\"\n")).unwrap();
            assert_eq!(c.profiling.sampler, want);
        }
        let msg = error("[profiling]\nsampler = \"perf\"\n");
        assert!(
            msg.contains("profiling.sampler") && msg.contains("perf_event"),
            "{msg}"
        );
    }

    #[test]
    fn logging_level_format_and_output() {
        let msg = error("[observability.logging]\nlevel = \"verbose\"\n");
        assert!(msg.contains("trace, debug, info, warn, error"), "{msg}");
        let msg = error("[observability.logging]\ntimestamp_format = \"unix\"\n");
        assert!(msg.contains(r#"only "rfc3339" is supported"#), "{msg}");
        let msg = error("[observability.logging]\nmessage_key = \"level\"\n");
        assert!(
            msg.contains("must differ from observability.logging.level_key"),
            "{msg}"
        );
        let c = parse("[observability.logging]\nformat = \"text\"\noutput = \"stderr\"\n").unwrap();
        assert_eq!(c.observability.logging.format, LogFormat::Text);
        assert_eq!(c.observability.logging.output, LogOutput::Stderr);
        let c = parse("[observability.logging]\noutput = \"/var/log/caxton.log\"\n").unwrap();
        assert_eq!(
            c.observability.logging.output,
            LogOutput::File("/var/log/caxton.log".into())
        );
        assert!(error("[observability.logging]\noutput = \"\"\n").contains("empty log output"));
    }

    #[test]
    fn label_enabled_needs_include_and_not_exclude() {
        let c = parse(
            "[observability.metrics]\ninclude_labels = [\"agent_type\", \"agent_id\"]\nexclude_labels = [\"agent_id\"]\n",
        )
        .unwrap();
        let m = &c.observability.metrics;
        assert!(m.label_enabled("agent_type"));
        assert!(!m.label_enabled("agent_id"));
        assert!(!m.label_enabled("message_type"));
    }

    #[test]
    fn validate_without_source_names_key() {
        let mut c = Config::default();
        c.observability.trace_sample_rate = 2.0;
        let err = c.validate().unwrap_err();
        assert_eq!(err.line(), None);
        assert_eq!(
            err.to_string(),
            "<in-memory config>: observability.trace_sample_rate = 2: must be within [0, 1]"
        );
    }

    #[test]
    fn load_reads_file_and_errors_name_path() {
        let dir = std::env::temp_dir().join(format!("caxton-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[agents]\nmailbox_capacity = 7\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().agents.mailbox_capacity, 7);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[agents]\nmailbox_capacity = 0\n").unwrap();
        let msg = Config::load(&bad).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:2:1: agents.mailbox_capacity", bad.display())),
            "{msg}"
        );

        let missing = dir.join("missing.toml");
        let msg = Config::load(&missing).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}: cannot read config file", missing.display())),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
