//! Pushing CPU profiles to Pyroscope's `POST /ingest` (format `pprof`).
//!
//! The body is the gzipped pprof protobuf as captured: Pyroscope's ingest handler
//! (grafana/pyroscope `pkg/pprof` `RawFromBytes`) opens the body with a gzip reader and falls
//! back to the raw bytes only on a missing gzip header, so gzipped and plain both work, and
//! gzipped is several times smaller on the wire.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::CpuProfile;

/// `spyName` sent with every profile.
pub const SPY_NAME: &str = "caxton";
/// Attempts per profile, the first included: bounded so an unreachable Pyroscope costs a
/// few seconds per window, never a growing backlog.
pub const PUSH_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; doubled before each later one.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Per-request timeout.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a profile was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The endpoint is not a usable base URL.
    #[error("Pyroscope endpoint {endpoint:?} is not a base URL: {reason}")]
    Endpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// Connection, timeout or body error.
    #[error("POST {url}: {source}")]
    Transport {
        /// The ingest URL without its query.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// Pyroscope answered with a non-2xx status.
    #[error("POST {url}: Pyroscope answered {status}: {body}")]
    Status {
        /// The ingest URL without its query.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The start of the response body.
        body: String,
    },
}

impl PushError {
    /// Worth another attempt: transport errors, 429 and 5xx.
    fn is_transient(&self) -> bool {
        match self {
            PushError::Endpoint { .. } => false,
            PushError::Transport { .. } => true,
            PushError::Status { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

/// Where and as what profiles are pushed.
#[derive(Debug, Clone)]
pub struct IngestTarget {
    ingest_url: reqwest::Url,
    name: String,
}

impl IngestTarget {
    /// `endpoint` is Pyroscope's base URL (`http://pyroscope:4040`); the series is
    /// `<application_name>.cpu{k=v,...}` (Pyroscope's key syntax).
    pub fn new(
        endpoint: &str,
        application_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Self, PushError> {
        let bad = |reason: String| PushError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let mut url = reqwest::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
        if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
            return Err(bad("expected http(s)://host[:port][/prefix]".into()));
        }
        // Keep a path prefix (Pyroscope behind a reverse proxy) and append `ingest` to it.
        let path = format!("{}/ingest", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(None);
        let tags: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Self {
            ingest_url: url,
            name: format!("{application_name}.cpu{{{}}}", tags.join(",")),
        })
    }

    /// The `name` query parameter (before URL encoding).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Full ingest URL for `profile`; query values are URL-encoded (`{`, `=`, `,` in `name`).
    pub fn url_for(&self, profile: &CpuProfile) -> reqwest::Url {
        let from = unix_seconds(profile.started);
        // `until` is exclusive in Pyroscope and must exceed `from`.
        let until = unix_seconds(profile.started + profile.duration).max(from + 1);
        let mut url = self.ingest_url.clone();
        url.query_pairs_mut()
            .append_pair("name", &self.name)
            .append_pair("from", &from.to_string())
            .append_pair("until", &until.to_string())
            .append_pair("format", "pprof")
            .append_pair("sampleRate", &profile.frequency_hz.to_string())
            .append_pair("spyName", SPY_NAME);
        url
    }

    /// Pushes `profile` once.
    pub async fn push_once(
        &self,
        client: &reqwest::Client,
        profile: &CpuProfile,
    ) -> Result<(), PushError> {
        let url = self.url_for(profile);
        let shown = self.ingest_url.to_string();
        let response = client
            .post(url)
            .timeout(PUSH_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(profile.pprof_gz.clone())
            .send()
            .await
            .map_err(|source| PushError::Transport {
                url: shown.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(200);
        Err(PushError::Status {
            url: shown,
            status,
            body,
        })
    }

    /// Pushes `profile` with up to [`PUSH_ATTEMPTS`] attempts and exponential backoff;
    /// returns the last error when all failed or the error is permanent (4xx).
    pub async fn push(
        &self,
        client: &reqwest::Client,
        profile: &CpuProfile,
    ) -> Result<(), PushError> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            match self.push_once(client, profile).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < PUSH_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "Pyroscope push failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::SampleCount;

    fn profile() -> CpuProfile {
        CpuProfile {
            pprof_gz: vec![],
            flamegraph_svg: None,
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(10_200),
            frequency_hz: 100,
            sampler: crate::settings::Sampler::PerfEvent,
            samples: SampleCount::default(),
        }
    }

    #[test]
    fn ingest_url_carries_encoded_name_and_window() {
        let labels = BTreeMap::from([
            ("env".to_owned(), "staging".to_owned()),
            ("region".to_owned(), "eu-west-1".to_owned()),
        ]);
        let target =
            IngestTarget::new("http://pyroscope:4040/", "caxton-runtime", &labels).unwrap();
        assert_eq!(
            target.name(),
            "caxton-runtime.cpu{env=staging,region=eu-west-1}"
        );
        let url = target.url_for(&profile());
        assert_eq!(url.path(), "/ingest");
        assert_eq!(
            url.query(),
            Some(
                "name=caxton-runtime.cpu%7Benv%3Dstaging%2Cregion%3Deu-west-1%7D\
                 &from=1700000000&until=1700000010&format=pprof&sampleRate=100&spyName=caxton"
            )
        );
    }

    #[test]
    fn path_prefix_is_kept_and_bad_endpoints_are_named() {
        let target = IngestTarget::new("https://proxy/pyroscope", "app", &BTreeMap::new()).unwrap();
        assert_eq!(target.url_for(&profile()).path(), "/pyroscope/ingest");
        assert_eq!(target.name(), "app.cpu{}");
        let err = IngestTarget::new("pyroscope:4040", "app", &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("pyroscope:4040"), "{err}");
    }
}
