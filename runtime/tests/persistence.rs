//! The agent registry across restarts of the real `caxton` binary: a graceful restart, a
//! `kill -9` in the middle of a stream of creates, and a store that is not a database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_testkit::{ApiClient, Caxton, CaxtonConfig, CaxtonOptions, Error};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(40);

fn caxton_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_caxton"))
}

/// A data directory and the config of a runtime that keeps its registry there.
struct Node {
    dir: tempfile::TempDir,
    config: CaxtonConfig,
    log: PathBuf,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("caxton.log");
        let config = CaxtonConfig::write(
            dir.path(),
            &format!(
                "\n[observability.logging]\nlevel = \"info\"\nformat = \"json\"\noutput = \"{log}\"\n",
                log = log.display(),
            ),
        )
        .unwrap();
        Node { dir, config, log }
    }

    async fn try_start(&self) -> Result<Caxton, Error> {
        let options = CaxtonOptions {
            deadline: DEADLINE,
            ..CaxtonOptions::default()
        };
        Caxton::start_with(caxton_binary(), &self.config, options).await
    }

    async fn start(&self) -> Caxton {
        self.try_start().await.unwrap()
    }

    fn store(&self) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join(caxton_runtime::internals::STORE_FILE_NAME)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sigterm(caxton: &mut Caxton) {
    let exit = caxton.terminate().unwrap();
    assert!(exit.success(), "caxton exited with {exit}");
}

async fn ask(api: &ApiClient, agent: &str) -> (u16, Value) {
    let r = api
        .ask(
            &json!({"performative": "REQUEST", "sender": "tester", "receiver": agent,
                      "content": {"q": 1}, "conversation_id": "c-1", "reply_with": "r-1"}),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.body)
}

/// The fields a restart must keep, as the API shows them.
fn kept(agent: &Value) -> Value {
    json!({
        "id": agent["id"], "agent_type": agent["agent_type"], "name": agent["name"],
        "config": agent["config"], "state": agent["state"], "created_at": agent["created_at"],
    })
}

