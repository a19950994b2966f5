//! One run, start to finish: target (embedded or given), goose attack, once-a-second
//! merge and progress, report, thresholds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use caxton_reports::model::{GeneratorCpu, LoadModel, ReportError, RunReport, TargetBuild};
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use thiserror::Error;
use tokio::sync::watch;

use crate::abort::Aborter;
use crate::arrival::{self, Arrivals, Backlog, ScheduleOutcome};
use crate::collector::{Collector, Tick};
use crate::distributed::WorkerShare;
use crate::embedded::{Embedded, EmbeddedError};
use crate::flamegraph::{Captured, FlamegraphError};
use crate::plan::Plan;
use crate::progress::{Progress, ProgressMode};
use crate::push::{self, PUSH_INTERVAL, Sinks};
use crate::recorder::CHECKS;
use crate::report::{self, RunMeta};
use crate::run_dir;
use crate::scenario::{self, RunContext, WeightedScenario};
use crate::series::{self, CommonLabels, LiveFigures};
use crate::thresholds::{Threshold, ThresholdError};
use crate::validity;
use caxton_reports::model::Percentiles;
use caxton_reports::remote_write::{SinkError, now_ms};

/// Everything a run needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Base URL; `None` starts an embedded runtime.
    pub target: Option<String>,
    pub plan: Plan,
    pub scenarios: Vec<WeightedScenario>,
    /// Closed model: pause after each iteration.
    pub think_time: Duration,
    /// Open model: the user pool serving arrivals.
    pub pool_users: Option<u64>,
    /// Open model: what happens to an iteration that finds every user busy.
    pub backlog: Backlog,
    pub thresholds: Vec<Threshold>,
    /// The report goes to `<out_dir>/<run_id>/report.json`.
    pub out_dir: PathBuf,
    pub run_id: String,
    pub command_line: Vec<String>,
    pub runtime_config: Option<PathBuf>,
    pub request_timeout: Duration,
    pub progress: ProgressMode,
    /// Remote-write base URL (`--report-to-prometheus`).
    pub prometheus: Option<String>,
    pub pushgateway: Option<String>,
    /// Stage to profile (flamegraph beside the report); `None`: no profile.
    pub flamegraph: Option<String>,
    /// The target's pprof base URL; the embedded runtime provides its own.
    pub pprof: Option<String>,
    /// The target's `/metrics` URL, read for `caxton_build_info`; the embedded runtime
    /// provides its own.
    pub target_metrics: Option<String>,
    /// Distributed run: this worker's share (the plan above is already its share).
    pub worker: Option<WorkerShare>,
    /// Sent with every request (`--header`, `--token-file`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The target's name in histories (`--target-key`); `None`: its URL or `embedded`.
    pub target_key: Option<String>,
    /// The most of a response body kept for the checks (`--max-body`).
    pub max_body: usize,
    /// Record a histogram per slice of this many seconds (`--slice-seconds`).
    pub slice_seconds: Option<u64>,
    /// An interleaved A/B arm: send only in these turns.
    pub(crate) turns: Option<crate::turns::Turns>,
    /// Start the load at this instant rather than at once (`ab`'s arms start together).
    pub start_at: Option<SystemTime>,
    /// Distributed run: meet the other workers and start with them.
    pub start_barrier: Option<crate::barrier::StartBarrier>,
    /// The scenarios' `POST /api/agents` body (`--agent-type`, `--agent-module`).
    pub create_agent_body: bytes::Bytes,
    /// `--slow-threshold`: what makes a request slow in the profile of the slow requests.
    pub slow_threshold: Option<Duration>,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("target {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("target `{0}` is not an http:// or https:// URL")]
    BadTarget(String),
    #[error("load generator (goose) failed: {0}")]
    Goose(String),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("the run's collector task failed: {0}")]
    Collector(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error(transparent)]
    Flamegraph(#[from] FlamegraphError),
    #[error(transparent)]
    Barrier(#[from] crate::barrier::BarrierError),
}

/// What a finished run produced.
pub struct RunOutcome {
    pub report: RunReport,
    pub report_path: PathBuf,
    /// The flamegraph captured during the run, or why there is none.
    pub flamegraph: Option<Result<PathBuf, String>>,
}

impl RunOutcome {
    /// Valid, and every threshold passed.
    pub fn passed(&self) -> bool {
        self.report.passed()
    }

    /// A distributed worker's thresholds are informative: `merge` judges them globally.
    pub fn judged_by_merge(&self) -> bool {
        self.report
            .distributed
            .as_ref()
            .is_some_and(|d| d.worker_index.is_some())
    }
}

/// The user pool of an open-model run when `--concurrent-users` is not given: enough for
/// the peak rate at 1 s per iteration, at least 10.
pub(crate) fn default_pool(plan: &Plan) -> u64 {
    (plan.peak().ceil() as u64).clamp(10, 10_000)
}

pub async fn run(opts: RunOptions) -> Result<RunOutcome, RunError> {
    let stage_names: Vec<String> = opts.plan.stages.iter().map(|s| s.name.clone()).collect();
    for t in &opts.thresholds {
        t.check_stage(&stage_names)?;
    }
    let window = match &opts.flamegraph {
        Some(stage) => Some(crate::flamegraph::window(&opts.plan, stage)?),
        None => None,
    };
    let embedded = match &opts.target {
        Some(_) => None,
        None => Some(Embedded::start(opts.runtime_config.as_deref(), window.is_some()).await?),
    };
    let target = match (&opts.target, &embedded) {
        (Some(t), _) => t.trim_end_matches('/').to_string(),
        (None, Some(e)) => e.base_url(),
        (None, None) => unreachable!("an embedded runtime was started above"),
    };
    let pprof = opts
        .pprof
        .clone()
        .or_else(|| embedded.as_ref().and_then(Embedded::pprof_url));
    let profile = window.zip(pprof);
    let metrics = opts
        .target_metrics
        .clone()
        .or_else(|| embedded.as_ref().map(Embedded::metrics_url));
    let result = attack(&opts, &target, embedded.is_some(), profile, metrics).await;
    if let Some(e) = embedded {
        e.stop().await;
    }
    result
}

/// Refuses a target that cannot be connected to before any load is sent, naming it.
pub(crate) async fn preflight(target: &str) -> Result<(), RunError> {
    if !(target.starts_with("http://") || target.starts_with("https://")) {
        return Err(RunError::BadTarget(target.to_string()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| RunError::Goose(e.to_string()))?;
    let url = format!("{target}/health");
    match client.get(&url).send().await {
        // Any HTTP answer means the target serves; only transport failures stop the run.
        Ok(_) => Ok(()),
        Err(e) => {
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            Err(RunError::Unreachable {
                url: target.to_string(),
                detail: format!("GET {url} failed: {detail}"),
            })
        }
    }
}

fn goose_error(e: impl std::fmt::Debug) -> RunError {
    RunError::Goose(format!("{e:?}"))
}

/// The goose test plan of a run: (users, milliseconds to reach them) steps.
pub(crate) fn goose_steps(plan: &Plan, pool_users: Option<u64>) -> Vec<(usize, usize)> {
    let ms = |d: Duration| usize::try_from(d.as_millis()).unwrap_or(usize::MAX);
    let mut steps = Vec::new();
    match plan.model {
        LoadModel::Closed => {
            if plan.start_target > 0.0 {
                steps.push((plan.start_target.round() as usize, 0));
            }
            for s in &plan.stages {
                steps.push((s.target.round() as usize, ms(s.duration)));
            }
        }
        LoadModel::Open => {
            // The pool starts at once and holds well past the schedule: the scheduler
            // ends the run when its last arrival is due.
            let pool = pool_users.unwrap_or_else(|| default_pool(plan)) as usize;
            steps.push((pool, 0));
            steps.push((pool, ms(plan.total_duration() + Duration::from_secs(3600))));
        }
    }
    if steps.last().is_some_and(|(users, _)| *users > 0) {
        steps.push((0, 0));
    }
    steps
}

/// A goose configuration owned by our CLI: no goose flags are read, its controllers,
/// metrics and console report are off (we measure ourselves).
fn goose_config(
    target: &str,
    steps: &[(usize, usize)],
    timeout: Duration,
) -> Result<GooseConfiguration, RunError> {
    // Goose only takes millisecond plan steps through its serde form (its string form
    // rounds to whole seconds, too coarse for a time-scaled plan).
    let mut value = serde_json::to_value(GooseConfiguration::default()).map_err(goose_error)?;
    value["test_plan"] = serde_json::json!({ "steps": steps, "current": 0 });
    let mut config: GooseConfiguration = serde_json::from_value(value).map_err(goose_error)?;
    config.host = Some(target.to_string());
    config.no_metrics = true;
    config.no_print_metrics = true;
    config.no_telnet = true;
    config.quiet = 1;
    config.timeout = Some(format!("{}", timeout.as_secs_f64()));
    Ok(config)
}

async fn attack(
    opts: &RunOptions,
    target: &str,
    embedded: bool,
    profile: Option<((Duration, u64), String)>,
    target_metrics: Option<String>,
) -> Result<RunOutcome, RunError> {
    preflight(target).await?;
    // Read before the load, so the live pushes carry it too.
    let target_build = crate::target_build::read(target_metrics.as_deref()).await;
    let sinks = Sinks::new(opts.prometheus.as_deref(), opts.pushgateway.as_deref())?;
    let report_path =
        run_dir::report_path(&opts.out_dir, &opts.run_id, opts.worker.map(|w| w.index));
    let live = sinks.clone().map(|sinks| LivePush {
        sinks,
        labels: common_labels(opts, target, target_build.as_ref()),
        spool: run_dir::spool_path(&report_path),
    });
    let open = opts.plan.model == LoadModel::Open;
    let pool = open.then(|| opts.pool_users.unwrap_or_else(|| default_pool(&opts.plan)));
    let ctx = Arc::new(
        RunContext::new(
            target,
            opts.plan.clone(),
            opts.think_time,
            open.then(|| Arc::new(Arrivals::new(opts.backlog))),
            opts.request_timeout,
            opts.headers.clone(),
            opts.max_body,
        )?
        .taking_turns(opts.turns)
        .with_create_agent_body(opts.create_agent_body.clone()),
    );
    let goose = goose_attack(opts, &ctx, target, pool)?;
    let run_dir = run_dir::dir_of(&report_path).to_path_buf();
    // A worker's share is not the run: its abortOnFail thresholds are judged on the global
    // figures in Prometheus, or (without) by merge at the end.
    let aborter = match (opts.worker, &opts.prometheus) {
        (None, _) => Aborter::new(&opts.thresholds),
        (Some(_), Some(url)) => Aborter::new(&opts.thresholds)
            .map(|a| {
                a.global(crate::abort::Global {
                    url: url.clone(),
                    run_id: opts.run_id.clone(),
                })
            })
            .transpose()?,
        (Some(_), None) => None,
    }
    .map(Arc::new);
    // The workers of a distributed run meet once set up, so they start their load together.
    let start_at = match (opts.worker, opts.start_barrier) {
        (Some(w), Some(barrier)) => Some(
            crate::barrier::meet(
                &crate::barrier::dir(&opts.out_dir, &opts.run_id),
                w.index,
                w.workers,
                barrier,
            )
            .await?,
        ),
        _ => opts.start_at,
    };
    let mut load = execute(
        opts,
        goose,
        &ctx,
        pool,
        live,
        profile,
        run_dir,
        aborter.clone(),
        start_at,
    )
    .await?;
    let oversized = ctx.oversized_bodies();
    if oversized > 0 {
        eprintln!(
            "caxton-bench: warning: {oversized} responses were longer than --max-body {} bytes: \
             read to their end (their latency is whole), only their first bytes kept for the checks",
            opts.max_body
        );
    }

    let flamegraph = match load.flamegraph.take() {
        // The capture window lies inside the stage, so it ends about when the run does;
        // allow for fetching and rendering, then give up.
        Some(task) => match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(r)) => Some(r.map_err(|e| e.to_string())),
            Ok(Err(e)) => Some(Err(e.to_string())),
            Err(_) => Some(Err("the run ended before the profiled stage did".into())),
        },
        None => None,
    };
    // Collected first, then built, judged and written once: the report names its flamegraph
    // (so `caxton-bench report` embeds it) and its sample counts, which can make the run
    // invalid, and the final push carries that same verdict.
    let finished = report::Finished {
        target_key: opts.target_key.clone(),
        distributed: opts.worker.map(|w| w.record()),
        generator_cpu: load.generator_cpu.clone(),
        target_build,
        flamegraph: match (&flamegraph, &opts.flamegraph) {
            (Some(Ok(captured)), Some(stage)) => Some(captured.reference(stage)),
            _ => None,
        },
        interrupted: crate::interrupt::interruption(&opts.plan, ctx.started.get()),
        aborted: aborter.as_ref().and_then(|a| a.fired()),
    };
    let mut report = judged_report(opts, target, embedded, &ctx, pool, &load, finished)?;
    // The slow requests' profile is cut from the saved one: a side channel, never the
    // run's verdict.
    crate::slow_profile::add_to(&mut report, &report_path, opts.slow_threshold);
    report.write(&report_path)?;
    if let Some(sinks) = &sinks {
        push::push_final(sinks, &report, &report_path).await;
    }
    let flamegraph = flamegraph.map(|r| r.map(|c| c.svg));
    Ok(RunOutcome {
        report,
        report_path,
        flamegraph,
    })
}

/// The labels of every series the run pushes.
fn common_labels(
    opts: &RunOptions,
    target: &str,
    target_build: Option<&TargetBuild>,
) -> CommonLabels {
    CommonLabels {
        run_id: opts.run_id.clone(),
        plan: opts.plan.name.clone(),
        scenario: opts
            .scenarios
            .iter()
            .map(|s| s.kind.name())
            .collect::<Vec<_>>()
            .join("+"),
        target: target.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        target_version: series::target_version(target_build),
        worker: opts
            .worker
            .map_or_else(|| "0".into(), |w| w.index.to_string()),
        plan_key: caxton_reports::history::series::plan_key_of(
            &opts.plan.name,
            &opts.plan.planned_stages(),
        ),
        target_key: opts.target_key.clone().unwrap_or_else(|| {
            caxton_reports::history::series::target_key_of(target, opts.target.is_none())
        }),
    }
}

/// Goose, told our plan and the run's scenarios.
fn goose_attack(
    opts: &RunOptions,
    ctx: &Arc<RunContext>,
    target: &str,
    pool: Option<u64>,
) -> Result<GooseAttack, RunError> {
    let steps = goose_steps(&opts.plan, pool);
    // Users send through the shared transport above; goose's own client is never used, so
    // one client shared by all users (not one each: BENCHMARKS.md has the memory per user)
    // is what goose builds.
    let mut goose =
        GooseAttack::initialize_with_config(goose_config(target, &steps, opts.request_timeout)?)
            .and_then(|g| {
                g.set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
            })
            .map_err(goose_error)?;
    for s in scenario::goose_scenarios(ctx, &opts.scenarios).map_err(goose_error)? {
        goose = goose.register_scenario(s);
    }
    Ok(goose)
}

/// What the load produced, measured while it ran.
struct Load {
    collector: Collector,
    generator_cpu: Option<GeneratorCpu>,
    /// Open model: how well the arrival schedule was held.
    schedule: Option<ScheduleOutcome>,
    wall_start: SystemTime,
    wall_end: SystemTime,
    ended: Instant,
    /// The flamegraph capture, still running when the load ends.
    flamegraph: Option<tokio::task::JoinHandle<Result<Captured, FlamegraphError>>>,
}

/// Runs the attack, bounded, with everything that watches it: the ticker (progress, live
/// pushes, abortOnFail thresholds), the generator's CPU, the open model's scheduler and the
/// flamegraph capture.
#[allow(clippy::too_many_arguments)]
async fn execute(
    opts: &RunOptions,
    goose: GooseAttack,
    ctx: &Arc<RunContext>,
    pool: Option<u64>,
    live: Option<LivePush>,
    profile: Option<((Duration, u64), String)>,
    run_dir: PathBuf,
    aborter: Option<Arc<Aborter>>,
    start_at: Option<SystemTime>,
) -> Result<Load, RunError> {
    if let Some(at) = start_at
        && let Ok(wait) = at.duration_since(SystemTime::now())
    {
        // Bounded: a start time far off is a caller's mistake, not a reason to hang.
        tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
    }
    let wall_start = SystemTime::now();
    // Closed model: the run clock starts with the first user's first iteration (scenario.rs),
    // not here: goose sets up its users first, which takes a while on a busy machine, and
    // stages must not tick away before any request is sent.
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu = tokio::spawn(crate::generator_cpu::measure(stop_rx.clone()));
    let global_watch = aborter
        .clone()
        .filter(|a| a.is_global())
        .map(|a| tokio::spawn(a.watch_global(ctx.clone(), stop_rx.clone())));
    let ticker = tokio::spawn(ticker(
        ctx.clone(),
        opts.progress,
        stop_rx,
        live,
        opts.slice_seconds,
        aborter.clone().filter(|a| !a.is_global()),
    ));
    let scheduler = match (&ctx.arrivals, pool) {
        (Some(arrivals), Some(pool)) => Some(tokio::spawn(open_schedule(
            ctx.clone(),
            arrivals.clone(),
            pool,
            opts.request_timeout,
        ))),
        _ => None,
    };
    let flamegraph = profile.map(|(window, pprof)| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            crate::flamegraph::capture(pprof, &ctx.started, window, run_dir).await
        })
    });
    let aborted_at = || aborter.as_ref().and_then(|a| a.fired_at());
    let goose_result = crate::interrupt::bounded(
        goose.execute(),
        opts.plan.total_duration(),
        opts.request_timeout,
        aborted_at,
    )
    .await;
    // On its own the scheduler ends the run (the killswitch), so it has finished by now; a
    // run interrupted, aborted or abandoned may have left it scheduling: stop it instead.
    let stopped_early = crate::interrupt::caught().is_some() || aborted_at().is_some();
    let schedule = match scheduler {
        Some(s) if goose_result.is_none() || stopped_early => {
            s.abort();
            None
        }
        Some(s) => s.await.ok(),
        None => None,
    };
    let ended = Instant::now();
    let wall_end = SystemTime::now();
    let _ = stop_tx.send(true);
    let collector = ticker
        .await
        .map_err(|e| RunError::Collector(e.to_string()))?;
    let generator_cpu = cpu.await.ok();
    if let Some(watch) = global_watch {
        let _ = watch.await;
    }
    if let Some(result) = goose_result {
        result.map_err(goose_error)?;
    }
    Ok(Load {
        collector,
        generator_cpu,
        schedule,
        wall_start,
        wall_end,
        ended,
        flamegraph,
    })
}

