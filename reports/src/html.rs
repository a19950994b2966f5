//! The HTML run report (`report.html` beside `report.json`) and the comparison page: one
//! self-contained file each (inline CSS and SVG, the flamegraph as a data URI, no script and
//! no network fetch), so it opens offline and from CI artifacts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use thiserror::Error;

use crate::charts::{self, LineChart, Marker, PALETTE, Scale, Series};
use crate::compare::{Comparison, Verdict};
use crate::escape::escape;
use crate::model::{ReportError, RunReport, SecondSample, Stats};
use crate::profile_diff::DiffOutcome;

/// File name of the HTML report, beside `report.json`.
pub const REPORT_HTML: &str = "report.html";

/// Flamegraphs larger than this are linked, not embedded (a browser handles it, but a
/// 50 MB CI artifact nobody downloads helps no one).
const MAX_EMBEDDED_FLAMEGRAPH: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum HtmlError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The flamegraph shown in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct FlamegraphView {
    /// Link to the interactive SVG, relative to the HTML file.
    pub link: String,
    pub stage: Option<String>,
    /// The SVG itself when it could be read (embedded as an image).
    pub svg: Option<Vec<u8>>,
}

impl FlamegraphView {
    /// The flamegraph of the report at `report_path`, if it names one or has one beside it.
    pub fn of(report: &RunReport, report_path: &Path) -> Option<FlamegraphView> {
        let file = report.flamegraph_file(report_path)?;
        let link = match &report.flamegraph {
            Some(f) => f.path.clone(),
            None => file.file_name()?.to_string_lossy().into_owned(),
        };
        let svg = std::fs::metadata(&file)
            .ok()
            .filter(|m| m.len() <= MAX_EMBEDDED_FLAMEGRAPH)
            .and_then(|_| std::fs::read(&file).ok());
        Some(FlamegraphView {
            link,
            stage: report.flamegraph.as_ref().map(|f| f.stage.clone()),
            svg,
        })
    }
}

/// Reads `report_json`, renders it, and writes `report.html` beside it; returns that path.
pub fn write_report(report_json: &Path) -> Result<PathBuf, HtmlError> {
    let report = RunReport::read(report_json)?;
    let flamegraph = FlamegraphView::of(&report, report_json);
    let html = render_report(&report, flamegraph.as_ref())?;
    let out = report_json
        .parent()
        .unwrap_or(Path::new(""))
        .join(REPORT_HTML);
    write_file(&out, &html)?;
    Ok(out)
}

pub fn write_file(path: &Path, html: &str) -> Result<(), HtmlError> {
    std::fs::write(path, html).map_err(|source| HtmlError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A run drawn on a chart: its report, legend name and style.
struct Drawn<'a> {
    report: &'a RunReport,
    name: &'a str,
    color: usize,
    dashed: bool,
}

impl Drawn<'_> {
    /// The `i`th color of this run's lines.
    fn color_of(&self, i: usize) -> &'static str {
        PALETTE[(self.color + i) % PALETTE.len()]
    }
}

/// The HTML page of one run.
pub fn render_report(
    report: &RunReport,
    flamegraph: Option<&FlamegraphView>,
) -> Result<String, HtmlError> {
    let mut body = String::new();
    verdict_section(&mut body, report);
    meta_section(&mut body, report);
    thresholds_section(&mut body, report);
    let runs = [Drawn {
        report,
        name: "",
        color: 0,
        dashed: false,
    }];
    charts_section(&mut body, &runs)?;
    stats_sections(&mut body, report);
    checks_section(&mut body, report);
    flamegraph_section(&mut body, report, flamegraph);
    body.push_str("<h2>Command line</h2>");
    let _ = write!(
        body,
        "<pre class=\"cmd\">{}</pre>",
        escape(&shell_line(&report.command_line))
    );
    Ok(page(&format!("caxton-bench {}", report.run_id), &body))
}

