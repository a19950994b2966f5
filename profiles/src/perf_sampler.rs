//! The perf_event CPU sampler: one `cpu-clock` software event per target thread, sampling
//! every `1/hz` of that thread's CPU time with a callchain the kernel walks by frame pointers
//! (kernel and user frames), read from each event's ring buffer by the sampler thread.
//!
//! Unlike the `SIGPROF` sampler nothing runs inside the sampled thread: there is no unwinder
//! in a signal handler, so no library has to be skipped for async-signal safety and a sample
//! in libc or the vDSO keeps its stack. What the kernel could not write (a full ring buffer)
//! arrives as `PERF_RECORD_LOST` and is counted as lost. Threads started after the sampler
//! are found by a rescan of `/proc/self/task` at every segment: events opened with `inherit`
//! cannot be memory-mapped per thread.
//!
//! The samples called for are the whole periods each event's own clock counted, not the
//! threads' CPU time times the frequency. The scheduler charges a thread for its context
//! switches too, while its `cpu-clock` event is switched off; a thread that runs in slices of
//! a few microseconds (wasmtime's epoch ticker, an idle tokio worker) is charged twice what
//! its clock sees, and `perf record -e cpu-clock` of it shows the same gap (BENCHMARKS.md,
//! "Profiling"). Time no clock saw is time no sampler can sample: counting it as lost made
//! an idle runtime look as if it lost 40 % of its samples.
//!
//! The rate follows the target's CPU use ([`crate::rate`]): every poll the sampler sums what
//! the threads' clocks counted, and when the budget calls for another stride it sets every
//! event's period (`PERF_EVENT_IOC_PERIOD`). A sample counts as the full-rate periods it
//! stands for (its thread's stride when it was stamped).
//!
//! Segments carry raw instruction pointers ([`RawStacks`]); [`symbolize`] names them once
//! per finished capture, user frames with `backtrace::resolve` (what pprof-rs uses) and
//! kernel frames from `/proc/kallsyms`.

use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::ops::AddAssign;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use perf_event::data::Record as PerfRecord;
use perf_event::events::Software;
use perf_event::{Builder, Clock, SampleFlag, Sampler as RingBuffer};
use pprof::{Frames, Symbol};

use crate::jit::{self, JitFrame};
use crate::kallsyms::{self, UNKNOWN_KERNEL};
use crate::rate::{Governor, Rate};
use crate::request_tag::{self, Tags};
use crate::sample_count::SampleCount;
use crate::settings::Sampler;
use crate::threads;

/// How often the sampler thread empties the ring buffers within a segment: often enough that
/// a buffer sized by [`ring_bytes`] does not fill at the highest frequency.
const POLL: Duration = Duration::from_millis(50);

/// Callchain entries at or above this are context markers (`PERF_CONTEXT_KERNEL`,
/// `PERF_CONTEXT_USER`, ...), not addresses.
const PERF_CONTEXT_MAX: u64 = -4095i64 as u64;

/// Kernel text lives in the upper half of the address space on every 64-bit Linux target.
const KERNEL_HALF: u64 = 1 << 63;

/// One sampled stack: the thread, its instruction pointers (innermost first) and the request
/// the thread worked for ([`request_tag`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RawStack {
    thread_id: u32,
    thread_name: Arc<str>,
    ips: Vec<u64>,
    pub(crate) tag: u64,
}

/// What was sampled of one stack: the samples, and the full-rate periods they stand for
/// (a sample taken at stride `k` stands for `k`; [`crate::rate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) samples: u64,
    pub(crate) weight: u64,
}

impl AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.samples += other.samples;
        self.weight += other.weight;
    }
}

/// What was sampled of each raw stack.
pub(crate) type RawStacks = HashMap<RawStack, Tally>;

/// Whether `perf_event_open` sampling works in this process, probed once: `Ok(kernel)` says
/// whether kernel frames are allowed too, `Err` why not at all.
fn probe() -> &'static Result<bool, String> {
    static PROBE: OnceLock<Result<bool, String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let rate = Rate::fixed(100);
        match open(tid, rate.period_ns(), rate, true) {
            Ok(_) => Ok(true),
            // perf_event_paranoid 2 refuses kernel samples to the unprivileged, not user ones.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                match open(tid, rate.period_ns(), rate, false) {
                    Ok(_) => {
                        tracing::info!(
                            error = %e,
                            "perf_event sampler without kernel frames (kernel.perf_event_paranoid)"
                        );
                        Ok(false)
                    }
                    Err(_) => Err(describe(&e)),
                }
            }
            Err(e) => Err(describe(&e)),
        }
    })
}

