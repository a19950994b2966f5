//! The open model (k6 `ramping-arrival-rate`) inside goose: a scheduler task issues one
//! token per iteration at the exact instant the rate plan calls for, and goose users
//! (a fixed pool, k6's `preAllocatedVUs`) wait on the tokens.
//!
//! A token that finds no free user waits in a bounded backlog, as wrk2 does, and its
//! latency is still measured from its intended start: however small the pool, the
//! corrected percentiles keep what a user arriving on schedule would have seen. Only a
//! token beyond the backlog's bound (or every busy-pool token with
//! [`Backlog::Drop`], k6's semantics) is dropped, and dropped tokens make the run invalid.
//!
//! Token instants are computed from the plan, not from the previous token, so timer jitter
//! never accumulates into a rate error: over any stage the count is exact to one iteration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, mpsc};

use crate::collector::LiveCounters;
use crate::plan::Plan;

/// What happens to an iteration that finds every user busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Queue up to this many iterations, each measured from its intended start (wrk2).
    Queue(u64),
    /// Drop it at once and count it (k6's `dropped_iterations`).
    Drop,
}

impl Backlog {
    /// The default bound: ten seconds of the plan's peak rate, at least 1000 iterations, so a
    /// stall of a few seconds is absorbed and measured but a pool that can never keep up is
    /// found out within seconds.
    pub fn default_for(plan: &Plan) -> Backlog {
        Backlog::Queue(((plan.peak() * 10.0).ceil() as u64).max(1000))
    }

    fn bound(self) -> u64 {
        match self {
            Backlog::Queue(n) => n,
            Backlog::Drop => 0,
        }
    }
}

/// The users' side of the schedule.
pub(crate) struct Arrivals {
    rx: Mutex<mpsc::UnboundedReceiver<Instant>>,
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<Instant>>>,
    backlog: Backlog,
    /// Users waiting for a token.
    waiting: AtomicU64,
    /// Tokens sent and not yet taken.
    pending: AtomicU64,
    /// Tokens users took (iterations started).
    taken: AtomicU64,
    /// Set once the schedule has ended: a token still in the channel is not started.
    closed: AtomicBool,
    /// Signalled whenever a token is taken (the end-of-schedule drain waits on it).
    took: Notify,
}

impl Arrivals {
    pub(crate) fn new(backlog: Backlog) -> Arrivals {
        let (tx, rx) = mpsc::unbounded_channel();
        Arrivals {
            rx: Mutex::new(rx),
            tx: std::sync::Mutex::new(Some(tx)),
            backlog,
            waiting: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            took: Notify::new(),
        }
    }

    /// Waits for the next iteration; returns its intended start, or `None` once the
    /// schedule is over.
    pub(crate) async fn next(&self) -> Option<Instant> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let token = self.rx.lock().await.recv().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        token?;
        self.pending.fetch_sub(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            // Counted as dropped by `close`; starting it now would run past the plan.
            return None;
        }
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.took.notify_waiters();
        token
    }

    /// Iterations started so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Tokens issued and not yet started.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Hands out an iteration if a user is free or the backlog has room; false when it has
    /// to be dropped.
    fn offer(&self, at: Instant) -> bool {
        let waiting = self.waiting.load(Ordering::SeqCst);
        let pending = self.pending.load(Ordering::SeqCst);
        let free = waiting.saturating_sub(pending);
        let queued = pending.saturating_sub(waiting);
        if free == 0 && queued >= self.backlog.bound() {
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

    /// Waits up to `grace` for the backlog to be started.
    async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let took = self.took.notified();
            if self.pending() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, took).await.is_err() {
                return;
            }
        }
    }

    /// The run stops early (a signal, an abortOnFail threshold): users waiting for an
    /// arrival get `None` at once instead of one more iteration each.
    pub(crate) fn stop(&self) {
        self.close();
    }

    /// Ends the schedule: waiting users get `None`. Returns the tokens never started.
    fn close(&self) -> u64 {
        self.closed.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.pending()
    }
}

/// How the schedule went, for the run's validity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScheduleOutcome {
    /// Iterations the plan called for.
    pub scheduled: u64,
    /// Of those, started by the time the last one was due.
    pub started_on_schedule: u64,
    /// Dropped: beyond the backlog's bound, or still queued once the drain grace ran out.
    pub dropped: u64,
}

impl ScheduleOutcome {
    /// Share of the scheduled iterations started by the end of the schedule.
    pub(crate) fn held_share(&self) -> f64 {
        if self.scheduled == 0 {
            1.0
        } else {
            self.started_on_schedule as f64 / self.scheduled as f64
        }
    }
}