/// The report of the load, built once, its thresholds evaluated and its validity judged.
fn judged_report(
    opts: &RunOptions,
    target: &str,
    embedded: bool,
    ctx: &RunContext,
    pool: Option<u64>,
    load: &Load,
    finished: report::Finished,
) -> Result<RunReport, RunError> {
    let started = ctx.started.get().unwrap_or(load.ended);
    let meta = RunMeta {
        run_id: &opts.run_id,
        command_line: &opts.command_line,
        target,
        embedded_target: embedded,
        started: load.wall_start,
        ended: load.wall_end,
        elapsed: load.ended.saturating_duration_since(started),
        plan: &opts.plan,
        think_time: opts.think_time,
        pool_users: pool,
        scenarios: &opts.scenarios,
    };
    let mut report = report::build(&meta, &load.collector, finished)?;
    report.thresholds = opts
        .thresholds
        .iter()
        .map(|t| t.evaluate(&report))
        .collect();
    report.validity = validity::judge(
        &report,
        &validity::Evidence {
            schedule: load.schedule,
            generator: report.generator_cpu.as_ref(),
            profile: report.flamegraph.as_ref(),
        },
    );
    Ok(report)
}

/// Open model: start the schedule once the user pool is up (at most 5 s of waiting), so
/// the first arrivals are not dropped for users still starting; then end the run. The
/// backlog left at the end gets one request timeout to start: no run outlives its plan by
/// more.
async fn open_schedule(
    ctx: Arc<RunContext>,
    arrivals: Arc<Arrivals>,
    pool: u64,
    grace: Duration,
) -> ScheduleOutcome {
    let wait_from = Instant::now();
    while ctx.counters.users() < pool && wait_from.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let epoch = Instant::now();
    ctx.started.start(epoch);
    let outcome = arrival::run_schedule(
        ctx.plan.clone(),
        arrivals,
        ctx.counters.clone(),
        epoch,
        grace,
    )
    .await;
    goose::trigger_killswitch("arrival-rate schedule complete");
    outcome
}

