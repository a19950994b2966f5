//! What the Prometheus sinks (remote write, Pushgateway) share: the generic [`Sample`], the
//! error type, the retry policy and its delivery loop, and the on-disk spool that keeps samples
//! a sink could not deliver for a later `caxton-bench push`.
//!
//! The sinks know nothing of the run model: callers (load generator, benchmark gate) turn their
//! results into samples, so one sink serves every producer.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One value of one series at one instant.
///
/// `labels` never contains `__name__` (that is `name`); their order does not matter: the sinks
/// sort them, because Prometheus rejects unsorted label sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    /// JSON (the spool) writes NaN and infinities as the strings "NaN", "+Inf", "-Inf".
    #[serde(with = "json_float")]
    pub value: f64,
    /// Milliseconds since the Unix epoch. The Pushgateway ignores it (it refuses timestamps).
    pub timestamp_ms: i64,
}

impl Sample {
    /// A sample stamped with the current time.
    pub fn now(name: impl Into<String>, value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: Vec::new(),
            value,
            timestamp_ms: now_ms(),
        }
    }

    /// Adds a label (builder style).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Sample {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// The labels sorted by name, after checking the name and label names are valid and unique.
    /// `index` is the sample's position in its batch, for the error message.
    pub(crate) fn sorted_labels(&self, index: usize) -> Result<Vec<(&str, &str)>, SinkError> {
        sorted_labels(&self.name, &self.labels, index)
    }
}

/// A series' labels sorted by name, after checking the metric name and label names are valid
/// and unique: the one check of every sample kind the sinks send. `index` is the sample's
/// position in its batch, for the error message.
pub(crate) fn sorted_labels<'a>(
    name: &str,
    labels: &'a [(String, String)],
    index: usize,
) -> Result<Vec<(&'a str, &'a str)>, SinkError> {
    let invalid = |reason: String| SinkError::InvalidSample {
        index,
        name: name.to_owned(),
        reason,
    };
    if !is_metric_name(name) {
        return Err(invalid(format!(
            "metric name {name:?} must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        )));
    }
    let mut labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (i, (label, _)) in labels.iter().enumerate() {
        if !is_label_name(label) || label.starts_with("__") {
            return Err(invalid(format!(
                "label name {label:?} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with \"__\""
            )));
        }
        if i > 0 && labels[i - 1].0 == *label {
            return Err(invalid(format!("label {label:?} appears twice")));
        }
    }
    Ok(labels)
}

/// JSON has no NaN or infinity (serde_json would write `null` and fail to read it back), yet an
/// error rate of 0/0 is NaN: spell them as Prometheus does.
mod json_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            s.serialize_f64(*value)
        } else if value.is_nan() {
            s.serialize_str("NaN")
        } else if *value > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrName {
        // Not f64: with serde_json's arbitrary_precision an untagged enum sees a number as
        // a map only `Number` reads.
        Number(serde_json::Number),
        Name(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumberOrName::deserialize(d)? {
            NumberOrName::Number(v) => v.as_f64().ok_or_else(|| {
                serde::de::Error::custom(format!("value {v} is out of the range of an f64"))
            }),
            NumberOrName::Name(name) => match name.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" | "Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "value {other:?} is not a number, \"NaN\", \"+Inf\" or \"-Inf\""
                ))),
            },
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a sink did not deliver. Every variant names the URL or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid sink URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("sample #{index} ({name:?}) is invalid: {reason}")]
    InvalidSample {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("invalid grouping for {url}: {reason}")]
    InvalidGrouping { url: String, reason: String },
    #[error("{url} rejected the samples with HTTP {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    #[error("gave up sending to {url} after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("cannot build the HTTP client for {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot encode the samples for {url}: {reason}")]
    Encode { url: String, reason: String },
    #[error("spool file {path}: {source}")]
    SpoolIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {path}:{line}: {source}")]
    SpoolParse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// How often and how patiently a sink retries.
