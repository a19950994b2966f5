//! The perf_event sampler's rate, which follows the target's CPU use: a near-idle target is
//! sampled at the full `[profiling] sample_rate`, so a light load still fills a profile, and a
//! busy one at a rate lowered to keep within `sample_budget` samples a second, so the
//! sampler's cost stays bounded however many cores the target keeps busy.
//!
//! The cost of a sample is paid per sample (a timer interrupt and a callchain walk; on a VM
//! also an exit to the hypervisor), so it follows samples per second of wall time, which is
//! what the budget bounds. A thread's period is always a whole number of full-rate periods,
//! its *stride*: a sample taken at stride `k` stands for `k` full-rate samples, and the
//! profile weighs it so, which keeps the flamegraph proportional to CPU time while the rate
//! changes within a capture.

use std::fmt;
use std::time::Duration;

/// `[profiling] sample_budget` when unset: samples a second, over all the target's threads.
pub const DEFAULT_SAMPLE_BUDGET: u32 = 50;

/// The rate the sampler was asked for: the full rate and the budget that may lower it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Hz of each thread's CPU time while the budget allows; the unit of the profile's counts.
    pub full_hz: u32,
    /// Samples a second of wall time, over all the target's threads, that the rate is lowered
    /// to keep within; 0 never lowers it.
    pub budget: u32,
}

impl Rate {
    /// `hz` whatever the target's CPU use (the signal sampler's only kind).
    pub fn fixed(full_hz: u32) -> Self {
        Self { full_hz, budget: 0 }
    }

    /// The full rate's period, ns of a thread's CPU clock.
    pub(crate) fn period_ns(self) -> u64 {
        1_000_000_000 / u64::from(self.full_hz.max(1))
    }

    /// The stride that keeps a target using `cores` within the budget: the smallest whole
    /// number of full-rate periods, down to one sample a second of CPU time.
    pub(crate) fn stride_for(self, cores: f64) -> u64 {
        if self.budget == 0 || !cores.is_finite() || cores <= 0.0 {
            return 1;
        }
        let wanted = cores * f64::from(self.full_hz) / f64::from(self.budget);
        (wanted.ceil() as u64).clamp(1, u64::from(self.full_hz.max(1)))
    }

    /// The rate of a thread at `stride`, Hz (rounded down).
    pub(crate) fn hz_at(self, stride: u64) -> u32 {
        (u64::from(self.full_hz) / stride.max(1)) as u32
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.budget {
            0 => write!(f, "{} Hz", self.full_hz),
            b => write!(f, "{} Hz within {b} samples/s", self.full_hz),
        }
    }
}

/// Smoothing of the CPU use the stride follows, per observation: a burst of load lowers the
/// rate within a few polls, and one quiet poll does not raise it.
const SMOOTHING: f64 = 0.5;

/// A change of stride smaller than this factor is not made: each change costs an `ioctl`
/// per thread and restarts its clock's period.
const HYSTERESIS: f64 = 1.25;

/// Follows the target's CPU use and says when the stride should change.
#[derive(Debug)]
pub(crate) struct Governor {
    rate: Rate,
    cores: Option<f64>,
    stride: u64,
}

impl Governor {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            cores: None,
            stride: 1,
        }
    }

    /// Takes the CPU time the target's threads' clocks counted over `wall`; `Some(stride)`
    /// when the stride should change to it.
    pub(crate) fn observe(&mut self, cpu: Duration, wall: Duration) -> Option<u64> {
        if self.rate.budget == 0 || wall.is_zero() {
            return None;
        }
        let now = cpu.as_secs_f64() / wall.as_secs_f64();
        let cores = match self.cores {
            None => now,
            Some(before) => before + SMOOTHING * (now - before),
        };
        self.cores = Some(cores);
        let wanted = self.rate.stride_for(cores);
        let factor = wanted as f64 / self.stride as f64;
        if factor >= HYSTERESIS || factor <= 1.0 / HYSTERESIS {
            self.stride = wanted;
            Some(wanted)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_target_gets_the_full_rate_and_a_busy_one_the_budget() {
        let rate = Rate {
            full_hz: 1000,
            budget: 50,
        };
        assert_eq!(rate.stride_for(0.0), 1);
        assert_eq!(rate.stride_for(0.02), 1, "20 samples/s is within 50");
        // One busy core at 1000 Hz would take 1000 samples/s: a twentieth keeps 50.
        assert_eq!(rate.stride_for(1.0), 20);
        assert_eq!(rate.hz_at(20), 50);
        // Two cores: 25 Hz each, still 50 samples/s in all.
        assert_eq!(rate.stride_for(2.0), 40);
        // Never below one sample per CPU-second.
        assert_eq!(rate.stride_for(1e9), 1000);
        assert_eq!(Rate::fixed(1000).stride_for(2.0), 1);
    }

    #[test]
    fn the_governor_lowers_the_rate_under_load_and_raises_it_when_idle() {
        let mut g = Governor::new(Rate {
            full_hz: 1000,
            budget: 50,
        });
        let poll = Duration::from_millis(50);
        assert_eq!(g.observe(Duration::ZERO, poll), None, "idle: stays at 1");
        // A busy core: the smoothed use reaches it within a few polls.
        let mut stride = 1;
        for _ in 0..8 {
            if let Some(s) = g.observe(poll, poll) {
                stride = s;
            }
        }
        assert!((16..=20).contains(&stride), "stride {stride}");
        // Small wobbles change nothing.
        assert_eq!(g.observe(poll.mul_f64(0.95), poll), None);
        // Idle again: back to the full rate.
        for _ in 0..12 {
            if let Some(s) = g.observe(Duration::ZERO, poll) {
                stride = s;
            }
        }
        assert_eq!(stride, 1);
    }
}
