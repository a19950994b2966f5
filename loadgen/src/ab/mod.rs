//! `caxton-bench ab`: one plan against two builds at the same time, judged as a pair.
//!
//! The arms (`arms`) are two `caxton-bench run` children started together against the
//! baseline (A) and candidate (B) targets, each with half the plan's load and a histogram per
//! slice; without targets, `runtimes` starts the two `caxton` binaries first. Their reports
//! are judged by `caxton_reports::paired` (ratio B/A per metric, interval over slice pairs,
//! minimum detectable change), written as one `report.json` holding both arms, rendered as
//! text, Markdown and HTML, and the profiles of both arms are diffed.

mod arms;
mod runtimes;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use caxton_reports::compare;
use caxton_reports::model::ReportError;
use caxton_reports::paired::{self, AB_SCHEMA_VERSION, AbOutcome, AbReport, Arm, PairedOptions};
use caxton_reports::profile_diff::DiffOutcome;
use thiserror::Error;

use crate::cli::AbArgs;
use crate::progress::ProgressMode;

#[derive(Debug, Error)]
pub enum AbError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a caxton.toml: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("the {arm} arm failed: {detail} (its output: {})\n{}", log.display(), runtimes::tail(log, 15))]
    Arm {
        arm: String,
        detail: String,
        log: PathBuf,
    },
    #[error(
        "give both targets (--baseline-target URL_A --target URL_B) or both runtimes \
         (--baseline-runtime BIN_A --runtime BIN_B)"
    )]
    Targets,
    #[error(transparent)]
    Compare(#[from] compare::CompareError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Html(#[from] caxton_reports::html::HtmlError),
    #[error("{0}")]
    Flag(String),
    #[error("{0}")]
    Internal(String),
}

/// What an A/B run produced.
pub struct AbRun {
    pub report: AbReport,
    pub report_path: PathBuf,
    pub html: Option<PathBuf>,
    pub diff_flamegraph: Option<PathBuf>,
    /// Why the diff of the arms' profiles is not drawn, when it is not.
    pub diff_note: Option<String>,
    /// The diff of the arms' slow requests (each cut at its own threshold) as text: its file
    /// and top frames, or why it is not drawn; `None` unless both arms profiled theirs.
    pub slow_diff: Option<String>,
}

impl AbRun {
    /// 0 no regression, 99 a regression or a candidate threshold breached, 98 invalid.
    pub fn exit_code(&self) -> u8 {
        match self.report.verdict.outcome {
            AbOutcome::NoRegression => crate::EXIT_PASSED,
            AbOutcome::Regressed => crate::EXIT_BREACHED,
            AbOutcome::Invalid => crate::EXIT_INVALID,
        }
    }
}

