//! Differential flamegraphs of two runs' CPU profiles: which frames grew or shrank in their
//! share of the samples, inclusive and self, and inferno's differential SVG (red grew, blue
//! shrank, the baseline normalised to the current run's sample count).
//!
//! A diff is drawn only when it can be trusted: both profiles of the target alone, sampled at
//! the same rate, each with at least [`MIN_DIFF_SAMPLES`] samples. Otherwise the outcome says
//! why instead of drawing noise. The caller folds the profiles (`caxton-profiles` reads pprof);
//! this module only sees folded stacks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use crate::escape::escape;
use crate::table::{markdown_table, text_table};

/// Fewest samples a side may hold for its diff to be drawn. A frame's share then moves by
/// sampling alone by about a percentage point at most, well below what the top rows show.
pub const MIN_DIFF_SAMPLES: u64 = 1000;

/// The file a comparison writes its differential flamegraph to.
pub const DIFF_FLAMEGRAPH_FILE: &str = "diff-flamegraph.svg";

/// Rows of each frame table (inclusive, self).
pub(crate) const TOP_FRAMES: usize = 10;

#[derive(Debug, Error)]
pub enum ProfileDiffError {
    #[error("{run}: folded stack line {line}: expected `frame;frame;... COUNT`, got `{text}`")]
    Folded {
        run: String,
        line: usize,
        text: String,
    },
    #[error("rendering the differential flamegraph: {0}")]
    Render(String),
}

/// One run's profile as the diff sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSide {
    /// `baseline <run id>` or `current <run id>`: how the outcome names this side.
    pub label: String,
    /// Folded stacks, `root;...;leaf COUNT`.
    pub folded: Vec<String>,
    /// Sampling frequency, Hz.
    pub frequency_hz: u32,
    /// Samples the profile holds, where its folded weights are not sample counts (a profile
    /// sampled at a lowered rate weighs each sample by the CPU time it stands for); `None`
    /// when they are. The trust rule counts samples, the shares weights.
    pub samples: Option<u64>,
    /// `None` when every sample is the target's; else what else the profile holds.
    pub not_target_only: Option<String>,
}

/// A frame's share of the samples in each run.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameShift {
    pub frame: String,
    pub baseline_share: f64,
    pub current_share: f64,
}

impl FrameShift {
    /// Change of share, current − baseline (0.02 = two percentage points).
    pub fn change(&self) -> f64 {
        self.current_share - self.baseline_share
    }
}

/// A diff that can be trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileDiff {
    pub baseline_samples: u64,
    pub current_samples: u64,
    pub frequency_hz: u32,
    /// Frames by the largest change of inclusive share (the frame anywhere on the stack).
    pub inclusive: Vec<FrameShift>,
    /// Frames by the largest change of self share (the frame at the leaf).
    pub self_time: Vec<FrameShift>,
    /// The differential flamegraph.
    pub svg: Vec<u8>,
}

/// What a comparison says about the two runs' profiles.
#[derive(Debug, Clone, PartialEq)]
pub enum DiffOutcome {
    Drawn(ProfileDiff),
    /// Why no diff is drawn (one line per reason).
    NotDrawn(Vec<String>),
}

/// Parsed folded stacks: per stack, its frames and count.
struct Folded {
    stacks: Vec<(Vec<String>, u64)>,
    total: u64,
}

fn parse(side: &ProfileSide) -> Result<Folded, ProfileDiffError> {
    let mut stacks = Vec::new();
    let mut total = 0;
    for (i, line) in side.folded.iter().enumerate() {
        let bad = || ProfileDiffError::Folded {
            run: side.label.clone(),
            line: i + 1,
            text: line.clone(),
        };
        let (stack, count) = line.trim_end().rsplit_once(' ').ok_or_else(bad)?;
        let count: u64 = count.parse().map_err(|_| bad())?;
        if stack.is_empty() {
            return Err(bad());
        }
        total += count;
        stacks.push((stack.split(';').map(str::to_owned).collect(), count));
    }
    Ok(Folded { stacks, total })
}

/// Samples per frame: (inclusive, self). A recursive frame counts once per stack.
fn frame_counts(f: &Folded) -> (BTreeMap<&str, u64>, BTreeMap<&str, u64>) {
    let mut inclusive: BTreeMap<&str, u64> = BTreeMap::new();
    let mut leaf: BTreeMap<&str, u64> = BTreeMap::new();
    for (frames, count) in &f.stacks {
        let unique: BTreeSet<&str> = frames.iter().map(String::as_str).collect();
        for frame in unique {
            *inclusive.entry(frame).or_default() += count;
        }
        if let Some(last) = frames.last() {
            *leaf.entry(last.as_str()).or_default() += count;
        }
    }
    (inclusive, leaf)
}

