//! `caxton-bench`: parses the command line and hands over to the library.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use caxton_loadgen::cli::{Cli, Command, CompareArgs, HistoryArgs, RunArgs};
use caxton_loadgen::{
    EXIT_BREACHED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_PASSED, interrupt,
    prometheus_history, push, run, summary, summary_export, verdict,
};
use caxton_reports::model::RunReport;
use caxton_reports::{compare, history, html};
use clap::Parser as _;

caxton_profiles::jemalloc_global_allocator!();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|rt| rt.block_on(main_async(cli)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("caxton-bench: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn main_async(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Some(Command::Push(args)) => {
            let sinks = push::Sinks::new(
                args.report_to_prometheus.as_deref(),
                args.pushgateway.as_deref(),
            )?;
            let sent = push::push_later(&args.report, sinks)
                .await
                .with_context(|| format!("push {}", args.report.display()))?;
            println!("pushed {sent} samples from {}", args.report.display());
            Ok(EXIT_PASSED)
        }
        Some(Command::Merge(args)) => {
            let extra = args.extra_thresholds().context("invalid arguments")?;
            let argv: Vec<String> = std::env::args().collect();
            let merged = caxton_loadgen::distributed::merge_files(
                &args.reports,
                args.run_id.as_deref(),
                &args.out,
                extra,
                argv,
            )?;
            let path = merged.report_path.display().to_string();
            println!("{}", summary::render(&merged.report, &path));
            Ok(if !merged.report.validity.valid {
                EXIT_INVALID
            } else if merged.passed() {
                EXIT_PASSED
            } else {
                EXIT_BREACHED
            })
        }
        Some(Command::Report(args)) => {
            if let Some(ab) = caxton_reports::paired::AbReport::read_if_paired(&args.report)? {
                if args.markdown {
                    print!("{}", ab.to_markdown());
                } else {
                    let page = caxton_reports::html::render_ab(&ab, None)?;
                    let out = args.report.with_file_name("report.html");
                    caxton_reports::html::write_file(&out, &page)?;
                    println!("report: {}", out.display());
                }
                return Ok(EXIT_PASSED);
            }
            anyhow::ensure!(!args.markdown, "--markdown is for an A/B run's report");
            let html = caxton_reports::html::write_report(&args.report)?;
            println!("report: {}", html.display());
            Ok(EXIT_PASSED)
        }
        Some(Command::Compare(args)) => Ok(compare(&args).unwrap_or_else(|e| {
            // Our errors already name their cause; `{e:#}` would repeat it.
            eprintln!("caxton-bench: error: {e}");
            compare::EXIT_BAD_INPUT
        })),
        Some(Command::History(args)) => Ok(history(&args).await.unwrap_or_else(|e| {
            eprintln!("caxton-bench: error: {e}");
            compare::EXIT_BAD_INPUT
        })),
        Some(Command::Ab(args)) => ab(&args).await,
        Some(Command::Run(args)) => plain_or_paired(*args).await,
        None => plain_or_paired(cli.run).await,
    }
}

/// A run, or the A/B run it becomes with $CAXTON_BENCH_BASELINE_TARGET.
async fn plain_or_paired(args: RunArgs) -> anyhow::Result<u8> {
    match caxton_loadgen::cli::AbArgs::from_environment(args) {
        Ok(ab_args) => {
            eprintln!(
                "caxton-bench: ${} is set: a paired A/B run against {}",
                caxton_loadgen::cli::BASELINE_TARGET_ENV,
                ab_args.baseline_target.as_deref().unwrap_or_default()
            );
            ab(&ab_args).await
        }
        Err(args) => load_run(*args).await,
    }
}