/// Runs both arms and judges them.
pub async fn run(args: &AbArgs, argv: &[String]) -> Result<AbRun, AbError> {
    let options = args.paired_options()?;
    let run_id = match &args.run.run_id {
        Some(id) => id.clone(),
        None => crate::cli::new_run_id(),
    };
    let dir = args.run.out.join(&run_id);
    std::fs::create_dir_all(&dir).map_err(|source| AbError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let mut started = Vec::new();
    let (a_target, b_target) = match (
        &args.baseline_target,
        &args.run.target,
        &args.baseline_runtime,
        &args.runtime,
    ) {
        (Some(a), Some(b), None, None) => (a.clone(), b.clone()),
        (None, None, Some(a), Some(b)) => {
            let config = args.run.runtime_config.as_deref();
            let baseline_config = args.baseline_runtime_config.as_deref().or(config);
            for (arm, bin, config) in [("baseline", a, baseline_config), ("candidate", b, config)] {
                started.push(runtimes::Runtime::start(arm, bin, config, &dir).await?);
            }
            (started[0].api.clone(), started[1].api.clone())
        }
        _ => return Err(AbError::Targets),
    };
    let pprof = |i: usize, given: &Option<String>| {
        if args.run.no_flamegraph {
            None
        } else {
            given
                .clone()
                .or_else(|| started.get(i).map(|r| r.pprof.clone()))
        }
    };
    let pair_key = args
        .run
        .target_key
        .clone()
        .unwrap_or_else(|| match &args.run.target {
            Some(url) if started.is_empty() => url.clone(),
            _ => "ab-runtime".to_string(),
        });
    let arm_plans = [
        arms::ArmPlan {
            arm: Arm::Baseline,
            target: a_target,
            pprof: pprof(0, &args.baseline_pprof),
            target_metrics: started.first().map(|r| r.metrics.clone()),
            target_key: format!("{pair_key}.baseline"),
            run_id: format!("{run_id}-baseline"),
            progress: ProgressMode::Off,
            summary_export: None,
        },
        arms::ArmPlan {
            arm: Arm::Candidate,
            target: b_target,
            pprof: pprof(1, &args.run.pprof),
            target_metrics: started
                .get(1)
                .map(|r| r.metrics.clone())
                .or_else(|| args.run.target_metrics.clone()),
            target_key: format!("{pair_key}.candidate"),
            run_id: format!("{run_id}-candidate"),
            progress: args.run.progress,
            summary_export: args.run.summary_export.clone(),
        },
    ];
    let run_flags = arms::forwarded(argv);
    // Both children connect, read the targets' builds and set up their users before this
    // instant; the load of both then starts at it.
    let start_at = SystemTime::now() + START_DELAY;
    let launch = arms::Launch {
        run_flags: &run_flags,
        dir: &dir,
        slice_seconds: args.slice.as_secs().max(1),
        pairing: args.pairing,
        start_at,
    };
    let results = arms::run_both(&launch, [&arm_plans[0], &arm_plans[1]]).await;
    let mut died = Vec::new();
    for (arm, rt) in ["baseline", "candidate"].iter().zip(started.iter_mut()) {
        if let Some(status) = rt.exited() {
            died.push(format!(
                "arm {arm}: its runtime exited during the run ({status})"
            ));
        }
    }
    for rt in started {
        rt.stop().await;
    }
    let [a, b] = results?;
    let baseline = a.report("baseline")?;
    let candidate = b.report("candidate")?;
    let mut verdict = paired::judge(&baseline, &candidate, &options)?;
    if !died.is_empty() {
        verdict.invalid.extend(died);
        verdict.outcome = AbOutcome::Invalid;
    }
    let report = AbReport {
        schema_version: AB_SCHEMA_VERSION,
        run_id,
        pairing: args.pairing.as_str().into(),
        target_key: pair_key.clone(),
        start_skew_ms: candidate.started_unix_ms as i64 - baseline.started_unix_ms as i64,
        verdict,
        baseline,
        candidate,
    };
    let report_path = dir.join(crate::run_dir::REPORT_FILE);
    report.write(&report_path)?;
    // The diff of B against A, when both arms were profiled (over the same stage).
    let profiled = arm_plans.iter().all(|a| a.pprof.is_some());
    let profiles = profiled.then(|| {
        crate::profile_diff::diff_runs(
            (&report.baseline, &a.report_path),
            (&report.candidate, &b.report_path),
        )
    });
    let (diff_flamegraph, diff_note, profiles) = match profiles {
        Some(Ok(p)) => {
            let svg = crate::profile_diff::write_svg(&p, &dir).ok().flatten();
            let note = svg.is_none().then(|| p.to_text(None));
            (svg, note, Some(p))
        }
        Some(Err(e)) => (None, Some(e.to_string()), None),
        None => (None, None, None),
    };
    // Slow requests against slow requests, when both arms profiled theirs; a diff that
    // failed says why on the page as one not drawn.
    let slow = profiled
        .then(|| {
            crate::profile_diff::diff_slow_runs(
                (&report.baseline, &a.report_path),
                (&report.candidate, &b.report_path),
            )
        })
        .flatten()
        .map(|slow| slow.unwrap_or_else(|e| DiffOutcome::NotDrawn(vec![e.to_string()])));
    let slow_diff = slow.as_ref().map(|outcome| {
        let file = crate::profile_diff::SLOW_DIFF_FLAMEGRAPH_FILE;
        let svg = crate::profile_diff::write_svg_as(outcome, &dir, file)
            .ok()
            .flatten()
            .map(|p| p.display().to_string());
        outcome.to_text(svg.as_deref())
    });
    push(args, &report).await;
    let page = caxton_reports::html::render_ab(&report, profiles.as_ref(), slow.as_ref())?;
    let html_path = dir.join("report.html");
    caxton_reports::html::write_file(&html_path, &page)?;
    Ok(AbRun {
        report,
        report_path,
        html: Some(html_path),
        diff_flamegraph,
        diff_note,
        slow_diff,
    })
}

/// The verdict to the run's sinks (the arms pushed their own series); a failure is a
/// warning: the report on disk is the result.
async fn push(args: &AbArgs, report: &AbReport) {
    let sinks = match crate::push::Sinks::new(
        args.run.report_to_prometheus.as_deref(),
        args.run.pushgateway.as_deref(),
    ) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            eprintln!("caxton-bench: warning: the A/B verdict was not pushed: {e}");
            return;
        }
    };
    let samples = crate::verdict::ab_samples(report, caxton_reports::remote_write::now_ms());
    let sent = tokio::time::timeout(crate::push::PUSH_BOUND, sinks.send(&samples, &[])).await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("caxton-bench: warning: the A/B verdict was not pushed: {e}"),
        Err(_) => eprintln!(
            "caxton-bench: warning: the A/B verdict was not pushed within {:?}",
            crate::push::PUSH_BOUND
        ),
    }
}

/// Time the arms get to start before their load begins together.
const START_DELAY: Duration = Duration::from_secs(3);

impl AbArgs {
    /// The verdict's thresholds and warm-up from the flags.
    pub fn paired_options(&self) -> Result<PairedOptions, AbError> {
        let flags = compare::CompareOptions::from_flags(
            Some(&self.regression_threshold),
            &self.metric_thresholds,
        )?;
        let slice = self.slice.as_secs().max(1);
        let warmup = self.warmup.map_or(2 * slice, |w| w.as_secs());
        let gating = self
            .gate
            .split(',')
            .map(|m| {
                compare::Metric::parse(m.trim()).ok_or_else(|| {
                    AbError::Flag(format!(
                        "--gate `{}`: `{}` is not one of p50, p90, p95, p99, throughput, error_rate",
                        self.gate, m
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PairedOptions {
            threshold: flags.threshold,
            per_metric: flags.per_metric,
            gating,
            warmup_seconds: warmup,
            pairing: self.pairing,
            ..Default::default()
        })
    }
}
