//! Prometheus remote-write 1.0 client: protobuf `WriteRequest`, snappy block compression,
//! POST to `/api/v1/write`, retry with backoff.
//!
//! Input is the generic [`Sample`] (name, labels, value, timestamp), so the load generator and
//! the benchmark gate share this sink without it knowing their models.
//!
//! ```no_run
//! # async fn demo() -> Result<(), caxton_reports::remote_write::SinkError> {
//! use caxton_reports::remote_write::{RemoteWriteOptions, RemoteWriter, Sample};
//! let writer = RemoteWriter::new("http://prometheus:9090", RemoteWriteOptions::default())?;
//! let sample = Sample::now("caxton_bench_rps", 812.0).label("run_id", "2026-11-24T02:00");
//! writer.write(&[sample]).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use prost::Message;

pub use crate::native_histogram::HistogramSample;
use crate::sink::{self, RetryPolicy};
pub use crate::sink::{Sample, SinkError, load_spool, now_ms, spool};

/// Paths under which a receiver takes remote write; a URL ending in one of them is used as
/// given, any other URL is taken as a Prometheus base URL and gets `/api/v1/write` appended.
/// (`/api/v1/push` is Mimir's and Cortex's, `/api/v1/receive` Thanos'.)
const WRITE_PATHS: [&str; 3] = ["/api/v1/write", "/api/v1/push", "/api/v1/receive"];

/// The remote-write 1.0 protobuf messages (its own module, [`crate::wire`]).
pub use crate::wire;

/// Options of a [`RemoteWriter`]. `Default` gives the documented defaults of [`RetryPolicy`]
/// and no extra headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteWriteOptions {
    pub retry: RetryPolicy,
    /// Sent with every request, e.g. `X-Scope-OrgID` for a multi-tenant receiver or
    /// `Authorization`. (User and password in the URL become basic auth.)
    pub headers: Vec<(String, String)>,
}

/// What one successful [`RemoteWriter::write`] delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Distinct series (name and label set) in the request.
    pub series: usize,
    /// Samples in the request, after dropping same-series same-timestamp duplicates.
    pub samples: usize,
    /// HTTP attempts it took; 1 when the first one succeeded, 0 when there was nothing to send.
    pub attempts: u32,
}

/// A remote-write client bound to one receiver URL.
#[derive(Debug, Clone)]
pub struct RemoteWriter {
    client: reqwest::Client,
    url: reqwest::Url,
    shown_url: String,
    options: RemoteWriteOptions,
    /// Whether the receiver takes native histograms, asked once (clones share the answer).
    native_histograms: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

impl RemoteWriter {
    /// `url` is either a Prometheus base URL (`http://prometheus:9090`, optionally with a route
    /// prefix) or the full write endpoint (`.../api/v1/write`). Fails on a URL that is not
    /// http(s) or a header that is not valid HTTP.
    pub fn new(url: &str, options: RemoteWriteOptions) -> Result<RemoteWriter, SinkError> {
        let url = write_url(url)?;
        let shown_url = sink::shown_url(&url);
        for (name, value) in &options.headers {
            let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err(SinkError::InvalidUrl {
                    url: shown_url,
                    reason: format!("header {name:?} is not a valid HTTP header"),
                });
            }
        }
        let client = options.retry.client(&shown_url)?;
        Ok(RemoteWriter {
            client,
            url,
            shown_url,
            options,
            native_histograms: Default::default(),
        })
    }

    /// Whether the receiver is a Prometheus running with `--enable-feature=native-histograms`,
    /// read once from its `/api/v1/status/flags`. Any other answer (another receiver, no such
    /// endpoint, no answer) means no: the classic `_bucket` series then carry the latency alone.
    pub async fn accepts_native_histograms(&self) -> bool {
        *self
            .native_histograms
            .get_or_init(|| async {
                let mut flags = self.url.clone();
                let Some(base) = flags.path().strip_suffix(WRITE_PATHS[0]) else {
                    return false;
                };
                flags.set_path(&format!("{base}/api/v1/status/flags"));
                flags.set_query(None);
                let mut request = self.client.get(flags);
                for (name, value) in &self.options.headers {
                    request = request.header(name, value);
                }
                let answer = async {
                    let body: serde_json::Value =
                        request.send().await?.error_for_status()?.json().await?;
                    Ok::<_, reqwest::Error>(body)
                };
                match answer.await {
                    Ok(body) => body["data"]["enable-feature"]
                        .as_str()
                        .is_some_and(|f| f.split(',').any(|f| f.trim() == "native-histograms")),
                    Err(_) => false,
                }
            })
            .await
    }

