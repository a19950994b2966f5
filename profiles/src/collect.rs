//! The capture client: fetch a CPU profile from a `/debug/pprof/profile` endpoint (this crate's
//! or any Go-compatible one) and store it with its flamegraph.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::capture::{MAX_CAPTURE_SECONDS, gzip};
use crate::endpoints::PROFILE_PATH;
use crate::folded::{self, FoldError};

/// Slack on top of the capture length for symbolization and transfer.
const RESPONSE_SLACK: Duration = Duration::from_secs(60);

/// Files written by [`collect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// `<out_dir>/<timestamp>.pb.gz`: the gzipped pprof protobuf.
    pub pprof_path: PathBuf,
    /// `<out_dir>/<timestamp>.svg`: its flamegraph.
    pub flamegraph_path: PathBuf,
    /// Samples in the profile (0 means the target was idle).
    pub samples: u64,
    /// Sampling frequency, Hz, from the profile's period (0 when it has none).
    pub frequency_hz: u32,
    /// The lowest rate the target sampled at, Hz, when it lowered the rate to keep within its
    /// sample budget and says so (this crate's perf_event sampler does).
    pub lowest_hz: Option<u32>,
    /// Samples the target's CPU time called for that were not taken, when the endpoint
    /// says (this crate's does; Go's does not).
    pub lost: Option<u64>,
    /// Samples of the endpoint's other threads left out, when it says.
    pub excluded: Option<u64>,
    /// The sampler that took the profile (`perf_event`, `signal`), when the endpoint says.
    pub sampler: Option<String>,
}

/// Why a collection failed; every variant names the URL or file.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// `seconds` outside 1..=300.
    #[error("capture length {0} s is outside 1..=300")]
    InvalidSeconds(u64),
    /// The target is not an http(s) base URL.
    #[error("target {target:?} is not an http(s) URL: {reason}")]
    InvalidTarget {
        /// What was given.
        target: String,
        /// Why it was refused.
        reason: String,
    },
    /// Connection, timeout or body error.
    #[error("GET {url}: {source}")]
    Http {
        /// The profile URL.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The target answered with an error status (409: a capture is already running there).
    #[error("GET {url}: {status}: {body}")]
    Status {
        /// The profile URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The start of the response body.
        body: String,
    },
    /// The body is not a pprof profile.
    #[error("GET {url}: {source}")]
    Profile {
        /// The profile URL.
        url: String,
        /// What is wrong with it.
        #[source]
        source: FoldError,
    },
    /// Writing the output failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Captures `seconds` of CPU profile from `target` (e.g. `http://127.0.0.1:6060`) and writes
/// `<timestamp>.pb.gz` and `<timestamp>.svg` into `out_dir` (created if missing). Both files
/// come from the same capture: the flamegraph is rendered locally from the downloaded profile.
pub async fn collect(
    target: &str,
    seconds: u64,
    out_dir: &Path,
) -> Result<Collected, CollectError> {
    if seconds == 0 || seconds > MAX_CAPTURE_SECONDS {
        return Err(CollectError::InvalidSeconds(seconds));
    }
    let url = profile_url(target, seconds)?;
    let shown = url.to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(seconds) + RESPONSE_SLACK)
        .build()
        .map_err(|source| CollectError::Http {
            url: shown.clone(),
            source,
        })?;
    let started = SystemTime::now();
    let http = |source| CollectError::Http {
        url: shown.clone(),
        source,
    };
    let response = client.get(url.clone()).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(500);
        return Err(CollectError::Status {
            url: shown,
            status,
            body,
        });
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let lost = header(crate::endpoints::LOST_HEADER);
    let lowest_hz =
        header(crate::endpoints::LOWEST_RATE_HEADER).and_then(|v| u32::try_from(v).ok());
    let excluded = header(crate::endpoints::EXCLUDED_HEADER);
    let sampler = response
        .headers()
        .get(crate::endpoints::SAMPLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.map_err(http)?;
    let profile = folded::decode_pprof(&bytes).map_err(|source| CollectError::Profile {
        url: shown.clone(),
        source,
    })?;
    let svg = folded::flamegraph_svg(&profile).map_err(|source| CollectError::Profile {
        url: shown.clone(),
        source,
    })?;
    let samples = folded::sample_count(&profile);
    // pprof's period is nanoseconds of CPU per sample for a CPU profile.
    let frequency_hz = u32::try_from(1_000_000_000 / profile.period.max(1)).unwrap_or(0);
    // Keep the `.pb.gz` name honest for servers that answer uncompressed.
    let pprof_gz = if bytes.starts_with(&[0x1f, 0x8b]) {
        bytes.to_vec()
    } else {
        gzip(&bytes).map_err(|source| CollectError::Io {
            path: out_dir.to_owned(),
            source,
        })?
    };

    tokio::fs::create_dir_all(out_dir)
        .await
        .map_err(|source| CollectError::Io {
            path: out_dir.to_owned(),
            source,
        })?;
    let stem = file_stem(started);
    let pprof_path = out_dir.join(format!("{stem}.pb.gz"));
    let flamegraph_path = out_dir.join(format!("{stem}.svg"));
    for (path, data) in [(&pprof_path, &pprof_gz), (&flamegraph_path, &svg)] {
        tokio::fs::write(path, data)
            .await
            .map_err(|source| CollectError::Io {
                path: path.clone(),
                source,
            })?;
    }
    Ok(Collected {
        pprof_path,
        flamegraph_path,
        samples,
        frequency_hz: if profile.period > 0 { frequency_hz } else { 0 },
        lost,
        excluded,
        sampler,
        lowest_hz,
    })
}

fn profile_url(target: &str, seconds: u64) -> Result<reqwest::Url, CollectError> {
    let invalid = |reason: String| CollectError::InvalidTarget {
        target: target.to_owned(),
        reason,
    };
    let mut url = reqwest::Url::parse(target).map_err(|e| invalid(e.to_string()))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("expected http(s)://host:port".into()));
    }
    let path = format!("{}{PROFILE_PATH}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some(&format!("seconds={seconds}")));
    Ok(url)
}

/// `20260101T120000.123Z`: sortable, unique per millisecond, no `:` (awkward in file names).
fn file_stem(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_file_names() {
        let url = profile_url("http://127.0.0.1:6060/", 30).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:6060/debug/pprof/profile?seconds=30"
        );
        assert!(matches!(
            profile_url("127.0.0.1:6060", 30),
            Err(CollectError::InvalidTarget { .. })
        ));
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(file_stem(at), "20231114T221320.123Z");
    }
}
