//! Load plans: stages of users (closed model) or of arrival rates (open model).
//!
//! The Caxton Monitoring and Observability Guide's k6 plan is defined here once, as data
//! ([`K6_STAGES`], [`K6_THRESHOLDS`], [`K6_THINK_TIME`]); the CLI, CI and the CronJob arguments all
//! reach it through `--plan k6`.

use std::time::Duration;

use caxton_reports::model::{LoadModel, PlannedStage};
use thiserror::Error;

/// The guide's `options.stages` (its "Load Testing" section): (duration, users).
pub(crate) const K6_STAGES: [(Duration, u64); 5] = [
    (Duration::from_secs(120), 100), // ramp up to 100 users
    (Duration::from_secs(300), 100), // stay at 100 users
    (Duration::from_secs(120), 200), // ramp up to 200 users
    (Duration::from_secs(300), 200), // stay at 200 users
    (Duration::from_secs(120), 0),   // ramp down
];

/// The guide's `options.thresholds`, in our k6 syntax.
pub(crate) const K6_THRESHOLDS: [&str; 2] =
    ["http_req_duration: p(95)<2000", "http_req_failed: rate<0.1"];

/// The guide's `sleep(1)` at the end of each iteration.
pub(crate) const K6_THINK_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, Error, PartialEq)]
pub enum PlanError {
    #[error("stage {index} `{text}`: expected DURATION:TARGET such as `30s:20` or `1m30s:200`")]
    StageSyntax { index: usize, text: String },
    #[error("stage {index} `{text}`: bad duration `{duration}`: {detail}")]
    Duration {
        index: usize,
        text: String,
        duration: String,
        detail: String,
    },
    #[error("stage {index} `{text}`: target `{target}` is not a non-negative number")]
    Target {
        index: usize,
        text: String,
        target: String,
    },
    #[error("{what}: no stages given")]
    Empty { what: &'static str },
    #[error("--time-scale {0}: must be a positive finite number")]
    TimeScale(f64),
    #[error("{what}: the plan never has any users or arrivals")]
    NoLoad { what: &'static str },
    #[error(
        "{what}: the plan lasts {lasts:?}, less than the {RESOLUTION:?} the load generator resolves; give a longer duration"
    )]
    TooShort { what: &'static str, lasts: Duration },
}

/// The shortest plan a run can carry out: goose schedules its steps in whole milliseconds,
/// so a shorter plan would be a zero-length schedule (which goose never ends).
pub(crate) const RESOLUTION: Duration = Duration::from_millis(1);

/// A stage: move linearly from the previous target to `target` over `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub duration: Duration,
    /// Users (closed model) or iterations per second (open model).
    pub target: f64,
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `k6`, `stages`, `constant` or `arrival-rate`.
    pub name: String,
    pub model: LoadModel,
    /// Users or rate before the first stage (0 for k6 stages, N for `--concurrent-users N`).
    pub start_target: f64,
    pub stages: Vec<Stage>,
    pub time_scale: f64,
}

/// Parses `30s:20,1m:20,30s:0` into (duration, target) pairs.
pub(crate) fn parse_stages(text: &str) -> Result<Vec<(Duration, f64)>, PlanError> {
    let mut out = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let index = i + 1;
        let part = part.trim();
        let Some((duration, target)) = part.split_once(':') else {
            return Err(PlanError::StageSyntax {
                index,
                text: part.to_string(),
            });
        };
        let duration_text = duration.trim();
        let duration =
            humantime::parse_duration(duration_text).map_err(|e| PlanError::Duration {
                index,
                text: part.to_string(),
                duration: duration_text.to_string(),
                detail: e.to_string(),
            })?;
        let target_text = target.trim();
        let target = target_text
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| PlanError::Target {
                index,
                text: part.to_string(),
                target: target_text.to_string(),
            })?;
        out.push((duration, target));
    }
    Ok(out)
}

impl Plan {
    /// The guide's k6 plan.
    pub fn k6(time_scale: f64) -> Result<Plan, PlanError> {
        let stages = K6_STAGES.iter().map(|(d, u)| (*d, *u as f64)).collect();
        Plan::from_stages("k6", LoadModel::Closed, 0.0, stages, time_scale)
    }