    /// The write endpoint, as used in messages (without credentials).
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Sends `samples` in one request, retrying per the options' [`RetryPolicy`].
    ///
    /// Samples of the same series are sent in timestamp order; of several with the same series
    /// and timestamp the last one wins. An invalid sample (bad name, duplicate or reserved
    /// label) fails the whole call before anything is sent. Receiver-side rejections (HTTP 4xx
    /// other than 429, e.g. an out-of-order sample) are [`SinkError::Rejected`], never retried.
    pub async fn write(&self, samples: &[Sample]) -> Result<WriteOutcome, SinkError> {
        self.write_with_histograms(samples, &[]).await
    }

    /// [`write`](Self::write) with native histograms in the same request. Send them only to a
    /// receiver that takes them ([`accepts_native_histograms`](Self::accepts_native_histograms)):
    /// Prometheus without the feature refuses the whole request.
    pub async fn write_with_histograms(
        &self,
        samples: &[Sample],
        histograms: &[HistogramSample],
    ) -> Result<WriteOutcome, SinkError> {
        let request = encode_request_with_histograms(samples, histograms)?;
        if request.timeseries.is_empty() {
            return Ok(WriteOutcome {
                series: 0,
                samples: 0,
                attempts: 0,
            });
        }
        let series = request.timeseries.len();
        let sample_count = request
            .timeseries
            .iter()
            .map(|ts| ts.samples.len() + ts.histograms.len())
            .sum();
        let body = prost::bytes::Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&request.encode_to_vec())
                .map_err(|e| SinkError::Encode {
                    url: self.shown_url.clone(),
                    reason: format!("snappy: {e}"),
                })?,
        );
        let attempts = sink::deliver(&self.options.retry, &self.shown_url, || {
            let mut builder = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_ENCODING, "snappy")
                .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .header(reqwest::header::USER_AGENT, USER_AGENT)
                .body(body.clone());
            for (name, value) in &self.options.headers {
                builder = builder.header(name, value);
            }
            builder
        })
        .await?;
        Ok(WriteOutcome {
            series,
            samples: sample_count,
            attempts,
        })
    }
}

const USER_AGENT: &str = concat!("caxton-reports/", env!("CARGO_PKG_VERSION"));

/// The remote-write endpoint for a user-given URL (see [`RemoteWriter::new`]).
fn write_url(url: &str) -> Result<reqwest::Url, SinkError> {
    let mut parsed = sink::parse_url(url)?;
    let path = parsed.path().trim_end_matches('/').to_owned();
    if WRITE_PATHS.iter().any(|p| path.ends_with(p)) {
        parsed.set_path(&path);
    } else {
        parsed.set_path(&format!("{path}/api/v1/write"));
    }
    Ok(parsed)
}

