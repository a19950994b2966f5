//! How long `history` takes over a year of nights, as BENCHMARKS.md quotes it.
//!
//! `cargo run --release -p caxton-reports --example history_scale -- DIR [NIGHTS [STEP]]`
//!
//! DIR holds real runs of one plan (run directories with report.json). They are copied in
//! turn, with new run ids and start times, into NIGHTS (default 365) nights of a temporary
//! history, which is then (a) read alone, the peer: every report parsed, and (b) read and
//! judged, every series, as `caxton-bench history DIR` does. Best of three of each. It
//! prints a digest of the change points found, to show that two builds agree; with STEP
//! (e.g. 0.3) every latency quantile of the second half of the nights is STEP higher, so
//! that there are change points to agree on.

use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use caxton_reports::history::{self, DetectOptions, Found, SeriesKey};

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

/// Every latency quantile (`p50` … `p99`) anywhere in `json`, times `factor`.
fn scale_quantiles(json: &mut serde_json::Value, factor: f64) {
    match json {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v.as_f64() {
                    Some(x) if matches!(k.as_str(), "p50" | "p90" | "p95" | "p99") => {
                        *v = (x * factor).into();
                    }
                    _ => scale_quantiles(v, factor),
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| scale_quantiles(v, factor))
        }
        _ => {}
    }
}

/// A change point as text, its floats as bits.
fn verdict(key: &SeriesKey, c: &Found) -> String {
    format!(
        "{key} {} {} {:x} {:x} {:x} {:x} {}",
        c.point.index,
        c.after.run_id,
        c.point.change.to_bits(),
        c.point.p_value.to_bits(),
        c.point.ci.low.to_bits(),
        c.point.ci.high.to_bits(),
        c.new
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: history_scale DIR [NIGHTS]")?);
    let nights: usize = args.next().map_or(Ok(365), |n| n.parse())?;
    let step: f64 = args.next().map_or(Ok(0.0), |s| s.parse())?;
    let real = history::load_dir(&dir, false)?;
    if real.runs.is_empty() {
        return Err(format!("no valid run under {}", dir.display()).into());
    }
    let tmp = tempfile::tempdir()?;
    for night in 0..nights {
        let run = &real.runs[night % real.runs.len()];
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&run.path)?)?;
        if night >= nights / 2 {
            scale_quantiles(&mut json, 1.0 + step);
        }
        let id = format!("night-{night:03}");
        json["run_id"] = id.clone().into();
        json["started_unix_ms"] = (run.info.started_unix_ms + night as u64 * 86_400_000).into();
        let to = tmp.path().join(&id);
        std::fs::create_dir_all(&to)?;
        std::fs::write(to.join(history::REPORT_FILE), serde_json::to_vec(&json)?)?;
    }
    let read = best_of_three(|| {
        let loaded = history::load_dir(tmp.path(), false).expect("reading the history");
        assert_eq!(loaded.runs.len(), nights);
    });
    let (mut series, mut found) = (0, Vec::new());
    let judged = best_of_three(|| {
        let loaded = history::load_dir(tmp.path(), false).expect("reading the history");
        let (runs, per_run) = loaded.observations();
        let h = history::analyse(runs, &per_run, &DetectOptions::default());
        series = h.verdicts.len();
        found = h.change_points().map(|(k, c)| verdict(k, c)).collect();
    });
    println!(
        "{nights} nights x {series} series: read {:.3} s, read + judged {:.3} s ({:.1}x reading alone)",
        read.as_secs_f64(),
        judged.as_secs_f64(),
        judged.as_secs_f64() / read.as_secs_f64()
    );
    // What was found, exactly (bits of the floats), so two builds can be shown to agree.
    let mut digest = std::hash::DefaultHasher::new();
    found.hash(&mut digest);
    println!(
        "{} change points, verdict digest {:016x}",
        found.len(),
        digest.finish()
    );
    Ok(())
}