fn top_shifts(
    baseline: &BTreeMap<&str, u64>,
    base_total: u64,
    current: &BTreeMap<&str, u64>,
    cur_total: u64,
) -> Vec<FrameShift> {
    let share = |m: &BTreeMap<&str, u64>, frame: &str, total: u64| {
        m.get(frame).copied().unwrap_or(0) as f64 / total.max(1) as f64
    };
    let frames: BTreeSet<&str> = baseline.keys().chain(current.keys()).copied().collect();
    let mut shifts: Vec<FrameShift> = frames
        .into_iter()
        .map(|frame| FrameShift {
            frame: frame.to_owned(),
            baseline_share: share(baseline, frame, base_total),
            current_share: share(current, frame, cur_total),
        })
        .filter(|s| s.change() != 0.0)
        .collect();
    // Largest movement first; ties by name so the output is deterministic.
    shifts.sort_by(|a, b| {
        b.change()
            .abs()
            .total_cmp(&a.change().abs())
            .then_with(|| a.frame.cmp(&b.frame))
    });
    shifts.truncate(TOP_FRAMES);
    shifts
}

/// Why a pair of profiles cannot be diffed; empty when it can.
fn distrust(baseline: &ProfileSide, b: &Folded, current: &ProfileSide, c: &Folded) -> Vec<String> {
    let mut why = Vec::new();
    for (side, folded) in [(baseline, b), (current, c)] {
        if let Some(other) = &side.not_target_only {
            why.push(format!(
                "the {} profile is not of the target alone: {other}",
                side.label
            ));
        }
        let samples = side.samples.unwrap_or(folded.total);
        if samples < MIN_DIFF_SAMPLES {
            why.push(format!(
                "the {} profile holds {samples} samples; a diff needs at least {MIN_DIFF_SAMPLES} a side, fewer would draw sampling noise",
                side.label
            ));
        }
    }
    if baseline.frequency_hz != current.frequency_hz {
        why.push(format!(
            "the profiles were sampled at different rates ({} {} Hz, {} {} Hz)",
            baseline.label, baseline.frequency_hz, current.label, current.frequency_hz
        ));
    }
    why
}

/// The frames whose self share rose most from `baseline` to `current`, largest rise first
/// (at most [`TOP_FRAMES`]): what a part of a profile (the slow requests) spends more of its
/// time in than the whole. Unlike [`ProfileDiff::self_time`], frames that shrank are left out.
pub fn self_risers(
    baseline: &ProfileSide,
    current: &ProfileSide,
) -> Result<Vec<FrameShift>, ProfileDiffError> {
    let (b, c) = (parse(baseline)?, parse(current)?);
    let (_, b_self) = frame_counts(&b);
    let (_, c_self) = frame_counts(&c);
    let share = |m: &BTreeMap<&str, u64>, frame: &str, total: u64| {
        m.get(frame).copied().unwrap_or(0) as f64 / total.max(1) as f64
    };
    let mut risers: Vec<FrameShift> = c_self
        .keys()
        .map(|&frame| FrameShift {
            frame: frame.to_owned(),
            baseline_share: share(&b_self, frame, b.total),
            current_share: share(&c_self, frame, c.total),
        })
        .filter(|s| s.change() > 0.0)
        .collect();
    risers.sort_by(|a, b| {
        b.change()
            .total_cmp(&a.change())
            .then_with(|| a.frame.cmp(&b.frame))
    });
    risers.truncate(TOP_FRAMES);
    Ok(risers)
}

/// Diffs two profiles, or says why it would not be trusted.
pub fn diff(
    baseline: &ProfileSide,
    current: &ProfileSide,
) -> Result<DiffOutcome, ProfileDiffError> {
    let (b, c) = (parse(baseline)?, parse(current)?);
    let why = distrust(baseline, &b, current, &c);
    if !why.is_empty() {
        return Ok(DiffOutcome::NotDrawn(why));
    }
    let (b_incl, b_self) = frame_counts(&b);
    let (c_incl, c_self) = frame_counts(&c);
    Ok(DiffOutcome::Drawn(ProfileDiff {
        baseline_samples: baseline.samples.unwrap_or(b.total),
        current_samples: current.samples.unwrap_or(c.total),
        frequency_hz: current.frequency_hz,
        inclusive: top_shifts(&b_incl, b.total, &c_incl, c.total),
        self_time: top_shifts(&b_self, b.total, &c_self, c.total),
        svg: render(baseline, current)?,
    }))
}

