//! The two arms of an A/B run as `caxton-bench run` child processes of this binary, started
//! together: each runs the user's plan (the same flags) against its own target with its
//! share of the load, records slices, and starts its load at one agreed instant.
//!
//! Child processes, not two runs in this process: each arm then has its own recorder,
//! killswitch and generator-CPU accounting, exactly as a single run has.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use caxton_reports::model::RunReport;
use caxton_reports::paired::{Arm, Pairing};
use tokio::process::Command;

use super::AbError;
use crate::progress::ProgressMode;

/// Flags of `ab` that are not run flags, and run flags `ab` sets per arm: never forwarded.
const NOT_FORWARDED: &[&str] = &[
    "--baseline-target",
    "--baseline-runtime",
    "--runtime",
    "--baseline-runtime-config",
    "--baseline-pprof",
    "--pairing",
    "--slice",
    "--warmup",
    "--regression-threshold",
    "--metric-threshold",
    "--gate",
    "--target",
    "--pprof",
    "--out",
    "--run-id",
    "--progress",
    "--runtime-config",
    "--summary-export",
    "--slice-seconds",
    "--load-share",
    "--start-at",
    "--interleave-arm",
    "--target-metrics",
    "--target-key",
];
const NOT_FORWARDED_SWITCHES: &[&str] = &["--markdown"];

/// The run flags of `argv` (this process's arguments, `ab` and all): what follows `ab`,
/// without the flags above.
pub(crate) fn forwarded(argv: &[String]) -> Vec<String> {
    // `caxton-bench ab FLAGS`, `caxton-bench run FLAGS` (a run that became an A/B run) or
    // `caxton-bench FLAGS`.
    let skip = match argv.get(1).map(String::as_str) {
        Some("ab" | "run") => 2,
        _ => 1,
    };
    let after = &argv[skip.min(argv.len())..];
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in after {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        if NOT_FORWARDED.contains(&name) {
            skip_value = !arg.contains('=');
        } else if !NOT_FORWARDED_SWITCHES.contains(&name) {
            out.push(arg.clone());
        }
    }
    out
}

/// What one arm is told.
pub(crate) struct ArmPlan {
    pub(crate) arm: Arm,
    pub(crate) target: String,
    pub(crate) pprof: Option<String>,
    pub(crate) target_metrics: Option<String>,
    pub(crate) target_key: String,
    pub(crate) run_id: String,
    pub(crate) progress: ProgressMode,
    pub(crate) summary_export: Option<PathBuf>,
}

/// A finished arm.
pub(crate) struct ArmResult {
    pub(crate) status: ExitStatus,
    pub(crate) report_path: PathBuf,
    pub(crate) log: PathBuf,
}

impl ArmResult {
    /// The arm's report, or why there is none (naming the arm and its log).
    pub(crate) fn report(&self, arm: &str) -> Result<RunReport, AbError> {
        let code = self.status.code();
        if code == Some(i32::from(crate::EXIT_ERROR))
            || code.is_none()
            || !self.report_path.is_file()
        {
            return Err(AbError::Arm {
                arm: arm.to_string(),
                detail: format!("its caxton-bench run failed ({})", self.status),
                log: self.log.clone(),
            });
        }
        Ok(RunReport::read(&self.report_path)?)
    }
}

/// Both arms' shared settings.
pub(crate) struct Launch<'a> {
    pub(crate) run_flags: &'a [String],
    pub(crate) dir: &'a Path,
    pub(crate) slice_seconds: u64,
    pub(crate) pairing: Pairing,
    pub(crate) start_at: SystemTime,
}

/// Runs both arms at once and waits for both.
pub(crate) async fn run_both(
    launch: &Launch<'_>,
    arms: [&ArmPlan; 2],
) -> Result<[ArmResult; 2], AbError> {
    let exe = std::env::current_exe().map_err(|source| AbError::Io {
        what: "finding this caxton-bench binary".into(),
        source,
    })?;
    let mut children = Vec::new();
    for arm in arms {
        let log = launch.dir.join(format!("{}.log", arm.arm.as_str()));
        let file = std::fs::File::create(&log).map_err(|source| AbError::Io {
            what: format!("creating {}", log.display()),
            source,
        })?;
        let stderr = match arm.progress {
            // The arm that shows progress writes to this terminal.
            ProgressMode::Off => Stdio::from(file.try_clone().map_err(|source| AbError::Io {
                what: format!("opening {}", log.display()),
                source,
            })?),
            _ => Stdio::inherit(),
        };
        let mut cmd = Command::new(&exe);
        // An arm is a plain run: the variable that makes a run an A/B run must not make
        // each arm one again (and so on).
        cmd.env_remove(crate::cli::BASELINE_TARGET_ENV)
            .env_remove(crate::cli::BASELINE_PPROF_ENV)
            .arg("run")
            .args(launch.run_flags)
            .args(["--target", &arm.target])
            .arg("--out")
            .arg(launch.dir)
            .args(["--run-id", &arm.run_id])
            .args(["--target-key", &arm.target_key])
            .args(["--slice-seconds", &launch.slice_seconds.to_string()])
            .args(["--load-share", share(launch.pairing)])
            .args(["--start-at", &unix_ms(launch.start_at).to_string()])
            .args(["--progress", progress_flag(arm.progress)]);
        if launch.pairing == Pairing::Interleaved {
            cmd.args(["--interleave-arm", arm.arm.as_str()]);
        }
        if let Some(p) = &arm.pprof {
            cmd.args(["--pprof", p]);
        }
        if let Some(m) = &arm.target_metrics {
            cmd.args(["--target-metrics", m]);
        }
        if let Some(f) = &arm.summary_export {
            cmd.arg("--summary-export").arg(f);
        }
        let child = cmd
            .stdout(Stdio::from(file))
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| AbError::Io {
                what: format!("starting the {} arm", arm.arm.as_str()),
                source,
            })?;
        let report_path = crate::run_dir::report_path(launch.dir, &arm.run_id, None);
        children.push((child, report_path, log));
    }
    let mut results = Vec::new();
    for (mut child, report_path, log) in children {
        let status = child.wait().await.map_err(|source| AbError::Io {
            what: "waiting for an arm".into(),
            source,
        })?;
        results.push(ArmResult {
            status,
            report_path,
            log,
        });
    }
    let [a, b]: [ArmResult; 2] = results
        .try_into()
        .map_err(|_| AbError::Internal("two arms were started".into()))?;
    Ok([a, b])
}

/// Each arm's share of every stage's load: half when both run at once, the whole of it in
/// its turns when they take turns.
fn share(pairing: Pairing) -> &'static str {
    match pairing {
        Pairing::Concurrent => "0.5",
        Pairing::Interleaved => "1",
    }
}

fn progress_flag(mode: ProgressMode) -> &'static str {
    match mode {
        ProgressMode::Auto => "auto",
        ProgressMode::Live => "live",
        ProgressMode::Plain => "plain",
        ProgressMode::Off => "off",
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn run_flags_pass_and_ab_flags_do_not() {
        let got = forwarded(&argv(
            "caxton-bench ab --baseline-target http://127.0.0.1:1 --target=http://127.0.0.1:2 \
             --duration 30s --concurrent-users 4 --markdown --slice 2s --threshold p(95)<100 \
             --out dir --metric-threshold p95=5%",
        ));
        assert_eq!(
            got,
            argv("--duration 30s --concurrent-users 4 --threshold p(95)<100")
        );
    }
}
