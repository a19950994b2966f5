//! CPU captures with pprof-rs: one process-wide sampler that every consumer shares, and the
//! encoded results (gzipped pprof protobuf, SVG flamegraph).
//!
//! pprof-rs allows one profiler per process, so on-demand captures (`/debug/pprof/*`) and
//! continuous mode (the Pyroscope push) cannot each run their own. Instead the sampler runs
//! while anyone subscribes, in quarter-second segments (`SEGMENT`), and every subscriber merges the
//! segments of its own window: a `seconds=N` capture answers after about N seconds with its
//! own samples whether or not continuous mode is on, and two captures may overlap.
//! Segments keep raw addresses; symbols are resolved once per finished capture.
//!
//! Two samplers feed the same segments: pprof-rs's `SIGPROF` timer (`sampler = "signal"`)
//! and per-thread perf_event callchains ([`crate::perf_sampler`]); the hub runs one of them.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message;
use pprof::{Frames, Report, UnresolvedReport};
use tokio::sync::broadcast;

use crate::perf_sampler::{self, RawStacks, Tally};
use crate::rate::Rate;
use crate::request_tag;
pub use crate::sample_count::SampleCount;
use crate::settings::{SAMPLE_RATE_RANGE, Sampler};
use crate::threads;

/// Longest capture the endpoints and the collector accept.
pub const MAX_CAPTURE_SECONDS: u64 = 300;

/// Libraries whose frames are never unwound from the SIGPROF handler: unwinding through them is
/// not async-signal-safe (pprof-rs's recommendation; a sample landing there is skipped).
pub const UNWIND_BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Length of one sampler segment: the granularity of every capture window (a capture starts
/// at most this long after it is asked for).
pub(crate) const SEGMENT: Duration = Duration::from_millis(250);

/// Why a capture did not produce a profile.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The sampler already runs at another rate for another consumer (HTTP 409).
    #[error(
        "the CPU sampler is running at {running} for another capture; this one asked for {asked}"
    )]
    Busy {
        /// Rate the sampler runs at.
        running: Rate,
        /// Rate this capture asked for.
        asked: Rate,
    },
    /// The sampler already runs with another backend for another capture (HTTP 409).
    #[error(
        "the CPU sampler is running as {running} for another capture; this one asked for {asked}"
    )]
    OtherSampler {
        /// The backend that runs (`as_str` of [`Sampler`]).
        running: &'static str,
        /// The backend this capture asked for.
        asked: &'static str,
    },
    /// `sampler = "perf_event"` was asked for but `perf_event_open` is refused here.
    #[error("the perf_event sampler is unavailable: {0}")]
    PerfEvent(String),
    /// Duration outside 1..=300 s.
    #[error("capture duration {0:?} is outside 1s..=300s")]
    InvalidDuration(Duration),
    /// Frequency outside 1..=1000 Hz.
    #[error("sample rate {0} Hz is outside 1..=1000")]
    InvalidFrequency(u32),
    /// pprof-rs could not start the profiler or build its report.
    #[error("pprof-rs: {0}")]
    Pprof(#[from] pprof::Error),
    /// The sampler stopped before the window was complete.
    #[error("the CPU sampler stopped: {0}")]
    Sampler(String),
    /// Encoding the pprof protobuf failed.
    #[error("encoding the pprof protobuf: {0}")]
    Encode(String),
    /// Rendering the flamegraph failed.
    #[error("rendering the flamegraph: {0}")]
    Flamegraph(String),
    /// The blocking capture task died (it panicked).
    #[error("capture task failed: {0}")]
    Task(String),
}

/// A finished CPU capture.
#[derive(Debug, Clone)]
pub struct CpuProfile {
    /// The pprof protobuf (`perftools.profiles.Profile`), gzipped: a `.pb.gz` as `go tool pprof`
    /// and Pyroscope read it.
    pub pprof_gz: Vec<u8>,
    /// SVG flamegraph of the same samples; `None` for captures taken only to be pushed.
    pub flamegraph_svg: Option<Vec<u8>>,
    /// Wall-clock start.
    pub started: SystemTime,
    /// Wall-clock length.
    pub duration: Duration,
    /// Sampling frequency in Hz: the full rate, the unit of the profile's counts (a sample
    /// taken at a lowered rate counts as the full-rate samples it stands for; the lowest rate
    /// is in `samples.lowest_hz`).
    pub frequency_hz: u32,
    /// The backend that took the samples ([`Sampler::PerfEvent`] or [`Sampler::Signal`]).
    pub sampler: Sampler,
    /// Sample accounting.
    pub samples: SampleCount,
}

