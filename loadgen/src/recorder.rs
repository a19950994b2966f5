//! Latency recording on the hot path: one shard per worker thread, merged once a second.
//!
//! Goose runs its users as tokio tasks on the worker threads. Each thread records into its
//! own [`Shard`] (a mutex only the owning thread and the once-a-second collector touch, so
//! it is uncontended), holding HdrHistograms per (request name, stage). Per thread rather
//! than per user keeps memory flat at 10k users: a user owns a few counters, not
//! histograms.
//!
//! Coordinated omission: every outcome carries how its corrected latency is derived.
//! Closed model: [`Correction::ExpectedInterval`], HdrHistogram's `record_correct` with the
//! user's expected iteration interval (think time + the user's mean latency so far), which
//! back-fills the requests a user on schedule would have sent while it was stuck.
//! Open model: [`Correction::IntendedStart`], the latency measured from the instant the
//! arrival schedule called for the request, not from when a user got round to it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use caxton_reports::model::new_histogram;
use hdrhistogram::Histogram;

/// Why a request failed, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// TCP connect or TLS failed (refused, unreachable).
    Connect,
    /// The client timeout elapsed.
    Timeout,
    /// A response with status >= 400.
    Status,
    /// The body could not be read to its end.
    Body,
    /// Anything else the HTTP client reports.
    Request,
    /// A scenario step needed the created agent's id and the reply carried none.
    NoAgentId,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status => "status",
            ErrorKind::Body => "body",
            ErrorKind::Request => "request",
            ErrorKind::NoAgentId => "no_agent_id",
        }
    }

    pub(crate) fn of(e: &reqwest::Error) -> ErrorKind {
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else if e.is_body() || e.is_decode() {
            ErrorKind::Body
        } else {
            ErrorKind::Request
        }
    }
}

/// The k6 checks of the Caxton Monitoring and Observability Guide's script, counted per request,
/// never fatal; then ours: `body has an id`, counted on each agent creation.
pub(crate) const CHECKS: [&str; 3] = ["status is 200", "response time < 1000ms", "body has an id"];

/// The latency under which `response time < 1000ms` passes, in microseconds.
const CHECK_FAST_US: u64 = 1_000_000;

/// How the corrected latency of one request is derived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Correction {
    /// Closed model: `record_correct` with this expected interval (µs); 0 disables.
    ExpectedInterval(u64),
    /// Open model: latency from the intended start to the end of the body (µs).
    IntendedStart(u64),
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// Index into the run's request names.
    pub name: usize,
    pub stage: usize,
    /// From sending to the end of the body, µs.
    pub latency_us: u64,
    pub correction: Correction,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    /// `body has an id`, on requests that create an agent; `None` where it does not apply.
    pub has_id: Option<bool>,
}

impl Outcome {
    /// `http_req_failed`: a transport error or a status >= 400.
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some() || self.status.is_none_or(|s| s >= 400)
    }
}

/// Latency and counters of one (request name, stage) cell over some time.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    pub requests: u64,
    pub failures: u64,
    pub status_codes: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            requests: 0,
            failures: 0,
            status_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }
}

impl Cell {
    fn record(&mut self, o: &Outcome) {
        self.requests += 1;
        if o.failed() {
            self.failures += 1;
        }
        if let Some(status) = o.status {
            *self.status_codes.entry(status).or_default() += 1;
        }
        if let Some(kind) = o.error {
            *self.errors.entry(kind).or_default() += 1;
        }
        record(&mut self.uncorrected, o.latency_us);
        match o.correction {
            Correction::ExpectedInterval(interval) => {
                if self
                    .corrected
                    .record_correct(o.latency_us, interval)
                    .is_err()
                {
                    record(&mut self.corrected, o.latency_us);
                }
            }
            Correction::IntendedStart(us) => record(&mut self.corrected, us),
        }
    }

    /// Adds `other` into `self`. Histograms auto-resize, so adding cannot run out of range.
    pub(crate) fn merge(&mut self, other: &Cell) {
        // Both histograms share the same precision and auto-resize: `add` only fails on a
        // range it cannot grow to, which u64 microseconds never reach.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        self.requests += other.requests;
        self.failures += other.failures;
        for (k, v) in &other.status_codes {
            *self.status_codes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
    }
}

/// Records a value, growing the histogram as needed (`saturating_record` alone would clamp
/// to the current range instead of growing).
fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// What one thread recorded since the collector last took it.
#[derive(Debug, Default)]
pub(crate) struct Interval {
    pub cells: HashMap<(usize, usize), Cell>,
    /// Per check: (passes, fails).
    pub checks: [(u64, u64); CHECKS.len()],
}

impl Interval {
    fn record(&mut self, o: &Outcome) {
        self.cells.entry((o.name, o.stage)).or_default().record(o);
        let results = [
            Some(o.status == Some(200) && o.error.is_none_or(|e| e == ErrorKind::NoAgentId)),
            Some(o.latency_us < CHECK_FAST_US),
            o.has_id,
        ];
        for (slot, passed) in self.checks.iter_mut().zip(results) {
            match passed {
                Some(true) => slot.0 += 1,
                Some(false) => slot.1 += 1,
                None => {}
            }
        }
    }
}

type Shard = Arc<Mutex<Interval>>;

static NEXT_HUB_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard of each live hub (normally one).
    static SHARDS: RefCell<Vec<(u64, Shard)>> = const { RefCell::new(Vec::new()) };
}

