//! History of runs: series per (plan, target, scenario, stage, metric), their noise and their
//! change points, and the verdict of the newest run.
//!
//! `series` extracts and names the series, `noise` measures run-to-run noise, `detect` finds
//! change points (a pure function); this module loads a directory of reports, applies them
//! and renders the result (text, Markdown, JSON).

pub mod confirmed;
pub mod detect;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod html;
pub mod micro;
pub mod noise;
pub mod series;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::compare::format_change as pct;
use crate::model::{ReportError, RunReport};
use crate::table::{markdown_table, text_table};
pub use confirmed::Confirmed;
pub use detect::{ChangePoint, DetectOptions};
pub use micro::{MICRO_FILE, MicroRun};
pub use noise::Noise;
pub use series::{RunInfo, Series, SeriesKey};

/// The file name of a run's report in a run directory.
pub const REPORT_FILE: &str = "report.json";

/// Exit status of `caxton-bench history` when the newest run starts a regression.
pub const EXIT_REGRESSION: u8 = 1;

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("cannot read history directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no {REPORT_FILE} or {MICRO_FILE} under {0}")]
    Empty(PathBuf),
    #[error("{0} (pass --skip-unreadable to leave unreadable reports out)")]
    Unreadable(ReportError),
}

/// A run left out of the history, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub run_id: String,
    pub path: PathBuf,
    pub reasons: Vec<String>,
}

/// A valid run as a history keeps it: where it was read, which run it is and its series
/// points. The report itself is not kept (10,000 of them held 450 MB); read it again from
/// `path` for anything else.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRun {
    pub path: PathBuf,
    pub info: RunInfo,
    /// [`series::plan_key`] of its plan.
    pub plan: String,
    /// [`series::observations`] of the report.
    pub observations: Vec<(SeriesKey, f64)>,
}

impl LoadedRun {
    fn new(path: PathBuf, report: &RunReport) -> LoadedRun {
        let dir = path.parent().unwrap_or(Path::new(""));
        let info = RunInfo {
            run_id: report.run_id.clone(),
            version: series::version_of(report),
            started_unix_ms: report.started_unix_ms,
            profile: report
                .flamegraph
                .as_ref()
                .and_then(|f| f.profile.as_ref().map(|p| dir.join(p))),
        };
        LoadedRun {
            plan: series::plan_key(&report.plan),
            observations: series::observations(report),
            info,
            path,
        }
    }
}

/// Reports as read from a history: the valid runs in time order, the rest accounted for.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The valid load runs, in time order.
    pub runs: Vec<LoadedRun>,
    /// Runs marked invalid: left out.
    pub invalid: Vec<Excluded>,
    /// Reports that could not be read (only with `skip_unreadable`), with the reason.
    pub unreadable: Vec<String>,
    /// Micro-benchmark runs (`micro.json`), in time order.
    pub micro: Vec<(PathBuf, MicroRun)>,
    /// A/B runs (`caxton-bench ab`'s report.json): their paired ratios, in time order. Their
    /// arms' own reports, in the A/B run's directory, are runs like any other.
    pub paired: Vec<(PathBuf, crate::paired::AbReport)>,
}

