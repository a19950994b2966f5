//! `caxton-bench`: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context as _;
use caxton_loadgen::cli::{Cli, Command, RunArgs};
use caxton_loadgen::{
    EXIT_BREACHED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_PASSED, comparison,
    history_check, interrupt, push, run, summary, summary_export,
};
use caxton_reports::compare;
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
                    let page = caxton_reports::html::render_ab(&ab, None, None)?;
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
        Some(Command::Compare(args)) => Ok(comparison::compare(&args).unwrap_or_else(|e| {
            // Our errors already name their cause; `{e:#}` would repeat it.
            eprintln!("caxton-bench: error: {e}");
            compare::EXIT_BAD_INPUT
        })),
        Some(Command::History(args)) => Ok(history_check::check(&args).await.unwrap_or_else(|e| {
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
    if let Some(slow) = &run.slow_diff {
        print!("slow requests (B against A):{slow}");
    }
    Ok(run.exit_code())
}