/// Where the live pushes go.
struct LivePush {
    sinks: Sinks,
    labels: CommonLabels,
    spool: PathBuf,
}

impl LivePush {
    fn spawn(&self, collector: &Collector, tick: &Tick, rps: f64) -> tokio::task::JoinHandle<()> {
        let corrected = Percentiles::from_histogram(&collector.overall.corrected);
        let uncorrected = Percentiles::from_histogram(&collector.overall.uncorrected);
        let figures = LiveFigures {
            histogram: &collector.overall.corrected,
            requests: tick.requests,
            failures: tick.failures,
            rps,
            corrected: &corrected,
            uncorrected: &uncorrected,
            checks: CHECKS
                .iter()
                .zip(collector.checks)
                .map(|(name, (p, f))| (*name, p, f))
                .collect(),
            users: tick.users,
            dropped: tick.dropped,
        };
        let ts = now_ms();
        let samples = series::live_samples(&self.labels, &figures, ts);
        let histograms = [series::native_histogram(
            &self.labels,
            &collector.overall.corrected,
            ts,
        )];
        let sinks = self.sinks.clone();
        let spool = self.spool.clone();
        tokio::spawn(async move {
            sinks.send_or_spool(&samples, &histograms, &spool).await;
        })
    }
}

/// Merges the shards every second of the run (aligned to its start), shows progress,
/// judges the abortOnFail thresholds on the figures so far and pushes live figures every
/// [`PUSH_INTERVAL`].
async fn ticker(
    ctx: Arc<RunContext>,
    mode: ProgressMode,
    mut stop: watch::Receiver<bool>,
    live: Option<LivePush>,
    slice_seconds: Option<u64>,
    aborter: Option<Arc<Aborter>>,
) -> Collector {
    let mut pushes = Vec::new();
    let mut pushed_requests = 0;
    let push_every = PUSH_INTERVAL.as_secs();
    let mut collector = Collector::new(ctx.hub.clone(), ctx.plan.clone(), ctx.counters.clone());
    if let Some(seconds) = slice_seconds {
        collector = collector.with_slices(seconds);
    }
    let mut progress = Progress::new(mode, ctx.plan.total_duration());
    // The open model starts its clock once its users are up.
    let started = tokio::select! {
        at = ctx.started.wait() => at,
        _ = stop.changed() => Instant::now(),
    };
    let mut t: u64 = 0;
    loop {
        let due = started + Duration::from_secs(t + 1);
        let stopping = tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => false,
            _ = stop.changed() => true,
        };
        let elapsed = if stopping {
            started.elapsed()
        } else {
            Duration::from_secs(t + 1)
        };
        let tick: Tick = collector.tick(t, elapsed);
        progress.show(&tick);
        if let Some(aborter) = &aborter
            && !stopping
            && let Err(e) = aborter.judge(&collector, &ctx.plan, elapsed, &tick.stage)
        {
            eprintln!(
                "caxton-bench: warning: abortOnFail thresholds not judged at {elapsed:?}: {e}"
            );
        }
        // Open model: a run stopped early stops handing out arrivals, so users waiting for
        // one end now rather than after one more iteration each.
        if let Some(arrivals) = &ctx.arrivals
            && (crate::interrupt::caught().is_some()
                || aborter.as_ref().is_some_and(|a| a.fired_at().is_some()))
        {
            arrivals.stop();
        }
        t += 1;
        if let Some(live) = &live
            && t.is_multiple_of(push_every)
            && !stopping
        {
            let rps = (tick.requests - pushed_requests) as f64 / push_every as f64;
            pushed_requests = tick.requests;
            pushes.push(live.spawn(&collector, &tick, rps));
        }
        if stopping || *stop.borrow() {
            break;
        }
    }
    progress.finish();
    // Live pushes land before the final one.
    for p in pushes {
        let _ = p.await;
    }
    collector
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_stages;

    #[test]
    fn k6_plan_becomes_goose_steps_in_milliseconds() {
        let plan = Plan::k6(0.01).unwrap();
        assert_eq!(
            goose_steps(&plan, None),
            vec![
                (100, 1200),
                (100, 3000),
                (200, 1200),
                (200, 3000),
                (0, 1200)
            ]
        );
        let constant = Plan::constant(100, Duration::from_secs(300), 1.0).unwrap();
        assert_eq!(
            goose_steps(&constant, None),
            vec![(100, 0), (100, 300_000), (0, 0)]
        );
    }

    #[test]
    fn open_plan_starts_its_pool_at_once() {
        let plan = Plan::from_stages(
            "arrival-rate",
            LoadModel::Open,
            0.0,
            parse_stages("1s:50").unwrap(),
            1.0,
        )
        .unwrap();
        assert_eq!(default_pool(&plan), 50);
        assert_eq!(goose_steps(&plan, Some(7))[0], (7, 0));
    }

    #[test]
    fn goose_takes_our_configuration() {
        let config = goose_config(
            "http://127.0.0.1:1",
            &[(2, 1500), (0, 0)],
            Duration::from_secs(3),
        )
        .unwrap();
        assert_eq!(config.host.as_deref(), Some("http://127.0.0.1:1"));
        assert!(config.no_telnet && config.no_metrics);
    }
}
