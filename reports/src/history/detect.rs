//! Change points of one series: E-Divisive means with a t-test, as Apache Otava does.
//!
//! The method is the one described in Otava's `docs/MATH.md` (after Matteson & James, "A
//! Nonparametric Approach for Multiple Change Point Analysis of Multivariate Data", and
//! Fleming et al., "Hunter: Using Change Point Detection to Hunt for Performance
//! Regressions"); the code is written from those descriptions, none of it is ported.
//!
//! 1. Candidates: within a segment, the split `τ` (and the end `κ` of the segment after it)
//!    that maximises the energy divergence `Q̂(X_τ, Y_τ(κ); α = 1)` between the runs before
//!    and after it. Splitting recurses left and right while the split is significant at the
//!    *weak* level (Hunter's weak change points).
//! 2. Significance: Welch's t-test between the runs either side of a change point, bounded by
//!    its neighbouring change points and by a window. Candidates are re-judged at the strict
//!    level, the weakest removed first, until every remaining one passes.
//! 3. Magnitude: the relative change of the medians either side must reach a minimum, so a
//!    significant but negligible shift (or one outlier) is not a change point.
//!
//! Everything is deterministic: no permutation test, and the bootstrap of the magnitude's
//! interval is seeded.

use statrs::distribution::{ContinuousCDF as _, StudentsT};

use crate::bootstrap::{self, Bootstrap, Interval, median, relative_step};

/// Detector settings; the defaults are the ones BENCHMARKS.md measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Strict significance level of a change point (Otava's default).
    pub p_value: f64,
    /// Level at which a split is kept as a candidate while segmenting.
    pub weak_p_value: f64,
    /// Smallest relative change of the medians either side of a change point.
    pub min_magnitude: f64,
    /// Fewest runs on either side of a change point: a change needs this many runs to show.
    pub min_segment: usize,
    /// At most this many runs either side enter the test and the medians.
    pub window: usize,
    /// Resampling of the magnitude's interval.
    pub bootstrap: Bootstrap,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            p_value: 0.001,
            weak_p_value: 0.01,
            min_magnitude: 0.05,
            min_segment: 3,
            window: 30,
            bootstrap: Bootstrap::default(),
        }
    }
}

impl DetectOptions {
    /// The shortest series in which a change point can be found.
    pub fn min_len(&self) -> usize {
        2 * self.min_segment.max(1)
    }
}

/// A change point: `index` is the first run after the change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    pub index: usize,
    /// Median after / median before − 1, over the compared runs.
    pub change: f64,
    /// Bootstrap interval of `change`.
    pub ci: Interval,
    /// Two-sided Welch t-test between the runs either side.
    pub p_value: f64,
}

/// The change points of `values`, in order. A series shorter than
/// [`DetectOptions::min_len`] has none (the caller says it is too short).
pub fn detect(values: &[f64], opts: &DetectOptions) -> Vec<ChangePoint> {
    let min_seg = opts.min_segment.max(1);
    if values.len() < opts.min_len() || values.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    // Latencies and rates are positive and skewed, and their changes multiplicative: the
    // divergence and the test see logarithms, which a slower run's long tail moves less.
    let logs: Vec<f64>;
    let tested = if values.iter().all(|v| *v > 0.0) {
        logs = values.iter().map(|v| v.ln()).collect();
        &logs[..]
    } else {
        values
    };
    let energy = Energy::new(tested);
    let mut candidates = Vec::new();
    let mut segments = vec![(0, values.len())];
    while let Some((s, e)) = segments.pop() {
        let Some(tau) = energy.best_split(s, e, min_seg) else {
            continue;
        };
        let (p, change) = judge(values, tested, s, tau, e, opts);
        if p < opts.weak_p_value && change.abs() >= opts.min_magnitude {
            candidates.push(tau);
            segments.push((s, tau));
            segments.push((tau, e));
        }
    }
    candidates.sort_unstable();
    // Strict pass: drop the weakest failing candidate, re-judge its neighbours, repeat.
    loop {
        let judged: Vec<(f64, f64)> = (0..candidates.len())
            .map(|i| {
                let s = if i == 0 { 0 } else { candidates[i - 1] };
                let e = candidates.get(i + 1).copied().unwrap_or(values.len());
                judge(values, tested, s, candidates[i], e, opts)
            })
            .collect();
        let failing = judged
            .iter()
            .enumerate()
            .filter(|(_, (p, c))| *p >= opts.p_value || c.abs() < opts.min_magnitude)
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0).then(b.0.cmp(&a.0)));
        match failing {
            Some((i, _)) => {
                candidates.remove(i);
            }
            None => {
                return candidates
                    .iter()
                    .zip(judged)
                    .enumerate()
                    .map(|(i, (&index, (p_value, change)))| {
                        let s = if i == 0 { 0 } else { candidates[i - 1] };
                        let e = candidates.get(i + 1).copied().unwrap_or(values.len());
                        let (before, after) = sides(values, s, index, e, opts.window);
                        ChangePoint {
                            index,
                            change,
                            ci: bootstrap::median_change(before, after, &opts.bootstrap),
                            p_value,
                        }
                    })
                    .collect();
            }
        }
    }
}