/// Every `report.json` and `micro.json` under `dir` (run directories, any depth, symlinked
/// directories not followed), in path order. Worker reports of a distributed run are parts of the merged one and are left out.
fn report_files(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| HistoryError::Dir {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| HistoryError::Dir {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            // The entry's own type, not its target's: a symlink to a directory (`ln -s .
            // DIR/self`) is not followed, so no run is read twice and no loop is walked.
            let kind = entry.file_type().map_err(|source| HistoryError::Dir {
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() && path.is_dir() {
                continue;
            } else if path
                .file_name()
                .is_some_and(|n| n == REPORT_FILE || n == MICRO_FILE)
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every report under `dir`. An unreadable one is an error naming the file and the
/// reason, or with `skip_unreadable` a line in [`Loaded::unreadable`].
pub fn load_dir(dir: &Path, skip_unreadable: bool) -> Result<Loaded, HistoryError> {
    let files = report_files(dir)?;
    if files.is_empty() {
        return Err(HistoryError::Empty(dir.to_path_buf()));
    }
    let mut loaded = Loaded::default();
    // Run id -> where it was first read (load runs and micro runs apart): a second report
    // with the same id (a copy of a run directory) is left out, named, not counted twice.
    let mut seen_runs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut seen_micro: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files {
        if path.file_name().is_some_and(|n| n == MICRO_FILE) {
            match MicroRun::read(&path) {
                Ok(m) if duplicate(&mut seen_micro, &m.run_id, &path, &mut loaded) => {}
                Ok(m) => loaded.micro.push((path, m)),
                Err(e) if skip_unreadable => loaded.unreadable.push(e.to_string()),
                Err(e) => return Err(HistoryError::Unreadable(e)),
            }
            continue;
        }
        // Read once: an A/B run's report and a single run's share the file name.
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(source) => {
                let e = ReportError::Read { path, source };
                if skip_unreadable {
                    loaded.unreadable.push(e.to_string());
                    continue;
                }
                return Err(HistoryError::Unreadable(e));
            }
        };
        match crate::paired::AbReport::from_json_if_paired(&text, &path) {
            Ok(Some(ab)) => {
                loaded.paired.push((path, ab));
                continue;
            }
            Ok(None) => {}
            Err(e) if skip_unreadable => {
                loaded.unreadable.push(e.to_string());
                continue;
            }
            Err(e) => return Err(HistoryError::Unreadable(e)),
        }
        let report = match RunReport::from_json(&text, &path) {
            Ok(r) => r,
            Err(e) if skip_unreadable => {
                loaded.unreadable.push(e.to_string());
                continue;
            }
            Err(e) => return Err(HistoryError::Unreadable(e)),
        };
        if report
            .distributed
            .as_ref()
            .is_some_and(|d| d.worker_index.is_some())
        {
            continue;
        }
        if duplicate(&mut seen_runs, &report.run_id, &path, &mut loaded) {
            continue;
        }
        if !report.validity.valid {
            loaded.invalid.push(Excluded {
                run_id: report.run_id.clone(),
                path: path.clone(),
                reasons: report
                    .validity
                    .reasons
                    .iter()
                    .map(|r| r.detail.clone())
                    .collect(),
            });
            continue;
        }
        loaded.runs.push(LoadedRun::new(path, &report));
    }
    loaded.runs.sort_by(|a, b| {
        (a.info.started_unix_ms, &a.info.run_id).cmp(&(b.info.started_unix_ms, &b.info.run_id))
    });
    loaded.micro.sort_by(|a, b| {
        (a.1.started_unix_ms, &a.1.run_id).cmp(&(b.1.started_unix_ms, &b.1.run_id))
    });
    Ok(loaded)
}

/// Whether `run_id` was already read (then `path` goes to `loaded.invalid`, saying where).
fn duplicate(
    seen: &mut BTreeMap<String, PathBuf>,
    run_id: &str,
    path: &Path,
    loaded: &mut Loaded,
) -> bool {
    match seen.get(run_id) {
        Some(first) => {
            loaded.invalid.push(Excluded {
                run_id: run_id.to_owned(),
                path: path.to_path_buf(),
                reasons: vec![format!(
                    "duplicate run id: {run_id} was already read from {}",
                    first.display()
                )],
            });
            true
        }
        None => {
            seen.insert(run_id.to_owned(), path.to_path_buf());
            false
        }
    }
}

impl Loaded {
    /// Nothing to judge: no valid report and no micro-benchmark run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.micro.is_empty() && self.paired.is_empty()
    }

    /// The runs' identities and their observations (load runs and micro-benchmark runs), in
    /// time order.
    pub fn observations(&self) -> (Vec<RunInfo>, Vec<Vec<(SeriesKey, f64)>>) {
        let micro = self.micro.iter().map(|(_, m)| {
            let info = RunInfo {
                run_id: m.run_id.clone(),
                version: m.version.clone(),
                started_unix_ms: m.started_unix_ms,
                profile: None,
            };
            (info, m.observations())
        });
        let mut all: Vec<_> = self
            .runs
            .iter()
            .map(|r| (r.info.clone(), r.observations.clone()))
            .chain(micro)
            .chain(self.paired.iter().map(|(_, ab)| {
                let info = RunInfo {
                    run_id: ab.run_id.clone(),
                    version: series::version_of(&ab.candidate),
                    started_unix_ms: ab.candidate.started_unix_ms,
                    profile: None,
                };
                (info, series::paired_observations(ab))
            }))
            .collect();
        all.sort_by(|a, b| {
            (a.0.started_unix_ms, &a.0.run_id).cmp(&(b.0.started_unix_ms, &b.0.run_id))
        });
        all.into_iter().unzip()
    }
}

/// Improvement or regression: the direction of a change point for its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Regression,
    Improvement,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Regression => "regression",
            Direction::Improvement => "improvement",
        }
    }
}

