//! Runs one key path N times, for `valgrind --tool=callgrind` (driven by `bench-gate
//! callgrind`; see `caxton_benches::callgrind`).

use caxton_benches::callgrind::{self, KEY_PATHS};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Run one key path N times (instruction counting under callgrind)")]
struct Cli {
    /// Key path name.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(KEY_PATHS))]
    path: String,
    /// Counted iterations.
    iterations: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    callgrind::run_path(&cli.path, cli.iterations)?;
    Ok(())
}
