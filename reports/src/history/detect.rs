//! Change points of one series: E-Divisive means with a significance test, as Apache Otava
//! does.
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
//! 2. Significance: a rank permutation test between the runs either side of a change point,
//!    bounded by its neighbouring change points and by a window. Candidates are re-judged at the strict
//!    level, the weakest removed first, until every remaining one passes.
//! 3. Magnitude: the relative change of the medians either side must reach a minimum, so a
//!    significant but negligible shift (or one outlier) is not a change point.
//!
//! Everything is deterministic: the permutations of the test and the bootstrap of the
//! magnitude's interval are seeded.

use std::collections::HashMap;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use statrs::distribution::{ContinuousCDF as _, Normal};

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
    /// Permutations of the significance test (its p-value resolution is 1 / (this + 1)).
    pub permutations: usize,
    /// Resampling of the magnitude's interval; its seed seeds the permutations too.
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
            permutations: 3999,
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
    /// Of the rank permutation test between the runs either side ([`rank_test`]).
    pub p_value: f64,
}

/// The change points of `values`, in order. A series shorter than
/// [`DetectOptions::min_len`] has none (the caller says it is too short).
pub fn detect(values: &[f64], opts: &DetectOptions) -> Vec<ChangePoint> {
    detect_with(values, opts, &mut Judgements::default())
}

/// The judgements of windows already tested, keyed by the window. A window's verdict
/// depends only on its runs (and on whether they were tested as logarithms), so the strict
/// pass and a second detection over a prefix of the same series (`history` asks with and
/// without the newest run) take them from here instead of permuting again.
/// The best splits of segments already searched are kept the same way, keyed by the
/// segment: the search costs O(n²) per segment, the most of a long history's time.
#[derive(Debug, Default)]
pub struct Judgements {
    windows: HashMap<(bool, usize, usize, usize), (f64, f64)>,
    splits: HashMap<(bool, usize, usize), Option<Split>>,
}