/// One [`SEGMENT`] of the shared sampler: raw stacks of the target's threads and their count.
pub(crate) struct Segment {
    pub(crate) stacks: Stacks,
    pub(crate) samples: SampleCount,
    pub(crate) started: SystemTime,
    pub(crate) duration: Duration,
}

/// A segment's raw stacks, as the backend that took them keeps them.
pub(crate) enum Stacks {
    /// pprof-rs's snapshot difference.
    Signal(UnresolvedReport),
    /// perf_event callchains.
    Perf(RawStacks),
}

/// The running sampler: its rate and backend, its subscribers and where its segments go.
struct Hub {
    rate: Rate,
    sampler: Sampler,
    subscribers: usize,
    segments: broadcast::Sender<Arc<Segment>>,
}

static HUB: Mutex<Option<Hub>> = Mutex::new(None);

fn hub() -> std::sync::MutexGuard<'static, Option<Hub>> {
    HUB.lock().unwrap_or_else(|p| p.into_inner())
}

/// A consumer's place at the sampler; the sampler stops when the last one drops.
struct Subscription {
    segments: broadcast::Receiver<Arc<Segment>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(h) = hub().as_mut() {
            h.subscribers = h.subscribers.saturating_sub(1);
        }
    }
}

/// How long a capture waits for the last one's sampler, at another rate or with another
/// backend, to end: it ends at its segment's end once nobody subscribes.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// Joins the sampler at `rate` with the backend `sampler` (resolved, not `Auto`), starting it if
/// it is idle. The sampler has a thread of its own: it outlives the runtime of whoever started
/// it. `Ok(None)`: a sampler nobody subscribes to any more, at another rate or with another
/// backend, has not ended yet.
fn subscribe(rate: Rate, sampler: Sampler) -> Result<Option<Subscription>, CaptureError> {
    let mut hub = hub();
    match hub.as_mut() {
        Some(h) if h.subscribers == 0 && (h.rate != rate || h.sampler != sampler) => Ok(None),
        Some(h) if h.rate != rate => Err(CaptureError::Busy {
            running: h.rate,
            asked: rate,
        }),
        Some(h) if h.sampler != sampler => Err(CaptureError::OtherSampler {
            running: h.sampler.as_str(),
            asked: sampler.as_str(),
        }),
        Some(h) => {
            h.subscribers += 1;
            Ok(Some(Subscription {
                segments: h.segments.subscribe(),
            }))
        }
        None => {
            let (tx, rx) = broadcast::channel(8);
            *hub = Some(Hub {
                rate,
                sampler,
                subscribers: 1,
                segments: tx.clone(),
            });
            if let Err(e) = std::thread::Builder::new()
                .name("pprof-sampler".into())
                .spawn(move || match sampler {
                    Sampler::PerfEvent => {
                        let emit = |stacks, samples, started, duration| {
                            let _ = tx.send(Arc::new(Segment {
                                stacks: Stacks::Perf(stacks),
                                samples,
                                started,
                                duration,
                            }));
                        };
                        if let Err(reason) = perf_sampler::run(rate, SEGMENT, emit, keep_sampling) {
                            stop_sampler(&CaptureError::PerfEvent(reason));
                        }
                    }
                    _ => sample(rate.full_hz, tx),
                })
            {
                *hub = None;
                return Err(CaptureError::Task(format!(
                    "starting the sampler thread: {e}"
                )));
            }
            Ok(Some(Subscription { segments: rx }))
        }
    }
}

/// Whether the sampler is running for some consumer (a readiness probe for callers and
/// tests).
pub fn capture_in_progress() -> bool {
    hub().as_ref().is_some_and(|h| h.subscribers > 0)
}

/// How long one pprof-rs profiler runs before the sampler starts a fresh one: its
/// collector spills evicted stacks to a file that only grows while it runs.
const PROFILER_LIFETIME: u32 = 40;

/// Whether anyone still subscribes; when nobody does the hub is cleared and the sampler
/// thread must end.
fn keep_sampling() -> bool {
    let mut hub = hub();
    if hub.as_ref().is_none_or(|h| h.subscribers == 0) {
        *hub = None;
        return false;
    }
    true
}

