//! The load generator's own CPU, measured once a second during a run.
//!
//! A generator that runs out of CPU sends late and times its requests late, so its figures
//! describe itself rather than the target; a run in which that happened is invalid
//! (`validity.rs`). With an embedded target the two share the process and the machine:
//! threads are told apart by name (`caxton_profiles::threads`), and a second in which the
//! pair used (nearly) every core counts as saturated too, since the generator then queues
//! for CPU behind the target.

use std::time::{Duration, Instant};

use caxton_profiles::threads;
use caxton_reports::model::GeneratorCpu;
use tokio::sync::watch;

/// A second counts as saturated at this share of the machine's cores.
pub(crate) const SATURATED_SHARE: f64 = 0.9;

/// Samples every second until `stop` turns true; returns the run's figures.
pub(crate) async fn measure(mut stop: watch::Receiver<bool>) -> GeneratorCpu {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let embedded = threads::filtered();
    let mut last = (Instant::now(), threads::cpu_split());
    let mut generator = Vec::new();
    let mut target = Vec::new();
    let mut saturated_seconds = 0;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = stop.changed() => true,
        };
        let now = (Instant::now(), threads::cpu_split());
        let wall = now.0.duration_since(last.0).as_secs_f64();
        // A sliver of a second at the end says little and divides by almost nothing.
        if wall >= 0.5 {
            let (t, g) = (
                now.1.0.saturating_sub(last.1.0).as_secs_f64() / wall,
                now.1.1.saturating_sub(last.1.1).as_secs_f64() / wall,
            );
            // Without an embedded target every thread is the generator's.
            let (g, t) = if embedded { (g, t) } else { (g + t, 0.0) };
            if g + t >= SATURATED_SHARE * f64::from(cores) {
                saturated_seconds += 1;
            }
            generator.push(g);
            target.push(t);
        }
        last = now;
        if stopping || *stop.borrow() {
            break;
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    GeneratorCpu {
        cores,
        mean_cores: mean(&generator),
        max_cores: generator.iter().copied().fold(0.0, f64::max),
        seconds: generator.len() as u64,
        saturated_seconds,
        target_mean_cores: embedded.then(|| mean(&target)),
    }
}
