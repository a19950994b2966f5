//! Test kit (cargo feature `testkit`): real Prometheus and Pushgateway servers (Debian's
//! `prometheus` and `prometheus-pushgateway`, installed by `ci/install-tools`) started on a free
//! loopback port with a temporary data directory, ready when `start` returns, killed on drop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), caxton_reports::prometheus_server::TestServerError> {
//! use caxton_reports::prometheus_server::PrometheusServer;
//! let prometheus = PrometheusServer::start(&[]).await?;
//! // ... remote-write to prometheus.url() ...
//! let result = prometheus.query("caxton_bench_rps").await?; // the `data.result` array
//! # Ok(()) }
//! ```

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `/-/ready`; Prometheus replaying nothing is ready in
/// about a second, but two cores shared with cargo builds can be slow.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(50);
/// Another process can take the free port between our probe and the server's bind.
const PORT_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    #[error("cannot run {binary:?} (is it installed? run ci/install-tools as root): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} exited with {status} before it was ready on {url}; its log:\n{log}")]
    Exited {
        binary: String,
        url: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{binary} was not ready on {url}/-/ready within {waited:?}; its log:\n{log}")]
    NotReady {
        binary: String,
        url: String,
        waited: Duration,
        log: String,
    },
    #[error("test server I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Query(#[from] crate::prometheus_query::QueryError),
}

/// A free TCP port on 127.0.0.1 (bound then released: the caller binds it next).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A child server process with its temp dir; killed and reaped on drop.
#[derive(Debug)]
struct ServerProcess {
    binary: String,
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Makes a temp dir, lets `prepare` fill it (config files), starts `binary` with
    /// `args(addr, dir)` and waits for `/-/ready`. With `port` None, picks a free port and
    /// starts over (new port, new dir) when another process took it first.
    async fn start(
        binary: &str,
        port: Option<u16>,
        prepare: impl Fn(&Path) -> std::io::Result<()>,
        args: impl Fn(SocketAddr, &Path) -> Vec<String>,
    ) -> Result<ServerProcess, TestServerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new()
                .prefix(&format!("caxton-{binary}-"))
                .tempdir()?;
            prepare(dir.path())?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.map_or_else(free_port, Ok)?));
            let log = File::create(dir.path().join(LOG_FILE))?;
            let child = Command::new(binary)
                .args(args(addr, dir.path()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|source| TestServerError::Spawn {
                    binary: binary.to_owned(),
                    source,
                })?;
            let mut server = ServerProcess {
                binary: binary.to_owned(),
                child,
                addr,
                dir,
            };
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(TestServerError::Exited { log, .. })
                    if port.is_none()
                        && attempt < PORT_ATTEMPTS
                        && log.contains("address already in use") => {}
                Err(other) => return Err(other),
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE))
            .unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    async fn wait_ready(&mut self) -> Result<(), TestServerError> {
        let url = self.url();
        let client = http_client(&url)?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(TestServerError::Exited {
                    binary: self.binary.clone(),
                    url,
                    status,
                    log: self.log(),
                });
            }
            let ready = client.get(format!("{url}/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(TestServerError::NotReady {
                    binary: self.binary.clone(),
                    url,
                    waited: READY_TIMEOUT,
                    log: self.log(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already exited is fine; nothing else can be done about a failure in a destructor.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LOG_FILE: &str = "server.log";

fn http_client(url: &str) -> Result<reqwest::Client, TestServerError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| TestServerError::Http {
            url: url.to_owned(),
            source,
        })
}

async fn get_text(client: &reqwest::Client, url: String) -> Result<String, TestServerError> {
    let http = |source| TestServerError::Http {
        url: url.clone(),
        source,
    };
    client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http)?
        .text()
        .await
        .map_err(http)
}

/// The smallest Prometheus config: scrapes nothing, so every series comes from the test.
pub const EMPTY_CONFIG: &str = "global:\n  evaluation_interval: 1s\nscrape_configs: []\n";

