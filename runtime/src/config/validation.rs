//! The rules a value's type cannot express (ranges, orderings, URL shapes), checked after
//! parsing; a broken rule is a [`Violation`] until `location.rs` places it in the file.

use std::fmt;
use std::time::Duration;

use super::location::{LineCol, Location, key_span};
use super::{Config, ConfigError, LOG_LEVELS, WASM_PAGE_BYTES};

impl Config {
    pub(super) fn check(&self) -> Result<(), Violation> {
        let server = &self.server;
        positive("server.max_body_bytes", server.max_body_bytes as u64)?;
        positive("server.max_agents", server.max_agents as u64)?;
        nonzero_duration("server.reply_timeout", server.reply_timeout)?;
        nonzero_duration("server.shutdown_timeout", server.shutdown_timeout)?;
        nonzero_duration("server.header_read_timeout", server.header_read_timeout)?;
        nonzero_duration("server.body_read_timeout", server.body_read_timeout)?;
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

/// A broken rule, before it is placed in a file.
#[derive(Debug)]
pub(super) struct Violation {
    key: String,
    value: String,
    reason: String,
}

impl Violation {
    pub(super) fn new(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(super) fn into_error(self, origin: &str, text: Option<&str>) -> ConfigError {
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
        .map_err(|reason| Violation::new(key, quoted(value), reason.to_string()))
}

pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The parts of an `http(s)://host[:port][/path]` URL the runtime needs.
pub(super) struct HttpUrl {
    pub(super) port: Option<u16>,
}

/// Why a value is not an `http(s)://host[:port][/path]` URL (the reason of a violation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum UrlError {
    #[error("must be an http:// or https:// URL")]
    Scheme,
    #[error("unterminated [IPv6] host")]
    UnterminatedIpv6,
    #[error("unexpected {0:?} after the IPv6 host")]
    AfterIpv6(String),
    #[error("must name a host")]
    NoHost,
    #[error("port {0:?} is not a number in 0..=65535")]
    Port(String),
}

/// A deliberately small check: scheme, non-empty host, numeric port. Enough to catch the usual
/// mistakes (`otel-collector:4317` without a scheme, a typo in the port) before an exporter
/// fails at run time far from the config file.
pub(super) fn parse_http_url(url: &str) -> Result<HttpUrl, UrlError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(UrlError::Scheme)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::UnterminatedIpv6)?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::AfterIpv6(p.to_owned()))?,
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
        return Err(UrlError::NoHost);
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| UrlError::Port(p.to_owned())))
        .transpose()?;
    Ok(HttpUrl { port })
}
