//! Request tags: which request each sampled stack was serving, and how long that request took,
//! so a profile can be cut down to its slow requests (pprof labels `request_id` and
//! `request_latency_us`, as Go's profiler labels are, so `go tool pprof -tagfocus` works too).
//!
//! The runtime marks a thread with a request's id while the thread works for it
//! ([`Tagged::enter`]): an HTTP worker while it polls the request's future, an execution
//! thread while it runs one of the request's messages. Ids are the runtime's own
//! ([`next_id`]), so tagging works whether tracing is on or off.
//!
//! The perf_event sampler cannot read a thread-local when the kernel takes a sample: it reads
//! the rings up to 50 ms later. So each thread keeps a ring of its last [`LOG_LEN`] tag
//! changes stamped with `CLOCK_MONOTONIC`, the clock the events stamp their samples with, and
//! the sampler looks up the tag in force at each sample's time ([`Tags`]). The ring has one
//! writer (its thread) and is read without a lock: a second counter, bumped before a slot is
//! rewritten, tells the reader which slots it may have read half-written (seqlock style).
//!
//! A request whose trace is sampled also names its trace ([`traced`]), so its samples carry
//! the trace id (label `trace_id`) and a flamegraph leads to the trace, as the request id
//! leads nowhere outside this process.
//!
//! Nothing is logged unless the perf_event sampler runs ([`set_active`]): otherwise a tag
//! change is one thread-local write.

use std::cell::{Cell, OnceCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The tag of work done for no request.
pub const NO_TAG: u64 = 0;

/// Tag changes each thread remembers: at 50 ms between reads, 40 k changes a second per
/// thread (20 k polls) before the oldest samples of a read lose their tag.
pub const LOG_LEN: usize = 2048;

/// Finished requests whose latency is kept: the ids share this many slots, so a request's
/// latency is found for as long as fewer than this many requests finished after it. A
/// capture looks latencies up every 250 ms.
pub const LATENCY_SLOTS: usize = 1 << 17;

/// Sampled requests whose trace id is kept: the newest this many (a sampled request is a
/// small share of all, and a capture resolves its requests every 250 ms).
pub const TRACE_SLOTS: usize = 1 << 14;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh request id (never [`NO_TAG`]).
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether tag changes and latencies are being recorded (the perf_event sampler runs).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Starts or stops recording; the perf_event sampler's thread calls it, and the overhead bench
/// to measure both ways.
pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::Relaxed);
}

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(NO_TAG) };
    static LOG: OnceCell<Registered> = const { OnceCell::new() };
}

/// The tag the calling thread works under now: a message accepted while serving a request
/// (or while executing one of its messages) carries it on.
pub fn current() -> u64 {
    CURRENT.with(Cell::get)
}

/// A thread working for a request; dropping it restores what the thread did before.
#[must_use = "the tag holds only while the guard lives"]
pub struct Tagged {
    tag: u64,
    previous: u64,
}

