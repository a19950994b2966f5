//! Rate-limited warnings: a storm of one kind of event writes one line per interval, and
//! that line says how many were left out. Without it, a message storm wrote hundreds of MB
//! of identical `undeliverable FAILURE dropped` lines in seconds.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One line per this, per call site.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// One call site's limiter; keep it in a `static`.
pub(crate) struct Throttle {
    /// Milliseconds since [`epoch`] before which no further line is written.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Self {
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this occurrence is to be logged, `n` being how many were suppressed
    /// since the last logged one; `None` when it is suppressed (and counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + interval, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_and_the_next_line_counts_the_rest() {
        let t = Throttle::new();
        assert_eq!(t.admit(), Some(0));
        for _ in 0..999 {
            assert_eq!(t.admit(), None);
        }
        // Pretend the interval passed.
        t.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(t.admit(), Some(999));
    }
}