/// Where a run's outcomes go: the set of per-thread shards.
pub(crate) struct Hub {
    id: u64,
    shards: Mutex<Vec<Shard>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            id: NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
        }
    }

    /// Records a finished request into this thread's shard.
    pub(crate) fn record(&self, outcome: &Outcome) {
        let shard = SHARDS.with(|cell| {
            let mut shards = cell.borrow_mut();
            if let Some((_, shard)) = shards.iter().find(|(id, _)| *id == self.id) {
                return shard.clone();
            }
            let shard: Shard = Arc::default();
            lock(&self.shards).push(shard.clone());
            shards.push((self.id, shard.clone()));
            shard
        });
        lock(&shard).record(outcome);
    }

    /// Takes everything recorded so far, leaving empty shards behind.
    pub(crate) fn drain(&self) -> Vec<Interval> {
        let shards: Vec<Shard> = lock(&self.shards).clone();
        shards
            .iter()
            .map(|s| std::mem::take(&mut *lock(s)))
            .collect()
    }
}

/// A poisoned lock only means a thread panicked while recording; the counters are still
/// usable, so recording goes on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per-user state for the closed model's coordinated-omission correction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cadence {
    count: u64,
    sum_us: u64,
}

impl Cadence {
    /// The interval at which this user means to send (think time plus its usual
    /// latency), to correct a request that took `latency_us`; then learns from it.
    pub(crate) fn interval_for(&mut self, think_us: u64, latency_us: u64) -> u64 {
        let mean = self.sum_us.checked_div(self.count).unwrap_or(0);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(latency_us);
        let interval = think_us + mean;
        // Before the first sample there is no usual latency: nothing to correct against
        // unless the user thinks between iterations.
        if self.count == 1 && think_us == 0 {
            0
        } else {
            interval
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(latency_us: u64, correction: Correction, status: Option<u16>) -> Outcome {
        Outcome {
            name: 0,
            stage: 0,
            latency_us,
            correction,
            status,
            error: None,
            has_id: None,
        }
    }

    #[test]
    fn threads_record_into_their_own_shards_and_drain_empties_them() {
        let hub = Arc::new(Hub::new());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        hub.record(&outcome(500, Correction::ExpectedInterval(0), Some(200)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let drained = hub.drain();
        assert_eq!(drained.len(), 3);
        let total: u64 = drained.iter().map(|i| i.cells[&(0, 0)].requests).sum();
        assert_eq!(total, 300);
        assert!(hub.drain().iter().all(|i| i.cells.is_empty()));
    }

    #[test]
    fn expected_interval_back_fills_a_stall() {
        let hub = Hub::new();
        for _ in 0..99 {
            hub.record(&outcome(
                1_000,
                Correction::ExpectedInterval(1_000),
                Some(200),
            ));
        }
        hub.record(&outcome(
            1_000_000,
            Correction::ExpectedInterval(1_000),
            Some(200),
        ));
        let mut cell = Cell::default();
        for i in hub.drain() {
            for c in i.cells.values() {
                cell.merge(c);
            }
        }
        assert_eq!(cell.uncorrected.len(), 100);
        assert!(cell.uncorrected.value_at_quantile(0.99) < 2_000);
        // 999 back-filled requests from 999 ms down to 1 ms.
        assert_eq!(cell.corrected.len(), 100 + 999);
        assert!(cell.corrected.value_at_quantile(0.99) > 900_000);
    }

    #[test]
    fn failures_checks_and_errors_are_counted() {
        let hub = Hub::new();
        hub.record(&outcome(
            2_000_000,
            Correction::IntendedStart(2_500_000),
            Some(200),
        ));
        hub.record(&outcome(1_000, Correction::IntendedStart(1_000), Some(500)));
        let mut failed = outcome(10, Correction::IntendedStart(10), None);
        failed.error = Some(ErrorKind::Connect);
        hub.record(&failed);
        let drained = hub.drain();
        let i = &drained[0];
        let cell = &i.cells[&(0, 0)];
        assert_eq!((cell.requests, cell.failures), (3, 2));
        assert_eq!(cell.errors[&ErrorKind::Connect], 1);
        assert_eq!(cell.status_codes[&500], 1);
        assert_eq!(i.checks[0], (1, 2));
        assert_eq!(i.checks[1], (2, 1));
        // Counted only where it applies, like a k6 check in one branch of a script.
        assert_eq!(i.checks[2], (0, 0));
        let mut created = outcome(10, Correction::IntendedStart(10), Some(200));
        created.has_id = Some(false);
        created.error = Some(ErrorKind::NoAgentId);
        hub.record(&created);
        let i = &hub.drain()[0];
        assert_eq!((i.checks[0], i.checks[2]), ((1, 0), (0, 1)));
        assert_eq!(i.cells[&(0, 0)].errors[&ErrorKind::NoAgentId], 1);
        assert_eq!(
            cell.corrected.max(),
            cell.corrected.highest_equivalent(2_500_000)
        );
    }

    #[test]
    fn cadence_learns_the_usual_latency() {
        let mut c = Cadence::default();
        assert_eq!(c.interval_for(0, 100), 0);
        assert_eq!(c.interval_for(0, 300), 100);
        assert_eq!(c.interval_for(0, 50), 200);
        assert_eq!(Cadence::default().interval_for(1_000_000, 5), 1_000_000);
    }
}
