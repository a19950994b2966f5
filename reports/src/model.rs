//! The run report of `caxton-bench`: the one definition of what a load-test run produced.
//!
//! A report is JSON (`report.json`), versioned by [`SCHEMA_VERSION`]. Latency figures are in
//! milliseconds (k6's unit for `http_req_duration`); the histograms they come from are kept
//! in microseconds with 3 significant digits, serialized with HdrHistogram's V2 format and
//! base64, so that runs (or the workers of one distributed run) can be merged later and any
//! percentile recomputed exactly.
//!
//! Every latency figure exists twice: `corrected` (coordinated omission corrected from the
//! intended schedule: what a user arriving on schedule would have seen) and `uncorrected`
//! (what each request measured from its actual send to the end of its body).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::threshold::{Aggregation, ThresholdMetric};

/// The schema this crate writes. Bump it on any change that an older reader would misread
/// or refuse; readers refuse versions outside
/// [`OLDEST_READABLE_SCHEMA_VERSION`]`..=SCHEMA_VERSION` with [`ReportError::SchemaVersion`].
///
/// History: 1 = the first report; 2 = adds the optional [`RunReport::flamegraph`]
/// and [`RunReport::distributed`] (a v1 report reads as a v2 report without them);
/// 3 = adds [`RunReport::validity`], [`RunReport::target_build`],
/// [`RunReport::interrupted`] and the profile's sample counts in [`FlamegraphRef`] (an
/// older report reads as valid, of an unknown build, not interrupted).
pub const SCHEMA_VERSION: u32 = 4;

/// Reports of every version from this one on are read (and upgraded to [`SCHEMA_VERSION`]),
/// so old baselines keep comparing and rendering.
pub const OLDEST_READABLE_SCHEMA_VERSION: u32 = 1;

/// Significant digits of every latency histogram (1 µs resolution up to ~1 ms, 0.1 %
/// relative error above).
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// Unit of the values recorded in every histogram of a report.
pub const HISTOGRAM_UNIT: &str = "us";

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot read report {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write report {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot serialize report for {path}: {source}")]
    Serialize {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "report {path} has schema_version {found:?}; this build reads schema_version {oldest} to {expected}"
    )]
    SchemaVersion {
        path: PathBuf,
        found: Option<u64>,
        oldest: u32,
        expected: u32,
    },
    #[error("histogram {what}: {detail}")]
    Histogram { what: String, detail: String },
}

/// One run of `caxton-bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    pub run_id: String,
    /// `caxton-bench` and its version.
    pub tool: Tool,
    /// The command line of the run, argv[0] included, as given.
    pub command_line: Vec<String>,
    /// Base URL the requests went to.
    pub target: String,
    /// True when the run started its own runtime (no `--target`).
    pub embedded_target: bool,
    /// The target's name in a history (`--target-key`, schema 4): series of runs with the
    /// same key are one series, wherever the target listened. Absent: the URL, or
    /// `embedded` for the embedded runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_key: Option<String>,
    /// Wall-clock start and end, RFC 3339 UTC, and as unix milliseconds.
    pub started_at: String,
    pub ended_at: String,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// Measured wall time of the load phase, seconds.
    pub duration_seconds: f64,
    pub plan: Plan,
    /// One entry per planned stage, in order, with the figures of requests started in it.
    pub stages: Vec<StageResult>,
    /// Every request of the run, ramps included.
    pub overall: Stats,
    /// Per request name (e.g. `create-agent`, `send-message`).
    pub requests: BTreeMap<String, Stats>,
    pub checks: Vec<CheckResult>,
    pub thresholds: Vec<ThresholdResult>,
    /// Open model only: iterations the schedule called for that found no free user.
    pub dropped_iterations: u64,
    /// Highest number of concurrently running users.
    pub max_users: u64,
    /// One sample per second of the run.
    pub timeline: Vec<SecondSample>,
    /// The CPU flamegraph of the target captured during the run (schema 2), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlamegraphRef>,
    /// Set when the run is part of a distributed run (`--workers N`), on each worker's
    /// report and on the merged one (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<Distributed>,
    /// Whether the run produced the load it was asked for (schema 3). An invalid run never
    /// passes, whatever its thresholds say, and histories and comparisons leave it out.
    #[serde(default)]
    pub validity: Validity,
    /// The target's build, read from its `caxton_build_info` series (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_build: Option<TargetBuild>,
    /// Set when the run was stopped by a signal before its plan ended (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
    /// Set when an `abortOnFail` threshold failed during the run and stopped it (schema 4;
    /// absent from older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Abort>,
    /// The load generator's own CPU use during the run (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu: Option<GeneratorCpu>,
    /// Consecutive slices of the run with their own latency histogram (`--slice-seconds`,
    /// schema 4): the unit a paired A/B verdict resamples. Empty unless asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<Slice>,
}