async fn load_run(args: RunArgs) -> anyhow::Result<u8> {
    let argv: Vec<String> = std::env::args().collect();
    let summary_export = args.summary_export.clone();
    let opts = args.resolve(argv).context("invalid arguments")?;
    interrupt::install()?;
    let outcome = run::run(opts).await?;
    let path = outcome.report_path.display().to_string();
    println!("{}", summary::render(&outcome.report, &path));
    match &outcome.flamegraph {
        Some(Ok(svg)) => println!("flamegraph: {}", svg.display()),
        Some(Err(why)) => eprintln!("caxton-bench: warning: no flamegraph: {why}"),
        None => {}
    }
    // The HTML report comes with every run: people would rather look than read JSON.
    // A failure here costs the page, not the run (report.json is already written).
    match caxton_reports::html::write_report(&outcome.report_path) {
        Ok(html) => println!("html report: {}", html.display()),
        Err(e) => eprintln!("caxton-bench: warning: no HTML report: {e}"),
    }
    if let Some(file) = &summary_export {
        summary_export::write(&outcome.report, file)?;
        println!("summary export: {}", file.display());
    }
    if outcome.judged_by_merge() && !outcome.passed() {
        eprintln!("caxton-bench: worker: thresholds are judged by `caxton-bench merge`");
    }
    if let Some(i) = &outcome.report.interrupted {
        eprintln!("caxton-bench: {}", i.describe());
        return Ok(EXIT_INTERRUPTED);
    }
    if let Some(a) = &outcome.report.aborted {
        eprintln!("caxton-bench: {}", a.describe());
        return Ok(EXIT_BREACHED);
    }
    Ok(if !outcome.report.validity.valid {
        EXIT_INVALID
    } else if outcome.passed() || outcome.judged_by_merge() {
        EXIT_PASSED
    } else {
        EXIT_BREACHED
    })
}

async fn ab(args: &caxton_loadgen::cli::AbArgs) -> anyhow::Result<u8> {
    let argv: Vec<String> = std::env::args().collect();
    let run = caxton_loadgen::ab::run(args, &argv).await?;
    if args.markdown {
        print!("{}", run.report.to_markdown());
    } else {
        print!("{}", run.report.to_text());
    }
    println!("report: {}", run.report_path.display());
    if let Some(html) = &run.html {
        println!("html report: {}", html.display());
    }
    match (&run.diff_flamegraph, &run.diff_note) {
        (Some(svg), _) => println!("diff flamegraph (B against A): {}", svg.display()),
        (None, Some(why)) => eprintln!("caxton-bench: no diff flamegraph: {}", why.trim()),
        (None, None) => {}
    }
    Ok(run.exit_code())
}

