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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use caxton_runtime::config::Config;
use caxton_testkit::api::{agent_wat, request};
use caxton_testkit::{Alertmanager, ApiClient, Prometheus};

type Inbox = Arc<Mutex<Vec<serde_json::Value>>>;

/// Alertmanager delivering every alert to `webhook`, grouped by name within a second.
async fn alertmanager(webhook: SocketAddr) -> Alertmanager {
    let config = format!(
        "route:\n  receiver: webhook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n- name: webhook\n  webhook_configs:\n  - url: http://{webhook}/alerts\n    send_resolved: false\n"
    );
    Alertmanager::start(&config).await.unwrap()
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
    (caxton_testkit::serve(app).await.unwrap(), inbox)
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

async fn firing(prom: &Prometheus, alertname: &str) -> bool {
    prom.has_series(&format!(
        r#"ALERTS{{alertname="{alertname}",alertstate="firing"}}"#
    ))
    .await
}

/// An agent module (wasm.rs ABI) that spins until the execution timeout stops it.
const SPINNING: &str = "(loop $spin (br $spin)) (i32.const 0)";

/// Waits for `alertname` to fire in Prometheus, then to reach the webhook.
async fn fires_and_is_delivered(
    prom: &Prometheus,
    am: &Alertmanager,
    inbox: &Inbox,
    alertname: &str,
) {
    let fired = poll(Duration::from_secs(60), || firing(prom, alertname)).await;
    assert!(fired, "{alertname} never fired: {}", prom.output());
    let got = poll(Duration::from_secs(60), || async {
        delivered(inbox, alertname)
    })
    .await;
    assert!(
        got,
        "webhook got {:?}\nalertmanager: {}",
        inbox.lock().unwrap(),
        am.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_service_down_alerts_reach_the_webhook() {
    let (hook, inbox) = webhook().await;
    let am = alertmanager(hook).await;

    let mut config = Config::for_tests();
    config.agents.mailbox_capacity = 5000;
    config.agents.execution_timeout = Duration::from_secs(3);
    // The timeout, not fuel, must end each execution.
    config.agents.fuel_per_message = u64::MAX / 4;
    // Shutdown drains the backlog this long before /metrics goes down.
    config.server.shutdown_timeout = Duration::from_secs(1);
    let server = caxton_runtime::start(config).await.unwrap();
    let api = ApiClient::new(format!("http://{}", server.api_addr()));

    let dir = std::env::temp_dir().join(format!("caxton-alerting-{}", std::process::id()));
    let rules = shortened_rules(&dir);
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['{}']\n\
         scrape_configs:\n- job_name: caxton-runtime\n  static_configs:\n  - targets: ['{}']\n",
        rules.display(),
        am.addr(),
        server.metrics_addr()
    );
    let prom = Prometheus::start_with_config(&prom_config, None, &[])
        .await
        .unwrap();
    let up = poll(Duration::from_secs(30), || {
        prom.has_series(r#"up{job="caxton-runtime"} == 1"#)
    })
    .await;
    assert!(
        up,
        "prometheus never scraped the runtime: {}",
        prom.output()
    );

    // The backlog.
    let id = api.create_wat(&agent_wat(SPINNING)).await.unwrap();
    let sends = (0..4).map(|_| {
        let (api, id) = (api.clone(), id.clone());
        tokio::spawn(async move {
            for n in 0..275 {
                let r = api
                    .send(&request(&id, serde_json::json!({"n": n})))
                    .await
                    .unwrap();
                assert_eq!(r.status.as_u16(), 202);
            }
        })
    });
    for s in sends {
        s.await.unwrap();
    }
    fires_and_is_delivered(&prom, &am, &inbox, "CaxtonMessageQueueBacklog").await;

    // Down: stop the runtime (bounded; the spinning executions are not waited for).
    let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
    fires_and_is_delivered(&prom, &am, &inbox, "CaxtonServiceDown").await;
    let _ = std::fs::remove_dir_all(&dir);
}
