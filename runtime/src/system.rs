//! Process and host readings from /proc for the system-resource metrics. Parsers take text
//! so they are tested on fixtures; `SystemSampler` feeds them the live files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SystemError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("unexpected format in {path}: {what}")]
    Format { path: &'static str, what: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SystemSample {
    pub(crate) rss_bytes: u64,
    /// Process CPU time over wall time and available cores since the previous sample, 0 to 1;
    /// 0 on a sampler's first reading.
    pub(crate) cpu_ratio: f64,
    /// Open file descriptors, not counting the one used to list them.
    pub(crate) open_fds: u64,
    /// Sum of file sizes under the data directory, symlinks not followed (0 when it does not
    /// exist).
    pub(crate) disk_usage_bytes: u64,
    pub(crate) net_rx_bytes: u64,
    pub(crate) net_tx_bytes: u64,
}

/// Linux reports process times in clock ticks; USER_HZ is 100 on every mainstream
/// architecture and Linux keeps it fixed for ABI compatibility, so no libc call is needed.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

pub(crate) struct SystemSampler {
    data_dir: PathBuf,
    cores: f64,
    /// CPU seconds and wall instant of the previous sample.
    last: Option<(f64, Instant)>,
}

fn read(path: &str) -> Result<String, SystemError> {
    std::fs::read_to_string(path).map_err(|source| SystemError::Read {
        path: path.into(),
        source,
    })
}

impl SystemSampler {
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        Self {
            data_dir,
            cores,
            last: None,
        }
    }

    /// One reading. The first call's CPU ratio is 0 rather than the average since process
    /// start: a ratio needs two points, and a start-up average would report the busy start
    /// (module compilation) as current load.
    pub(crate) fn sample(&mut self) -> Result<SystemSample, SystemError> {
        let cpu = parse_cpu_seconds(&read("/proc/self/stat")?)?;
        let now = Instant::now();
        let cpu_ratio = match self.last.replace((cpu, now)) {
            Some((prev_cpu, prev_at)) => cpu_ratio(
                cpu - prev_cpu,
                now.duration_since(prev_at).as_secs_f64(),
                self.cores,
            ),
            None => 0.0,
        };
        let (net_rx_bytes, net_tx_bytes) = parse_net_dev(&read("/proc/self/net/dev")?)?;
        let listed = std::fs::read_dir("/proc/self/fd")
            .map_err(|source| SystemError::Read {
                path: "/proc/self/fd".into(),
                source,
            })?
            .count() as u64;
        // The listing includes the descriptor read_dir itself holds open.
        let open_fds = listed.saturating_sub(1);
        Ok(SystemSample {
            rss_bytes: parse_rss_bytes(&read("/proc/self/status")?)?,
            cpu_ratio,
            open_fds,
            disk_usage_bytes: dir_size(&self.data_dir),
            net_rx_bytes,
            net_tx_bytes,
        })
    }
}

/// Share of all cores used: `cpu_seconds` of process time over `wall_seconds` of `cores`,
/// clamped to [0, 1] (tick rounding can overshoot slightly on short intervals).
pub(crate) fn cpu_ratio(cpu_seconds: f64, wall_seconds: f64, cores: f64) -> f64 {
    if wall_seconds > 0.0 && cores > 0.0 {
        (cpu_seconds / (wall_seconds * cores)).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// utime + stime from /proc/self/stat, in seconds. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the last ')'.
pub(crate) fn parse_cpu_seconds(stat: &str) -> Result<f64, SystemError> {
    let bad = |what: &str| SystemError::Format {
        path: "/proc/self/stat",
        what: what.into(),
    };
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| bad("no ')' closing the command name"))?;
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, SystemError> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| {
                bad(&format!(
                    "field {} (utime/stime) missing or not a number",
                    i + 3
                ))
            })
    };
    Ok((tick(11)? + tick(12)?) / CLOCK_TICKS_PER_SEC)
}

/// VmRSS from /proc/self/status, in bytes.
pub fn parse_rss_bytes(status: &str) -> Result<u64, SystemError> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or(SystemError::Format {
            path: "/proc/self/status",
            what: "VmRSS line missing or not \"<number> kB\"".into(),
        })
}

