//! The `caxton-bench` command line (clap derive) and its resolution into [`RunOptions`].

use std::path::PathBuf;
use std::time::Duration;

use caxton_reports::model::LoadModel;
use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::arrival::Backlog;
use crate::distributed::WorkerShare;
use crate::plan::{self, K6_THINK_TIME, K6_THRESHOLDS, Plan, PlanError};
use crate::progress::ProgressMode;
use crate::run::RunOptions;
use crate::scenario::{self, ScenarioError};
use crate::thresholds::{self, Threshold, ThresholdError};

/// Staged load generator for the Caxton runtime (goose inside, HDR latency, k6-style
/// thresholds). `caxton-bench [FLAGS]` and `caxton-bench run [FLAGS]` are the same run.
/// Exit status: 0 all thresholds pass, 99 a threshold was breached, 98 the run was invalid
/// (it could not produce the load asked for), 105 interrupted, 1 setup or runtime error.
/// With $CAXTON_BENCH_BASELINE_TARGET set (e.g. a Kubernetes control arm), a --target run is
/// a paired A/B run against that baseline, as `caxton-bench ab --baseline-target` is, with
/// $CAXTON_BENCH_BASELINE_PPROF as the baseline's pprof endpoint; the command line stays.
#[derive(Debug, Parser)]
#[command(name = "caxton-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test: the same as the bare flags (`caxton-bench run --plan k6`, as `k6 run`).
    Run(Box<RunArgs>),
    /// Push a finished run's results (report.json) to Prometheus or a Pushgateway.
    Push(PushArgs),
    /// Combine the reports of a distributed run's workers into exact global figures and
    /// judge the thresholds once. Exit status like a run: 0 pass, 99 breach, 1 error.
    Merge(MergeArgs),
    /// Render a run's report.json (or an A/B run's) as report.html beside it (one
    /// self-contained file).
    Report(ReportArgs),
    /// Compare a run with a baseline. Exit status: 0 nothing regressed, 1 a metric
    /// regressed (beyond its threshold and significant), 2 bad input.
    Compare(CompareArgs),
    /// Paired A/B run: the plan against a baseline (A) and a candidate (B) at the same time,
    /// each with half the load, judged on the ratio B/A over time-aligned slices.
    /// Exit status: 0 no regression and the thresholds held, 99 a regression or a breach,
    /// 98 invalid (an arm did not get its load, or the pairing broke), 1 error.
    Ab(Box<AbArgs>),
    /// Change points in a history of runs (e.g. the nightly volume): series per plan,
    /// target, scenario, stage and metric, their noise, and whether the newest run starts a
    /// regression. Exit status: 0 it does not, 1 it does, 2 bad input.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// A directory of run directories, each with its report.json or micro.json (any depth).
    #[arg(required_unless_present = "prometheus", conflicts_with = "prometheus")]
    pub dir: Option<PathBuf>,
    /// Read the history from this Prometheus instead (the caxton_bench_* series the runs
    /// pushed): the whole run and each stage, as in the directory.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// How far back --prometheus looks (a PromQL duration).
    #[arg(long, default_value = crate::prometheus_history::DEFAULT_RANGE, value_name = "RANGE")]
    pub prometheus_range: String,
    /// Warn about a report that cannot be read instead of failing.
    #[arg(long)]
    pub skip_unreadable: bool,
    /// Print Markdown (for CI comments) instead of text.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Print JSON: {"change_points": [...], "noise": {...}, ...}.
    #[arg(long)]
    pub json: bool,
    /// Significance level of a change point (rank permutation test either side).
    #[arg(long, default_value_t = 0.001, value_name = "P")]
    pub p_value: f64,
    /// Smallest relative change of the medians either side of a change point.
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    pub min_change: String,
    /// Push the verdict (caxton_bench_change_point, caxton_bench_regression) to this
    /// Prometheus by remote write (URL/api/v1/write).
    #[arg(long, value_name = "URL")]
    pub report_to_prometheus: Option<String>,
    /// Also write trend charts with the change points marked to this HTML file.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// Push the verdict to this Pushgateway (job caxton_bench_history, replaced each time).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

