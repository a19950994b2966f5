//! Estimates from slices (`RunReport::slices`), the unit that varies on its own.
//!
//! The paired estimate: ratio B/A of each metric over time-aligned slice pairs, a bootstrap
//! interval that resamples **pairs** (never requests), and the minimum detectable change.
//!
//! Both arms ran in the same wall-clock slices, so whatever the machine did in a slice
//! (a neighbour, a frequency change) hit both. Resampling whole pairs keeps that shared
//! part inside each replicate, so the interval reflects how much the *ratio* varies from
//! slice to slice, not how much either arm does. A quantile of a replicate is taken from
//! the union of its slices' histograms, as the whole-run figure is.
//!
//! The interval is not the bootstrap's percentiles. With the dozen pairs of a short run
//! those are too narrow: a bootstrap standard error is biased low by `sqrt((n-1)/n)`, and
//! the normal quantile ignores that the error is itself estimated from `n` pairs
//! (Hesterberg, "What teachers should know about the bootstrap", 2015). So the interval is
//! the point estimate ± `t(n-1) · sqrt(n/(n-1)) ·` the bootstrap standard error, on the log
//! of the ratio (ratios are skewed, their logs far less), at 99 %. Real A/A runs measured
//! both changes: the 95 % percentile interval called 8 of 100 identical pairs regressed,
//! this one none (BENCHMARKS.md, "Paired A/B").

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use statrs::distribution::{ContinuousCDF as _, StudentsT};

use crate::bootstrap::Interval;
use crate::metric::Metric;
use crate::model::{ReportError, Slice};

/// One arm's slices, flattened for weighted quantiles: every recorded histogram bucket of
/// every slice, sorted by value.
#[derive(Debug, Clone)]
pub(crate) struct ArmSlices {
    /// (value µs, slice index, count), ascending by value.
    entries: Vec<(u64, u32, u64)>,
    requests: Vec<u64>,
    failures: Vec<u64>,
    /// Requests that were recorded in the histograms, per slice.
    recorded: Vec<u64>,
}

impl ArmSlices {
    pub(crate) fn new(slices: &[&Slice]) -> Result<ArmSlices, ReportError> {
        let mut entries = Vec::new();
        let mut recorded = Vec::with_capacity(slices.len());
        for (i, s) in slices.iter().enumerate() {
            let h = s.decode_corrected()?;
            let mut n = 0;
            for v in h.iter_recorded() {
                entries.push((v.value_iterated_to(), i as u32, v.count_at_value()));
                n += v.count_at_value();
            }
            recorded.push(n);
        }
        entries.sort_unstable_by_key(|e| e.0);
        Ok(ArmSlices {
            entries,
            requests: slices.iter().map(|s| s.requests).collect(),
            failures: slices.iter().map(|s| s.failures).collect(),
            recorded,
        })
    }

    /// The metrics of the slices weighted by `w` (how often each slice was drawn), in
    /// [`Metric::ALL`]'s order: quantiles in ms, requests per slice, error rate.
    fn figures(&self, w: &[u64]) -> [f64; 6] {
        let weighted = |v: &[u64]| -> u64 { v.iter().zip(w).map(|(x, k)| x * k).sum() };
        let n = weighted(&self.recorded);
        let mut out = [f64::NAN; 6];
        if n > 0 {
            let qs = [0.5, 0.9, 0.95, 0.99];
            // The same rank rule as `Histogram::value_at_quantile`: the ceil(q·n)-th value.
            let ranks = qs.map(|q| ((q * n as f64).ceil() as u64).max(1));
            let mut next = 0;
            let mut cum = 0;
            for &(value, slice, count) in &self.entries {
                cum += count * w[slice as usize];
                while next < ranks.len() && cum >= ranks[next] {
                    out[next] = value as f64 / 1000.0;
                    next += 1;
                }
                if next == ranks.len() {
                    break;
                }
            }
        }
        let draws: u64 = w.iter().sum();
        let requests = weighted(&self.requests);
        out[4] = requests as f64 / draws.max(1) as f64;
        out[5] = if requests == 0 {
            0.0
        } else {
            weighted(&self.failures) as f64 / requests as f64
        };
        out
    }
}

/// One metric's paired estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub baseline: f64,
    pub candidate: f64,
    /// Relative change B/A − 1 (error rate: relative too, infinite from a zero baseline).
    pub change: f64,
    /// The interval of the relative change (error rate: of the difference B − A).
    pub interval: Option<Interval>,
    /// The smallest change in the bad direction this run would have detected with the
    /// given power: relative for ratios, absolute for the error rate. `None` when the
    /// pairs do not vary enough to say (e.g. no errors at all in either arm).
    pub min_detectable: Option<f64>,
}

