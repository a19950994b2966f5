//! The `caxton` binary as a child process, for what only the binary sets up (its allocator,
//! its subscriber, its OTLP pipelines from a file) or only a process shows (RSS, open-files
//! limit, a restart, `kill -9`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::{ApiClient, Error, Readiness, ServerProcess, free_addr};

/// A config file whose `[server]` listens on free loopback ports.
#[derive(Debug, Clone)]
pub struct CaxtonConfig {
    pub path: PathBuf,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

impl CaxtonConfig {
    /// Writes `dir/caxton.toml`: `[server]` with `api_address` and `metrics_address` on free
    /// loopback ports and `data_dir = dir/data`, then `rest`, which may go on with `[server]`
    /// keys or open further tables.
    pub fn write(dir: &Path, rest: &str) -> std::io::Result<CaxtonConfig> {
        let (api, metrics) = (free_addr()?, free_addr()?);
        let path = dir.join("caxton.toml");
        let head = format!(
            "[server]\napi_address = \"{api}\"\nmetrics_address = \"{metrics}\"\ndata_dir = {:?}\n",
            dir.join("data").display().to_string()
        );
        std::fs::write(&path, format!("{head}{rest}\n"))?;
        Ok(CaxtonConfig { path, api, metrics })
    }

    /// `http://127.0.0.1:PORT` of the API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The `/metrics` URL.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

/// How a `caxton serve` is started, beyond its config.
#[derive(Debug, Clone)]
pub struct CaxtonOptions<'a> {
    /// Environment variables set on top of this process's (`RUST_LOG` is always removed).
    pub envs: &'a [(&'a str, &'a str)],
    /// Runs it under `ulimit -n N`.
    pub open_files: Option<u32>,
    /// How long `/ready` may take to answer 200.
    pub deadline: Duration,
}

impl Default for CaxtonOptions<'_> {
    fn default() -> Self {
        CaxtonOptions {
            envs: &[],
            open_files: None,
            deadline: Duration::from_secs(40),
        }
    }
}

/// `caxton serve --config FILE`, killed when dropped.
#[derive(Debug)]
pub struct Caxton {
    process: ServerProcess,
    api: ApiClient,
    metrics_url: String,
}

impl Caxton {
    /// `binary serve --config` on `config` with the default options.
    pub async fn start(binary: &Path, config: &CaxtonConfig) -> Result<Caxton, Error> {
        Self::start_with(binary, config, CaxtonOptions::default()).await
    }

    /// `binary serve --config` on `config`; returns once `/ready` answers 200, or as soon
    /// as the process exits.
    pub async fn start_with(
        binary: &Path,
        config: &CaxtonConfig,
        options: CaxtonOptions<'_>,
    ) -> Result<Caxton, Error> {
        let mut command = match options.open_files {
            None => {
                let mut c = Command::new(binary);
                c.args(["serve", "--config"]).arg(&config.path);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!(
                    "ulimit -n {n} && exec '{}' serve --config '{}'",
                    binary.display(),
                    config.path.display()
                ));
                c
            }
        };
        command
            .envs(options.envs.iter().copied())
            .env_remove("RUST_LOG");
        let api = ApiClient::new(config.api_url());
        let ready = Readiness::Http(format!("{}/ready", config.api_url()));
        let dir = ServerProcess::temp_dir("caxton")?;
        let process = ServerProcess::start("caxton", dir, command, ready, options.deadline).await?;
        Ok(Caxton {
            process,
            api,
            metrics_url: config.metrics_url(),
        })
    }

    /// The API's client.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// `http://127.0.0.1:PORT` of the API.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    pub fn metrics_url(&self) -> &str {
        &self.metrics_url
    }

    /// The text `/metrics` serves.
    pub async fn metrics(&self) -> Result<String, Error> {
        self.api.get_text(&self.metrics_url).await
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What the process wrote to stdout and stderr (its log, unless the config sends the
    /// log to a file).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) -> Result<(), Error> {
        self.process.sigterm()
    }

    /// SIGTERM (the graceful shutdown: mailboxes drain, telemetry is flushed) and the exit
    /// status.
    pub fn terminate(&mut self) -> Result<ExitStatus, Error> {
        self.process.terminate(Duration::from_secs(30))
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        self.process.try_wait()
    }

    /// SIGKILL: a crash, as far as the process can tell.
    pub fn kill(&mut self) -> Result<ExitStatus, Error> {
        self.process.kill()
    }
}
