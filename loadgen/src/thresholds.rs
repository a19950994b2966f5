//! k6-style thresholds: `METRIC[{stage:NAME}]: AGGREGATION OP VALUE`, evaluated on the
//! finished report.
//!
//! Metrics (k6 names, k6 units):
//! - `http_req_duration` (ms, coordinated-omission corrected): `p(N)`, `avg`, `med`,
//!   `min`, `max`
//! - `http_req_duration_uncorrected` (ms, as measured): same aggregations
//! - `http_req_failed`: `rate` (status >= 400 or transport error)
//! - `http_reqs`: `count`, `rate` (per second)
//! - `checks`: `rate` (passes over all checks)
//! - `dropped_iterations`: `count`, `rate` (per second)
//!
//! Only `stage` is a known tag; `checks` and `dropped_iterations` take no tag.
//!
//! k6's object form stops a run early: `abortOnFail` judges the threshold during the run,
//! once a second on what was measured so far (from `delayAbortEval` on), and a breach ends
//! the run (exit 99). On the command line the options follow the expression:
//! `http_req_duration: p(95)<2000 abortOnFail delayAbortEval=10s`; in TOML,
//! `http_req_duration = [{ threshold = "p(95)<2000", abortOnFail = true, delayAbortEval = "10s" }]`.
//! A lower bound on a count (`http_reqs: count>N`, `dropped_iterations: count>=N`, `==`)
//! only grows into being met, so it cannot be judged mid-run and is refused with
//! `abortOnFail`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use caxton_reports::model::{Percentiles, RunReport, Stats, ThresholdResult, ratio};
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ThresholdError {
    #[error("threshold `{text}`: {detail}")]
    Syntax { text: String, detail: String },
    #[error("threshold `{text}`: unknown stage `{stage}` (stages of this plan: {known})")]
    UnknownStage {
        text: String,
        stage: String,
        known: String,
    },
    #[error("cannot read thresholds file {path}: {detail}")]
    File { path: String, detail: String },
    #[error(
        "threshold `{text}`: abortOnFail cannot judge a lower bound on a count during the run (it only grows into being met); judge it at the end without abortOnFail"
    )]
    NotJudgeableMidRun { text: String },
    #[error(
        "threshold `{text}`: abortOnFail across distributed workers is judged on the series pushed to Prometheus, which cannot give it (they do: http_req_duration p(N), med, avg; http_req_failed and checks rate; http_reqs count<N; no stage tag)"
    )]
    NotGlobal { text: String },
}

pub(crate) use caxton_reports::threshold::{Aggregation, ThresholdMetric as Metric};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
            Op::Eq => value == limit,
            Op::Ne => value != limit,
        }
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written (normalized to `metric{tags}: expression`).
    pub text: String,
    pub metric: Metric,
    pub stage: Option<String>,
    pub aggregation: Aggregation,
    pub op: Op,
    pub limit: f64,
    /// k6's `abortOnFail`: judged during the run, and a breach stops it.
    pub abort: Option<AbortOnFail>,
}

/// k6's `abortOnFail` and `delayAbortEval` of one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortOnFail {
    /// Not judged before this far into the run (`delayAbortEval`; zero when not given).
    pub delay: Duration,
}

/// The options of the command line's form, after the expression.
const ABORT_ON_FAIL: &str = "abortOnFail";
const DELAY_ABORT_EVAL: &str = "delayAbortEval=";