/// A change point placed in its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub point: ChangePoint,
    /// The last run before and the first run after the change.
    pub before: RunInfo,
    pub after: RunInfo,
    pub direction: Direction,
    /// The newest run is what revealed it: without that run it was not found.
    pub new: bool,
}

/// One series judged.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesVerdict {
    pub series: Series,
    /// `None` when too short to measure.
    pub noise: Option<Noise>,
    /// Fewer runs than the detector needs: nothing can be said.
    pub too_short: bool,
    pub change_points: Vec<Found>,
}

impl SeriesVerdict {
    /// The newest run of the series lies in a segment a regression started: its last change
    /// point is a regression.
    pub fn in_regression(&self) -> bool {
        self.change_points
            .last()
            .is_some_and(|c| c.direction == Direction::Regression)
    }
}

/// Every series of a history judged.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub runs: Vec<RunInfo>,
    pub verdicts: Vec<SeriesVerdict>,
    pub invalid: Vec<Excluded>,
    pub unreadable: Vec<String>,
    pub options: DetectOptions,
    /// The CPU profile diff at a change point, by (run before, run after): the differential
    /// flamegraph's path, or why none is drawn. Set by the caller, who reads the profiles.
    pub profile_diffs: BTreeMap<(String, String), Result<PathBuf, String>>,
    /// Regressions the newest paired nights agree on ([`confirmed`]); set by the caller,
    /// who holds the A/B reports.
    pub confirmed: Vec<Confirmed>,
}

/// Judges every series of the given runs (in time order).
pub fn analyse(
    runs: Vec<RunInfo>,
    per_run: &[Vec<(SeriesKey, f64)>],
    options: &DetectOptions,
) -> History {
    // The newest run of each plan and target: a nightly's load runs and micro-benchmark
    // runs (or two plans) interleave in one directory, and each is judged on its own newest.
    let mut newest: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for (i, obs) in per_run.iter().enumerate() {
        for (k, _) in obs {
            newest.insert((k.plan.as_str(), k.target.as_str()), i);
        }
    }
    let judge = |s: Series| {
        let last = newest
            .get(&(s.key.plan.as_str(), s.key.target.as_str()))
            .copied();
        judge_series(s, last, &runs, options)
    };
    let verdicts = judge_all(series::build(per_run), judge);
    History {
        runs,
        verdicts,
        invalid: Vec::new(),
        unreadable: Vec::new(),
        options: *options,
        profile_diffs: BTreeMap::new(),
        confirmed: Vec::new(),
    }
}

