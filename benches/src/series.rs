//! The benchmark series pushed to Prometheus (CONTRACTS.md "caxton-benches series"): their
//! names, defined once, and the samples built from criterion results and instruction counts.
//! They go through `caxton_reports::remote_write`, the sink the load generator uses, so
//! nightly micro-benchmark trends sit beside the load results.

use caxton_reports::remote_write::Sample;

use crate::callgrind::InstructionCounts;
use crate::criterion_results::BenchResult;

/// Criterion estimate of one iteration, seconds; labels `benchmark`, `stat`, `version`.
pub const MICRO_SECONDS: &str = "caxton_bench_micro_seconds";
/// Instructions per iteration of a key path under callgrind; labels `path`, `version`.
pub const INSTRUCTIONS: &str = "caxton_bench_instructions";

pub const BENCHES_METRIC_NAMES: [&str; 2] = [MICRO_SECONDS, INSTRUCTIONS];

/// `stat` label values of [`MICRO_SECONDS`]: the mean and its 95% confidence bounds.
pub const STAT_MEAN: &str = "mean";
pub const STAT_LOWER: &str = "lower";
pub const STAT_UPPER: &str = "upper";

/// Samples of the latest criterion run (`new/estimates.json`), nanoseconds turned to seconds.
pub fn micro_samples(results: &[BenchResult], version: &str) -> Vec<Sample> {
    let mut out = Vec::with_capacity(results.len() * 3);
    for r in results {
        let mean = r.new.mean;
        for (stat, ns) in [
            (STAT_MEAN, mean.point_estimate),
            (STAT_LOWER, mean.confidence_interval.lower_bound),
            (STAT_UPPER, mean.confidence_interval.upper_bound),
        ] {
            out.push(
                Sample::now(MICRO_SECONDS, ns / 1e9)
                    .label("benchmark", r.name.as_str())
                    .label("stat", stat)
                    .label("version", version),
            );
        }
    }
    out
}

/// Samples of instruction counts per key path.
pub fn instruction_samples(counts: &InstructionCounts, version: &str) -> Vec<Sample> {
    counts
        .paths
        .iter()
        .map(|(path, n)| {
            Sample::now(INSTRUCTIONS, *n)
                .label("path", path.as_str())
                .label("version", version)
        })
        .collect()
}
