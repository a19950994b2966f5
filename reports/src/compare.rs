//! Run-vs-baseline comparison: is the current run worse than the baseline, really?
//!
//! A metric **regressed** when it changed in the bad direction by more than its threshold
//! (default 10 %, configurable per metric) **and** the bootstrap confidence interval of the
//! difference ([`crate::bootstrap`]) excludes zero. Beyond the threshold but not significant
//! is reported as such and does not fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

use crate::bootstrap::{self, Bootstrap, Interval, Stratum};
pub use crate::metric::Metric;
use crate::model::{ReportError, RunReport};
use crate::slices::{ArmSlices, unpaired_quantile_differences};

/// Exit status of `caxton-bench compare` when nothing regressed.
pub const EXIT_OK: u8 = 0;
/// Exit status when at least one metric regressed.
pub const EXIT_REGRESSED: u8 = 1;
/// Exit status for unreadable reports or bad flags (so CI can tell them from a regression).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Default relative threshold.
pub const DEFAULT_THRESHOLD: f64 = 0.10;

#[derive(Debug, Error)]
pub enum CompareError {
    #[error("{flag} `{value}`: expected a percentage such as `10%`")]
    Percent { flag: String, value: String },
    #[error("--metric-threshold `{value}`: expected METRIC=PERCENT with METRIC one of {known}")]
    MetricThreshold { value: String, known: String },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(
        "report of run {run}: its p{} is {stated} ms but its histogram says {histogram} ms; \
         the report was altered or damaged",
        quantile * 100.0
    )]
    Disagree {
        run: String,
        quantile: f64,
        stated: f64,
        histogram: f64,
    },
}

/// Thresholds and bootstrap settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Relative change (0.10 = 10 %) allowed for every metric without its own.
    pub threshold: f64,
    pub per_metric: BTreeMap<Metric, f64>,
    pub bootstrap: Bootstrap,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            threshold: DEFAULT_THRESHOLD,
            per_metric: BTreeMap::new(),
            bootstrap: Bootstrap::default(),
        }
    }
}