/// The title, the verdict, and why a run is invalid, was interrupted or was aborted.
fn verdict_section(body: &mut String, report: &RunReport) {
    let breached = report.thresholds.iter().filter(|t| !t.ok).count();
    let (class, verdict) = if !report.validity.valid {
        (
            "fail",
            "INVALID: the run could not produce the load it was asked for; its figures \
             describe the generator, not the target"
                .to_string(),
        )
    } else if breached == 0 && report.aborted.is_none() {
        ("pass", "PASSED: every threshold held".to_string())
    } else if breached == 0 {
        (
            "fail",
            "FAILED: stopped early by an abortOnFail threshold".to_string(),
        )
    } else {
        (
            "fail",
            format!(
                "FAILED: {breached} of {} thresholds breached",
                report.thresholds.len()
            ),
        )
    };
    let _ = write!(
        body,
        "<h1>caxton-bench run <code>{}</code></h1><p class=\"verdict {class}\">{}</p>",
        escape(&report.run_id),
        escape(&verdict)
    );
    if !report.validity.valid {
        body.push_str("<ul class=\"invalid\">");
        for r in &report.validity.reasons {
            let _ = write!(
                body,
                "<li><code>{}</code>: {}</li>",
                r.kind.as_str(),
                escape(&r.detail)
            );
        }
        body.push_str("</ul>");
    }
    if let Some(i) = &report.interrupted {
        let _ = write!(
            body,
            "<p class=\"verdict fail\">INTERRUPTED: {}; the figures cover the run until then</p>",
            escape(&i.describe())
        );
    }
    if let Some(a) = &report.aborted {
        let _ = write!(
            body,
            "<p class=\"verdict fail\">ABORTED: {}; the figures cover the run until then</p>",
            escape(&a.describe())
        );
    }
}

/// The table of what was run, against what, when, and the headline figures.
fn meta_section(body: &mut String, report: &RunReport) {
    body.push_str("<table class=\"meta\">");
    for (k, v) in meta_rows(report) {
        let _ = write!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        );
    }
    body.push_str("</table>");
}

fn meta_rows(report: &RunReport) -> Vec<(&'static str, String)> {
    let mut rows = plan_rows(report);
    rows.extend(load_rows(report));
    rows
}

/// What was run against what, and when.
fn plan_rows(report: &RunReport) -> Vec<(&'static str, String)> {
    let scenarios: Vec<String> = report
        .plan
        .scenarios
        .iter()
        .map(|s| format!("{} ×{}", s.name, s.weight))
        .collect();
    let stages_planned: Vec<String> = report
        .plan
        .stages
        .iter()
        .map(|s| {
            format!(
                "{} ({}s → {})",
                s.name,
                charts::format_number(s.duration_seconds),
                charts::format_number(s.target)
            )
        })
        .collect();
    let target = if report.embedded_target {
        format!("{} (embedded runtime)", report.target)
    } else {
        report.target.clone()
    };
    vec![
        (
            "plan",
            format!(
                "{} ({:?} model, time scale {})",
                report.plan.name, report.plan.model, report.plan.time_scale
            )
            .to_lowercase(),
        ),
        ("stages", stages_planned.join(", ")),
        ("scenarios", scenarios.join(", ")),
        ("target", target),
        (
            "version",
            format!("{} {}", report.tool.name, report.tool.version),
        ),
        ("start", report.started_at.clone()),
        ("end", report.ended_at.clone()),
        ("duration", format!("{:.1} s", report.duration_seconds)),
    ]
}

/// The load produced, the target's build, and the generator's own CPU.
fn load_rows(report: &RunReport) -> Vec<(&'static str, String)> {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "requests",
            format!(
                "{} ({:.1}/s, {} failed, {:.2}%)",
                report.overall.requests,
                report.overall.throughput_rps,
                report.overall.failures,
                report.overall.error_rate * 100.0
            ),
        ),
        (
            "users",
            format!(
                "max {}{}",
                report.max_users,
                report
                    .plan
                    .max_users
                    .map(|p| format!(", pool {p}"))
                    .unwrap_or_default()
            ),
        ),
        ("dropped iterations", report.dropped_iterations.to_string()),
    ];
    if let Some(b) = &report.target_build {
        rows.push(("target build", format!("{} ({})", b.version, b.commit)));
    }
    if let Some(g) = &report.generator_cpu {
        rows.push((
            "generator CPU",
            format!(
                "avg {:.2}, max {:.2} of {} cores; saturated {} of {} s{}",
                g.mean_cores,
                g.max_cores,
                g.cores,
                g.saturated_seconds,
                g.seconds,
                g.target_mean_cores
                    .map(|t| format!("; embedded target avg {t:.2} cores"))
                    .unwrap_or_default()
            ),
        ));
    }
    rows
}