/// Bootstrap settings of the paired estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedBootstrap {
    pub resamples: usize,
    /// Two-sided level of the interval [default: 0.99, so that the one-sided false-alarm
    /// rate stays within 1 % (BENCHMARKS.md, "Paired A/B")].
    pub confidence: f64,
    /// Power at which the minimum detectable change is stated.
    pub power: f64,
    pub seed: u64,
}

impl Default for PairedBootstrap {
    fn default() -> Self {
        PairedBootstrap {
            resamples: 2000,
            confidence: 0.99,
            power: 0.8,
            seed: 0x6361_7874_6f6e,
        }
    }
}

/// Estimates every metric of [`Metric::ALL`] from `n` pairs (`a` and `b` hold the same
/// number of slices, pair `i` being slice `i` of each).
pub(crate) fn estimate(a: &ArmSlices, b: &ArmSlices, opts: &PairedBootstrap) -> Vec<Estimate> {
    let n = a.requests.len().min(b.requests.len());
    let ones = vec![1u64; n];
    let point_a = a.figures(&ones);
    let point_b = b.figures(&ones);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut replicates: Vec<[f64; 6]> = Vec::with_capacity(opts.resamples);
    let mut w = vec![0u64; n];
    for _ in 0..opts.resamples {
        w.iter_mut().for_each(|x| *x = 0);
        for _ in 0..n {
            w[rng.random_range(0..n)] += 1;
        }
        let fa = a.figures(&w);
        let fb = b.figures(&w);
        let mut r = [f64::NAN; 6];
        for m in 0..6 {
            r[m] = if m == 5 { fb[m] - fa[m] } else { fb[m] / fa[m] };
        }
        replicates.push(r);
    }
    // Quantiles of Student's t with n - 1 degrees of freedom, widened by sqrt(n / (n - 1)):
    // see the module's doc. No interval from fewer than two pairs.
    let widen = (n as f64 / (n as f64 - 1.0)).sqrt();
    let t = |p: f64| {
        StudentsT::new(0.0, 1.0, n as f64 - 1.0)
            .map(|d| d.inverse_cdf(p) * widen)
            .unwrap_or(f64::NAN)
    };
    let reach = t(1.0 - (1.0 - opts.confidence) / 2.0);
    let spread = reach + t(opts.power);
    Metric::ALL
        .iter()
        .enumerate()
        .map(|(m, metric)| {
            let (base, cand) = (point_a[m], point_b[m]);
            let ratio_metric = *metric != Metric::ErrorRate;
            let values: Vec<f64> = replicates
                .iter()
                .map(|r| r[m])
                .filter(|v| v.is_finite() && (!ratio_metric || *v > 0.0))
                .collect();
            // Too few usable replicates (a metric with no data in most draws): no interval.
            let usable = n >= 2 && reach.is_finite() && values.len() * 10 >= opts.resamples * 9;
            let point = if ratio_metric {
                (cand / base).ln()
            } else {
                cand - base
            };
            let interval_and_se = (usable && point.is_finite()).then(|| {
                let se = if ratio_metric {
                    std_dev(&values.iter().map(|v| v.ln()).collect::<Vec<_>>())
                } else {
                    std_dev(&values)
                };
                let (lo, hi) = (point - reach * se, point + reach * se);
                let interval = if ratio_metric {
                    Interval {
                        low: lo.exp() - 1.0,
                        high: hi.exp() - 1.0,
                    }
                } else {
                    Interval { low: lo, high: hi }
                };
                (interval, se)
            });
            let change = relative_change(base, cand);
            let min_detectable = interval_and_se.and_then(|(_, se)| {
                (se > 0.0).then(|| {
                    if ratio_metric {
                        let factor = (spread * se).exp();
                        // A fall is the bad direction of throughput.
                        if metric.higher_is_worse() {
                            factor - 1.0
                        } else {
                            1.0 - 1.0 / factor
                        }
                    } else {
                        spread * se
                    }
                })
            });
            Estimate {
                baseline: base,
                candidate: cand,
                change: if change.is_nan() { 0.0 } else { change },
                interval: interval_and_se.map(|(i, _)| i),
                min_detectable,
            }
        })
        .collect()
}