impl CompareOptions {
    /// From the flags: `--threshold 10%` and `--metric-threshold p95=5%` (repeatable).
    pub fn from_flags(
        threshold: Option<&str>,
        per_metric: &[String],
    ) -> Result<Self, CompareError> {
        let mut opts = CompareOptions::default();
        if let Some(t) = threshold {
            opts.threshold = parse_percent(t, "--threshold")?;
        }
        for item in per_metric {
            let known = || {
                Metric::ALL
                    .iter()
                    .map(|m| m.key())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (key, value) =
                item.split_once('=')
                    .ok_or_else(|| CompareError::MetricThreshold {
                        value: item.clone(),
                        known: known(),
                    })?;
            let metric =
                Metric::parse(key.trim()).ok_or_else(|| CompareError::MetricThreshold {
                    value: item.clone(),
                    known: known(),
                })?;
            opts.per_metric
                .insert(metric, parse_percent(value.trim(), "--metric-threshold")?);
        }
        Ok(opts)
    }

    pub fn threshold_for(&self, m: Metric) -> f64 {
        self.per_metric.get(&m).copied().unwrap_or(self.threshold)
    }
}

/// `10%` → 0.10. The `%` is required, so `0.1` cannot be mistaken for 0.1 % or 10 %.
pub fn parse_percent(text: &str, flag: &str) -> Result<f64, CompareError> {
    let bad = || CompareError::Percent {
        flag: flag.to_string(),
        value: text.to_string(),
    };
    let number = text.trim().strip_suffix('%').ok_or_else(bad)?;
    let v: f64 = number.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(v / 100.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold.
    Ok,
    /// Beyond the threshold, but the interval includes zero: noise at this sample size.
    NotSignificant,
    Improved,
    Regressed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::NotSignificant => "not significant",
            Verdict::Improved => "improved",
            Verdict::Regressed => "REGRESSED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    pub metric: Metric,
    pub baseline: f64,
    pub current: f64,
    /// Relative change (current / baseline − 1); infinite when only the baseline is 0.
    pub change: f64,
    /// Confidence interval of current − baseline, in the metric's unit.
    pub interval: Option<Interval>,
    pub threshold: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub baseline_run: String,
    pub current_run: String,
    pub rows: Vec<MetricComparison>,
    pub bootstrap: Bootstrap,
    /// What the latency intervals resample.
    pub resampled: Resampled,
}

/// What the latency intervals of a comparison resample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampled {
    /// Both runs carry slices (`--slice-seconds`): slices, blocks of time that keep the
    /// correlation within a run.
    Slices { baseline: usize, current: usize },
    /// Requests, as if each were independent: the interval is too narrow.
    Requests,
}

impl Resampled {
    /// The caveat every comparison prints: two runs alone cannot see the run-to-run noise.
    pub fn note(self) -> String {
        let unit = match self {
            Resampled::Slices { baseline, current } => {
                format!("latency intervals resample slices ({baseline} and {current})")
            }
            Resampled::Requests => "latency intervals resample requests (the runs carry no \
                 slices: record them with --slice-seconds), which makes them too narrow"
                .to_string(),
        };
        format!(
            "{unit}; one pair of runs made at different times cannot measure the machine's \
             run-to-run noise: judge against a history directory (calibrated thresholds) or \
             measure both builds together with `caxton-bench ab`"
        )
    }
}

/// Compares two runs' overall figures.
pub fn compare(
    baseline: &RunReport,
    current: &RunReport,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    let quantiles: Vec<f64> = Metric::ALL.iter().filter_map(|m| m.quantile()).collect();
    let b_hist = baseline.overall.histograms.decode_corrected()?;
    let c_hist = current.overall.histograms.decode_corrected()?;
    for (report, h) in [(baseline, &b_hist), (current, &c_hist)] {
        check_agreement(report, h, &quantiles)?;
    }
    let (latency_cis, resampled) = if !baseline.slices.is_empty() && !current.slices.is_empty() {
        let slices = |r: &RunReport| -> Result<ArmSlices, ReportError> {
            ArmSlices::new(&r.slices.iter().collect::<Vec<_>>())
        };
        let cis = unpaired_quantile_differences(
            &slices(baseline)?,
            &slices(current)?,
            opts.bootstrap.resamples,
            opts.bootstrap.confidence,
            opts.bootstrap.seed,
        );
        // In microseconds, as the request bootstrap gives them.
        let us = cis.map(|c| {
            c.map(|i| Interval {
                low: i.low * 1000.0,
                high: i.high * 1000.0,
            })
        });
        let resampled = Resampled::Slices {
            baseline: baseline.slices.len(),
            current: current.slices.len(),
        };
        (us.to_vec(), resampled)
    } else {
        (
            bootstrap::quantile_differences(&b_hist, &c_hist, &quantiles, &opts.bootstrap),
            Resampled::Requests,
        )
    };
    let throughput_ci = bootstrap::ratio_difference(
        &strata(baseline, |s| (s.requests as f64, 1.0)),
        &strata(current, |s| (s.requests as f64, 1.0)),
        &opts.bootstrap,
    );
    let error_ci = bootstrap::ratio_difference(
        &strata(baseline, |s| (s.failures as f64, s.requests as f64)),
        &strata(current, |s| (s.failures as f64, s.requests as f64)),
        &opts.bootstrap,
    );
    let mut rows = Vec::new();
    let mut qi = 0;
    for metric in Metric::ALL {
        let (b, c, interval) = match metric.quantile() {
            Some(q) => {
                let ci = latency_cis[qi].map(|i| Interval {
                    low: i.low / 1000.0,
                    high: i.high / 1000.0,
                });
                qi += 1;
                let b = baseline.overall.latency_ms.corrected.at(q).unwrap_or(0.0);
                let c = current.overall.latency_ms.corrected.at(q).unwrap_or(0.0);
                (b, c, ci)
            }
            None if metric == Metric::Throughput => (
                baseline.overall.throughput_rps,
                current.overall.throughput_rps,
                throughput_ci,
            ),
            None => (
                baseline.overall.error_rate,
                current.overall.error_rate,
                error_ci,
            ),
        };
        let threshold = opts.threshold_for(metric);
        let change = relative_change(b, c);
        rows.push(MetricComparison {
            metric,
            baseline: b,
            current: c,
            change,
            interval,
            threshold,
            verdict: verdict(metric, change, threshold, interval),
        });
    }
    Ok(Comparison {
        baseline_run: baseline.run_id.clone(),
        current_run: current.run_id.clone(),
        rows,
        bootstrap: opts.bootstrap,
        resampled,
    })
}

/// The figures a report states and its histogram must agree (within the histogram's
/// precision): a report edited by hand, or damaged, would otherwise show one number beside
/// an interval computed from another.
fn check_agreement(
    report: &RunReport,
    h: &hdrhistogram::Histogram<u64>,
    quantiles: &[f64],
) -> Result<(), CompareError> {
    let stated = &report.overall.latency_ms.corrected;
    for &q in quantiles {
        let (Some(figure), false) = (stated.at(q), h.is_empty()) else {
            continue;
        };
        let from_histogram = h.value_at_quantile(q) as f64 / 1000.0;
        let tolerance = 0.01 * from_histogram.max(figure) + 0.002;
        if (figure - from_histogram).abs() > tolerance {
            return Err(CompareError::Disagree {
                run: report.run_id.clone(),
                quantile: q,
                stated: figure,
                histogram: from_histogram,
            });
        }
    }
    Ok(())
}

fn strata(
    report: &RunReport,
    f: impl Fn(&crate::model::SecondSample) -> (f64, f64),
) -> Vec<Stratum> {
    let mut by_stage: Vec<(String, Stratum)> = Vec::new();
    for s in &report.timeline {
        match by_stage.iter_mut().find(|(name, _)| *name == s.stage) {
            Some((_, st)) => st.push(f(s)),
            None => by_stage.push((s.stage.clone(), vec![f(s)])),
        }
    }
    by_stage.into_iter().map(|(_, st)| st).collect()
}

fn relative_change(baseline: f64, current: f64) -> f64 {
    if baseline == 0.0 {
        if current == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        current / baseline - 1.0
    }
}

pub(crate) fn verdict(
    metric: Metric,
    change: f64,
    threshold: f64,
    interval: Option<Interval>,
) -> Verdict {
    let sign = if metric.higher_is_worse() { 1.0 } else { -1.0 };
    let worse = sign * change > threshold;
    let better = sign * change < -threshold;
    if !worse && !better {
        return Verdict::Ok;
    }
    // Significant in the direction of the change: the whole interval on that side of zero.
    let significant = interval.is_some_and(|i| {
        let (lo, hi) = (sign * i.low, sign * i.high);
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        if worse { lo > 0.0 } else { hi < 0.0 }
    });
    match (worse, significant) {
        (true, true) => Verdict::Regressed,
        (false, true) => Verdict::Improved,
        _ => Verdict::NotSignificant,
    }
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
    }

