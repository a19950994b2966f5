//! The workers of one distributed run start their load together: they meet on the shared
//! reports directory (`--out`, a Kubernetes Job's shared volume). Each worker writes
//! `<out>/<run-id>/barrier/worker-<I>` holding the unix milliseconds of its arrival, then
//! waits (at most `--start-timeout`) until the files of all N workers are there; every
//! worker then starts at the same instant, the latest arrival plus [`MARGIN`], read from
//! the files themselves, so no worker depends on when it noticed the others.
//!
//! A file older than the timeout before a worker's own arrival is a previous run's with the
//! same run id and does not count. Workers still missing at the earliest arrival plus the
//! timeout (an instant every waiting worker shares) are named; with
//! [`MissingWorkers::Proceed`] the others start [`MARGIN`] after it, otherwise the run fails
//! before sending any load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Between the latest arrival and the common start: time for every waiting worker to see
/// the last file (they look every [`POLL`]).
pub const MARGIN: Duration = Duration::from_secs(1);

/// How often a waiting worker looks at the directory.
const POLL: Duration = Duration::from_millis(20);

/// What a worker does when others have not come within the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingWorkers {
    /// The run fails (exit 1) naming the missing workers, before any load.
    Fail,
    /// The workers that came start together without the others, which are named.
    Proceed,
}

/// How a worker meets the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartBarrier {
    pub timeout: Duration,
    pub missing: MissingWorkers,
}

#[derive(Debug, Error)]
pub enum BarrierError {
    #[error("distributed start: cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("distributed start: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "distributed start: worker(s) {missing:?} of {workers} did not arrive in {dir} within {timeout:?} (--start-timeout); `--missing-workers proceed` starts without them"
    )]
    Missing {
        missing: Vec<u32>,
        workers: u32,
        dir: PathBuf,
        timeout: Duration,
    },
}

/// Where the workers of `run_id` meet.
pub fn dir(out_dir: &Path, run_id: &str) -> PathBuf {
    out_dir.join(run_id).join("barrier")
}

/// Announces worker `index` of `workers` in `dir` and waits for the others; returns the
/// instant all start their load.
pub async fn meet(
    dir: &Path,
    index: u32,
    workers: u32,
    barrier: StartBarrier,
) -> Result<SystemTime, BarrierError> {
    std::fs::create_dir_all(dir).map_err(|source| BarrierError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let arrived = unix_ms(SystemTime::now());
    let mine = dir.join(format!("worker-{index}"));
    // Renamed into place, so another worker never reads half a file.
    let tmp = dir.join(format!(".worker-{index}.tmp"));
    std::fs::write(&tmp, format!("{arrived}\n"))
        .and_then(|()| std::fs::rename(&tmp, &mine))
        .map_err(|source| BarrierError::Write {
            path: mine.clone(),
            source,
        })?;
    let timeout_ms = u64::try_from(barrier.timeout.as_millis()).unwrap_or(u64::MAX);
    let margin_ms = u64::try_from(MARGIN.as_millis()).unwrap_or(u64::MAX);
    let stale_before = arrived.saturating_sub(timeout_ms);
    loop {
        let present = arrivals(dir, workers, stale_before)?;
        if present.len() == workers as usize {
            let latest = present.values().copied().max().unwrap_or(arrived);
            return Ok(at(latest + margin_ms));
        }
        let earliest = present.values().copied().min().unwrap_or(arrived);
        let deadline = earliest.saturating_add(timeout_ms);
        if unix_ms(SystemTime::now()) >= deadline {
            let missing: Vec<u32> = (0..workers).filter(|i| !present.contains_key(i)).collect();
            return match barrier.missing {
                MissingWorkers::Fail => Err(BarrierError::Missing {
                    missing,
                    workers,
                    dir: dir.to_path_buf(),
                    timeout: barrier.timeout,
                }),
                MissingWorkers::Proceed => {
                    eprintln!(
                        "caxton-bench: warning: distributed start: worker(s) {missing:?} of {workers} did not arrive in {} within {:?}; starting without them",
                        dir.display(),
                        barrier.timeout
                    );
                    Ok(at(deadline + margin_ms))
                }
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The arrival of every worker whose file is there and not stale, by index.
fn arrivals(
    dir: &Path,
    workers: u32,
    stale_before: u64,
) -> Result<BTreeMap<u32, u64>, BarrierError> {
    let mut found = BTreeMap::new();
    for i in 0..workers {
        let path = dir.join(format!("worker-{i}"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(BarrierError::Read { path, source }),
        };
        // A file that does not hold a time is not a worker of this build's barrier.
        if let Ok(ms) = text.trim().parse::<u64>()
            && ms >= stale_before
        {
            found.insert(i, ms);
        }
    }
    Ok(found)
}

fn unix_ms(t: SystemTime) -> u64 {
    crate::report::unix_ms(t)
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("caxton-barrier-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn workers_meet_at_the_latest_arrival_plus_the_margin() {
        let d = temp("meet");
        let wait = StartBarrier {
            timeout: Duration::from_secs(10),
            missing: MissingWorkers::Fail,
        };
        let first = tokio::spawn({
            let d = d.clone();
            async move { meet(&d, 0, 2, wait).await.unwrap() }
        });
        // Worker 1 arrives once worker 0's file is there.
        while !d.join("worker-0").exists() {
            tokio::task::yield_now().await;
        }
        let second = meet(&d, 1, 2, wait).await.unwrap();
        let first = first.await.unwrap();
        assert_eq!(first, second);
        let latest: u64 = std::fs::read_to_string(d.join("worker-1"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(unix_ms(second), latest + 1000);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn a_missing_worker_is_named_or_left_behind() {
        let d = temp("missing");
        std::fs::create_dir_all(&d).unwrap();
        // A previous run's file, long stale, does not count.
        std::fs::write(d.join("worker-2"), "1000\n").unwrap();
        let short = |missing| StartBarrier {
            timeout: Duration::from_millis(200),
            missing,
        };
        let e = meet(&d, 0, 3, short(MissingWorkers::Fail))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[1, 2] of 3") && e.contains("--start-timeout"),
            "{e}"
        );
        let before = SystemTime::now();
        let start = meet(&d, 1, 3, short(MissingWorkers::Proceed))
            .await
            .unwrap();
        assert!(start > before, "starts after the deadline");
        std::fs::remove_dir_all(d).unwrap();
    }
}
