//! Inline SVG line charts for the HTML reports: one small renderer that every chart of a run
//! report and of a comparison uses (time series, stage markers, the HDR percentile plot).
//!
//! Hand-written rather than `plotters`: the charts are plain polylines with axes, the output
//! must be a few kB of SVG inlined in one HTML file, and keeping a drawing crate out of
//! `caxton-reports` keeps the load generator's build (2 cores) and image small.

use std::fmt::Write as _;

use crate::escape::escape;

const WIDTH: f64 = 920.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 46.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// Colours of successive series (colour-blind friendly, Okabe–Ito).
pub(crate) const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    /// Base-10 logarithmic; every x must be >= 1.
    Log10,
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub name: String,
    /// (x, y) in data units, in drawing order. Equal x values draw vertical steps.
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub dashed: bool,
}

/// A labelled vertical line at `x` (stage boundaries).
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    /// Tick positions and labels for the x axis; computed when `None`.
    pub x_ticks: Option<Vec<(f64, String)>>,
    /// Smallest x range to show (e.g. the run's duration even when the last samples are 0).
    pub x_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
}

impl LineChart {
    pub(crate) fn new(title: &str, x_label: &str, y_label: &str) -> LineChart {
        LineChart {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            x_scale: Scale::Linear,
            x_ticks: None,
            x_range: None,
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// The chart as a standalone `<svg>` element (scales to its container's width).
    pub(crate) fn to_svg(&self) -> String {
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| self.drawable(*p))
            .collect();
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><title>{t}</title><text class="title" x="{LEFT}" y="20">{t}</text>"#,
            t = escape(&self.title)
        );
        if points.is_empty() {
            let _ = write!(
                svg,
                r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
            return svg;
        }
        let y_max = points.iter().fold(0.0f64, |m, (_, y)| m.max(*y));
        let y_ticks = nice_ticks(0.0, if y_max > 0.0 { y_max } else { 1.0 });
        let frame = Frame::fit(self, &points, y_ticks.last().copied().unwrap_or(1.0));
        self.write_axes(&mut svg, &frame, &y_ticks);
        self.write_markers(&mut svg, &frame);
        self.write_series(&mut svg, &frame);
        self.write_legend(&mut svg);
        svg.push_str("</svg>");
        svg
    }

    /// Whether a point can be drawn (a log axis has no room for x below 1).
    fn drawable(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && (self.x_scale == Scale::Linear || x >= 1.0) && y.is_finite()
    }

    /// The grid with its tick labels, the plot's frame and the axis titles.
    fn write_axes(&self, svg: &mut String, frame: &Frame, y_ticks: &[f64]) {
        for t in y_ticks {
            let y = frame.sy(*t);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                format_number(*t)
            );
        }
        let x_ticks = match &self.x_ticks {
            Some(t) => t.clone(),
            None => nice_ticks(frame.x0, frame.x1)
                .into_iter()
                .map(|v| (v, format_number(v)))
                .collect(),
        };
        for (v, label) in x_ticks.iter().filter(|(v, _)| frame.shows(*v)) {
            let x = frame.sx(*v);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + PLOT_H,
                TOP + PLOT_H + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis" transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT + PLOT_W / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label),
            TOP + PLOT_H / 2.0,
            escape(&self.y_label)
        );
    }

    fn write_markers(&self, svg: &mut String, frame: &Frame) {
        for m in self.markers.iter().filter(|m| frame.shows(m.x)) {
            let x = frame.sx(m.x);
            let _ = write!(
                svg,
                r#"<line class="marker" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/><text class="marker-label" x="{:.1}" y="{:.1}">{}</text>"#,
                TOP + PLOT_H,
                x + 3.0,
                TOP + 11.0,
                escape(&m.label)
            );
        }
    }

    fn write_series(&self, svg: &mut String, frame: &Frame) {
        for s in &self.series {
            let mut path = String::new();
            for (x, y) in s.points.iter().filter(|p| self.drawable(**p)) {
                let _ = write!(path, "{:.1},{:.1} ", frame.sx(*x), frame.sy(*y));
            }
            let _ = write!(
                svg,
                r#"<polyline class="series" fill="none" stroke="{}" stroke-width="1.8"{} points="{}"><title>{}</title></polyline>"#,
                s.color,
                s.dash(),
                path.trim_end(),
                escape(&s.name)
            );
        }
    }

    /// The legend, right-aligned on the line under the title.
    fn write_legend(&self, svg: &mut String) {
        let mut x = WIDTH - RIGHT;
        for s in self.series.iter().rev().filter(|s| !s.name.is_empty()) {
            let w = 28.0 + 6.5 * s.name.chars().count() as f64;
            x -= w;
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="34" x2="{:.1}" y2="34" stroke="{}" stroke-width="2.5"{}/><text class="legend" x="{:.1}" y="38">{}</text>"#,
                x + 18.0,
                s.color,
                s.dash(),
                x + 22.0,
                escape(&s.name)
            );
        }
    }
}

impl Series {
    /// The stroke attribute of a dashed line.
    fn dash(&self) -> &'static str {
        if self.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        }
    }
}

