//! Which threads of this process are the profiled target, and how much CPU they used.
//!
//! A load generator that embeds the runtime (`caxton-bench` without `--target`) shares one
//! process with it. Its own threads must neither appear in the target's profile nor count
//! towards the samples the target's CPU time calls for, so a process can declare which
//! thread names belong to the target ([`set_target_threads`]); captures then keep only
//! those threads' samples and measure only their CPU time.

use std::sync::OnceLock;
use std::time::Duration;

/// Decides from a thread's name (at most 15 bytes on Linux) whether it is the target's.
pub type ThreadFilter = fn(&str) -> bool;

static TARGET_THREADS: OnceLock<ThreadFilter> = OnceLock::new();

/// Declares the target's threads for every later capture of this process. Only the first
/// call takes effect (a process embeds one target); returns whether this one did.
pub fn set_target_threads(filter: ThreadFilter) -> bool {
    TARGET_THREADS.set(filter).is_ok()
}

/// Whether samples of the thread `name` belong in the profile: every thread unless a filter
/// was declared.
pub(crate) fn is_target(name: &str) -> bool {
    TARGET_THREADS.get().is_none_or(|f| f(name))
}

/// Whether a filter was declared, i.e. the process holds more than the target.
pub fn filtered() -> bool {
    TARGET_THREADS.get().is_some()
}

/// CPU time (user + system) used so far by this process's threads, split by [`is_target`]:
/// `(target, other)`. Threads that ended are missing from both sides, so callers take
/// differences over windows in which the long-lived threads stay up.
pub fn cpu_split() -> (Duration, Duration) {
    let mut target = Duration::ZERO;
    let mut other = Duration::ZERO;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (process_cpu(), Duration::ZERO);
    };
    let tick = clock_tick();
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, cpu)) = parse_stat(&stat, tick) else {
            continue;
        };
        // The scheduler's own nanoseconds where available: `stat` truncates each thread to
        // whole clock ticks (10 ms), an error of up to 10 samples per thread and reading at
        // 1000 Hz.
        let cpu = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| parse_schedstat(&s))
            .unwrap_or(cpu);
        if is_target(name) {
            target += cpu;
        } else {
            other += cpu;
        }
    }
    (target, other)
}

/// The target's CPU time: the whole process when no filter was declared (exact, from the
/// process clock), else the sum over its threads.
pub(crate) fn target_cpu() -> Duration {
    if filtered() {
        cpu_split().0
    } else {
        process_cpu()
    }
}

/// `comm` and utime + stime of one `/proc/<pid>/task/<tid>/stat` line. `comm` may hold
/// spaces and parentheses, so it is the text between the first `(` and the last `)`.
fn parse_stat(stat: &str, tick: f64) -> Option<(&str, Duration)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // Fields after comm: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, Duration::from_secs_f64((utime + stime) as f64 / tick)))
}

/// The first field of `/proc/<pid>/task/<tid>/schedstat`: time on the CPU, nanoseconds.
fn parse_schedstat(schedstat: &str) -> Option<Duration> {
    let ns: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn clock_tick() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU time consumed by all threads of this process: SIGPROF (ITIMER_PROF) fires per `1/hz`
/// of exactly this clock, so it gives the number of samples a lossless profiler would take.
pub(crate) fn process_cpu() -> Duration {
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
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (tokio (rt) w) S 1 2 3 0 -1 4194624 10 0 0 0 250 50 0 0 20 0 9 0";
        let (name, cpu) = parse_stat(line, 100.0).unwrap();
        assert_eq!(name, "tokio (rt) w");
        assert_eq!(cpu, Duration::from_secs(3));
        assert!(parse_stat("garbage", 100.0).is_none());
        assert_eq!(
            parse_schedstat("1234567890 5678 42\n"),
            Some(Duration::from_nanos(1_234_567_890))
        );
        assert!(parse_schedstat("").is_none());
    }

    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn a_busy_named_thread_shows_in_its_own_share() {
        let handle = std::thread::Builder::new()
            .name("split-busy".into())
            .spawn(|| {
                // Spin on this thread's own CPU clock: wall time says nothing on a busy machine.
                let mut x = 0u64;
                while thread_cpu() < Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                let (target, other) = cpu_split();
                (target + other, x)
            })
            .unwrap();
        let (total, _) = handle.join().unwrap();
        // Tick resolution is 10 ms; the busy thread alone used 300 ms.
        assert!(total >= Duration::from_millis(250), "{total:?}");
    }
}
