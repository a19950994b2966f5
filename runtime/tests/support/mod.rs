//! The loopback harness the API test files share: a runtime started in-process on
//! ephemeral loopback ports, and a client for it.
#![allow(dead_code)] // each test file uses its own part

use base64::Engine as _;
use caxton_runtime::config::Config;
use caxton_runtime::http::server::{self, RunningServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct Harness {
    pub server: RunningServer,
    pub http: reqwest::Client,
    pub base: String,
}

impl Harness {
    pub async fn start(edit: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::for_tests();
        let data = std::env::temp_dir().join(format!("caxton-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        cfg.server.data_dir = data;
        edit(&mut cfg);
        let server = server::start(cfg).await.expect("runtime starts");
        let base = format!("http://{}", server.api_addr());
        Self {
            server,
            http: reqwest::Client::new(),
            base,
        }
    }

    pub async fn create(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/agents", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    pub async fn agent(&self, agent_type: &str) -> String {
        let (status, body) = self.create(json!({"agent_type": agent_type})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn custom(&self, wat: &str) -> String {
        let wasm = wat::parse_str(wat).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        let (status, body) = self.create(json!({"wasm_module": b64})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// `POST {path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.post(url).json(body).send().await.unwrap()
    }

    /// `DELETE /api/agents/{id}`.
    pub async fn delete(&self, id: &str) -> reqwest::Response {
        let url = format!("{}/api/agents/{id}", self.base);
        self.http.delete(url).send().await.unwrap()
    }

    pub async fn ask(&self, receiver: &str, performative: &str) -> (StatusCode, Value) {
        let msg = json!({"performative": performative, "sender": "tester", "receiver": receiver,
                         "content": {"q": 1}, "conversation_id": "conv-1"});
        let r = self.post("/api/messages?wait=true", &msg).await;
        // Replies and errors alike: clients (k6, goose) parse by this header.
        assert_eq!(r.headers()["content-type"], "application/json");
        (r.status(), r.json().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.server.metrics_addr());
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Keeps the agent `id` busy with `requests` `?wait=true` REQUESTs, one after another, from
/// a loopback client; abort the task to stop early.
pub fn keep_busy(
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

pub fn misbehaving(body: &str) -> String {
    format!(
        r#"(module (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) (i32.const 1024))
             (func (export "handle_message") (param i32 i32) (result i32) {body} (i32.const 0)))"#
    )
}

/// A real `caxton serve` process on loopback ports, for what only a process shows (its RSS,
/// its open-files limit, its log). Killed when dropped.
pub struct Process {
    child: std::process::Child,
    pub base: String,
    pub metrics: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Process {
    /// Starts `caxton serve` with `toml` appended to a config that sets the listeners, under
    /// `ulimit -n open_files` when given, and waits until `/ready` answers.
    pub async fn start(toml: &str, open_files: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (api, metrics) = (free_port(), free_port());
        let cfg = dir.path().join("caxton.toml");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let head = format!(
            "[server]\napi_address = \"127.0.0.1:{api}\"\nmetrics_address = \"127.0.0.1:{metrics}\"\ndata_dir = \"{}\"\n",
            data.display()
        );
        // `toml` may continue [server] or open further tables.
        std::fs::write(&cfg, format!("{head}{toml}")).unwrap();
        let log = dir.path().join("caxton.log");
        let limit = open_files.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{limit}exec '{}' serve --config '{}'",
                env!("CARGO_BIN_EXE_caxton"),
                cfg.display()
            ))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{api}"),
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            log,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/ready", p.base)).send().await
                && r.status() == StatusCode::OK
            {
                return p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("caxton never became ready: {}", p.output());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS of the process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        caxton_runtime::system::parse_rss_bytes(&status).unwrap()
    }

    /// Everything the process wrote so far (its log is stdout; stderr after it).
    pub fn output(&self) -> String {
        let err = self.log.with_file_name("stderr.log");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
