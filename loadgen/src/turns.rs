//! An arm of an interleaved A/B run (`ab --pairing interleaved`) sends only in its own
//! slices, in the order `caxton_reports::paired::owner` defines; the other arm's process
//! keeps to the other slices of the same clock.
//!
//! Closed model: a user whose next iteration falls in the other arm's slice waits for its
//! own (the wait is not latency: the request starts after it). Open model: an arrival due
//! in the other arm's slice is skipped, so each arm gets the plan's whole rate in its turns
//! and nothing queues into the next one.

use std::time::Duration;

use caxton_reports::paired::{Arm, owner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turns {
    pub(crate) slice: Duration,
    pub(crate) arm: Arm,
}

impl Turns {
    fn slice_at(&self, since_start: Duration) -> u64 {
        (since_start.as_nanos() / self.slice.as_nanos().max(1)) as u64
    }

    /// Whether `since_start` (from the start of the load) is in one of this arm's slices.
    pub(crate) fn owns(&self, since_start: Duration) -> bool {
        owner(self.slice_at(since_start)) == self.arm
    }

    /// How long from `since_start` until this arm's turn: zero inside one. The Thue–Morse
    /// order never gives one arm more than two slices in a row, so this is at most two slices.
    pub(crate) fn wait(&self, since_start: Duration) -> Duration {
        let mut k = self.slice_at(since_start);
        while owner(k) != self.arm {
            k += 1;
        }
        (self.slice * k as u32).saturating_sub(since_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn each_arm_waits_for_its_own_slices_and_only_for_them() {
        // Slices of 2 s: A B B A B A A B.
        let a = Turns {
            slice: s(2.0),
            arm: Arm::Baseline,
        };
        let b = Turns {
            slice: s(2.0),
            arm: Arm::Candidate,
        };
        assert!(a.owns(s(0.5)) && !b.owns(s(0.5)));
        assert_eq!(a.wait(s(0.5)), Duration::ZERO);
        assert_eq!(b.wait(s(0.5)), s(1.5));
        // A's next turn after slice 0 is slice 3, at 6 s.
        assert_eq!(a.wait(s(2.5)), s(3.5));
        assert!((0..4000).all(|ms| {
            let t = Duration::from_millis(ms * 7);
            a.owns(t) != b.owns(t) && a.wait(t) <= s(4.0) && a.owns(t + a.wait(t))
        }));
    }
}