/// Nothing to sample with: ends every waiting capture with the reason.
fn stop_sampler(e: &CaptureError) {
    tracing::warn!(error = %e, "CPU sampler failed");
    *hub() = None;
}

/// The signal sampler: one segment after another for as long as anyone subscribes. A segment
/// is the difference between two snapshots of one running pprof-rs profiler, so consecutive
/// segments leave no gap; the profiler is replaced every [`PROFILER_LIFETIME`] segments.
fn sample(hz: u32, segments: broadcast::Sender<Arc<Segment>>) {
    let stop = stop_sampler;
    loop {
        let frequency = match i32::try_from(hz) {
            Ok(f) => f,
            Err(_) => return stop(&CaptureError::InvalidFrequency(hz)),
        };
        let guard = match pprof::ProfilerGuardBuilder::default()
            .frequency(frequency)
            .blocklist(&UNWIND_BLOCKLIST)
            .build()
        {
            Ok(g) => g,
            Err(e) => return stop(&e.into()),
        };
        // Measured once the timer is armed: building the guard walks the loaded libraries
        // and warms the unwinder, CPU time no sample could cover.
        let mut previous: Option<UnresolvedReport> = None;
        let mut cpu_before = threads::target_cpu();
        let mut started = SystemTime::now();
        for _ in 0..PROFILER_LIFETIME {
            if !keep_sampling() {
                return;
            }
            std::thread::sleep(SEGMENT);
            let snapshot = match guard.report().build_unresolved() {
                Ok(r) => r,
                Err(e) => return stop(&e.into()),
            };
            let cpu_now = threads::target_cpu();
            let now = SystemTime::now();
            let segment = since(
                &snapshot,
                previous.as_ref(),
                hz,
                cpu_now - cpu_before,
                started,
                now,
            );
            let _ = segments.send(Arc::new(segment));
            previous = Some(snapshot);
            (cpu_before, started) = (cpu_now, now);
        }
    }
}

/// The samples of `snapshot` not yet in `previous` (both cumulative counts of one
/// profiler), of the target's threads only.
fn since(
    snapshot: &UnresolvedReport,
    previous: Option<&UnresolvedReport>,
    hz: u32,
    cpu_used: Duration,
    started: SystemTime,
    now: SystemTime,
) -> Segment {
    let mut excluded = 0;
    let mut taken = 0;
    let data = snapshot
        .data
        .iter()
        .filter_map(|(frames, &count)| {
            let before = previous
                .and_then(|p| p.data.get(frames))
                .copied()
                .unwrap_or(0);
            let new = (count - before).max(0);
            if new == 0 {
                return None;
            }
            let name = &frames.thread_name[..frames.thread_name_length];
            if threads::is_target(&String::from_utf8_lossy(name)) {
                taken += new as u64;
                Some((frames.clone(), new))
            } else {
                excluded += new as u64;
                None
            }
        })
        .collect();
    Segment {
        stacks: Stacks::Signal(UnresolvedReport {
            data,
            timing: snapshot.timing.clone(),
        }),
        samples: SampleCount {
            taken,
            expected: (cpu_used.as_secs_f64() * f64::from(hz)).floor() as u64,
            excluded,
            reported_lost: 0,
            lowest_hz: None,
        },
        started,
        duration: now.duration_since(started).unwrap_or(SEGMENT),
    }
}

/// Captures a CPU profile for `duration` at `hz`, with its flamegraph, with the sampler
/// `"auto"` picks.
///
/// Shares the process's one sampler with every other capture and with continuous mode;
/// fails with [`CaptureError::Busy`] only while the sampler runs at another frequency.
/// Dropping the future leaves the sampler (it stops when nobody else uses it).
pub async fn capture_cpu(duration: Duration, hz: u32) -> Result<CpuProfile, CaptureError> {
    check(duration, hz)?;
    capture(duration, Rate::fixed(hz), Sampler::Auto, true).await
}

pub(crate) fn check(duration: Duration, hz: u32) -> Result<(), CaptureError> {
    if duration < Duration::from_secs(1) || duration > Duration::from_secs(MAX_CAPTURE_SECONDS) {
        return Err(CaptureError::InvalidDuration(duration));
    }
    if !SAMPLE_RATE_RANGE.contains(&hz) {
        return Err(CaptureError::InvalidFrequency(hz));
    }
    Ok(())
}

