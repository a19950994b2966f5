//! The once-a-second merge: shards -> run totals per (request name, stage) + one summary
//! sample per second.
//!
//! Memory stays bounded however long the run: histograms exist per (request name, stage)
//! plus one cumulative overall pair; a second keeps only its [`SecondSample`] (a few
//! counters), not its histogram.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caxton_reports::model::{ReportError, SecondSample, Slice, encode_histogram};

use crate::plan::Plan;
use crate::recorder::{CHECKS, Cell, ErrorKind, Hub};

/// Counters the users and the arrival scheduler keep up to date.
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    /// Users currently running.
    pub users: AtomicU64,
    /// Open model: arrivals that found no free user.
    pub dropped: AtomicU64,
}

impl LiveCounters {
    pub(crate) fn users(&self) -> u64 {
        self.users.load(Ordering::Relaxed)
    }
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the progress line and the Prometheus push show after each second.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub elapsed: Duration,
    pub stage: String,
    pub users: u64,
    /// Requests completed in the last second.
    pub rps: f64,
    /// Corrected p95 of the last second, ms.
    pub p95_ms: f64,
    pub requests: u64,
    pub failures: u64,
    pub dropped: u64,
}

/// Run totals.
pub(crate) struct Collector {
    hub: Arc<Hub>,
    plan: Plan,
    counters: Arc<LiveCounters>,
    /// Cumulative per (request name, stage).
    pub cells: HashMap<(usize, usize), Cell>,
    /// Cumulative over the whole run (kept separately so a live push needs no merge).
    pub overall: Cell,
    /// Per check: (passes, fails).
    pub checks: [(u64, u64); CHECKS.len()],
    pub timeline: Vec<SecondSample>,
    pub max_users: u64,
    /// Finished slices (`--slice-seconds`), each with its own histogram.
    pub slices: Vec<Slice>,
    second: Cell,
    /// The slice being filled: its length in seconds and what it holds so far.
    slicing: Option<(u64, Cell)>,
}

impl Collector {
    pub(crate) fn new(hub: Arc<Hub>, plan: Plan, counters: Arc<LiveCounters>) -> Collector {
        Collector {
            hub,
            plan,
            counters,
            cells: HashMap::new(),
            overall: Cell::default(),
            checks: Default::default(),
            timeline: Vec::new(),
            max_users: 0,
            slices: Vec::new(),
            second: Cell::default(),
            slicing: None,
        }
    }

    /// Keeps a histogram per `seconds`-long slice of the run as well (memory: one
    /// serialized histogram per slice).
    pub(crate) fn with_slices(mut self, seconds: u64) -> Collector {
        self.slicing = Some((seconds.max(1), Cell::default()));
        self
    }

    /// Merges what was recorded since the last tick as second `t` (ending at `elapsed`).
    pub(crate) fn tick(&mut self, t: u64, elapsed: Duration) -> Tick {
        self.second.corrected.reset();
        self.second.uncorrected.reset();
        self.second.requests = 0;
        self.second.failures = 0;
        self.second.status_codes.clear();
        self.second.errors.clear();
        for interval in self.hub.drain() {
            for (key, cell) in &interval.cells {
                self.cells.entry(*key).or_default().merge(cell);
                self.second.merge(cell);
            }
            for (total, add) in self.checks.iter_mut().zip(interval.checks) {
                total.0 += add.0;
                total.1 += add.1;
            }
        }
        self.overall.merge(&self.second);
        self.fill_slice(t);
        let users = self.counters.users();
        self.max_users = self.max_users.max(users);
        let stage = self.plan.stages[self
            .plan
            .stage_at(elapsed.saturating_sub(Duration::from_nanos(1)))]
        .name
        .clone();
        let p95 = |h: &hdrhistogram::Histogram<u64>| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(0.95) as f64 / 1000.0
            }
        };
        let dropped = self.counters.dropped();
        let previous_dropped: u64 = self.timeline.iter().map(|s| s.dropped_iterations).sum();
        let sample = SecondSample {
            t,
            requests: self.second.requests,
            failures: self.second.failures,
            p95_ms: p95(&self.second.corrected),
            p95_uncorrected_ms: p95(&self.second.uncorrected),
            users,
            dropped_iterations: dropped.saturating_sub(previous_dropped),
            stage: stage.clone(),
        };
        // A partial last second is scaled to a rate, not shown as a dip.
        let covered = (elapsed.as_secs_f64() - t as f64).clamp(0.05, 1.0);
        let tick = Tick {
            elapsed,
            stage,
            users,
            rps: sample.requests as f64 / covered,
            p95_ms: sample.p95_ms,
            requests: self.overall.requests,
            failures: self.overall.failures,
            dropped,
        };
        self.timeline.push(sample);
        tick
    }

    /// Adds second `t` to the current slice, closing it at its last second.
    fn fill_slice(&mut self, t: u64) {
        let Some((seconds, cell)) = &mut self.slicing else {
            return;
        };
        cell.merge(&self.second);
        if (t + 1).is_multiple_of(*seconds) {
            let seconds = *seconds;
            let done = std::mem::take(cell);
            // A histogram that cannot be serialized loses its slice, not the run: the
            // verdict then has one pair fewer, and says how many it used.
            if let Ok(slice) = slice_of(&done, t + 1 - seconds, seconds) {
                self.slices.push(slice);
            }
        }
    }
}

fn slice_of(cell: &Cell, start_seconds: u64, seconds: u64) -> Result<Slice, ReportError> {
    let transport = [ErrorKind::Connect, ErrorKind::Timeout, ErrorKind::Request]
        .iter()
        .filter_map(|k| cell.errors.get(k))
        .sum();
    Ok(Slice {
        start_seconds,
        seconds,
        requests: cell.requests,
        failures: cell.failures,
        transport_failures: transport,
        corrected: encode_histogram(&cell.corrected, "slice")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Correction, Outcome};
    use caxton_reports::model::LoadModel;

    #[test]
    fn ticks_split_seconds_and_accumulate_totals() {
        let hub = Arc::new(Hub::new());
        let plan = Plan::from_stages(
            "stages",
            LoadModel::Closed,
            0.0,
            vec![(Duration::from_secs(1), 2.0), (Duration::from_secs(1), 2.0)],
            1.0,
        )
        .unwrap();
        let counters = Arc::new(LiveCounters::default());
        counters.users.store(2, Ordering::Relaxed);
        let mut c = Collector::new(hub.clone(), plan, counters);
        let ok = |stage, latency_us| Outcome {
            name: 0,
            stage,
            latency_us,
            correction: Correction::ExpectedInterval(0),
            status: Some(200),
            error: None,
            has_id: None,
        };
        for _ in 0..10 {
            hub.record(&ok(0, 1_000));
        }
        let first = c.tick(0, Duration::from_secs(1));
        assert_eq!((first.requests, first.stage.as_str()), (10, "ramp-2"));
        assert!((first.p95_ms - 1.0).abs() < 0.01);
        hub.record(&ok(1, 5_000));
        let second = c.tick(1, Duration::from_secs(2));
        assert_eq!((second.requests, second.rps as u64), (11, 1));
        assert_eq!(second.stage, "hold-2");
        assert_eq!(c.cells[&(0, 0)].requests, 10);
        assert_eq!(c.cells[&(0, 1)].requests, 1);
        assert_eq!(c.timeline.len(), 2);
        assert_eq!(c.timeline[1].requests, 1);
        assert_eq!(c.checks[0], (11, 0));
        assert_eq!(c.max_users, 2);
    }
}