impl Threshold {
    /// Parses `http_req_duration{stage:hold-200}: p(99)<1500`.
    pub fn parse(text: &str) -> Result<Threshold, ThresholdError> {
        // A tag value may itself contain `:` (`{stage:hold-200}`), so a tagged metric ends
        // at its closing brace.
        let split = match text.find("}:") {
            Some(i) => Some((&text[..=i], &text[i + 2..])),
            None => text.split_once(':'),
        };
        let (metric_part, expr) = split.ok_or_else(|| {
            syntax(
                text,
                "expected `METRIC: EXPRESSION`, e.g. `http_req_duration: p(95)<2000`",
            )
        })?;
        // Options follow the expression, which may itself contain spaces (`p(99) < 1500`).
        let mut words: Vec<&str> = expr.split_whitespace().collect();
        let mut abort_on_fail = false;
        let mut delay = None;
        while let Some(last) = words.last() {
            if *last == ABORT_ON_FAIL {
                abort_on_fail = true;
            } else if let Some(d) = last.strip_prefix(DELAY_ABORT_EVAL) {
                delay = Some(d.to_string());
            } else {
                break;
            }
            words.pop();
        }
        let mut t = Self::from_parts(metric_part.trim(), &words.join(" "), text)?;
        t.set_abort(abort_on_fail, delay.as_deref(), text)?;
        Ok(t)
    }

    /// Applies `abortOnFail` / `delayAbortEval` (`text` names the threshold in errors).
    fn set_abort(
        &mut self,
        abort_on_fail: bool,
        delay: Option<&str>,
        text: &str,
    ) -> Result<(), ThresholdError> {
        let delay = match delay {
            Some(d) => Some(humantime::parse_duration(d).map_err(|e| {
                syntax(
                    text,
                    &format!("delayAbortEval `{d}` is not a duration like 10s or 1m: {e}"),
                )
            })?),
            None => None,
        };
        if !abort_on_fail {
            if delay.is_some() {
                return Err(syntax(text, "delayAbortEval needs abortOnFail"));
            }
            self.abort = None;
            return Ok(());
        }
        let lower_bound_on_count = matches!(self.metric, Metric::Reqs | Metric::Dropped)
            && self.aggregation == Aggregation::Count
            && matches!(self.op, Op::Gt | Op::Ge | Op::Eq);
        if lower_bound_on_count {
            return Err(ThresholdError::NotJudgeableMidRun {
                text: text.to_string(),
            });
        }
        self.abort = Some(AbortOnFail {
            delay: delay.unwrap_or(Duration::ZERO),
        });
        Ok(())
    }

