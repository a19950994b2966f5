//! Bootstrap confidence intervals for run-vs-baseline differences.
//!
//! Latency quantiles are resampled from the serialized HDR histograms (the empirical
//! distribution of every request), throughput and error rate from the per-second samples,
//! stratified by stage (a ramp's seconds are resampled only among that ramp's seconds, so the
//! plan's own variation is not mistaken for noise). Every interval is a percentile interval of
//! `current − baseline`; the generator is seeded, so the same two reports always give the
//! same verdict.

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Beta, Distribution as _};

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Resamples per interval (default 2000).
    pub resamples: usize,
    /// Two-sided confidence level (default 0.95).
    pub confidence: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            confidence: 0.95,
            seed: 0x6361_7874_6f6e, // "caxton"
        }
    }
}

/// A confidence interval of a difference (current − baseline), in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// A histogram's recorded values and their cumulative counts, for drawing requests from it.
#[derive(Debug, Clone)]
pub struct Empirical {
    /// Highest equivalent value of each recorded bucket, ascending.
    values: Vec<u64>,
    /// Cumulative count up to and including each bucket.
    cumulative: Vec<u64>,
}

impl Empirical {
    pub fn from_histogram(h: &Histogram<u64>) -> Empirical {
        let mut values = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for v in h.iter_recorded() {
            total += v.count_at_value();
            values.push(v.value_iterated_to());
            cumulative.push(total);
        }
        Empirical { values, cumulative }
    }

