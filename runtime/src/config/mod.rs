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
//!
//! The schema is here; `validation.rs` holds the rules, `location.rs` where an error points,
//! `units.rs` the value syntaxes (sizes, durations, addresses).

mod location;
#[cfg(test)]
mod tests;
mod units;
mod validation;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use caxton_profiles::{ProfileType, ProfilingSettings};
pub use location::{ConfigError, LineCol, Location};
use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;
use location::parse_error;
use units::{KIB, MIB, byte_size, duration_text, socket_addr};
use validation::parse_http_url;

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
    /// Time a request has, from its complete headers, to send its complete body; one that
    /// is late gets 408 and its connection is closed. Default `"10s"`.
    #[serde(with = "duration_text")]
    pub body_read_timeout: Duration,
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
            body_read_timeout: Duration::from_secs(10),
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
    pub(crate) fn fuzz_parse(data: &[u8]) {
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
}
