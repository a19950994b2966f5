//! k6's `abortOnFail`: thresholds judged while the run goes on, on what was measured so far
//! (the collector's cumulative totals, overall and per stage, built into the same
//! [`RunReport`] the end of the run judges), once a second from their `delayAbortEval` on.
//! The first breach stops the run: goose's killswitch, the users wind down within the run's
//! bound ([`crate::interrupt::bounded`]), and the report is marked [`Abort`] (exit 99).
//!
//! A distributed worker does not judge them: its share is not the run, and `caxton-bench
//! merge` judges the thresholds once on the global figures.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use caxton_reports::model::{Abort, ReportError, RunReport};

use crate::collector::Collector;
use crate::plan::Plan;
use crate::report::{self, RunMeta};
use crate::thresholds::Threshold;

/// The `abortOnFail` thresholds of a run and the breach that stopped it, if any.
#[derive(Debug)]
pub(crate) struct Aborter {
    thresholds: Vec<Threshold>,
    fired: OnceLock<(Abort, Instant)>,
}

impl Aborter {
    /// `None` when no threshold has `abortOnFail`: the run is then exactly as without.
    pub(crate) fn new(thresholds: &[Threshold]) -> Option<Aborter> {
        let thresholds: Vec<Threshold> = thresholds
            .iter()
            .filter(|t| t.abort.is_some())
            .cloned()
            .collect();
        (!thresholds.is_empty()).then(|| Aborter {
            thresholds,
            fired: OnceLock::new(),
        })
    }

    /// Judges every due threshold on the figures so far (`elapsed` into the run, in
    /// `stage`); on the first breach records it and tells goose to stop. Returns whether
    /// the run is to stop.
    pub(crate) fn judge(
        &self,
        collector: &Collector,
        plan: &Plan,
        elapsed: Duration,
        stage: &str,
    ) -> Result<bool, ReportError> {
        if self.fired.get().is_some() {
            return Ok(true);
        }
        let due = self
            .thresholds
            .iter()
            .any(|t| t.abort.is_some_and(|a| elapsed >= a.delay));
        if !due {
            return Ok(false);
        }
        let so_far = figures_so_far(collector, plan, elapsed)?;
        for t in &self.thresholds {
            if let Some(value) = t.breached_so_far(&so_far, elapsed) {
                let abort = Abort {
                    threshold: t.text.clone(),
                    value,
                    at_seconds: elapsed.as_secs_f64(),
                    stage: stage.to_string(),
                };
                eprintln!(
                    "caxton-bench: {}: stopping the load and writing the report",
                    abort.describe()
                );
                let _ = self.fired.set((abort, Instant::now()));
                goose::trigger_killswitch("an abortOnFail threshold failed");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The breach that stopped the run.
    pub(crate) fn fired(&self) -> Option<Abort> {
        self.fired.get().map(|(a, _)| a.clone())
    }

    /// When the run was told to stop.
    pub(crate) fn fired_at(&self) -> Option<Instant> {
        self.fired.get().map(|(_, at)| *at)
    }
}

/// The report of the figures measured so far: the builder of the final report, so a
/// threshold means the same mid-run as at the end.
fn figures_so_far(
    collector: &Collector,
    plan: &Plan,
    elapsed: Duration,
) -> Result<RunReport, ReportError> {
    let now = SystemTime::now();
    let meta = RunMeta {
        run_id: "",
        command_line: &[],
        target: "",
        embedded_target: false,
        started: now,
        ended: now,
        elapsed,
        plan,
        think_time: Duration::ZERO,
        pool_users: None,
        scenarios: &[],
    };
    report::build(&meta, collector)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use caxton_reports::model::LoadModel;

    use super::*;
    use crate::collector::LiveCounters;
    use crate::recorder::{Correction, Hub, Outcome};

    fn plan() -> Plan {
        Plan::from_stages(
            "stages",
            LoadModel::Closed,
            0.0,
            vec![
                (Duration::from_secs(2), 2.0),
                (Duration::from_secs(60), 2.0),
            ],
            1.0,
        )
        .unwrap()
    }

    fn ok(stage: usize, latency_us: u64) -> Outcome {
        Outcome {
            name: 0,
            stage,
            latency_us,
            correction: Correction::ExpectedInterval(0),
            status: Some(200),
            error: None,
            has_id: None,
        }
    }

    #[test]
    fn a_breach_is_judged_on_the_figures_so_far_after_its_delay() {
        let thresholds = [
            Threshold::parse("http_req_duration: p(95)<100 abortOnFail delayAbortEval=3s").unwrap(),
            Threshold::parse("http_req_failed: rate<0.5").unwrap(),
        ];
        let aborter = Aborter::new(&thresholds).expect("one abortOnFail threshold");
        assert!(Aborter::new(&thresholds[1..]).is_none());
        let hub = Arc::new(Hub::new());
        let counters = Arc::new(LiveCounters::default());
        counters.users.store(2, Ordering::Relaxed);
        let plan = plan();
        let mut c = Collector::new(hub.clone(), plan.clone(), counters);
        for _ in 0..20 {
            hub.record(&ok(0, 5_000));
        }
        c.tick(0, Duration::from_secs(1));
        // Fast so far: holds.
        assert!(
            !aborter
                .judge(&c, &plan, Duration::from_secs(1), "ramp-2")
                .unwrap()
        );
        for _ in 0..20 {
            hub.record(&ok(0, 500_000));
        }
        c.tick(1, Duration::from_secs(2));
        // Breached, but within delayAbortEval.
        assert!(
            !aborter
                .judge(&c, &plan, Duration::from_secs(2), "ramp-2")
                .unwrap()
        );
        assert!(aborter.fired().is_none());
        c.tick(2, Duration::from_secs(3));
        assert!(
            aborter
                .judge(&c, &plan, Duration::from_secs(3), "hold-2")
                .unwrap()
        );
        let a = aborter.fired().unwrap();
        assert_eq!(a.threshold, "http_req_duration: p(95)<100");
        assert_eq!(a.stage, "hold-2");
        assert!(a.value > 400.0 && a.at_seconds == 3.0, "{a:?}");
        goose::reset_killswitch();
    }
}
