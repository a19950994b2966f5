//! The end-of-run summary, laid out like k6's: thresholds with value and verdict first,
//! then the metrics, then one line per stage.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use caxton_reports::model::{Percentiles, RunReport};

fn dotted(label: &str, width: usize) -> String {
    let mut s = label.to_string();
    if s.len() < width {
        s.push(' ');
        while s.len() < width {
            s.push('.');
        }
    }
    s.push(':');
    s
}

fn ms(v: f64) -> String {
    caxton_reports::threshold::duration_text(v)
}

fn trend(p: &Percentiles) -> String {
    format!(
        "avg={} min={} med={} max={} p(90)={} p(95)={} p(99)={} p(99.9)={}",
        ms(p.mean),
        ms(p.min),
        ms(p.p50),
        ms(p.max),
        ms(p.p90),
        ms(p.p95),
        ms(p.p99),
        ms(p.p99_9)
    )
}

/// Width of the metric names' dotted column.
const WIDTH: usize = 32;

pub fn render(report: &RunReport, report_path: &str) -> String {
    let mut out = String::new();
    header(&mut out, report);
    thresholds(&mut out, report);
    checks(&mut out, report);
    requests(&mut out, report);
    generator(&mut out, report);
    stages(&mut out, report);
    let _ = writeln!(out, "\n  report: {report_path}");
    out
}

/// What ran against what, and whether its figures can be trusted.
fn header(out: &mut String, report: &RunReport) {
    let _ = writeln!(
        out,
        "\n  caxton-bench {}  run {}\n  plan {} ({:?} model, time scale {})  target {}{}\n",
        report.tool.version,
        report.run_id,
        report.plan.name,
        report.plan.model,
        report.plan.time_scale,
        report.target,
        if report.embedded_target {
            " (embedded runtime)"
        } else {
            ""
        }
    );
    if let Some(b) = &report.target_build {
        let _ = writeln!(out, "  target build {} ({})\n", b.version, b.commit);
    }
    if !report.validity.valid {
        let _ = writeln!(
            out,
            "  ✗ INVALID RUN: it could not produce the load it was asked for; its figures \
             describe the generator, not the target"
        );
        for r in &report.validity.reasons {
            let _ = writeln!(out, "    - {}: {}", r.kind.as_str(), r.detail);
        }
        out.push('\n');
    }
    if let Some(i) = &report.interrupted {
        let _ = writeln!(out, "  INTERRUPTED: {}\n", i.describe());
    }
    if let Some(a) = &report.aborted {
        let _ = writeln!(out, "  ABORTED: {}\n", a.describe());
    }
}

fn thresholds(out: &mut String, report: &RunReport) {
    if report.thresholds.is_empty() {
        return;
    }
    let _ = writeln!(out, "  THRESHOLDS");
    for t in &report.thresholds {
        let _ = writeln!(
            out,
            "    {} {} {}",
            if t.ok { "✓" } else { "✗" },
            dotted(&t.expression, 48),
            t.value_text()
        );
    }
    out.push('\n');
}

fn checks(out: &mut String, report: &RunReport) {
    let (passes, fails) = report
        .checks
        .iter()
        .fold((0, 0), |(p, f), c| (p + c.passes, f + c.fails));
    let pct = |p: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            p as f64 * 100.0 / n as f64
        }
    };
    let _ = writeln!(
        out,
        "  {} {:.2}% ✓ {} ✗ {}",
        dotted("checks", WIDTH),
        pct(passes, passes + fails),
        passes,
        fails
    );
    for c in &report.checks {
        let _ = writeln!(
            out,
            "    {} {} {:.2}% ✓ {} ✗ {}",
            if c.fails == 0 { "✓" } else { "✗" },
            dotted(&c.name, WIDTH - 4),
            c.pass_rate * 100.0,
            c.passes,
            c.fails
        );
    }
}

/// The whole run's request metrics, named as k6 names them.
fn requests(out: &mut String, report: &RunReport) {
    let o = &report.overall;
    let _ = writeln!(
        out,
        "  {} {}",
        dotted("http_req_duration", WIDTH),
        trend(&o.latency_ms.corrected)
    );
    let _ = writeln!(
        out,
        "  {} {}",
        dotted("http_req_duration_uncorrected", WIDTH),
        trend(&o.latency_ms.uncorrected)
    );
    let _ = writeln!(
        out,
        "  {} {:.2}% ✓ {} ✗ {}",
        dotted("http_req_failed", WIDTH),
        o.error_rate * 100.0,
        o.failures,
        o.requests - o.failures
    );
    let _ = writeln!(
        out,
        "  {} {} {:.1}/s",
        dotted("http_reqs", WIDTH),
        o.requests,
        o.throughput_rps
    );
    if !o.status_codes.is_empty() || !o.errors.is_empty() {
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "-".to_string()
            } else {
                let items: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                items.join(" ")
            }
        };
        let _ = writeln!(
            out,
            "  {} status {}  errors {}",
            dotted("responses", WIDTH),
            list(&o.status_codes),
            list(&o.errors)
        );
    }
    let _ = writeln!(
        out,
        "  {} {}",
        dotted("dropped_iterations", WIDTH),
        report.dropped_iterations
    );
    let _ = writeln!(out, "  {} {}", dotted("vus_max", WIDTH), report.max_users);
}

/// The generator's own CPU and the profile's sample counts: what the figures rest on.
fn generator(out: &mut String, report: &RunReport) {
    if let Some(g) = &report.generator_cpu {
        let target = g
            .target_mean_cores
            .map_or_else(String::new, |t| format!("  target avg={t:.2}"));
        let _ = writeln!(
            out,
            "  {} avg={:.2} max={:.2} of {} cores, saturated {}/{} s{target}",
            dotted("generator_cpu", WIDTH),
            g.mean_cores,
            g.max_cores,
            g.cores,
            g.saturated_seconds,
            g.seconds
        );
    }
    if let Some(f) = &report.flamegraph {
        let _ = writeln!(
            out,
            "  {} {} samples at {}, {} lost ({:.1}%), stage {}{}",
            dotted("profile", WIDTH),
            f.samples,
            f.rate_text(),
            f.lost_samples,
            100.0 * f.lost_share(),
            f.stage,
            if f.too_few_samples() {
                format!(
                    " (too few samples: under {}, small frames are noise)",
                    caxton_reports::model::THIN_PROFILE_SAMPLES
                )
            } else {
                String::new()
            }
        );
        if let Some(slow) = &f.slow {
            let _ = writeln!(
                out,
                "  {} {}",
                dotted("slow_profile", WIDTH),
                slow.describe()
            );
        }
    }
}

/// One line per stage.
fn stages(out: &mut String, report: &RunReport) {
    let _ = writeln!(
        out,
        "\n  {:<14} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "stage", "seconds", "requests", "rps", "p95", "p99", "p99 uncor", "err%"
    );
    for s in &report.stages {
        let st = &s.stats;
        let _ = writeln!(
            out,
            "  {:<14} {:>8.1} {:>9} {:>9.1} {:>10} {:>10} {:>10} {:>6.2}%",
            s.name,
            s.ended_at_seconds - s.started_at_seconds,
            st.requests,
            st.throughput_rps,
            ms(st.latency_ms.corrected.p95),
            ms(st.latency_ms.corrected.p99),
            ms(st.latency_ms.uncorrected.p99),
            st.error_rate * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_labels_pad_like_k6() {
        assert_eq!(dotted("checks", 10), "checks ...:");
    }
}
