//! The profiler's configuration: the Caxton Monitoring and Observability Guide's `[profiling]`
//! table. It is defined here, once, so
//! this crate stays a leaf: the runtime's config file deserializes its `[profiling]` table
//! straight into [`ProfilingSettings`] and validates it with [`ProfilingSettings::validate`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rate::{DEFAULT_SAMPLE_BUDGET, Rate};

/// Lowest and highest accepted CPU sampling frequency. pprof-rs arms `setitimer` with
/// `1e6 / hz` microseconds, so above 1 kHz the signal handler's own cost dominates.
pub const SAMPLE_RATE_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// Longest continuous-mode window: an on-demand capture may wait this long for the sampler.
pub const MAX_PUSH_INTERVAL: Duration = Duration::from_secs(60);

/// A kind of profile `[profiling] profile_types` may ask for (Pyroscope's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileType {
    /// `"cpu"`: sampled on-CPU stacks (pprof-rs, SIGPROF).
    Cpu,
    /// `"alloc_objects"`
    AllocObjects,
    /// `"alloc_space"`
    AllocSpace,
    /// `"inuse_objects"`
    InuseObjects,
    /// `"inuse_space"`
    InuseSpace,
}

impl ProfileType {
    /// The name used in the guide's TOML and in Pyroscope.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileType::Cpu => "cpu",
            ProfileType::AllocObjects => "alloc_objects",
            ProfileType::AllocSpace => "alloc_space",
            ProfileType::InuseObjects => "inuse_objects",
            ProfileType::InuseSpace => "inuse_space",
        }
    }

    /// Whether this type is served by `/debug/pprof/heap` (needs an instrumented allocator).
    pub fn is_heap(self) -> bool {
        !matches!(self, ProfileType::Cpu)
    }
}

/// `[profiling] sampler`: what takes the CPU samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// `"auto"` (the default): `perf_event` when `perf_event_open` works here, else `signal`;
    /// the choice and the reason are logged once.
    #[default]
    Auto,
    /// `"perf_event"`: per-thread `cpu-clock` events with kernel-walked frame-pointer
    /// callchains (kernel and user frames, no unwinding in a signal handler).
    PerfEvent,
    /// `"signal"`: pprof-rs's `SIGPROF` timer and in-handler unwinding.
    Signal,
}

impl Sampler {
    /// The name used in the TOML and in the `x-pprof-sampler` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Sampler::Auto => "auto",
            Sampler::PerfEvent => "perf_event",
            Sampler::Signal => "signal",
        }
    }
}

/// `[profiling]`: every key of the guide's example, plus the two knobs the guide leaves
/// implicit (`labels`, `push_interval`), which are set by code and are not keys of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilingSettings {
    /// Run the profiler. The library does not consult it: the runtime decides whether to
    /// mount the router and start continuous mode. Default `false`.
    pub enabled: bool,
    /// Pyroscope-compatible server to push profiles to (`http(s)://host:port`). Default:
    /// absent, meaning profiles are only served on `server_address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Application name profiles are filed under; pushed as
    /// `<application_name>.cpu{labels}`. Default `"caxton-runtime"`.
    pub application_name: String,
    /// Listen address of the pprof HTTP endpoints. Default `"127.0.0.1:6060"`.
    pub server_address: SocketAddr,
    /// CPU sampling frequency in Hz, 1 to 1000. Default `100`. With the perf_event sampler it
    /// is the full rate, which `sample_budget` may lower.
    pub sample_rate: u32,
    /// Samples a second of wall time, over all the target's threads, that the perf_event
    /// sampler keeps within: when the target's CPU use at `sample_rate` would call for more,
    /// every thread's rate is lowered, and each sample counts for the full-rate samples it
    /// stands for ([`crate::rate`]). `0` keeps `sample_rate` whatever the load. Not a key of
    /// the guide's table. Default [`DEFAULT_SAMPLE_BUDGET`].
    pub sample_budget: u32,
    /// Profiles to collect; `cpu`, `alloc_objects`, `alloc_space`, `inuse_objects`,
    /// `inuse_space`. Default `["cpu"]` (the allocation profiles need an instrumented
    /// allocator). At least one when `enabled`.
    pub profile_types: Vec<ProfileType>,
    /// What takes the CPU samples: `"auto"`, `"perf_event"` or `"signal"`. Default `"auto"`:
    /// `perf_event` when `perf_event_open` works, else `signal` (logged once with the reason).
    pub sampler: Sampler,
    /// Pyroscope tags added to every pushed profile (e.g. `env`, `instance`). Default empty.
    /// Not a key of the table.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    /// Continuous-mode window: one CPU profile is taken and pushed per interval. Default 10 s,
    /// at most [`MAX_PUSH_INTERVAL`]. Not a key of the table.
    #[serde(skip)]
    pub push_interval: Duration,
}