/// `caxton-bench ab`: the run flags, plus the two arms and the verdict's settings.
#[derive(Debug, Args)]
pub struct AbArgs {
    /// The baseline (A) target's base URL; --target is the candidate (B).
    #[arg(long, value_name = "URL", requires = "target")]
    pub baseline_target: Option<String>,
    /// Without targets: the baseline build's `caxton` binary. Both runtimes start with one
    /// configuration (--runtime-config, listeners moved to free loopback ports, pprof on).
    #[arg(long, value_name = "BIN", requires = "runtime", conflicts_with_all = ["baseline_target", "target"])]
    pub baseline_runtime: Option<PathBuf>,
    /// Without targets: the candidate build's `caxton` binary.
    #[arg(long, value_name = "BIN", requires = "baseline_runtime")]
    pub runtime: Option<PathBuf>,
    /// Without targets: the baseline runtime's configuration, when it differs from the
    /// candidate's (--runtime-config): one build against itself with a known real cost,
    /// e.g. telemetry off against the guide's sampling at 1.0.
    #[arg(long, value_name = "FILE", requires = "baseline_runtime")]
    pub baseline_runtime_config: Option<PathBuf>,
    /// The baseline target's pprof endpoint (--pprof is the candidate's): both arms are
    /// then profiled over the same stage, and the diff of B against A is drawn.
    #[arg(long, value_name = "URL")]
    pub baseline_pprof: Option<String>,
    /// How the arms share the machine: `concurrent` (both at once, each with half of every
    /// stage's users or rate) or `interleaved` (in turns of one slice, A B B A B A A B …,
    /// each with the whole load). BENCHMARKS.md compares the two.
    #[arg(long, default_value_t = caxton_reports::paired::Pairing::Concurrent, value_name = "PAIRING")]
    pub pairing: caxton_reports::paired::Pairing,
    /// Length of a slice, the unit that is paired and resampled.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub slice: Duration,
    /// Slices starting before this are discarded [default: two slices].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub warmup: Option<Duration>,
    /// Relative change a metric may make in its bad direction before it can regress (the
    /// run's own --threshold is a k6 threshold, so this one has its own name).
    #[arg(long, default_value = "3%", value_name = "PERCENT")]
    pub regression_threshold: String,
    /// Per-metric regression threshold METRIC=PERCENT, repeatable; METRIC: p50, p90, p95,
    /// p99, throughput, error_rate.
    #[arg(long = "metric-threshold", value_name = "METRIC=PERCENT")]
    pub metric_thresholds: Vec<String>,
    /// The metrics whose regression fails the run, comma-separated (p50, p90, p95, p99,
    /// throughput, error_rate); the others are estimated and shown, marked `not gating`.
    #[arg(long, default_value = DEFAULT_GATE, value_name = "METRICS")]
    pub gate: String,
    /// Print the verdict as Markdown (for a pull-request comment) instead of text.
    #[arg(long)]
    pub markdown: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report.json of the run (any schema version written so far), or of an A/B run.
    pub report: PathBuf,
    /// An A/B run's report: print its verdict as Markdown (a pull-request comment) instead
    /// of rendering the page.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run's report.json, or a history directory (e.g. the nightly volume): its
    /// newest valid run of the current run's plan is the baseline, and each metric's
    /// threshold is calibrated from the history's run-to-run noise instead of --threshold.
    #[arg(value_name = "BASELINE.json|HISTORY_DIR")]
    pub baseline: PathBuf,
    /// The current run's report.json.
    pub current: PathBuf,
    /// Relative change a metric may make in its bad direction before it can regress.
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    pub threshold: String,
    /// Per-metric threshold METRIC=PERCENT, repeatable; METRIC: p50, p90, p95, p99,
    /// throughput, error_rate.
    #[arg(long = "metric-threshold", value_name = "METRIC=PERCENT")]
    pub metric_thresholds: Vec<String>,
    /// Print the table as Markdown (for CI comments) instead of text.
    #[arg(long)]
    pub markdown: bool,
    /// Also write both runs overlaid on the same charts to this HTML file.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// Where `diff-flamegraph.svg` goes when both runs carry a CPU profile [default: the
    /// current report's directory].
    #[arg(long, value_name = "DIR")]
    pub diff_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The report.json of the run.
    pub report: PathBuf,
    /// Prometheus base URL (remote write goes to URL/api/v1/write).
    #[arg(long, value_name = "URL")]
    pub report_to_prometheus: Option<String>,
    /// Pushgateway base URL.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The workers' report.json files (all of them: a missing worker is an error).
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,

