//! Profiler counters the runtime exports as metrics.

use serde::Serialize;
use tokio::sync::watch;

/// Snapshot of what the profiler did since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProfilerStats {
    /// CPU profiles Pyroscope accepted (2xx).
    pub profiles_pushed: u64,
    /// CPU profiles given up on: Pyroscope unreachable or refusing after the bounded retries,
    /// or the push queue full because earlier pushes were still retrying.
    pub profiles_dropped: u64,
    /// CPU captures completed (on-demand through the router and continuous).
    pub captures: u64,
    /// Samples recorded in those captures.
    pub samples_taken: u64,
    /// Samples the process's CPU time called for: CPU seconds consumed during the captures
    /// times the frequency (SIGPROF is driven by process CPU time, so this already counts
    /// every busy thread).
    pub samples_expected: u64,
    /// `samples_expected - samples_taken` per capture. pprof-rs skips a SIGPROF without a trace
    /// when its profiler lock is busy or the interrupted PC is in a blocklisted library, and
    /// the kernel merges SIGPROFs that arrive while one is pending; none of that is counted by
    /// pprof-rs, so the loss is measured against CPU time instead.
    pub samples_lost: u64,
    /// Samples of threads that are not the target's (a load generator embedding the
    /// runtime), left out of every profile.
    pub samples_excluded: u64,
}

impl ProfilerStats {
    /// `samples_taken / samples_expected`, `None` before any CPU time was sampled.
    pub fn capture_ratio(&self) -> Option<f64> {
        (self.samples_expected > 0)
            .then(|| self.samples_taken as f64 / self.samples_expected as f64)
    }
}

/// Shared, observable counters: a watch channel so callers (tests, the runtime) can await a
/// change instead of polling.
#[derive(Debug)]
pub(crate) struct Counters {
    tx: watch::Sender<ProfilerStats>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(ProfilerStats::default()),
        }
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ProfilerStats {
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ProfilerStats> {
        self.tx.subscribe()
    }

    pub(crate) fn record_capture(&self, samples: crate::capture::SampleCount) {
        self.tx.send_modify(|s| {
            s.captures += 1;
            s.samples_taken += samples.taken;
            s.samples_expected += samples.expected;
            s.samples_lost += samples.lost();
            s.samples_excluded += samples.excluded;
        });
    }

    pub(crate) fn record_pushed(&self) {
        self.tx.send_modify(|s| s.profiles_pushed += 1);
    }

    pub(crate) fn record_dropped(&self) {
        self.tx.send_modify(|s| s.profiles_dropped += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_samples_accumulate_per_capture() {
        let c = Counters::default();
        assert_eq!(c.snapshot().capture_ratio(), None);
        c.record_capture(crate::capture::SampleCount {
            taken: 90,
            expected: 100,
            excluded: 7,
            reported_lost: 0,
            lowest_hz: None,
        });
        // More samples than CPU time predicts (timer jitter) must not hide another capture's loss.
        c.record_capture(crate::capture::SampleCount {
            taken: 12,
            expected: 10,
            excluded: 0,
            reported_lost: 0,
            lowest_hz: None,
        });
        let s = c.snapshot();
        assert_eq!(
            (
                s.captures,
                s.samples_taken,
                s.samples_expected,
                s.samples_lost,
                s.samples_excluded
            ),
            (2, 102, 110, 10, 7)
        );
        assert!((s.capture_ratio().unwrap() - 102.0 / 110.0).abs() < 1e-9);
    }
}
