//! Prometheus Pushgateway sink: the alternative to remote write where Prometheus scrapes
//! instead of receiving. Samples go out in the text exposition format to
//! `URL/metrics/job/<job>/<label>/<value>...`, one group per distinct value of the grouping
//! labels (default `run_id`), every name typed `gauge`.
//!
//! The Pushgateway refuses pushed timestamps, so [`Sample::timestamp_ms`] is not sent: the
//! scrape time stands in. Same retry and error policy as remote write ([`RetryPolicy`]).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::sink::{self, RetryPolicy, Sample, SinkError};

/// PUT replaces every metric of the group (each push is a complete snapshot, the usual case);
/// POST replaces only the metric names it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushMethod {
    #[default]
    Put,
    Post,
}

/// Options of a [`Pushgateway`] sink.
#[derive(Debug, Clone, PartialEq)]
pub struct PushgatewayOptions {
    /// The `job` of the grouping key. Default `caxton_bench`.
    pub job: String,
    /// Labels whose values form the rest of the grouping key, in this order. They are taken
    /// out of each sample's labels (the Pushgateway adds them back to every series of the
    /// group). A sample without one of them gets the empty value. Default `["run_id"]`.
    pub grouping_labels: Vec<String>,
    /// Default [`PushMethod::Put`].
    pub method: PushMethod,
    pub retry: RetryPolicy,
}

impl Default for PushgatewayOptions {
    fn default() -> Self {
        PushgatewayOptions {
            job: "caxton_bench".to_owned(),
            grouping_labels: vec!["run_id".to_owned()],
            method: PushMethod::Put,
            retry: RetryPolicy::default(),
        }
    }
}

/// What one successful [`Pushgateway::push`] delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Groups pushed, one HTTP request each.
    pub groups: usize,
    /// Series pushed over all groups, after dropping duplicates.
    pub series: usize,
    /// HTTP attempts over all groups.
    pub attempts: u32,
}

/// A Pushgateway client bound to one base URL.
#[derive(Debug, Clone)]
pub struct Pushgateway {
    client: reqwest::Client,
    base: reqwest::Url,
    shown_base: String,
    options: PushgatewayOptions,
}

/// A grouping key: the `(label, value)` pairs after the job, in the options' order.
pub type GroupKey = Vec<(String, String)>;

/// One grouping key and the exposition text pushed under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: GroupKey,
    pub text: String,
    pub series: usize,
}

impl Pushgateway {
    /// `url` is the Pushgateway's base URL (`http://pushgateway:9091`, optionally with a route
    /// prefix); the `/metrics/job/...` path is built from the options.
    pub fn new(url: &str, options: PushgatewayOptions) -> Result<Pushgateway, SinkError> {
        let mut base = sink::parse_url(url)?;
        let shown_base = sink::shown_url(&base);
        if base.path().contains("/metrics/job/") {
            return Err(SinkError::InvalidUrl {
                url: shown_base,
                reason: "give the Pushgateway's base URL; job and grouping come from the options"
                    .to_owned(),
            });
        }
        let invalid = |reason: String| SinkError::InvalidGrouping {
            url: shown_base.clone(),
            reason,
        };
        if options.job.is_empty() {
            return Err(invalid("the job name is empty".to_owned()));
        }
        for (i, label) in options.grouping_labels.iter().enumerate() {
            if !sink::is_label_name(label) || label.starts_with("__") || label == "job" {
                return Err(invalid(format!(
                    "grouping label {label:?} is not a valid label name other than \"job\""
                )));
            }
            if options.grouping_labels[..i].contains(label) {
                return Err(invalid(format!("grouping label {label:?} appears twice")));
            }
        }
        let trimmed = base.path().trim_end_matches('/').to_owned();
        base.set_path(&trimmed);
        let client = options.retry.client(&shown_base)?;
        Ok(Pushgateway {
            client,
            base,
            shown_base,
            options,
        })
    }