impl Tagged {
    /// Tags the calling thread with `tag` until the guard drops.
    pub fn enter(tag: u64) -> Tagged {
        let previous = CURRENT.with(|c| c.replace(tag));
        if previous != tag {
            log(tag);
        }
        Tagged { tag, previous }
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
        if self.previous != self.tag {
            log(self.previous);
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the events' `clockid`, so both sides read one clock.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

fn log(tag: u64) {
    if !active() {
        return;
    }
    let at = monotonic_ns();
    LOG.with(|cell| {
        cell.get_or_init(Registered::new).log.push(at, tag);
    });
}

struct Slot {
    at: AtomicU64,
    tag: AtomicU64,
}

/// One thread's tag changes: a ring with one writer.
struct ThreadLog {
    /// Changes whose slot write has begun.
    begun: AtomicU64,
    /// Changes completely written.
    head: AtomicU64,
    slots: Box<[Slot]>,
}

impl ThreadLog {
    fn new() -> Self {
        Self {
            begun: AtomicU64::new(0),
            head: AtomicU64::new(0),
            slots: (0..LOG_LEN)
                .map(|_| Slot {
                    at: AtomicU64::new(0),
                    tag: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn push(&self, at: u64, tag: u64) {
        let h = self.head.load(Ordering::Relaxed);
        self.begun.store(h + 1, Ordering::Relaxed);
        // Orders `begun` before the slot's new contents for a reader that sees them.
        fence(Ordering::Release);
        let slot = &self.slots[h as usize % LOG_LEN];
        slot.at.store(at, Ordering::Relaxed);
        slot.tag.store(tag, Ordering::Relaxed);
        self.head.store(h + 1, Ordering::Release);
    }

    /// The changes that were whole while they were read, oldest first.
    fn snapshot(&self) -> Vec<(u64, u64)> {
        let head = self.head.load(Ordering::Acquire);
        let from = head.saturating_sub(LOG_LEN as u64);
        let read: Vec<(u64, u64, u64)> = (from..head)
            .map(|i| {
                let slot = &self.slots[i as usize % LOG_LEN];
                (
                    i,
                    slot.at.load(Ordering::Relaxed),
                    slot.tag.load(Ordering::Relaxed),
                )
            })
            .collect();
        fence(Ordering::Acquire);
        // Slots the writer began to rewrite while we read may hold anything.
        let valid_from = self
            .begun
            .load(Ordering::Relaxed)
            .saturating_sub(LOG_LEN as u64);
        read.into_iter()
            .filter(|&(i, _, _)| i >= valid_from)
            .map(|(_, at, tag)| (at, tag))
            .collect()
    }
}

static LOGS: Mutex<Option<HashMap<u32, Arc<ThreadLog>>>> = Mutex::new(None);

fn logs() -> std::sync::MutexGuard<'static, Option<HashMap<u32, Arc<ThreadLog>>>> {
    LOGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A thread's log in the registry, removed when the thread ends.
struct Registered {
    tid: u32,
    log: Arc<ThreadLog>,
}

impl Registered {
    fn new() -> Self {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let log = Arc::new(ThreadLog::new());
        logs()
            .get_or_insert_with(HashMap::new)
            .insert(tid, log.clone());
        Registered { tid, log }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(map) = logs().as_mut() {
            map.remove(&self.tid);
        }
    }
}

/// One thread's tag changes as read once, to tag the samples of one read of its ring.
pub(crate) struct Tags {
    changes: Vec<(u64, u64)>,
}

impl Tags {
    /// The changes of thread `tid` so far; none when it never worked for a request.
    pub(crate) fn of_thread(tid: u32) -> Tags {
        let log = logs().as_ref().and_then(|m| m.get(&tid).cloned());
        Tags {
            changes: log.map(|l| l.snapshot()).unwrap_or_default(),
        }
    }

    /// The tag in force at `at` (`CLOCK_MONOTONIC` ns); [`NO_TAG`] before the oldest change
    /// remembered.
    pub(crate) fn at(&self, at: u64) -> u64 {
        let after = self.changes.partition_point(|&(t, _)| t <= at);
        match after {
            0 => NO_TAG,
            n => self.changes[n - 1].1,
        }
    }
}

/// Latency bits of a latency slot: the rest holds the id's high bits, so one atomic word
/// keeps both and a reader never pairs an id with another request's latency.
const LATENCY_BITS: u32 = 40;
const LATENCY_MASK: u64 = (1 << LATENCY_BITS) - 1;

fn latency_slots() -> &'static [AtomicU64] {
    static SLOTS: OnceLock<Box<[AtomicU64]>> = OnceLock::new();
    SLOTS.get_or_init(|| (0..LATENCY_SLOTS).map(|_| AtomicU64::new(0)).collect())
}

fn id_check(tag: u64) -> u64 {
    (tag / LATENCY_SLOTS as u64) & ((1 << (64 - LATENCY_BITS)) - 1)
}

/// Records that request `tag` took `latency` (from its arrival to its response, which for
/// `?wait=true` includes executing its message).
pub fn finished(tag: u64, latency: Duration) {
    if tag == NO_TAG || !active() {
        return;
    }
    // At least 1 µs: a zero word means an empty slot.
    let micros = (latency.as_micros() as u64).clamp(1, LATENCY_MASK);
    latency_slots()[tag as usize % LATENCY_SLOTS]
        .store((id_check(tag) << LATENCY_BITS) | micros, Ordering::Relaxed);
}

/// The latency of request `tag` in microseconds, once it finished and while it is remembered.
pub(crate) fn latency_us(tag: u64) -> Option<u64> {
    if tag == NO_TAG {
        return None;
    }
    let word = latency_slots()[tag as usize % LATENCY_SLOTS].load(Ordering::Relaxed);
    (word != 0 && word >> LATENCY_BITS == id_check(tag)).then_some(word & LATENCY_MASK)
}

/// The trace ids of the newest [`TRACE_SLOTS`] traced requests.
#[derive(Default)]
struct Traces {
    by_tag: HashMap<u64, u128>,
    order: VecDeque<u64>,
}

static TRACES: Mutex<Option<Traces>> = Mutex::new(None);

/// Records that request `tag` belongs to the sampled trace `trace_id` (its 16 bytes, big
/// endian), while profiling is on.
pub fn traced(tag: u64, trace_id: u128) {
    if tag == NO_TAG || trace_id == 0 || !active() {
        return;
    }
    let mut guard = TRACES.lock().unwrap_or_else(|p| p.into_inner());
    let traces = guard.get_or_insert_with(Traces::default);
    if traces.by_tag.insert(tag, trace_id).is_none() {
        traces.order.push_back(tag);
        if traces.order.len() > TRACE_SLOTS
            && let Some(old) = traces.order.pop_front()
        {
            traces.by_tag.remove(&old);
        }
    }
}

/// The trace of request `tag`, while it is remembered.
pub(crate) fn trace_id(tag: u64) -> Option<u128> {
    let guard = TRACES.lock().unwrap_or_else(|p| p.into_inner());
    guard.as_ref()?.by_tag.get(&tag).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_gets_the_tag_in_force_at_its_time() {
        set_active(true);
        let before = monotonic_ns();
        {
            let _a = Tagged::enter(41);
            {
                let _b = Tagged::enter(42);
                assert_eq!(current(), 42);
            }
            assert_eq!(current(), 41);
        }
        let after = monotonic_ns();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let tags = Tags::of_thread(tid);
        let times: Vec<u64> = tags.changes.iter().map(|c| c.0).collect();
        assert_eq!(
            tags.changes.iter().map(|c| c.1).collect::<Vec<_>>(),
            [41, 42, 41, NO_TAG]
        );
        assert_eq!(tags.at(before.saturating_sub(1)), NO_TAG);
        assert_eq!(tags.at(times[1]), 42);
        assert_eq!(tags.at(times[2]), 41);
        assert_eq!(tags.at(after), NO_TAG);
    }

    #[test]
    fn the_ring_keeps_the_newest_changes() {
        let log = ThreadLog::new();
        for i in 0..(LOG_LEN as u64 + 10) {
            log.push(i, i + 1);
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), LOG_LEN);
        assert_eq!(kept[0], (10, 11));
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn latencies_are_found_until_their_slot_is_reused() {
        set_active(true);
        let tag = 7 + 3 * LATENCY_SLOTS as u64;
        finished(tag, Duration::from_millis(12));
        assert_eq!(latency_us(tag), Some(12_000));
        // Another id of the same slot answers for itself only.
        assert_eq!(latency_us(7 + 2 * LATENCY_SLOTS as u64), None);
        finished(7 + 4 * LATENCY_SLOTS as u64, Duration::from_millis(1));
        assert_eq!(latency_us(tag), None);
        assert_eq!(latency_us(NO_TAG), None);
    }

    #[test]
    fn trace_ids_are_kept_for_the_newest_requests() {
        set_active(true);
        let first = 1 << 40;
        traced(first, 0xabc);
        assert_eq!(trace_id(first), Some(0xabc));
        for i in 1..=TRACE_SLOTS as u64 {
            traced(first + i, i as u128);
        }
        assert_eq!(trace_id(first), None, "the oldest is forgotten");
        assert_eq!(
            trace_id(first + TRACE_SLOTS as u64),
            Some(TRACE_SLOTS as u128)
        );
    }
}