/// Merges the sampler's segments that start after this call until they cover `duration`,
/// then resolves symbols and encodes on a blocking thread (symbolization is CPU-bound).
pub(crate) async fn capture(
    duration: Duration,
    rate: Rate,
    sampler: Sampler,
    flamegraph: bool,
) -> Result<CpuProfile, CaptureError> {
    let asked = SystemTime::now();
    let sampler = perf_sampler::resolve(sampler).map_err(CaptureError::PerfEvent)?;
    let waited_from = tokio::time::Instant::now();
    let mut sub = loop {
        match subscribe(rate, sampler)? {
            Some(sub) => break sub,
            None if waited_from.elapsed() < WIND_DOWN => {
                tokio::time::sleep(SEGMENT / 10).await;
            }
            None => {
                return Err(CaptureError::Sampler(
                    "the last capture's sampler did not end".into(),
                ));
            }
        }
    };
    let mut signal: Option<UnresolvedReport> = None;
    let mut perf = RawStacks::new();
    let mut samples = SampleCount::default();
    let mut started = None;
    let mut covered = Duration::ZERO;
    // Latencies of the tagged requests, looked up at every segment: a request's slot is
    // reused after `LATENCY_SLOTS` more requests, long before a 300 s window ends.
    let mut latencies: HashMap<u64, Served> = HashMap::new();
    let mut pending: HashSet<u64> = HashSet::new();
    // Half a segment of slack: a window of N seconds takes N segments, not N + 1.
    while covered + SEGMENT / 2 < duration {
        let segment = match sub.segments.recv().await {
            Ok(s) => s,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => {
                return Err(CaptureError::Sampler(
                    "it ended before the window was complete (see the log)".into(),
                ));
            }
        };
        // The segment under way when we subscribed belongs to somebody else's window.
        if segment.started < asked {
            continue;
        }
        started.get_or_insert(segment.started);
        covered += segment.duration;
        samples.add(segment.samples);
        match (&segment.stacks, signal.as_mut()) {
            (Stacks::Signal(stacks), None) => {
                signal = Some(UnresolvedReport {
                    data: stacks.data.clone(),
                    timing: stacks.timing.clone(),
                })
            }
            (Stacks::Signal(stacks), Some(all)) => {
                for (frames, count) in &stacks.data {
                    *all.data.entry(frames.clone()).or_default() += count;
                }
            }
            (Stacks::Perf(stacks), _) => {
                for (stack, count) in stacks {
                    if stack.tag != request_tag::NO_TAG && !latencies.contains_key(&stack.tag) {
                        pending.insert(stack.tag);
                    }
                    *perf.entry(stack.clone()).or_default() += *count;
                }
            }
        }
        resolve_latencies(&mut pending, &mut latencies);
    }
    drop(sub);
    resolve_latencies(&mut pending, &mut latencies);
    let Some(started) = started else {
        return Err(CaptureError::Sampler("no segment arrived".into()));
    };
    tokio::task::spawn_blocking(move || {
        let mut tallies: HashMap<Frames, Tally> = perf_sampler::symbolize(perf, started);
        if let Some(signal) = signal {
            // Named like the perf_event sampler's stacks (pprof-rs's own conversion knows
            // nothing of the agents' compiled code).
            let mut symbolizer = perf_sampler::Symbolizer::new(None);
            for (frames, count) in signal.data {
                // pprof-rs's frame-pointer walker keeps the address in a field, backtrace-rs
                // behind a method.
                #[cfg(feature = "frame-pointer")]
                let ips = frames.frames.iter().map(|f| f.ip as u64);
                #[cfg(not(feature = "frame-pointer"))]
                let ips = frames.frames.iter().map(|f| f.ip() as usize as u64);
                let frames = Frames {
                    frames: symbolizer.frames(ips, false),
                    thread_name: String::from_utf8_lossy(
                        &frames.thread_name[..frames.thread_name_length],
                    )
                    .into_owned(),
                    thread_id: frames.thread_id,
                    // Untagged: pprof-rs's handler cannot read the request tags.
                    sample_timestamp: started,
                };
                let count = u64::try_from(count).unwrap_or(0);
                *tallies.entry(frames).or_default() += Tally {
                    samples: count,
                    weight: count,
                };
            }
        }
        // Weighted, so the flamegraph and the CPU time follow the CPU used however the rate
        // moved; the sample counts are put back into the pprof ([`encode_gzipped`]).
        let data = tallies
            .iter()
            .map(|(frames, t)| {
                (
                    frames.clone(),
                    isize::try_from(t.weight).unwrap_or(isize::MAX),
                )
            })
            .collect();
        let mut report = Report {
            data,
            timing: Default::default(),
        };
        let hz = rate.full_hz;
        report.timing.frequency = i32::try_from(hz).unwrap_or(i32::MAX);
        report.timing.start_time = started;
        report.timing.duration = covered;
        let svg = flamegraph.then(|| render_flamegraph(&report)).transpose()?;
        let pprof_gz = encode_gzipped(&report, &tallies, &latencies)?;
        Ok(CpuProfile {
            pprof_gz,
            flamegraph_svg: svg,
            started,
            duration: covered,
            frequency_hz: hz,
            sampler,
            samples,
        })
    })
    .await
    .map_err(|e| CaptureError::Task(e.to_string()))?
}