///
/// Retried: connection and timeout errors, HTTP 5xx and 429. Any other 4xx means the request
/// itself is wrong, so it fails at once with [`SinkError::Rejected`].
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1). Default 5.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles after each failure. Default 250 ms.
    pub initial_backoff: Duration,
    /// Cap of one wait, also of a server's `Retry-After`. Default 4 s.
    pub max_backoff: Duration,
    /// Timeout of one HTTP request, connect included. Default 5 s.
    pub request_timeout: Duration,
    /// Timeout of establishing a connection. Default 2 s, so that a black-holed address costs
    /// about 14 s over the default 5 attempts rather than half a minute.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts with 0.25 + 0.5 + 1 + 2 s between them: a Prometheus restarting during a
    /// push is waited for; a refused connection gives up after about 4 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    pub(crate) fn client(&self, url: &str) -> Result<reqwest::Client, SinkError> {
        reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout.min(self.request_timeout))
            .build()
            .map_err(|source| SinkError::Client {
                url: url.to_owned(),
                source,
            })
    }
}

/// Sends the request built by `request` until it succeeds, fails for good, or the policy's
/// attempts run out. Returns the number of attempts made. `shown_url` is the URL for messages
/// (credentials removed).
pub(crate) async fn deliver(
    policy: &RetryPolicy,
    shown_url: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<u32, SinkError> {
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (last, retry_after) = match request().send().await {
            Ok(response) if response.status().is_success() => return Ok(attempt),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response_text(response).await;
                if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err(SinkError::Rejected {
                        url: shown_url.to_owned(),
                        status: status.as_u16(),
                        body,
                    });
                }
                (format!("HTTP {}: {body}", status.as_u16()), retry_after)
            }
            Err(err) => (error_chain(&err), None),
        };
        if attempt >= max_attempts {
            return Err(SinkError::GaveUp {
                url: shown_url.to_owned(),
                attempts: attempt,
                last,
            });
        }
        let wait =
            retry_after.map_or_else(|| policy.backoff(attempt), |w| w.min(policy.max_backoff));
        tokio::time::sleep(wait).await;
    }
}

