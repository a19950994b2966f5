//! Confirmed paired regressions: the nightly with a control arm judged night by night.
//!
//! A change point needs [`DetectOptions::min_segment`](super::DetectOptions) nights on
//! either side, and at the strict level `history` uses, about six nights after a step pass
//! before one is placed. A paired night (`caxton-bench ab` against the control arm) carries
//! its own verdict, whose interval comes from that night's slice pairs and whose false-alarm
//! rate is measured (BENCHMARKS.md, "Paired A/B"). A regression is **confirmed** when the
//! newest [`CONFIRM_NIGHTS`] valid nights of one pair (same target key, same control build)
//! all regressed on the same gating metric: at a false-alarm rate q a night, a confirmation
//! by chance takes q² of a pair of nights, while a real step is confirmed on its second
//! night.

use serde::Serialize;

use super::series;
use crate::compare::Verdict;
use crate::paired::{AbOutcome, AbReport};

/// Consecutive regressed paired nights that confirm a regression.
pub const CONFIRM_NIGHTS: usize = 2;

/// A regression the newest paired nights of one pair agree on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confirmed {
    /// The pair, as its ratio series name it (`<target key> vs <control build>`).
    pub pair: String,
    /// The plan, as its ratio series key it ([`series::plan_key`]).
    pub plan: String,
    pub metric: String,
    /// The nights, oldest first, and each night's change B/A − 1.
    pub run_ids: Vec<String>,
    pub changes: Vec<f64>,
}

impl Confirmed {
    pub fn describe(&self) -> String {
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|c| crate::compare::format_change(*c))
            .collect();
        format!(
            "{} regressed in the newest {} paired nights of {} ({}: {})",
            self.metric,
            self.run_ids.len(),
            self.pair,
            self.run_ids.join(", "),
            changes.join(", ")
        )
    }
}

/// The confirmed regressions of `paired` (A/B reports in any order): for each pair, the
/// gating metrics that regressed in each of its newest [`CONFIRM_NIGHTS`] valid nights.
pub fn find(paired: &[&AbReport]) -> Vec<Confirmed> {
    let mut by_pair: std::collections::BTreeMap<String, Vec<&AbReport>> = Default::default();
    for ab in paired {
        if ab.verdict.outcome != AbOutcome::Invalid {
            by_pair.entry(series::pair_name(ab)).or_default().push(ab);
        }
    }
    let mut out = Vec::new();
    for (pair, mut nights) in by_pair {
        if nights.len() < CONFIRM_NIGHTS {
            continue;
        }
        nights.sort_by_key(|ab| ab.baseline.started_unix_ms);
        let newest = &nights[nights.len() - CONFIRM_NIGHTS..];
        let regressed = |ab: &AbReport, metric: &str| {
            ab.verdict
                .rows
                .iter()
                .find(|r| r.metric == metric)
                .filter(|r| r.verdict == Verdict::Regressed.as_str())
                .map(|r| r.change)
        };
        for row in &newest[0].verdict.rows {
            let changes: Option<Vec<f64>> =
                newest.iter().map(|ab| regressed(ab, &row.metric)).collect();
            if let Some(changes) = changes {
                out.push(Confirmed {
                    pair: pair.clone(),
                    plan: series::plan_key(&newest[CONFIRM_NIGHTS - 1].candidate.plan),
                    metric: row.metric.clone(),
                    run_ids: newest.iter().map(|ab| ab.run_id.clone()).collect(),
                    changes,
                });
            }
        }
    }
    out
}
