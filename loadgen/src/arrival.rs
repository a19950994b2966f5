//! The open model (k6 `ramping-arrival-rate`) inside goose: a scheduler task issues one
//! token per iteration at the exact instant the rate plan calls for, and goose users
//! (a fixed pool, k6's `preAllocatedVUs`) wait on the tokens. A token that finds no free
//! user is not queued but counted as a dropped iteration, as k6 does.
//!
//! Each token carries its intended start, so latency can be measured from when the request
//! should have started (coordinated-omission correction for free). Token instants are
//! computed from the plan, not from the previous token, so timer jitter never
//! accumulates into a rate error: over any stage the count is exact to one iteration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};

use crate::collector::LiveCounters;
use crate::plan::Plan;

/// The users' side of the schedule.
pub struct Arrivals {
    rx: Mutex<mpsc::UnboundedReceiver<Instant>>,
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<Instant>>>,
    /// Users waiting for a token.
    waiting: AtomicU64,
    /// Tokens sent and not yet taken.
    pending: AtomicU64,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals::new()
    }
}

impl Arrivals {
    pub fn new() -> Arrivals {
        let (tx, rx) = mpsc::unbounded_channel();
        Arrivals {
            rx: Mutex::new(rx),
            tx: std::sync::Mutex::new(Some(tx)),
            waiting: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// Waits for the next iteration; returns its intended start, or `None` once the
    /// schedule is over.
    pub async fn next(&self) -> Option<Instant> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let token = self.rx.lock().await.recv().await;
        if token.is_some() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        token
    }

    /// Hands out an iteration if a user is free; false when it has to be dropped.
    fn offer(&self, at: Instant) -> bool {
        let free = self
            .waiting
            .load(Ordering::SeqCst)
            .saturating_sub(self.pending.load(Ordering::SeqCst));
        if free == 0 {
            return false;
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => {
                self.pending.fetch_add(1, Ordering::SeqCst);
                tx.send(at).is_ok()
            }
            None => false,
        }
    }

    /// Ends the schedule: waiting users get `None`.
    fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Offsets from the start of the plan at which iterations are due, in order.
///
/// Within a stage the rate moves linearly from `a` to `b` over `D`, so the number of
/// arrivals after `τ` is `a·τ + (b−a)·τ²/(2D)`; the n-th arrival solves that for `τ`.
pub struct Schedule<'a> {
    plan: &'a Plan,
    stage: usize,
    stage_start: Duration,
    from: f64,
    /// Arrivals already issued, counted from the start of the current stage (can be
    /// fractional carry-over from the previous stage, negative meaning "owed").
    n: f64,
}

impl<'a> Schedule<'a> {
    pub fn new(plan: &'a Plan) -> Schedule<'a> {
        Schedule {
            plan,
            stage: 0,
            stage_start: Duration::ZERO,
            from: plan.start_target,
            n: 0.0,
        }
    }
}

impl Iterator for Schedule<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let stage = self.plan.stages.get(self.stage)?;
            let d = stage.duration.as_secs_f64();
            let (a, b) = (self.from, stage.target);
            let total = (a + b) / 2.0 * d;
            let want = self.n + 1.0;
            if want <= total + 1e-9 && d > 0.0 {
                let slope = (b - a) / d;
                let tau = if slope.abs() < 1e-12 {
                    want / a
                } else {
                    (-a + (a * a + 2.0 * slope * want).max(0.0).sqrt()) / slope
                };
                self.n = want;
                return Some(self.stage_start + Duration::from_secs_f64(tau.clamp(0.0, d)));
            }
            // Carry the unfinished fraction of an arrival into the next stage.
            self.n -= total;
            self.stage_start += stage.duration;
            self.from = b;
            self.stage += 1;
        }
    }
}

/// Issues the plan's arrivals from `epoch`, counting drops; closes the schedule at the end.
pub async fn run_schedule(
    plan: Plan,
    arrivals: Arc<Arrivals>,
    counters: Arc<LiveCounters>,
    epoch: Instant,
) {
    let mut schedule = Schedule::new(&plan).peekable();
    while let Some(offset) = schedule.next() {
        let due = epoch + offset;
        tokio::time::sleep_until(due.into()).await;
        // Release everything due by now in one go (timers fire with ~1 ms granularity).
        let mut at = due;
        loop {
            if !arrivals.offer(at) {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            match schedule.peek() {
                Some(next) if epoch + *next <= Instant::now() => {
                    at = epoch + *next;
                    schedule.next();
                }
                _ => break,
            }
        }
    }
    tokio::time::sleep_until((epoch + plan.total_duration()).into()).await;
    arrivals.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_stages;
    use caxton_reports::model::LoadModel;

    fn plan(stages: &str) -> Plan {
        Plan::from_stages(
            "arrival-rate",
            LoadModel::Open,
            0.0,
            parse_stages(stages).unwrap(),
            1.0,
        )
        .unwrap()
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let p = Plan::from_stages(
            "arrival-rate",
            LoadModel::Open,
            10.0,
            vec![(Duration::from_secs(2), 10.0)],
            1.0,
        )
        .unwrap();
        let times: Vec<_> = Schedule::new(&p).collect();
        assert_eq!(times.len(), 20);
        assert_eq!(times[0], Duration::from_millis(100));
        assert_eq!(times[19], Duration::from_secs(2));
    }

    #[test]
    fn ramp_then_hold_counts_match_k6() {
        // Ramp 0 -> 200/s over 30 s (3000 iterations), hold 200/s for 60 s (12000).
        let p = plan("30s:200,1m:200");
        let times: Vec<_> = Schedule::new(&p).collect();
        assert_eq!(times.len(), 15_000);
        let in_ramp = times
            .iter()
            .filter(|t| **t <= Duration::from_secs(30))
            .count();
        assert_eq!(in_ramp, 3_000);
        // Quadratic ramp: a quarter of the ramp's arrivals in its first half.
        let first_half = times
            .iter()
            .filter(|t| **t <= Duration::from_secs(15))
            .count();
        assert_eq!(first_half, 750);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn drops_when_no_user_is_free_and_closes_at_the_end() {
        let p = plan("200ms:50,200ms:50");
        let arrivals = Arc::new(Arrivals::new());
        let counters = Arc::new(LiveCounters::default());
        // No user ever waits: every arrival is dropped.
        run_schedule(p, arrivals.clone(), counters.clone(), Instant::now()).await;
        let expected = Schedule::new(&plan("200ms:50,200ms:50")).count() as u64;
        assert_eq!(counters.dropped(), expected);
        assert_eq!(arrivals.next().await, None);
    }
}