/// The response body for an error message, trimmed and bounded: a proxy's HTML error page
/// must not flood the terminal.
async fn response_text(response: reqwest::Response) -> String {
    const MAX: usize = 512;
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// reqwest's top-level message ("error sending request") hides the cause ("connection
/// refused"): show the whole chain.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The URL as shown in messages: without user and password.
pub(crate) fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which then have none to hide.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// Parses a sink URL: http or https, with a host.
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url, SinkError> {
    let invalid = |reason: String| SinkError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(parsed)
}

/// Appends `samples` to the spool file at `path` as JSON lines (created if missing), so that
/// samples from several failed pushes accumulate until `caxton-bench push` sends them.
pub fn spool(samples: &[Sample], path: &Path) -> Result<(), SinkError> {
    let io_err = |source| SinkError::SpoolIo {
        path: path.to_owned(),
        source,
    };
    let mut text = Vec::with_capacity(samples.len() * 128);
    for sample in samples {
        serde_json::to_writer(&mut text, sample).map_err(|e| io_err(std::io::Error::other(e)))?;
        text.push(b'\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err)?;
    // One write of whole lines, then fsync: samples are either in the spool or reported lost.
    file.write_all(&text).map_err(io_err)?;
    file.sync_data().map_err(io_err)
}

/// Reads every sample of a spool file written by [`spool`]. Blank lines are skipped; any other
/// line that does not parse is an error naming the file and line.
pub fn load_spool(path: &Path) -> Result<Vec<Sample>, SinkError> {
    let file = std::fs::File::open(path).map_err(|source| SinkError::SpoolIo {
        path: path.to_owned(),
        source,
    })?;
    let mut samples = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| SinkError::SpoolIo {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let sample = serde_json::from_str(&line).map_err(|source| SinkError::SpoolParse {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_checked() {
        let s = Sample::now("m", 1.0).label("b", "2").label("a", "1");
        assert_eq!(s.sorted_labels(0).unwrap(), vec![("a", "1"), ("b", "2")]);

        let dup = Sample::now("m", 1.0).label("a", "1").label("a", "2");
        let err = dup.sorted_labels(3).unwrap_err().to_string();
        assert!(err.contains("sample #3") && err.contains("twice"), "{err}");

        let reserved = Sample::now("m", 1.0).label("__name__", "x");
        assert!(reserved.sorted_labels(0).is_err());
        assert!(Sample::now("1bad", 1.0).sorted_labels(0).is_err());
        assert!(Sample::now("bad-name", 1.0).sorted_labels(0).is_err());
        assert!(Sample::now("ok:name_1", 1.0).sorted_labels(0).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, vec![250, 500, 1000, 2000, 4000, 4000]);
    }

    #[test]
    fn shown_url_hides_credentials() {
        let url = reqwest::Url::parse("http://user:secret@prom:9090/api/v1/write").unwrap();
        assert_eq!(shown_url(&url), "http://prom:9090/api/v1/write");
    }

    #[test]
    fn spool_appends_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unsent.jsonl");
        let a = Sample::now("caxton_bench_rps", 12.5).label("run_id", "r1");
        let b = Sample::now("caxton_bench_users", 3.0).label("stage", "a \"quoted\"\nstage");
        spool(std::slice::from_ref(&a), &path).unwrap();
        spool(std::slice::from_ref(&b), &path).unwrap();
        assert_eq!(load_spool(&path).unwrap(), vec![a.clone(), b.clone()]);

        let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(|v| Sample::now("m", v));
        spool(&odd, &path).unwrap();
        let back = load_spool(&path).unwrap();
        assert_eq!(back.len(), 5);
        assert!(back[2].value.is_nan());
        assert_eq!(back[3].value, f64::INFINITY);
        assert_eq!(back[4].value, f64::NEG_INFINITY);
    }

    #[test]
    fn bad_spool_line_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unsent.jsonl");
        let good = serde_json::to_string(&Sample::now("m", 1.0)).unwrap();
        std::fs::write(&path, format!("{good}\n\n{{\"name\":\"m\",\"oops\":1}}\n")).unwrap();
        let err = load_spool(&path).unwrap_err().to_string();
        assert!(err.contains("unsent.jsonl:3"), "{err}");
        assert!(err.contains("oops"), "{err}");

        let missing = load_spool(&dir.path().join("none.jsonl")).unwrap_err();
        assert!(missing.to_string().contains("none.jsonl"), "{missing}");
    }

    /// Answers each HTTP request on a loopback port with the next status of `script` (the last
    /// one repeats) and counts the requests. Not a Prometheus stand-in: the retry policy is
    /// about statuses (503, 429) that a real Prometheus cannot be made to return on demand.
    async fn scripted_server(
        script: &'static [(u16, &'static str)],
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (status, body) = script[n.min(script.len() - 1)];
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head and the Content-Length body so the client sees a clean reply.
                while let Ok(read) = conn.read(&mut buf).await {
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..read]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nretry-after: 0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn quick_policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        }
    }

    async fn send(url: &str, policy: &RetryPolicy) -> Result<u32, SinkError> {
        let client = policy.client(url).unwrap();
        deliver(policy, url, || client.post(url).body("x")).await
    }

    #[tokio::test]
    async fn retries_5xx_and_429_until_success() {
        let (url, count) =
            scripted_server(&[(503, "starting"), (429, "slow down"), (204, "")]).await;
        assert_eq!(send(&url, &quick_policy(5)).await.unwrap(), 3);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_4xx_fails_at_once_with_status_and_body() {
        let (url, count) = scripted_server(&[(400, "out of order sample"), (204, "")]).await;
        let err = send(&url, &quick_policy(5)).await.unwrap_err();
        assert!(
            matches!(&err, SinkError::Rejected { status: 400, body, .. } if body == "out of order sample"),
            "{err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn persistent_5xx_gives_up_after_the_configured_attempts() {
        let (url, count) = scripted_server(&[(503, "tsdb not ready")]).await;
        let err = send(&url, &quick_policy(3)).await.unwrap_err().to_string();
        assert!(
            err.contains("after 3 attempts") && err.contains(&url),
            "{err}"
        );
        assert!(err.contains("HTTP 503: tsdb not ready"), "{err}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