    /// The merged report goes to DIR/<run-id>/report.json.
    #[arg(long, default_value = "reports/out", value_name = "DIR")]
    pub out: PathBuf,

    /// Run id of the merged report [default: the workers' common run id].
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// A threshold to judge in addition to the workers' own, repeatable.
    #[arg(long = "threshold", value_name = "THRESHOLD")]
    pub thresholds: Vec<String>,

    /// A TOML file of further thresholds, as for a run.
    #[arg(long = "thresholds", value_name = "FILE")]
    pub thresholds_file: Option<PathBuf>,
}

impl MergeArgs {
    /// The extra thresholds given on the command line.
    pub fn extra_thresholds(&self) -> Result<Vec<Threshold>, CliError> {
        let mut out = Vec::new();
        if let Some(file) = &self.thresholds_file {
            out.extend(thresholds::load_file(file)?);
        }
        for t in &self.thresholds {
            out.push(Threshold::parse(t)?);
        }
        if let Some(id) = &self.run_id {
            check_run_id(id)?;
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NamedPlan {
    /// The Caxton Monitoring and Observability Guide's k6 plan: 2m→100, 5m@100, 2m→200, 5m@200,
    /// 2m→0 users.
    K6,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Base URL of the runtime, e.g. http://caxton-service:8080. Without it, the run
    /// starts an embedded runtime on a free loopback port and stops it at the end. Any
    /// host is accepted (the nightly CronJob targets an in-cluster service): point it only
    /// at systems you own.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,

    /// A named plan. The default when no other load shape is given.
    #[arg(long, value_enum, conflicts_with_all = ["stages", "arrival_rate", "duration"])]
    pub plan: Option<NamedPlan>,

    /// Closed-model stages DURATION:USERS, e.g. "30s:20,1m:20,30s:0" (k6 ramping-vus).
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["arrival_rate", "duration"])]
    pub stages: Option<String>,

    /// Open-model stages DURATION:RATE in iterations/s, e.g. "30s:200,1m:200"
    /// (k6 ramping-arrival-rate, starting from 0/s).
    #[arg(long, value_name = "STAGES", conflicts_with = "duration")]
    pub arrival_rate: Option<String>,

    /// Constant load for this long (k6 constant-vus), with --concurrent-users.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Users: with --duration the constant number of users [default: 10]; with
    /// --arrival-rate the pool serving arrivals [default: peak rate, at least 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub concurrent_users: Option<u64>,

    /// --arrival-rate: how many iterations may wait for a busy pool, each measured from its
    /// intended start (wrk2); beyond it they are dropped and the run is invalid
    /// [default: 10 s of the peak rate, at least 1000].
    #[arg(long, value_name = "N", conflicts_with = "drop_iterations")]
    pub max_queued_iterations: Option<u64>,

    /// --arrival-rate: drop an iteration that finds every user busy, as k6 does, instead of
    /// queueing it (a run that drops any is invalid).
    #[arg(long)]
    pub drop_iterations: bool,

    /// Multiply every stage duration by F (CI runs the k6 plan at 0.0625).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub time_scale: f64,

    /// Closed model: pause after each iteration (the sleep(1) of the guide's k6 script). Not scaled
    /// by --time-scale.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub think_time: Option<Duration>,

    /// Scenarios with optional weights: "create-agent", "messaging",
    /// "create-agent:3,messaging:1".
    #[arg(long, default_value = "create-agent", value_name = "SCENARIOS")]
    pub scenario: String,

    /// A k6-style threshold, repeatable: 'http_req_duration: p(95)<2000',
    /// 'http_req_duration{stage:hold-200}: p(99)<1500', 'http_req_failed: rate<0.1'.
    /// k6's abortOnFail follows the expression: 'http_req_duration: p(95)<2000 abortOnFail
    /// delayAbortEval=10s' is judged once a second during the run on what was measured so
    /// far (not before delayAbortEval), and a breach stops the run: report marked aborted,
    /// exit 99. A lower bound on a count (http_reqs: count>N) is refused with abortOnFail.
    /// A distributed worker (--workers) pushing to --report-to-prometheus judges them on
    /// the run's global figures there (up to one 10 s push behind; http_req_duration p(N),
    /// med, avg, http_req_failed and checks rate, http_reqs count<N, no stage tag: others
    /// are refused); without Prometheus it does not abort, and merge judges at the end.
    #[arg(long = "threshold", value_name = "THRESHOLD")]
    pub thresholds: Vec<String>,

    /// A TOML file of thresholds: [thresholds] http_req_duration = ["p(95)<2000"], or in
    /// k6's object form [{ threshold = "p(95)<2000", abortOnFail = true, delayAbortEval =
    /// "10s" }], the two mixed freely.
    #[arg(long = "thresholds", value_name = "FILE")]
    pub thresholds_file: Option<PathBuf>,

    /// Drop the guide's thresholds (p(95)<2000, failure rate < 10 %), which otherwise
    /// apply to every run in addition to those given.
    #[arg(long)]
    pub no_default_thresholds: bool,

    /// Reports go to DIR/<run-id>/report.json.
    #[arg(long, default_value = "reports/out", value_name = "DIR")]
    pub out: PathBuf,

    /// Also write the run's figures in k6's `--summary-export` JSON shape (http_req_duration,
    /// http_req_failed, http_reqs, checks, with their thresholds), for CI steps written for k6.
    #[arg(long, value_name = "FILE")]
    pub summary_export: Option<PathBuf>,

    /// Run id [default: UTC start time and a random suffix, e.g. 20260101T020000Z-1a2b3c].
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// Prometheus base URL to remote-write caxton_bench_* series to every 10 s and at
    /// the end.
    #[arg(long, value_name = "URL")]
    pub report_to_prometheus: Option<String>,

    /// Pushgateway base URL, an alternative sink for the same series.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Embedded runtime: its caxton.toml (listen addresses are replaced by free loopback
    /// ports).
    #[arg(long, value_name = "FILE")]
    pub runtime_config: Option<PathBuf>,

    /// Profile the target during this stage (`run`: the whole run, its last 300 s when
    /// longer) and save `flamegraph.svg` and `cpu.pb.gz` beside the report. Default: `run`,
    /// when the target can be profiled (the embedded runtime always; a --target only with
    /// --pprof).
    #[arg(long, value_name = "STAGE")]
    pub flamegraph_stage: Option<String>,

    /// No flamegraph.
    #[arg(long, conflicts_with = "flamegraph_stage")]
    pub no_flamegraph: bool,

    /// The target's pprof endpoint base URL (its `[profiling] server_address`), e.g.
    /// http://127.0.0.1:6060, for flamegraphs of a --target run. Default with --target:
    /// $CAXTON_BENCH_PPROF when set (so a manifest can add it without changing the command
    /// line).
    #[arg(long, value_name = "URL")]
    pub pprof: Option<String>,

    /// The target's Prometheus endpoint, e.g. http://caxton-service:9090/metrics: its
    /// `caxton_build_info` names the build the run measured (report and pushed labels).
    /// The embedded runtime provides its own.
    #[arg(long, value_name = "URL")]
    pub target_metrics: Option<String>,
    /// A header every request carries, repeatable: 'Authorization: Bearer …' for a target
    /// with `[server] api_token`. Values are left out of the report's command line.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,

    /// A file holding the target's API token (e.g. a mounted Kubernetes Secret): every
    /// request carries `Authorization: Bearer <token>`. Default: $CAXTON_BENCH_TOKEN_FILE
    /// when set (so a manifest can add it without changing the command line).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Per-request timeout; a request that takes longer fails as `timeout`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// Live progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Distributed run: this worker's index in 0..N (a Kubernetes Indexed Job's
    /// $JOB_COMPLETION_INDEX). It runs its share of the users or arrival rate, pushes with
    /// worker="I", writes DIR/<run-id>/worker-I/report.json and exits 0 on a breach:
    /// `caxton-bench merge` judges the thresholds globally.
    #[arg(long, value_name = "I", requires = "workers")]
    pub worker_index: Option<u32>,

    /// Distributed run: the number of workers N sharing the load. The workers of one
    /// --run-id meet in DIR/<run-id>/barrier/ (the shared --out) and start their load at
    /// one instant: the last one's arrival plus 1 s.
    #[arg(long, value_name = "N", requires = "worker_index", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: Option<u32>,

    /// The target's name in histories and pushed series (label `target_key`): runs with the
    /// same key form one series wherever the target listened, e.g. a service that moved, or a
    /// loopback runtime on a new port each night [default: the --target URL; `embedded` for
    /// the embedded runtime].
    #[arg(long, value_name = "NAME")]
    pub target_key: Option<String>,

    /// Distributed run: how long a worker waits for the others before its load.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub start_timeout: Duration,

    /// Distributed run: when workers have not come within --start-timeout, `fail` (exit 1,
    /// naming them, before any load) or `proceed` (the others start together without them,
    /// naming them).
    #[arg(long, value_enum, default_value_t = crate::barrier::MissingWorkers::Fail, value_name = "WHAT")]
    pub missing_workers: crate::barrier::MissingWorkers,

    /// The most of a response body kept in memory for the checks, in bytes; a longer body is
    /// still read to its end (its latency is whole) but the rest is dropped and counted, so
    /// a hostile target cannot exhaust the generator's memory (at most users × this).
    #[arg(long, default_value_t = crate::transport::DEFAULT_MAX_BODY, value_name = "BYTES")]
    pub max_body: usize,

    /// The agent type the scenarios create (a built-in, or the name of --agent-module).
    #[arg(long, default_value = crate::scenario::DEFAULT_AGENT_TYPE, value_name = "NAME")]
    pub agent_type: String,

    /// A WebAssembly module (binary or WAT text) the scenarios' agents run, uploaded with
    /// each create under --agent-type's name (the runtime compiles it once).
    #[arg(long, value_name = "FILE")]
    pub agent_module: Option<PathBuf>,

    /// Profile of the slow requests: the samples of requests that took at least this long
    /// (`flamegraph-slow.svg`, report.json's `flamegraph.slow`) [default: the run's
    /// uncorrected p95].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub slow_threshold: Option<Duration>,

    /// Also record a latency histogram per slice of this many seconds in report.json
    /// (`slices`): the unit `caxton-bench ab` pairs and resamples.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub slice_seconds: Option<u64>,

    /// Run this fraction of every stage's users (rounded up) or rate: how `ab` gives each
    /// of two concurrent arms its half.
    #[arg(long, value_name = "F", hide = true)]
    pub load_share: Option<f64>,

    /// Start the load at this unix time in milliseconds, not as soon as possible: how the
    /// arms of `ab` start together.
    #[arg(long, value_name = "UNIX_MS", hide = true)]
    pub start_at: Option<u64>,

    /// Send only in this arm's slices (of --slice-seconds) of an interleaved pairing: how
    /// `ab --pairing interleaved` makes its arms take turns.
    #[arg(long, value_name = "ARM", hide = true, requires = "slice_seconds")]
    pub interleave_arm: Option<caxton_reports::paired::Arm>,
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    #[error("--concurrent-users needs --duration (constant users) or --arrival-rate (user pool)")]
    UsersWithoutDuration,
    #[error("--run-id `{0}`: use letters, digits, `-`, `_` and `.` only")]
    RunId(String),
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),
    #[error(transparent)]
    Header(#[from] crate::headers::HeaderError),
    #[error("--load-share {0}: expected a fraction in (0, 1]")]
    LoadShare(f64),
    #[error(
        "--workers {0}: give the workers one --run-id, the id they meet and write their reports under"
    )]
    WorkersWithoutRunId(u32),
    #[error("--agent-module {path}: {source}")]
    AgentModule {
        path: String,
        source: std::io::Error,
    },
}