/// Builds the protobuf request: one `TimeSeries` per distinct name and label set, labels
/// sorted with `__name__` among them, samples in timestamp order without duplicate timestamps,
/// then the native histograms; a histogram's position in an error message counts after the
/// samples.
pub(crate) fn encode_request_with_histograms(
    samples: &[Sample],
    histograms: &[HistogramSample],
) -> Result<wire::WriteRequest, SinkError> {
    let mut index_of: HashMap<Vec<wire::Label>, usize> = HashMap::new();
    let mut timeseries: Vec<wire::TimeSeries> = Vec::new();
    let mut series_of = |name: &str, labels: Vec<(&str, &str)>| -> usize {
        let label = |(name, value): &(&str, &str)| wire::Label {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        };
        // "__name__" sorts before every valid label name ('_' < 'a' but the other names
        // cannot start with "__"), and before uppercase too: '_' (0x5F) > 'Z' (0x5A), so find
        // its place instead of assuming the front.
        let at = labels.partition_point(|(n, _)| *n < "__name__");
        let mut sorted: Vec<wire::Label> = labels[..at].iter().map(label).collect();
        sorted.push(label(&("__name__", name)));
        sorted.extend(labels[at..].iter().map(label));
        *index_of.entry(sorted).or_insert_with_key(|labels| {
            timeseries.push(wire::TimeSeries {
                labels: labels.clone(),
                ..wire::TimeSeries::default()
            });
            timeseries.len() - 1
        })
    };
    let mut sample_slots = Vec::with_capacity(samples.len());
    for (i, sample) in samples.iter().enumerate() {
        sample_slots.push(series_of(&sample.name, sample.sorted_labels(i)?));
    }
    let mut histogram_slots = Vec::with_capacity(histograms.len());
    for (i, h) in histograms.iter().enumerate() {
        histogram_slots.push(series_of(&h.name, h.sorted_labels(samples.len() + i)?));
    }
    for (sample, slot) in samples.iter().zip(sample_slots) {
        timeseries[slot].samples.push(wire::Sample {
            value: sample.value,
            timestamp: sample.timestamp_ms,
        });
    }
    for (h, slot) in histograms.iter().zip(histogram_slots) {
        timeseries[slot]
            .histograms
            .push(h.histogram.to_wire(h.timestamp_ms));
    }
    for ts in &mut timeseries {
        ts.histograms.sort_by_key(|h| h.timestamp);
        ts.histograms.dedup_by(|later, earlier| {
            let same = later.timestamp == earlier.timestamp;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        // Prometheus rejects the whole request on an out-of-order or conflicting duplicate
        // sample; stable sort + keep-last makes "later in the batch wins" the rule.
        ts.samples.sort_by_key(|s| s.timestamp);
        let mut deduped: Vec<wire::Sample> = Vec::with_capacity(ts.samples.len());
        for s in ts.samples.drain(..) {
            match deduped.last_mut() {
                Some(last) if last.timestamp == s.timestamp => *last = s,
                _ => deduped.push(s),
            }
        }
        ts.samples = deduped;
    }
    Ok(wire::WriteRequest { timeseries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_request(samples: &[Sample]) -> Result<wire::WriteRequest, SinkError> {
        encode_request_with_histograms(samples, &[])
    }

    fn labels(ts: &wire::TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn base_url_gets_the_write_path() {
        let cases = [
            (
                "http://prometheus:9090",
                "http://prometheus:9090/api/v1/write",
            ),
            (
                "http://prometheus:9090/",
                "http://prometheus:9090/api/v1/write",
            ),
            ("https://h/prom/", "https://h/prom/api/v1/write"),
            ("http://h:9090/api/v1/write", "http://h:9090/api/v1/write"),
            ("http://h:9090/api/v1/write/", "http://h:9090/api/v1/write"),
            ("http://mimir/api/v1/push", "http://mimir/api/v1/push"),
            (
                "http://h/api/v1/write?tenant=a",
                "http://h/api/v1/write?tenant=a",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(write_url(given).unwrap().as_str(), want, "{given}");
        }
        for bad in ["prometheus:9090", "ftp://h/x", "not a url", "http://"] {
            let err = write_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn series_are_grouped_sorted_and_deduplicated() {
        let at = |v: f64, ts: i64| Sample {
            name: "caxton_bench_rps".into(),
            labels: vec![
                ("stage".into(), "all".into()),
                ("run_id".into(), "r".into()),
            ],
            value: v,
            timestamp_ms: ts,
        };
        let other = Sample::now("caxton_bench_users", 7.0).label("Zone", "z");
        let req = encode_request(&[at(1.0, 30), other, at(2.0, 10), at(3.0, 30)]).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        let rps = &req.timeseries[0];
        assert_eq!(
            labels(rps),
            vec![
                ("__name__", "caxton_bench_rps"),
                ("run_id", "r"),
                ("stage", "all")
            ]
        );
        let points: Vec<_> = rps.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(points, vec![(10, 2.0), (30, 3.0)]);
        // Byte order: uppercase sorts before "__name__".
        assert_eq!(
            labels(&req.timeseries[1]),
            vec![("Zone", "z"), ("__name__", "caxton_bench_users")]
        );
    }

    #[test]
    fn body_is_snappy_block_format_of_the_protobuf() {
        let req = encode_request(&[Sample::now("m", 0.5).label("a", "b")]).unwrap();
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&compressed)
            .unwrap();
        assert_eq!(wire::WriteRequest::decode(raw.as_slice()).unwrap(), req);
    }

    #[test]
    fn invalid_sample_names_its_index() {
        let err = encode_request(&[Sample::now("ok", 1.0), Sample::now("no-dash", 1.0)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("#1") && err.contains("no-dash"), "{err}");
    }

    #[test]
    fn invalid_header_is_refused_up_front() {
        let options = RemoteWriteOptions {
            headers: vec![("bad header".into(), "x".into())],
            ..RemoteWriteOptions::default()
        };
        let err = RemoteWriter::new("http://user:pw@h:9090", options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad header") && err.contains("http://h:9090/api/v1/write"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
    }
}
