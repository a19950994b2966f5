//! `caxton-bench`: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context as _;
use caxton_loadgen::cli::{Cli, Command};
use caxton_loadgen::{EXIT_BREACHED, EXIT_ERROR, EXIT_PASSED, push, run, summary};
use clap::Parser as _;

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
        None => {
            let argv: Vec<String> = std::env::args().collect();
            let opts = cli.run.resolve(argv).context("invalid arguments")?;
            let outcome = run::run(opts).await?;
            let path = outcome.report_path.display().to_string();
            println!("{}", summary::render(&outcome.report, &path));
            Ok(if outcome.passed() {
                EXIT_PASSED
            } else {
                EXIT_BREACHED
            })
        }
    }
}
