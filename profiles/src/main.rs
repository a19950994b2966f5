//! `caxton-profiles`: collect CPU profiles and flamegraphs from a running Caxton.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "CPU profiles and flamegraphs of a running Caxton runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture a CPU profile; save `<timestamp>.pb.gz` and `<timestamp>.svg`.
    Collect {
        /// Base URL of the pprof endpoints.
        #[arg(long, default_value = "http://127.0.0.1:6060")]
        target: String,
        /// Capture length, 1 to 300.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Output directory (created if missing).
        #[arg(long, default_value = "profiles/out")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Collect {
            target,
            seconds,
            out,
        } => {
            let collected = caxton_profiles::collect(&target, seconds, &out)
                .await
                .with_context(|| format!("collecting {seconds} s of CPU profile from {target}"))?;
            println!("{}", collected.pprof_path.display());
            println!("{}", collected.flamegraph_path.display());
            if collected.samples == 0 {
                eprintln!("note: the profile has no samples: the target was idle");
            }
            Ok(())
        }
    }
}
