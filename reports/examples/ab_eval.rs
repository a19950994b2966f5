//! Error rates of `caxton-bench ab`'s verdict, measured on the slice pairs of real A/B runs,
//! as BENCHMARKS.md quotes them.
//!
//! `cargo run --release -p caxton-reports --example ab_eval -- [--pairs K] [--runs N] REPORT.json...`
//!
//! Each REPORT.json is an `ab` run's report (both arms' slices). From its pairs (after its
//! warm-up) the tool draws N pseudo-runs of K pairs each, as contiguous blocks of 5 pairs
//! starting at random places (so neighbouring slices' correlation stays in), and judges
//! each with the verdict `ab` uses (default threshold and level). For an A/A
//! report the regressed share is the false-alarm rate; for an A/B report with a real
//! slowdown, the detection rate. It also prints the report's own verdict on all its pairs.

use std::path::PathBuf;

use caxton_reports::model::Slice;
use caxton_reports::paired::{AbReport, PairedBootstrap, PairedOptions, judge_pairs};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const BLOCK: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pairs_per_run = 30;
    let mut runs = 200;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pairs" => pairs_per_run = args.next().ok_or("--pairs N")?.parse()?,
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        return Err("usage: ab_eval [--pairs K] [--runs N] REPORT.json...".into());
    }
    let opts = PairedOptions {
        bootstrap: PairedBootstrap {
            resamples: 1000,
            ..Default::default()
        },
        ..Default::default()
    };
    println!(
        "| report | pairs | whole-run p95 change [CI], detectable | pseudo-runs of {pairs_per_run} pairs | p95 regressed | any metric regressed | median p95 detectable |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    let mut whole_regressed = 0;
    for file in &files {
        let report = AbReport::read_if_paired(file)?.ok_or("not an A/B report")?;
        let pairs: Vec<(&Slice, &Slice)> = report.pairs();
        let whole = judge_pairs(&pairs, &opts)?;
        let p95 = whole.iter().find(|r| r.metric == "p95").ok_or("no p95")?;
        whole_regressed += (p95.verdict == "REGRESSED") as usize;
        let mut rng = StdRng::seed_from_u64(0x6162);
        let (mut p95_hits, mut any_hits) = (0, 0);
        let mut mdcs = Vec::new();
        if pairs.len() >= BLOCK {
            for _ in 0..runs {
                let mut drawn = Vec::with_capacity(pairs_per_run);
                while drawn.len() < pairs_per_run {
                    let start = rng.random_range(0..=pairs.len() - BLOCK);
                    drawn.extend_from_slice(&pairs[start..start + BLOCK]);
                }
                drawn.truncate(pairs_per_run);
                let rows = judge_pairs(&drawn, &opts)?;
                let regressed = |r: &caxton_reports::paired::AbRow| r.verdict == "REGRESSED";
                p95_hits += rows.iter().any(|r| r.metric == "p95" && regressed(r)) as usize;
                // Throughput in a closed model follows latency; error rate is separate.
                any_hits += rows.iter().any(regressed) as usize;
                if let Some(m) = rows
                    .iter()
                    .find(|r| r.metric == "p95")
                    .and_then(|r| r.min_detectable)
                {
                    mdcs.push(m);
                }
            }
        }
        mdcs.sort_by(f64::total_cmp);
        let median = mdcs.get(mdcs.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "| {} ({}) | {} | {:+.1}% [{:+.1}%, {:+.1}%], {:.1}% | {runs} | {:.1}% | {:.1}% | {:.1}% |",
            file.display(),
            report.pairing,
            pairs.len(),
            p95.change * 100.0,
            p95.low.unwrap_or(f64::NAN) * 100.0,
            p95.high.unwrap_or(f64::NAN) * 100.0,
            p95.min_detectable.unwrap_or(f64::NAN) * 100.0,
            100.0 * p95_hits as f64 / runs as f64,
            100.0 * any_hits as f64 / runs as f64,
            median * 100.0
        );
    }
    println!(
        "whole-run p95 verdicts: REGRESSED in {whole_regressed} of {} reports",
        files.len()
    );
    Ok(())
}
