//! Sample accounting, shared by the capture (which sums segments) and the samplers that count
//! them: a leaf, so that neither sampler needs the capture's module to say what it took.

/// Sample accounting of one capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleCount {
    /// Samples of the target's threads in the profile.
    pub taken: u64,
    /// CPU seconds the target's threads used during the capture times the frequency.
    pub expected: u64,
    /// Samples of other threads of the process (a load generator embedding the target),
    /// left out of the profile; see [`crate::threads::set_target_threads`].
    pub excluded: u64,
    /// Samples the perf_event sampler's kernel reported dropped (`PERF_RECORD_LOST`): lost
    /// even where the CPU clocks fall short of them.
    pub reported_lost: u64,
    /// The lowest rate a thread was sampled at, Hz, where the perf_event sampler lowered it
    /// to keep within its budget ([`crate::rate`]); `None` when every sample was taken at
    /// the full rate.
    pub lowest_hz: Option<u32>,
}

impl SampleCount {
    /// Samples the target's CPU time called for but pprof-rs did not record.
    pub fn lost(&self) -> u64 {
        self.expected
            .saturating_sub(self.taken)
            .max(self.reported_lost)
    }

    /// `taken / expected`; `None` when the process was idle.
    pub fn capture_ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.taken as f64 / self.expected as f64)
    }

    pub(crate) fn add(&mut self, other: SampleCount) {
        self.taken += other.taken;
        self.expected += other.expected;
        self.excluded += other.excluded;
        self.reported_lost += other.reported_lost;
        self.lowest_hz = match (self.lowest_hz, other.lowest_hz) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}