/// Exit 0 or 1 by the verdict; the caller turns errors into exit 2, so a broken baseline is
/// never mistaken for a regression.
fn compare(args: &CompareArgs) -> anyhow::Result<u8> {
    let mut opts =
        compare::CompareOptions::from_flags(Some(&args.threshold), &args.metric_thresholds)?;
    let current = RunReport::read(&args.current)?;
    let (baseline_path, baseline) = if args.baseline.is_dir() {
        let calibrated =
            caxton_reports::calibration::from_history(&args.baseline, &current.plan, false)?;
        let explicit: Vec<_> = opts.per_metric.keys().copied().collect();
        calibrated.apply(&mut opts, &explicit);
        eprint!("{}", calibrated.describe(&opts));
        calibrated.baseline
    } else {
        (args.baseline.clone(), RunReport::read(&args.baseline)?)
    };
    let result = compare::compare(&baseline, &current, &opts)?;
    let profiles = caxton_loadgen::profile_diff::diff_runs(
        (&baseline, &baseline_path),
        (&current, &args.current),
    )?;
    let diff_dir = match &args.diff_dir {
        Some(d) => d.clone(),
        None => args
            .current
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let svg = caxton_loadgen::profile_diff::write_svg(&profiles, &diff_dir).with_context(|| {
        format!(
            "writing the differential flamegraph in {}",
            diff_dir.display()
        )
    })?;
    let svg = svg.map(|p| p.display().to_string());
    if args.markdown {
        print!("{}", result.to_markdown());
        print!("{}", profiles.to_markdown(svg.as_deref()));
    } else {
        print!("{}", result.to_text());
        print!("{}", profiles.to_text(svg.as_deref()));
    }
    // Slow requests against slow requests, when both runs profiled theirs.
    if let Some(slow) = caxton_loadgen::profile_diff::diff_slow_runs(
        (&baseline, &baseline_path),
        (&current, &args.current),
    ) {
        let slow = slow?;
        let file = caxton_loadgen::profile_diff::SLOW_DIFF_FLAMEGRAPH_FILE;
        let svg = caxton_loadgen::profile_diff::write_svg_as(&slow, &diff_dir, file)
            .with_context(|| format!("writing {file} in {}", diff_dir.display()))?
            .map(|p| p.display().to_string());
        if args.markdown {
            print!("\n#### Slow requests\n{}", slow.to_markdown(svg.as_deref()));
        } else {
            print!("\nslow requests:{}", slow.to_text(svg.as_deref()));
        }
    }
    if let Some(out) = &args.html {
        let page = html::render_comparison(&baseline, &current, &result, Some(&profiles))?;
        html::write_file(out, &page)?;
        println!("html: {}", out.display());
    }
    Ok(result.exit_code())
}

/// Exit 0, or 1 when the newest run starts a regression; errors become exit 2 in the caller,
/// so an unreadable history is never mistaken for a regression.
async fn history(args: &HistoryArgs) -> anyhow::Result<u8> {
    let options = history::DetectOptions {
        p_value: args.p_value,
        min_magnitude: compare::parse_percent(&args.min_change, "--min-change")?,
        ..Default::default()
    };
    let result = match (&args.dir, &args.prometheus) {
        (_, Some(url)) => {
            let found = prometheus_history::load(url, &args.prometheus_range).await?;
            let mut result = history::analyse(found.runs, &found.per_run, &options);
            result.invalid = found.invalid;
            result
        }
        (Some(dir), None) => {
            let loaded = history::load_dir(dir, args.skip_unreadable)?;
            for u in &loaded.unreadable {
                eprintln!("caxton-bench: warning: left out: {u}");
            }
            if loaded.is_empty() {
                anyhow::bail!(
                    "no valid, readable run under {} ({} invalid, {} unreadable)",
                    dir.display(),
                    loaded.invalid.len(),
                    loaded.unreadable.len()
                );
            }
            let (runs, per_run) = loaded.observations();
            let mut result = history::analyse(runs, &per_run, &options);
            result.profile_diffs =
                caxton_loadgen::profile_diff::at_change_points(&result, &loaded.runs);
            result.invalid = loaded.invalid;
            result.unreadable = loaded.unreadable;
            result
        }
        (None, None) => anyhow::bail!("give a history directory or --prometheus URL"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result.to_json())?);
    } else if args.markdown {
        print!("{}", result.to_markdown());
    } else {
        print!("{}", result.to_text());
    }
    if let Some(out) = &args.html {
        html::write_file(out, &history::html::render(&result))?;
        eprintln!("caxton-bench: html: {}", out.display());
    }
    push_verdict(args, &result).await?;
    Ok(result.exit_code())
}

/// The verdict to the sinks given, if any; a failed push is an error (exit 2): a nightly
/// whose verdict never reached Prometheus must not look green.
async fn push_verdict(args: &HistoryArgs, result: &history::History) -> anyhow::Result<()> {
    let options = caxton_reports::pushgateway::PushgatewayOptions {
        job: verdict::PUSHGATEWAY_JOB.to_owned(),
        grouping_labels: Vec::new(),
        ..Default::default()
    };
    let Some(sinks) = push::Sinks::with_pushgateway_options(
        args.report_to_prometheus.as_deref(),
        args.pushgateway.as_deref(),
        options,
    )?
    else {
        return Ok(());
    };
    let samples = verdict::verdict_samples(result, caxton_reports::remote_write::now_ms());
    tokio::time::timeout(push::PUSH_BOUND, sinks.send(&samples, &[]))
        .await
        .unwrap_or_else(|_| Err(push::SendFailed::Timeout(push::PUSH_BOUND)))
        .map_err(|e| anyhow::anyhow!("pushing the verdict: {e}"))?;
    eprintln!("caxton-bench: pushed {} verdict samples", samples.len());
    Ok(())
}
