//! Paired A/B verdicts: two builds measured together (`caxton-bench ab`), judged on the
//! ratio of candidate to baseline over time-aligned slice pairs.
//!
//! The report of an A/B run ([`AbReport`]) holds both arms as full [`RunReport`]s (each with
//! its `slices`) and the [`AbVerdict`]. A metric **regressed** when its change is beyond the
//! metric's threshold in the bad direction and the paired interval excludes no change (the
//! rule of `compare`, with an interval that comes from pairs instead of requests). Every
//! verdict states its **minimum detectable change**, so a green result says what it could
//! have seen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compare::{self, Metric, Verdict, format_change};
use crate::model::{ReportError, RunReport, Slice};
use crate::slices as estimate;
pub use crate::slices::{Estimate, PairedBootstrap};
use crate::table::{markdown_table, text_table};

mod pairing;
pub use pairing::{Arm, Pairing, owner};

/// Version of the A/B report's own shape (its arms carry the run report's version).
pub const AB_SCHEMA_VERSION: u32 = 1;

/// Default relative threshold of `ab`: a change must be larger than this in the bad
/// direction, as well as significant, to regress. BENCHMARKS.md gives its measured false
/// alarm and detection rates.
pub const DEFAULT_THRESHOLD: f64 = 0.03;

/// Fewer pairs than this cannot be judged: the run is invalid.
pub const MIN_PAIRS: usize = 6;

/// The metrics whose regression fails an A/B run unless `--gate` says otherwise: the CI
/// gate's p95 and the error rate. Every metric is estimated and shown; judging all six
/// would make a false alarm on one of them several times likelier than on p95 alone
/// (BENCHMARKS.md, "Paired A/B").
pub const DEFAULT_GATING: [Metric; 2] = [Metric::P95, Metric::ErrorRate];

/// Thresholds, warm-up and bootstrap of the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedOptions {
    pub threshold: f64,
    pub per_metric: BTreeMap<Metric, f64>,
    /// The metrics whose regression fails the run; the others are shown `(not gating)`.
    pub gating: Vec<Metric>,
    /// Slices starting before this second are discarded (connections, caches, JIT).
    pub warmup_seconds: u64,
    pub bootstrap: PairedBootstrap,
    /// How the arms' slices were made, and so which slices form a pair.
    pub pairing: Pairing,
}

impl Default for PairedOptions {
    fn default() -> Self {
        PairedOptions {
            threshold: DEFAULT_THRESHOLD,
            per_metric: BTreeMap::new(),
            gating: DEFAULT_GATING.to_vec(),
            warmup_seconds: 0,
            bootstrap: PairedBootstrap::default(),
            pairing: Pairing::default(),
        }
    }
}

impl PairedOptions {
    fn threshold_for(&self, m: Metric) -> f64 {
        self.per_metric.get(&m).copied().unwrap_or(self.threshold)
    }
}

/// What the A/B run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbOutcome {
    NoRegression,
    /// A metric regressed, or the candidate breached a threshold.
    Regressed,
    /// The pairing broke or an arm did not produce its load: nothing can be concluded.
    Invalid,
}

impl AbOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AbOutcome::NoRegression => "no regression",
            AbOutcome::Regressed => "REGRESSED",
            AbOutcome::Invalid => "INVALID",
        }
    }
}

/// One metric of the verdict. Latency in ms, throughput in requests per slice, error
/// rate as a fraction; `change`, the interval and `min_detectable` are relative (B/A − 1),
/// except the error rate's interval and `min_detectable`, which are of the difference B − A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbRow {
    pub metric: String,
    pub baseline: f64,
    pub candidate: f64,
    /// `null` in JSON for an infinite change (an error rate from zero), which JSON cannot
    /// write: read back as infinite, so a report with one stays readable.
    #[serde(with = "infinite_as_null")]
    pub change: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub min_detectable: Option<f64>,
    pub threshold: f64,
    pub verdict: String,
}

mod infinite_as_null {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// The verdict of an A/B run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbVerdict {
    pub outcome: AbOutcome,
    /// Slice pairs the estimate used (after the warm-up).
    pub pairs: usize,
    pub slice_seconds: u64,
    pub warmup_seconds: u64,
    pub confidence: f64,
    pub power: f64,
    pub resamples: usize,
    pub rows: Vec<AbRow>,
    /// Why the run cannot be judged (outcome `invalid`), each naming the arm.
    pub invalid: Vec<String>,
    /// The candidate's thresholds that failed (k6 expressions).
    pub thresholds_breached: Vec<String>,
}