impl Default for ProfilingSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            application_name: "caxton-runtime".to_owned(),
            server_address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6060),
            sample_rate: 100,
            sample_budget: DEFAULT_SAMPLE_BUDGET,
            profile_types: vec![ProfileType::Cpu],
            sampler: Sampler::Auto,
            labels: BTreeMap::new(),
            push_interval: Duration::from_secs(10),
        }
    }
}

/// A setting the profiler cannot work with; names the `[profiling]` key.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `profiling.{key}`: {reason}")]
pub struct SettingsError {
    /// The `[profiling]` key at fault.
    pub key: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl SettingsError {
    fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

impl ProfilingSettings {
    /// Checks every value the profiler relies on.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !SAMPLE_RATE_RANGE.contains(&self.sample_rate) {
            return Err(SettingsError::new(
                "sample_rate",
                "must be within 1..=1000 (Hz)",
            ));
        }
        if self.enabled && self.profile_types.is_empty() {
            return Err(SettingsError::new(
                "profile_types",
                "must name at least one profile type when profiling is enabled",
            ));
        }
        if self.application_name.is_empty()
            || self
                .application_name
                .chars()
                .any(|c| matches!(c, '{' | '}' | ',' | '=') || c.is_whitespace())
        {
            return Err(SettingsError::new(
                "application_name",
                format!(
                    "{:?} must be non-empty without braces, commas, `=` or spaces (Pyroscope key syntax)",
                    self.application_name
                ),
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            let url = reqwest::Url::parse(endpoint).map_err(|e| {
                SettingsError::new("endpoint", format!("{endpoint:?} is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(SettingsError::new(
                    "endpoint",
                    format!("{endpoint:?} must be http:// or https://"),
                ));
            }
        }
        for (key, value) in &self.labels {
            let valid_key = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !valid_key || value.is_empty() || value.contains([',', '{', '}', '=']) {
                return Err(SettingsError::new(
                    "labels",
                    format!("label {key:?}={value:?} is not a valid Pyroscope tag"),
                ));
            }
        }
        if self.push_interval < Duration::from_secs(1) || self.push_interval > MAX_PUSH_INTERVAL {
            return Err(SettingsError::new(
                "push_interval",
                format!("{:?} is outside 1s..=60s", self.push_interval),
            ));
        }
        Ok(())
    }

    /// The rate CPU captures ask the sampler for.
    pub fn rate(&self) -> Rate {
        Rate {
            full_hz: self.sample_rate,
            budget: self.sample_budget,
        }
    }

    /// Whether `profile_types` lists `ty`.
    pub fn has(&self, ty: ProfileType) -> bool {
        self.profile_types.contains(&ty)
    }

    /// Whether `profile_types` lists a heap type (served by `/debug/pprof/heap`).
    pub fn wants_heap(&self) -> bool {
        self.profile_types.iter().any(|t| t.is_heap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let s = ProfilingSettings::default();
        s.validate().unwrap();
        assert!(s.server_address.ip().is_loopback());
        assert!(s.has(ProfileType::Cpu));
    }

    #[test]
    fn seed_profile_type_names_round_trip() {
        let names = r#"["cpu","alloc_objects","alloc_space","inuse_objects","inuse_space"]"#;
        let types: Vec<ProfileType> = serde_json::from_str(names).unwrap();
        let back: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            back,
            [
                "cpu",
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space"
            ]
        );
        assert_eq!(types.iter().filter(|t| t.is_heap()).count(), 4);
    }

    #[test]
    fn errors_name_the_key() {
        let bad_rate = ProfilingSettings {
            sample_rate: 0,
            ..Default::default()
        };
        let err = bad_rate.validate().unwrap_err().to_string();
        assert!(err.contains("profiling.sample_rate"), "{err}");

        let enabled_without_types = ProfilingSettings {
            enabled: true,
            profile_types: Vec::new(),
            ..Default::default()
        };
        assert_eq!(
            enabled_without_types.validate().unwrap_err().key,
            "profile_types"
        );

        let bad_endpoint = ProfilingSettings {
            endpoint: Some("ftp://pyroscope:4040".into()),
            ..Default::default()
        };
        let err = bad_endpoint.validate().unwrap_err().to_string();
        assert!(
            err.contains("profiling.endpoint") && err.contains("ftp://"),
            "{err}"
        );

        let bad_name = ProfilingSettings {
            application_name: "app{x}".into(),
            ..Default::default()
        };
        assert_eq!(bad_name.validate().unwrap_err().key, "application_name");

        let bad_interval = ProfilingSettings {
            push_interval: Duration::from_secs(600),
            ..Default::default()
        };
        assert_eq!(bad_interval.validate().unwrap_err().key, "push_interval");
    }
}