    /// `--duration D --concurrent-users N`: N users from the start, for D (k6
    /// `constant-vus`).
    pub fn constant(users: u64, duration: Duration, time_scale: f64) -> Result<Plan, PlanError> {
        Plan::from_stages(
            "constant",
            LoadModel::Closed,
            users as f64,
            vec![(duration, users as f64)],
            time_scale,
        )
    }

    /// Builds a plan from raw stages: scales durations and names the stages.
    pub fn from_stages(
        name: &str,
        model: LoadModel,
        start_target: f64,
        stages: Vec<(Duration, f64)>,
        time_scale: f64,
    ) -> Result<Plan, PlanError> {
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(PlanError::TimeScale(time_scale));
        }
        let what = match model {
            LoadModel::Closed => "--stages",
            LoadModel::Open => "--arrival-rate",
        };
        if stages.is_empty() {
            return Err(PlanError::Empty { what });
        }
        if start_target <= 0.0 && stages.iter().all(|(_, t)| *t <= 0.0) {
            return Err(PlanError::NoLoad { what });
        }
        let mut named: Vec<Stage> = Vec::with_capacity(stages.len());
        let mut previous = start_target;
        for (duration, target) in stages {
            let base = if (target - previous).abs() < f64::EPSILON {
                format!("hold-{}", fmt_target(target))
            } else {
                format!("ramp-{}", fmt_target(target))
            };
            // Names must be unique: thresholds select stages by name.
            let mut name = base.clone();
            let mut n = 2;
            while named.iter().any(|s| s.name == name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            named.push(Stage {
                name,
                duration: duration.mul_f64(time_scale),
                target,
            });
            previous = target;
        }
        let lasts: Duration = named.iter().map(|s| s.duration).sum();
        if lasts < RESOLUTION {
            let what = match name {
                "constant" => "--duration",
                "k6" => "--time-scale",
                _ => what,
            };
            return Err(PlanError::TooShort { what, lasts });
        }
        Ok(Plan {
            name: name.to_string(),
            model,
            start_target,
            stages: named,
            time_scale,
        })
    }

    pub fn total_duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Highest target of the plan (users, or iterations/s).
    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start_target, f64::max)
    }

    /// Index of the stage running `elapsed` after the start; the last stage after the end.
    pub fn stage_at(&self, elapsed: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (i, stage) in self.stages.iter().enumerate() {
            end += stage.duration;
            if elapsed < end {
                return i;
            }
        }
        self.stages.len().saturating_sub(1)
    }

    /// (start, end) of stage `index` from the start of the run.
    pub fn stage_bounds(&self, index: usize) -> (Duration, Duration) {
        let start: Duration = self.stages[..index].iter().map(|s| s.duration).sum();
        (start, start + self.stages[index].duration)
    }

    /// The planned target (users or rate) at `elapsed`, linear within a stage.
    pub fn target_at(&self, elapsed: Duration) -> f64 {
        let mut from = self.start_target;
        let mut start = Duration::ZERO;
        for stage in &self.stages {
            let end = start + stage.duration;
            if elapsed < end {
                let span = stage.duration.as_secs_f64();
                let done = (elapsed - start).as_secs_f64();
                return from + (stage.target - from) * (done / span);
            }
            from = stage.target;
            start = end;
        }
        from
    }

    /// The plan with `fraction` of every target: an exact fraction of a rate, whole users
    /// rounded up (a stage with users keeps at least one). Stage names stay the plan's, so
    /// thresholds on `{stage:hold-200}` still apply. Used by `ab`'s concurrent pairing,
    /// where each arm runs its share at the same time as the other.
    pub fn share(&self, fraction: f64) -> Plan {
        let part = |target: f64| match self.model {
            LoadModel::Open => target * fraction,
            LoadModel::Closed => (target * fraction).ceil(),
        };
        let mut mine = self.clone();
        mine.start_target = part(self.start_target);
        for s in &mut mine.stages {
            s.target = part(s.target);
        }
        mine
    }

    pub fn planned_stages(&self) -> Vec<PlannedStage> {
        self.stages
            .iter()
            .map(|s| PlannedStage {
                name: s.name.clone(),
                duration_seconds: s.duration.as_secs_f64(),
                target: s.target,
            })
            .collect()
    }
}