/// `judge` applied to every series, in order, on every core: each series is judged on its
/// own (a long history's split search is O(runs²) per series), so they share nothing.
fn judge_all(
    all: Vec<Series>,
    judge: impl Fn(Series) -> SeriesVerdict + Sync,
) -> Vec<SeriesVerdict> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(all.len());
    if threads <= 1 {
        return all.into_iter().map(judge).collect();
    }
    let count = all.len();
    // Taken one at a time: series differ in length, so a fixed share per thread would
    // leave one core idle.
    let queue = std::sync::Mutex::new(all.into_iter().enumerate());
    let mut judged: Vec<(usize, SeriesVerdict)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().map(|mut q| q.next());
                        let Ok(Some((i, s))) = next else {
                            return done;
                        };
                        done.push((i, judge(s)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    judged.sort_by_key(|(i, _)| *i);
    debug_assert_eq!(judged.len(), count);
    judged.into_iter().map(|(_, v)| v).collect()
}

/// `newest`: the newest run of the series' plan and target.
fn judge_series(
    series: Series,
    newest: Option<usize>,
    runs: &[RunInfo],
    options: &DetectOptions,
) -> SeriesVerdict {
    let worse = series.key.metric.higher_is_worse();
    let values = &series.values;
    let too_short = values.len() < options.min_len();
    let mut judged = detect::Judgements::default();
    let points = detect::detect_with(values, options, &mut judged);
    // The newest run of its plan and target (not of the series: a stage may be missing from
    // it) must be in this series for it to reveal anything.
    let has_newest = newest.is_some() && series.runs.last().copied() == newest;
    let earlier = if has_newest && !points.is_empty() {
        // Only where its change points lie is compared, so their intervals (the
        // bootstrap, which changes no decision) are not drawn.
        let where_only = DetectOptions {
            bootstrap: crate::bootstrap::Bootstrap {
                resamples: 0,
                ..options.bootstrap
            },
            ..*options
        };
        detect::detect_with(&values[..values.len() - 1], &where_only, &mut judged)
    } else {
        Vec::new()
    };
    let change_points = points
        .into_iter()
        .map(|point| {
            let up = point.change > 0.0;
            let direction = if up == worse {
                Direction::Regression
            } else {
                Direction::Improvement
            };
            let new = has_newest && !earlier.iter().any(|e| e.index.abs_diff(point.index) <= 1);
            Found {
                before: runs[series.runs[point.index - 1]].clone(),
                after: runs[series.runs[point.index]].clone(),
                point,
                direction,
                new,
            }
        })
        .collect();
    SeriesVerdict {
        noise: noise::measure(values, worse),
        too_short,
        change_points,
        series,
    }
}

impl History {
    /// Change points in series order.
    pub fn change_points(&self) -> impl Iterator<Item = (&SeriesKey, &Found)> {
        self.verdicts
            .iter()
            .flat_map(|v| v.change_points.iter().map(move |c| (&v.series.key, c)))
    }

    /// A regression the newest run revealed, or one the newest paired nights confirm.
    pub fn newest_regresses(&self) -> bool {
        !self.confirmed.is_empty()
            || self
                .change_points()
                .any(|(_, c)| c.new && c.direction == Direction::Regression)
    }

    pub fn exit_code(&self) -> u8 {
        if self.newest_regresses() {
            EXIT_REGRESSION
        } else {
            0
        }
    }

    /// The profile diff recorded for a change point.
    pub fn diff_of(&self, c: &Found) -> Option<&Result<PathBuf, String>> {
        self.profile_diffs
            .get(&(c.before.run_id.clone(), c.after.run_id.clone()))
    }

    /// One line per change point's profile diff.
    fn diff_lines(&self) -> Vec<String> {
        self.profile_diffs
            .iter()
            .map(|((before, after), d)| match d {
                Ok(path) => format!("profile diff {before} → {after}: {}", path.display()),
                Err(why) => format!("profile diff {before} → {after}: not drawn: {why}"),
            })
            .collect()
    }

    /// The verdicts of series too short to judge.
    pub fn too_short(&self) -> impl Iterator<Item = &SeriesVerdict> {
        self.verdicts.iter().filter(|v| v.too_short)
    }

    /// How many series had enough runs to be judged.
    pub fn judged(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.too_short).count()
    }

    /// `judged`, or `not_enough_runs` when no series could be judged: a history of a few
    /// nights says nothing yet, which is not the same as "nothing changed".
    pub fn status(&self) -> &'static str {
        if self.judged() == 0 {
            "not_enough_runs"
        } else {
            "judged"
        }
    }

    /// `{"change_points": [...], "noise": {series: {...}}, ...}`.
    pub fn to_json(&self) -> Value {
        let change_points: Vec<Value> = self
            .change_points()
            .map(|(key, c)| {
                json!({
                    "metric": key.metric.key(),
                    "stage": key.stage,
                    "scenario": key.scenario,
                    "plan": key.plan,
                    "target": key.target,
                    "series": key.to_string(),
                    "run_id": c.after.run_id,
                    "version": c.after.version,
                    "previous_run_id": c.before.run_id,
                    "previous_version": c.before.version,
                    "index": c.point.index,
                    "direction": c.direction.as_str(),
                    "change": c.point.change,
                    "ci": [c.point.ci.low, c.point.ci.high],
                    "p_value": c.point.p_value,
                    "new": c.new,
                    "diff": self.diff_of(c).and_then(|d| d.as_ref().ok()),
                    "diff_not_drawn": self.diff_of(c).and_then(|d| d.as_ref().err()),
                })
            })
            .collect();
        let noise: serde_json::Map<String, Value> = self
            .verdicts
            .iter()
            .map(|v| {
                let value = match &v.noise {
                    Some(n) => json!({
                        "runs": v.series.values.len(),
                        "sigma": n.sigma,
                        "threshold": n.threshold,
                        "expected_false_positive_rate": n.false_positive_rate(n.threshold),
                        "default_threshold_false_positive_rate":
                            n.false_positive_rate(crate::compare::DEFAULT_THRESHOLD),
                        "observed_false_positive_rate": n.observed_false_positive_rate,
                    }),
                    None => json!({"runs": v.series.values.len()}),
                };
                (v.series.key.to_string(), value)
            })
            .collect();
        json!({
            "runs": self.runs.len(),
            "change_points": change_points,
            "noise": noise,
            "status": self.status(),
            "judged_series": self.judged(),
            "too_short": self.too_short().map(|v| v.series.key.to_string()).collect::<Vec<_>>(),
            "invalid": self.invalid,
            "unreadable": self.unreadable,
            "confirmed_regressions": self.confirmed,
            "regression": self.newest_regresses(),
        })
    }

    pub(crate) fn change_rows(&self) -> Vec<[String; 6]> {
        self.change_points()
            .map(|(key, c)| {
                [
                    key.to_string(),
                    format!("{} → {}", c.before.run_id, c.after.run_id),
                    format!("{} → {}", c.before.version, c.after.version),
                    format!(
                        "{} [{}, {}]",
                        pct(c.point.change),
                        pct(c.point.ci.low),
                        pct(c.point.ci.high)
                    ),
                    format!("{:.1e}", c.point.p_value),
                    format!(
                        "{}{}",
                        c.direction.as_str(),
                        if c.new { " (newest run)" } else { "" }
                    ),
                ]
            })
            .collect()
    }

    fn noise_rows(&self) -> Vec<[String; 5]> {
        self.verdicts
            .iter()
            .map(|v| {
                let runs = v.series.values.len().to_string();
                match &v.noise {
                    Some(n) => [
                        v.series.key.to_string(),
                        runs,
                        pct(n.sigma),
                        format!(
                            "{} ({:.1}% FP)",
                            pct(n.threshold),
                            100.0 * n.false_positive_rate(n.threshold)
                        ),
                        format!(
                            "{:.1}%",
                            100.0 * n.false_positive_rate(crate::compare::DEFAULT_THRESHOLD)
                        ),
                    ],
                    None => [
                        v.series.key.to_string(),
                        runs,
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ],
                }
            })
            .collect()
    }

    pub(crate) const CHANGE_HEADERS: [&str; 6] = [
        "series",
        "runs (before → after)",
        "version",
        "change [95% CI]",
        "p-value",
        "direction",
    ];
    const NOISE_HEADERS: [&str; 5] = [
        "series",
        "runs",
        "noise (run-to-run, MAD)",
        "calibrated threshold",
        "FP of a 10% threshold",
    ];

    pub(crate) fn preamble(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} runs; detector: E-Divisive means, rank permutation test p < {}, change >= {}, >= {} runs each side",
            self.runs.len(),
            self.options.p_value,
            pct(self.options.min_magnitude),
            self.options.min_segment
        )];
        for x in &self.invalid {
            lines.push(format!(
                "left out (invalid): {} ({}): {}",
                x.run_id,
                x.path.display(),
                x.reasons.join("; ")
            ));
        }
        for u in &self.unreadable {
            lines.push(format!("left out (unreadable): {u}"));
        }
        for c in &self.confirmed {
            lines.push(format!("confirmed: {}", c.describe()));
        }
        // One line for all of them: a young history has dozens, and they say one thing.
        let short: Vec<&SeriesVerdict> = self.too_short().collect();
        if let Some(longest) = short.iter().map(|v| v.series.values.len()).max() {
            lines.push(format!(
                "too short to judge: {} series (the longest has {longest} runs, a series needs {}), e.g. {}",
                short.len(),
                self.options.min_len(),
                short[0].series.key
            ));
        }
        lines
    }

    pub(crate) fn verdict_line(&self) -> String {
        let n = self.change_points().count();
        let judged = self.judged();
        if let Some(c) = self.confirmed.first() {
            format!("REGRESSION: {}", c.describe())
        } else if self.newest_regresses() {
            format!("REGRESSION: the newest run starts a regression ({n} change points in all)")
        } else if judged == 0 {
            format!(
                "NOT JUDGED: no series has enough runs yet (a series needs {})",
                self.options.min_len()
            )
        } else if n == 0 {
            format!("no change points in {judged} judged series")
        } else {
            format!(
                "{n} change points in {judged} judged series; none is a regression started by \
                 the newest run"
            )
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in self.preamble() {
            let _ = writeln!(out, "{l}");
        }
        out.push('\n');
        let rows = self.change_rows();
        if !rows.is_empty() {
            let _ = writeln!(out, "change points:");
            out.push_str(&text_table(&Self::CHANGE_HEADERS, &rows));
            out.push('\n');
        }
        for l in self.diff_lines() {
            let _ = writeln!(out, "{l}");
        }
        let _ = writeln!(out, "noise:");
        out.push_str(&text_table(&Self::NOISE_HEADERS, &self.noise_rows()));
        let _ = writeln!(out, "\n{}", self.verdict_line());
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::from("### Performance history\n\n");
        for l in self.preamble() {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
        let rows = self.change_rows();
        if !rows.is_empty() {
            out.push_str(&markdown_table(&Self::CHANGE_HEADERS, &rows));
            out.push('\n');
        }
        for l in self.diff_lines() {
            let _ = writeln!(out, "- {}", l.replace('|', "\\|"));
        }
        out.push_str("<details><summary>noise per series</summary>\n\n");
        out.push_str(&markdown_table(&Self::NOISE_HEADERS, &self.noise_rows()));
        out.push_str("\n</details>\n\n");
        let _ = writeln!(out, "**{}**", self.verdict_line());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Metric;

    use fixtures::{first_night_found, observations, runs};

    #[test]
    fn a_regression_names_its_runs_and_versions_and_the_newest_run_flags_it() {
        let h = analyse(runs(30), &observations(30), &DetectOptions::default());
        let found: Vec<_> = h.change_points().collect();
        assert_eq!(found.len(), 1, "{}", h.to_text());
        let (k, c) = found[0];
        assert_eq!(k.metric, Metric::P95);
        assert_eq!(
            (c.before.version.as_str(), c.after.version.as_str()),
            ("1.0", "1.1")
        );
        assert_eq!(c.after.run_id, "night-20");
        assert_eq!(c.direction, Direction::Regression);
        // Ten nights after the step it is old news: exit 0.
        assert!(!c.new && h.exit_code() == 0);
        let json = h.to_json();
        assert_eq!(json["change_points"][0]["metric"], "p95");
        assert_eq!(json["change_points"][0]["stage"], "all");
        assert_eq!(json["change_points"][0]["direction"], "regression");
        assert!(json["change_points"][0]["ci"][0].as_f64().unwrap() > 0.2);
        let text = h.to_text();
        assert!(
            text.contains("night-19 → night-20") && text.contains("1.0 → 1.1"),
            "{text}"
        );
        assert!(h.to_markdown().contains("| p95{"), "{}", h.to_markdown());
        // The first night it can be seen, the newest run starts it: exit 1.
        let first = first_night_found();
        let h = analyse(runs(first), &observations(first), &DetectOptions::default());
        assert_eq!(h.exit_code(), EXIT_REGRESSION, "{}", h.to_text());
        assert!(h.to_text().contains("REGRESSION"));
    }

    #[test]
    fn micro_benchmark_runs_sit_beside_load_runs_and_each_is_judged_on_its_own_newest() {
        let dir = tempfile::tempdir().unwrap();
        // The load p95 steps up from night 20 (the first load night that reveals it is the
        // newest); a micro-benchmark runs after each load run and slows down at night 10.
        let first = first_night_found();
        let mut all_runs = Vec::new();
        let mut per_run = Vec::new();
        for (i, (load_run, load_obs)) in
            runs(first).into_iter().zip(observations(first)).enumerate()
        {
            all_runs.push(RunInfo {
                started_unix_ms: 10 * i as u64,
                ..load_run
            });
            per_run.push(load_obs);
            let m = MicroRun {
                run_id: format!("micro-{i:02}"),
                version: if i < 10 { "1.0".into() } else { "1.1".into() },
                started_unix_ms: 10 * i as u64 + 5,
                median_seconds: [(
                    "route/send".to_string(),
                    if i < 10 { 2.0e-6 } else { 3.0e-6 } * (1.0 + 0.01 * (i % 3) as f64),
                )]
                .into(),
            };
            m.write(&dir.path().join(&m.run_id).join(MICRO_FILE))
                .unwrap();
            all_runs.push(RunInfo {
                run_id: m.run_id.clone(),
                version: m.version.clone(),
                started_unix_ms: m.started_unix_ms,
                profile: None,
            });
            per_run.push(m.observations());
        }
        let loaded = load_dir(dir.path(), false).unwrap();
        assert_eq!(loaded.micro.len(), first);
        let h = analyse(all_runs, &per_run, &DetectOptions::default());
        let found: Vec<_> = h
            .change_points()
            .map(|(k, c)| (k.plan.clone(), c.after.run_id.clone(), c.new))
            .collect();
        assert!(
            found.contains(&(micro::PLAN.to_string(), "micro-10".to_string(), false)),
            "{}",
            h.to_text()
        );
        // The newest run of the directory is a micro run; the load series' newest night
        // still starts its regression.
        assert!(
            found
                .iter()
                .any(|(p, id, new)| p.starts_with("constant") && id == "night-20" && *new),
            "{}",
            h.to_text()
        );
        assert_eq!(h.exit_code(), EXIT_REGRESSION);
    }

    /// Issue 25, item 6: a symlink to a directory (`ln -s . DIR/self`) is not followed, and
    /// a copied run (same run id) is left out, naming where the id was first read.
    #[test]
    fn symlinked_directories_are_not_followed_and_duplicate_run_ids_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        for (i, id) in ["micro-a", "micro-b"].into_iter().enumerate() {
            let m = MicroRun {
                run_id: id.to_string(),
                version: "1.0".into(),
                started_unix_ms: i as u64,
                median_seconds: [("route/send".to_string(), 2.0e-6)].into(),
            };
            m.write(&dir.path().join(id).join(MICRO_FILE)).unwrap();
        }
        std::os::unix::fs::symlink(".", dir.path().join("self")).unwrap();
        let loaded = load_dir(dir.path(), false).unwrap();
        assert_eq!(loaded.micro.len(), 2, "{:?}", loaded.micro);
        assert!(loaded.invalid.is_empty(), "{:?}", loaded.invalid);

        let copy = dir.path().join("zz-copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(
            dir.path().join("micro-a").join(MICRO_FILE),
            copy.join(MICRO_FILE),
        )
        .unwrap();
        let loaded = load_dir(dir.path(), false).unwrap();
        assert_eq!(loaded.micro.len(), 2, "{:?}", loaded.micro);
        assert_eq!(loaded.invalid.len(), 1, "{:?}", loaded.invalid);
        let left_out = &loaded.invalid[0];
        assert_eq!(left_out.run_id, "micro-a");
        assert_eq!(left_out.path, copy.join(MICRO_FILE));
        assert_eq!(
            left_out.reasons,
            [format!(
                "duplicate run id: micro-a was already read from {}",
                dir.path().join("micro-a").join(MICRO_FILE).display()
            )]
        );
    }

    #[test]
    fn a_short_series_says_it_is_too_short() {
        let h = analyse(runs(4), &observations(4), &DetectOptions::default());
        assert_eq!(h.too_short().count(), 2);
        let text = h.to_text();
        assert!(
            text.contains("too short to judge: 2 series")
                && text.contains("the longest has 4 runs, a series needs 6"),
            "{text}"
        );
        assert_eq!(h.to_json()["too_short"].as_array().unwrap().len(), 2);
    }
}