/// Where data lands in the plot area: the x range shown and its scale, and the top of the
/// y axis (which starts at 0).
struct Frame {
    scale: Scale,
    x0: f64,
    x1: f64,
    /// The x range after the scale's transform.
    tx0: f64,
    tx1: f64,
    y1: f64,
}

impl Frame {
    /// The x range of `points`, widened to the chart's `x_range` and `x_ticks`.
    fn fit(chart: &LineChart, points: &[(f64, f64)], y1: f64) -> Frame {
        let (mut x0, mut x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        if let Some((a, b)) = chart.x_range {
            x0 = x0.min(a);
            x1 = x1.max(b);
        }
        if let Some(ticks) = &chart.x_ticks {
            for (x, _) in ticks {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
        }
        let (tx0, tx1) = match chart.x_scale {
            Scale::Linear => (x0, if x1 > x0 { x1 } else { x0 + 1.0 }),
            Scale::Log10 => (
                x0.log10(),
                if x1 > x0 {
                    x1.log10()
                } else {
                    x0.log10() + 1.0
                },
            ),
        };
        Frame {
            scale: chart.x_scale,
            x0,
            x1,
            tx0,
            tx1,
            y1,
        }
    }

    fn shows(&self, x: f64) -> bool {
        x >= self.x0 && x <= self.x1
    }

    fn sx(&self, x: f64) -> f64 {
        let v = match self.scale {
            Scale::Linear => x,
            Scale::Log10 => x.max(1.0).log10(),
        };
        LEFT + (v - self.tx0) / (self.tx1 - self.tx0) * PLOT_W
    }

    fn sy(&self, y: f64) -> f64 {
        TOP + PLOT_H - (y / self.y1) * PLOT_H
    }
}

/// Ticks at 1, 2 or 5 × 10^k covering [lo, hi], about five of them.
pub(crate) fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = if hi > lo { hi - lo } else { 1.0 };
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut i = 0.0;
    loop {
        let t = first + i * step;
        ticks.push(t);
        if t >= hi || ticks.len() > 50 {
            break;
        }
        i += 1.0;
    }
    ticks
}

/// At most three significant digits, no trailing zeros: 0.25, 12.5, 1500, 2.5M.
pub(crate) fn format_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let decimals = if scaled.abs() >= 100.0 || scaled == scaled.trunc() {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if scaled.abs() >= 1.0 {
        2
    } else {
        3
    };
    let mut text = format!("{scaled:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{suffix}")
}

/// The x ticks of an HDR percentile plot, x = 1/(1-q): 0%, 90%, 99%, 99.9%, … up to `x_max`.
pub(crate) fn percentile_ticks(x_max: f64) -> Vec<(f64, String)> {
    let mut ticks = Vec::new();
    let mut k = 0i32;
    while 10f64.powi(k) <= x_max * 1.0001 && k < 12 {
        let label = if k == 0 {
            "0%".to_string()
        } else {
            let decimals = (k - 2).max(0) as usize;
            format!("{:.decimals$}%", 100.0 * (1.0 - 10f64.powi(-k)))
        };
        ticks.push((10f64.powi(k), label));
        k += 1;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 9.3), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = nice_ticks(0.0, 1234.0);
        assert!(
            t.last().copied().unwrap() >= 1234.0 && t.len() <= 8,
            "{t:?}"
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(1500.0), "1500");
        assert_eq!(format_number(25_000.0), "25k");
        assert_eq!(format_number(2_500_000.0), "2.5M");
        assert_eq!(format_number(3.0), "3");
    }

    #[test]
    fn percentile_axis_is_labelled_in_nines() {
        let labels: Vec<String> = percentile_ticks(10_000.0)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn chart_draws_series_markers_and_escapes_text() {
        let mut chart = LineChart::new("p95 <ms> & more", "time (s)", "ms");
        chart.series.push(Series {
            name: "a\"b".into(),
            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN)],
            color: PALETTE[0],
            dashed: true,
        });
        chart.markers.push(Marker {
            x: 1.0,
            label: "hold-<1>".into(),
        });
        let svg = chart.to_svg();
        assert!(svg.contains("p95 &lt;ms&gt; &amp; more"), "{svg}");
        assert!(
            svg.contains("a&quot;b") && svg.contains("hold-&lt;1&gt;"),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
        // The NaN point is dropped, the two others are drawn.
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 2, "{points}");
        assert!(!svg.contains("NaN"));
        let empty = LineChart::new("nothing", "x", "y").to_svg();
        assert!(empty.contains("no data"));
    }

    #[test]
    fn log_axis_places_decades_evenly() {
        let mut chart = LineChart::new("hdr", "percentile", "ms");
        chart.x_scale = Scale::Log10;
        chart.x_ticks = Some(percentile_ticks(1000.0));
        chart.series.push(Series {
            name: "corrected".into(),
            points: vec![(1.0, 1.0), (10.0, 2.0), (100.0, 3.0), (1000.0, 9.0)],
            color: PALETTE[1],
            dashed: false,
        });
        let svg = chart.to_svg();
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let xs: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        let gaps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (g - gaps[0]).abs() < 0.2), "{gaps:?}");
        assert!(svg.contains(">99.9%<"), "{svg}");
    }
}
