//! Error rates of the history detector, measured as BENCHMARKS.md quotes them.
//!
//! `cargo run -p caxton-reports --example detector_eval [--features augurs] -- DIR`
//!
//! DIR holds real runs of one plan against one target (run directories with report.json),
//! or real A/B runs of one pair (`caxton-bench ab`: their paired-ratio series, the nightly
//! with a control arm). Their run-to-run noise, per metric of the whole run, is resampled
//! into synthetic A/A histories (no change) and into histories with a step injected at a
//! known run. For each the table gives the share of A/A histories with any change point
//! (false positives), the share of stepped histories where the step is found within one run
//! of where it is, the share where the night-by-night history shows it within three runs
//! of the step, and the median number of runs after the step before it is found
//! (detection delay). With
//! `--features augurs` the same histories go through augurs-changepoint's Bayesian online
//! detector (Normal-Gamma prior, its defaults) for comparison.

use std::path::PathBuf;

use caxton_reports::bootstrap::median;
use caxton_reports::compare::Metric;
use caxton_reports::history::{self, DetectOptions, detect, series::ALL, series::PAIRED};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const HISTORIES: usize = 200;
/// Histories per step whose detection delay is measured night by night (the costly part).
const DELAY_HISTORIES: usize = 40;
const LEN: usize = 40;
const STEP_AT: usize = 25;
const STEPS: [f64; 3] = [0.10, 0.25, 0.50];
/// A series of fewer real runs than this is not worth resampling.
const MIN_RUNS: usize = 20;

/// A detector under test: series in, indexes of the first run after each change out.
type Detector = fn(&[f64]) -> Vec<usize>;

fn edivisive(values: &[f64]) -> Vec<usize> {
    detect::detect(values, &DetectOptions::default())
        .iter()
        .map(|c| c.index)
        .collect()
}

#[cfg(feature = "augurs")]
fn bocpd(values: &[f64]) -> Vec<usize> {
    use augurs_changepoint::{Detector as _, NormalGammaDetector};
    // Its default prior expects standardised data: centre and scale by the series' own median
    // and spread, as a user of it would.
    let center = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    let scale = (1.4826 * median(&deviations)).max(f64::MIN_POSITIVE);
    let z: Vec<f64> = values.iter().map(|v| (v - center) / scale).collect();
    // It reports the run before each change and always 0; turn that into our convention.
    NormalGammaDetector::default()
        .detect_changepoints(&z)
        .into_iter()
        .filter(|i| *i > 0)
        .map(|i| i + 1)
        .collect()
}

fn synthetic(residuals: &[f64], rng: &mut StdRng, step: f64) -> Vec<f64> {
    (0..LEN)
        .map(|i| {
            let level = if i >= STEP_AT { 1.0 + step } else { 1.0 };
            level * (1.0 + residuals[rng.random_range(0..residuals.len())])
        })
        .collect()
}

struct Rates {
    false_positives: f64,
    detected: Vec<f64>,
    /// Of the histories followed night by night, the share that showed the step within
    /// three runs of it.
    within_three: Vec<f64>,
    delay: Vec<Option<f64>>,
}

fn measure(detector: Detector, residuals: &[f64], seed: u64) -> Rates {
    let mut rng = StdRng::seed_from_u64(seed);
    let fp = (0..HISTORIES)
        .filter(|_| !detector(&synthetic(residuals, &mut rng, 0.0)).is_empty())
        .count();
    let mut detected = Vec::new();
    let mut within_three = Vec::new();
    let mut delay = Vec::new();
    for step in STEPS {
        let mut found = 0;
        let mut delays = Vec::new();
        for n in 0..HISTORIES {
            let h = synthetic(residuals, &mut rng, step);
            if detector(&h).iter().any(|i| i.abs_diff(STEP_AT) <= 1) {
                found += 1;
            }
            if n >= DELAY_HISTORIES {
                continue;
            }
            // Night by night: the first night the step is seen at its place.
            if let Some(d) = (STEP_AT + 1..=LEN)
                .find(|&end| detector(&h[..end]).iter().any(|i| i.abs_diff(STEP_AT) <= 1))
            {
                delays.push((d - STEP_AT) as f64);
            }
        }
        detected.push(found as f64 / HISTORIES as f64);
        within_three
            .push(delays.iter().filter(|&&d| d <= 3.0).count() as f64 / DELAY_HISTORIES as f64);
        delay.push((!delays.is_empty()).then(|| median(&delays)));
    }
    Rates {
        false_positives: fp as f64 / HISTORIES as f64,
        detected,
        within_three,
        delay,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: detector_eval DIR (a directory of real runs of one plan)")?;
    let loaded = history::load_dir(&dir, false)?;
    let (_, per_run) = loaded.observations();
    // The whole-run series, and the paired ratios of A/B runs.
    let all: Vec<_> = history::series::build(&per_run)
        .into_iter()
        .filter(|s| s.key.stage == ALL && [ALL, PAIRED].contains(&s.key.scenario.as_str()))
        .filter(|s| s.values.len() >= MIN_RUNS)
        .collect();
    if all.is_empty() {
        return Err(format!(
            "no series of {MIN_RUNS} valid runs in {} ({} runs, {} A/B runs): the noise of \
             fewer is not worth resampling",
            dir.display(),
            loaded.runs.len(),
            loaded.paired.len()
        )
        .into());
    }
    #[allow(unused_mut)] // mutated with `--features augurs`
    let mut detectors: Vec<(&str, Detector)> = vec![("e-divisive + rank test", edivisive)];
    #[cfg(feature = "augurs")]
    detectors.push(("augurs bocpd", bocpd));
    println!(
        "{} real runs and {} A/B runs in {}; {HISTORIES} histories of {LEN} runs per series \
         and metric, steps at run {STEP_AT}",
        loaded.runs.len(),
        loaded.paired.len(),
        dir.display()
    );
    let steps = STEPS.map(|s| format!("+{:.0}%", s * 100.0)).join(" / ");
    println!(
        "| series | metric | run-to-run noise (MAD) | detector | A/A false positives | found ±1 at {steps} | within 3 runs at {steps} | median delay (runs) at {steps} |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in all.iter().filter(|s| {
        [Metric::P50, Metric::P95, Metric::P99, Metric::Throughput].contains(&s.key.metric)
    }) {
        let metric = s.key.metric;
        let center = median(&s.values);
        let residuals: Vec<f64> = s.values.iter().map(|v| v / center - 1.0).collect();
        let noise = history::noise::measure(&s.values, metric.higher_is_worse())
            .map_or("-".to_string(), |n| format!("{:.1}%", n.sigma * 100.0));
        for (name, detector) in &detectors {
            let r = measure(*detector, &residuals, 42);
            let shares = |v: &[f64]| {
                v.iter()
                    .map(|d| format!("{:.0}%", d * 100.0))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            println!(
                "| {} {} | {} | {noise} | {name} | {:.1}% | {} | {} | {} |",
                s.key.target,
                s.key.scenario,
                metric.key(),
                r.false_positives * 100.0,
                shares(&r.detected),
                shares(&r.within_three),
                r.delay
                    .iter()
                    .map(|d| d.map_or("-".into(), |d| format!("{d:.0}")))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
        }
    }
    Ok(())
}
