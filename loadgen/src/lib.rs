//! `caxton-bench`: the staged load generator of the Caxton runtime, built on goose.
//!
//! Goose runs the virtual users and their stages; every transaction measures its own
//! requests (to the end of the body) into per-thread HdrHistograms ([`recorder`]), merged
//! each second ([`collector`]) into the versioned report of `caxton-reports` ([`report`]),
//! judged by k6-style thresholds ([`thresholds`]). Goose's own metrics are turned off:
//! they drop the ramp, stop at the first byte and round to milliseconds.
//!
//! Module map: [`cli`] flags → [`plan`] stages (the Caxton Monitoring and Observability Guide's k6
//! plan lives there) → [`run`] (target, goose attack, ticker) with [`scenario`] (what users do),
//! [`arrival`] (open model), [`embedded`] (runtime without `--target`), [`progress`], [`summary`].

pub mod arrival;
pub mod cli;
pub mod collector;
pub mod distributed;
pub mod embedded;
pub mod flamegraph;
pub mod generator_cpu;
pub mod headers;
pub mod interrupt;
pub mod plan;
pub mod profile_diff;
pub mod progress;
pub mod prometheus_history;
pub mod push;
pub mod recorder;
pub mod report;
pub mod run;
pub mod run_clock;
pub mod run_dir;
pub mod scenario;
pub mod series;
pub mod summary;
pub mod summary_export;
pub mod target_build;
pub mod thresholds;
pub mod transport;
pub mod validity;
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