/// `report.json` of `caxton-bench ab`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbReport {
    pub schema_version: u32,
    pub run_id: String,
    /// How the load was paired: `concurrent` (both arms at once, each with half the load)
    /// or `interleaved` (in turns, slice by slice, each with the whole load).
    pub pairing: String,
    /// Candidate's load start minus baseline's, ms.
    pub start_skew_ms: i64,
    /// The pair's name in a history: the candidate's `--target-key`, its URL, or `ab-runtime`
    /// for two runtimes started by `ab`. The ratio series are named by it and by the
    /// baseline's build, so a new baseline build starts new series.
    pub target_key: String,
    pub verdict: AbVerdict,
    pub baseline: RunReport,
    pub candidate: RunReport,
}

/// Judges `candidate` (B) against `baseline` (A), both runs with slices of the same length
/// made at the same time.
pub fn judge(
    baseline: &RunReport,
    candidate: &RunReport,
    opts: &PairedOptions,
) -> Result<AbVerdict, ReportError> {
    let mut invalid = Vec::new();
    for (arm, r) in [("baseline", baseline), ("candidate", candidate)] {
        if !r.validity.valid {
            let why: Vec<String> = r
                .validity
                .reasons
                .iter()
                .map(|x| x.detail.clone())
                .collect();
            invalid.push(format!("arm {arm}: the run is invalid: {}", why.join("; ")));
        }
        if let Some(i) = &r.interrupted {
            invalid.push(format!("arm {arm}: {}", i.describe()));
        }
        if r.slices.is_empty() {
            invalid.push(format!("arm {arm}: report {} has no slices", r.run_id));
        }
    }
    let pairs = pairs_of(
        baseline,
        candidate,
        opts.pairing,
        opts.warmup_seconds,
        &mut invalid,
    );
    let slice_seconds = baseline.slices.first().map_or(0, |s| s.seconds);
    if pairs.len() < MIN_PAIRS && invalid.is_empty() {
        invalid.push(format!(
            "only {} slice pairs after the {} s warm-up; at least {MIN_PAIRS} are needed: run \
             longer or use shorter slices",
            pairs.len(),
            opts.warmup_seconds
        ));
    }
    let rows = if pairs.len() >= 2 {
        judge_pairs(&pairs, opts)?
    } else {
        Vec::new()
    };
    let thresholds_breached: Vec<String> = candidate
        .thresholds
        .iter()
        .filter(|t| !t.ok)
        .map(|t| t.expression.clone())
        .collect();
    let regressed = rows
        .iter()
        .any(|r| r.verdict == Verdict::Regressed.as_str())
        || !thresholds_breached.is_empty();
    let outcome = if !invalid.is_empty() {
        AbOutcome::Invalid
    } else if regressed {
        AbOutcome::Regressed
    } else {
        AbOutcome::NoRegression
    };
    Ok(AbVerdict {
        outcome,
        pairs: pairs.len(),
        slice_seconds,
        warmup_seconds: opts.warmup_seconds,
        confidence: opts.bootstrap.confidence,
        power: opts.bootstrap.power,
        resamples: opts.bootstrap.resamples,
        rows,
        invalid,
        thresholds_breached,
    })
}

/// The verdict rows of slice pairs (A, B), every metric of [`Metric::ALL`]: what [`judge`]
/// does once the pairs are found; public so that the verdict's error rates can be measured
/// on pairs drawn from real runs (`examples/ab_eval.rs`).
pub fn judge_pairs(
    pairs: &[(&Slice, &Slice)],
    opts: &PairedOptions,
) -> Result<Vec<AbRow>, ReportError> {
    let (a, b): (Vec<&Slice>, Vec<&Slice>) = pairs.iter().copied().unzip();
    let a = estimate::ArmSlices::new(&a)?;
    let b = estimate::ArmSlices::new(&b)?;
    Ok(Metric::ALL
        .into_iter()
        .zip(estimate::estimate(&a, &b, &opts.bootstrap))
        .map(|(metric, e)| {
            let threshold = opts.threshold_for(metric);
            let verdict = compare::verdict(metric, e.change, threshold, e.interval).as_str();
            let verdict = if opts.gating.contains(&metric) {
                verdict.to_string()
            } else {
                format!("{verdict} (not gating)")
            };
            AbRow {
                metric: metric.key().to_string(),
                baseline: e.baseline,
                candidate: e.candidate,
                change: e.change,
                low: e.interval.map(|i| i.low),
                high: e.interval.map(|i| i.high),
                min_detectable: e.min_detectable,
                threshold,
                verdict,
            }
        })
        .collect())
}