fn check_run_id(id: &str) -> Result<(), CliError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(CliError::RunId(id.to_string()))
    }
}

const DEFAULT_CONSTANT_USERS: u64 = 10;

/// The environment variable `--token-file` defaults to.
pub const TOKEN_FILE_ENV: &str = "CAXTON_BENCH_TOKEN_FILE";
/// The environment variable `--pprof` defaults to.
pub const PPROF_ENV: &str = "CAXTON_BENCH_PPROF";
/// The environment variable that makes a `--target` run a paired A/B run against it.
pub const BASELINE_TARGET_ENV: &str = "CAXTON_BENCH_BASELINE_TARGET";
/// The baseline's pprof endpoint for such a run.
pub const BASELINE_PPROF_ENV: &str = "CAXTON_BENCH_BASELINE_PPROF";

impl AbArgs {
    /// The A/B run a plain `--target` run becomes when $CAXTON_BENCH_BASELINE_TARGET names a
    /// baseline (and it is not a distributed worker); `None` otherwise. The verdict's
    /// settings are `ab`'s defaults.
    pub fn from_environment(run: RunArgs) -> Result<AbArgs, Box<RunArgs>> {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match env(BASELINE_TARGET_ENV) {
            // An arm of an A/B run (`--load-share`) is never an A/B run itself.
            Some(baseline)
                if run.target.is_some()
                    && run.worker_index.is_none()
                    && run.load_share.is_none() =>
            {
                Ok(AbArgs {
                    baseline_target: Some(baseline),
                    baseline_runtime: None,
                    runtime: None,
                    baseline_runtime_config: None,
                    baseline_pprof: env(BASELINE_PPROF_ENV),
                    pairing: caxton_reports::paired::Pairing::default(),
                    slice: DEFAULT_SLICE,
                    warmup: None,
                    regression_threshold: DEFAULT_REGRESSION_THRESHOLD.to_string(),
                    gate: DEFAULT_GATE.to_string(),
                    metric_thresholds: Vec::new(),
                    markdown: false,
                    run,
                })
            }
            _ => Err(Box::new(run)),
        }
    }
}