fn describe(e: &io::Error) -> String {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unreadable".to_owned());
    format!("perf_event_open(cpu-clock): {e} (kernel.perf_event_paranoid = {paranoid})")
}

/// The sampler `choice` stands for here: `Auto` becomes `PerfEvent` when the probe succeeds,
/// else `Signal` (logged once with the reason); an explicit `PerfEvent` that cannot work is an
/// error (`Err` says why it cannot).
pub(crate) fn resolve(choice: Sampler) -> Result<Sampler, String> {
    static LOGGED: OnceLock<()> = OnceLock::new();
    match (choice, probe()) {
        (Sampler::Signal, _) => Ok(Sampler::Signal),
        (Sampler::PerfEvent | Sampler::Auto, Ok(_)) => {
            LOGGED.get_or_init(|| tracing::info!("CPU sampler: perf_event"));
            Ok(Sampler::PerfEvent)
        }
        (Sampler::PerfEvent, Err(reason)) => Err(reason.clone()),
        (Sampler::Auto, Err(reason)) => {
            LOGGED.get_or_init(
                || tracing::warn!(reason = %reason, "CPU sampler: signal (perf_event unavailable)"),
            );
            Ok(Sampler::Signal)
        }
    }
}

/// Ring buffer bytes for one thread at the full rate: two polls' worth of the largest samples
/// (a full 127-frame callchain and the header).
fn ring_bytes(rate: Rate) -> usize {
    let sample = 8 * (127 + 8);
    let per_poll = (u64::from(rate.full_hz) * POLL.as_millis() as u64).div_ceil(1000) as usize;
    (2 * per_poll * sample).max(16 * 1024)
}

/// A `cpu-clock` event of thread `tid` sampling every `period_ns` of its CPU time.
fn open(tid: libc::pid_t, period_ns: u64, rate: Rate, kernel: bool) -> io::Result<RingBuffer> {
    Builder::new(Software::CPU_CLOCK)
        .observe_pid(tid)
        .any_cpu()
        .sample_period(period_ns)
        .sample(SampleFlag::CALLCHAIN | SampleFlag::TID | SampleFlag::TIME)
        // The clock the request tags are stamped with (`request_tag`).
        .clockid(Clock::MONOTONIC)
        .exclude_kernel(!kernel)
        .exclude_callchain_kernel(!kernel)
        .enabled(true)
        .build()?
        .sampled(ring_bytes(rate))
}

/// One watched thread.
struct Watched {
    ring: RingBuffer,
    name: Arc<str>,
    /// Its event's period in full-rate periods.
    stride: u64,
    /// The stride before the last change and when (`CLOCK_MONOTONIC` ns) it ended: samples
    /// stamped before were taken at it.
    before: Option<(u64, u64)>,
    /// Its clock when last read, ns.
    clock_ns: u64,
    /// Clock time since its last whole period, ns: the period owes a sample once it is full.
    carry_ns: u64,
}

/// The events of the target's threads and what they delivered.
struct Threads {
    rate: Rate,
    /// The stride every thread samples at, and new threads start with.
    stride: u64,
    kernel: bool,
    watched: HashMap<u32, Watched>,
}

