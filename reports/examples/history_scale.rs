//! How long `history` takes over a year of nights, as BENCHMARKS.md quotes it.
//!
//! `cargo run --release -p caxton-reports --example history_scale -- DIR [NIGHTS]`
//!
//! DIR holds real runs of one plan (run directories with report.json). They are copied in
//! turn, with new run ids and start times, into NIGHTS (default 365) nights of a temporary
//! history, which is then (a) read alone, the peer: every report parsed, and (b) read and
//! judged, every series, as `caxton-bench history DIR` does. Best of three of each.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caxton_reports::history::{self, DetectOptions};

fn best_of_three(mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: history_scale DIR [NIGHTS]")?);
    let nights: usize = args.next().map_or(Ok(365), |n| n.parse())?;
    let real = history::load_dir(&dir, false)?;
    if real.runs.is_empty() {
        return Err(format!("no valid run under {}", dir.display()).into());
    }
    let tmp = tempfile::tempdir()?;
    for night in 0..nights {
        let (path, report) = &real.runs[night % real.runs.len()];
        let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let id = format!("night-{night:03}");
        json["run_id"] = id.clone().into();
        json["started_unix_ms"] = (report.started_unix_ms + night as u64 * 86_400_000).into();
        let to = tmp.path().join(&id);
        std::fs::create_dir_all(&to)?;
        std::fs::write(to.join(history::REPORT_FILE), serde_json::to_vec(&json)?)?;
    }
    let read = best_of_three(|| {
        let loaded = history::load_dir(tmp.path(), false).expect("reading the history");
        assert_eq!(loaded.runs.len(), nights);
    });
    let mut series = 0;
    let judged = best_of_three(|| {
        let loaded = history::load_dir(tmp.path(), false).expect("reading the history");
        let (runs, per_run) = loaded.observations();
        let h = history::analyse(runs, &per_run, &DetectOptions::default());
        series = h.verdicts.len();
    });
    println!(
        "{nights} nights x {series} series: read {:.3} s, read + judged {:.3} s ({:.1}x reading alone)",
        read.as_secs_f64(),
        judged.as_secs_f64(),
        judged.as_secs_f64() / read.as_secs_f64()
    );
    Ok(())
}