fn render(baseline: &ProfileSide, current: &ProfileSide) -> Result<Vec<u8>, ProfileDiffError> {
    let render_err = |e: &dyn std::fmt::Display| ProfileDiffError::Render(e.to_string());
    let (before, after) = (baseline.folded.join("\n"), current.folded.join("\n"));
    let mut pairs = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: true,
            strip_hex: false,
        },
        before.as_bytes(),
        after.as_bytes(),
        &mut pairs,
    )
    .map_err(|e| render_err(&e))?;
    let pairs = String::from_utf8_lossy(&pairs);
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!(
        "{} vs {}: red grew, blue shrank",
        current.label, baseline.label
    );
    options.subtitle =
        Some("widths: the current run; the baseline normalised to its sample count".into());
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, pairs.lines(), &mut svg)
        .map_err(|e| render_err(&e))?;
    Ok(svg)
}

const HEADERS: [&str; 4] = ["frame", "baseline share", "current share", "change"];

fn rows(shifts: &[FrameShift]) -> Vec<[String; 4]> {
    shifts
        .iter()
        .map(|s| {
            [
                s.frame.clone(),
                format!("{:.2}%", 100.0 * s.baseline_share),
                format!("{:.2}%", 100.0 * s.current_share),
                format!("{:+.2} pp", 100.0 * s.change()),
            ]
        })
        .collect()
}

impl ProfileDiff {
    fn summary(&self) -> String {
        format!(
            "{} baseline vs {} current samples at {} Hz; shares of each run's samples, pp = percentage points",
            self.baseline_samples, self.current_samples, self.frequency_hz
        )
    }

    /// The two frame tables with their names.
    fn tables(&self) -> [(&'static str, &[FrameShift]); 2] {
        [("inclusive", &self.inclusive), ("self", &self.self_time)]
    }

    /// The frames that grew in inclusive share, largest first.
    pub fn grown(&self) -> impl Iterator<Item = &FrameShift> {
        self.inclusive.iter().filter(|s| s.change() > 0.0)
    }
}

impl DiffOutcome {
    /// The CPU profile section of `compare`'s text output; `svg` names the diff's file.
    pub fn to_text(&self, svg: Option<&str>) -> String {
        match self {
            DiffOutcome::NotDrawn(why) => not_drawn(why),
            DiffOutcome::Drawn(d) => {
                let mut out = format!("\nCPU profile diff ({})\n", d.summary());
                if let Some(svg) = svg {
                    let _ = writeln!(out, "differential flamegraph: {svg}");
                }
                for (title, shifts) in d.tables() {
                    let _ = write!(
                        out,
                        "\ntop frames by change of {title} share\n{}",
                        text_table(&HEADERS, &rows(shifts))
                    );
                }
                out
            }
        }
    }

    pub fn to_markdown(&self, svg: Option<&str>) -> String {
        match self {
            DiffOutcome::NotDrawn(why) => not_drawn(why),
            DiffOutcome::Drawn(d) => {
                let mut out = format!("\n#### CPU profile diff\n\n{}.", d.summary());
                if let Some(svg) = svg {
                    let _ = write!(out, " Differential flamegraph: `{svg}`.");
                }
                out.push('\n');
                for (title, shifts) in d.tables() {
                    let _ = write!(
                        out,
                        "\nTop frames by change of {title} share:\n\n{}",
                        markdown_table(&HEADERS, &rows(shifts))
                    );
                }
                out
            }
        }
    }

