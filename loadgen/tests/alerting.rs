//! The alerting path end to end with real servers: a real Prometheus loads a test copy of
//! k8s/caxton_rules.yml (every `for:` shortened to 1s, evaluation every 1s; expressions
//! unchanged) and scrapes a running runtime; a real Alertmanager (Debian's
//! prometheus-alertmanager) delivers to a webhook served by this test.
//!
//! The backlog: one agent whose module spins until its execution timeout (3 s per message)
//! and 1100 messages sent without waiting, into a mailbox of 5000: the real rule's
//! `caxton_message_queue_size > 1000` then holds for minutes.
#![cfg(feature = "embedded")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use caxton_reports::prometheus_server::{PrometheusServer, free_port};
use caxton_runtime::config::Config;

type Inbox = Arc<Mutex<Vec<serde_json::Value>>>;

/// Alertmanager on a free loopback port, killed on drop.
struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Alertmanager {
    async fn start(webhook: SocketAddr) -> Alertmanager {
        let dir = std::env::temp_dir().join(format!("caxton-am-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "route:\n  receiver: webhook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n- name: webhook\n  webhook_configs:\n  - url: http://{webhook}/alerts\n    send_resolved: false\n"
        );
        std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: a single instance on loopback.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus-alertmanager is installed (ci/install-tools)");
        let am = Alertmanager { child, addr, dir };
        let ready = format!("http://{addr}/-/ready");
        let ok = poll(Duration::from_secs(30), || async {
            reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ok, "alertmanager not ready on {addr}: {}", am.log());
        am
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn webhook() -> (SocketAddr, Inbox) {
    let inbox: Inbox = Arc::default();
    let app =
        Router::new()
            .route(
                "/alerts",
                post(
                    |State(inbox): State<Inbox>,
                     axum::Json(body): axum::Json<serde_json::Value>| async move {
                        inbox.lock().unwrap().push(body);
                    },
                ),
            )
            .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, inbox)
}

fn delivered(inbox: &Inbox, alertname: &str) -> bool {
    inbox.lock().unwrap().iter().any(|n| {
        n["alerts"].as_array().is_some_and(|alerts| {
            alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == alertname && a["status"] == "firing")
        })
    })
}

/// k8s/caxton_rules.yml with every `for:` at 1s, written to `dir`.
fn shortened_rules(dir: &Path) -> PathBuf {
    let rules = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s/caxton_rules.yml"),
    )
    .unwrap();
    let copy: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 1s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(copy.contains("for: 1s") && !copy.contains("for: 5m"));
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("caxton_rules.yml");
    std::fs::write(&path, copy).unwrap();
    path
}

async fn firing(prom: &PrometheusServer, alertname: &str) -> bool {
    let q = format!(r#"ALERTS{{alertname="{alertname}",alertstate="firing"}}"#);
    prom.query(&q)
        .await
        .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
}

/// An agent module (wasm.rs ABI) that spins until the execution timeout stops it.
fn spinning_module() -> String {
    use base64::Engine as _;
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "handle_message") (param i32 i32) (result i32)
          (loop $spin (br $spin))
          (i32.const 0)))"#;
    base64::engine::general_purpose::STANDARD.encode(wat::parse_str(wat).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_service_down_alerts_reach_the_webhook() {
    let (hook, inbox) = webhook().await;
    let am = Alertmanager::start(hook).await;

    let mut config = Config::for_tests();
    config.agents.mailbox_capacity = 5000;
    config.agents.execution_timeout = Duration::from_secs(3);
    // The timeout, not fuel, must end each execution.
    config.agents.fuel_per_message = u64::MAX / 4;
    // Shutdown drains the backlog this long before /metrics goes down.
    config.server.shutdown_timeout = Duration::from_secs(1);
    let server = caxton_runtime::http::server::start(config).await.unwrap();
    let api = format!("http://{}", server.api_addr());

    let dir = std::env::temp_dir().join(format!("caxton-alerting-{}", std::process::id()));
    let rules = shortened_rules(&dir);
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['{}']\n\
         scrape_configs:\n- job_name: caxton-runtime\n  static_configs:\n  - targets: ['{}']\n",
        rules.display(),
        am.addr,
        server.metrics_addr()
    );
    let prom = PrometheusServer::start_with_config(&prom_config, None, &[])
        .await
        .unwrap();
    let up = poll(Duration::from_secs(30), || async {
        prom.query(r#"up{job="caxton-runtime"} == 1"#)
            .await
            .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    assert!(up, "prometheus never scraped the runtime: {}", prom.log());

    // The backlog.
    let client = reqwest::Client::new();
    let agent: serde_json::Value = client
        .post(format!("{api}/api/agents"))
        .json(&serde_json::json!({ "wasm_module": spinning_module() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = agent["id"].as_str().expect("agent created").to_string();
    let sends = (0..4).map(|_| {
        let (client, api, id) = (client.clone(), api.clone(), id.clone());
        tokio::spawn(async move {
            for n in 0..275 {
                let m = serde_json::json!({"performative":"REQUEST","sender":"t","receiver":id,"content":{"n":n}});
                let r = client.post(format!("{api}/api/messages")).json(&m).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 202);
            }
        })
    });
    for s in sends {
        s.await.unwrap();
    }
    let backlog = poll(Duration::from_secs(60), || {
        firing(&prom, "CaxtonMessageQueueBacklog")
    })
    .await;
    assert!(
        backlog,
        "CaxtonMessageQueueBacklog never fired: {}",
        prom.log()
    );
    let got = poll(Duration::from_secs(60), || async {
        delivered(&inbox, "CaxtonMessageQueueBacklog")
    })
    .await;
    assert!(
        got,
        "webhook got {:?}\nalertmanager: {}",
        inbox.lock().unwrap(),
        am.log()
    );

    // Down: stop the runtime (bounded; the spinning executions are not waited for).
    let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
    let down = poll(Duration::from_secs(60), || {
        firing(&prom, "CaxtonServiceDown")
    })
    .await;
    assert!(down, "CaxtonServiceDown never fired: {}", prom.log());
    let got = poll(Duration::from_secs(60), || async {
        delivered(&inbox, "CaxtonServiceDown")
    })
    .await;
    assert!(
        got,
        "webhook got {:?}\nalertmanager: {}",
        inbox.lock().unwrap(),
        am.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
