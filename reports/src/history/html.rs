//! `history.html`: the verdict, the change points and a trend chart per series with its
//! change points marked, drawn with the charts module every other page uses.

use std::fmt::Write as _;

use super::series::ALL;
use super::{Direction, History, SeriesVerdict};
use crate::charts::{LineChart, Marker, PALETTE, Series};
use crate::compare::Metric;
use crate::compare::format_change as pct;
use crate::escape::escape;
use crate::html::page;

/// Whether a series gets a chart: every series with a change point, and the whole-run
/// latency and throughput of each plan (the trend a reader looks for first).
fn charted(v: &SeriesVerdict) -> bool {
    let k = &v.series.key;
    !v.change_points.is_empty()
        || (k.stage == ALL
            && k.scenario == ALL
            && matches!(k.metric, Metric::P95 | Metric::Throughput))
}

fn chart(v: &SeriesVerdict, history: &History) -> LineChart {
    let k = &v.series.key;
    let mut c = LineChart::new(&k.to_string(), "run (history order)", k.metric.label());
    c.series.push(Series {
        name: k.metric.key().to_string(),
        points: v
            .series
            .runs
            .iter()
            .zip(&v.series.values)
            .map(|(&run, &value)| (run as f64, value))
            .collect(),
        color: PALETTE[0],
        dashed: false,
    });
    c.x_range = Some((0.0, history.runs.len().saturating_sub(1) as f64));
    c.markers = v
        .change_points
        .iter()
        .map(|f| Marker {
            x: v.series.runs[f.point.index] as f64,
            label: format!(
                "{} {} ({}, {})",
                f.direction.as_str(),
                pct(f.point.change),
                f.after.run_id,
                f.after.version
            ),
        })
        .collect();
    c
}

/// The whole page.
pub fn render(history: &History) -> String {
    let mut body = String::from("<h1>caxton-bench history</h1>");
    // A history that could judge nothing is not green: it has not looked yet.
    let class = if history.newest_regresses() {
        "fail"
    } else if history.judged() == 0 {
        "warn"
    } else {
        "pass"
    };
    let _ = write!(
        body,
        "<p class=\"verdict {class}\">{}</p>",
        escape(&history.verdict_line())
    );
    body.push_str("<ul>");
    for line in history.preamble() {
        let _ = write!(body, "<li>{}</li>", escape(&line));
    }
    body.push_str("</ul>");
    let rows = history.change_rows();
    if !rows.is_empty() {
        body.push_str("<h2>Change points</h2><table><tr>");
        for h in History::CHANGE_HEADERS {
            let _ = write!(body, "<th>{}</th>", escape(h));
        }
        body.push_str("</tr>");
        for ((_, found), row) in history.change_points().zip(rows) {
            let cls = match found.direction {
                Direction::Regression => "fail",
                Direction::Improvement => "pass",
            };
            let _ = write!(body, "<tr class=\"{cls}\">");
            for cell in row {
                let _ = write!(body, "<td>{}</td>", escape(&cell));
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Trends</h2><p class=\"note\">Each point is one run; a vertical line is a change point, at the first run after it.</p>");
    for v in history.verdicts.iter().filter(|v| charted(v)) {
        body.push_str(&chart(v, history).to_svg());
    }
    page("caxton-bench history", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::fixtures::{observations, runs};
    use crate::history::{DetectOptions, analyse};

    #[test]
    fn the_page_marks_the_change_point_on_its_series_chart() {
        let h = analyse(runs(30), &observations(30), &DetectOptions::default());
        let html = render(&h);
        assert!(html.contains("<h2>Change points</h2>"), "{html}");
        // Two charts (p95 and throughput of the whole run), one marker: p95's step.
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert_eq!(html.matches("class=\"marker\"").count(), 1, "{html}");
        assert!(html.contains("regression +"), "{html}");
        assert!(html.contains("night-20, 1.1"), "{html}");
    }
}
