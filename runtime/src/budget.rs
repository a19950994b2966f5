//! The runtime-wide byte budget of messages in flight (queued in a mailbox or executing).
//! A message shared by several receivers holds one [`Charge`], so a fan-out counts once,
//! as it is stored once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
    /// Mirrors `used` for /metrics.
    gauge: IntGauge,
}

/// Bytes held against a [`ByteBudget`] until this drops.
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            gauge,
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` when they fit under the limit. `force` takes them anyway: a FAILURE the
    /// runtime sends must not be refused for lack of room, or its sender never learns.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize, force: bool) -> Option<Charge> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.limit && !force {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        self.gauge.add(i64::try_from(bytes).unwrap_or(i64::MAX));
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.budget
            .gauge
            .sub(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_under_the_limit_and_return_when_dropped() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let b = ByteBudget::new(100, gauge.clone());
        let a = b.charge(60, false).unwrap();
        assert!(b.charge(50, false).is_none());
        let forced = b.charge(50, true).unwrap();
        assert_eq!((b.used(), gauge.get()), (110, 110));
        drop(a);
        drop(forced);
        assert_eq!((b.used(), gauge.get()), (0, 0));
        assert!(b.charge(100, false).is_some());
    }
}