fn fmt_target(target: f64) -> String {
    if target.fract() == 0.0 {
        format!("{}", target as u64)
    } else {
        format!("{target}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_share_keeps_the_shape_and_the_names() {
        let k6 = Plan::k6(1.0).unwrap();
        let half = k6.share(0.5);
        let targets: Vec<f64> = half.stages.iter().map(|s| s.target).collect();
        assert_eq!(targets, [50.0, 50.0, 100.0, 100.0, 0.0]);
        let names = |p: &Plan| p.stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&half), names(&k6));
        let one = Plan::constant(1, Duration::from_secs(10), 1.0)
            .unwrap()
            .share(0.5);
        assert_eq!(one.start_target, 1.0, "one user is not halved to none");
        let open = Plan::from_stages(
            "r",
            LoadModel::Open,
            0.0,
            vec![(Duration::from_secs(5), 3.0)],
            1.0,
        )
        .unwrap()
        .share(0.5);
        assert_eq!(open.stages[0].target, 1.5);
    }

    #[test]
    fn k6_plan_is_the_seed_plan() {
        let plan = Plan::k6(1.0).unwrap();
        let names: Vec<_> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["ramp-100", "hold-100", "ramp-200", "hold-200", "ramp-0"]
        );
        assert_eq!(plan.total_duration(), Duration::from_secs(16 * 60));
        assert_eq!(plan.peak(), 200.0);
        assert_eq!(plan.target_at(Duration::from_secs(60)), 50.0);
        assert_eq!(plan.target_at(Duration::from_secs(480)), 150.0);
        assert_eq!(plan.target_at(Duration::from_secs(10_000)), 0.0);
    }

    #[test]
    fn time_scale_compresses_every_stage() {
        let plan = Plan::k6(1.0 / 16.0).unwrap();
        assert_eq!(plan.stages[0].duration, Duration::from_millis(7500));
        assert_eq!(plan.total_duration(), Duration::from_secs(60));
        assert_eq!(plan.stage_at(Duration::from_secs(8)), 1);
        assert_eq!(
            plan.stage_bounds(1),
            (Duration::from_millis(7500), Duration::from_millis(26250))
        );
        assert_eq!(Plan::k6(0.0), Err(PlanError::TimeScale(0.0)));
    }

    #[test]
    fn custom_stages_parse_and_get_unique_names() {
        let stages = parse_stages("30s:20, 1m:20,30s:0,10s:20,1m30s:20").unwrap();
        assert_eq!(stages[1], (Duration::from_secs(60), 20.0));
        let plan = Plan::from_stages("stages", LoadModel::Closed, 0.0, stages, 1.0).unwrap();
        let names: Vec<_> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["ramp-20", "hold-20", "ramp-0", "ramp-20-2", "hold-20-2"]
        );
    }

    #[test]
    fn bad_stages_say_which_and_why() {
        let err = parse_stages("30s:20,1x:5").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("stage 2 `1x:5`: bad duration `1x`"),
            "{err}"
        );
        let err = parse_stages("30s").unwrap_err();
        assert_eq!(
            err,
            PlanError::StageSyntax {
                index: 1,
                text: "30s".into()
            }
        );
        let err = parse_stages("30s:-1").unwrap_err();
        assert!(matches!(err, PlanError::Target { index: 1, .. }));
        let zero = parse_stages("5s:0").unwrap();
        assert!(Plan::from_stages("stages", LoadModel::Closed, 0.0, zero, 1.0).is_err());
    }

    #[test]
    fn a_plan_shorter_than_a_millisecond_is_refused_naming_the_flag() {
        let err = Plan::constant(10, Duration::ZERO, 1.0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--duration: the plan lasts 0ns"),
            "{err}"
        );
        let err = Plan::constant(10, Duration::from_micros(900), 1.0).unwrap_err();
        assert!(matches!(err, PlanError::TooShort { .. }), "{err}");
        assert!(Plan::constant(10, Duration::from_millis(1), 1.0).is_ok());
        let err = Plan::k6(1e-9).unwrap_err();
        assert!(err.to_string().starts_with("--time-scale:"), "{err}");
    }

    #[test]
    fn constant_plan_holds_from_the_start() {
        let plan = Plan::constant(100, Duration::from_secs(300), 1.0).unwrap();
        assert_eq!(plan.stages.len(), 1);
        assert_eq!(plan.stages[0].name, "hold-100");
        assert_eq!(plan.target_at(Duration::ZERO), 100.0);
    }
}
