//! The agent registry across restarts of the real `caxton` binary: a graceful restart, a
//! `kill -9` in the middle of a stream of creates, and a store that is not a database.

mod binary;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use binary::{Serving, free_port};

const DEADLINE: Duration = Duration::from_secs(40);

/// A data directory and the config of a runtime that keeps its registry there.
struct Node {
    dir: tempfile::TempDir,
    config: PathBuf,
    api_port: u16,
    log: PathBuf,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (api_port, metrics_port) = (free_port(), free_port());
        let log = dir.path().join("caxton.log");
        let config = dir.path().join("caxton.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\napi_address = \"127.0.0.1:{api_port}\"\n\
                 metrics_address = \"127.0.0.1:{metrics_port}\"\ndata_dir = \"{data}\"\n\n\
                 [observability.logging]\nlevel = \"info\"\nformat = \"json\"\noutput = \"{log}\"\n",
                data = dir.path().join("data").display(),
                log = log.display(),
            ),
        )
        .unwrap();
        Node {
            dir,
            config,
            api_port,
            log,
        }
    }

    async fn start(&self) -> Serving {
        Serving::start(&self.config, self.api_port, &[], DEADLINE).await
    }

    fn store(&self) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join(caxton_runtime::store::FILE_NAME)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sigterm(serving: &mut Serving) {
    let status = Command::new("kill")
        .args(["-TERM", &serving.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = serving.child.wait().unwrap();
    assert!(exit.success(), "caxton exited with {exit}");
}

async fn create(client: &reqwest::Client, api: &str, body: Value) -> reqwest::Response {
    client
        .post(format!("{api}/api/agents"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Every agent, page by page, in creation order.
async fn all_agents(client: &reqwest::Client, api: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page: Value = client
            .get(format!("{api}/api/agents?limit=1000&offset={}", all.len()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match page["agents"].as_array() {
            Some(agents) if !agents.is_empty() => all.extend(agents.iter().cloned()),
            _ => return all,
        }
    }
}

async fn ask(client: &reqwest::Client, api: &str, agent: &str) -> (u16, Value) {
    let r = client
        .post(format!("{api}/api/messages?wait=true"))
        .json(
            &json!({"performative": "REQUEST", "sender": "tester", "receiver": agent,
                      "content": {"q": 1}, "conversation_id": "c-1", "reply_with": "r-1"}),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The fields a restart must keep, as the API shows them.
fn kept(agent: &Value) -> Value {
    json!({
        "id": agent["id"], "agent_type": agent["agent_type"], "name": agent["name"],
        "config": agent["config"], "state": agent["state"], "created_at": agent["created_at"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_survive_a_restart_and_answer() {
    let node = Node::new();
    let client = reqwest::Client::new();
    let mut first = node.start().await;
    let mut created = Vec::new();
    for n in 0..49 {
        let r = create(
            &client,
            &first.api,
            json!({"agent_type": "test-agent", "name": format!("a-{n}"), "config": {"n": n}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        created.push(r.json::<Value>().await.unwrap());
    }
    // A custom module: stored once, by content, and compiled again on start.
    let wasm = wat::parse_str(caxton_runtime::builtin::ALL[0].wat()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
    let r = create(&client, &first.api, json!({"wasm_module": b64})).await;
    assert_eq!(r.status(), 200);
    created.push(r.json::<Value>().await.unwrap());
    let before: Vec<Value> = all_agents(&client, &first.api)
        .await
        .iter()
        .map(kept)
        .collect();
    assert_eq!(before.len(), 50);
    sigterm(&mut first);

    let second = node.start().await;
    let after: Vec<Value> = all_agents(&client, &second.api)
        .await
        .iter()
        .map(kept)
        .collect();
    assert_eq!(
        after, before,
        "the same agents, in the same order, with their fields"
    );
    let log = node.log();
    assert!(
        log.lines()
            .any(|l| l.contains("agent registry restored") && l.contains("\"agents\":50")),
        "{log}"
    );
    for agent in [&created[7], &created[49]] {
        let id = agent["id"].as_str().unwrap();
        let (status, reply) = ask(&client, &second.api, id).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["performative"], "INFORM", "{reply}");
        assert_eq!(reply["in_reply_to"], "r-1");
    }

    // A delete is kept too.
    let gone = created[3]["id"].as_str().unwrap();
    let r = client
        .delete(format!("{}/api/agents/{gone}", second.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(second);
    let third = node.start().await;
    let ids: HashSet<String> = all_agents(&client, &third.api)
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 49);
    assert!(!ids.contains(gone));
}

/// Creates agents from eight clients until killed; every create that was answered 200
/// exists after the restart, and every agent there is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_creates_loses_no_acknowledged_agent() {
    let node = Node::new();
    let mut first = node.start().await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, api, acked) = (client.clone(), first.api.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let sent = client
                    .post(format!("{api}/api/agents"))
                    .json(&json!({"agent_type": "echo", "name": format!("w{w}-{n}"),
                                  "config": {"writer": w, "n": n}}))
                    .send()
                    .await;
                let Ok(r) = sent else { break };
                if r.status() != 200 {
                    continue;
                }
                let Ok(body) = r.json::<Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(body["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    let from = Instant::now();
    while acked.lock().unwrap().len() < 300 && from.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "only {} creates answered", acked.len());

    let second = node.start().await;
    let restored = all_agents(&client, &second.api).await;
    let ids: HashSet<&str> = restored.iter().map(|a| a["id"].as_str().unwrap()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // At most the creates in flight when it died were written but not answered.
    assert!(
        restored.len() <= acked.len() + 8,
        "{} restored",
        restored.len()
    );
    for a in &restored {
        let name = a["name"].as_str().unwrap();
        let (w, n) = name[1..].split_once('-').unwrap();
        assert_eq!(a["agent_type"], "echo", "{a}");
        assert_eq!(a["state"], "Running", "{a}");
        assert_eq!(
            a["config"],
            json!({"writer": w.parse::<u64>().unwrap(),
                                       "n": n.parse::<u64>().unwrap()}),
            "{a}"
        );
    }
    let one = acked.last().unwrap();
    let (status, reply) = ask(&client, &second.api, one).await;
    assert_eq!(status, 200, "{reply}");
}

fn serve_output(config: &Path) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_caxton"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let waited = std::thread::spawn(move || child.wait_with_output().unwrap());
    let from = Instant::now();
    while !waited.is_finished() {
        if from.elapsed() > DEADLINE {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("caxton kept running on a corrupt store");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waited.join().unwrap()
}

#[test]
fn a_store_that_is_not_a_database_stops_the_start_naming_the_file() {
    let node = Node::new();
    std::fs::create_dir_all(node.store().parent().unwrap()).unwrap();
    std::fs::write(node.store(), b"this is not an SQLite file, it is a note").unwrap();
    let out = serve_output(&node.config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let store = node.store().display().to_string();
    assert!(
        stderr.contains(&format!("agent store {store} is unreadable or corrupt")),
        "{stderr}"
    );
    // Nothing was served: the file is as it was.
    assert_eq!(
        std::fs::read(node.store()).unwrap(),
        b"this is not an SQLite file, it is a note"
    );
}
