//! The regression gates: which benchmark got slower than its threshold allows.
//!
//! Criterion alone exits 0 on a detected regression. The wall-time gate reads criterion's
//! comparison with a saved baseline and fails a benchmark whose mean got slower by more than
//! its threshold *and* whose confidence interval of the change lies entirely above zero (a
//! large but insignificant change is noise on a shared machine). The instruction-count gate
//! compares callgrind counts, which are deterministic enough for a tight threshold.
//!
//! Thresholds come from `benches/gate.toml` ([`GateConfig`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::criterion_results::BenchResult;

/// Default wall-time threshold: 10% slower.
pub const DEFAULT_WALL_THRESHOLD_PCT: f64 = 10.0;
/// Default instruction-count threshold: 2% more instructions.
pub const DEFAULT_INSTRUCTIONS_THRESHOLD_PCT: f64 = 2.0;

#[derive(Debug, Error)]
pub enum GateConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: threshold for `{key}` is {value}; it must be a finite percentage >= 0")]
    Invalid {
        path: PathBuf,
        key: String,
        value: f64,
    },
}

/// `benches/gate.toml`. Every key is optional.
///
/// ```toml
/// [criterion]
/// default_threshold_pct = 10.0          # default 10
/// [criterion.thresholds]                 # per benchmark: full criterion id, or a prefix ending in *
/// "wasm/compile_test_agent" = 25.0
/// "http/*" = 20.0
///
/// [callgrind]
/// default_threshold_pct = 2.0           # default 2
/// [callgrind.thresholds]
/// "routing_100_agents" = 3.0
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    pub criterion: Thresholds,
    pub callgrind: Thresholds,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Percent; see [`GateConfig`] for the defaults.
    pub default_threshold_pct: f64,
    /// Benchmark (or `prefix*`) -> percent. The longest matching key wins.
    pub thresholds: BTreeMap<String, f64>,
}

/// The file as written; [`GateConfig::from_toml_str`] fills the defaults.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    criterion: Option<RawThresholds>,
    callgrind: Option<RawThresholds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    default_threshold_pct: Option<f64>,
    #[serde(default)]
    thresholds: BTreeMap<String, f64>,
}

impl RawThresholds {
    fn resolve(raw: Option<RawThresholds>, default: f64) -> Thresholds {
        let raw = raw.unwrap_or(RawThresholds {
            default_threshold_pct: None,
            thresholds: BTreeMap::new(),
        });
        Thresholds {
            default_threshold_pct: raw.default_threshold_pct.unwrap_or(default),
            thresholds: raw.thresholds,
        }
    }
}

