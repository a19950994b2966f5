//! How a run ends early, and the bound on how long any run may last.
//!
//! SIGINT and SIGTERM stop the load: goose's killswitch is triggered, the users finish
//! their requests, and the run writes its report marked [`Interruption`], pushes what was
//! measured and exits [`crate::EXIT_INTERRUPTED`]. A second signal exits at once.
//!
//! Every run is bounded by [`bounded`]: its plan and [`STOP_GRACE`], then the request
//! timeout (requests in flight end by then), then [`GRACE`]. Past that the attack is abandoned and the report
//! is built from what was recorded.
//!
//! SIGINT is taken with `ctrlc` because goose installs its own `ctrlc` handler when it
//! starts (which would overwrite any other SIGINT handler and exit 1 on a second Ctrl-C);
//! `ctrlc` takes one handler per process, so once ours is in, goose's attempt is refused.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use caxton_reports::model::Interruption;
use thiserror::Error;

use crate::plan::Plan;

/// How long past its plan a run is left to end by itself before it is told to stop: goose
/// starts its users before the run clock does.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long past its stop (plus the request timeout) a run is left to wind down before it
/// is abandoned.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// How often the watch re-reads the signal state and the clock.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum InterruptError {
    #[error("cannot install the SIGINT handler: {0}")]
    Sigint(String),
    #[error("cannot install the SIGTERM handler: {0}")]
    Sigterm(std::io::Error),
}

/// The first stop signal of this process.
#[derive(Debug, Clone, Copy)]
pub struct Caught {
    pub signal: &'static str,
    pub at: Instant,
}

static CAUGHT: Mutex<Option<Caught>> = Mutex::new(None);

fn caught_lock() -> MutexGuard<'static, Option<Caught>> {
    CAUGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes SIGINT and SIGTERM for the whole process. Call once, inside the tokio runtime and
/// before the first run.
pub fn install() -> Result<(), InterruptError> {
    ctrlc::set_handler(|| on_signal("SIGINT"))
        .map_err(|e| InterruptError::Sigint(e.to_string()))?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(InterruptError::Sigterm)?;
        tokio::spawn(async move {
            while term.recv().await.is_some() {
                on_signal("SIGTERM");
            }
        });
    }
    Ok(())
}

fn on_signal(signal: &'static str) {
    let mut caught = caught_lock();
    if caught.is_some() {
        eprintln!("caxton-bench: {signal} again: exiting now, without a report");
        std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
    }
    *caught = Some(Caught {
        signal,
        at: Instant::now(),
    });
    drop(caught);
    eprintln!(
        "caxton-bench: {signal}: stopping the load and writing the report (send it again to exit at once)"
    );
    goose::trigger_killswitch(&format!("{signal} received"));
}

/// The stop signal this process has received, if any.
pub fn caught() -> Option<Caught> {
    *caught_lock()
}

/// How far the run got when the signal came; `None` when no signal came. `started` is the
/// run clock's start (the stage clock), `None` when the load had not begun.
pub(crate) fn interruption(plan: &Plan, started: Option<Instant>) -> Option<Interruption> {
    let caught = caught()?;
    let into = started.map_or(Duration::ZERO, |s| caught.at.saturating_duration_since(s));
    let stage = plan
        .stages
        .get(plan.stage_at(into))
        .map(|s| s.name.clone())
        .unwrap_or_default();
    Some(Interruption {
        signal: caught.signal.to_string(),
        stage,
        at_seconds: into.as_secs_f64(),
    })
}

/// Runs `attack` (goose's `execute`) within the run's bound. Goose is told to stop (its
/// killswitch) once a signal came, the run stopped itself (`stopped`: when an
/// `abortOnFail` threshold failed) or the plan is over by [`STOP_GRACE`]; the attack is
/// abandoned (`None`) when it has not returned `request_timeout + GRACE` after that. Goose
/// resets its killswitch when it starts, so the stop is passed on again until the attack
/// returns.
pub async fn bounded<F: Future>(
    attack: F,
    plan_length: Duration,
    request_timeout: Duration,
    stopped: impl Fn() -> Option<Instant>,
) -> Option<F::Output> {
    bounded_by(
        attack,
        plan_length + STOP_GRACE,
        request_timeout + GRACE,
        stopped,
    )
    .await
}

/// [`bounded`] with its two allowances given: stop after `run`, abandon `wind_down` later.
async fn bounded_by<F: Future>(
    attack: F,
    run: Duration,
    wind_down: Duration,
    stopped: impl Fn() -> Option<Instant>,
) -> Option<F::Output> {
    let plan_over = tokio::time::Instant::now() + run;
    let mut attack = std::pin::pin!(attack);
    loop {
        let stop_at = [caught().map(|c| c.at), stopped()]
            .into_iter()
            .flatten()
            .map(tokio::time::Instant::from_std)
            .fold(plan_over, tokio::time::Instant::min);
        let now = tokio::time::Instant::now();
        if now >= stop_at {
            goose::trigger_killswitch("the run's time is up");
        }
        if now >= stop_at + wind_down {
            eprintln!(
                "caxton-bench: the load did not stop within {wind_down:?} of being told to; the report covers what was measured until now"
            );
            return None;
        }
        tokio::select! {
            out = &mut attack => return Some(out),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_attack_that_never_ends_is_abandoned_after_its_bound() {
        let begun = Instant::now();
        let run = Duration::from_millis(200);
        let wind_down = Duration::from_millis(300);
        let out = bounded_by(std::future::pending::<()>(), run, wind_down, || None).await;
        assert!(out.is_none());
        let took = begun.elapsed();
        assert!(took >= run + wind_down, "{took:?}");
        assert!(took < run + wind_down + Duration::from_secs(1), "{took:?}");
        goose::reset_killswitch();
    }

    #[tokio::test]
    async fn an_attack_that_ends_is_waited_for() {
        let out = bounded_by(
            async { 7 },
            Duration::from_secs(60),
            Duration::from_secs(60),
            || None,
        )
        .await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test]
    async fn a_run_that_stopped_itself_is_abandoned_after_its_wind_down() {
        let begun = Instant::now();
        let wind_down = Duration::from_millis(300);
        let out = bounded_by(
            std::future::pending::<()>(),
            Duration::from_secs(60),
            wind_down,
            || Some(begun),
        )
        .await;
        assert!(out.is_none());
        let took = begun.elapsed();
        assert!(
            took >= wind_down && took < Duration::from_secs(2),
            "{took:?}"
        );
        goose::reset_killswitch();
    }
}
