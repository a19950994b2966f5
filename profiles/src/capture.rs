//! One CPU capture with pprof-rs: the process-wide sampler, its single-user lock, and the
//! encoded results (gzipped pprof protobuf, SVG flamegraph).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message;
use tokio::sync::{Mutex, MutexGuard};

use crate::settings::{MAX_PUSH_INTERVAL, SAMPLE_RATE_RANGE};

/// Longest capture the endpoints and the collector accept.
pub const MAX_CAPTURE_SECONDS: u64 = 300;

/// Libraries whose frames are never unwound from the SIGPROF handler: unwinding through them is
/// not async-signal-safe (pprof-rs's recommendation; a sample landing there is skipped).
pub const UNWIND_BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// pprof-rs has one global profiler per process: this lock makes "one capture at a time"
/// explicit instead of surfacing pprof's `Running` error.
static SAMPLER: Mutex<()> = Mutex::const_new(());
/// Set while an on-demand capture holds or waits for the sampler, so a second one is refused
/// at once instead of queueing.
static ON_DEMAND: AtomicBool = AtomicBool::new(false);

/// Why a capture did not produce a profile.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Another capture holds the sampler (HTTP 409).
    #[error("a CPU profile is already being captured by {holder}; only one capture runs at a time")]
    Busy {
        /// Who holds it: another on-demand capture or continuous profiling.
        holder: &'static str,
    },
    /// Duration outside 1..=300 s.
    #[error("capture duration {0:?} is outside 1s..=300s")]
    InvalidDuration(Duration),
    /// Frequency outside 1..=1000 Hz.
    #[error("sample rate {0} Hz is outside 1..=1000")]
    InvalidFrequency(u32),
    /// pprof-rs could not start the profiler or build its report.
    #[error("pprof-rs: {0}")]
    Pprof(#[from] pprof::Error),
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

/// Sample accounting of one capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleCount {
    /// Samples pprof-rs recorded.
    pub taken: u64,
    /// CPU seconds the process used during the capture times the frequency.
    pub expected: u64,
}

impl SampleCount {
    /// Samples the process's CPU time called for but pprof-rs did not record.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.taken)
    }

    /// `taken / expected`; `None` when the process was idle.
    pub fn capture_ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.taken as f64 / self.expected as f64)
    }
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
    /// Sampling frequency in Hz.
    pub frequency_hz: u32,
    /// Sample accounting.
    pub samples: SampleCount,
}

/// Who asks for the sampler: decides between refusing and waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requester {
    /// `/debug/pprof/*`, `capture_cpu`: a second one is refused.
    OnDemand,
    /// The continuous loop: queues behind on-demand captures (the lock is FIFO-fair).
    Continuous,
}

/// Holds the sampler for one capture.
pub(crate) struct SamplerLease {
    _guard: MutexGuard<'static, ()>,
    on_demand: bool,
}

impl Drop for SamplerLease {
    fn drop(&mut self) {
        if self.on_demand {
            ON_DEMAND.store(false, Ordering::Release);
        }
    }
}

/// Clears the on-demand flag if the wait for the sampler is abandoned.
struct OnDemandClaim;

impl Drop for OnDemandClaim {
    fn drop(&mut self) {
        ON_DEMAND.store(false, Ordering::Release);
    }
}

pub(crate) async fn acquire(requester: Requester) -> Result<SamplerLease, CaptureError> {
    match requester {
        Requester::Continuous => Ok(SamplerLease {
            _guard: SAMPLER.lock().await,
            on_demand: false,
        }),
        Requester::OnDemand => {
            if ON_DEMAND.swap(true, Ordering::AcqRel) {
                return Err(CaptureError::Busy {
                    holder: "another on-demand capture",
                });
            }
            let claim = OnDemandClaim;
            // Only continuous mode can hold the sampler now; its window ends within
            // MAX_PUSH_INTERVAL and the FIFO lock hands the sampler to us before its next one.
            let guard = match SAMPLER.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    tokio::time::timeout(MAX_PUSH_INTERVAL + Duration::from_secs(5), SAMPLER.lock())
                        .await
                        .map_err(|_| CaptureError::Busy {
                            holder: "continuous profiling",
                        })?
                }
            };
            std::mem::forget(claim);
            Ok(SamplerLease {
                _guard: guard,
                on_demand: true,
            })
        }
    }
}

