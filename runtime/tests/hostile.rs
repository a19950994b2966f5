//! The runtime under hostile but legitimate clients and agents (issue 17, items 1-4 and 7):
//! the shipped `caxton` binary over loopback HTTP, one test per item, each with a bound a
//! user would notice. Tests run one at a time: several of them saturate the CPUs on purpose.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caxton_testkit::{CaxtonConfig, CaxtonOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// One hostile scenario at a time: they burn CPU, and a neighbour's burn would be measured.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Caxton {
    caxton: caxton_testkit::Caxton,
    api: String,
    log: PathBuf,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Caxton {
    /// `caxton serve` with `server` and `agents` lines added to their tables; the log goes
    /// to a file of its own.
    async fn start(server: &str, agents: &str) -> Caxton {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("caxton.log");
        let config = CaxtonConfig::write(
            dir.path(),
            &format!(
                "{server}\n[agents]\n{agents}\n[observability.logging]\noutput = {log:?}\n",
                log = log.display().to_string(),
            ),
        )
        .unwrap();
        let options = CaxtonOptions {
            deadline: Duration::from_secs(20),
            ..CaxtonOptions::default()
        };
        let caxton = support::caxton(&config, options).await;
        Caxton {
            api: caxton.base().to_owned(),
            http: caxton.api().http().clone(),
            caxton,
            log,
            dir,
        }
    }

    async fn create(&self, body: Value) -> String {
        self.caxton.api().create(&body).await.unwrap()
    }

    async fn custom(&self, wat: &str) -> String {
        self.caxton.api().create_wat(wat).await.unwrap()
    }

    async fn post(&self, msg: &Value, wait: bool) -> reqwest::Response {
        let q = if wait { "?wait=true" } else { "" };
        self.http
            .post(format!("{}/api/messages{q}", self.api))
            .json(msg)
            .send()
            .await
            .unwrap()
    }

    /// Queues `n` REQUESTs for `receiver`, each accepted.
    async fn queue(&self, receiver: &str, n: usize) {
        let msg = json!({"performative": "REQUEST", "receiver": receiver});
        for _ in 0..n {
            assert_eq!(self.post(&msg, false).await.status(), StatusCode::ACCEPTED);
        }
    }

    /// Posts `n` REQUESTs for `receiver` into a mailbox of `capacity`: each is accepted or,
    /// when the first has not left the mailbox yet, refused with 429. Returns how many were
    /// accepted, at least `capacity`.
    async fn fill(&self, receiver: &str, n: usize, capacity: usize) -> usize {
        let msg = json!({"performative": "REQUEST", "receiver": receiver});
        let mut accepted = 0;
        for _ in 0..n {
            let status = self.post(&msg, false).await.status();
            assert!(
                [StatusCode::ACCEPTED, StatusCode::TOO_MANY_REQUESTS].contains(&status),
                "{status} for a REQUEST to {receiver}"
            );
            accepted += usize::from(status == StatusCode::ACCEPTED);
        }
        assert!(accepted >= capacity, "{accepted} of {n} accepted");
        accepted
    }

    async fn metrics(&self) -> String {
        self.caxton.metrics().await.unwrap()
    }

    fn pid(&self) -> u32 {
        self.caxton.pid()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The sum of every sample of `family` (exact name, any labels) whose line contains `having`.
fn metric_sum(text: &str, family: &str, having: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && l.contains(having)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The runtime's accounting, once nothing is executing: every accepted message was executed,
/// dropped with a reason, or is still queued.
fn assert_accounting_adds_up(text: &str) {
    let accepted = metric_sum(text, "caxton_messages_accepted_total", "");
    let executed = metric_sum(text, "caxton_message_processing_duration_seconds_count", "");
    let dropped = metric_sum(text, "caxton_messages_dropped_total", "");
    let queued = metric_sum(text, "caxton_message_queue_size", "");
    assert!(accepted > 0.0, "nothing accepted:\n{text}");
    assert_eq!(
        accepted,
        executed + dropped + queued,
        "accepted {accepted} != executed {executed} + dropped {dropped} + queued {queued}"
    );
}

/// A module that follows the ABI and runs `body` for every message.
fn agent_wat(imports: &str, data: &str, body: &str) -> String {
    format!(
        r#"(module {imports} (memory (export "memory") 1) {data}
             (func (export "alloc") (param i32) (result i32) (i32.const 8192))
             (func (export "handle_message") (param i32 i32) (result i32) {body} (i32.const 0)))"#
    )
}

/// Spins until the execution's deadline (with fuel to spare, `execution_timeout` ends it).
fn burner() -> String {
    agent_wat("", "", "(loop $l (br $l))")
}

const LOTS_OF_FUEL: &str = "fuel_per_message = 1000000000000";

async fn executions(c: &Caxton, agent: &str) -> f64 {
    let text = c.metrics().await;
    metric_sum(
        &text,
        "caxton_agent_executions_total",
        &format!("agent_id=\"{agent}\""),
    )
}

async fn wait_for_quiet(c: &Caxton, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = c.metrics().await;
        if metric_sum(&text, "caxton_message_queue_size", "") == 0.0 {
            // Queue empty; give the last execution time to be counted.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return c.metrics().await;
        }
        assert!(started.elapsed() < within, "queues never emptied:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 1: a self-addressed message (the receiver's own id as sender) used to start an
/// endless self-conversation. The hop limit ends an echo chain, a FAILURE is never
/// answered, and executions stop within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_addressed_messages_stop_within_a_second() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start("", "").await;
    let echo = c.create(json!({"agent_type": "echo"})).await;
    let test_agent = c.create(json!({"agent_type": "test-agent"})).await;
    for (agent, performative) in [(&echo, "INFORM"), (&test_agent, "REQUEST")] {
        let msg = json!({"performative": performative, "sender": agent, "receiver": agent,
                         "content": {"q": 1}});
        assert_eq!(c.post(&msg, false).await.status(), StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (echo_1s, test_1s) = (
        executions(&c, &echo).await,
        executions(&c, &test_agent).await,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(executions(&c, &echo).await, echo_1s, "echo still executing");
    assert_eq!(executions(&c, &test_agent).await, test_1s);
    // max_hops (16) INFORMs, then the hop-limit FAILURE, whose reply is dropped.
    assert!((16.0..=18.0).contains(&echo_1s), "echo ran {echo_1s} times");
    // REQUEST -> INFORM -> NOT_UNDERSTOOD, whose NOT_UNDERSTOOD reply is dropped.
    assert_eq!(test_1s, 3.0, "test-agent ran {test_1s} times");
    let text = wait_for_quiet(&c, Duration::from_secs(5)).await;
    assert!(metric_sum(&text, "caxton_message_errors_total", "kind=\"hop_limit\"") >= 1.0);
    assert!(
        metric_sum(
            &text,
            "caxton_message_errors_total",
            "kind=\"reply_to_failure\""
        ) >= 2.0
    );
    assert_accounting_adds_up(&text);

    // A client cannot restart the chain past the limit by forging the hop count.
    let forged = json!({"performative": "INFORM", "receiver": &echo,
                        "metadata": {"caxton-hops": "17"}});
    let r = c.post(&forged, false).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "hop limit");
}

/// Item 1: DELETE of an agent with a backlog of slow messages stops it within
/// `execution_timeout`: the backlog is dropped (counted, each sender told), the running
/// execution ends at its deadline, and the Draining agent takes no new message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_a_backlogged_agent_within_the_execution_timeout() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start(
        "",
        &format!("{LOTS_OF_FUEL}\nexecution_timeout = \"500ms\""),
    )
    .await;
    let slow = c.custom(&burner()).await;
    c.queue(&slow, 16).await;
    let msg = json!({"performative": "REQUEST", "receiver": &slow});
    // Let the first execution start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let del = c
        .http
        .delete(format!("{}/api/agents/{slow}", c.api))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    assert_eq!(del.json::<Value>().await.unwrap()["state"], "Draining");
    let r = c.post(&msg, false).await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "a Draining agent took a message"
    );
    loop {
        let got = c
            .http
            .get(format!("{}/api/agents/{slow}", c.api))
            .send()
            .await
            .unwrap();
        if got.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(500 + 300),
            "still {:?} after {:?}",
            got.json::<Value>().await.unwrap()["state"],
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = wait_for_quiet(&c, Duration::from_secs(5)).await;
    let dropped = metric_sum(
        &text,
        "caxton_messages_dropped_total",
        "reason=\"agent_deleted\"",
    );
    assert!((14.0..=15.0).contains(&dropped), "dropped {dropped}");
    assert_accounting_adds_up(&text);
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Item 2: the issue's fan-out, a 1 MiB message to 1024 receivers, grew RSS by ~900 MB: one
/// copy per receiver. Now receivers share one copy, mailboxes and the runtime count bytes,
/// and the peak RSS grows by less than 256 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_to_1024_receivers_grows_rss_by_under_256_mib() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start("max_body_bytes = 2097152", "").await;
    let mut agents = Vec::new();
    for _ in 0..1024 {
        agents.push(c.create(json!({"agent_type": "test-agent"})).await);
    }
    let base = vm_kib(c.pid(), "VmHWM:");
    let content = "x".repeat(1 << 20);
    let fan_out = json!({"performative": "REQUEST", "receiver": &agents, "content": &content});
    let r = c.post(&fan_out, false).await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    // The issue's own: the same agent 1024 times. Its mailbox's byte budget refuses it.
    let same = vec![&agents[0]; 1024];
    let r = c
        .post(
            &json!({"performative": "REQUEST", "receiver": same, "content": &content}),
            false,
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("mailbox_bytes"));
    // More receivers than the cap: refused outright.
    let too_many = vec![&agents[0]; 1025];
    let r = c
        .post(
            &json!({"performative": "INFORM", "receiver": too_many}),
            false,
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = wait_for_quiet(&c, Duration::from_secs(60)).await;
    let grown_mib = (vm_kib(c.pid(), "VmHWM:") - base) / 1024;
    assert!(grown_mib < 256, "peak RSS grew by {grown_mib} MiB");
    assert!(
        metric_sum(
            &text,
            "caxton_message_errors_total",
            "kind=\"mailbox_bytes\""
        ) >= 1.0
    );
    assert_eq!(metric_sum(&text, "caxton_message_bytes_in_flight", ""), 0.0);
    assert_accounting_adds_up(&text);
}

/// Item 3: `console_log` in a loop wrote 430-600 MB from one message, and a FAILURE storm
/// ~450 MB of identical warnings. Now each execution has a log budget, and warnings come
/// once a second with the count they left out: under 20 MiB of log for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_log_loop_and_a_failure_storm_write_under_20_mib_of_log() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start(
        "",
        &format!("{LOTS_OF_FUEL}\nmailbox_capacity = 2\nexecution_threads = 8"),
    )
    .await;
    // The storm's target first: a sender whose mailbox stays full (one message running for
    // a second, two queued), so every FAILURE sent to it is undeliverable.
    let full = c.custom(&burner()).await;
    // Whether the third fits depends on whether the first has started yet.
    c.fill(&full, 3, 2).await;
    // console_log of 4 KiB lines until the execution's deadline, as in the issue.
    let logger = c
        .custom(&agent_wat(
            r#"(import "caxton" "console_log" (func $log (param i32 i32)))"#,
            &format!(r#"(data (i32.const 0) "{}")"#, "y".repeat(4096)),
            "(loop $l (call $log (i32.const 0) (i32.const 4096)) (br $l))",
        ))
        .await;
    let logged = c.fill(&logger, 3, 2).await;
    // A trapping agent answers each request with a FAILURE to `full`, for 1.5 s.
    let trap = c.custom(&agent_wat("", "", "unreachable")).await;
    let storm = json!({"performative": "REQUEST", "sender": &full, "receiver": &trap});
    let (started, mut accepted) = (Instant::now(), 0);
    while started.elapsed() < Duration::from_millis(1500) {
        accepted += usize::from(c.post(&storm, false).await.status() == StatusCode::ACCEPTED);
    }
    assert!(accepted > 50, "only {accepted} storm messages accepted");
    wait_for_quiet(&c, Duration::from_secs(30)).await;
    let log = c.log_text();
    let mib = log.len() as f64 / f64::from(1 << 20);
    assert!(mib < 20.0, "{mib:.1} MiB of log");
    // 64 KiB of 4 KiB lines per execution.
    let kept = log.matches(&"y".repeat(4096)).count();
    assert!(kept <= logged * 16, "{kept} console_log lines kept");
    assert!(log.contains("console_log budget"), "no budget warning");
    let undeliverable = log.matches("undeliverable FAILURE dropped").count();
    assert!(
        (1..=10).contains(&undeliverable),
        "{undeliverable} undeliverable warnings"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("undeliverable") && !l.contains("\"suppressed\":0")),
        "no warning reports what it suppressed:\n{}",
        log.lines()
            .filter(|l| l.contains("undeliverable"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn p95(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 95).div_ceil(100) - 1]
}

/// Item 4: executions ran on the HTTP workers, so three agents burning their whole budget
/// pushed a well-behaved agent's `?wait=true` and `/health` past 3 s. Now they run on the
/// execution pool, round-robin: p95 of both stays under 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_requests_stay_under_250ms_while_three_agents_burn_their_budget() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start("", LOTS_OF_FUEL).await;
    let good = c.create(json!({"agent_type": "test-agent"})).await;
    for _ in 0..3 {
        let burner = c.custom(&burner()).await;
        c.queue(&burner, 16).await;
    }
    let ask = json!({"performative": "REQUEST", "receiver": &good, "content": {"q": 1}});
    let (mut asks, mut healths) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let t = Instant::now();
        let r = c.post(&ask, true).await;
        assert_eq!(r.status(), StatusCode::OK);
        asks.push(t.elapsed());
        let t = Instant::now();
        let r = c
            .http
            .get(format!("{}/health", c.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        healths.push(t.elapsed());
    }
    let text = c.metrics().await;
    assert!(
        metric_sum(&text, "caxton_message_queue_size", "") > 0.0,
        "the burners' backlog ran out during the measurement"
    );
    let (ask_p95, health_p95) = (p95(asks), p95(healths));
    assert!(
        ask_p95 < Duration::from_millis(250),
        "wait=true p95 {ask_p95:?}"
    );
    assert!(
        health_p95 < Duration::from_millis(250),
        "/health p95 {health_p95:?}"
    );
}

/// Item 7: SIGTERM with queued messages executed 3 of 1028 and said only `shutting down`.
/// Now the API stops taking connections, queues drain for `shutdown_timeout`, and what is
/// left is logged and counted; a waiting client is answered, /metrics answers until the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_every_queued_message_it_did_not_execute() {
    let _one = SERIAL.lock().await;
    let c = Caxton::start(
        "shutdown_timeout = \"1s\"",
        &format!("{LOTS_OF_FUEL}\nexecution_timeout = \"400ms\""),
    )
    .await;
    let slow = c.custom(&burner()).await;
    let quick = c.create(json!({"agent_type": "test-agent"})).await;
    for _ in 0..20 {
        let msg = json!({"performative": "REQUEST", "receiver": &slow});
        assert_eq!(c.post(&msg, false).await.status(), StatusCode::ACCEPTED);
    }
    let quick_msg = json!({"performative": "REQUEST", "receiver": &quick});
    assert_eq!(
        c.post(&quick_msg, false).await.status(),
        StatusCode::ACCEPTED
    );
    // A client waiting for a reply that will never come: its message is last in line.
    let waiting = {
        let (http, api, slow) = (c.http.clone(), c.api.clone(), slow.clone());
        tokio::spawn(async move {
            let msg = json!({"performative": "REQUEST", "receiver": slow});
            let r = http
                .post(format!("{api}/api/messages?wait=true&timeout=30s"))
                .json(&msg)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    // An open request keeps the API's connections, and so /metrics, up while we look.
    let api_addr = c.api.trim_start_matches("http://").to_owned();
    let mut held = tokio::net::TcpStream::connect(&api_addr).await.unwrap();
    held.write_all(
        b"POST /api/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    while metric_sum(&c.metrics().await, "caxton_messages_accepted_total", "") < 22.0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the waiting client's message never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = Instant::now();
    c.caxton.sigterm().unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "shutting down");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(&api_addr).await.is_err(),
        "the API still takes connections"
    );
    let after = c.metrics().await;
    let dropped = metric_sum(
        &after,
        "caxton_messages_dropped_total",
        "reason=\"shutdown\"",
    );
    let executed = metric_sum(&after, "caxton_agent_executions_total", "");
    assert!(dropped >= 15.0, "only {dropped} dropped");
    assert!(
        executed >= 2.0,
        "{executed} executed: the quick one and a slow one"
    );
    assert_accounting_adds_up(&after);
    // The line follows the count by a moment.
    let line = format!("shutdown: {dropped} accepted messages were not executed");
    let started = Instant::now();
    while !c.log_text().contains(&line) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no `{line}` in\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop(held);
    let mut caxton = c.caxton;
    let started = Instant::now();
    loop {
        if let Some(exit) = caxton.try_wait().unwrap() {
            assert!(exit.success(), "exit {exit:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c.dir);
}