/// The runs compared either side of `tau` in the segment `[s, e)`: at most `window` each.
fn sides(values: &[f64], s: usize, tau: usize, e: usize, window: usize) -> (&[f64], &[f64]) {
    let window = window.max(1);
    (
        &values[s.max(tau.saturating_sub(window))..tau],
        &values[tau..e.min(tau + window)],
    )
}

/// (p-value, relative change of the medians) of a change at `tau` within `[s, e)`: the
/// test on `tested`, the magnitude on `values`.
fn judge(
    values: &[f64],
    tested: &[f64],
    s: usize,
    tau: usize,
    e: usize,
    opts: &DetectOptions,
) -> (f64, f64) {
    let (before, after) = sides(values, s, tau, e, opts.window);
    let (t_before, t_after) = sides(tested, s, tau, e, opts.window);
    // The split was chosen as the most divergent of the segment's admissible ones, so its
    // raw p-value is as small as the smallest of that many tests: Bonferroni-correct it.
    let splits = (e - s + 1).saturating_sub(2 * opts.min_segment.max(1)).max(1);
    (
        (welch_p_value(t_before, t_after) * splits as f64).min(1.0),
        relative_step(median(before), median(after)),
    )
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = if x.len() > 1 {
        x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var)
}

/// Two-sided p-value of Welch's t-test that `a` and `b` have the same mean.
pub fn welch_p_value(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < 2 || b.len() < 2 {
        return 1.0;
    }
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se2 = sa + sb;
    if se2 <= 0.0 {
        // Both sides constant: any difference is certain, none is no evidence.
        return if ma == mb { 1.0 } else { 0.0 };
    }
    let t = (mb - ma) / se2.sqrt();
    let df = se2 * se2
        / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0)).max(f64::MIN_POSITIVE);
    match StudentsT::new(0.0, 1.0, df.max(1.0)) {
        Ok(dist) => (2.0 * dist.cdf(-t.abs())).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// Prefix sums of the pairwise distance matrix `|z_i − z_j|`, so that the sum over any block
/// of it costs O(1) and a segment's best split O(n²).
struct Energy {
    n: usize,
    /// `(n+1)²`, row-major: `prefix[i][j]` = Σ D over rows < i, columns < j.
    prefix: Vec<f64>,
}

impl Energy {
    fn new(z: &[f64]) -> Energy {
        let n = z.len();
        let w = n + 1;
        let mut prefix = vec![0.0; w * w];
        for i in 0..n {
            let mut row = 0.0;
            for j in 0..n {
                row += (z[i] - z[j]).abs();
                prefix[(i + 1) * w + j + 1] = prefix[i * w + j + 1] + row;
            }
        }
        Energy { n, prefix }
    }

    /// Σ D over rows `[r0, r1)` × columns `[c0, c1)`.
    fn block(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> f64 {
        let w = self.n + 1;
        let p = |i: usize, j: usize| self.prefix[i * w + j];
        p(r1, c1) - p(r0, c1) - p(r1, c0) + p(r0, c0)
    }

    /// Mean distance within `[a, b)` (0 for fewer than two points).
    fn within(&self, a: usize, b: usize) -> f64 {
        let m = b - a;
        if m < 2 {
            return 0.0;
        }
        // The block counts each pair twice and the diagonal is zero.
        self.block(a, b, a, b) / (m * (m - 1)) as f64
    }

    /// Q̂ of the split `[s, τ)` | `[τ, κ)`.
    fn q(&self, s: usize, tau: usize, kappa: usize) -> f64 {
        let (m, k) = ((tau - s) as f64, (kappa - tau) as f64);
        let between = 2.0 * self.block(s, tau, tau, kappa) / (m * k);
        let e = between - self.within(s, tau) - self.within(tau, kappa);
        m * k / (m + k) * e
    }

    /// The split of `[s, e)` with the largest divergence, both sides at least `min_seg` long;
    /// the earliest on ties, so the result does not depend on float noise in the order.
    fn best_split(&self, s: usize, e: usize, min_seg: usize) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        if e < s + 2 * min_seg {
            return None;
        }
        for tau in s + min_seg..=e - min_seg {
            for kappa in tau + min_seg..=e {
                let q = self.q(s, tau, kappa);
                if best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, tau));
                }
            }
        }
        best.map(|(_, tau)| tau)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    fn noisy(n: usize, seed: u64, level: impl Fn(usize) -> f64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| level(i) * (1.0 + 0.03 * (rng.random::<f64>() - 0.5) * 2.0))
            .collect()
    }

    #[test]
    fn a_step_is_found_where_it_is() {
        let v = noisy(40, 1, |i| if i < 25 { 10.0 } else { 13.0 });
        let cps = detect(&v, &DetectOptions::default());
        assert_eq!(cps.len(), 1, "{cps:?}");
        assert!((24..=26).contains(&cps[0].index), "{cps:?}");
        assert!((cps[0].change - 0.3).abs() < 0.05, "{cps:?}");
        assert!(cps[0].ci.low > 0.2 && cps[0].ci.high < 0.4, "{cps:?}");
        assert!(cps[0].p_value < 0.001);
    }

    #[test]
    fn flat_noise_and_one_outlier_give_nothing() {
        let mut v = noisy(40, 2, |_| 10.0);
        assert!(detect(&v, &DetectOptions::default()).is_empty());
        v[20] = 30.0;
        assert!(detect(&v, &DetectOptions::default()).is_empty());
    }

    #[test]
    fn two_steps_are_both_found_and_the_output_repeats() {
        let v = noisy(60, 3, |i| match i {
            0..20 => 10.0,
            20..40 => 14.0,
            _ => 9.0,
        });
        let opts = DetectOptions::default();
        let cps = detect(&v, &opts);
        let at: Vec<usize> = cps.iter().map(|c| c.index).collect();
        assert_eq!(at.len(), 2, "{cps:?}");
        assert!(at[0].abs_diff(20) <= 1 && at[1].abs_diff(40) <= 1, "{at:?}");
        assert!(cps[1].change < 0.0);
        assert_eq!(detect(&v, &opts), cps);
    }

    #[test]
    fn a_series_too_short_has_no_change_points() {
        assert!(detect(&[1.0, 1.0, 5.0, 5.0, 5.0], &DetectOptions::default()).is_empty());
    }

    #[test]
    fn welch_agrees_with_a_known_value() {
        // t = 1.536, df = 17.63, two-sided p = 0.1423 (integrated independently).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let b = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 14.5];
        let p = welch_p_value(&a, &b);
        assert!((p - 0.1423).abs() < 0.0005, "{p}");
        assert_eq!(welch_p_value(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
        assert_eq!(welch_p_value(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
    }
}