/// Whether a capture currently holds the sampler (a readiness probe for callers and tests).
pub fn capture_in_progress() -> bool {
    SAMPLER.try_lock().is_err()
}

/// Captures a CPU profile for `duration` at `hz`, with its flamegraph.
///
/// Fails with [`CaptureError::Busy`] while another on-demand capture runs; waits for the end of
/// the current continuous-mode window. Dropping the future stops the sampler.
pub async fn capture_cpu(duration: Duration, hz: u32) -> Result<CpuProfile, CaptureError> {
    check(duration, hz)?;
    let lease = acquire(Requester::OnDemand).await?;
    run(lease, duration, hz, true).await
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

/// Samples for `duration` while holding `lease`; the report is built on a blocking thread
/// (symbolization is CPU-bound).
pub(crate) async fn run(
    lease: SamplerLease,
    duration: Duration,
    hz: u32,
    flamegraph: bool,
) -> Result<CpuProfile, CaptureError> {
    let frequency = i32::try_from(hz).map_err(|_| CaptureError::InvalidFrequency(hz))?;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(&UNWIND_BLOCKLIST)
        .build()?;
    // Measured once the timer is armed: building the guard walks the loaded libraries and
    // warms the unwinder, CPU time no sample could cover.
    let cpu_before = process_cpu_time();
    let started = SystemTime::now();
    tokio::time::sleep(duration).await;
    let cpu_used = process_cpu_time().saturating_sub(cpu_before);
    let elapsed = started.elapsed().unwrap_or(duration);

    tokio::task::spawn_blocking(move || {
        // Build the report before the guard drops: stopping the profiler discards its data.
        let report = guard.report().build();
        drop(guard);
        drop(lease);
        let report = report?;
        let taken: u64 = report.data.values().map(|&n| n.max(0) as u64).sum();
        let expected = (cpu_used.as_secs_f64() * f64::from(hz)).floor() as u64;
        let svg = flamegraph.then(|| render_flamegraph(&report)).transpose()?;
        let pprof_gz = encode_gzipped(&report)?;
        Ok(CpuProfile {
            pprof_gz,
            flamegraph_svg: svg,
            started,
            duration: elapsed,
            frequency_hz: hz,
            samples: SampleCount { taken, expected },
        })
    })
    .await
    .map_err(|e| CaptureError::Task(e.to_string()))?
}

fn encode_gzipped(report: &pprof::Report) -> Result<Vec<u8>, CaptureError> {
    let profile = report.pprof()?;
    let raw = profile
        .write_to_bytes()
        .map_err(|e| CaptureError::Encode(e.to_string()))?;
    gzip(&raw).map_err(|e| CaptureError::Encode(e.to_string()))
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

/// CPU time consumed by all threads of this process: SIGPROF (ITIMER_PROF) fires per `1/hz`
/// of exactly this clock, so it gives the number of samples a lossless profiler would take.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
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
    fn sample_count_reports_loss_and_ratio() {
        let c = SampleCount {
            taken: 95,
            expected: 100,
        };
        assert_eq!(c.lost(), 5);
        assert_eq!(c.capture_ratio(), Some(0.95));
        let idle = SampleCount {
            taken: 0,
            expected: 0,
        };
        assert_eq!(idle.capture_ratio(), None);
    }

    #[test]
    fn process_cpu_time_advances_with_work() {
        let before = process_cpu_time();
        let mut x = 0u64;
        while process_cpu_time() - before < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_time() > before);
    }
}