/// Offsets from the start of the plan at which iterations are due, in order.
///
/// Within a stage the rate moves linearly from `a` to `b` over `D`, so the number of
/// arrivals after `τ` is `a·τ + (b−a)·τ²/(2D)`; the n-th arrival solves that for `τ`.
pub(crate) struct Schedule<'a> {
    plan: &'a Plan,
    stage: usize,
    stage_start: Duration,
    from: f64,
    /// Arrivals already issued, counted from the start of the current stage (can be
    /// fractional carry-over from the previous stage, negative meaning "owed").
    n: f64,
}

impl<'a> Schedule<'a> {
    pub(crate) fn new(plan: &'a Plan) -> Schedule<'a> {
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

/// Issues the plan's arrivals from `epoch`, counting drops; once the last is due, gives the
/// backlog up to `grace` to start, counts what did not as dropped, and closes the schedule.
pub(crate) async fn run_schedule(
    plan: Plan,
    arrivals: Arc<Arrivals>,
    counters: Arc<LiveCounters>,
    epoch: Instant,
    grace: Duration,
) -> ScheduleOutcome {
    let mut schedule = Schedule::new(&plan).peekable();
    let mut scheduled = 0;
    while let Some(offset) = schedule.next() {
        let due = epoch + offset;
        tokio::time::sleep_until(due.into()).await;
        // Release everything due by now in one go (timers fire with ~1 ms granularity).
        let mut at = due;
        loop {
            scheduled += 1;
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
    let started_on_schedule = arrivals.taken();
    arrivals.drain(grace).await;
    let unstarted = arrivals.close();
    counters.dropped.fetch_add(unstarted, Ordering::Relaxed);
    ScheduleOutcome {
        scheduled,
        started_on_schedule,
        dropped: counters.dropped(),
    }
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
        let arrivals = Arc::new(Arrivals::new(Backlog::Drop));
        let counters = Arc::new(LiveCounters::default());
        // No user ever waits: with k6's semantics every arrival is dropped.
        let outcome = run_schedule(
            p,
            arrivals.clone(),
            counters.clone(),
            Instant::now(),
            Duration::ZERO,
        )
        .await;
        let expected = Schedule::new(&plan("200ms:50,200ms:50")).count() as u64;
        assert_eq!(counters.dropped(), expected);
        assert_eq!(outcome.scheduled, expected);
        assert_eq!(outcome.started_on_schedule, 0);
        assert_eq!(arrivals.next().await, None);
    }

    #[tokio::test]
    async fn a_busy_pool_queues_up_to_the_bound_and_keeps_the_intended_starts() {
        let p = plan("500ms:200");
        let expected = Schedule::new(&p).count() as u64;
        let first: Vec<_> = Schedule::new(&p).take(3).collect();
        let arrivals = Arc::new(Arrivals::new(Backlog::Queue(3)));
        let counters = Arc::new(LiveCounters::default());
        let epoch = Instant::now();
        // No user takes anything during the schedule: three wait, the rest are dropped.
        let schedule = tokio::spawn(run_schedule(
            p,
            arrivals.clone(),
            counters.clone(),
            epoch,
            Duration::from_millis(50),
        ));
        while arrivals.pending() < 3 {
            tokio::task::yield_now().await;
        }
        // A user arriving late still gets the queued instants, oldest first.
        let mut starts = Vec::new();
        while starts.len() < 3 {
            starts.push(arrivals.next().await.unwrap());
        }
        let outcome = schedule.await.unwrap();
        // The three that waited are the first three the plan called for, at their instants.
        let offsets: Vec<_> = starts.iter().map(|s| *s - epoch).collect();
        assert_eq!(offsets, first);
        assert_eq!(outcome.scheduled, expected);
        assert_eq!(outcome.dropped + 3, expected, "{outcome:?}");
    }

    #[tokio::test]
    async fn a_backlog_left_at_the_end_is_counted_as_dropped() {
        let arrivals = Arc::new(Arrivals::new(Backlog::Queue(1000)));
        let counters = Arc::new(LiveCounters::default());
        let outcome = run_schedule(
            plan("100ms:100"),
            arrivals.clone(),
            counters.clone(),
            Instant::now(),
            Duration::from_millis(20),
        )
        .await;
        assert!(outcome.scheduled > 0);
        assert_eq!(outcome.dropped, outcome.scheduled);
        assert_eq!(arrivals.next().await, None);
    }
}