    pub fn exit_code(&self) -> u8 {
        if self.regressed() {
            EXIT_REGRESSED
        } else {
            EXIT_OK
        }
    }

    /// Table cells: metric, baseline, current, change, CI, threshold, verdict.
    pub fn cells(&self) -> Vec<[String; 7]> {
        self.rows
            .iter()
            .map(|r| {
                let ci = match r.interval {
                    Some(i) => format!(
                        "[{}, {}]",
                        format_signed(r.metric, i.low),
                        format_signed(r.metric, i.high)
                    ),
                    None => "n/a".into(),
                };
                [
                    r.metric.label().to_string(),
                    r.metric.format(r.baseline),
                    r.metric.format(r.current),
                    format_change(r.change),
                    ci,
                    format!("±{:.0}%", r.threshold * 100.0),
                    r.verdict.as_str().to_string(),
                ]
            })
            .collect()
    }

    fn headers(&self) -> [String; 7] {
        [
            "metric".into(),
            "baseline".into(),
            "current".into(),
            "change".into(),
            format!("{:.0}% CI of difference", self.bootstrap.confidence * 100.0),
            "threshold".into(),
            "verdict".into(),
        ]
    }

    fn summary(&self) -> String {
        let regressed: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed)
            .map(|r| r.metric.key())
            .collect();
        if regressed.is_empty() {
            "no significant regression".to_string()
        } else {
            format!("regressed: {}", regressed.join(", "))
        }
    }

    /// Plain-text table for terminals and logs.
    pub fn to_text(&self) -> String {
        let header = self.headers();
        let cells = self.cells();
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = format!(
            "caxton-bench compare: baseline {} vs current {}\n\n",
            self.baseline_run, self.current_run
        );
        for row in std::iter::once(&header).chain(&cells) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let pad = w - c.chars().count();
                    if i == 0 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "  {}", line.join("  ").trim_end());
        }
        let _ = write!(
            out,
            "\n{} (bootstrap: {} resamples, seed {:#x})\nnote: {}\n",
            self.summary(),
            self.bootstrap.resamples,
            self.bootstrap.seed,
            self.resampled.note()
        );
        out
    }

    /// GitHub-flavoured Markdown, for CI comments.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = format!(
            "### caxton-bench: `{}` vs baseline `{}`\n\n",
            esc(&self.current_run),
            esc(&self.baseline_run)
        );
        let header = self.headers();
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
        for row in self.cells() {
            let mut row: Vec<String> = row.iter().map(|c| esc(c)).collect();
            if row[6] == Verdict::Regressed.as_str() {
                row[6] = format!("**{}**", row[6]);
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(out, "\n{}\n\n_{}_", self.summary(), self.resampled.note());
        out
    }
}