/// A slice of the run: the requests completed in `[start_seconds, start_seconds + seconds)`
/// from the start of the load, with their corrected latency histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub start_seconds: u64,
    pub seconds: u64,
    pub requests: u64,
    /// Failed requests, of which `transport_failures` got no HTTP answer at all (refused,
    /// reset, timed out): a target that stopped answering, not one that answered badly.
    pub failures: u64,
    pub transport_failures: u64,
    /// HdrHistogram V2 serialization, base64, microseconds (as [`Histograms`]).
    pub corrected: String,
}

impl Slice {
    pub fn decode_corrected(&self) -> Result<Histogram<u64>, ReportError> {
        decode_histogram(&self.corrected, "slice")
    }
}

/// CPU the load generator itself used, per second of the run, in cores. When the target is
/// embedded, its threads are measured apart and `target_*` says what they used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorCpu {
    /// Cores the machine offers the process.
    pub cores: u32,
    /// Mean over the run's seconds.
    pub mean_cores: f64,
    /// The busiest second.
    pub max_cores: f64,
    /// Seconds measured, and of those, seconds in which the generator (or, with an
    /// embedded target, generator and target together) used at least 90 % of `cores`.
    pub seconds: u64,
    pub saturated_seconds: u64,
    /// Embedded target only: its mean CPU, cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mean_cores: Option<f64>,
}

/// Whether a run measured what it was asked to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    pub valid: bool,
    /// Why it is not valid; empty for a valid run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<InvalidReason>,
}

impl Default for Validity {
    /// Reports older than schema 3 carry no verdict and read as valid.
    fn default() -> Self {
        Validity {
            valid: true,
            reasons: Vec::new(),
        }
    }
}

impl Validity {
    /// The verdict of a set of reasons: valid exactly when there are none.
    pub fn from_reasons(reasons: Vec<InvalidReason>) -> Validity {
        Validity {
            valid: reasons.is_empty(),
            reasons,
        }
    }
}

/// One reason a run is invalid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidReason {
    pub kind: InvalidKind,
    /// What was measured against what was asked, for a person.
    pub detail: String,
}

/// The ways a run can fail to produce the load it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidKind {
    /// Open model: the arrival rate achieved fell short of the planned one.
    ArrivalRateNotHeld,
    /// Iterations were dropped (no free user, and the backlog queue was full or disabled).
    DroppedIterations,
    /// The generator's own CPU was saturated, so its timings include its own queueing.
    GeneratorCpuSaturated,
    /// The target's CPU profile lost most of its samples.
    ProfileSamplesLost,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 4] = [
        InvalidKind::ArrivalRateNotHeld,
        InvalidKind::DroppedIterations,
        InvalidKind::GeneratorCpuSaturated,
        InvalidKind::ProfileSamplesLost,
    ];

    /// The name report.json, the summary, the HTML and the pushed series use.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::ArrivalRateNotHeld => "arrival_rate_not_held",
            InvalidKind::DroppedIterations => "dropped_iterations",
            InvalidKind::GeneratorCpuSaturated => "generator_cpu_saturated",
            InvalidKind::ProfileSamplesLost => "profile_samples_lost",
        }
    }
}

/// The build of the target, as its `caxton_build_info{version,commit}` series says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBuild {
    pub version: String,
    pub commit: String,
}

/// How far an interrupted run got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interruption {
    /// `SIGINT` or `SIGTERM`.
    pub signal: String,
    /// The stage that was running when the signal came.
    pub stage: String,
    /// Seconds into the run.
    pub at_seconds: f64,
}

impl Interruption {
    /// One line for a person: which signal, when, in which stage.
    pub fn describe(&self) -> String {
        format!(
            "interrupted by {} at {:.1} s, in stage {}",
            self.signal, self.at_seconds, self.stage
        )
    }
}

/// The `abortOnFail` threshold that stopped a run, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    /// The threshold as written, e.g. `http_req_duration: p(95)<2000`.
    pub threshold: String,
    /// Its value on the figures measured until then, in the threshold's units.
    pub value: f64,
    /// Seconds into the run (the stage clock).
    pub at_seconds: f64,
    /// The stage that was running.
    pub stage: String,
    /// For a distributed run judged on the run's global figures: the PromQL figure (an
    /// estimate from the pushed buckets); `None` when judged on this run's own figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<String>,
}

