//! Turns a finished run's totals into the [`RunReport`] of `caxton-reports`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use caxton_reports::model::{
    Abort, CheckResult, Distributed, FlamegraphRef, GeneratorCpu, Interruption, LoadModel,
    Plan as PlanModel, ReportError, RunReport, SCHEMA_VERSION, ScenarioWeight, StageResult, Stats,
    TargetBuild, Tool, ratio,
};

use crate::collector::Collector;
use crate::plan::Plan;
use crate::recorder::{CHECKS, Cell};
use crate::scenario::{REQUEST_NAMES, WeightedScenario};

/// Facts about the run that are not measurements.
pub(crate) struct RunMeta<'a> {
    pub run_id: &'a str,
    pub command_line: &'a [String],
    pub target: &'a str,
    pub embedded_target: bool,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// Wall time of the load phase.
    pub elapsed: Duration,
    pub plan: &'a Plan,
    pub think_time: Duration,
    pub pool_users: Option<u64>,
    pub scenarios: &'a [WeightedScenario],
}

/// What a run knows only once its load and its capture have ended; the report is built
/// from them, not patched with them. A snapshot taken during the run (abortOnFail) has none.
#[derive(Default)]
pub(crate) struct Finished {
    pub target_key: Option<String>,
    pub distributed: Option<Distributed>,
    pub generator_cpu: Option<GeneratorCpu>,
    pub target_build: Option<TargetBuild>,
    pub flamegraph: Option<FlamegraphRef>,
    pub interrupted: Option<Interruption>,
    pub aborted: Option<Abort>,
}

/// The report of `totals`; its thresholds and validity are the caller's to judge, once.
pub(crate) fn build(
    meta: &RunMeta<'_>,
    totals: &Collector,
    finished: Finished,
) -> Result<RunReport, ReportError> {
    let elapsed = meta.elapsed.as_secs_f64();
    let mut stages = Vec::new();
    for (i, stage) in meta.plan.stages.iter().enumerate() {
        let (start, end) = meta.plan.stage_bounds(i);
        let started_at = start.as_secs_f64().min(elapsed);
        let ended_at = end.as_secs_f64().min(elapsed);
        let cell = merged(totals, |(_, s)| s == i);
        stages.push(StageResult {
            name: stage.name.clone(),
            started_at_seconds: started_at,
            ended_at_seconds: ended_at,
            stats: stats(&cell, ended_at - started_at)?,
        });
    }
    let mut requests = BTreeMap::new();
    for (n, name) in REQUEST_NAMES.iter().enumerate() {
        let cell = merged(totals, |(k, _)| k == n);
        if cell.requests > 0 {
            requests.insert(name.to_string(), stats(&cell, elapsed)?);
        }
    }
    let checks = CHECKS
        .iter()
        .zip(totals.checks)
        .map(|(name, (passes, fails))| CheckResult {
            name: name.to_string(),
            passes,
            fails,
            pass_rate: ratio(passes, passes + fails),
        })
        .collect();
    let dropped = totals.timeline.iter().map(|s| s.dropped_iterations).sum();
    Ok(RunReport {
        schema_version: SCHEMA_VERSION,
        run_id: meta.run_id.to_string(),
        tool: Tool {
            name: "caxton-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        command_line: meta.command_line.to_vec(),
        target: meta.target.to_string(),
        embedded_target: meta.embedded_target,
        target_key: finished.target_key,
        started_at: humantime::format_rfc3339_millis(meta.started).to_string(),
        ended_at: humantime::format_rfc3339_millis(meta.ended).to_string(),
        started_unix_ms: unix_ms(meta.started),
        ended_unix_ms: unix_ms(meta.ended),
        duration_seconds: elapsed,
        plan: PlanModel {
            name: meta.plan.name.clone(),
            model: meta.plan.model,
            time_scale: meta.plan.time_scale,
            think_time_seconds: match meta.plan.model {
                LoadModel::Closed => meta.think_time.as_secs_f64(),
                LoadModel::Open => 0.0,
            },
            start_target: meta.plan.start_target,
            max_users: meta.pool_users,
            stages: meta.plan.planned_stages(),
            scenarios: meta
                .scenarios
                .iter()
                .map(|s| ScenarioWeight {
                    name: s.kind.name().to_string(),
                    weight: s.weight,
                })
                .collect(),
        },
        stages,
        overall: stats(&totals.overall, elapsed)?,
        requests,
        checks,
        thresholds: Vec::new(),
        dropped_iterations: dropped,
        max_users: totals.max_users,
        timeline: totals.timeline.clone(),
        flamegraph: finished.flamegraph,
        distributed: finished.distributed,
        validity: Default::default(),
        target_build: finished.target_build,
        interrupted: finished.interrupted,
        aborted: finished.aborted,
        generator_cpu: finished.generator_cpu,
        slices: totals.slices.clone(),
    })
}

fn merged(totals: &Collector, keep: impl Fn((usize, usize)) -> bool) -> Cell {
    let mut cell = Cell::default();
    for (key, c) in &totals.cells {
        if keep(*key) {
            cell.merge(c);
        }
    }
    cell
}

fn stats(cell: &Cell, seconds: f64) -> Result<Stats, ReportError> {
    Stats::from_parts(
        &cell.corrected,
        &cell.uncorrected,
        cell.requests,
        cell.failures,
        seconds,
        cell.status_codes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        cell.errors
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
    )
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
