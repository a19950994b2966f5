//! `bench-gate`: fails CI when a benchmark regressed, and pushes benchmark results to
//! Prometheus. Exit status: 0 pass, 1 regression, 2 error.
//!
//! ```text
//! cargo bench -p caxton-benches -- --save-baseline main     # on the base commit
//! cargo bench -p caxton-benches -- --baseline main          # on the change
//! bench-gate criterion                                      # table; exit 1 on a regression
//! bench-gate callgrind --baseline benches/callgrind-baseline.json
//! bench-gate push --url http://prometheus:9090 --version "$(git rev-parse --short HEAD)"
//! bench-gate save --run-id micro-1 --out nightly/micro/micro-1/micro.json   # for `history`
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_benches::callgrind::{self, DEFAULT_ITERATIONS, InstructionCounts, KEY_PATHS};
use caxton_benches::gate::{self, GateConfig, Report};
use caxton_benches::{criterion_results, series};
use caxton_reports::history::MicroRun;
use caxton_reports::remote_write::{RemoteWriteOptions, RemoteWriter, now_ms};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Regression gates over criterion and callgrind results, and their push to Prometheus"
)]
struct Cli {
    /// Thresholds file (missing = defaults: 10% wall time, 2% instructions).
    #[arg(long, global = true, default_value = "benches/gate.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wall-time gate over the last `cargo bench -- --baseline NAME`: fails a benchmark whose
    /// mean got slower than its threshold with a 95% CI of the change above zero.
    Criterion {
        /// Criterion's output directory.
        #[arg(long, default_value_os_t = target_dir().join("criterion"))]
        dir: PathBuf,
        /// The baseline the run was compared with (for the baseline column).
        #[arg(long, default_value = "main")]
        baseline: String,
    },
    /// Instruction-count gate: runs each key path under `valgrind --tool=callgrind`, writes
    /// instructions per iteration to --out, compares with --baseline when it exists.
    Callgrind {
        /// The `callgrind-paths` executable (default: beside this one; build both with
        /// `cargo build --release -p caxton-benches --bins`).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Key paths to count (default: all).
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u64,
        /// Where the counts (JSON) and the callgrind files go.
        #[arg(long, default_value_os_t = target_dir().join("callgrind").join("instructions.json"))]
        out: PathBuf,
        /// Compare with these saved counts (a previous --out).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Compare this counts file instead of measuring.
        #[arg(long)]
        current: Option<PathBuf>,
    },
    /// Pushes criterion estimates (caxton_bench_micro_seconds) and instruction counts
    /// (caxton_bench_instructions) by Prometheus remote write.
    Push {
        /// Prometheus base URL or remote-write endpoint.
        #[arg(long)]
        url: String,
        /// `version` label, e.g. the git revision.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        version: String,
        /// Criterion's output directory; skipped when it does not exist.
        #[arg(long, default_value_os_t = target_dir().join("criterion"))]
        dir: PathBuf,
        /// Instruction counts from `bench-gate callgrind`; skipped when it does not exist.
        #[arg(long, default_value_os_t = target_dir().join("callgrind").join("instructions.json"))]
        instructions: PathBuf,
    },
    /// Keeps the latest criterion run's medians as one history run (`micro.json`) for
    /// `caxton-bench history`, beside the nightly's load reports.
    Save {
        /// The run's id in the history.
        #[arg(long)]
        run_id: String,
        /// Where to write it, e.g. NIGHTLY_DIR/micro/<run-id>/micro.json.
        #[arg(long)]
        out: PathBuf,
        /// `version` of the benchmarked build, e.g. the git revision.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        version: String,
        /// Criterion's output directory.
        #[arg(long, default_value_os_t = target_dir().join("criterion"))]
        dir: PathBuf,
    },
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-gate: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false) when a gate failed.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let config = GateConfig::load(&cli.config)?;
    match cli.command {
        Cmd::Criterion { dir, baseline } => {
            let results = criterion_results::load(&dir, &baseline)?;
            let report = gate::criterion_gate(&results, &config.criterion);
            Ok(verdict(&report, "wall-time"))
        }
        Cmd::Callgrind {
            binary,
            paths,
            iterations,
            out,
            baseline,
            current,
        } => {
            let counts = match current {
                Some(file) => InstructionCounts::load(&file)?,
                None => {
                    let binary = match binary {
                        Some(b) => b,
                        None => std::env::current_exe()
                            .context("locating bench-gate")?
                            .with_file_name("callgrind-paths"),
                    };
                    if !binary.is_file() {
                        bail!(
                            "{} not found; build it with `cargo build --release -p caxton-benches --bins` or pass --binary",
                            binary.display()
                        );
                    }
                    let paths: Vec<&str> = if paths.is_empty() {
                        KEY_PATHS.to_vec()
                    } else {
                        paths.iter().map(String::as_str).collect()
                    };
                    let out_dir = out.parent().map(PathBuf::from).unwrap_or_default();
                    let counts = callgrind::count_paths(&binary, &paths, iterations, &out_dir)?;
                    counts.save(&out)?;
                    println!("instruction counts written to {}", out.display());
                    counts
                }
            };
            let base = match &baseline {
                Some(path) if path.is_file() => InstructionCounts::load(path)?.paths,
                Some(path) => {
                    println!(
                        "no baseline at {}; save one with `cp {} {}`",
                        path.display(),
                        out.display(),
                        path.display()
                    );
                    Default::default()
                }
                None => Default::default(),
            };
            let report = gate::instructions_gate(&base, &counts.paths, &config.callgrind);
            Ok(verdict(&report, "instruction-count"))
        }
        Cmd::Push {
            url,
            version,
            dir,
            instructions,
        } => {
            let mut samples = Vec::new();
            if dir.is_dir() {
                let results = criterion_results::load(&dir, "main")?;
                samples.extend(series::micro_samples(&results, &version));
            }
            if instructions.is_file() {
                let counts = InstructionCounts::load(&instructions)?;
                samples.extend(series::instruction_samples(&counts, &version));
            }
            if samples.is_empty() {
                bail!(
                    "nothing to push: neither {} nor {} exists",
                    dir.display(),
                    instructions.display()
                );
            }
            let writer = RemoteWriter::new(&url, RemoteWriteOptions::default())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let outcome = rt.block_on(writer.write(&samples))?;
            println!(
                "pushed {} samples in {} series to {}",
                outcome.samples,
                outcome.series,
                writer.url()
            );
            Ok(true)
        }
        Cmd::Save {
            run_id,
            out,
            version,
            dir,
        } => save(run_id, &out, version, &dir),
    }
}

fn save(run_id: String, out: &Path, version: String, dir: &Path) -> anyhow::Result<bool> {
    let results = criterion_results::load(dir, "main")?;
    let run = MicroRun {
        run_id,
        version,
        started_unix_ms: u64::try_from(now_ms()).unwrap_or(0),
        median_seconds: results
            .iter()
            .map(|r| (r.name.clone(), r.new.median.point_estimate / 1e9))
            .collect(),
    };
    run.write(out)?;
    println!(
        "{} benchmarks of run {} written to {}",
        run.median_seconds.len(),
        run.run_id,
        out.display()
    );
    Ok(true)
}

fn verdict(report: &Report, what: &str) -> bool {
    print!("{}", report.table());
    let regressed: Vec<&str> = report.regressions().map(|r| r.bench.as_str()).collect();
    if regressed.is_empty() {
        println!("{what} gate: pass ({} benchmarks)", report.rows.len());
        true
    } else {
        println!("{what} gate: FAIL, regressed: {}", regressed.join(", "));
        false
    }
}