/// The slice pairs of two arms after the warm-up, as `pairing` made them.
fn pairs_of<'a>(
    a: &'a RunReport,
    b: &'a RunReport,
    pairing: Pairing,
    warmup: u64,
    invalid: &mut Vec<String>,
) -> Vec<(&'a Slice, &'a Slice)> {
    match pairing {
        Pairing::Concurrent => pair_slices(a, b, warmup, invalid),
        Pairing::Interleaved => pair_turns(a, b, warmup, invalid),
    }
}

/// The slices both arms measured over the same seconds, after the warm-up.
fn pair_slices<'a>(
    a: &'a RunReport,
    b: &'a RunReport,
    warmup: u64,
    invalid: &mut Vec<String>,
) -> Vec<(&'a Slice, &'a Slice)> {
    let candidates = a
        .slices
        .iter()
        .filter(|s| s.start_seconds >= warmup)
        .filter_map(|sa| Some((sa, slice_at(b, sa.start_seconds, sa.seconds)?)));
    keep_served(candidates, invalid)
}

/// Interleaved: slices 2j and 2j+1 form pair j, each arm's own slice of the two
/// ([`owner`]); the slices an arm did not own hold at most the stragglers of its previous
/// turn and are not used.
fn pair_turns<'a>(
    a: &'a RunReport,
    b: &'a RunReport,
    warmup: u64,
    invalid: &mut Vec<String>,
) -> Vec<(&'a Slice, &'a Slice)> {
    let Some(seconds) = a.slices.first().map(|s| s.seconds).filter(|&s| s > 0) else {
        return Vec::new();
    };
    let last = a.slices.iter().map(|s| s.start_seconds / seconds).max();
    let candidates = (0..=last.unwrap_or(0) / 2)
        .filter(|j| 2 * j * seconds >= warmup)
        .filter_map(|j| {
            let (ka, kb) = match owner(2 * j) {
                Arm::Baseline => (2 * j, 2 * j + 1),
                Arm::Candidate => (2 * j + 1, 2 * j),
            };
            Some((
                slice_at(a, ka * seconds, seconds)?,
                slice_at(b, kb * seconds, seconds)?,
            ))
        });
    keep_served(candidates, invalid)
}

fn slice_at(r: &RunReport, start_seconds: u64, seconds: u64) -> Option<&Slice> {
    r.slices
        .iter()
        .find(|s| s.start_seconds == start_seconds && s.seconds == seconds)
}

/// The pairs both arms were served in. A pair where one arm sent nothing, or got no HTTP
/// answer to anything, while the other was served, breaks the pairing: it is reported
/// (naming the arm and the second) and left out.
fn keep_served<'a>(
    candidates: impl Iterator<Item = (&'a Slice, &'a Slice)>,
    invalid: &mut Vec<String>,
) -> Vec<(&'a Slice, &'a Slice)> {
    let mut pairs = Vec::new();
    let mut broken: BTreeMap<&str, u64> = BTreeMap::new();
    for (sa, sb) in candidates {
        let served = |s: &Slice| s.requests > s.transport_failures;
        let silent = |s: &Slice| !served(s);
        let mut ok = true;
        for (arm, mine, other) in [("baseline", sa, sb), ("candidate", sb, sa)] {
            if silent(mine) && served(other) {
                broken.entry(arm).or_insert(mine.start_seconds);
                ok = false;
            }
        }
        if ok && served(sa) && served(sb) {
            pairs.push((sa, sb));
        }
    }
    for (arm, second) in broken {
        invalid.push(format!(
            "arm {arm} stopped answering at second {second}: its slice got no HTTP answer \
             while the other arm's was served"
        ));
    }
    pairs
}

impl AbReport {
    /// The slice pairs its verdict was judged on, for judging them again
    /// ([`judge_pairs`]); a report that names no known pairing was concurrent.
    pub fn pairs(&self) -> Vec<(&Slice, &Slice)> {
        pairs_of(
            &self.baseline,
            &self.candidate,
            self.pairing.parse().unwrap_or_default(),
            self.verdict.warmup_seconds,
            &mut Vec::new(),
        )
    }

