//! Whether a run produced the load it was asked for. An invalid run is reported as such
//! everywhere (summary, report.json, HTML, pushed series), exits with [`crate::EXIT_INVALID`]
//! whatever its thresholds say, and is left out of comparisons and histories.

use caxton_reports::model::{
    FlamegraphRef, GeneratorCpu, InvalidKind, InvalidReason, RunReport, Validity,
};

use crate::arrival::ScheduleOutcome;

/// Open model: the share of scheduled iterations that must have started by the time the
/// last was due. Below it, the pool or the generator could not keep the rate.
pub(crate) const MIN_HELD_SHARE: f64 = 0.9;

/// Saturated seconds beyond this share of the run make it invalid: a short burst is
/// measured (and shows in the timeline), a run spent saturated measured the generator.
pub(crate) const MAX_SATURATED_SHARE: f64 = 0.5;

/// A profile that lost more than this share of the samples its CPU time called for says
/// little about where the time went.
pub(crate) const MAX_PROFILE_LOST_SHARE: f64 = 0.5;

/// Below this many samples called for (half a CPU-second at 100 Hz), a profile's loss is
/// a handful of samples either way and says nothing about the run.
pub(crate) const MIN_PROFILE_SAMPLES: u64 = 50;

/// Everything that decides a run's validity, gathered by `run.rs`.
pub(crate) struct Evidence<'a> {
    pub schedule: Option<ScheduleOutcome>,
    pub generator: Option<&'a GeneratorCpu>,
    pub profile: Option<&'a FlamegraphRef>,
}

/// Judges a run from its report and the evidence the report does not hold.
pub(crate) fn judge(report: &RunReport, evidence: &Evidence) -> Validity {
    let mut reasons = Vec::new();
    let mut invalid = |kind, detail: String| reasons.push(InvalidReason { kind, detail });
    if let Some(s) = evidence.schedule
        && s.held_share() < MIN_HELD_SHARE
    {
        invalid(
            InvalidKind::ArrivalRateNotHeld,
            format!(
                "{} of {} scheduled iterations ({:.1}%) started on schedule; at least {:.0}% \
                 must (raise --concurrent-users)",
                s.started_on_schedule,
                s.scheduled,
                100.0 * s.held_share(),
                100.0 * MIN_HELD_SHARE
            ),
        );
    }
    if report.dropped_iterations > 0 {
        invalid(
            InvalidKind::DroppedIterations,
            format!(
                "{} iterations were dropped: every user was busy and the backlog was full \
                 (--max-queued-iterations) or disabled (--drop-iterations)",
                report.dropped_iterations
            ),
        );
    }
    if let Some(g) = evidence.generator
        && g.seconds > 0
        && g.saturated_seconds as f64 > MAX_SATURATED_SHARE * g.seconds as f64
    {
        let whose = match g.target_mean_cores {
            Some(t) => format!(
                "the generator ({:.2} cores on average) and the embedded target ({t:.2})",
                g.mean_cores
            ),
            None => format!("the generator ({:.2} cores on average)", g.mean_cores),
        };
        invalid(
            InvalidKind::GeneratorCpuSaturated,
            format!(
                "{whose} used at least {:.0}% of the {} cores in {} of {} seconds",
                100.0 * crate::generator_cpu::SATURATED_SHARE,
                g.cores,
                g.saturated_seconds,
                g.seconds
            ),
        );
    }
    if let Some(p) = evidence.profile
        && p.samples + p.lost_samples >= MIN_PROFILE_SAMPLES
        && p.lost_share() > MAX_PROFILE_LOST_SHARE
    {
        invalid(
            InvalidKind::ProfileSamplesLost,
            format!(
                "the CPU profile kept {} samples and lost {} ({:.0}%)",
                p.samples,
                p.lost_samples,
                100.0 * p.lost_share()
            ),
        );
    }
    Validity::from_reasons(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dropped: u64) -> RunReport {
        let mut r: RunReport =
            serde_json::from_str(include_str!("../../reports/tests/fixtures/report-v1.json"))
                .unwrap();
        r.dropped_iterations = dropped;
        r
    }

    #[test]
    fn a_run_that_held_its_load_is_valid() {
        let e = Evidence {
            schedule: Some(ScheduleOutcome {
                scheduled: 1000,
                started_on_schedule: 995,
                dropped: 0,
            }),
            generator: None,
            profile: None,
        };
        assert!(judge(&report(0), &e).valid);
    }

    #[test]
    fn each_shortfall_is_its_own_reason() {
        let cpu = GeneratorCpu {
            cores: 2,
            mean_cores: 1.9,
            max_cores: 2.0,
            seconds: 10,
            saturated_seconds: 8,
            target_mean_cores: None,
        };
        let profile = FlamegraphRef {
            samples: 300,
            lost_samples: 700,
            ..Default::default()
        };
        let e = Evidence {
            schedule: Some(ScheduleOutcome {
                scheduled: 1000,
                started_on_schedule: 500,
                dropped: 20,
            }),
            generator: Some(&cpu),
            profile: Some(&profile),
        };
        let v = judge(&report(20), &e);
        assert!(!v.valid);
        let kinds: Vec<_> = v.reasons.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                InvalidKind::ArrivalRateNotHeld,
                InvalidKind::DroppedIterations,
                InvalidKind::GeneratorCpuSaturated,
                InvalidKind::ProfileSamplesLost
            ]
        );
        assert!(
            v.reasons[0].detail.contains("500 of 1000"),
            "{}",
            v.reasons[0].detail
        );
    }
}
