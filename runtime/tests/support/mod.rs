//! The loopback harness the API test files share: a runtime started in-process on
//! ephemeral loopback ports, and the test kit's client for it.
#![allow(dead_code)] // each test file uses its own part

use caxton_runtime::RunningServer;
use caxton_runtime::config::Config;
use caxton_testkit::{ApiClient, Caxton, CaxtonConfig, CaxtonOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) struct Harness {
    pub server: RunningServer,
    pub api: ApiClient,
    pub http: reqwest::Client,
    pub base: String,
}

impl Harness {
    /// A `seconds`-long CPU profile from the pprof server, taken while `load` runs; the load
    /// is stopped once the profile answers.
    pub(crate) async fn profile_during(
        &self,
        seconds: u64,
        load: Vec<tokio::task::JoinHandle<()>>,
    ) -> reqwest::Response {
        let pprof = self.server.pprof_addr().expect("pprof server started");
        let resp = self
            .http
            .get(format!(
                "http://{pprof}/debug/pprof/profile?seconds={seconds}"
            ))
            .timeout(std::time::Duration::from_secs(seconds + 60))
            .send()
            .await
            .unwrap();
        for l in &load {
            l.abort();
        }
        resp
    }

    pub(crate) async fn start(edit: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::for_tests();
        let data = std::env::temp_dir().join(format!("caxton-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        cfg.server.data_dir = data;
        edit(&mut cfg);
        let server = caxton_runtime::start(cfg).await.expect("runtime starts");
        let api = ApiClient::new(format!("http://{}", server.api_addr()));
        Self {
            server,
            http: api.http().clone(),
            base: api.base().to_owned(),
            api,
        }
    }

    pub(crate) async fn create(&self, body: Value) -> (StatusCode, Value) {
        let r = self.api.create_agent(&body).await.unwrap();
        (r.status, r.body)
    }

    pub(crate) async fn agent(&self, agent_type: &str) -> String {
        self.api.create_type(agent_type).await.unwrap()
    }

    pub(crate) async fn custom(&self, wat: &str) -> String {
        self.api.create_wat(wat).await.unwrap()
    }

    /// `POST {path}` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.post(url).json(body).send().await.unwrap()
    }

    /// `GET {path}`.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.unwrap()
    }

    /// `DELETE /api/agents/{id}`: its status.
    pub(crate) async fn delete(&self, id: &str) -> StatusCode {
        self.api.delete(id).await.unwrap().status
    }

    pub(crate) async fn ask(&self, receiver: &str, performative: &str) -> (StatusCode, Value) {
        let msg = json!({"performative": performative, "sender": "tester", "receiver": receiver,
                         "content": {"q": 1}, "conversation_id": "conv-1"});
        let r = self.api.ask(&msg).await.unwrap();
        // Replies and errors alike: clients (k6, goose) parse by this header.
        assert_eq!(r.headers["content-type"], "application/json");
        (r.status, r.body)
    }

    pub(crate) async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.server.metrics_addr());
        self.api.get_text(&url).await.unwrap()
    }
}

/// Keeps the agent `id` busy with `requests` `?wait=true` REQUESTs, one after another, from
/// a loopback client; abort the task to stop early.
pub(crate) fn keep_busy(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    requests: usize,
) -> tokio::task::JoinHandle<()> {
    let (http, url) = (http.clone(), format!("{base}/api/messages?wait=true"));
    let msg = json!({"performative": "REQUEST", "receiver": id});
    tokio::spawn(async move {
        for _ in 0..requests {
            let _ = http.post(&url).json(&msg).send().await;
        }
    })
}

/// A custom agent whose `handle_message` runs `body`, then answers status 0.
pub(crate) fn misbehaving(body: &str) -> String {
    caxton_testkit::api::agent_wat(&format!("{body} (i32.const 0)"))
}

/// This build's `caxton` binary serving `config`, ready.
pub(crate) async fn caxton(config: &CaxtonConfig, options: CaxtonOptions<'_>) -> Caxton {
    Caxton::start_with(env!("CARGO_BIN_EXE_caxton").as_ref(), config, options)
        .await
        .unwrap()
}

/// A real `caxton serve` process on loopback ports, for what only a process shows (its RSS,
/// its open-files limit, its log). Killed when dropped.
pub(crate) struct Process {
    pub caxton: Caxton,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `caxton serve` with `toml` appended to a config that sets the listeners, under
    /// `ulimit -n open_files` when given, and waits until `/ready` answers.
    pub(crate) async fn start(toml: &str, open_files: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = CaxtonConfig::write(dir.path(), toml).unwrap();
        let options = CaxtonOptions {
            open_files,
            ..CaxtonOptions::default()
        };
        let caxton = caxton(&config, options).await;
        Self {
            base: caxton.base().to_owned(),
            caxton,
            _dir: dir,
        }
    }

    /// VmRSS of the process, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.caxton.pid())).unwrap();
        caxton_runtime::internals::parse_rss_bytes(&status).unwrap()
    }

    /// Everything the process wrote so far (its log is stdout).
    pub(crate) fn output(&self) -> String {
        self.caxton.output()
    }
}
