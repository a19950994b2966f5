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
pub struct SystemSample {
    pub rss_bytes: u64,
    /// Process CPU time over wall time and available cores since the previous sample, 0 to 1.
    pub cpu_ratio: f64,
    pub open_fds: u64,
    /// Sum of file sizes under the data directory (0 when it does not exist).
    pub disk_usage_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// Linux reports process times in clock ticks; USER_HZ is 100 on every mainstream
/// architecture and Linux keeps it fixed for ABI compatibility, so no libc call is needed.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

pub struct SystemSampler {
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
    pub fn new(data_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        Self {
            data_dir,
            cores,
            last: None,
        }
    }

    /// One reading. The first call's CPU ratio is 0: a ratio needs two points.
    pub fn sample(&mut self) -> Result<SystemSample, SystemError> {
        let cpu = parse_cpu_seconds(&read("/proc/self/stat")?)?;
        let now = Instant::now();
        let cpu_ratio = match self.last.replace((cpu, now)) {
            Some((prev_cpu, prev_at)) => {
                let wall = now.duration_since(prev_at).as_secs_f64();
                if wall > 0.0 {
                    ((cpu - prev_cpu) / (wall * self.cores)).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        let (net_rx_bytes, net_tx_bytes) = parse_net_dev(&read("/proc/self/net/dev")?)?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map_err(|source| SystemError::Read {
                path: "/proc/self/fd".into(),
                source,
            })?
            .count() as u64;
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

/// utime + stime from /proc/self/stat, in seconds. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_cpu_seconds(stat: &str) -> Result<f64, SystemError> {
    let bad = |what: &str| SystemError::Format {
        path: "/proc/self/stat",
        what: what.into(),
    };
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| bad("no ')'"))?;
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, SystemError> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| bad("utime/stime"))
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
            what: "no VmRSS line".into(),
        })
}

/// Received and transmitted bytes summed over interfaces, loopback included: in a pod the
/// namespace is the runtime's own, and local benchmarks run over loopback.
pub fn parse_net_dev(dev: &str) -> Result<(u64, u64), SystemError> {
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
    fn stat_is_parsed_from_the_last_parenthesis() {
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_cpu_seconds(stat).unwrap(), 4.0);
        assert!(parse_cpu_seconds("garbage").is_err());
    }

    #[test]
    fn rss_and_network_fixtures() {
        assert_eq!(
            parse_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n").unwrap(),
            2048 * 1024
        );
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 100 1 0 0 0 0 0 0 300 1 0 0 0 0 0 0\n  eth0: 20 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev).unwrap(), (120, 305));
    }

    #[test]
    fn live_sample_reads_this_process() {
        let dir = std::env::temp_dir().join(format!("caxton-system-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), [0u8; 1000]).unwrap();
        let mut s = SystemSampler::new(dir.clone());
        let first = s.sample().unwrap();
        assert!(first.rss_bytes > 0 && first.open_fds > 0);
        assert_eq!(first.disk_usage_bytes, 1000);
        assert_eq!(first.cpu_ratio, 0.0);
        let second = s.sample().unwrap();
        assert!((0.0..=1.0).contains(&second.cpu_ratio));
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