/// Percentile intervals of `b − a` (ms) for p50, p90, p95 and p99 of two runs made at
/// different times: each run's slices resampled on their own (blocks of time, which keep
/// the correlation within a run that resampling requests ignores). `None` for a metric
/// with too few usable replicates.
pub(crate) fn unpaired_quantile_differences(
    a: &ArmSlices,
    b: &ArmSlices,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> [Option<Interval>; 4] {
    let mut rng = StdRng::seed_from_u64(seed);
    let draw = |n: usize, rng: &mut StdRng| {
        let mut w = vec![0u64; n];
        for _ in 0..n {
            w[rng.random_range(0..n)] += 1;
        }
        w
    };
    let (na, nb) = (a.requests.len(), b.requests.len());
    let mut diffs: [Vec<f64>; 4] = Default::default();
    for _ in 0..resamples {
        let fa = a.figures(&draw(na, &mut rng));
        let fb = b.figures(&draw(nb, &mut rng));
        for (m, d) in diffs.iter_mut().enumerate() {
            let v = fb[m] - fa[m];
            if v.is_finite() {
                d.push(v);
            }
        }
    }
    diffs.map(|mut d| {
        if na < 2 || nb < 2 || d.len() * 10 < resamples * 9 {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let pick = |p: f64| d[((p * (d.len() - 1) as f64).round()) as usize];
        let tail = (1.0 - confidence) / 2.0;
        Some(Interval {
            low: pick(tail),
            high: pick(1.0 - tail),
        })
    })
}

fn relative_change(baseline: f64, candidate: f64) -> f64 {
    if baseline == 0.0 {
        if candidate == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        candidate / baseline - 1.0
    }
}

fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{encode_histogram, new_histogram};
    use rand_distr::{Distribution as _, LogNormal};

    /// `n` slices of `per` requests, log-normal latencies around 1 ms times `factor`, with
    /// a slice-wide multiplier shared by the pair (`noise`, the machine's drift).
    fn arms(n: usize, per: u64, factor: f64, seed: u64) -> (ArmSlices, ArmSlices) {
        let mut rng = StdRng::seed_from_u64(seed);
        let latency = LogNormal::new(0.0, 0.4).unwrap();
        let drift = LogNormal::new(0.0, 0.3).unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..n {
            let shared = drift.sample(&mut rng);
            for (out, f) in [(&mut a, 1.0), (&mut b, factor)] {
                let mut h = new_histogram();
                for _ in 0..per {
                    let us = 1000.0 * shared * f * latency.sample(&mut rng);
                    h.record(us as u64 + 1).unwrap();
                }
                out.push(Slice {
                    start_seconds: i as u64 * 2,
                    seconds: 2,
                    requests: per,
                    failures: 0,
                    transport_failures: 0,
                    corrected: encode_histogram(&h, "slice").unwrap(),
                });
            }
        }
        let a: Vec<&Slice> = a.iter().collect();
        let b: Vec<&Slice> = b.iter().collect();
        (ArmSlices::new(&a).unwrap(), ArmSlices::new(&b).unwrap())
    }

    fn p95(e: &[Estimate]) -> Estimate {
        e[Metric::ALL.iter().position(|m| *m == Metric::P95).unwrap()]
    }

    #[test]
    fn a_shared_drift_does_not_widen_the_paired_interval() {
        // A 30 % slice-to-slice drift hits both arms; a 10 % slowdown stays visible.
        let opts = PairedBootstrap {
            resamples: 400,
            ..Default::default()
        };
        let (a, b) = arms(40, 300, 1.10, 7);
        let e = p95(&estimate(&a, &b, &opts));
        let i = e.interval.unwrap();
        assert!(i.low > 0.0, "interval {i:?} should exclude no change");
        assert!((e.change - 0.10).abs() < 0.05, "change {}", e.change);
        let mdc = e.min_detectable.unwrap();
        assert!(mdc > 0.0 && mdc < 0.10, "minimum detectable change {mdc}");
    }

    #[test]
    fn identical_arms_straddle_no_change() {
        let opts = PairedBootstrap {
            resamples: 400,
            ..Default::default()
        };
        let (a, b) = arms(40, 300, 1.0, 11);
        let e = p95(&estimate(&a, &b, &opts));
        let i = e.interval.unwrap();
        assert!(i.low < 0.0 && i.high > 0.0, "A/A interval {i:?}");
    }

    #[test]
    fn short_runs_of_identical_arms_rarely_exclude_no_change() {
        // Six pairs, the fewest a verdict accepts. Without the small-sample widening (normal
        // quantiles on the same standard error) 13 of these 300 exclude no change; the bound
        // is what a 99 % interval may do with some room.
        let opts = PairedBootstrap {
            resamples: 300,
            ..Default::default()
        };
        let runs = 300;
        let excluded = (0..runs)
            .filter(|seed| {
                let (a, b) = arms(6, 150, 1.0, 1000 + seed);
                let i = p95(&estimate(&a, &b, &opts)).interval.unwrap();
                i.low > 0.0 || i.high < 0.0
            })
            .count();
        assert!(
            excluded * 100 <= runs as usize * 3,
            "{excluded} of {runs} A/A runs excluded no change at the 99 % level"
        );
    }

    #[test]
    fn the_same_input_gives_the_same_estimate() {
        let opts = PairedBootstrap {
            resamples: 200,
            ..Default::default()
        };
        let (a, b) = arms(10, 100, 1.05, 3);
        assert_eq!(estimate(&a, &b, &opts), estimate(&a, &b, &opts));
    }
}