fn thresholds_section(body: &mut String, report: &RunReport) {
    body.push_str("<h2>Thresholds</h2>");
    if report.thresholds.is_empty() {
        body.push_str("<p>No thresholds.</p>");
        return;
    }
    body.push_str("<table><tr><th></th><th>threshold</th><th>value</th></tr>");
    for t in &report.thresholds {
        let value = t.value_text();
        let (mark, cls) = if t.ok {
            ("✓", "pass")
        } else {
            ("✗", "fail")
        };
        let _ = write!(
            body,
            "<tr class=\"{cls}\"><td>{mark}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&t.expression),
            escape(&value)
        );
    }
    body.push_str("</table>");
}

/// The figures of every stage, of the whole run and of each request name.
fn stats_sections(body: &mut String, report: &RunReport) {
    body.push_str("<h2>Stages</h2>");
    body.push_str("<p class=\"note\">Latency in milliseconds. <em>Corrected</em> counts from each request's intended start (coordinated omission corrected); <em>uncorrected</em> from its actual send. Checks are counted per run (see Checks).</p>");
    for s in &report.stages {
        let _ = write!(
            body,
            "<h3>{}</h3><p>{:.1} s – {:.1} s</p>",
            escape(&s.name),
            s.started_at_seconds,
            s.ended_at_seconds
        );
        body.push_str(&stats_tables(&s.stats));
    }
    body.push_str("<h2>All requests</h2>");
    body.push_str(&stats_tables(&report.overall));
    for (name, stats) in &report.requests {
        let _ = write!(body, "<h3>Request <code>{}</code></h3>", escape(name));
        body.push_str(&stats_tables(stats));
    }
}

fn checks_section(body: &mut String, report: &RunReport) {
    body.push_str("<h2>Checks</h2>");
    if report.checks.is_empty() {
        body.push_str("<p>No checks.</p>");
        return;
    }
    body.push_str("<table class=\"num\"><tr><th>check</th><th>passes</th><th>fails</th><th>pass rate</th></tr>");
    for c in &report.checks {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td></tr>",
            escape(&c.name),
            c.passes,
            c.fails,
            c.pass_rate * 100.0
        );
    }
    body.push_str("</table>");
}

fn flamegraph_section(body: &mut String, report: &RunReport, flamegraph: Option<&FlamegraphView>) {
    body.push_str("<h2>Flamegraph</h2>");
    let Some(f) = flamegraph else {
        body.push_str("<p>No flamegraph was captured during this run.</p>");
        return;
    };
    let during = f
        .stage
        .as_ref()
        .map(|s| format!(" during stage <code>{}</code>", escape(s)))
        .unwrap_or_default();
    let _ = write!(
        body,
        "<p>CPU profile of the target{during}. <a href=\"{0}\">Open {0}</a> for the interactive version (search, zoom).</p>",
        escape(&f.link)
    );
    if let Some(r) = &report.flamegraph {
        let _ = write!(
            body,
            "<p class=\"note\">{} samples at {}{}; {} lost ({:.1}% of what the target's CPU time called for).</p>",
            r.samples,
            r.rate_text(),
            r.sampler
                .as_deref()
                .map(|s| format!(" ({} sampler)", escape(s)))
                .unwrap_or_default(),
            r.lost_samples,
            100.0 * r.lost_share()
        );
        if r.too_few_samples() {
            let _ = write!(
                body,
                "<p class=\"note\"><strong>Too few samples</strong>: under {}, a frame's share of a few percent is sampling noise.</p>",
                crate::model::THIN_PROFILE_SAMPLES
            );
        }
    }
    match &f.svg {
        Some(svg) => {
            let _ = write!(
                body,
                "<img class=\"flamegraph\" alt=\"flamegraph\" src=\"data:image/svg+xml;base64,{}\">",
                BASE64.encode(svg)
            );
        }
        None => body.push_str(
            "<p class=\"note\">The file is not beside this report (or too large to embed).</p>",
        ),
    }
    if let Some(slow) = report.flamegraph.as_ref().and_then(|r| r.slow.as_ref()) {
        slow_section(body, slow);
    }
}