impl Abort {
    /// One line for a person: which threshold, when, in which stage.
    pub fn describe(&self) -> String {
        let scope = match &self.global {
            Some(figure) => format!(", on the run's global figure {figure}"),
            None => String::new(),
        };
        format!(
            "aborted by threshold `{}` (abortOnFail, value {}{scope}) at {:.1} s, in stage {}",
            self.threshold,
            trim_number(self.value),
            self.at_seconds,
            self.stage
        )
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The place of a report in a distributed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distributed {
    /// How many workers share the load.
    pub workers: u32,
    /// This worker's index in `0..workers`; `None` on the merged report.
    pub worker_index: Option<u32>,
    /// Merged report: `<run id>/worker-<index>` of each report it combines, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// Where a run's flamegraph is and what it profiled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlamegraphRef {
    /// SVG file, relative to the report's directory (`flamegraph.svg`), so a run directory
    /// can be moved or archived as a whole.
    pub path: String,
    /// The stage it was captured in.
    pub stage: String,
    /// The pprof file the SVG was drawn from (`cpu.pb.gz`), relative like `path` (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Sampling frequency of the profile, Hz (schema 3; 0 when unknown): the full rate.
    #[serde(default)]
    pub frequency_hz: u32,
    /// The lowest rate the target sampled at, Hz, where it lowered the rate under load to keep
    /// within its sample budget (each sample then weighs as the full-rate samples it stands
    /// for); absent when every sample was at the full rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_frequency_hz: Option<u32>,
    /// Samples the profile holds (schema 3; 0 when unknown).
    #[serde(default)]
    pub samples: u64,
    /// Samples the sampler expected from the target's CPU time but could not take.
    #[serde(default)]
    pub lost_samples: u64,
    /// The sampler that took the profile (`perf_event`, `signal`), when the target said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// The same profile cut down to the samples of the slow requests (optional in schema 4;
    /// absent from older reports and when the profile carried no request labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowProfile>,
}

/// The profile of the requests at or above a latency threshold: the samples the target
/// labelled with a request whose latency reached it (`request_latency_us`), against the
/// whole profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowProfile {
    /// `flamegraph-slow.svg`, relative to the report's directory; absent when no sample met
    /// the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The differential flamegraph, slow against all (`diff-slow.svg`), when drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_path: Option<String>,
    /// Latency threshold, ms.
    pub threshold_ms: f64,
    /// Where the threshold came from: `p95` (the run's uncorrected p95) or
    /// `--slow-threshold`.
    pub threshold_from: String,
    /// Samples of requests at or above the threshold.
    pub samples: u64,
    /// Samples labelled with their request's latency: those that could be judged.
    pub labelled_samples: u64,
    /// Frames by the largest rise of self share from the whole profile to the slow one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_frames: Vec<SlowFrame>,
    /// Why the diff was not drawn, one line per reason; empty when it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_drawn: Vec<String>,
}

impl SlowProfile {
    /// One line for the summary and the HTML report: what was cut and its top frame, or why
    /// nothing was drawn.
    pub fn describe(&self) -> String {
        let head = format!(
            "{} of {} labelled samples at or above {:.2} ms ({})",
            self.samples, self.labelled_samples, self.threshold_ms, self.threshold_from
        );
        match (self.top_frames.first(), self.not_drawn.is_empty()) {
            (Some(top), true) => format!(
                "{head}; top frame {} ({:.1}% of the slow samples, {:.1}% of all)",
                top.frame,
                100.0 * top.slow_share,
                100.0 * top.all_share
            ),
            _ => format!("{head}; no diff: {}", self.not_drawn.join("; ")),
        }
    }
}

/// A frame's self share of the slow requests' samples and of all samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowFrame {
    pub frame: String,
    pub slow_share: f64,
    pub all_share: f64,
}

/// Fewest samples a run's profile should hold: below it a frame of 1 % of the CPU holds about
/// ten samples or fewer, and the report says the profile is thin.
pub const THIN_PROFILE_SAMPLES: u64 = 1000;

impl FlamegraphRef {
    /// Whether the profile holds fewer than [`THIN_PROFILE_SAMPLES`]: shown as such wherever
    /// the profile is.
    pub fn too_few_samples(&self) -> bool {
        self.samples < THIN_PROFILE_SAMPLES
    }