/// What a capture knows of a finished request.
#[derive(Debug, Clone, Copy)]
struct Served {
    latency_us: u64,
    /// Its sampled trace, if it had one.
    trace_id: Option<u128>,
}

/// Moves the tags of `pending` whose requests have finished into `latencies`.
fn resolve_latencies(pending: &mut HashSet<u64>, latencies: &mut HashMap<u64, Served>) {
    pending.retain(|&tag| match request_tag::latency_us(tag) {
        Some(latency_us) => {
            let trace_id = request_tag::trace_id(tag);
            latencies.insert(
                tag,
                Served {
                    latency_us,
                    trace_id,
                },
            );
            false
        }
        None => true,
    });
}

/// pprof label keys of a tagged sample: the request it served and, once that request
/// finished, its latency.
pub const REQUEST_ID_LABEL: &str = "request_id";
/// See [`REQUEST_ID_LABEL`]; the value is in microseconds (`num_unit`).
pub const REQUEST_LATENCY_LABEL: &str = "request_latency_us";
/// The sampled trace of the request a sample served: 32 lowercase hex digits, as the
/// `x-trace-id` response header and the exported spans write it.
pub const TRACE_ID_LABEL: &str = "trace_id";

/// The pprof of `report` with its request labels. Each sample's first value (`samples`,
/// `count`) is the samples taken of its stack, its second (`cpu`, `nanoseconds`) the CPU time
/// they stand for: `report` counts full-rate periods, which differ from samples where the
/// rate was lowered ([`crate::rate`]).
fn encode_gzipped(
    report: &pprof::Report,
    tallies: &HashMap<Frames, Tally>,
    latencies: &HashMap<u64, Served>,
) -> Result<Vec<u8>, CaptureError> {
    let mut profile = report.pprof()?;
    // pprof-rs writes one sample per key of `report.data`, in the map's order.
    if profile.sample.len() == report.data.len() {
        for (sample, frames) in profile.sample.iter_mut().zip(report.data.keys()) {
            if let (Some(first), Some(t)) = (sample.value.first_mut(), tallies.get(frames)) {
                *first = i64::try_from(t.samples).unwrap_or(i64::MAX);
            }
        }
    }
    label_requests(&mut profile, report, latencies);
    let raw = profile
        .write_to_bytes()
        .map_err(|e| CaptureError::Encode(e.to_string()))?;
    gzip(&raw).map_err(|e| CaptureError::Encode(e.to_string()))
}