/// A relative change as a signed percentage, e.g. `+31.0%`.
pub(crate) fn format_change(change: f64) -> String {
    if change.is_infinite() {
        "new (baseline 0)".into()
    } else {
        format!("{:+.1}%", change * 100.0)
    }
}

pub(crate) fn format_signed(metric: Metric, v: f64) -> String {
    let text = metric.format(v);
    if v >= 0.0 { format!("+{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_need_their_sign() {
        assert_eq!(parse_percent("10%", "--threshold").unwrap(), 0.10);
        assert_eq!(parse_percent(" 2.5 %", "--threshold").unwrap(), 0.025);
        let err = parse_percent("0.1", "--threshold").unwrap_err().to_string();
        assert!(err.contains("--threshold") && err.contains("0.1"), "{err}");
        assert!(parse_percent("-5%", "--threshold").is_err());
    }

    #[test]
    fn per_metric_thresholds_override_the_default() {
        let opts =
            CompareOptions::from_flags(Some("20%"), &["p95=5%".into(), "error_rate = 50%".into()])
                .unwrap();
        assert_eq!(opts.threshold_for(Metric::P95), 0.05);
        assert_eq!(opts.threshold_for(Metric::ErrorRate), 0.5);
        assert_eq!(opts.threshold_for(Metric::P99), 0.2);
        let err = CompareOptions::from_flags(None, &["p97=5%".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p97=5%") && err.contains("throughput"),
            "{err}"
        );
    }

    #[test]
    fn verdict_needs_both_size_and_significance() {
        let sig_up = Some(Interval {
            low: 1.0,
            high: 3.0,
        });
        let noisy = Some(Interval {
            low: -1.0,
            high: 3.0,
        });
        let sig_down = Some(Interval {
            low: -3.0,
            high: -1.0,
        });
        assert_eq!(verdict(Metric::P95, 0.2, 0.1, sig_up), Verdict::Regressed);
        assert_eq!(
            verdict(Metric::P95, 0.2, 0.1, noisy),
            Verdict::NotSignificant
        );
        assert_eq!(verdict(Metric::P95, 0.05, 0.1, sig_up), Verdict::Ok);
        assert_eq!(verdict(Metric::P95, -0.2, 0.1, sig_down), Verdict::Improved);
        // Throughput: falling is worse.
        assert_eq!(
            verdict(Metric::Throughput, -0.2, 0.1, sig_down),
            Verdict::Regressed
        );
        assert_eq!(
            verdict(Metric::Throughput, 0.2, 0.1, sig_up),
            Verdict::Improved
        );
        assert_eq!(
            verdict(Metric::ErrorRate, f64::INFINITY, 0.1, sig_up),
            Verdict::Regressed
        );
        assert_eq!(
            verdict(Metric::P95, 0.2, 0.1, None),
            Verdict::NotSignificant
        );
    }
}