    /// The rate as the summary and the HTML say it: `1000 Hz`, or `1000 Hz (down to 67 Hz
    /// under load)`.
    pub fn rate_text(&self) -> String {
        match self.lowest_frequency_hz {
            Some(lowest) if lowest < self.frequency_hz => {
                format!("{} Hz (down to {lowest} Hz under load)", self.frequency_hz)
            }
            _ => format!("{} Hz", self.frequency_hz),
        }
    }

    /// The share of expected samples that were lost, 0 when nothing was expected.
    pub fn lost_share(&self) -> f64 {
        ratio(self.lost_samples, self.samples + self.lost_samples)
    }
}

/// The file name of a run's flamegraph of its slow requests, beside `flamegraph.svg`.
pub const SLOW_FLAMEGRAPH_FILE: &str = "flamegraph-slow.svg";
/// The file name of the differential flamegraph of the slow requests against all.
pub const SLOW_DIFF_FILE: &str = "diff-slow.svg";

/// The file name a run's flamegraph is saved under, beside its `report.json`.
pub const FLAMEGRAPH_FILE: &str = "flamegraph.svg";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// What the run was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// `k6` (the Caxton Monitoring and Observability Guide's plan), `stages` (custom), `constant`
    /// (`--duration` and `--concurrent-users`) or `arrival-rate`.
    pub name: String,
    pub model: LoadModel,
    /// Factor applied to every stage duration (1 = as written).
    pub time_scale: f64,
    /// Pause after each iteration of a closed-model user (k6's `sleep(1)`), seconds.
    pub think_time_seconds: f64,
    /// Users (closed model) or iterations/s (open model) at the start of the first stage.
    pub start_target: f64,
    /// Open model: the user pool serving the arrivals.
    pub max_users: Option<u64>,
    pub stages: Vec<PlannedStage>,
    pub scenarios: Vec<ScenarioWeight>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadModel {
    /// A number of users looping over their scenario (k6 `ramping-vus`).
    Closed,
    /// Iterations started at a target rate whatever the latency (k6 `ramping-arrival-rate`).
    Open,
}

/// A stage as planned (after `time_scale`): reach `target` linearly over `duration_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedStage {
    /// Unique name used by stage thresholds, e.g. `ramp-100`, `hold-200`.
    pub name: String,
    pub duration_seconds: f64,
    /// Users (closed model) or iterations per second (open model).
    pub target: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioWeight {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageResult {
    pub name: String,
    /// Seconds from the start of the run.
    pub started_at_seconds: f64,
    pub ended_at_seconds: f64,
    pub stats: Stats,
}

/// Figures of a set of requests (a stage, a request name or the whole run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub requests: u64,
    /// `http_req_failed` semantics: transport error or status >= 400.
    pub failures: u64,
    pub error_rate: f64,
    /// Requests per second over the wall time the set covers.
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    /// Status code (as a string, JSON keys) -> count. Transport errors have no status.
    pub status_codes: BTreeMap<String, u64>,
    /// Error kind (`connect`, `timeout`, `status`, `body`, `request`) -> count.
    pub errors: BTreeMap<String, u64>,
    pub histograms: Histograms,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub corrected: Percentiles,
    pub uncorrected: Percentiles,
}

/// Milliseconds. All zero when there were no requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
}

/// The quantiles every report carries, with their JSON names.
pub const QUANTILES: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

impl Percentiles {
    /// Figures of a microsecond histogram, in milliseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// The figure for a quantile in [0,1], for thresholds written as `p(N)`; `None` when the
    /// quantile is not one the report carries (use the histogram then).
    pub fn at(&self, quantile: f64) -> Option<f64> {
        let exact = |q: f64| (q - quantile).abs() < 1e-9;
        if exact(0.5) {
            Some(self.p50)
        } else if exact(0.9) {
            Some(self.p90)
        } else if exact(0.95) {
            Some(self.p95)
        } else if exact(0.99) {
            Some(self.p99)
        } else if exact(0.999) {
            Some(self.p99_9)
        } else if exact(1.0) {
            Some(self.max)
        } else {
            None
        }
    }
}

/// The serialized histograms behind [`Latency`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histograms {
    /// Always [`HISTOGRAM_UNIT`].
    pub unit: String,
    /// HdrHistogram V2 serialization, base64 (standard alphabet, padded).
    pub corrected: String,
    pub uncorrected: String,
}

impl Histograms {
    pub fn encode(
        corrected: &Histogram<u64>,
        uncorrected: &Histogram<u64>,
    ) -> Result<Histograms, ReportError> {
        Ok(Histograms {
            unit: HISTOGRAM_UNIT.to_string(),
            corrected: encode_histogram(corrected, "corrected")?,
            uncorrected: encode_histogram(uncorrected, "uncorrected")?,
        })
    }