/// Received and transmitted bytes summed over interfaces, loopback included: in a pod the
/// namespace is the runtime's own, and local benchmarks run over loopback.
pub(crate) fn parse_net_dev(dev: &str) -> Result<(u64, u64), SystemError> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 9 {
            return Err(SystemError::Format {
                path: "/proc/self/net/dev",
                what: line.trim().into(),
            });
        }
        rx = rx.saturating_add(f[0]);
        tx = tx.saturating_add(f[8]);
    }
    Ok((rx, tx))
}

/// The soft open-files limit (`ulimit -n`) from /proc/self/limits; `None` when unlimited or
/// unreadable.
pub(crate) fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

pub(crate) fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63457                63457                processes\n\
                      Max open files            256                  524288               files\n";
        assert_eq!(parse_open_files_limit(limits), Some(256));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert!(open_files_limit().is_some(), "this process has a limit");
    }

    #[test]
    fn stat_is_parsed_from_the_last_parenthesis() {
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_cpu_seconds(stat).unwrap(), 4.0);
        // A name that looks like stat fields must not shift them.
        let stat = "7 (a) 1 2 3) R 1 7 7 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_seconds(stat).unwrap(), 0.1);
        assert!(parse_cpu_seconds("garbage").is_err());
        let err = parse_cpu_seconds("1 (x) S 1 2 3").unwrap_err().to_string();
        assert!(
            err.contains("/proc/self/stat") && err.contains("field 14"),
            "{err}"
        );
    }

    #[test]
    fn rss_fixture() {
        assert_eq!(
            parse_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\nVmSwap:\t0 kB\n").unwrap(),
            2048 * 1024
        );
        let err = parse_rss_bytes("Name:\tkthreadd\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/proc/self/status") && err.contains("VmRSS"),
            "{err}"
        );
    }

    #[test]
    fn network_fixture_sums_every_interface() {
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 100 1 0 0 0 0 0 0 300 1 0 0 0 0 0 0\n  eth0: 20 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev).unwrap(), (120, 305));
        let truncated = "h1\nh2\n  eth0: 20 1 0\n";
        let err = parse_net_dev(truncated).unwrap_err().to_string();
        assert!(
            err.contains("/proc/self/net/dev") && err.contains("eth0"),
            "{err}"
        );
    }

    #[test]
    fn cpu_ratio_divides_by_wall_time_and_cores() {
        assert_eq!(cpu_ratio(1.0, 1.0, 2.0), 0.5);
        assert_eq!(cpu_ratio(3.0, 1.0, 2.0), 1.0);
        assert_eq!(cpu_ratio(-1.0, 1.0, 2.0), 0.0);
        assert_eq!(cpu_ratio(1.0, 0.0, 2.0), 0.0);
    }

    #[test]
    fn live_sample_reads_this_process() {
        let dir = std::env::temp_dir().join(format!("caxton-system-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("top"), [0u8; 24]).unwrap();
        std::fs::write(dir.join("sub/f"), [0u8; 1000]).unwrap();
        let mut s = SystemSampler::new(dir.clone());
        let first = s.sample().unwrap();
        assert!(first.rss_bytes > 0 && first.open_fds > 0);
        assert_eq!(first.disk_usage_bytes, 1024);
        assert_eq!(first.cpu_ratio, 0.0);
        // Burn CPU until the kernel has charged at least two ticks, so the next ratio is > 0.
        let start = parse_cpu_seconds(&read("/proc/self/stat").unwrap()).unwrap();
        let mut x = 0u64;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while parse_cpu_seconds(&read("/proc/self/stat").unwrap()).unwrap() < start + 0.02 {
            assert!(Instant::now() < deadline, "no CPU time charged in 10 s");
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let second = s.sample().unwrap();
        assert!(
            second.cpu_ratio > 0.0 && second.cpu_ratio <= 1.0,
            "{}",
            second.cpu_ratio
        );
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            SystemSampler::new("/nonexistent/caxton".into())
                .sample()
                .unwrap()
                .disk_usage_bytes,
            0
        );
    }
}