    /// The diff as a page section under the heading `title`.
    pub fn to_html(&self, title: &str) -> String {
        let mut out = format!("<h2>{}</h2>", escape(title));
        match self {
            DiffOutcome::NotDrawn(why) => {
                out.push_str("<p>No differential flamegraph is drawn:</p><ul>");
                for w in why {
                    let _ = write!(out, "<li>{}</li>", escape(w));
                }
                out.push_str("</ul>");
            }
            DiffOutcome::Drawn(d) => {
                let _ = write!(out, "<p class=\"note\">{}.</p>", escape(&d.summary()));
                for (title, shifts) in d.tables() {
                    let _ = write!(
                        out,
                        "<h3>Top frames by change of {title} share</h3><table class=\"num\"><tr>"
                    );
                    for h in HEADERS {
                        let _ = write!(out, "<th>{h}</th>");
                    }
                    out.push_str("</tr>");
                    for (s, cells) in shifts.iter().zip(rows(shifts)) {
                        let cls = if s.change() > 0.0 { "fail" } else { "pass" };
                        let _ = write!(out, "<tr class=\"{cls}\">");
                        for c in cells {
                            let _ = write!(out, "<td>{}</td>", escape(&c));
                        }
                        out.push_str("</tr>");
                    }
                    out.push_str("</table>");
                }
                let _ = write!(
                    out,
                    "<img class=\"flamegraph\" alt=\"differential flamegraph\" src=\"data:image/svg+xml;base64,{}\">",
                    BASE64.encode(&d.svg)
                );
            }
        }
        out
    }
}

fn not_drawn(why: &[String]) -> String {
    let mut out = String::from("\nNo differential flamegraph: it could not be trusted.\n");
    for w in why {
        let _ = writeln!(out, "- {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(label: &str, lines: &[(&str, u64)], hz: u32) -> ProfileSide {
        ProfileSide {
            label: label.into(),
            folded: lines.iter().map(|(s, n)| format!("{s} {n}")).collect(),
            frequency_hz: hz,
            samples: None,
            not_target_only: None,
        }
    }

    #[test]
    fn a_frame_that_doubles_its_share_tops_both_tables() {
        let base = side(
            "baseline a",
            &[("main;serve;parse", 600), ("main;serve;export", 400)],
            100,
        );
        // The current run has twice the samples; `export` went from 40 % to 70 %.
        let cur = side(
            "current b",
            &[
                ("main;serve;parse", 600),
                ("main;serve;export;encode", 1400),
            ],
            100,
        );
        let DiffOutcome::Drawn(d) = diff(&base, &cur).unwrap() else {
            panic!("a diff of 1000 and 2000 samples at one rate is drawn");
        };
        // `encode` is new at 70 %, `export` went from 40 % to 70 %.
        assert_eq!(d.inclusive[0].frame, "encode");
        assert!(
            d.inclusive
                .iter()
                .any(|s| s.frame == "export" && (s.change() - 0.30).abs() < 1e-9)
        );
        // `parse` shrank from 60 % to 30 % of the samples.
        assert!(
            d.inclusive
                .iter()
                .any(|s| s.frame == "parse" && (s.change() + 0.30).abs() < 1e-9)
        );
        // `main` is on every stack: its share did not move, so it is not listed.
        assert!(d.inclusive.iter().all(|s| s.frame != "main"));
        assert_eq!(d.self_time[0].frame, "encode");
        let svg = String::from_utf8(d.svg.clone()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("encode"));
        let text = DiffOutcome::Drawn(d).to_text(Some("x/diff-flamegraph.svg"));
        assert!(
            text.contains("+30.00 pp") && text.contains("x/diff-flamegraph.svg"),
            "{text}"
        );
    }

    #[test]
    fn risers_leave_out_frames_that_shrank_however_far() {
        // `fast` falls 60 points, `slow` rises 50: the riser ranks first, the faller never.
        let all = side("all", &[("main;fast", 700), ("main;slow", 300)], 1000);
        let slow = side("slow", &[("main;fast", 100), ("main;slow", 800)], 1000);
        let risers = self_risers(&all, &slow).unwrap();
        assert_eq!(risers.len(), 1, "{risers:?}");
        assert_eq!(risers[0].frame, "slow");
        assert!((risers[0].change() - (800.0 / 900.0 - 0.3)).abs() < 1e-9);
    }

    #[test]
    fn too_few_samples_or_different_rates_are_not_drawn() {
        let base = side("baseline a", &[("main;work", 999)], 100);
        let cur = side("current b", &[("main;work", 5000)], 250);
        let DiffOutcome::NotDrawn(why) = diff(&base, &cur).unwrap() else {
            panic!("999 samples must not be diffed");
        };
        let text = why.join("\n");
        assert!(
            text.contains("baseline a profile holds 999 samples"),
            "{text}"
        );
        assert!(text.contains("100 Hz") && text.contains("250 Hz"), "{text}");
        assert!(!text.contains("current b profile holds"), "{text}");
        let md = DiffOutcome::NotDrawn(why).to_markdown(None);
        assert!(md.contains("could not be trusted"), "{md}");
    }

    #[test]
    fn a_profile_with_other_threads_is_not_drawn_and_bad_lines_are_named() {
        let base = side("baseline a", &[("main;work", 2000)], 100);
        let mut cur = side("current b", &[("main;work", 2000)], 100);
        cur.not_target_only = Some("samples of thread `caxton-bench`".into());
        assert!(
            matches!(diff(&base, &cur).unwrap(), DiffOutcome::NotDrawn(w) if w[0].contains("caxton-bench"))
        );
        cur.folded = vec!["main;work 10".into(), "main;work ten".into()];
        let err = diff(&base, &cur).unwrap_err().to_string();
        assert!(err.contains("current b") && err.contains("line 2"), "{err}");
    }
}
