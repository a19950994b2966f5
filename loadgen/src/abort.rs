//! k6's `abortOnFail`: thresholds judged while the run goes on, on what was measured so far
//! (the collector's cumulative totals, overall and per stage, built into the same
//! [`RunReport`] the end of the run judges), once a second from their `delayAbortEval` on.
//! The first breach stops the run: goose's killswitch, the users wind down within the run's
//! bound ([`crate::interrupt::bounded`]), and the report is marked [`Abort`] (exit 99).
//!
//! A distributed worker's share is not the run. Without Prometheus it does not judge them:
//! `caxton-bench merge` judges the thresholds once on the global figures. With
//! `--report-to-prometheus` every worker judges them on the run's global figures, queried
//! once a second from the series all workers push there ([`Global`]): the sums over the
//! run id of the cumulative `caxton_bench_*` counters and duration histogram, so they lag
//! by up to one live push (10 s). Only what those series hold can be judged so: the
//! corrected duration's `p(N)`, `med` and `avg`, `http_req_failed` and `checks` rates and
//! an upper bound on `http_reqs` count, without a stage tag; other abortOnFail thresholds of
//! such a worker are refused at start.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use caxton_reports::model::{Abort, ReportError, RunReport};
use caxton_reports::prometheus_query::{self, QueryError};
use tokio::sync::watch;

use crate::collector::Collector;
use crate::plan::Plan;
use crate::report::{self, RunMeta};
use crate::scenario::RunContext;
use crate::series;
use crate::thresholds::{Aggregation, Metric, Op, Threshold, ThresholdError};

/// The `abortOnFail` thresholds of a run and the breach that stopped it, if any.
#[derive(Debug)]
pub(crate) struct Aborter {
    thresholds: Vec<Threshold>,
    fired: OnceLock<(Abort, Instant)>,
    /// Distributed: judged on the run's global figures in Prometheus.
    global: Option<Global>,
}

