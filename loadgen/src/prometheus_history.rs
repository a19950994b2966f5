//! `caxton-bench history --prometheus URL`: the same history as a directory of reports, built
//! from the `caxton_bench_*` series the runs pushed. Each run's final figures are the last
//! value of its series (`last_over_time` over the look-back window); the labels `plan_key`
//! and `target_key` name its series as `history::series` names a report's.
//!
//! A directory holds per-request-name series and micro-benchmarks as well; Prometheus has the
//! whole run and each stage (what a run pushes), so those are the series it gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use caxton_reports::compare::Metric;
use caxton_reports::history::series::ALL;
use caxton_reports::history::{Excluded, RunInfo, SeriesKey};
use caxton_reports::model::QUANTILES;
use caxton_reports::prometheus_query::{self, QueryError};
use thiserror::Error;

use crate::series::{
    ERROR_RATE, LATENCY_SECONDS, REQUESTS_TOTAL, RPS, RUN_END_TIMESTAMP_SECONDS,
    RUN_INVALID_REASON, RUN_VALID,
};

/// The look-back window when none is given: a year of nights and a margin.
pub const DEFAULT_RANGE: &str = "400d";

#[derive(Debug, Error)]
pub enum PrometheusHistoryError {
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error(
        "no finished caxton-bench run in {url} over the last {range} (no {RUN_END_TIMESTAMP_SECONDS} with a plan_key label)"
    )]
    Empty { url: String, range: String },
}

/// The runs found, in time order, with their observations, and the runs left out.
#[derive(Debug, Default)]
pub struct Found {
    pub runs: Vec<RunInfo>,
    pub per_run: Vec<Vec<(SeriesKey, f64)>>,
    pub invalid: Vec<Excluded>,
}

/// One instant-vector element: labels and value.
struct Element {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Element {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// A run's series from one worker: the merged one of a distributed run, else the run's
    /// only worker.
    fn run(&self) -> (&str, &str) {
        (self.label("run_id"), self.label("worker"))
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    range: String,
}

impl Client {
    fn new(url: &str, range: &str) -> Result<Client, PrometheusHistoryError> {
        let base = url.trim_end_matches('/').to_string();
        reqwest::Url::parse(&base).map_err(|e| PrometheusHistoryError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(PrometheusHistoryError::Client)?,
            base,
            range: range.to_string(),
        })
    }

    async fn query(&self, selector: &str) -> Result<Vec<Element>, PrometheusHistoryError> {
        let expr = format!("last_over_time({selector}[{}])", self.range);
        let result = prometheus_query::instant(&self.http, &self.base, &expr).await?;
        let query_error = |message: String| QueryError::Query {
            url: self.base.clone(),
            expr: expr.clone(),
            message,
        };
        let result = result
            .as_array()
            .ok_or_else(|| query_error("the answer has no data.result array".into()))?;
        result
            .iter()
            .map(|e| {
                let labels = e["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = e["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| query_error(format!("a sample without a number: {e}")))?;
                Ok(Element { labels, value })
            })
            .collect()
    }
}

/// The version `history::series::version_of` gives a report, from the pushed labels: the
/// target's build version (`target_version` is `version+commit`), else the tool's.
fn version_of(e: &Element) -> String {
    match e.label("target_version").rsplit_once('+') {
        Some((v, _)) if !v.is_empty() && e.label("target_version") != "unknown" => v.to_string(),
        _ if !e.label("version").is_empty() => e.label("version").to_string(),
        _ => "unknown".to_string(),
    }
}

fn metric_of_quantile(q: &str) -> Option<Metric> {
    let q: f64 = q.parse().ok()?;
    let key = QUANTILES.iter().find(|(_, v)| *v == q)?.0;
    Metric::ALL.into_iter().find(|m| m.key() == key)
}

/// Reads the history from the Prometheus at `url` over the last `range` (a PromQL duration).
pub async fn load(url: &str, range: &str) -> Result<Found, PrometheusHistoryError> {
    let client = Client::new(url, range)?;
    let ends = client
        .query(&format!("{RUN_END_TIMESTAMP_SECONDS}{{{HAS_KEY}}}"))
        .await?;
    if ends.is_empty() {
        return Err(PrometheusHistoryError::Empty {
            url: url.to_string(),
            range: range.to_string(),
        });
    }
    let chosen = Chosen::of(&ends);
    let mut found = Found {
        invalid: invalid_runs(&client, &chosen, url).await?,
        ..Found::default()
    };
    let invalid: BTreeSet<&str> = found.invalid.iter().map(|x| x.run_id.as_str()).collect();

    // Runs in time order.
    let mut runs: Vec<(&Element, &str)> = ends
        .iter()
        .filter(|e| chosen.holds(e) && !invalid.contains(e.label("run_id")))
        .map(|e| (e, e.label("run_id")))
        .collect();
    runs.sort_by(|a, b| a.0.value.total_cmp(&b.0.value).then(a.1.cmp(b.1)));
    let index: BTreeMap<&str, usize> = runs.iter().enumerate().map(|(i, r)| (r.1, i)).collect();
    found.runs = runs
        .iter()
        .map(|(e, run)| RunInfo {
            run_id: run.to_string(),
            version: version_of(e),
            started_unix_ms: (e.value * 1000.0) as u64,
            profile: None,
        })
        .collect();
    found.per_run = observations(&client, &chosen, &index, runs.len()).await?;
    Ok(found)
}

/// Only series with a `plan_key` label are a run's final figures.
const HAS_KEY: &str = r#"plan_key!="""#;

/// Which worker's series stand for each run: the merged one of a distributed run, else the
/// run's only worker; a distributed run that was never merged has none.
struct Chosen(BTreeMap<String, String>);

impl Chosen {
    fn of(ends: &[Element]) -> Chosen {
        let mut workers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in ends {
            let (run, worker) = e.run();
            workers.entry(run).or_default().push(worker);
        }
        Chosen(
            workers
                .into_iter()
                .filter_map(|(run, ws)| {
                    let w = if ws.contains(&"merged") {
                        "merged"
                    } else if ws.len() == 1 {
                        ws[0]
                    } else {
                        // Workers of a distributed run that was never merged: parts of a run.
                        return None;
                    };
                    Some((run.to_string(), w.to_string()))
                })
                .collect(),
        )
    }