    pub fn decode_corrected(&self) -> Result<Histogram<u64>, ReportError> {
        decode_histogram(&self.corrected, "corrected")
    }

    pub fn decode_uncorrected(&self) -> Result<Histogram<u64>, ReportError> {
        decode_histogram(&self.uncorrected, "uncorrected")
    }
}

/// A new empty latency histogram as every report uses: microseconds, 3 significant
/// digits, growing as needed (so a small run holds a small histogram).
pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 2 µs is the smallest range hdrhistogram accepts with auto-resize on.
    match Histogram::new(HISTOGRAM_SIGFIG) {
        Ok(h) => h,
        // Only an invalid sigfig fails, and HISTOGRAM_SIGFIG is a valid constant.
        Err(_) => unreachable!("3 significant digits is a valid histogram precision"),
    }
}

pub fn encode_histogram(h: &Histogram<u64>, what: &str) -> Result<String, ReportError> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| ReportError::Histogram {
            what: what.to_string(),
            detail: format!("serialization failed: {e:?}"),
        })?;
    Ok(BASE64.encode(bytes))
}

pub(crate) fn decode_histogram(text: &str, what: &str) -> Result<Histogram<u64>, ReportError> {
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|e| ReportError::Histogram {
            what: what.to_string(),
            detail: format!("not base64: {e}"),
        })?;
    check_histogram_header(&bytes).map_err(|detail| ReportError::Histogram {
        what: what.to_string(),
        detail,
    })?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut Cursor::new(bytes))
        .map_err(|e| ReportError::Histogram {
            what: what.to_string(),
            detail: format!("not an HdrHistogram V2 serialization: {e:?}"),
        })?;
    h.auto(true);
    Ok(h)
}

/// HdrHistogram V2 cookies (what `V2Serializer` writes, and its deflated form).
const HDR_V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const HDR_V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// Cookie, payload length, normalizing offset, significant digits, lowest, highest, ratio.
const HDR_V2_HEADER_BYTES: usize = 40;

/// Checks a V2 serialization's header against the bytes present before the decoder sizes
/// its buffer by it: a 4 KB report claiming a 2 GB payload is refused, not allocated.
fn check_histogram_header(bytes: &[u8]) -> Result<(), String> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let cookie = word(0).ok_or_else(|| {
        format!(
            "{} bytes: too short for an HdrHistogram V2 header",
            bytes.len()
        )
    })?;
    match cookie {
        HDR_V2_COOKIE => {}
        HDR_V2_COMPRESSED_COOKIE => {
            return Err(
                "a compressed (deflate) HdrHistogram V2 serialization; reports hold the \
                 uncompressed V2 form"
                    .to_string(),
            );
        }
        other => return Err(format!("cookie {other:#010x} is not HdrHistogram V2's")),
    }
    let claimed = word(4).unwrap_or(0);
    let present = bytes.len().saturating_sub(HDR_V2_HEADER_BYTES);
    if bytes.len() < HDR_V2_HEADER_BYTES || claimed as usize > present {
        return Err(format!(
            "the V2 header claims a payload of {claimed} bytes (as signed: {}) but {present} \
             bytes follow the header",
            claimed as i32
        ));
    }
    Ok(())
}

/// A k6 check: counted, never fatal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    /// As k6 names them: `status is 200`, `response time < 1000ms`.
    pub name: String,
    pub passes: u64,
    pub fails: u64,
    /// passes / (passes + fails); 0 when never evaluated.
    pub pass_rate: f64,
}

/// A threshold and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdResult {
    /// As written, e.g. `http_req_duration{stage:hold-200}: p(99)<1500`.
    pub expression: String,
    pub metric: ThresholdMetric,
    /// The stage it is restricted to, if any.
    pub stage: Option<String>,
    /// The aggregation, e.g. `p(95)`, `rate`, `avg`.
    pub aggregation: Aggregation,
    /// Measured value in the metric's unit (ms for durations); `None` when there was
    /// nothing to measure (no requests), which is a breach.
    pub value: Option<f64>,
    pub ok: bool,
}

impl ThresholdResult {
    /// The measured value as k6 prints it (`p(95)=12.30ms`, `rate=0.10%`): the one formatter
    /// of the summary and the HTML report.
    pub fn value_text(&self) -> String {
        crate::threshold::value_text(self.metric, &self.aggregation, self.value)
    }
}

