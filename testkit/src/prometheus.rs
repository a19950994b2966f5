//! Real Prometheus, Pushgateway and Alertmanager (Debian's `prometheus`,
//! `prometheus-pushgateway` and `prometheus-alertmanager`) on a free loopback port with a temp
//! dir of their own, ready (`/-/ready`) when `start` returns.
//!
//! ```no_run
//! # async fn demo() -> Result<(), caxton_testkit::Error> {
//! use caxton_testkit::Prometheus;
//! let prometheus = Prometheus::start(&["--enable-feature=native-histograms"]).await?;
//! // ... remote-write to prometheus.url() ...
//! let result = prometheus.query("caxton_bench_rps").await?; // the `data.result` array
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Error, Readiness, ServerProcess, free_port};

/// Replaying nothing, these servers are ready in about a second; two cores shared with cargo
/// builds can make that much slower.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Another process can take the free port between our probe and the server's bind.
const PORT_ATTEMPTS: u32 = 3;

/// Starts `binary` with `args(addr, dir)` after `prepare(dir)` wrote its config, on `port` or
/// a free one; on a free one, starts over (new port, new dir) when another process took it.
async fn start_server(
    binary: &str,
    port: Option<u16>,
    prepare: impl Fn(&Path) -> std::io::Result<()>,
    args: impl Fn(SocketAddr, &Path) -> Vec<String>,
) -> Result<(ServerProcess, SocketAddr), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dir = ServerProcess::temp_dir(binary)?;
        prepare(dir.path())?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.map_or_else(free_port, Ok)?));
        let mut command = Command::new(binary);
        command.args(args(addr, dir.path()));
        let ready = Readiness::Http(format!("http://{addr}/-/ready"));
        match ServerProcess::start(binary, dir, command, ready, READY_TIMEOUT).await {
            Ok(process) => return Ok((process, addr)),
            Err(Error::Exited { output, .. })
                if port.is_none()
                    && attempt < PORT_ATTEMPTS
                    && output.contains("address already in use") => {}
            Err(other) => return Err(other),
        }
    }
}

fn with_extra(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

fn http_client(url: &str) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| Error::Http {
            url: url.to_owned(),
            source,
        })
}

/// The smallest Prometheus config: scrapes nothing, so every series comes from the test.
pub const EMPTY_CONFIG: &str = "global:\n  evaluation_interval: 1s\nscrape_configs: []\n";

/// A real Prometheus with the remote-write receiver enabled.
#[derive(Debug)]
pub struct Prometheus {
    process: ServerProcess,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Prometheus {
    /// Prometheus with [`EMPTY_CONFIG`] on a free loopback port. `extra_args` follow
    /// `--web.enable-remote-write-receiver --config.file --storage.tsdb.path
    /// --web.listen-address --log.level=warn`, e.g. `["--enable-feature=native-histograms"]`.
    pub async fn start(extra_args: &[&str]) -> Result<Prometheus, Error> {
        Self::start_with_config(EMPTY_CONFIG, None, extra_args).await
    }

    /// Like [`start`](Self::start) on a given port: e.g. to start the server after a client
    /// began retrying against that port.
    pub async fn start_on_port(port: u16, extra_args: &[&str]) -> Result<Prometheus, Error> {
        Self::start_with_config(EMPTY_CONFIG, Some(port), extra_args).await
    }

    /// Prometheus with `config_yaml` as its `prometheus.yml` (in the temp dir, so `rule_files`
    /// are best given as absolute paths), on `port` or a free one.
    pub async fn start_with_config(
        config_yaml: &str,
        port: Option<u16>,
        extra_args: &[&str],
    ) -> Result<Prometheus, Error> {
        let (process, addr) = start_server(
            "prometheus",
            port,
            |dir| std::fs::write(dir.join("prometheus.yml"), config_yaml),
            |addr, dir| {
                let args = vec![
                    "--web.enable-remote-write-receiver".to_owned(),
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    "--log.level=warn".to_owned(),
                ];
                with_extra(args, extra_args)
            },
        )
        .await?;
        let client = http_client(&format!("http://{addr}"))?;
        Ok(Prometheus {
            process,
            addr,
            client,
        })
    }

    /// `http://127.0.0.1:PORT`, the base URL (remote write goes to `/api/v1/write`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temp dir holding `prometheus.yml` and `data/`; removed on drop.
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// What the server printed so far (for assertion messages).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Instant query at the current time; returns `data.result` (for a vector: an array of
    /// `{"metric": {labels}, "value": [ts, "value"]}`). A PromQL error is an `Err` carrying
    /// Prometheus' message.
    pub async fn query(&self, expr: &str) -> Result<serde_json::Value, Error> {
        Ok(caxton_reports::prometheus_query::instant(&self.client, &self.url(), expr).await?)
    }

    /// Whether the instant query returns at least one series.
    pub async fn has_series(&self, expr: &str) -> bool {
        self.query(expr)
            .await
            .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    }
}

/// A real Pushgateway, in memory only.
#[derive(Debug)]
pub struct Pushgateway {
    process: ServerProcess,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Pushgateway {
    /// `prometheus-pushgateway` on a free loopback port without persistence.
    pub async fn start(extra_args: &[&str]) -> Result<Pushgateway, Error> {
        let (process, addr) = start_server(
            "prometheus-pushgateway",
            None,
            |_| Ok(()),
            |addr, _| {
                let args = vec![
                    format!("--web.listen-address={addr}"),
                    // Empty: keep metrics in memory (the default file is under /var/lib).
                    "--persistence.file=".to_owned(),
                    "--log.level=warn".to_owned(),
                ];
                with_extra(args, extra_args)
            },
        )
        .await?;
        let client = http_client(&format!("http://{addr}"))?;
        Ok(Pushgateway {
            process,
            addr,
            client,
        })
    }

    /// `http://127.0.0.1:PORT`, the base URL pushes go under.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    /// The text exposition of `GET /metrics`: what Prometheus would scrape.
    pub async fn metrics_text(&self) -> Result<String, Error> {
        crate::api::get_text(&self.client, &format!("{}/metrics", self.url())).await
    }
}

/// A real Alertmanager, a single instance (no gossip).
#[derive(Debug)]
pub struct Alertmanager {
    process: ServerProcess,
    addr: SocketAddr,
}

impl Alertmanager {
    /// `prometheus-alertmanager` with `config_yaml` as its `alertmanager.yml`, on a free
    /// loopback port.
    pub async fn start(config_yaml: &str) -> Result<Alertmanager, Error> {
        let (process, addr) = start_server(
            "prometheus-alertmanager",
            None,
            |dir| std::fs::write(dir.join("alertmanager.yml"), config_yaml),
            |addr, dir| {
                vec![
                    format!("--config.file={}", dir.join("alertmanager.yml").display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    // No gossip: a single instance on loopback.
                    "--cluster.listen-address=".to_owned(),
                ]
            },
        )
        .await?;
        Ok(Alertmanager { process, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn output(&self) -> String {
        self.process.output()
    }
}