/// Where a distributed run's global figures are: the Prometheus every worker pushes to.
#[derive(Debug, Clone)]
pub(crate) struct Global {
    pub url: String,
    pub run_id: String,
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
            global: None,
        })
    }

    /// Judged on the global figures in Prometheus; refuses, by name, a threshold those
    /// figures cannot judge.
    pub(crate) fn global(mut self, global: Global) -> Result<Aborter, ThresholdError> {
        for t in &self.thresholds {
            if promql(t, &global.run_id).is_none() {
                return Err(ThresholdError::NotGlobal {
                    text: t.text.clone(),
                });
            }
        }
        self.global = Some(global);
        Ok(self)
    }

    pub(crate) fn is_global(&self) -> bool {
        self.global.is_some()
    }

    /// Distributed: judges the thresholds on the global figures once a second from the run
    /// clock's start until `stop`; a query that fails is reported and tried again.
    pub(crate) async fn watch_global(
        self: Arc<Self>,
        ctx: Arc<RunContext>,
        mut stop: watch::Receiver<bool>,
    ) {
        let plan = &ctx.plan;
        let Some(global) = self.global.clone() else {
            return;
        };
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("caxton-bench: warning: abortOnFail across workers is off: {e}");
                return;
            }
        };
        let started = tokio::select! {
            at = ctx.started.wait() => at,
            _ = stop.changed() => return,
        };
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            if self.fired.get().is_some() {
                return;
            }
            let elapsed = started.elapsed();
            let stage = plan.stages[plan.stage_at(elapsed)].name.clone();
            for t in &self.thresholds {
                if t.abort.is_none_or(|a| elapsed < a.delay) {
                    continue;
                }
                match global_value(&client, &global, t).await {
                    Ok(Some(value)) if !t.holds(value) => {
                        self.fire(t, value, elapsed, &stage, promql(t, &global.run_id));
                        if let Some(arrivals) = &ctx.arrivals {
                            arrivals.stop();
                        }
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "caxton-bench: warning: abortOnFail threshold `{}` not judged across workers at {:.0} s: {e}",
                        t.text,
                        elapsed.as_secs_f64()
                    ),
                }
            }
        }
    }

    fn fire(
        &self,
        t: &Threshold,
        value: f64,
        elapsed: Duration,
        stage: &str,
        global: Option<String>,
    ) {
        let abort = Abort {
            threshold: t.text.clone(),
            value,
            at_seconds: elapsed.as_secs_f64(),
            stage: stage.to_string(),
            global,
        };
        eprintln!(
            "caxton-bench: {}: stopping the load and writing the report",
            abort.describe()
        );
        let _ = self.fired.set((abort, Instant::now()));
        goose::trigger_killswitch("an abortOnFail threshold failed");
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
                self.fire(t, value, elapsed, stage, None);
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

/// The PromQL of a threshold's value over all workers of `run_id` (in the threshold's
/// units), `None` when the pushed series cannot give it.
fn promql(t: &Threshold, run_id: &str) -> Option<String> {
    if t.stage.is_some() {
        return None;
    }
    let all = format!(r#"run_id="{run_id}",stage="{}""#, series::STAGE_ALL);
    let duration = series::REQUEST_DURATION_SECONDS;
    let quantile = |q: f64| {
        format!("histogram_quantile({q}, sum by (le) ({duration}_bucket{{{all}}})) * 1000")
    };
    Some(match (t.metric, &t.aggregation) {
        (Metric::Duration, Aggregation::Percentile(n)) => quantile(n / 100.0),
        (Metric::Duration, Aggregation::Med) => quantile(0.5),
        (Metric::Duration, Aggregation::Avg) => {
            format!("sum({duration}_sum{{{all}}}) / sum({duration}_count{{{all}}}) * 1000")
        }
        (Metric::Failed, Aggregation::Rate) => format!(
            "sum({}{{{all}}}) / sum({}{{{all}}})",
            series::FAILURES_TOTAL,
            series::REQUESTS_TOTAL
        ),
        (Metric::Checks, Aggregation::Rate) => format!(
            r#"sum({c}{{{all},result="pass"}}) / sum({c}{{{all}}})"#,
            c = series::CHECKS_TOTAL
        ),
        (Metric::Reqs, Aggregation::Count) if matches!(t.op, Op::Lt | Op::Le | Op::Ne) => {
            format!("sum({}{{{all}}})", series::REQUESTS_TOTAL)
        }
        _ => return None,
    })
}

/// The threshold's value over all workers so far; `None` before any worker pushed.
async fn global_value(
    client: &reqwest::Client,
    global: &Global,
    t: &Threshold,
) -> Result<Option<f64>, QueryError> {
    let Some(expr) = promql(t, &global.run_id) else {
        return Ok(None);
    };
    let result = prometheus_query::instant(client, &global.url, &expr).await?;
    Ok(result
        .as_array()
        .and_then(|r| r.first())
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite()))
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
    report::build(&meta, collector, report::Finished::default())
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
    fn global_figures_are_sums_over_the_run_id() {
        let q = |t: &str| promql(&Threshold::parse(t).unwrap(), "r1");
        assert_eq!(
            q("http_req_duration: p(95)<100 abortOnFail").unwrap(),
            r#"histogram_quantile(0.95, sum by (le) (caxton_bench_request_duration_seconds_bucket{run_id="r1",stage="all"})) * 1000"#
        );
        assert_eq!(
            q("http_req_failed: rate<0.1").unwrap(),
            r#"sum(caxton_bench_failures_total{run_id="r1",stage="all"}) / sum(caxton_bench_requests_total{run_id="r1",stage="all"})"#
        );
        assert!(q("checks: rate>0.9").unwrap().contains(r#"result="pass""#));
        assert!(q("http_reqs: count<10").is_some());
        for none in [
            "http_req_duration{stage:hold-2}: p(95)<100",
            "http_req_duration: max<100",
            "http_req_duration_uncorrected: p(95)<100",
            "http_reqs: rate>10",
            "dropped_iterations: count<1",
        ] {
            assert!(q(none).is_none(), "{none}");
        }
        let t = Threshold::parse("http_req_duration: max<100 abortOnFail").unwrap();
        let e = Aborter::new(&[t])
            .unwrap()
            .global(Global {
                url: "http://127.0.0.1:9".into(),
                run_id: "r1".into(),
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("`http_req_duration: max<100`"), "{e}");
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