/// One second of the run (second `t` covers [t, t+1) from the start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondSample {
    pub t: u64,
    /// Requests completed in this second (= requests/s).
    pub requests: u64,
    pub failures: u64,
    /// Corrected and uncorrected p95 of the requests completed in this second, ms.
    pub p95_ms: f64,
    pub p95_uncorrected_ms: f64,
    /// Users running at the end of the second.
    pub users: u64,
    pub dropped_iterations: u64,
    /// Name of the stage the second ended in.
    pub stage: String,
}

impl RunReport {
    /// The run's verdict: valid, not aborted by a threshold, and every threshold passed.
    pub fn passed(&self) -> bool {
        self.validity.valid && self.aborted.is_none() && self.thresholds.iter().all(|t| t.ok)
    }

    /// Writes the report as pretty JSON, creating parent directories. The file is written
    /// to a temporary name and renamed, so a reader never sees half a report.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        write_json(self, path)
    }

    /// Reads a report of any readable schema version (upgraded to [`SCHEMA_VERSION`]),
    /// refusing others with a message naming the version.
    pub fn read(path: &Path) -> Result<RunReport, ReportError> {
        let text = std::fs::read(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// The `run_report_read` fuzz target (fuzz/) and its corpus replay: the bytes of a
    /// report file, as [`RunReport::read`] parses them, and its histograms decoded.
    #[doc(hidden)]
    pub fn fuzz_read(data: &[u8]) {
        if let Ok(report) = Self::from_json(data, Path::new("fuzz/report.json")) {
            serde_json::to_vec(&report).expect("a read report serializes");
            // What compare, report and merge do next: decode every histogram (a header's
            // payload length is checked before anything is sized by it).
            let stats = std::iter::once(&report.overall)
                .chain(report.stages.iter().map(|s| &s.stats))
                .chain(report.requests.values());
            for h in stats.map(|s| &s.histograms) {
                let _ = h.decode_corrected();
                let _ = h.decode_uncorrected();
            }
            for slice in &report.slices {
                let _ = slice.decode_corrected();
            }
        }
    }

    /// Parses report JSON; `origin` names it in errors.
    pub fn from_json(text: &[u8], origin: &Path) -> Result<RunReport, ReportError> {
        let parse_err = |source| ReportError::Parse {
            path: origin.to_path_buf(),
            source,
        };
        // The version is checked before the shape, so a newer report says so instead of
        // failing on a field this build does not know.
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<serde_json::Value>,
        }
        let version: Version = serde_json::from_slice(text).map_err(parse_err)?;
        let found = version.schema_version.as_ref().and_then(|v| v.as_u64());
        let readable = u64::from(OLDEST_READABLE_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION);
        if !found.is_some_and(|v| readable.contains(&v)) {
            return Err(ReportError::SchemaVersion {
                path: origin.to_path_buf(),
                found,
                oldest: OLDEST_READABLE_SCHEMA_VERSION,
                expected: SCHEMA_VERSION,
            });
        }
        // Every version so far only added optional fields, so one shape reads them all.
        let mut report: RunReport = serde_json::from_slice(text).map_err(parse_err)?;
        report.schema_version = SCHEMA_VERSION;
        Ok(report)
    }

    /// The flamegraph file of a report read from `report_path`: the one the report names
    /// (schema 2), else a `flamegraph.svg` beside it (where schema 1 runs saved theirs).
    pub fn flamegraph_file(&self, report_path: &Path) -> Option<PathBuf> {
        let dir = report_path.parent().unwrap_or(Path::new(""));
        match &self.flamegraph {
            Some(f) => Some(dir.join(&f.path)),
            None => Some(dir.join(FLAMEGRAPH_FILE)).filter(|p| p.is_file()),
        }
    }
}

impl Stats {
    /// Builds the figures of a set of requests from its histograms and counters.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        corrected: &Histogram<u64>,
        uncorrected: &Histogram<u64>,
        requests: u64,
        failures: u64,
        wall_seconds: f64,
        status_codes: BTreeMap<String, u64>,
        errors: BTreeMap<String, u64>,
    ) -> Result<Stats, ReportError> {
        Ok(Stats {
            requests,
            failures,
            error_rate: ratio(failures, requests),
            throughput_rps: if wall_seconds > 0.0 {
                requests as f64 / wall_seconds
            } else {
                0.0
            },
            latency_ms: Latency {
                corrected: Percentiles::from_histogram(corrected),
                uncorrected: Percentiles::from_histogram(uncorrected),
            },
            status_codes,
            errors,
            histograms: Histograms::encode(corrected, uncorrected)?,
        })
    }
}