    /// Builds a threshold from a metric key (`http_req_duration{stage:x}`) and one of its
    /// expressions (`p(95)<2000`), as k6's `options.thresholds` and the TOML file write them.
    pub fn from_parts(
        metric_part: &str,
        expr: &str,
        text: &str,
    ) -> Result<Threshold, ThresholdError> {
        let (metric_name, stage) = match metric_part.split_once('{') {
            Some((name, tags)) => {
                let tags = tags
                    .strip_suffix('}')
                    .ok_or_else(|| syntax(text, "tag list must end with `}`"))?;
                let (key, value) = tags
                    .split_once(':')
                    .ok_or_else(|| syntax(text, "a tag is `{stage:NAME}`"))?;
                if key.trim() != "stage" {
                    return Err(syntax(
                        text,
                        &format!("unknown tag `{}`; the known tag is `stage`", key.trim()),
                    ));
                }
                (name.trim(), Some(value.trim().to_string()))
            }
            None => (metric_part, None),
        };
        let metric = Metric::parse(metric_name).ok_or_else(|| {
            let known: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
            syntax(
                text,
                &format!(
                    "unknown metric `{metric_name}` (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        if stage.is_some() && matches!(metric, Metric::Checks | Metric::Dropped) {
            return Err(syntax(text, &format!("`{metric_name}` takes no stage tag")));
        }
        let op_at = expr
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| syntax(text, "expected an operator: < <= > >= == !="))?;
        let (agg_text, rest) = expr.split_at(op_at);
        let (op, limit_text) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (*op, r)))
        .ok_or_else(|| syntax(text, "expected an operator: < <= > >= == !="))?;
        let limit = limit_text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|l| l.is_finite())
            .ok_or_else(|| syntax(text, &format!("`{}` is not a number", limit_text.trim())))?;
        let agg_text = agg_text.trim();
        let aggregation: Aggregation =
            agg_text
                .parse()
                .map_err(|e: caxton_reports::threshold::AggregationError| {
                    syntax(text, &e.to_string())
                })?;
        if !metric.allows(&aggregation) {
            return Err(syntax(
                text,
                &format!("`{agg_text}` does not apply to `{metric_name}`"),
            ));
        }
        let tag = stage
            .as_ref()
            .map(|s| format!("{{stage:{s}}}"))
            .unwrap_or_default();
        Ok(Threshold {
            text: format!("{metric_name}{tag}: {}", expr.trim()),
            metric,
            stage,
            aggregation,
            op,
            limit,
            abort: None,
        })
    }

    /// Refuses a stage the plan does not have, before any load is sent.
    pub fn check_stage(&self, stages: &[String]) -> Result<(), ThresholdError> {
        match &self.stage {
            Some(stage) if !stages.contains(stage) => Err(ThresholdError::UnknownStage {
                text: self.text.clone(),
                stage: stage.clone(),
                known: stages.join(", "),
            }),
            _ => Ok(()),
        }
    }

    /// The measured value, `None` when there is nothing to measure.
    pub fn value(&self, report: &RunReport) -> Option<f64> {
        let (stats, seconds) = match &self.stage {
            Some(name) => {
                let stage = report.stages.iter().find(|s| &s.name == name)?;
                (
                    &stage.stats,
                    stage.ended_at_seconds - stage.started_at_seconds,
                )
            }
            None => (&report.overall, report.duration_seconds),
        };
        let per_second = |n: u64| (seconds > 0.0).then(|| n as f64 / seconds);
        match self.metric {
            Metric::Duration => duration(stats, &self.aggregation, true),
            Metric::DurationUncorrected => duration(stats, &self.aggregation, false),
            Metric::Failed => (stats.requests > 0).then(|| ratio(stats.failures, stats.requests)),
            Metric::Reqs => match self.aggregation {
                Aggregation::Count => Some(stats.requests as f64),
                _ => per_second(stats.requests),
            },
            Metric::Checks => {
                let passes: u64 = report.checks.iter().map(|c| c.passes).sum();
                let fails: u64 = report.checks.iter().map(|c| c.fails).sum();
                (passes + fails > 0).then(|| ratio(passes, passes + fails))
            }
            Metric::Dropped => match self.aggregation {
                Aggregation::Count => Some(report.dropped_iterations as f64),
                _ => per_second(report.dropped_iterations),
            },
        }
    }

    /// Whether `value` meets the threshold.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.limit)
    }

    /// Mid-run judgement of an `abortOnFail` threshold on the figures so far (`so_far`, the
    /// same report the end of the run builds): the measured value when it breaches, `None`
    /// while it holds, has no data yet, or is still in its `delayAbortEval`.
    pub fn breached_so_far(&self, so_far: &RunReport, elapsed: Duration) -> Option<f64> {
        let abort = self.abort?;
        if elapsed < abort.delay {
            return None;
        }
        self.value(so_far)
            .filter(|v| !self.op.holds(*v, self.limit))
    }

    pub fn evaluate(&self, report: &RunReport) -> ThresholdResult {
        let value = self.value(report);
        ThresholdResult {
            expression: self.text.clone(),
            metric: self.metric,
            stage: self.stage.clone(),
            aggregation: self.aggregation.clone(),
            value,
            ok: value.is_some_and(|v| self.op.holds(v, self.limit)),
        }
    }
}

fn duration(stats: &Stats, agg: &Aggregation, corrected: bool) -> Option<f64> {
    if stats.requests == 0 {
        return None;
    }
    let p: &Percentiles = if corrected {
        &stats.latency_ms.corrected
    } else {
        &stats.latency_ms.uncorrected
    };
    match agg {
        Aggregation::Avg => Some(p.mean),
        Aggregation::Med => Some(p.p50),
        Aggregation::Min => Some(p.min),
        Aggregation::Max => Some(p.max),
        Aggregation::Percentile(n) => p.at(n / 100.0).or_else(|| {
            // A percentile the report does not list: ask the histogram.
            let h = if corrected {
                stats.histograms.decode_corrected()
            } else {
                stats.histograms.decode_uncorrected()
            };
            h.ok()
                .map(|h| h.value_at_quantile(n / 100.0) as f64 / 1000.0)
        }),
        Aggregation::Rate | Aggregation::Count => None,
    }
}