    /// Pushes `samples`, one request per group, retrying each per the [`RetryPolicy`].
    /// Stops at the first group that fails; the error names that group's URL.
    pub async fn push(&self, samples: &[Sample]) -> Result<PushOutcome, SinkError> {
        let groups = group_samples(samples, &self.options.grouping_labels)?;
        let mut outcome = PushOutcome {
            groups: 0,
            series: 0,
            attempts: 0,
        };
        for group in groups {
            let url = self.group_url(&group.key);
            let shown = sink::shown_url(&url);
            let text = prost::bytes::Bytes::from(group.text);
            outcome.attempts += sink::deliver(&self.options.retry, &shown, || {
                let request = match self.options.method {
                    PushMethod::Put => self.client.put(url.clone()),
                    PushMethod::Post => self.client.post(url.clone()),
                };
                request
                    .header(reqwest::header::CONTENT_TYPE, TEXT_FORMAT)
                    .body(text.clone())
            })
            .await?;
            outcome.groups += 1;
            outcome.series += group.series;
        }
        Ok(outcome)
    }

    /// The base URL as used in messages (without credentials).
    pub fn url(&self) -> &str {
        &self.shown_base
    }

    /// `base/metrics/job/<job>/<label>/<value>...`, with the `@base64` form for values that
    /// cannot be a path segment as they are.
    pub fn group_url(&self, key: &[(String, String)]) -> reqwest::Url {
        let mut segments = vec!["metrics".to_owned()];
        push_pair(&mut segments, "job", &self.options.job);
        for (label, value) in key {
            push_pair(&mut segments, label, value);
        }
        let mut url = self.base.clone();
        // Only fails for URLs that cannot be a base (`mailto:`), refused by parse_url.
        // extend() percent-encodes what needs it (spaces, '?', '#', '%').
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `label/value` to the path. A value containing '/', empty, or a dot segment cannot
/// survive as a path segment (the router would split, drop or normalise it), so it goes as
/// `label@base64/<base64url(value)>`, the Pushgateway's convention; the empty value is `=`.
fn push_pair(segments: &mut Vec<String>, label: &str, value: &str) {
    if value.is_empty() {
        segments.extend([format!("{label}@base64"), "=".to_owned()]);
    } else if value.contains('/') || value == "." || value == ".." {
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(value);
        segments.extend([format!("{label}@base64"), encoded]);
    } else {
        segments.extend([label.to_owned(), value.to_owned()]);
    }
}

/// Splits samples into Pushgateway groups by the values of `grouping_labels` (in order of first
/// appearance) and renders each group's exposition text.
pub(crate) fn group_samples(
    samples: &[Sample],
    grouping_labels: &[String],
) -> Result<Vec<Group>, SinkError> {
    // Groups and their series in first-appearance order; n is small: linear search.
    let mut groups: Vec<(GroupKey, Vec<Series<'_>>)> = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let labels = sample.sorted_labels(i)?;
        let key: GroupKey = grouping_labels
            .iter()
            .map(|g| {
                let value = labels.iter().find(|(n, _)| n == g).map_or("", |(_, v)| v);
                (g.clone(), value.to_owned())
            })
            .collect();
        let rest: Vec<(&str, &str)> = labels
            .into_iter()
            .filter(|(n, _)| !grouping_labels.iter().any(|g| g == n))
            .collect();
        let slot = match groups.iter().position(|(k, _)| *k == key) {
            Some(slot) => slot,
            None => {
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        let series = &mut groups[slot].1;
        // The Pushgateway refuses a push that holds one series twice: the last value wins.
        match series
            .iter_mut()
            .find(|s| s.name == sample.name && s.labels == rest)
        {
            Some(existing) => existing.value = sample.value,
            None => series.push(Series {
                name: &sample.name,
                labels: rest,
                value: sample.value,
            }),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(key, series)| Group {
            text: exposition_text(&series),
            series: series.len(),
            key,
        })
        .collect())
}

/// One series of a group: the grouping labels taken out.
struct Series<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

/// Text exposition format: every name's lines together under one `# TYPE name gauge`, names in
/// order of first appearance.
fn exposition_text(series: &[Series<'_>]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in series {
        if !names.contains(&s.name) {
            names.push(s.name);
        }
    }
    let mut text = String::new();
    for name in names {
        let _ = writeln!(text, "# TYPE {name} gauge");
        for s in series.iter().filter(|s| s.name == name) {
            text.push_str(name);
            if !s.labels.is_empty() {
                text.push('{');
                for (i, (label, value)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    let _ = write!(text, "{label}=\"{}\"", escape_label_value(value));
                }
                text.push('}');
            }
            let _ = writeln!(text, " {}", format_value(s.value));
        }
    }
    text
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(url: &str) -> Pushgateway {
        Pushgateway::new(url, PushgatewayOptions::default()).unwrap()
    }

    #[test]
    fn grouping_path_encodes_awkward_values() {
        let g = gateway("http://pg:9091/");
        let key = |v: &str| vec![("run_id".to_owned(), v.to_owned())];
        assert_eq!(
            g.group_url(&key("r-1")).as_str(),
            "http://pg:9091/metrics/job/caxton_bench/run_id/r-1"
        );
        assert_eq!(
            g.group_url(&key("nightly/2026-11-24")).as_str(),
            "http://pg:9091/metrics/job/caxton_bench/run_id@base64/bmlnaHRseS8yMDI2LTExLTI0"
        );
        assert_eq!(
            g.group_url(&key("")).as_str(),
            "http://pg:9091/metrics/job/caxton_bench/run_id@base64/="
        );
        assert_eq!(
            g.group_url(&key("a b?#%")).as_str(),
            "http://pg:9091/metrics/job/caxton_bench/run_id/a%20b%3F%23%25"
        );
        let prefixed = gateway("http://pg/push-prefix");
        assert_eq!(
            prefixed.group_url(&key("x")).as_str(),
            "http://pg/push-prefix/metrics/job/caxton_bench/run_id/x"
        );
    }

    #[test]
    fn samples_split_by_run_id_and_share_type_lines() {
        let s = |name: &str, run: &str, stage: &str, v: f64| {
            Sample::now(name, v)
                .label("stage", stage)
                .label("run_id", run)
        };
        let groups = group_samples(
            &[
                s("caxton_bench_rps", "a", "ramp", 1.0),
                s("caxton_bench_users", "a", "ramp", 5.0),
                s("caxton_bench_rps", "a", "hold", 2.0),
                s("caxton_bench_rps", "b", "ramp", 3.0),
                s("caxton_bench_rps", "a", "hold", 4.0),
            ],
            &["run_id".to_owned()],
        )
        .unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].key, vec![("run_id".into(), "a".into())]);
        assert_eq!(
            groups[0].text,
            "# TYPE caxton_bench_rps gauge\n\
             caxton_bench_rps{stage=\"ramp\"} 1\n\
             caxton_bench_rps{stage=\"hold\"} 4\n\
             # TYPE caxton_bench_users gauge\n\
             caxton_bench_users{stage=\"ramp\"} 5\n"
        );
        assert_eq!(groups[0].series, 3);
        assert_eq!(
            groups[1].text,
            "# TYPE caxton_bench_rps gauge\ncaxton_bench_rps{stage=\"ramp\"} 3\n"
        );
    }

    #[test]
    fn label_values_and_special_floats_are_escaped() {
        let groups = group_samples(
            &[
                Sample::now("m", f64::NAN).label("q", "a\"b\\c\nd"),
                Sample::now("n", f64::NEG_INFINITY),
                Sample::now("o", 0.25),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            groups[0].text,
            "# TYPE m gauge\nm{q=\"a\\\"b\\\\c\\nd\"} NaN\n# TYPE n gauge\nn -Inf\n# TYPE o gauge\no 0.25\n"
        );
    }

    #[test]
    fn bad_options_and_urls_are_refused() {
        let opts = |labels: &[&str]| PushgatewayOptions {
            grouping_labels: labels.iter().map(|s| (*s).to_owned()).collect(),
            ..PushgatewayOptions::default()
        };
        for labels in [&["job"][..], &["bad-name"], &["a", "a"], &["__x"]] {
            let err = Pushgateway::new("http://pg:9091", opts(labels)).unwrap_err();
            assert!(err.to_string().contains("http://pg:9091"), "{err}");
        }
        let err = Pushgateway::new("http://pg:9091/metrics/job/x", opts(&[])).unwrap_err();
        assert!(err.to_string().contains("base URL"), "{err}");
    }
}