/// [`detect`], reusing (and adding to) `judged`: `values` must extend or be a prefix of the
/// series `judged` was filled from.
pub fn detect_with(
    values: &[f64],
    opts: &DetectOptions,
    judged: &mut Judgements,
) -> Vec<ChangePoint> {
    let min_seg = opts.min_segment.max(1);
    if values.len() < opts.min_len() || values.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    // Latencies and rates are positive and skewed, and their changes multiplicative: the
    // divergence and the test see logarithms, which a slower run's long tail moves less.
    let logs: Vec<f64>;
    let as_logs = values.iter().all(|v| *v > 0.0);
    let tested = if as_logs {
        logs = values.iter().map(|v| v.ln()).collect();
        &logs[..]
    } else {
        values
    };
    let judged_at = |judged: &mut Judgements, s: usize, tau: usize, e: usize| {
        let (lo, hi) = window(s, tau, e, opts.window);
        *judged
            .windows
            .entry((as_logs, lo, tau, hi))
            .or_insert_with(|| judge(values, tested, lo, tau, hi, opts))
    };
    let mut candidates = Vec::new();
    let mut segments = vec![(0, values.len())];
    while let Some((s, e)) = segments.pop() {
        let Some((tau, kappa)) = best_split(tested, s, e, min_seg, as_logs, judged) else {
            continue;
        };
        // Judged against the runs up to κ only: a later change back must not hide this one.
        let (p, change) = judged_at(judged, s, tau, kappa);
        if p < opts.weak_p_value && change.abs() >= opts.min_magnitude {
            candidates.push(tau);
            segments.push((s, tau));
            segments.push((tau, e));
        }
    }
    candidates.sort_unstable();
    // Strict pass: drop the weakest failing candidate, re-judge its neighbours, repeat. Only
    // the neighbours of a dropped candidate get new windows; the rest come from `judged`.
    loop {
        let judged: Vec<(f64, f64)> = (0..candidates.len())
            .map(|i| {
                let s = if i == 0 { 0 } else { candidates[i - 1] };
                let e = candidates.get(i + 1).copied().unwrap_or(values.len());
                judged_at(&mut *judged, s, candidates[i], e)
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

/// The split `τ` of `[s, e)`, and the end `κ` of the runs after it, with the largest
/// divergence `Q̂`, both sides at least `min_seg` long; the earliest on ties, so the result
/// does not depend on float noise in the order. From `judged` when searched before.
fn best_split(
    z: &[f64],
    s: usize,
    e: usize,
    min_seg: usize,
    as_logs: bool,
    judged: &mut Judgements,
) -> Option<Split> {
    if let Some(found) = judged.splits.get(&(as_logs, s, e)) {
        return *found;
    }
    let (full, short) = best_splits(&z[s..e], min_seg);
    let shift = |b: Option<Split>| b.map(|(tau, kappa)| (s + tau, s + kappa));
    if e > s {
        judged.splits.insert((as_logs, s, e - 1), shift(short));
    }
    judged.splits.insert((as_logs, s, e), shift(full));
    shift(full)
}

/// The runs `[lo, hi)` compared either side of `tau` in the segment `[s, e)`: at most
/// `width` each side.
fn window(s: usize, tau: usize, e: usize, width: usize) -> (usize, usize) {
    let width = width.max(1);
    (s.max(tau.saturating_sub(width)), e.min(tau + width))
}

/// The runs compared either side of `tau` in the segment `[s, e)`.
fn sides(values: &[f64], s: usize, tau: usize, e: usize, width: usize) -> (&[f64], &[f64]) {
    let (lo, hi) = window(s, tau, e, width);
    (&values[lo..tau], &values[tau..hi])
}

/// (p-value, relative change of the medians) of a change at `tau` between the runs
/// `[lo, hi)`: the test on `tested`, the magnitude on `values`.
fn judge(
    values: &[f64],
    tested: &[f64],
    lo: usize,
    tau: usize,
    hi: usize,
    opts: &DetectOptions,
) -> (f64, f64) {
    (
        rank_test(&tested[lo..hi], tau - lo, opts),
        relative_step(median(&values[lo..tau]), median(&values[tau..hi])),
    )
}

/// Average ranks (1-based) of `x`, ties sharing their mean rank, and the tie correction
/// term Σ(t³ − t) over groups of t tied values.
fn ranks(x: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|a, b| x[*a].total_cmp(&x[*b]));
    let mut r = vec![0.0; x.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        for k in &order[i..=j] {
            r[*k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    (r, ties)
}

/// Standardised Mann-Whitney statistic of the split after `k` of `ranks` (runs after the
/// split ranking higher give a positive value); 0 when every value is tied.
fn rank_z(ranks: &[f64], ties: f64, k: usize, after_sum: f64) -> f64 {
    let n = ranks.len() as f64;
    let (n1, n2) = (k as f64, n - k as f64);
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 1e-12 {
        return 0.0;
    }
    (after_sum - n2 * (n2 + 1.0) / 2.0 - n1 * n2 / 2.0) / var.sqrt()
}

/// The largest |z| over every admissible split of `ranks`.
fn max_rank_z(ranks: &[f64], ties: f64, min_seg: usize) -> f64 {
    let n = ranks.len();
    let mut after: f64 = ranks.iter().sum();
    let mut best: f64 = 0.0;
    for k in 1..=n.saturating_sub(min_seg) {
        after -= ranks[k - 1];
        if k >= min_seg {
            best = best.max(rank_z(ranks, ties, k, after).abs());
        }
    }
    best
}

/// Two-sided p-value of a change after run `k` of `window`, allowing for the split having
/// been chosen as the most divergent one.
///
/// The statistic is the Mann-Whitney rank sum (robust to the heavy tails of real
/// run-to-run noise, where one slow night swamps a t-test). Its null distribution (every
/// order of the window equally likely) is sampled by seeded permutations of the ranks, and
/// what is compared is the *largest* statistic over every split a search could have picked:
/// the permutation test of Matteson & James, on ranks. A split whose unadjusted normal
/// p-value already fails the weak level is not resampled (the adjusted one is larger).
fn rank_test(window: &[f64], k: usize, opts: &DetectOptions) -> f64 {
    let min_seg = opts.min_segment.max(1);
    let n = window.len();
    if k < 1 || k >= n {
        return 1.0;
    }
    let (mut r, ties) = ranks(window);
    let after: f64 = r[k..].iter().sum();
    let z = rank_z(&r, ties, k, after).abs();
    let Ok(normal) = Normal::new(0.0, 1.0) else {
        return 1.0;
    };
    let unadjusted = (2.0 * (1.0 - normal.cdf(z))).min(1.0);
    if unadjusted >= opts.weak_p_value || opts.permutations == 0 {
        return unadjusted;
    }
    let mut rng = StdRng::seed_from_u64(opts.bootstrap.seed ^ ((n as u64) << 32) ^ k as u64);
    let total = (opts.permutations + 1) as f64;
    let mut exceed = 0usize;
    for drawn in 1..=opts.permutations {
        r.shuffle(&mut rng);
        if max_rank_z(&r, ties, min_seg) < z - 1e-9 {
            continue;
        }
        exceed += 1;
        // Besag & Clifford's sequential test: once this many permutations are as extreme,
        // the p-value of all of them cannot fall below the weak level, so the rest cannot
        // change any decision. Their p-value (exceedances / permutations drawn) is valid
        // too; it is kept at least the weak level so that the decision is the full test's.
        if (exceed + 1) as f64 >= opts.weak_p_value * total {
            return (exceed as f64 / drawn as f64).max((exceed + 1) as f64 / total);
        }
    }
    (exceed + 1) as f64 / total
}

/// A split `τ` and the end `κ` of the runs after it.
type Split = (usize, usize);

/// E-Divisive's split search over one segment, without the n × n distance matrix: the runs
/// are added one at a time as the end `κ`, and for every split `τ` before it the sums the
/// divergence needs are kept up to date (O(n) memory, O(n²) time, sequential access). A
/// history of 10,000 nights needed 800 MB for the matrix and its random reads dominated.
///
/// Each candidate's sums depend only on the runs from the segment's start to its `κ`, so
/// one scan of `[s, e)` also gives the best split of `[s, e − 1)` (the history without its
/// newest run): [`Judgements`] keeps both.
fn best_splits(z: &[f64], min_seg: usize) -> (Option<Split>, Option<Split>) {
    let n = z.len();
    if n < 2 * min_seg {
        return (None, None);
    }
    // pairs[t]: Σ |z_i − z_j| over pairs i < j < t.
    let mut pairs = vec![0.0; n + 1];
    // For the current κ: between[τ] = Σ over i < τ ≤ j < κ, after[τ] = pairs i, j in [τ, κ).
    let mut between = vec![0.0; n + 1];
    let mut after = vec![0.0; n + 1];
    // The mean distance within m runs is (pair sum) · 2 / (m (m − 1)); 0 for fewer than 2.
    let within_scale: Vec<f64> = (0..=n)
        .map(|m| {
            if m < 2 {
                0.0
            } else {
                2.0 / (m * (m - 1)) as f64
            }
        })
        .collect();
    let recip: Vec<f64> = (0..=n).map(|m| 1.0 / m.max(1) as f64).collect();
    let mut dist = vec![0.0; n];
    // (q, τ, κ): the largest q, then the earliest τ, then the earliest κ, as a scan by τ
    // then κ would keep.
    let mut best: Option<(f64, usize, usize)> = None;
    let mut best_short = None;
    for kappa in 1..=n {
        if kappa == n {
            best_short = best;
        }
        // Add run p = κ − 1 to the runs after every split τ ≤ p, and score each split.
        let p = kappa - 1;
        let x = z[p];
        let mut total = 0.0;
        for (d, v) in dist[..p].iter_mut().zip(&z[..p]) {
            *d = (v - x).abs();
            total += *d;
        }
        pairs[kappa] = pairs[p] + total;
        let scored = if kappa >= 2 * min_seg {
            min_seg..kappa - min_seg + 1
        } else {
            0..0
        };
        let scale = recip[kappa];
        // left = Σ_{i < τ} |z_i − x|; the rest of `total` lies in [τ, p). One pass: the
        // running sum is the loop's critical path, the scoring fits beside it.
        let (mut left, mut top, mut top_tau) = (0.0, f64::NEG_INFINITY, 0);
        for tau in 0..=p {
            between[tau] += left;
            after[tau] += total - left;
            if scored.contains(&tau) {
                let (m, k) = (tau, kappa - tau);
                let mean_between = 2.0 * between[tau] * recip[m] * recip[k];
                let e = mean_between - pairs[tau] * within_scale[m] - after[tau] * within_scale[k];
                let q = (m * k) as f64 * scale * e;
                if q > top {
                    (top, top_tau) = (q, tau);
                }
            }
            if tau < p {
                left += dist[tau];
            }
        }
        if !scored.is_empty() && best.is_none_or(|(b, bt, _)| top > b || (top == b && top_tau < bt))
        {
            best = Some((top, top_tau, kappa));
        }
    }
    let at = |b: Option<(f64, usize, usize)>| b.map(|(_, tau, kappa)| (tau, kappa));
    (at(best), at(best_short))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;
    use rand::rngs::StdRng;

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
    fn judgements_shared_with_a_prefix_change_nothing() {
        let v = noisy(80, 4, |i| match i {
            0..30 => 10.0,
            30..60 => 13.0,
            _ => 10.5,
        });
        let opts = DetectOptions::default();
        let mut judged = Judgements::default();
        let full = detect_with(&v, &opts, &mut judged);
        let prefix = detect_with(&v[..v.len() - 1], &opts, &mut judged);
        assert_eq!(full, detect(&v, &opts));
        assert_eq!(prefix, detect(&v[..v.len() - 1], &opts));
        assert!(!full.is_empty());
    }

    #[test]
    fn a_series_too_short_has_no_change_points() {
        assert!(detect(&[1.0, 1.0, 5.0, 5.0, 5.0], &DetectOptions::default()).is_empty());
    }

    #[test]
    fn the_rank_test_allows_for_the_chosen_split_and_ties() {
        let (r, ties) = ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(ties, 6.0);
        let opts = DetectOptions::default();
        // Ten low then ten high: as extreme as 20 runs can be.
        let clear: Vec<f64> = (0..20)
            .map(|i| if i < 10 { i as f64 } else { 100.0 + i as f64 })
            .collect();
        assert!(rank_test(&clear, 10, &opts) < 0.001);
        // The same runs split at the wrong place is far weaker evidence.
        assert!(rank_test(&clear, 4, &opts) > 0.001);
        // All tied: nothing to see.
        assert_eq!(rank_test(&[0.0; 12], 6, &opts), 1.0);
    }

    #[test]
    fn the_scan_finds_the_split_the_distance_matrix_finds() {
        let mut rng = StdRng::seed_from_u64(9);
        for round in 0..400 {
            let n = rng.random_range(6..70);
            let step = rng.random_range(0..n);
            // Every fourth series from a pool of 6 values: ties everywhere.
            let z: Vec<f64> = (0..n)
                .map(|i| {
                    let v = if round % 4 == 0 {
                        f64::from(rng.random_range(0..6u8))
                    } else {
                        rng.random::<f64>()
                    };
                    v + if i >= step { 0.7 } else { 0.0 }
                })
                .collect();
            let matrix = Energy::new(&z);
            for min_seg in [1, 3] {
                let (full, short) = best_splits(&z, min_seg);
                assert_eq!(full, matrix.best_split(0, n, min_seg), "{round} {z:?}");
                assert_eq!(short, matrix.best_split(0, n - 1, min_seg), "{round} {z:?}");
                let s = n / 3;
                let (inner, _) = best_splits(&z[s..], min_seg);
                let inner = inner.map(|(t, k)| (s + t, s + k));
                assert_eq!(inner, matrix.best_split(s, n, min_seg), "{round} {z:?}");
            }
        }
    }

    /// The search as it was, with the whole distance matrix: the reference the scan must
    /// agree with.
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

        /// The split `τ` of `[s, e)`, and the end `κ` of the runs after it, with the largest
        /// divergence, both sides at least `min_seg` long;
        /// the earliest on ties, so the result does not depend on float noise in the order.
        fn best_split(&self, s: usize, e: usize, min_seg: usize) -> Option<(usize, usize)> {
            let mut best: Option<(f64, usize, usize)> = None;
            if e < s + 2 * min_seg {
                return None;
            }
            for tau in s + min_seg..=e - min_seg {
                for kappa in tau + min_seg..=e {
                    let q = self.q(s, tau, kappa);
                    if best.is_none_or(|(b, _, _)| q > b) {
                        best = Some((q, tau, kappa));
                    }
                }
            }
            best.map(|(_, tau, kappa)| (tau, kappa))
        }
    }
}