fn syntax(text: &str, detail: &str) -> ThresholdError {
    ThresholdError::Syntax {
        text: text.to_string(),
        detail: detail.to_string(),
    }
}

/// A thresholds file: k6's `options.thresholds` in TOML.
///
/// ```toml
/// [thresholds]
/// http_req_duration = ["p(95)<2000"]
/// "http_req_duration{stage:hold-200}" = ["p(99)<1500"]
/// http_req_failed = ["rate<0.1"]
/// ```
/// k6's object form is accepted beside plain strings:
/// `http_req_duration = ["p(99)<3000", { threshold = "p(95)<2000", abortOnFail = true, delayAbortEval = "10s" }]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    thresholds: BTreeMap<String, Vec<toml::Value>>,
}

/// k6's object form of one threshold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdObject {
    threshold: String,
    #[serde(default, rename = "abortOnFail")]
    abort_on_fail: bool,
    #[serde(default, rename = "delayAbortEval")]
    delay_abort_eval: Option<String>,
}

pub(crate) fn load_file(path: &Path) -> Result<Vec<Threshold>, ThresholdError> {
    let file_err = |detail: String| ThresholdError::File {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let file: ThresholdsFile = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let mut out = Vec::new();
    for (metric, entries) in &file.thresholds {
        for entry in entries {
            let object = match entry {
                toml::Value::String(expr) => ThresholdObject {
                    threshold: expr.clone(),
                    abort_on_fail: false,
                    delay_abort_eval: None,
                },
                toml::Value::Table(_) => entry
                    .clone()
                    .try_into()
                    .map_err(|e| file_err(format!("threshold of `{metric}`: {e}")))?,
                other => {
                    return Err(file_err(format!(
                        "threshold of `{metric}`: expected a string or {{ threshold = \"…\", abortOnFail = true, delayAbortEval = \"10s\" }}, found a {}",
                        other.type_str()
                    )));
                }
            };
            let text = format!("{metric}: {}", object.threshold);
            let mut t = Threshold::from_parts(metric.trim(), object.threshold.trim(), &text)
                .map_err(|e| file_err(e.to_string()))?;
            t.set_abort(
                object.abort_on_fail,
                object.delay_abort_eval.as_deref(),
                &text,
            )
            .map_err(|e| file_err(e.to_string()))?;
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k6_syntax_parses() {
        let t = Threshold::parse("http_req_duration: p(95)<2000").unwrap();
        assert_eq!(t.metric, Metric::Duration);
        assert_eq!(t.aggregation, Aggregation::Percentile(95.0));
        assert_eq!((t.op, t.limit), (Op::Lt, 2000.0));
        let t = Threshold::parse("http_req_duration{stage:hold-200}: p(99.9) <= 1500").unwrap();
        assert_eq!(t.stage.as_deref(), Some("hold-200"));
        assert_eq!(t.text, "http_req_duration{stage:hold-200}: p(99.9) <= 1500");
        assert_eq!(t.op, Op::Le);
        let t = Threshold::parse("http_req_failed:rate<0.1").unwrap();
        assert_eq!(t.aggregation, Aggregation::Rate);
        assert!(Threshold::parse("checks: rate>0.9").is_ok());
        assert!(Threshold::parse("http_reqs{stage:ramp-100}: count>=10").is_ok());
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |t: &str| Threshold::parse(t).unwrap_err().to_string();
        assert!(err("http_req_duraton: p(95)<1").contains("unknown metric `http_req_duraton`"));
        assert!(err("http_req_duration: p95<1").contains("unknown aggregation `p95`"));
        assert!(err("http_req_duration: p(95)<fast").contains("`fast` is not a number"));
        assert!(err("http_req_failed: p(95)<1").contains("does not apply"));
        assert!(err("http_req_duration{url:x}: p(95)<1").contains("unknown tag `url`"));
        assert!(err("http_req_duration p(95)<1").contains("expected `METRIC: EXPRESSION`"));
        let t = Threshold::parse("http_req_duration{stage:hold-300}: p(95)<1").unwrap();
        let e = t
            .check_stage(&["ramp-100".into(), "hold-100".into()])
            .unwrap_err();
        assert!(e.to_string().contains("unknown stage `hold-300`"), "{e}");
    }

    #[test]
    fn abort_on_fail_follows_the_expression() {
        let t = Threshold::parse("http_req_duration: p(95) < 2000 abortOnFail delayAbortEval=10s")
            .unwrap();
        assert_eq!(t.text, "http_req_duration: p(95) < 2000");
        assert_eq!(
            t.abort,
            Some(AbortOnFail {
                delay: Duration::from_secs(10)
            })
        );
        let t = Threshold::parse("http_req_failed: rate<0.1 abortOnFail").unwrap();
        assert_eq!(t.abort.map(|a| a.delay), Some(Duration::ZERO));
        assert_eq!(t.limit, 0.1);
        assert!(
            Threshold::parse("checks: rate>0.9")
                .unwrap()
                .abort
                .is_none()
        );
        let err = |t: &str| Threshold::parse(t).unwrap_err().to_string();
        assert!(err("http_req_failed: rate<0.1 delayAbortEval=5s").contains("needs abortOnFail"));
        assert!(
            err("http_req_failed: rate<0.1 abortOnFail delayAbortEval=soon")
                .contains("delayAbortEval `soon`")
        );
        let e = err("http_reqs: count>100 abortOnFail");
        assert!(
            e.contains("`http_reqs: count>100 abortOnFail`") && e.contains("lower bound"),
            "{e}"
        );
        assert!(Threshold::parse("http_reqs: count<100 abortOnFail").is_ok());
    }

    #[test]
    fn file_takes_k6_object_form_beside_strings() {
        let dir = std::env::temp_dir().join(format!("caxton-thr-obj-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(
            &path,
            "[thresholds]\nhttp_req_duration = [\"p(99)<3000\", { threshold = \"p(95)<2000\", abortOnFail = true, delayAbortEval = \"10s\" }]\nchecks = [{ threshold = \"rate>0.9\" }]\n",
        )
        .unwrap();
        let all = load_file(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].text, "checks: rate>0.9");
        assert!(all[0].abort.is_none() && all[1].abort.is_none());
        assert_eq!(all[2].text, "http_req_duration: p(95)<2000");
        assert_eq!(all[2].abort.unwrap().delay, Duration::from_secs(10));
        std::fs::write(
            &path,
            "[thresholds]\nhttp_req_duration = [{ threshold = \"p(95)<2000\", abortOnFial = true }]\n",
        )
        .unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("t.toml") && e.contains("abortOnFial") && e.contains("http_req_duration"),
            "{e}"
        );
        std::fs::write(&path, "[thresholds]\nhttp_req_duration = [3]\n").unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(e.contains("expected a string"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_is_k6_options_in_toml() {
        let dir = std::env::temp_dir().join(format!("caxton-thr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(
            &path,
            "[thresholds]\nhttp_req_duration = [\"p(95)<2000\", \"p(99)<3000\"]\n\"http_req_duration{stage:hold-200}\" = [\"p(99)<1500\"]\n",
        )
        .unwrap();
        let all = load_file(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].text, "http_req_duration: p(99)<3000");
        assert_eq!(all[2].stage.as_deref(), Some("hold-200"));
        std::fs::write(&path, "[threshold]\n").unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("threshold"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
