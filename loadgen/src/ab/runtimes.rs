//! The two runtimes of an A/B run without targets: two `caxton` binaries (`--baseline-runtime`
//! and `--runtime`) with one configuration (or the baseline's own,
//! `--baseline-runtime-config`), each on its own free loopback ports and data
//! directory, with its pprof endpoint on (at the embedded runtime's sample rate and budget
//! unless the configuration sets them), stopped when dropped.
//!
//! Both inherit this process's CPU affinity, so they are pinned alike: neither gets a core
//! the other cannot use.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::AbError;

/// A `caxton serve` child.
pub(crate) struct Runtime {
    child: Child,
    pub(crate) api: String,
    pub(crate) metrics: String,
    pub(crate) pprof: String,
}

impl Runtime {
    /// Starts `bin` with `config` (the user's caxton.toml, or none) in `dir`, its listeners
    /// moved to free loopback ports, and waits until it answers `/ready`.
    pub(crate) async fn start(
        arm: &str,
        bin: &Path,
        config: Option<&Path>,
        dir: &Path,
    ) -> Result<Runtime, AbError> {
        let io = |what: String| move |source| AbError::Io { what, source };
        let mut table: toml::Table = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(io(format!("reading {}", path.display())))?;
                toml::from_str(&text).map_err(|e| AbError::Config {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let data = dir.join(format!("{arm}-data"));
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
        let (api, metrics, pprof) = (free_addr()?, free_addr()?, free_addr()?);
        let server = section(&mut table, "server");
        server.insert("api_address".into(), api.clone().into());
        server.insert("metrics_address".into(), metrics.clone().into());
        server.insert("data_dir".into(), data.display().to_string().into());
        let profiling = section(&mut table, "profiling");
        profiling.insert("enabled".into(), true.into());
        profiling.insert("server_address".into(), pprof.clone().into());
        // As the embedded runtime's: the arms' diffs (and their slow requests') need
        // thousands of samples; a rate or budget set in the config stays.
        let rate = crate::embedded::EMBEDDED_PROFILE_HZ;
        let budget = crate::embedded::EMBEDDED_SAMPLE_BUDGET;
        profiling
            .entry("sample_rate")
            .or_insert(i64::from(rate).into());
        profiling
            .entry("sample_budget")
            .or_insert(i64::from(budget).into());
        let config_path = dir.join(format!("{arm}-caxton.toml"));
        std::fs::write(&config_path, table.to_string())
            .map_err(io(format!("writing {}", config_path.display())))?;
        let log_path = dir.join(format!("{arm}-runtime.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let err_log = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting the {arm} runtime {}", bin.display())))?;
        let mut rt = Runtime {
            child,
            api: format!("http://{api}"),
            metrics: format!("http://{metrics}/metrics"),
            pprof: format!("http://{pprof}"),
        };
        rt.wait_ready(arm, &log_path).await?;
        Ok(rt)
    }

    async fn wait_ready(&mut self, arm: &str, log: &Path) -> Result<(), AbError> {
        let client = reqwest::Client::new();
        let url = format!("{}/ready", self.api);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(AbError::Arm {
                    arm: arm.to_string(),
                    detail: format!("its runtime exited ({status}) before it was ready"),
                    log: log.to_path_buf(),
                });
            }
            let ready = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(AbError::Arm {
                    arm: arm.to_string(),
                    detail: format!("its runtime did not answer {url} within 60 s"),
                    log: log.to_path_buf(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the runtime is still running (an arm whose runtime died is invalid).
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn section<'a>(table: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let entry = table
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    match entry {
        toml::Value::Table(t) => t,
        _ => unreachable!("replaced by a table above"),
    }
}

/// A free loopback port, as `127.0.0.1:PORT`. Another process may take it before the
/// runtime binds it; the runtime then fails to start and says so.
fn free_addr() -> Result<String, AbError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| AbError::Io {
        what: "finding a free loopback port".into(),
        source,
    })?;
    let addr = l.local_addr().map_err(|source| AbError::Io {
        what: "finding a free loopback port".into(),
        source,
    })?;
    Ok(addr.to_string())
}

/// The last lines of an arm's log, for an error message.
pub(crate) fn tail(path: &PathBuf, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
