//! A small history for tests (feature `testkit`): 30 nights of one plan whose p95 steps up
//! by 30 % at night 20 (version 1.0 → 1.1) while throughput stays flat.

use super::series::{self, RunInfo, SeriesKey};
use super::{DetectOptions, analyse};
use crate::compare::Metric;

pub fn key(metric: Metric) -> SeriesKey {
    SeriesKey {
        plan: "constant(hold:1s@4)".into(),
        target: "embedded".into(),
        scenario: series::ALL.into(),
        stage: series::ALL.into(),
        metric,
    }
}

pub fn runs(n: usize) -> Vec<RunInfo> {
    (0..n)
        .map(|i| RunInfo {
            run_id: format!("night-{i:02}"),
            version: if i < 20 { "1.0".into() } else { "1.1".into() },
            started_unix_ms: i as u64,
            profile: None,
        })
        .collect()
}

/// p95 steps up by 30 % at night 20; throughput is flat.
pub fn observations(n: usize) -> Vec<Vec<(SeriesKey, f64)>> {
    (0..n)
        .map(|i| {
            let wobble = 1.0 + 0.02 * ((i * 7 % 5) as f64 - 2.0) / 2.0;
            let p95 = if i < 20 { 10.0 } else { 13.0 } * wobble;
            vec![
                (key(Metric::P95), p95),
                (key(Metric::Throughput), 100.0 * wobble),
            ]
        })
        .collect()
}

/// The first history length at which the step shows: its newest night starts it.
pub fn first_night_found() -> usize {
    (21..=30)
        .find(|&n| {
            analyse(runs(n), &observations(n), &DetectOptions::default())
                .change_points()
                .next()
                .is_some()
        })
        .unwrap_or(30)
}