    /// Reads `path` as an A/B run's report when it is one (it names its pairing); `None`
    /// for a single run's report, which [`RunReport::read`] reads.
    pub fn read_if_paired(path: &Path) -> Result<Option<AbReport>, ReportError> {
        let text = std::fs::read(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_if_paired(&text, path)
    }

    /// [`AbReport::read_if_paired`] of a file's bytes, read from `path`.
    pub fn from_json_if_paired(text: &[u8], path: &Path) -> Result<Option<AbReport>, ReportError> {
        #[derive(Deserialize)]
        struct Probe {
            pairing: Option<serde_json::Value>,
        }
        match serde_json::from_slice::<Probe>(text) {
            Ok(Probe { pairing: Some(_) }) => {
                serde_json::from_slice(text)
                    .map(Some)
                    .map_err(|source| ReportError::Parse {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            _ => Ok(None),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        crate::model::write_json(self, path)
    }

    pub(crate) fn cells(&self) -> Vec<[String; 8]> {
        self.verdict
            .rows
            .iter()
            .filter_map(|r| Some((Metric::parse(&r.metric)?, r)))
            .map(|(m, r)| {
                let value = |v: f64| match m {
                    Metric::Throughput => format!("{v:.1} req/slice"),
                    _ => m.format(v),
                };
                let signed = |v: f64| match m {
                    Metric::ErrorRate => format!("{:+.2} pp", v * 100.0),
                    _ => format!("{:+.1}%", v * 100.0),
                };
                let ci = match (r.low, r.high) {
                    (Some(l), Some(h)) => format!("[{}, {}]", signed(l), signed(h)),
                    _ => "n/a".into(),
                };
                let mdc = r.min_detectable.map_or("n/a".into(), |v| match m {
                    Metric::ErrorRate => format!("{:.2} pp", v * 100.0),
                    Metric::Throughput => format!("-{:.1}%", v * 100.0),
                    _ => format!("+{:.1}%", v * 100.0),
                });
                [
                    m.label().to_string(),
                    value(r.baseline),
                    value(r.candidate),
                    format_change(r.change),
                    ci,
                    mdc,
                    format!("±{:.0}%", r.threshold * 100.0),
                    r.verdict.clone(),
                ]
            })
            .collect()
    }

    pub(crate) fn headers(&self) -> [String; 8] {
        [
            "metric".into(),
            "baseline (A)".into(),
            "candidate (B)".into(),
            "change B/A".into(),
            format!("{:.0}% CI (paired)", self.verdict.confidence * 100.0),
            format!("detectable ({:.0}% power)", self.verdict.power * 100.0),
            "threshold".into(),
            "verdict".into(),
        ]
    }

    pub(crate) fn preamble(&self) -> String {
        let v = &self.verdict;
        format!(
            "baseline {} ({}) vs candidate {} ({})\npairing {}: {} pairs of {} s slices, the \
             first {} s discarded as warm-up, start skew {} ms; intervals resample pairs, \
             not requests",
            self.baseline.run_id,
            self.baseline.target,
            self.candidate.run_id,
            self.candidate.target,
            self.pairing,
            v.pairs,
            v.slice_seconds,
            v.warmup_seconds,
            self.start_skew_ms
        )
    }

    pub(crate) fn conclusion(&self) -> String {
        let v = &self.verdict;
        let mut out = format!("verdict: {}", v.outcome.as_str());
        for why in &v.invalid {
            let _ = write!(out, "\n  invalid: {why}");
        }
        let regressed: Vec<&str> = v
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed.as_str())
            .map(|r| r.metric.as_str())
            .collect();
        if !regressed.is_empty() {
            let _ = write!(out, "\n  regressed: {}", regressed.join(", "));
        }
        for t in &v.thresholds_breached {
            let _ = write!(out, "\n  candidate breached threshold: {t}");
        }
        if let Some(mdc) = v
            .rows
            .iter()
            .find(|r| r.metric == Metric::P95.key())
            .and_then(|r| r.min_detectable)
        {
            let _ = write!(
                out,
                "\n  this run would have seen a p95 change of {:+.1}% or more with {:.0}% power",
                mdc * 100.0,
                v.power * 100.0
            );
        }
        out + "\n"
    }

    /// Plain text for terminals and logs.
    pub fn to_text(&self) -> String {
        let headers = self.headers();
        let headers: [&str; 8] = headers.each_ref().map(String::as_str);
        format!(
            "caxton-bench ab: {}\n\n{}\n{}",
            self.preamble(),
            text_table(&headers, &self.cells()),
            self.conclusion()
        )
    }

    /// GitHub Markdown, for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let headers = self.headers();
        let headers: [&str; 8] = headers.each_ref().map(String::as_str);
        format!(
            "### caxton-bench ab: {}\n\n{}\n\n{}\n```\n{}```\n",
            self.verdict.outcome.as_str(),
            self.preamble().replace('\n', "  \n"),
            markdown_table(&headers, &self.cells()),
            self.conclusion()
        )
    }
}