/// `ab --gate`'s default (`caxton_reports::paired::DEFAULT_GATING`).
const DEFAULT_GATE: &str = "p95,error_rate";
/// `ab --slice`'s default.
const DEFAULT_SLICE: Duration = Duration::from_secs(2);
/// `ab --regression-threshold`'s default (`caxton_reports::paired::DEFAULT_THRESHOLD`).
const DEFAULT_REGRESSION_THRESHOLD: &str = "3%";

impl RunArgs {
    /// Resolves the flags into a run; `argv` is recorded in the report.
    pub fn resolve(&self, argv: Vec<String>) -> Result<RunOptions, CliError> {
        let plan = self.whole_plan()?;
        let thresholds = self.thresholds()?;
        let run_id = match &self.run_id {
            Some(id) => {
                check_run_id(id)?;
                id.clone()
            }
            None => new_run_id(),
        };
        let worker = match (self.worker_index, self.workers) {
            (Some(index), Some(workers)) => Some(WorkerShare::new(index, workers)?),
            _ => None,
        };
        let start_barrier = match worker {
            Some(w) if w.workers > 1 => {
                if self.run_id.is_none() {
                    return Err(CliError::WorkersWithoutRunId(w.workers));
                }
                Some(crate::barrier::StartBarrier {
                    timeout: self.start_timeout,
                    missing: self.missing_workers,
                })
            }
            _ => None,
        };
        let plan = match &worker {
            Some(w) => w.plan(&plan)?,
            None => plan,
        };
        let share = match self.load_share {
            Some(f) if f > 0.0 && f <= 1.0 => Some(f),
            Some(f) => return Err(CliError::LoadShare(f)),
            None => None,
        };
        let plan = match share {
            Some(f) => plan.share(f),
            None => plan,
        };
        // The variable names a --target's endpoint: an embedded runtime is profiled where
        // it listens.
        let pprof = self.pprof.clone().or_else(|| {
            self.target.as_ref()?;
            std::env::var(PPROF_ENV).ok().filter(|url| !url.is_empty())
        });
        // A --target can be profiled only through its pprof endpoint.
        let flamegraph = if self.no_flamegraph || (self.target.is_some() && pprof.is_none()) {
            None
        } else {
            self.flamegraph_stage
                .clone()
                .or_else(|| crate::flamegraph::default_stage(&plan))
        };
        let backlog = match (self.drop_iterations, self.max_queued_iterations) {
            (true, _) => Backlog::Drop,
            (false, Some(n)) => Backlog::Queue(n),
            (false, None) => Backlog::default_for(&plan),
        };
        Ok(RunOptions {
            target: self.target.clone(),
            backlog,
            pool_users: match plan.model {
                LoadModel::Open => self
                    .concurrent_users
                    .map(|n| worker.map_or(n, |w| w.count(n).max(1)))
                    .map(|n| share.map_or(n, |f| ((n as f64 * f).ceil() as u64).max(1))),
                LoadModel::Closed => None,
            },
            worker,
            plan,
            scenarios: scenario::parse_scenarios(&self.scenario)?,
            think_time: self.think_time.unwrap_or(K6_THINK_TIME),
            thresholds,
            out_dir: self.out.clone(),
            run_id,
            command_line: crate::headers::redact_argv(argv),
            headers: crate::headers::parse(
                &self.headers,
                self.token_file
                    .clone()
                    .or_else(|| std::env::var_os(TOKEN_FILE_ENV).map(PathBuf::from))
                    .as_deref(),
            )?,
            runtime_config: self.runtime_config.clone(),
            request_timeout: self.request_timeout,
            progress: self.progress,
            prometheus: self.report_to_prometheus.clone(),
            pushgateway: self.pushgateway.clone(),
            flamegraph,
            pprof,
            target_metrics: self.target_metrics.clone(),
            target_key: self.target_key.clone(),
            max_body: self.max_body,
            slice_seconds: self.slice_seconds,
            turns: self
                .interleave_arm
                .zip(self.slice_seconds)
                .map(|(arm, seconds)| crate::turns::Turns {
                    slice: Duration::from_secs(seconds),
                    arm,
                }),
            create_agent_body: self.create_agent_body()?,
            slow_threshold: self.slow_threshold,
            start_at: self
                .start_at
                .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
            start_barrier,
        })
    }

