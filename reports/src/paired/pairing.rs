//! How the two arms of an A/B run share the machine: both at once, each with half the load
//! (`concurrent`, duet benchmarking), or in turns, each with the whole load in its own
//! slices (`interleaved`). Which arm owns which slice is defined here, once, for the load
//! generator that keeps to it and for the verdict that pairs by it.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pairing {
    /// Both arms at once, each with half of every stage's users or rate.
    #[default]
    Concurrent,
    /// One arm at a time, each with the whole load, in the slice order of [`owner`].
    Interleaved,
}

impl Pairing {
    pub const ALL: [Pairing; 2] = [Pairing::Concurrent, Pairing::Interleaved];

    pub fn as_str(self) -> &'static str {
        match self {
            Pairing::Concurrent => "concurrent",
            Pairing::Interleaved => "interleaved",
        }
    }
}

impl fmt::Display for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pairing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pairing::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a pairing: concurrent or interleaved"))
    }
}

/// One side of an A/B run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Baseline,
    Candidate,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Candidate => "candidate",
        }
    }
}

impl FromStr for Arm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Arm::Baseline, Arm::Candidate]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an arm: baseline or candidate"))
    }
}

/// The arm that owns slice `k` (counted from the start of the load) of an interleaved run.
///
/// The Thue–Morse order, A B B A  B A A B  B A A B  A B B A …: every pair of slices
/// (2j, 2j+1) holds one of each arm, and over any aligned block of 2^m slices the two arms'
/// slice positions have equal sums of powers below m, so a drift of the machine that is
/// linear or quadratic in time falls on both arms alike instead of on the arm that always
/// goes second.
pub fn owner(k: u64) -> Arm {
    if k.count_ones().is_multiple_of(2) {
        Arm::Baseline
    } else {
        Arm::Candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_slices_has_one_of_each_arm() {
        let order: String = (0..16)
            .map(|k| match owner(k) {
                Arm::Baseline => 'A',
                Arm::Candidate => 'B',
            })
            .collect();
        assert_eq!(order, "ABBABAABBAABABBA");
        assert!((0..1000).all(|j| owner(2 * j) != owner(2 * j + 1)));
    }

    #[test]
    fn a_quadratic_drift_falls_on_both_arms_alike_over_eight_slices() {
        let drift = |k: u64| 1.0 + 0.01 * k as f64 + 0.002 * (k * k) as f64;
        let sum = |arm| -> f64 { (0..8).filter(|&k| owner(k) == arm).map(drift).sum() };
        assert!((sum(Arm::Baseline) - sum(Arm::Candidate)).abs() < 1e-9);
        // Alternating A B A B would put the whole linear drift on B.
        let alternating: f64 = (0..8)
            .map(|k| if k % 2 == 1 { drift(k) } else { -drift(k) })
            .sum();
        assert!(alternating > 0.05);
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for p in Pairing::ALL {
            assert_eq!(p.as_str().parse::<Pairing>(), Ok(p));
        }
        assert!(
            "duet"
                .parse::<Pairing>()
                .unwrap_err()
                .contains("concurrent or interleaved")
        );
        assert_eq!("candidate".parse::<Arm>(), Ok(Arm::Candidate));
    }
}