/// The profile of the slow requests: what it holds, its files (linked: the page embeds one
/// flamegraph), and the frames whose share rose most.
fn slow_section(body: &mut String, slow: &crate::model::SlowProfile) {
    body.push_str("<h3>Slow requests</h3>");
    let _ = write!(body, "<p>{}.", escape(&slow.describe()));
    for (what, file) in [
        ("flamegraph", &slow.path),
        ("diff against all requests", &slow.diff_path),
    ] {
        if let Some(file) = file {
            let _ = write!(body, " <a href=\"{0}\">Open the {what}</a>.", escape(file));
        }
    }
    body.push_str("</p>");
    if slow.top_frames.is_empty() {
        return;
    }
    body.push_str("<table><tr><th>frame</th><th>slow share</th><th>all share</th></tr>");
    for f in &slow.top_frames {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{:.2}%</td><td>{:.2}%</td></tr>",
            escape(&f.frame),
            100.0 * f.slow_share,
            100.0 * f.all_share
        );
    }
    body.push_str("</table>");
}

/// The comparison page: the table and both runs overlaid on the same charts.
pub fn render_comparison(
    baseline: &RunReport,
    current: &RunReport,
    comparison: &Comparison,
    profiles: Option<&DiffOutcome>,
    slow: Option<&DiffOutcome>,
) -> Result<String, HtmlError> {
    let mut body = String::new();
    let (class, verdict) = if comparison.regressed() {
        ("fail", "REGRESSED")
    } else {
        ("pass", "no significant regression")
    };
    let _ = write!(
        body,
        "<h1>caxton-bench compare</h1><p>baseline <code>{}</code> ({}) vs current <code>{}</code> ({})</p><p class=\"verdict {class}\">{verdict}</p>",
        escape(&baseline.run_id),
        escape(&baseline.started_at),
        escape(&current.run_id),
        escape(&current.started_at)
    );
    body.push_str("<table class=\"num\"><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th><th>CI of difference</th><th>threshold</th><th>verdict</th></tr>");
    for (row, cells) in comparison.rows.iter().zip(comparison.cells()) {
        let cls = match row.verdict {
            Verdict::Regressed => " class=\"fail\"",
            Verdict::Improved => " class=\"pass\"",
            _ => "",
        };
        body.push_str(&format!("<tr{cls}>"));
        for c in cells {
            let _ = write!(body, "<td>{}</td>", escape(&c));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<p class=\"note\">Regressed = beyond the threshold in the bad direction and the {:.0}% bootstrap interval ({} resamples, seed {:#x}) excludes zero.</p>",
        comparison.bootstrap.confidence * 100.0,
        comparison.bootstrap.resamples,
        comparison.bootstrap.seed
    );
    let runs = [
        Drawn {
            report: baseline,
            name: "baseline",
            color: 0,
            dashed: true,
        },
        Drawn {
            report: current,
            name: "current",
            color: 1,
            dashed: false,
        },
    ];
    charts_section(&mut body, &runs)?;
    profile_sections(&mut body, profiles, slow, "current against baseline");
    Ok(page("caxton-bench compare", &body))
}

/// A self-contained page around `body` (the CSS every page shares).
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;background:#fff;margin:0}\
main{max-width:960px;margin:0 auto;padding:16px 20px 48px}\
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:18px 0 4px}\
table{border-collapse:collapse;margin:6px 0 10px}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}\
table.num th,table.num td{text-align:right}table.num th:first-child,table.num td:first-child{text-align:left}table.meta th{color:#555;font-weight:600}\
.verdict{font-weight:700;padding:6px 10px;display:inline-block;border-radius:4px}\
.pass .verdict,.verdict.pass{background:#e3f4ea;color:#0a6b35}.verdict.fail{background:#fbe4e4;color:#a11}.verdict.warn{background:#fdf3d8;color:#7a5a00}\
tr.fail td{color:#a11}tr.pass td{color:#0a6b35}.note{color:#666;font-size:12px}\
pre.cmd{background:#f6f6f6;padding:8px;white-space:pre-wrap;word-break:break-all}\
svg.chart{width:100%;height:auto;display:block;margin:8px 0 14px}\
svg .title{font-size:14px;font-weight:600;fill:#222}svg .tick,svg .legend{font-size:11px;fill:#444}svg .axis{font-size:12px;fill:#444}\
svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#bbb}svg .marker{stroke:#999;stroke-dasharray:3 3}svg .marker-label{font-size:10px;fill:#777}\
svg .empty{font-size:13px;fill:#999}img.flamegraph{width:100%;border:1px solid #ddd}";

/// Summary line and latency table of a set of requests.
/// The page of an A/B run: the verdict table first, then both arms on the same charts and
/// the differential flamegraphs of B against A (the whole profiles, the slow requests).
pub fn render_ab(
    report: &crate::paired::AbReport,
    profiles: Option<&DiffOutcome>,
    slow: Option<&DiffOutcome>,
) -> Result<String, HtmlError> {
    use crate::paired::AbOutcome;
    let mut body = String::new();
    let class = match report.verdict.outcome {
        AbOutcome::NoRegression => "pass",
        _ => "fail",
    };
    let _ = write!(
        body,
        "<h1>caxton-bench ab</h1><p class=\"verdict {class}\">{}</p><pre>{}</pre><table class=\"num\"><tr>",
        escape(report.verdict.outcome.as_str()),
        escape(&report.preamble()),
    );
    for h in report.headers() {
        let _ = write!(body, "<th>{}</th>", escape(&h));
    }
    body.push_str("</tr>");
    for cells in report.cells() {
        let cls = match cells[7].as_str() {
            "REGRESSED" => " class=\"fail\"",
            "improved" => " class=\"pass\"",
            _ => "",
        };
        let _ = write!(body, "<tr{cls}>");
        for c in cells {
            let _ = write!(body, "<td>{}</td>", escape(&c));
        }
        body.push_str("</tr>");
    }
    let _ = write!(
        body,
        "</table><pre>{}</pre><p class=\"note\">Regressed = beyond the threshold in the bad direction and the {:.0}% interval, from {} bootstrap resamples of slice pairs (never of requests), excludes no change.</p>",
        escape(&report.conclusion()),
        report.verdict.confidence * 100.0,
        report.verdict.resamples,
    );
    let runs = [
        Drawn {
            report: &report.baseline,
            name: "baseline (A)",
            color: 0,
            dashed: true,
        },
        Drawn {
            report: &report.candidate,
            name: "candidate (B)",
            color: 1,
            dashed: false,
        },
    ];
    charts_section(&mut body, &runs)?;
    profile_sections(&mut body, profiles, slow, "B against A");
    Ok(page("caxton-bench ab", &body))
}

/// The diff of two runs' profiles, then of their slow requests (each cut at its own run's
/// threshold), where there are such diffs.
fn profile_sections(
    body: &mut String,
    whole: Option<&DiffOutcome>,
    slow: Option<&DiffOutcome>,
    which: &str,
) {
    if let Some(p) = whole {
        body.push_str(&p.to_html(&format!("CPU profile diff, {which}")));
    }
    if let Some(p) = slow {
        body.push_str(&p.to_html(&format!("Slow requests: CPU profile diff, {which}")));
    }
}

fn stats_tables(s: &Stats) -> String {
    let mut out = String::new();
    let codes: Vec<String> = s
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = write!(
        out,
        "<table class=\"num\"><tr><th>requests</th><th>rps</th><th>failures</th><th>error rate</th><th>status codes</th><th>errors</th></tr><tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{}</td></tr></table>",
        s.requests,
        s.throughput_rps,
        s.failures,
        s.error_rate * 100.0,
        escape(&if codes.is_empty() {
            "-".into()
        } else {
            codes.join(", ")
        }),
        escape(&if errors.is_empty() {
            "-".into()
        } else {
            errors.join(", ")
        }),
    );
    out.push_str("<table class=\"num\"><tr><th>latency (ms)</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
    for (name, p) in [
        ("corrected", &s.latency_ms.corrected),
        ("uncorrected", &s.latency_ms.uncorrected),
    ] {
        let _ = write!(out, "<tr><td>{name}</td>");
        for v in [p.p50, p.p90, p.p95, p.p99, p.p99_9, p.max, p.mean] {
            let _ = write!(out, "<td>{v:.2}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

fn series_name(run: &Drawn<'_>, what: &str) -> String {
    match (run.name.is_empty(), what.is_empty()) {
        (true, _) => what.to_string(),
        (false, true) => run.name.to_string(),
        (false, false) => format!("{} {what}", run.name),
    }
}

/// Stage starts of the last run drawn (the current one in a comparison).
fn stage_markers(runs: &[Drawn<'_>]) -> Vec<Marker> {
    runs.last()
        .map(|r| {
            r.report
                .stages
                .iter()
                .map(|s| Marker {
                    x: s.started_at_seconds,
                    label: s.name.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The charts of a page: the runs over time, then by percentile.
fn charts_section(body: &mut String, runs: &[Drawn<'_>]) -> Result<(), HtmlError> {
    body.push_str("<h2>Charts</h2>");
    for chart in time_charts(runs) {
        body.push_str(&chart.to_svg());
    }
    body.push_str(&hdr_chart(runs)?.to_svg());
    Ok(())
}

/// requests/s, latency, users and errors over time.
fn time_charts(runs: &[Drawn<'_>]) -> Vec<LineChart> {
    let single = runs.len() == 1;
    let x_max = runs
        .iter()
        .map(|r| r.report.duration_seconds)
        .fold(0.0, f64::max);
    let chart = |title: &str, y: &str| {
        let mut c = LineChart::new(title, "time since start (s)", y);
        c.markers = stage_markers(runs);
        c.x_range = Some((0.0, x_max));
        c
    };
    let mut rps = chart("Requests per second", "requests/s");
    let mut latency = chart(
        if single {
            "Latency percentiles over time (p95 per second, p50/p99 per stage)"
        } else {
            "p95 latency over time (corrected, per second)"
        },
        "ms",
    );
    let mut users = chart("Users over time", "users");
    let mut errors = chart("Errors over time", "failed requests/s");
    for r in runs {
        let line = |what: &str, f: fn(&SecondSample) -> f64, color: usize| Series {
            name: series_name(r, what),
            points: timeline(r, f),
            color: r.color_of(color),
            dashed: r.dashed,
        };
        rps.series.push(line("", |s| s.requests as f64, 0));
        users.series.push(line("", |s| s.users as f64, 0));
        errors
            .series
            .push(line("failures", |s| s.failures as f64, 0));
        if r.report.timeline.iter().any(|s| s.dropped_iterations > 0) {
            errors.series.push(line(
                "dropped iterations",
                |s| s.dropped_iterations as f64,
                2,
            ));
        }
        latency.series.push(line("p95", |s| s.p95_ms, 0));
        if single {
            latency.series.extend(single_run_latency(r));
        }
    }
    vec![rps, latency, users, errors]
}

/// A per-second figure of a run. A sample of second `t` is drawn at `t + 1`, the end of
/// the second it covers.
fn timeline(r: &Drawn<'_>, f: fn(&SecondSample) -> f64) -> Vec<(f64, f64)> {
    r.report
        .timeline
        .iter()
        .map(|s| ((s.t + 1) as f64, f(s)))
        .collect()
}

/// The latency lines only a single run's page has room for: p95 uncorrected per second,
/// and each stage's p50 and p99 as a level across the stage.
fn single_run_latency(r: &Drawn<'_>) -> Vec<Series> {
    let mut lines = vec![Series {
        name: "p95 uncorrected".into(),
        points: timeline(r, |s| s.p95_uncorrected_ms),
        color: r.color_of(1),
        dashed: true,
    }];
    for (name, i, f) in [
        (
            "p50 (stage)",
            2,
            (|s: &Stats| s.latency_ms.corrected.p50) as fn(&Stats) -> f64,
        ),
        ("p99 (stage)", 3, |s: &Stats| s.latency_ms.corrected.p99),
    ] {
        let points = r
            .report
            .stages
            .iter()
            .filter(|st| st.stats.requests > 0)
            .flat_map(|st| {
                [
                    (st.started_at_seconds, f(&st.stats)),
                    (st.ended_at_seconds, f(&st.stats)),
                ]
            })
            .collect();
        lines.push(Series {
            name: name.into(),
            points,
            color: r.color_of(i),
            dashed: false,
        });
    }
    lines
}

/// Latency by percentile, x = 1/(1−q) on a log axis (HdrHistogram's percentile plot).
fn hdr_chart(runs: &[Drawn<'_>]) -> Result<LineChart, HtmlError> {
    let mut chart = LineChart::new("Latency by percentile (HDR, whole run)", "percentile", "ms");
    chart.x_scale = Scale::Log10;
    let mut count = 0u64;
    for r in runs {
        let corrected = r.report.overall.histograms.decode_corrected()?;
        let uncorrected = r.report.overall.histograms.decode_uncorrected()?;
        count = count.max(corrected.len());
        chart.series.push(Series {
            name: series_name(r, "corrected"),
            points: percentile_points(&corrected),
            color: r.color_of(0),
            dashed: r.dashed,
        });
        if runs.len() == 1 {
            chart.series.push(Series {
                name: "uncorrected".into(),
                points: percentile_points(&uncorrected),
                color: r.color_of(1),
                dashed: true,
            });
        }
    }
    let x_max = 10f64.powf((count.max(100) as f64).log10().ceil());
    chart.x_ticks = Some(charts::percentile_ticks(x_max));
    for s in &mut chart.series {
        for p in &mut s.points {
            p.0 = p.0.min(x_max);
        }
    }
    Ok(chart)
}

/// (1/(1−q), ms) points; q = 1 (the maximum) maps to infinity, capped by the caller.
fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 { f64::MAX } else { 1.0 / (1.0 - q) };
            (x, v.value_iterated_to() as f64 / 1000.0)
        })
        .collect()
}

/// The command line as a shell would need it (single quotes where needed).
pub(crate) fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_values_read_as_in_the_summary() {
        use crate::model::{Aggregation, ThresholdMetric, ThresholdResult};
        let mut report = crate::model::tests::sample_report();
        report.thresholds = vec![
            ThresholdResult {
                expression: "http_reqs: rate>5".into(),
                metric: ThresholdMetric::Reqs,
                stage: None,
                aggregation: Aggregation::Rate,
                value: Some(483.002),
                ok: true,
            },
            ThresholdResult {
                expression: "http_req_failed: rate<0.1".into(),
                metric: ThresholdMetric::Failed,
                stage: None,
                aggregation: Aggregation::Rate,
                value: Some(0.05),
                ok: true,
            },
        ];
        let html = render_report(&report, None).unwrap();
        assert!(
            html.contains("rate=483.002"),
            "a per-second rate is no percentage"
        );
        assert!(!html.contains("48300"));
        assert!(html.contains("rate=5.00%"));
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let argv: Vec<String> = [
            "caxton-bench",
            "--threshold",
            "http_req_duration: p(95)<2000",
            "--stages",
            "2s:5,2s:0",
            "it's",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_line(&argv),
            r#"caxton-bench --threshold 'http_req_duration: p(95)<2000' --stages 2s:5,2s:0 'it'\''s'"#
        );
    }

    #[test]
    fn percentile_points_run_from_median_to_the_tail() {
        let mut h = crate::model::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let points = percentile_points(&h);
        assert_eq!(points.first().map(|p| p.0), Some(1.0));
        assert!(
            points
                .windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1)
        );
        assert!(
            (points.last().unwrap().1 - 10.0).abs() < 0.01,
            "{:?}",
            points.last()
        );
    }
}