    /// The body of the scenarios' `POST /api/agents`: the guide's, or the --agent-type and
    /// its --agent-module.
    fn create_agent_body(&self) -> Result<bytes::Bytes, CliError> {
        let module = match &self.agent_module {
            Some(path) => Some(std::fs::read(path).map_err(|source| CliError::AgentModule {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        Ok(crate::scenario::create_agent_body(
            &self.agent_type,
            module.as_deref(),
        ))
    }

    /// The plan of the whole run (all workers together).
    fn whole_plan(&self) -> Result<Plan, CliError> {
        let scale = self.time_scale;
        Ok(if let Some(stages) = &self.stages {
            Plan::from_stages(
                "stages",
                LoadModel::Closed,
                0.0,
                plan::parse_stages(stages)?,
                scale,
            )?
        } else if let Some(rates) = &self.arrival_rate {
            Plan::from_stages(
                "arrival-rate",
                LoadModel::Open,
                0.0,
                plan::parse_stages(rates)?,
                scale,
            )?
        } else if let Some(duration) = self.duration {
            let users = self.concurrent_users.unwrap_or(DEFAULT_CONSTANT_USERS);
            Plan::constant(users, duration, scale)?
        } else {
            if self.concurrent_users.is_some() {
                return Err(CliError::UsersWithoutDuration);
            }
            Plan::k6(scale)?
        })
    }

    /// The guide's k6 thresholds (unless turned off), then the file's, then the flags'.
    fn thresholds(&self) -> Result<Vec<Threshold>, CliError> {
        let mut thresholds = Vec::new();
        if !self.no_default_thresholds {
            for t in K6_THRESHOLDS {
                thresholds.push(Threshold::parse(t)?);
            }
        }
        if let Some(file) = &self.thresholds_file {
            thresholds.extend(thresholds::load_file(file)?);
        }
        for t in &self.thresholds {
            thresholds.push(Threshold::parse(t)?);
        }
        Ok(thresholds)
    }
}

/// `20260101T020000Z-1a2b3c`: sortable by start time, unique across parallel runs.
pub fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let suffix = (u64::from(nanos) ^ (u64::from(std::process::id()) << 20)) & 0xff_ffff;
    format!("{compact}-{suffix:06x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["caxton-bench"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_seed_cronjob_line_works_as_written() {
        let cli = parse(&[
            "--target",
            "http://caxton-service:8080",
            "--duration",
            "300s",
            "--concurrent-users",
            "100",
            "--report-to-prometheus",
            "http://prometheus:9090",
        ]);
        let opts = cli.run.resolve(vec![]).unwrap();
        assert_eq!(opts.plan.name, "constant");
        assert_eq!(opts.plan.start_target, 100.0);
        assert_eq!(opts.plan.total_duration(), Duration::from_secs(300));
        assert_eq!(opts.target.as_deref(), Some("http://caxton-service:8080"));
        assert_eq!(
            cli.run.report_to_prometheus.as_deref(),
            Some("http://prometheus:9090")
        );
        assert_eq!(opts.thresholds.len(), 2);
    }

    #[test]
    fn default_is_the_k6_plan_with_its_thresholds() {
        let opts = parse(&["--time-scale", "0.0625"])
            .run
            .resolve(vec![])
            .unwrap();
        assert_eq!(opts.plan.name, "k6");
        assert_eq!(opts.plan.total_duration(), Duration::from_secs(60));
        assert_eq!(opts.think_time, Duration::from_secs(1));
        let texts: Vec<_> = opts.thresholds.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, K6_THRESHOLDS);
    }

    #[test]
    fn thresholds_accumulate_and_shapes_conflict() {
        let opts = parse(&[
            "--plan",
            "k6",
            "--threshold",
            "http_req_duration{stage:hold-200}: p(99)<1500",
            "--threshold",
            "checks: rate>0.99",
            "--no-default-thresholds",
        ])
        .run
        .resolve(vec![])
        .unwrap();
        assert_eq!(opts.thresholds.len(), 2);
        assert!(Cli::try_parse_from(["caxton-bench", "--plan", "k6", "--stages", "1s:1"]).is_err());
        assert!(matches!(
            parse(&["--concurrent-users", "5"]).run.resolve(vec![]),
            Err(CliError::UsersWithoutDuration)
        ));
        assert!(parse(&["--run-id", "../x"]).run.resolve(vec![]).is_err());
    }

    #[test]
    fn push_is_a_subcommand() {
        let cli = parse(&[
            "push",
            "r.json",
            "--report-to-prometheus",
            "http://127.0.0.1:9",
        ]);
        assert!(matches!(cli.command, Some(Command::Push(_))));
    }

    #[test]
    fn a_worker_runs_its_share_and_merge_is_a_subcommand() {
        let opts = parse(&[
            "--duration",
            "10s",
            "--concurrent-users",
            "5",
            "--worker-index",
            "1",
            "--workers",
            "2",
            "--run-id",
            "r",
        ])
        .run
        .resolve(vec![])
        .unwrap();
        assert_eq!(
            opts.start_barrier.map(|b| b.timeout),
            Some(Duration::from_secs(60))
        );
        let err = parse(&["--worker-index", "0", "--workers", "2"])
            .run
            .resolve(vec![])
            .unwrap_err();
        assert!(err.to_string().contains("one --run-id"), "{err}");
        assert_eq!(opts.plan.start_target, 2.0);
        assert_eq!(
            opts.worker,
            Some(WorkerShare {
                index: 1,
                workers: 2
            })
        );
        assert!(Cli::try_parse_from(["caxton-bench", "--workers", "2"]).is_err());
        let err = parse(&["--worker-index", "2", "--workers", "2"])
            .run
            .resolve(vec![])
            .unwrap_err();
        assert!(err.to_string().contains("below --workers 2"), "{err}");
        let cli = parse(&["merge", "a.json", "b.json", "--out", "o"]);
        assert!(matches!(cli.command, Some(Command::Merge(m)) if m.reports.len() == 2));
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20260101T020000Z-1a2b3c".len(), "{id}");
        assert!(id.as_bytes()[8] == b'T');
    }
}