impl Threads {
    /// Opens events for target threads not yet watched and closes those of threads that
    /// ended or stopped being the target's (a thread may be renamed after it starts).
    fn rescan(&mut self, stacks: &mut RawStacks, counts: &mut Counts) {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        let mut seen = Vec::with_capacity(self.watched.len() + 4);
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            let name = comm.trim_end_matches('\n');
            if !threads::is_target(name) {
                continue;
            }
            seen.push(tid);
            if self.watched.get(&tid).is_some_and(|w| &*w.name == name) {
                continue;
            }
            let Ok(tid_arg) = libc::pid_t::try_from(tid) else {
                continue;
            };
            // A thread that ended since the listing fails with ESRCH: nothing to watch.
            let period = self.stride * self.rate.period_ns();
            let Ok(ring) = open(tid_arg, period, self.rate, self.kernel) else {
                continue;
            };
            let renamed = self.watched.insert(
                tid,
                Watched {
                    ring,
                    name: name.into(),
                    stride: self.stride,
                    before: None,
                    clock_ns: 0,
                    carry_ns: 0,
                },
            );
            if let Some(mut old) = renamed {
                drain_ring(tid, &mut old, self.rate, stacks, counts);
            }
        }
        let gone: Vec<u32> = self
            .watched
            .keys()
            .filter(|tid| !seen.contains(tid))
            .copied()
            .collect();
        for tid in gone {
            if let Some(mut w) = self.watched.remove(&tid) {
                drain_ring(tid, &mut w, self.rate, stacks, counts);
            }
        }
    }

    /// Empties every ring; returns the CPU time the threads' clocks counted since the last
    /// drain.
    fn drain(&mut self, stacks: &mut RawStacks, counts: &mut Counts) -> Duration {
        let mut cpu_ns = 0;
        for (&tid, w) in &mut self.watched {
            cpu_ns += drain_ring(tid, w, self.rate, stacks, counts);
        }
        Duration::from_nanos(cpu_ns)
    }

    /// Sets every thread's period to `stride` full-rate periods (right after a drain, so the
    /// samples at the old stride are nearly all counted at it already).
    fn set_stride(&mut self, stride: u64) {
        self.stride = stride;
        for w in self.watched.values_mut() {
            let mut period = stride * self.rate.period_ns();
            // SAFETY: the fd is the event's, open while `w.ring` lives; PERF_EVENT_IOC_PERIOD
            // reads a u64 through the pointer passed as its argument, valid for the call.
            let done = unsafe {
                perf_event_open_sys::ioctls::PERIOD(
                    w.ring.as_raw_fd(),
                    &mut period as *mut u64 as u64,
                )
            };
            if done == 0 {
                // The kernel restarts the period: the part already counted owes no sample.
                w.before = Some((w.stride, request_tag::monotonic_ns()));
                w.stride = stride;
                w.carry_ns = 0;
            }
        }
    }
}

/// Samples and losses read from the rings.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    taken: u64,
    lost: u64,
    /// Sampling periods the events' clocks counted: the samples called for.
    periods: u64,
}

/// Reads one thread's clock and ring; returns the clock time counted since the last read, ns.
fn drain_ring(
    tid: u32,
    w: &mut Watched,
    rate: Rate,
    stacks: &mut RawStacks,
    counts: &mut Counts,
) -> u64 {
    // The clock is read before the ring, so every sample it owes so far is drained now or
    // was before; one that fires in between is taken a segment before it is owed, which a
    // capture's sums even out.
    let mut counted = 0;
    if let Ok(ns) = w.ring.read() {
        counted = ns.saturating_sub(w.clock_ns);
        w.clock_ns = ns.max(w.clock_ns);
        let period = w.stride * rate.period_ns();
        w.carry_ns += counted;
        counts.periods += w.carry_ns / period;
        w.carry_ns %= period;
    }
    // Read after the samples were taken, so it holds every tag change before them.
    let mut tags: Option<Tags> = None;
    while let Some(record) = w.ring.next_record() {
        match record.parse_record() {
            Ok(PerfRecord::Sample(sample)) => {
                let tag = match sample.time() {
                    Some(at) => tags.get_or_insert_with(|| Tags::of_thread(tid)).at(at),
                    None => request_tag::NO_TAG,
                };
                let weight = match (w.before, sample.time()) {
                    (Some((stride, until)), Some(at)) if at < until => stride,
                    _ => w.stride,
                };
                let ips: Vec<u64> = sample
                    .callchain()
                    .unwrap_or_default()
                    .iter()
                    .copied()
                    .filter(|&ip| ip < PERF_CONTEXT_MAX)
                    .collect();
                let key = RawStack {
                    thread_id: sample.tid().unwrap_or(tid),
                    thread_name: w.name.clone(),
                    ips,
                    tag,
                };
                *stacks.entry(key).or_default() += Tally { samples: 1, weight };
                counts.taken += 1;
            }
            Ok(PerfRecord::Lost(lost)) => counts.lost += lost.lost,
            Ok(PerfRecord::LostSamples(lost)) => counts.lost += lost.lost,
            // A record that does not parse was a sample the profile does not get.
            Err(_) => counts.lost += 1,
            // The events ask for samples only; anything else carries no stack.
            Ok(_) => {}
        }
    }
    counted
}