impl GateConfig {
    /// Both gates at their defaults (10% wall time, 2% instructions).
    pub fn defaults() -> GateConfig {
        GateConfig {
            criterion: Thresholds {
                default_threshold_pct: DEFAULT_WALL_THRESHOLD_PCT,
                thresholds: BTreeMap::new(),
            },
            callgrind: Thresholds {
                default_threshold_pct: DEFAULT_INSTRUCTIONS_THRESHOLD_PCT,
                thresholds: BTreeMap::new(),
            },
        }
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<GateConfig, GateConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| GateConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let cfg = GateConfig {
            criterion: RawThresholds::resolve(raw.criterion, DEFAULT_WALL_THRESHOLD_PCT),
            callgrind: RawThresholds::resolve(raw.callgrind, DEFAULT_INSTRUCTIONS_THRESHOLD_PCT),
        };
        for (table, t) in [("criterion", &cfg.criterion), ("callgrind", &cfg.callgrind)] {
            let all = std::iter::once((
                format!("{table}.default_threshold_pct"),
                t.default_threshold_pct,
            ))
            .chain(
                t.thresholds
                    .iter()
                    .map(|(k, v)| (format!("{table}.thresholds.\"{k}\""), *v)),
            );
            for (key, value) in all {
                if !value.is_finite() || value < 0.0 {
                    return Err(GateConfigError::Invalid {
                        path: path.to_owned(),
                        key,
                        value,
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<GateConfig, GateConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml_str(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::defaults()),
            Err(source) => Err(GateConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

impl Thresholds {
    /// The threshold in percent for `bench`: an exact key, else the longest `prefix*` key
    /// that matches, else the default.
    pub fn for_bench(&self, bench: &str) -> f64 {
        if let Some(v) = self.thresholds.get(bench) {
            return *v;
        }
        self.thresholds
            .iter()
            .filter_map(|(k, v)| {
                let prefix = k.strip_suffix('*')?;
                bench.starts_with(prefix).then_some((prefix.len(), *v))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(self.default_threshold_pct, |(_, v)| v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Slower beyond the threshold, significantly: fails the gate.
    Regressed,
    /// Faster beyond the threshold, significantly.
    Improved,
    /// Within the threshold, or the change is not significant.
    Unchanged,
    /// No comparison: the baseline lacks this benchmark.
    New,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "REGRESSED",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "ok",
            Verdict::New => "new",
        }
    }
}

/// One line of a gate's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bench: String,
    /// Baseline value (ns for wall time, instructions for callgrind).
    pub baseline: Option<f64>,
    pub current: f64,
    /// Percent change of the mean.
    pub change_pct: Option<f64>,
    /// Confidence interval of the change, percent (wall time only).
    pub ci_pct: Option<(f64, f64)>,
    pub threshold_pct: f64,
    pub verdict: Verdict,
}

/// The outcome of a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub unit: Unit,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Nanoseconds,
    Instructions,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
    }

    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Regressed)
    }

    /// A plain-text table, one benchmark per line.
    pub fn table(&self) -> String {
        let value = |v: f64| match self.unit {
            Unit::Nanoseconds => format_ns(v),
            Unit::Instructions => format!("{v:.0}"),
        };
        let width = self
            .rows
            .iter()
            .map(|r| r.bench.len())
            .chain([9])
            .max()
            .unwrap_or(9);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>9}  {:>19}  {:>9}  verdict",
            "benchmark", "baseline", "current", "change", "95% CI", "threshold"
        );
        for r in &self.rows {
            let baseline = r.baseline.map_or_else(|| "-".into(), value);
            let change = r
                .change_pct
                .map_or_else(|| "-".into(), |c| format!("{c:+.2}%"));
            let ci = r
                .ci_pct
                .map_or_else(|| "-".into(), |(lo, hi)| format!("[{lo:+.2}%, {hi:+.2}%]"));
            let _ = writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {:>9}  {:>19}  {:>8.1}%  {}",
                r.bench,
                baseline,
                value(r.current),
                change,
                ci,
                r.threshold_pct,
                r.verdict.as_str()
            );
        }
        out
    }
}

/// Human-readable duration from nanoseconds.
pub(crate) fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// The wall-time gate over criterion results (see the module docs for the rule).
pub fn criterion_gate(results: &[BenchResult], thresholds: &Thresholds) -> Report {
    let rows = results
        .iter()
        .map(|r| {
            let threshold_pct = thresholds.for_bench(&r.name);
            let Some(change) = r.change else {
                return Row {
                    bench: r.name.clone(),
                    baseline: r.baseline.map(|b| b.mean.point_estimate),
                    current: r.new.mean.point_estimate,
                    change_pct: None,
                    ci_pct: None,
                    threshold_pct,
                    verdict: Verdict::New,
                };
            };
            let ci = change.mean.confidence_interval;
            let (point, lo, hi) = (
                change.mean.point_estimate * 100.0,
                ci.lower_bound * 100.0,
                ci.upper_bound * 100.0,
            );
            let verdict = if point > threshold_pct && lo > 0.0 {
                Verdict::Regressed
            } else if point < -threshold_pct && hi < 0.0 {
                Verdict::Improved
            } else {
                Verdict::Unchanged
            };
            Row {
                bench: r.name.clone(),
                baseline: r.baseline.map(|b| b.mean.point_estimate),
                current: r.new.mean.point_estimate,
                change_pct: Some(point),
                ci_pct: Some((lo, hi)),
                threshold_pct,
                verdict,
            }
        })
        .collect();
    Report {
        unit: Unit::Nanoseconds,
        rows,
    }
}

/// The instruction-count gate: `current` against `baseline` (path -> instructions per
/// iteration). Counts are deterministic up to a fraction of a percent, so there is no
/// confidence interval: more than the threshold is a regression.
pub fn instructions_gate(
    baseline: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
    thresholds: &Thresholds,
) -> Report {
    let rows = current
        .iter()
        .map(|(path, &now)| {
            let threshold_pct = thresholds.for_bench(path);
            let base = baseline.get(path).copied().filter(|b| *b > 0.0);
            let change_pct = base.map(|b| (now - b) / b * 100.0);
            let verdict = match change_pct {
                None => Verdict::New,
                Some(c) if c > threshold_pct => Verdict::Regressed,
                Some(c) if c < -threshold_pct => Verdict::Improved,
                Some(_) => Verdict::Unchanged,
            };
            Row {
                bench: path.clone(),
                baseline: base,
                current: now,
                change_pct,
                ci_pct: None,
                threshold_pct,
                verdict,
            }
        })
        .collect();
    Report {
        unit: Unit::Instructions,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_pick_exact_then_longest_prefix_then_default() {
        let cfg = GateConfig::from_toml_str(
            "[criterion]\ndefault_threshold_pct = 10\n[criterion.thresholds]\n\"http/*\" = 20\n\"http/post_agents\" = 30\n\"h*\" = 5\n",
            Path::new("gate.toml"),
        )
        .unwrap();
        let t = &cfg.criterion;
        assert_eq!(t.for_bench("http/post_agents"), 30.0);
        assert_eq!(t.for_bench("http/post_messages_wait"), 20.0);
        assert_eq!(t.for_bench("hx"), 5.0);
        assert_eq!(t.for_bench("fipa/decode/64"), 10.0);
        assert_eq!(cfg.callgrind.default_threshold_pct, 2.0);
    }

    #[test]
    fn bad_config_names_file_and_key() {
        let err = GateConfig::from_toml_str(
            "[criterion.thresholds]\n\"fipa/*\" = -3\n",
            Path::new("benches/gate.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("benches/gate.toml") && err.contains("fipa/*"),
            "{err}"
        );
        let err = GateConfig::from_toml_str("[criterion]\nthreshold = 3\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("g.toml") && err.contains("threshold"), "{err}");
    }

    #[test]
    fn instruction_gate_fails_above_threshold_only() {
        let base = BTreeMap::from([("a".to_owned(), 1000.0), ("b".to_owned(), 1000.0)]);
        let now = BTreeMap::from([
            ("a".to_owned(), 1019.0),
            ("b".to_owned(), 1030.0),
            ("c".to_owned(), 5.0),
        ]);
        let report = instructions_gate(&base, &now, &GateConfig::defaults().callgrind);
        let verdicts: Vec<_> = report.rows.iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Unchanged, Verdict::Regressed, Verdict::New]
        );
        assert!(!report.passed());
        assert!(report.table().contains("REGRESSED"));
    }
}
