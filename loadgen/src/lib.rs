//! `caxton-bench`: the staged load generator of the Caxton runtime, built on goose.
//!
//! What the crate offers (to its binary and its tests):
//! - [`cli`]: the command line, resolved into [`run::RunOptions`];
//! - [`run`]: one run, start to finish, and what it produced ([`run::RunOutcome`]), written
//!   where [`run_dir`] says;
//! - [`summary`] and [`summary_export`]: the end-of-run summary as k6 prints and exports it;
//! - [`distributed`]: a worker's share of the plan and `caxton-bench merge`;
//! - [`push`] and [`series`]: the `caxton_bench_*` series and their delivery;
//! - [`comparison`] and [`history_check`]: the `compare` and `history` commands, on top of
//!   `caxton-reports` with [`profile_diff`], [`prometheus_history`] and [`verdict`];
//! - [`interrupt`]: how a run ends early, and the bound on every run;
//! - [`barrier`]: the workers of a distributed run meet and start their load together;
//! - the exit statuses below.
//!
//! Inside, goose runs the virtual users and their stages; every transaction measures its
//! own requests (to the end of the body) into per-thread HdrHistograms (`recorder`), merged
//! each second (`collector`) into the versioned report of `caxton-reports` (`report`),
//! judged by k6-style thresholds (`thresholds`; those with abortOnFail also during the run,
//! `abort`) and by whether the load was produced
//! (`validity`). Goose's own metrics are turned off: they drop the ramp, stop at the first
//! byte and round to milliseconds.
//!
//! Module map: [`cli`] flags → `plan` stages (the Caxton Monitoring and Observability
//! Guide's k6 plan lives there) → [`run`] (target, goose attack, ticker) with `scenario`
//! (what users do), `arrival` (open model), `embedded` (runtime without `--target`),
//! `progress`, [`summary`].

pub mod ab;
pub(crate) mod abort;
pub(crate) mod arrival;
pub mod barrier;
pub mod cli;
pub(crate) mod collector;
pub mod comparison;
pub mod distributed;
pub(crate) mod embedded;
pub(crate) mod flamegraph;
pub(crate) mod generator_cpu;
pub(crate) mod headers;
pub mod history_check;
pub mod interrupt;
pub(crate) mod plan;
pub mod profile_diff;
pub(crate) mod progress;
pub mod prometheus_history;
pub mod push;
pub(crate) mod recorder;
pub(crate) mod report;
pub mod run;
pub(crate) mod run_clock;
pub mod run_dir;
pub(crate) mod scenario;
pub mod series;
pub(crate) mod slow_profile;
pub mod summary;
pub mod summary_export;
pub(crate) mod target_build;
pub(crate) mod thresholds;
pub(crate) mod transport;
pub(crate) mod turns;
pub(crate) mod validity;
pub mod verdict;

/// Exit status when every threshold passed.
pub const EXIT_PASSED: u8 = 0;
/// Exit status when a threshold was breached (k6's).
pub const EXIT_BREACHED: u8 = 99;
/// Exit status of a run stopped by SIGINT/SIGTERM (k6's external abort).
pub const EXIT_INTERRUPTED: u8 = 105;
/// Exit status for a setup or runtime error.
pub const EXIT_ERROR: u8 = 1;
/// Exit status of a run that could not produce the load it was asked for (`validity`),
/// whatever its thresholds say: not 0, and not k6's 99, which would blame the target.
pub const EXIT_INVALID: u8 = 98;