/// A real Prometheus with the remote-write receiver enabled.
#[derive(Debug)]
pub struct PrometheusServer {
    process: ServerProcess,
    client: reqwest::Client,
}

impl PrometheusServer {
    /// Starts Prometheus with [`EMPTY_CONFIG`] on a free loopback port. `extra_args` are appended
    /// to `--web.enable-remote-write-receiver --storage.tsdb.path --config.file
    /// --web.listen-address --log.level=warn`, e.g. `["--web.enable-lifecycle"]`.
    pub async fn start(extra_args: &[&str]) -> Result<PrometheusServer, TestServerError> {
        Self::start_with_config(EMPTY_CONFIG, None, extra_args).await
    }

    /// Like [`start`](Self::start) on a given port: e.g. to start the server after a client
    /// began retrying against that port.
    pub async fn start_on_port(
        port: u16,
        extra_args: &[&str],
    ) -> Result<PrometheusServer, TestServerError> {
        Self::start_with_config(EMPTY_CONFIG, Some(port), extra_args).await
    }

    /// Starts Prometheus with `config_yaml` as its `prometheus.yml` (in the temp dir, so
    /// `rule_files` are best given as absolute paths), on `port` or a free one.
    pub async fn start_with_config(
        config_yaml: &str,
        port: Option<u16>,
        extra_args: &[&str],
    ) -> Result<PrometheusServer, TestServerError> {
        let process = ServerProcess::start(
            "prometheus",
            port,
            |dir| std::fs::write(dir.join("prometheus.yml"), config_yaml),
            |addr, dir| {
                let mut args = vec![
                    "--web.enable-remote-write-receiver".to_owned(),
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    "--log.level=warn".to_owned(),
                ];
                args.extend(extra_args.iter().map(|a| (*a).to_owned()));
                args
            },
        )
        .await?;
        let client = http_client(&process.url())?;
        Ok(PrometheusServer { process, client })
    }

    /// `http://127.0.0.1:PORT`, the base URL (remote write goes to `/api/v1/write`).
    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr
    }

    /// The temp dir holding `prometheus.yml`, `data/` and `server.log`; removed on drop.
    pub fn dir(&self) -> PathBuf {
        self.process.dir.path().to_owned()
    }

    /// What the server printed so far (for assertion messages).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Instant query at the current time; returns `data.result` (for a vector: an array of
    /// `{"metric": {labels}, "value": [ts, "value"]}`). A PromQL error is an `Err` carrying
    /// Prometheus' message.
    pub async fn query(&self, expr: &str) -> Result<serde_json::Value, TestServerError> {
        Ok(crate::prometheus_query::instant(&self.client, &self.url(), expr).await?)
    }
}

/// A real Pushgateway, in-memory only.
#[derive(Debug)]
pub struct PushgatewayServer {
    process: ServerProcess,
    client: reqwest::Client,
}

impl PushgatewayServer {
    /// Starts `prometheus-pushgateway` on a free loopback port without persistence.
    pub async fn start(extra_args: &[&str]) -> Result<PushgatewayServer, TestServerError> {
        let process = ServerProcess::start(
            "prometheus-pushgateway",
            None,
            |_| Ok(()),
            |addr, _| {
                let mut args = vec![
                    format!("--web.listen-address={addr}"),
                    // Empty: keep metrics in memory (the default file is under /var/lib).
                    "--persistence.file=".to_owned(),
                    "--log.level=warn".to_owned(),
                ];
                args.extend(extra_args.iter().map(|a| (*a).to_owned()));
                args
            },
        )
        .await?;
        let client = http_client(&process.url())?;
        Ok(PushgatewayServer { process, client })
    }

    /// `http://127.0.0.1:PORT`, the base URL pushes go under.
    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The text exposition of `GET /metrics`: what Prometheus would scrape.
    pub async fn metrics_text(&self) -> Result<String, TestServerError> {
        get_text(&self.client, format!("{}/metrics", self.url())).await
    }
}