/// The perf_event sampler: one `segment`-long window after another for as long as
/// `keep_going`, each handed to `emit` with its accounting, start and length (the capture
/// turns them into its segments). `Err` says why perf_event cannot sample here.
pub(crate) fn run(
    rate: Rate,
    segment: Duration,
    mut emit: impl FnMut(RawStacks, SampleCount, SystemTime, Duration),
    keep_going: impl Fn() -> bool,
) -> Result<(), String> {
    let kernel = match probe() {
        Ok(kernel) => *kernel,
        Err(reason) => return Err(reason.clone()),
    };
    load_symbols();
    let mut threads = Threads {
        rate,
        stride: 1,
        kernel,
        watched: HashMap::new(),
    };
    let mut governor = Governor::new(rate);
    // Request tags are worth their cost only while someone reads them.
    request_tag::set_active(true);
    let _inactive = OnDrop(|| request_tag::set_active(false));
    let mut cpu_before = cpu_split();
    let mut started = SystemTime::now();
    let mut polled = Instant::now();
    while keep_going() {
        let mut stacks = RawStacks::new();
        let mut counts = Counts::default();
        threads.rescan(&mut stacks, &mut counts);
        let end = Instant::now() + segment;
        let mut widest = threads.stride;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(POLL));
            let cpu = threads.drain(&mut stacks, &mut counts);
            if let Some(stride) = governor.observe(cpu, polled.elapsed()) {
                threads.set_stride(stride);
                widest = widest.max(stride);
            }
            polled = Instant::now();
            if left <= POLL {
                break;
            }
        }
        let cpu_now = cpu_split();
        let now = SystemTime::now();
        let hz = rate.hz_at(threads.stride);
        let per_cpu = |d: Duration| (d.as_secs_f64() * f64::from(hz)).floor() as u64;
        emit(
            stacks,
            SampleCount {
                taken: counts.taken,
                // Unclamped: a segment's reading errs either way, and clamping it to the
                // samples taken would keep only the errors that look like losses. The
                // kernel's own losses are kept apart and judged per capture.
                expected: counts.periods,
                excluded: per_cpu(cpu_now.1.saturating_sub(cpu_before.1)),
                reported_lost: counts.lost,
                lowest_hz: (widest > 1).then(|| rate.hz_at(widest)),
            },
            started,
            now.duration_since(started).unwrap_or(segment),
        );
        (cpu_before, started) = (cpu_now, now);
    }
    Ok(())
}

/// Loads the symbol tables on a thread of its own, once per process: reading /proc/kallsyms
/// takes the kernel a while, and backtrace loads the binary's debug information on its
/// first lookup. Done when the profiler starts, that CPU time falls outside every capture
/// rather than into the first one's window (a load run's first seconds).
pub(crate) fn load_symbols() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let kernel = matches!(probe(), Ok(true));
        let _ = std::thread::Builder::new()
            .name("symbols-load".into())
            .spawn(move || {
                if kernel {
                    kallsyms::kernel();
                }
                backtrace::trace(|frame| {
                    backtrace::resolve_frame(frame, |_| {});
                    true
                });
            });
    });
}

/// Runs its closure when dropped (however the sampler ends).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// CPU time of the target's threads and of the others. Events are opened for target threads
/// only, so the others' samples are the ones their CPU time would have called for.
fn cpu_split() -> (Duration, Duration) {
    if threads::filtered() {
        threads::cpu_split()
    } else {
        (threads::process_cpu(), Duration::ZERO)
    }
}