    pub fn len(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Same rank rule as `Histogram::value_at_quantile`: the value of the ceil(q·n)-th request.
    pub fn quantile(&self, q: f64) -> u64 {
        quantile_of_counts(&self.values, &self.cumulative, q)
    }

    /// One bootstrap replicate of the q-quantile: the quantile of n requests drawn with
    /// replacement. Drawing request `floor(U·n)` for uniform U is monotone in U, so the
    /// resample's k-th smallest value (k = ceil(q·n)) is the request at the k-th smallest of n
    /// uniforms, which is Beta(k, n−k+1) distributed: one Beta draw per replicate, exactly the
    /// same distribution as drawing all n requests.
    fn replicate(&self, q: f64, rng: &mut StdRng) -> f64 {
        let n = self.len();
        let k = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let Ok(beta) = Beta::new(k as f64, (n - k + 1) as f64) else {
            return self.quantile(q) as f64;
        };
        let u: f64 = beta.sample(rng);
        let r = ((u * n as f64) as u64).min(n - 1);
        let i = self.cumulative.partition_point(|c| *c <= r);
        self.values[i.min(self.values.len() - 1)] as f64
    }
}

fn quantile_of_counts(values: &[u64], cumulative: &[u64], q: f64) -> u64 {
    let total = cumulative.last().copied().unwrap_or(0);
    if total == 0 {
        return 0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let i = cumulative.partition_point(|c| *c < rank);
    values[i.min(values.len() - 1)]
}

/// Intervals of `current − baseline` for each quantile (values in the histograms' unit);
/// `None` for a side without requests.
pub(crate) fn quantile_differences(
    baseline: &Histogram<u64>,
    current: &Histogram<u64>,
    quantiles: &[f64],
    cfg: &Bootstrap,
) -> Vec<Option<Interval>> {
    let (b, c) = (
        Empirical::from_histogram(baseline),
        Empirical::from_histogram(current),
    );
    if b.is_empty() || c.is_empty() || cfg.resamples == 0 {
        return vec![None; quantiles.len()];
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    quantiles
        .iter()
        .map(|q| {
            let diffs = (0..cfg.resamples)
                .map(|_| {
                    let base = b.replicate(*q, &mut rng);
                    c.replicate(*q, &mut rng) - base
                })
                .collect();
            Some(percentile_interval(diffs, cfg.confidence))
        })
        .collect()
}

/// Per-second samples of one stage: (numerator, denominator) of a ratio statistic, e.g.
/// (requests, 1) for throughput, (failures, requests) for error rate.
pub type Stratum = Vec<(f64, f64)>;

/// Interval of `current − baseline` of Σnumerator / Σdenominator, resampling seconds within
/// each stratum; `None` when a side has no samples.
pub(crate) fn ratio_difference(
    baseline: &[Stratum],
    current: &[Stratum],
    cfg: &Bootstrap,
) -> Option<Interval> {
    let has_samples = |s: &[Stratum]| s.iter().any(|st| !st.is_empty());
    if !has_samples(baseline) || !has_samples(current) || cfg.resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x05ec_04d5);
    let resampled = |strata: &[Stratum], rng: &mut StdRng| {
        let (mut num, mut den) = (0.0, 0.0);
        for st in strata.iter().filter(|s| !s.is_empty()) {
            for _ in 0..st.len() {
                let (n, d) = st[rng.random_range(0..st.len())];
                num += n;
                den += d;
            }
        }
        if den > 0.0 { num / den } else { 0.0 }
    };
    let diffs = (0..cfg.resamples)
        .map(|_| {
            let b = resampled(baseline, &mut rng);
            resampled(current, &mut rng) - b
        })
        .collect();
    Some(percentile_interval(diffs, cfg.confidence))
}

/// Interval of `median(after) / median(before) − 1`, resampling runs either side (a
/// history's change point); a zero interval when a side is empty.
pub(crate) fn median_change(before: &[f64], after: &[f64], cfg: &Bootstrap) -> Interval {
    if before.is_empty() || after.is_empty() || cfg.resamples == 0 {
        return Interval {
            low: 0.0,
            high: 0.0,
        };
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6d65_6469_616e);
    let draw = |xs: &[f64], rng: &mut StdRng| {
        let v: Vec<f64> = (0..xs.len())
            .map(|_| xs[rng.random_range(0..xs.len())])
            .collect();
        median(&v)
    };
    let changes = (0..cfg.resamples)
        .map(|_| {
            let b = draw(before, &mut rng);
            relative_step(b, draw(after, &mut rng))
        })
        .collect();
    percentile_interval(changes, cfg.confidence)
}

/// The median (mean of the middle two for an even count; 0 when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `after / before − 1`; a change away from 0 counts as ±100 % (error rates start at 0), so
/// a history's magnitudes stay finite.
pub(crate) fn relative_step(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        if after == 0.0 { 0.0 } else { after.signum() }
    } else {
        after / before - 1.0
    }
}

fn percentile_interval(mut diffs: Vec<f64>, confidence: f64) -> Interval {
    diffs.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    let at = |p: f64| {
        let i = (p * (diffs.len() - 1) as f64).round() as usize;
        diffs[i.min(diffs.len() - 1)]
    };
    Interval {
        low: at(alpha),
        high: at(1.0 - alpha),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_histogram;

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn quantiles_match_hdrhistogram() {
        let h = histogram((1..=1000).map(|i| i * 37 % 5000 + 100));
        let e = Empirical::from_histogram(&h);
        assert_eq!(e.len(), 1000);
        for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(e.quantile(q), h.value_at_quantile(q), "q={q}");
        }
    }

    #[test]
    fn a_shift_is_significant_and_no_shift_is_not() {
        let base = histogram((0..5000u64).map(|i| 1000 + (i * 7919) % 1000));
        let slower = histogram((0..5000u64).map(|i| 1300 + (i * 7919) % 1000));
        let cfg = Bootstrap::default();
        let shifted = quantile_differences(&base, &slower, &[0.95], &cfg)[0].unwrap();
        assert!(
            shifted.excludes_zero() && shifted.low > 200.0,
            "{shifted:?}"
        );
        let same = quantile_differences(&base, &base.clone(), &[0.95], &cfg)[0].unwrap();
        assert!(!same.excludes_zero(), "{same:?}");
        // Seeded: the same inputs give the same interval.
        assert_eq!(
            quantile_differences(&base, &slower, &[0.95], &cfg)[0].unwrap(),
            shifted
        );
        assert_eq!(
            quantile_differences(&new_histogram(), &base, &[0.5], &cfg),
            vec![None]
        );
    }

    #[test]
    fn one_beta_draw_matches_resampling_every_request() {
        let h = histogram((0..400u64).map(|i| 100 + (i * i * 7) % 3000));
        let e = Empirical::from_histogram(&h);
        let mut rng = StdRng::seed_from_u64(7);
        let stats = |xs: &[f64]| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            (mean, var.sqrt())
        };
        let fast: Vec<f64> = (0..4000).map(|_| e.replicate(0.95, &mut rng)).collect();
        let slow: Vec<f64> = (0..4000)
            .map(|_| {
                let mut draws: Vec<u64> = (0..e.len())
                    .map(|_| {
                        let r = rng.random_range(0..e.len());
                        e.values[e.cumulative.partition_point(|c| *c <= r)]
                    })
                    .collect();
                draws.sort_unstable();
                draws[(0.95 * e.len() as f64).ceil() as usize - 1] as f64
            })
            .collect();
        let ((m1, s1), (m2, s2)) = (stats(&fast), stats(&slow));
        assert!((m1 - m2).abs() < 0.02 * m2, "mean {m1} vs {m2}");
        assert!((s1 - s2).abs() < 0.1 * s2, "sd {s1} vs {s2}");
    }

    #[test]
    fn more_requests_give_narrower_intervals() {
        let values = |n: u64| (0..n).map(move |i| 1000 + (i * 7919) % 1000);
        let cfg = Bootstrap::default();
        let width = |n| {
            let h = histogram(values(n));
            let i = quantile_differences(&h, &h.clone(), &[0.95], &cfg)[0].unwrap();
            i.high - i.low
        };
        assert!(
            width(200_000) * 4.0 < width(2_000),
            "{} vs {}",
            width(200_000),
            width(2_000)
        );
    }

    #[test]
    fn ratio_intervals_follow_the_per_second_samples() {
        let steady = |rps: f64| {
            vec![
                (0..30)
                    .map(|i| (rps + (i % 3) as f64, 1.0))
                    .collect::<Stratum>(),
            ]
        };
        let cfg = Bootstrap::default();
        let drop = ratio_difference(&steady(100.0), &steady(80.0), &cfg).unwrap();
        assert!(drop.high < 0.0, "{drop:?}");
        let same = ratio_difference(&steady(100.0), &steady(100.0), &cfg).unwrap();
        assert!(!same.excludes_zero(), "{same:?}");
        assert_eq!(ratio_difference(&[], &steady(1.0), &cfg), None);
    }
}
