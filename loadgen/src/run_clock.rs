//! The run clock: the instant a run's load starts (goose's first user in the closed model, the
//! schedule's epoch in the open one). Set once; the ticker and the flamegraph capture wait for
//! it on a signal instead of polling.

use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct RunClock {
    at: OnceLock<Instant>,
    started: Notify,
}

impl RunClock {
    pub(crate) fn new() -> RunClock {
        RunClock::default()
    }

    /// Starts the clock at `at` unless it has started; returns when it started.
    pub(crate) fn start(&self, at: Instant) -> Instant {
        let mut first = false;
        let started = *self.at.get_or_init(|| {
            first = true;
            at
        });
        if first {
            self.started.notify_waiters();
        }
        started
    }

    /// Starts the clock now unless it has started (cheap once started: every iteration calls it).
    pub(crate) fn start_now(&self) -> Instant {
        match self.at.get() {
            Some(at) => *at,
            None => self.start(Instant::now()),
        }
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        self.at.get().copied()
    }

    /// When the clock started, waiting for it if need be.
    pub(crate) async fn wait(&self) -> Instant {
        loop {
            // Register before looking, so a start between the look and the await still wakes.
            let notified = self.started.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.get() {
                return at;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_when_the_clock_starts_and_it_starts_once() {
        let clock = Arc::new(RunClock::new());
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.wait().await }
        });
        tokio::task::yield_now().await;
        let first = clock.start(Instant::now());
        let later = clock.start(first + Duration::from_secs(1));
        assert_eq!(later, first);
        let woke = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .unwrap();
        assert_eq!(woke, first);
        assert_eq!(clock.wait().await, first);
    }
}