/// Names every frame of `stacks`; stacks that come out the same for the same request tag are
/// merged. The key's time stamp, which pprof-rs never writes out, is `at` plus the tag in
/// nanoseconds: it keeps the requests' samples apart ([`crate::capture`] reads it back).
pub(crate) fn symbolize(stacks: RawStacks, at: SystemTime) -> HashMap<Frames, Tally> {
    let kernel = stacks
        .keys()
        .any(|s| s.ips.iter().any(|&ip| ip >= KERNEL_HALF))
        .then(kallsyms::kernel);
    let mut symbolizer = Symbolizer::new(kernel);
    let mut out: HashMap<Frames, Tally> = HashMap::new();
    for (stack, count) in stacks {
        let frames = Frames {
            frames: symbolizer.frames(stack.ips.iter().copied(), true),
            thread_name: stack.thread_name.to_string(),
            thread_id: u64::from(stack.thread_id),
            sample_timestamp: tagged_time(at, stack.tag),
        };
        *out.entry(frames).or_default() += count;
    }
    out
}

/// `at` moved by `tag` nanoseconds; `at` itself when that would overflow (the tag is lost).
pub(crate) fn tagged_time(at: SystemTime, tag: u64) -> SystemTime {
    at.checked_add(Duration::from_nanos(tag)).unwrap_or(at)
}

/// What one address is.
#[derive(Clone)]
enum Named {
    /// The binary's, a library's or the kernel's symbols (inlined frames innermost first);
    /// empty when nothing names it.
    Native(Vec<Symbol>),
    /// An agent's compiled WebAssembly ([`jit`]).
    Jit(JitFrame),
}

/// Names raw stacks, the same way for both samplers: kernel addresses from `/proc/kallsyms`,
/// the agents' compiled WebAssembly from the [`jit`] registry, everything else with
/// `backtrace::resolve`. Remembers every address it named.
pub(crate) struct Symbolizer {
    kernel: Option<&'static kallsyms::Kallsyms>,
    jit: bool,
    names: HashMap<u64, Named>,
}

/// The frame pprof-rs's signal handler runs in; it and its caller (the signal trampoline) are
/// the sampler's own, not the sampled thread's.
const SIGNAL_HANDLER: &str = "perf_signal_handler";

impl Symbolizer {
    pub(crate) fn new(kernel: Option<&'static kallsyms::Kallsyms>) -> Self {
        Self {
            kernel,
            jit: jit::any_registered(),
            names: HashMap::new(),
        }
    }

    /// The frames of one stack of instruction pointers, innermost first: unnamed addresses
    /// are dropped, and above the outermost of consecutive frames of one agent's code comes
    /// an `agent:<type>` frame. `leaf` says the first address is where the thread was
    /// interrupted (perf_event's callchains); otherwise every address is a return address
    /// (pprof-rs's frame-pointer walk starts at the interrupted function's caller).
    pub(crate) fn frames(
        &mut self,
        ips: impl Iterator<Item = u64>,
        leaf: bool,
    ) -> Vec<Vec<Symbol>> {
        let mut named = Vec::new();
        let mut skip = 0;
        for (depth, ip) in ips.enumerate() {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            // Past the innermost frame each address is a return address: the call is the
            // instruction before it (and may be inlined into another function than the next).
            let lookup = if depth == 0 && leaf {
                ip
            } else {
                ip.saturating_sub(1)
            };
            let (kernel, jit) = (self.kernel, self.jit);
            let name = self
                .names
                .entry(lookup)
                .or_insert_with(|| name_of(lookup, kernel, jit))
                .clone();
            if let Named::Native(symbols) = &name
                && symbols.iter().any(|s| {
                    // macOS prepends an underscore even with `#[no_mangle]` (as pprof-rs).
                    let n = s.name();
                    n == SIGNAL_HANDLER || n.strip_prefix('_') == Some(SIGNAL_HANDLER)
                })
            {
                skip = 1;
                continue;
            }
            named.push(name);
        }
        let mut frames = Vec::with_capacity(named.len() + 1);
        for (i, name) in named.iter().enumerate() {
            match name {
                Named::Native(symbols) if symbols.is_empty() => {}
                Named::Native(symbols) => frames.push(symbols.clone()),
                Named::Jit(frame) => {
                    frames.push(vec![plain_symbol(&frame.function)]);
                    let caller_same_agent = named[i + 1..]
                        .iter()
                        .find(|n| !matches!(n, Named::Native(s) if s.is_empty()))
                        .is_some_and(|n| matches!(n, Named::Jit(f) if f.agent == frame.agent));
                    if !caller_same_agent {
                        frames.push(vec![plain_symbol(&frame.agent)]);
                    }
                }
            }
        }
        frames
    }
}