/// Every agent's kept fields, in creation order.
async fn kept_fields(api: &ApiClient) -> Vec<Value> {
    api.all_agents().await.unwrap().iter().map(kept).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_survive_a_restart_and_answer() {
    let node = Node::new();
    let mut first = node.start().await;
    let mut created = Vec::new();
    for n in 0..49 {
        let r = first
            .api()
            .create_agent(
                &json!({"agent_type": "test-agent", "name": format!("a-{n}"), "config": {"n": n}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        created.push(r.body);
    }
    // A custom module: stored once, by content, and compiled again on start.
    let wasm =
        caxton_testkit::api::module_b64(&caxton_runtime::internals::builtin::ALL[0].wat()).unwrap();
    let r = first
        .api()
        .create_agent(&json!({"wasm_module": wasm}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    created.push(r.body);
    let before = kept_fields(first.api()).await;
    assert_eq!(before.len(), 50);
    sigterm(&mut first);

    let second = node.start().await;
    let after = kept_fields(second.api()).await;
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
        let (status, reply) = ask(second.api(), id).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["performative"], "INFORM", "{reply}");
        assert_eq!(reply["in_reply_to"], "r-1");
    }

    // A delete is kept too.
    let gone = created[3]["id"].as_str().unwrap();
    let r = second.api().delete(gone).await.unwrap();
    assert_eq!(r.status, 200);
    drop(second);
    let third = node.start().await;
    let ids: HashSet<String> = third
        .api()
        .all_agents()
        .await
        .unwrap()
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
    let mut writers = Vec::new();
    for w in 0..8 {
        let (api, acked) = (first.api().clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let sent = api
                    .create_agent(&json!({"agent_type": "echo", "name": format!("w{w}-{n}"),
                                          "config": {"writer": w, "n": n}}))
                    .await;
                // A create cut off by the kill, in the request or in its answer's body.
                let Ok(r) = sent else { break };
                if r.status != 200 {
                    continue;
                }
                let Some(id) = r.id() else { break };
                acked.lock().unwrap().push(id.to_owned());
            }
        }));
    }
    let from = Instant::now();
    while acked.lock().unwrap().len() < 300 && from.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "only {} creates answered", acked.len());

    let second = node.start().await;
    let restored = second.api().all_agents().await.unwrap();
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
    let (status, reply) = ask(second.api(), one).await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn a_store_that_is_not_a_database_stops_the_start_naming_the_file() {
    let node = Node::new();
    std::fs::create_dir_all(node.store().parent().unwrap()).unwrap();
    std::fs::write(node.store(), b"this is not an SQLite file, it is a note").unwrap();
    let started = Instant::now();
    let Err(Error::Exited { status, output, .. }) = node.try_start().await else {
        panic!("caxton kept running on a corrupt store");
    };
    // The kit saw the exit, not its deadline.
    assert!(started.elapsed() < DEADLINE);
    assert!(!status.success());
    let store = node.store().display().to_string();
    assert!(
        output.contains(&format!("agent store {store} is unreadable or corrupt")),
        "{output}"
    );
    // Nothing was served: the file is as it was.
    assert_eq!(
        std::fs::read(node.store()).unwrap(),
        b"this is not an SQLite file, it is a note"
    );
}

/// `/ready`'s agent count.
async fn ready_agents(api: &ApiClient) -> u64 {
    let body: Value = api
        .http()
        .get(format!("{}/ready", api.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["agents"].as_u64().unwrap()
}

/// Another writer holds the database's write lock (SQLite `BEGIN IMMEDIATE` from this
/// process): the runtime's delete cannot be made durable. The agent stays, 503; once the
/// lock is gone the same delete succeeds and stays done across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_the_store_cannot_record_leaves_the_agent_and_answers_503() {
    let node = Node::new();
    let first = node.start().await;
    let id = first.api().create_type("echo").await.unwrap();
    assert_eq!(ready_agents(first.api()).await, 1);

    let blocker = rusqlite::Connection::open(node.store()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = first.api().delete(&id).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"], "store unavailable", "{}", r.body);
    let got = first
        .api()
        .http()
        .get(format!("{}/api/agents/{id}", first.api().base()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(ready_agents(first.api()).await, 1);
    let (status, reply) = ask(first.api(), &id).await;
    assert_eq!(status, 200, "the agent still answers: {reply}");

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let r = first.api().delete(&id).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ready_agents(first.api()).await, 0);
    drop(first);
    let second = node.start().await;
    assert!(second.api().all_agents().await.unwrap().is_empty());
}

/// A second runtime on the same data_dir exits, naming the directory and the first one's pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runtime_on_the_same_data_dir_exits_naming_it_and_the_holder() {
    let node = Node::new();
    let first = node.start().await;
    let other = tempfile::tempdir().unwrap();
    let config = CaxtonConfig::write(other.path(), "").unwrap();
    let data = node.dir.path().join("data");
    let text = std::fs::read_to_string(&config.path).unwrap();
    let text = text.replace(
        &format!("{:?}", other.path().join("data").display().to_string()),
        &format!("{:?}", data.display().to_string()),
    );
    assert!(text.contains(&data.display().to_string()), "{text}");
    std::fs::write(&config.path, text).unwrap();
    let options = CaxtonOptions {
        deadline: DEADLINE,
        ..CaxtonOptions::default()
    };
    let Err(Error::Exited { status, output, .. }) =
        Caxton::start_with(caxton_binary(), &config, options).await
    else {
        panic!("a second caxton started on {}", data.display());
    };
    assert!(!status.success());
    assert!(
        output.contains(&format!("data_dir {} is in use", data.display()))
            && output.contains(&format!("pid {}", first.pid())),
        "{output}"
    );
    // The first one is unaffected.
    assert_eq!(ready_agents(first.api()).await, 0);
}

/// The database file emptied while its write-ahead log holds 50 agents: the start stops,
/// naming both, and neither file is changed (the log is not discarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_with_a_wal_stops_the_start_and_keeps_the_wal() {
    let node = Node::new();
    let mut first = node.start().await;
    for n in 0..50 {
        first
            .api()
            .create(&json!({"agent_type": "echo", "name": format!("a-{n}")}))
            .await
            .unwrap();
    }
    // kill -9: no checkpoint, the agents are in the WAL.
    first.kill().unwrap();
    let mut wal = node.store().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let logged = std::fs::read(&wal).unwrap();
    assert!(!logged.is_empty());
    std::fs::File::create(node.store()).unwrap(); // truncated to 0 bytes

    let Err(Error::Exited { status, output, .. }) = node.try_start().await else {
        panic!("caxton started on an empty database with a WAL");
    };
    assert!(!status.success());
    let store = node.store().display().to_string();
    assert!(
        output.contains(&format!("agent store {store} is unreadable or corrupt"))
            && output.contains(&format!("write-ahead log {}", wal.display())),
        "{output}"
    );
    assert_eq!(std::fs::read(&wal).unwrap(), logged, "the WAL was changed");
    assert_eq!(std::fs::metadata(node.store()).unwrap().len(), 0);
}

/// Rows that cannot be restored stop the start naming the row; the file is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_cannot_be_restored_stop_the_start_naming_the_row() {
    for (column, value, expected) in [
        ("created_at_ms", "-1", "created_at_ms -1 is out of range"),
        (
            "created_at_ms",
            "9223372036854775807",
            "created_at_ms 9223372036854775807 is out of range",
        ),
        ("config", "'{not json'", "config is not valid JSON"),
    ] {
        let node = Node::new();
        let mut first = node.start().await;
        let id = first.api().create_type("echo").await.unwrap();
        sigterm(&mut first);
        {
            let db = rusqlite::Connection::open(node.store()).unwrap();
            db.execute(
                &format!("UPDATE agents SET {column} = {value} WHERE id = ?1"),
                [&id],
            )
            .unwrap();
        }
        let Err(Error::Exited { status, output, .. }) = node.try_start().await else {
            panic!("caxton started with {column} = {value}");
        };
        assert!(!status.success());
        assert!(
            output.contains(&format!("agent row `{id}`: {expected}")),
            "{column} = {value}: {output}"
        );
        let db = rusqlite::Connection::open(node.store()).unwrap();
        let kept: String = db
            .query_row(
                &format!("SELECT CAST({column} AS TEXT) FROM agents WHERE id = ?1"),
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, value.trim_matches('\''));
    }
}

/// A tmpfs mounted for one test, unmounted (lazily, in case a child still holds a file on
/// it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `at`; `Err` says why not
    /// (not root, no `mount`, no permission in this container).
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `file` until the file system refuses with ENOSPC: every block is used,
/// so the next write anywhere on it fails. Removing `file` frees the disk again.
fn fill(file: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let err = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // A partial page is not left free: tmpfs allocates whole pages, and the last write
    // already took the last one.
    assert!(f.write_all(&[0u8; 4096]).is_err(), "the disk is full");
}

/// Issue 25: on a real full disk (a small tmpfs as data_dir) a create answers 503 and keeps
/// nothing, a delete answers 503 and the agent stays (served, listed, counted, and there
/// after a restart), a start on the full disk says "the disk is full", not "corrupt", and
/// nothing panics. Needs root for the mount; skips with a message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_refuses_creates_and_deletes_with_503_and_loses_nothing() {
    let node = Node::new();
    let data = node.dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping the full-disk test: {why}");
            return;
        }
    };
    let mut first = node.start().await;
    let kept_id = first.api().create_type("echo").await.unwrap();
    let before = kept_fields(first.api()).await;
    assert_eq!(before.len(), 1);

    let filler = data.join("filler");
    fill(&filler);

    let r = first
        .api()
        .create_agent(&json!({"agent_type": "echo", "name": "no-room"}))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"], "store unavailable", "{}", r.body);
    assert_eq!(
        kept_fields(first.api()).await,
        before,
        "the refused create left nothing"
    );

    let r = first.api().delete(&kept_id).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"], "store unavailable", "{}", r.body);
    assert_eq!(
        kept_fields(first.api()).await,
        before,
        "the agent is still listed"
    );
    assert_eq!(ready_agents(first.api()).await, 1);
    let (status, reply) = ask(first.api(), &kept_id).await;
    assert_eq!(status, 200, "the agent still answers: {reply}");
    first.terminate().unwrap();
    let output = first.output();
    assert!(!output.contains("panicked"), "{output}");

    // A start on the full disk stops and says so; the store is not called corrupt.
    let start_output = match node.try_start().await {
        Err(Error::Exited { status, output, .. }) => {
            assert!(!status.success());
            output
        }
        Ok(running) => panic!("caxton started on a full disk: {}", running.output()),
        Err(e) => panic!("{e}"),
    };
    let store = node.store().display().to_string();
    assert!(
        start_output.contains(&format!("agent store {store}: the disk is full")),
        "{start_output}"
    );
    assert!(!start_output.contains("corrupt"), "{start_output}");
    assert!(!start_output.contains("panicked"), "{start_output}");

    // Room again: the agent is there, alone, and answers; its delete now goes through.
    std::fs::remove_file(&filler).unwrap();
    let second = node.start().await;
    assert_eq!(kept_fields(second.api()).await, before);
    let (status, reply) = ask(second.api(), &kept_id).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(second.api().delete(&kept_id).await.unwrap().status, 200);
    assert!(!node.log().contains("panicked"), "{}", node.log());
}