/// `part / whole`, 0 for an empty whole.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Writes `value` as pretty JSON to `path` (creating its directory), through a temporary
/// file renamed into place, so a reader never sees half a file: every report's one writer.
pub(crate) fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<(), ReportError> {
    let write_err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(value).map_err(|source| ReportError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn invalid_kinds_are_named_as_serde_writes_them() {
        for kind in super::InvalidKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }

    use super::*;

    /// Issue 25, item 5: a histogram whose V2 header claims 2^31 - 1 (or, as i32, -1) bytes
    /// is refused with the claim in the message, before anything is sized by it.
    #[test]
    fn a_histogram_header_claiming_more_bytes_than_present_is_refused_without_allocating() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record(1_000).unwrap();
        let good = encode_histogram(&h, "corrected").unwrap();
        assert!(decode_histogram(&good, "corrected").is_ok());
        let bytes = BASE64.decode(good.as_bytes()).unwrap();
        for claim in [i32::MAX as u32, u32::MAX, 4096] {
            let mut doctored = bytes.clone();
            doctored[4..8].copy_from_slice(&claim.to_be_bytes());
            let started = std::time::Instant::now();
            let err = decode_histogram(&BASE64.encode(&doctored), "corrected")
                .unwrap_err()
                .to_string();
            assert!(
                started.elapsed() < std::time::Duration::from_millis(100),
                "took {:?}",
                started.elapsed()
            );
            assert!(err.contains("corrected"), "{err}");
            assert!(
                err.contains(&format!("claims a payload of {claim} bytes")),
                "{err}"
            );
        }
        let mut compressed = bytes.clone();
        compressed[0..4].copy_from_slice(&HDR_V2_COMPRESSED_COOKIE.to_be_bytes());
        let err = decode_histogram(&BASE64.encode(&compressed), "slice").unwrap_err();
        assert!(err.to_string().contains("compressed"), "{err}");
        let err = decode_histogram(&BASE64.encode([0x1c, 0x84]), "slice").unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    pub(crate) fn sample_report() -> RunReport {
        let corrected = histogram(&[1_000, 2_000, 3_000, 900_000]);
        let uncorrected = histogram(&[1_000, 2_000, 3_000]);
        let stats = Stats::from_parts(
            &corrected,
            &uncorrected,
            3,
            1,
            1.5,
            BTreeMap::from([("200".to_string(), 2), ("500".to_string(), 1)]),
            BTreeMap::from([("status".to_string(), 1)]),
        )
        .unwrap();
        RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: "r1".into(),
            tool: Tool {
                name: "caxton-bench".into(),
                version: "0.0.0".into(),
            },
            command_line: vec!["caxton-bench".into(), "--plan".into(), "k6".into()],
            target: "http://127.0.0.1:1".into(),
            embedded_target: true,
            target_key: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            ended_at: "2026-01-01T00:00:01Z".into(),
            started_unix_ms: 1,
            ended_unix_ms: 2,
            duration_seconds: 1.5,
            plan: Plan {
                name: "k6".into(),
                model: LoadModel::Closed,
                time_scale: 1.0,
                think_time_seconds: 1.0,
                start_target: 0.0,
                max_users: None,
                stages: vec![PlannedStage {
                    name: "ramp-1".into(),
                    duration_seconds: 1.5,
                    target: 1.0,
                }],
                scenarios: vec![ScenarioWeight {
                    name: "create-agent".into(),
                    weight: 1,
                }],
            },
            stages: vec![StageResult {
                name: "ramp-1".into(),
                started_at_seconds: 0.0,
                ended_at_seconds: 1.5,
                stats: stats.clone(),
            }],
            overall: stats.clone(),
            requests: BTreeMap::from([("create-agent".to_string(), stats)]),
            checks: vec![CheckResult {
                name: "status is 200".into(),
                passes: 2,
                fails: 1,
                pass_rate: 2.0 / 3.0,
            }],
            thresholds: vec![ThresholdResult {
                expression: "http_req_duration: p(95)<2000".into(),
                metric: ThresholdMetric::Duration,
                stage: None,
                aggregation: Aggregation::Percentile(95.0),
                value: Some(900.0),
                ok: true,
            }],
            dropped_iterations: 0,
            max_users: 1,
            timeline: vec![SecondSample {
                t: 0,
                requests: 3,
                failures: 1,
                p95_ms: 900.0,
                p95_uncorrected_ms: 3.0,
                users: 1,
                dropped_iterations: 0,
                stage: "ramp-1".into(),
            }],
            flamegraph: None,
            distributed: None,
            validity: Default::default(),
            target_build: None,
            interrupted: None,
            aborted: None,
            generator_cpu: None,
            slices: Vec::new(),
        }
    }

    #[test]
    fn report_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("caxton-model-{}", std::process::id()));
        let path = dir.join("nested").join("report.json");
        let report = sample_report();
        report.write(&path).unwrap();
        let back = RunReport::read(&path).unwrap();
        assert_eq!(back, report);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"p99.9\""), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_aborted_run_never_passes_and_its_mark_round_trips() {
        let mut report = sample_report();
        let passed = report.passed();
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("aborted"), "absent when not aborted");
        report.aborted = Some(Abort {
            threshold: "http_req_duration: p(95)<100".into(),
            value: 312.5,
            at_seconds: 10.2,
            stage: "hold-4".into(),
            global: None,
        });
        assert!(!report.passed());
        let json = serde_json::to_vec(&report).unwrap();
        let back = RunReport::from_json(&json, Path::new("a.json")).unwrap();
        assert_eq!(back.aborted, report.aborted);
        assert_eq!(
            back.aborted.unwrap().describe(),
            "aborted by threshold `http_req_duration: p(95)<100` (abortOnFail, value 312.500) at 10.2 s, in stage hold-4"
        );
        report.aborted = None;
        assert_eq!(report.passed(), passed);
    }

    #[test]
    fn histograms_survive_serialization_and_merge() {
        let report = sample_report();
        let mut merged = report.overall.histograms.decode_corrected().unwrap();
        merged
            .add(
                report.stages[0]
                    .stats
                    .histograms
                    .decode_corrected()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(merged.len(), 8);
        let p = Percentiles::from_histogram(&merged);
        assert!((p.max - 900.0).abs() / 900.0 < 0.001, "{p:?}");
        assert!((p.p50 - 2.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn percentiles_are_milliseconds() {
        let p = Percentiles::from_histogram(&histogram(&[1_500; 100]));
        assert_eq!(p.count, 100);
        assert!((p.p95 - 1.5).abs() < 0.002, "{p:?}");
        assert_eq!(p.at(0.95), Some(p.p95));
        assert_eq!(p.at(0.42), None);
        assert_eq!(Percentiles::from_histogram(&new_histogram()).max, 0.0);
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let mut value = serde_json::to_value(sample_report()).unwrap();
        value["schema_version"] = serde_json::json!(SCHEMA_VERSION + 1);
        let err =
            RunReport::from_json(value.to_string().as_bytes(), Path::new("new.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("new.json") && text.contains(&format!("Some({})", SCHEMA_VERSION + 1)),
            "{text}"
        );
        value["schema_version"] = serde_json::json!(0);
        assert!(RunReport::from_json(value.to_string().as_bytes(), Path::new("x")).is_err());
    }

    #[test]
    fn a_v1_report_reads_as_the_current_schema() {
        let mut value = serde_json::to_value(sample_report()).unwrap();
        value["schema_version"] = serde_json::json!(1);
        value.as_object_mut().unwrap().remove("flamegraph");
        let report = RunReport::from_json(value.to_string().as_bytes(), Path::new("v1")).unwrap();
        assert_eq!(report.schema_version, SCHEMA_VERSION);
        assert_eq!(report.flamegraph, None);
        let mut with = sample_report();
        with.flamegraph = Some(FlamegraphRef {
            path: FLAMEGRAPH_FILE.into(),
            stage: "ramp-1".into(),
            ..Default::default()
        });
        let text = serde_json::to_string(&with).unwrap();
        assert_eq!(
            RunReport::from_json(text.as_bytes(), Path::new("v2")).unwrap(),
            with
        );
        assert_eq!(
            with.flamegraph_file(Path::new("out/r/report.json")),
            Some(PathBuf::from("out/r/flamegraph.svg"))
        );
    }

    #[test]
    fn unknown_fields_and_bad_json_name_the_file() {
        let mut value = serde_json::to_value(sample_report()).unwrap();
        value["surprise"] = serde_json::json!(1);
        let err =
            RunReport::from_json(value.to_string().as_bytes(), Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let err =
            RunReport::from_json(b"{\"schema_version\":1,", Path::new("cut.json")).unwrap_err();
        assert!(err.to_string().contains("cut.json"), "{err}");
    }

    #[test]
    fn corrupt_histogram_is_a_typed_error() {
        let mut h = sample_report().overall.histograms;
        h.corrected = "not base64!".into();
        assert!(matches!(
            h.decode_corrected(),
            Err(ReportError::Histogram { .. })
        ));
        h.corrected = BASE64.encode(b"garbage");
        assert!(h.decode_corrected().is_err());
    }
}