fn plain_symbol(name: &str) -> Symbol {
    Symbol {
        name: Some(name.as_bytes().to_vec()),
        addr: None,
        lineno: None,
        filename: None,
    }
}

fn name_of(ip: u64, kernel: Option<&kallsyms::Kallsyms>, jit: bool) -> Named {
    if ip >= KERNEL_HALF {
        let name = kernel
            .and_then(|k| k.lookup(ip))
            .map_or_else(|| UNKNOWN_KERNEL.to_owned(), |n| format!("{n}_[k]"));
        return Named::Native(vec![plain_symbol(&name)]);
    }
    if jit && let Some(frame) = jit::lookup(ip) {
        return Named::Jit(frame);
    }
    let mut symbols = Vec::new();
    backtrace::resolve(ip as usize as *mut c_void, |s| {
        symbols.push(Symbol {
            name: s.name().map(|n| n.as_bytes().to_vec()),
            addr: s.addr(),
            lineno: s.lineno(),
            filename: s.filename().map(|f| f.to_owned()),
        });
    });
    Named::Native(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffers_hold_two_polls_at_any_frequency() {
        assert_eq!(ring_bytes(Rate::fixed(1)), 16 * 1024);
        // At the highest frequency a poll gathers 50 samples of at most 1080 bytes.
        assert!(ring_bytes(Rate::fixed(1000)) >= 2 * 50 * 1080);
    }

    #[test]
    fn user_and_kernel_frames_get_names() {
        let mut here = 0;
        backtrace::trace(|frame| {
            here = frame.ip() as usize as u64;
            false
        });
        let stack = RawStack {
            thread_id: 7,
            thread_name: "caxton-rt".into(),
            ips: vec![here, 0xffff_ffff_8100_1234],
            tag: request_tag::NO_TAG,
        };
        let table = kallsyms::Kallsyms::parse("ffffffff81001000 T do_syscall_64\n");
        let native = |named: Named| match named {
            Named::Native(symbols) => symbols,
            Named::Jit(f) => panic!("not JIT code: {f:?}"),
        };
        let symbols = native(name_of(stack.ips[0], Some(&table), false));
        assert!(
            symbols
                .iter()
                .any(|s| s.name().contains("user_and_kernel_frames_get_names")),
            "{symbols:?}"
        );
        let kernel = native(name_of(stack.ips[1], Some(&table), false));
        assert_eq!(kernel[0].name(), "do_syscall_64_[k]");
        assert_eq!(
            native(name_of(stack.ips[1], None, false))[0].name(),
            UNKNOWN_KERNEL
        );
    }

    #[test]
    fn agent_code_is_named_with_its_agent_above_it() {
        // A return address just past this function's first byte.
        let here = agent_code_is_named_with_its_agent_above_it as fn() as usize as u64 + 1;
        let base = 0x7a5c_0000_0000usize;
        let _reg = jit::register(jit::JitCode {
            code: base..base + 0x100,
            agent_type: "burner".into(),
            functions: vec![
                jit::JitFunction {
                    offset: 0,
                    len: 0x40,
                    index: 1,
                    name: Some("burn_in_agent".into()),
                },
                jit::JitFunction {
                    offset: 0x40,
                    len: 0x40,
                    index: 2,
                    name: Some("handle_message".into()),
                },
            ],
        });
        let mut symbolizer = Symbolizer::new(None);
        // Leaf in burn_in_agent, called by handle_message, called from a trampoline, called
        // by this test (a return address: the symbolizer looks up the byte before it).
        let ips = [
            base as u64 + 0x10,
            base as u64 + 0x51,
            base as u64 + 0xc1,
            here + 1,
        ];
        let names: Vec<String> = symbolizer
            .frames(ips.into_iter(), true)
            .iter()
            .map(|f| f[0].name())
            .collect();
        assert_eq!(
            names[..4],
            [
                "burn_in_agent",
                "handle_message",
                jit::TRAMPOLINE,
                "agent:burner"
            ],
            "{names:?}"
        );
        assert!(
            names[4].contains("agent_code_is_named_with_its_agent_above_it"),
            "{names:?}"
        );
    }
}
