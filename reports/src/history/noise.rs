//! The noise of a series, measured from its own history: how much one run differs from the
//! one before when nothing changed. It calibrates `compare`'s threshold for that series.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF as _, Normal};

use crate::bootstrap::{median, relative_step};

/// The false-positive rate a calibrated threshold aims at: a pair of A/A runs exceeds it in
/// the bad direction this often.
pub const TARGET_FALSE_POSITIVE_RATE: f64 = 0.01;

/// The scale factor that makes a median absolute deviation estimate a normal standard
/// deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    /// Run-to-run relative changes measured.
    pub pairs: usize,
    /// Robust standard deviation of the run-to-run relative change (1.4826 × MAD).
    pub sigma: f64,
    /// The relative threshold a one-sided comparison of two runs exceeds with probability
    /// [`TARGET_FALSE_POSITIVE_RATE`] under that noise.
    pub threshold: f64,
    /// The share of this history's run-to-run changes beyond `threshold` in the bad
    /// direction (changes at detected change points included, so it bounds from above).
    pub observed_false_positive_rate: f64,
}

impl Noise {
    /// The expected one-sided false-positive rate of a relative `threshold` under this noise.
    pub fn false_positive_rate(&self, threshold: f64) -> f64 {
        false_positive_rate(self.sigma, threshold)
    }
}

fn standard_normal() -> Option<Normal> {
    Normal::new(0.0, 1.0).ok()
}

/// One-sided tail of a normal run-to-run change of standard deviation `sigma` beyond
/// `threshold`.
pub fn false_positive_rate(sigma: f64, threshold: f64) -> f64 {
    if sigma <= 0.0 {
        // No noise: only a threshold below zero is ever crossed.
        return if threshold >= 0.0 { 0.0 } else { 1.0 };
    }
    standard_normal().map_or(1.0, |n| 1.0 - n.cdf(threshold / sigma))
}

/// The noise of `values` (in time order); `None` with fewer than three runs. `higher_is_worse`
/// picks the direction `observed_false_positive_rate` counts.
pub fn measure(values: &[f64], higher_is_worse: bool) -> Option<Noise> {
    if values.len() < 3 {
        return None;
    }
    let steps: Vec<f64> = values
        .windows(2)
        .map(|w| relative_step(w[0], w[1]))
        .collect();
    let center = median(&steps);
    let deviations: Vec<f64> = steps.iter().map(|d| (d - center).abs()).collect();
    let sigma = MAD_TO_SIGMA * median(&deviations);
    let z = standard_normal().map_or(2.326, |n| n.inverse_cdf(1.0 - TARGET_FALSE_POSITIVE_RATE));
    let threshold = z * sigma;
    let sign = if higher_is_worse { 1.0 } else { -1.0 };
    let beyond = steps.iter().filter(|d| sign * **d > threshold).count();
    Some(Noise {
        pairs: steps.len(),
        sigma,
        threshold,
        observed_false_positive_rate: beyond as f64 / steps.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_scales_with_the_spread_and_sets_a_one_percent_threshold() {
        let quiet: Vec<f64> = (0..50).map(|i| 100.0 + (i % 5) as f64 * 0.5).collect();
        let loud: Vec<f64> = (0..50).map(|i| 100.0 + (i % 5) as f64 * 5.0).collect();
        let (q, l) = (
            measure(&quiet, true).unwrap(),
            measure(&loud, true).unwrap(),
        );
        assert!(l.sigma > 5.0 * q.sigma, "{q:?} {l:?}");
        assert!((q.false_positive_rate(q.threshold) - 0.01).abs() < 1e-6);
        // A fixed 10 % is far too loose for the quiet series and about right for the loud.
        assert!(q.false_positive_rate(0.10) < 1e-6);
        assert!(measure(&[1.0, 2.0], true).is_none());
    }
}