    /// Whether `e` is a series of its run's chosen worker.
    fn holds(&self, e: &Element) -> bool {
        self.0.get(e.label("run_id")).map(String::as_str) == Some(e.label("worker"))
    }
}

/// The runs that recorded themselves invalid, with their reasons.
async fn invalid_runs(
    client: &Client,
    chosen: &Chosen,
    url: &str,
) -> Result<Vec<Excluded>, PrometheusHistoryError> {
    let valid = client.query(&format!("{RUN_VALID}{{{HAS_KEY}}}")).await?;
    let reasons = client
        .query(&format!("{RUN_INVALID_REASON}{{{HAS_KEY}}}"))
        .await?;
    Ok(valid
        .iter()
        .filter(|v| chosen.holds(v) && v.value == 0.0)
        .map(|v| {
            let run = v.label("run_id");
            Excluded {
                run_id: run.to_string(),
                path: PathBuf::from(url),
                reasons: reasons
                    .iter()
                    .filter(|r| r.label("run_id") == run && chosen.holds(r) && r.value == 1.0)
                    .map(|r| r.label("reason").to_string())
                    .collect(),
            }
        })
        .collect())
}

/// The observations of each of `runs` runs (`index`: a run's place in time order): latency,
/// throughput and error rate of the whole run and of every stage that served a request.
async fn observations(
    client: &Client,
    chosen: &Chosen,
    index: &BTreeMap<&str, usize>,
    runs: usize,
) -> Result<Vec<Vec<(SeriesKey, f64)>>, PrometheusHistoryError> {
    let mut per_run = vec![Vec::new(); runs];
    // Stages without a request have no latency and no value in a report: leave them out.
    let requests = client
        .query(&format!("{REQUESTS_TOTAL}{{{HAS_KEY}}}"))
        .await?;
    let served: BTreeSet<(String, String)> = requests
        .iter()
        .filter(|e| chosen.holds(e) && e.value > 0.0)
        .map(|e| (e.label("run_id").to_string(), e.label("stage").to_string()))
        .collect();
    let mut add = |e: &Element, metric: Metric, value: f64| {
        let Some(&i) = index.get(e.label("run_id")) else {
            return;
        };
        if !chosen.holds(e)
            || !served.contains(&(e.label("run_id").to_string(), e.label("stage").to_string()))
        {
            return;
        }
        let key = SeriesKey {
            plan: e.label("plan_key").to_string(),
            target: e.label("target_key").to_string(),
            scenario: ALL.to_string(),
            stage: e.label("stage").to_string(),
            metric,
        };
        per_run[i].push((key, value));
    };
    let latency = client
        .query(&format!(
            r#"{LATENCY_SECONDS}{{{HAS_KEY},corrected="true"}}"#
        ))
        .await?;
    for e in &latency {
        if let Some(m) = metric_of_quantile(e.label("quantile")) {
            add(e, m, e.value * 1000.0);
        }
    }
    for e in &client.query(&format!("{RPS}{{{HAS_KEY}}}")).await? {
        add(e, Metric::Throughput, e.value);
    }
    for e in &client.query(&format!("{ERROR_RATE}{{{HAS_KEY}}}")).await? {
        add(e, Metric::ErrorRate, e.value);
    }
    Ok(per_run)
}