/// Adds the request labels to the samples of `profile`, built by pprof-rs from `report`: it
/// writes one sample per key of `report.data`, in the map's order, and each key's time stamp
/// is the capture's start plus its tag ([`perf_sampler::symbolize`]).
fn label_requests(
    profile: &mut pprof::protos::Profile,
    report: &pprof::Report,
    latencies: &HashMap<u64, Served>,
) {
    let start = report.timing.start_time;
    let tags: Vec<u64> = report
        .data
        .keys()
        .map(|k| {
            k.sample_timestamp
                .duration_since(start)
                .map_or(request_tag::NO_TAG, |d| d.as_nanos() as u64)
        })
        .collect();
    if tags.len() != profile.sample.len() || tags.iter().all(|&t| t == request_tag::NO_TAG) {
        return;
    }
    let mut string = |s: &str| {
        profile.string_table.push(s.to_owned());
        (profile.string_table.len() - 1) as i64
    };
    let (id_key, latency_key, trace_key, micros) = (
        string(REQUEST_ID_LABEL),
        string(REQUEST_LATENCY_LABEL),
        string(TRACE_ID_LABEL),
        string("microseconds"),
    );
    let mut trace_strings: HashMap<u128, i64> = HashMap::new();
    for (sample, tag) in profile.sample.iter_mut().zip(tags) {
        if tag == request_tag::NO_TAG {
            continue;
        }
        sample.label.push(pprof::protos::Label {
            key: id_key,
            num: tag as i64,
            ..Default::default()
        });
        let Some(served) = latencies.get(&tag) else {
            continue;
        };
        sample.label.push(pprof::protos::Label {
            key: latency_key,
            num: served.latency_us as i64,
            num_unit: micros,
            ..Default::default()
        });
        if let Some(trace) = served.trace_id {
            let str = *trace_strings
                .entry(trace)
                .or_insert_with(|| string(&format!("{trace:032x}")));
            sample.label.push(pprof::protos::Label {
                key: trace_key,
                str,
                ..Default::default()
            });
        }
    }
}

pub(crate) fn gzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::default());
    encoder.write_all(raw)?;
    encoder.finish()
}

fn render_flamegraph(report: &pprof::Report) -> Result<Vec<u8>, CaptureError> {
    if report.data.is_empty() {
        // inferno writes nothing for no stacks; an idle process still deserves a valid image.
        return Ok(empty_flamegraph());
    }
    let mut svg = Vec::new();
    report
        .flamegraph(&mut svg)
        .map_err(|e| CaptureError::Flamegraph(e.to_string()))?;
    Ok(svg)
}

/// A valid SVG saying no samples were recorded.
pub(crate) fn empty_flamegraph() -> Vec<u8> {
    br#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg"><text x="600" y="30" text-anchor="middle">No samples recorded: the process was idle during the capture.</text></svg>
"#
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_before_sampling() {
        assert!(matches!(
            check(Duration::ZERO, 100),
            Err(CaptureError::InvalidDuration(_))
        ));
        assert!(matches!(
            check(Duration::from_secs(301), 100),
            Err(CaptureError::InvalidDuration(_))
        ));
        assert!(matches!(
            check(Duration::from_secs(1), 1001),
            Err(CaptureError::InvalidFrequency(1001))
        ));
        assert!(check(Duration::from_secs(300), 1000).is_ok());
    }

    #[test]
    fn a_sampler_winding_down_at_another_rate_is_waited_for_not_refused() {
        let (segments, _) = broadcast::channel(1);
        *hub() = Some(Hub {
            rate: Rate::fixed(100),
            sampler: Sampler::Signal,
            subscribers: 0,
            segments,
        });
        // Nobody subscribes any more: its thread ends at its segment's end.
        assert!(matches!(
            subscribe(Rate::fixed(250), Sampler::Signal),
            Ok(None)
        ));
        assert!(matches!(
            subscribe(Rate::fixed(100), Sampler::PerfEvent),
            Ok(None)
        ));
        // At its own rate a capture joins it.
        let joined = subscribe(Rate::fixed(100), Sampler::Signal).unwrap();
        assert!(joined.is_some());
        // While it has a subscriber, another rate is refused.
        assert!(matches!(
            subscribe(Rate::fixed(250), Sampler::Signal),
            Err(CaptureError::Busy { .. })
        ));
        drop(joined);
        *hub() = None;
    }

    #[test]
    fn sample_count_reports_loss_and_ratio() {
        let c = SampleCount {
            taken: 95,
            expected: 100,
            excluded: 0,
            reported_lost: 0,
            lowest_hz: None,
        };
        assert_eq!(c.lost(), 5);
        assert_eq!(c.capture_ratio(), Some(0.95));
        let idle = SampleCount::default();
        assert_eq!(idle.capture_ratio(), None);
        // A capture's lowest rate is its segments' lowest; full-rate segments say none.
        let at = |lowest_hz| SampleCount {
            lowest_hz,
            ..SampleCount::default()
        };
        let mut sum = at(None);
        for segment in [at(Some(200)), at(None), at(Some(50)), at(Some(100))] {
            sum.add(segment);
        }
        assert_eq!(sum.lowest_hz, Some(50));
    }
}
