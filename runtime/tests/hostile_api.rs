//! The API against a hostile but legitimate client (issue 17, items 5, 6, 8, 9 and 10): real
//! HTTP over loopback, each test bounded by what a user would notice.

use std::time::{Duration, Instant};

use caxton_runtime::internals::ALL_METRIC_NAMES;
use caxton_runtime::internals::MAX_NAME_BYTES;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{Harness, Process};

/// A valid custom agent; `n` makes each module's bytes (and digest) different.
fn module(n: usize) -> String {
    let wat = format!(
        r#"(module (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) (i32.const 1024))
             (func (export "handle_message") (param i32 i32) (result i32) (i32.const 0))
             (func (export "f{n}") (result i32) (i32.const {n})))"#
    );
    caxton_testkit::api::module_b64(&wat).unwrap()
}

async fn post_form(http: &reqwest::Client, base: &str, body: &str) -> (StatusCode, Value) {
    let r = http
        .post(format!("{base}/api/agents"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Item 10: the body k6 sends for the Caxton Monitoring and Observability Guide's script creates
/// the agent, and a form gets the same errors as the equivalent JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_k6_form_body_creates_an_agent_with_the_same_validation_as_json() {
    let h = Harness::start(|_| {}).await;
    let (status, body) = post_form(
        &h.http,
        &h.base,
        "agent_type=test-agent&config=map%5Btest%3Atrue%5D",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["agent_type"], "test-agent");
    assert_eq!(body["state"], "Running");
    assert_eq!(body["config"], "map[test:true]", "kept as the text k6 sent");

    let (status, body) = post_form(&h.http, &h.base, "agent_type=echo&colour=red").await;
    let (json_status, json_body) = h
        .create(json!({"agent_type": "echo", "colour": "red"}))
        .await;
    assert_eq!(
        (status, json_status),
        (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST)
    );
    for b in [&body, &json_body] {
        assert!(b["detail"].as_str().unwrap().contains("colour"), "{b}");
    }
    let (status, body) = post_form(&h.http, &h.base, "agent_type=no-such-type").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    h.server.shutdown().await;
}

/// Item 5: an upload refused by `max_agents` is refused before compiling and claims no name;
/// the module cache stays within its bound after agents of many types come and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_claim_no_name_and_the_module_cache_stays_bounded() {
    let cap = 64 * 1024;
    let h = Harness::start(|c| {
        c.server.max_agents = 1;
        c.agents.module_cache_bytes = cap;
    })
    .await;
    let first = h.agent("echo").await;
    let r = h
        .post(
            "/api/agents",
            &json!({"agent_type": "mine", "wasm_module": module(0)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        h.server.runtime().module_cache_usage().0,
        0,
        "nothing was compiled for a refused upload"
    );
    h.delete(&first).await;
    // The real owner of the name uploads a different module: not 409.
    let (status, body) = h
        .create(json!({"agent_type": "mine", "wasm_module": module(1)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    h.delete(&id).await;

    for n in 2..40 {
        let (status, body) = h.create(json!({"wasm_module": module(n)})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = body["id"].as_str().unwrap();
        h.delete(id).await;
        let (_, bytes) = h.server.runtime().module_cache_usage();
        assert!(bytes <= cap, "cache {bytes} bytes > bound {cap}");
    }
    let (entries, _) = h.server.runtime().module_cache_usage();
    assert!(entries < 38, "unused types were evicted: {entries} cached");
    h.server.shutdown().await;
}

/// Item 5, in a real process: 300 distinct uploads refused by `max_agents` grow its RSS by
/// less than 8 MiB (compiling them grew it by ~25 MB before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_flat_under_refused_uploads() {
    let p = Process::start("max_agents = 1\n", None).await;
    let api = p.caxton.api();
    let create = |body: Value| async move { api.create_agent(&body).await.unwrap() };
    assert_eq!(
        create(json!({"agent_type": "echo"})).await.status,
        StatusCode::OK
    );
    // Warm the allocator and the connection before the baseline.
    for n in 0..20 {
        create(json!({"wasm_module": module(n)})).await;
    }
    let before = p.rss();
    for n in 20..320 {
        let r = create(json!({"wasm_module": module(n)})).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let grown = p.rss().saturating_sub(before);
    assert!(
        grown < 8 << 20,
        "RSS grew {grown} bytes over 300 refused uploads"
    );
}

/// Item 6: under a 256-file limit, 300 idle sockets do not stop `/health` answering, a
/// connection that drips its headers is closed, and the log says the limit was reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dripping_connections_cannot_starve_health() {
    let p = Process::start(
        "header_read_timeout = \"1s\"\nidle_timeout = \"1s\"\n",
        Some(256),
    )
    .await;
    let addr = p.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut drip = tokio::net::TcpStream::connect(&addr).await.unwrap();
    drip.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{}/health", p.base))
        .send()
        .await
        .expect("/health answers");
    assert_eq!(health.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "/health took {waited:?}");
    // The dripping client is cut off, whatever it still sends.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if drip.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), drip.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a dripping connection stayed open");
    let log = p.output();
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(
        log.contains("lowered to stay below the open-files limit"),
        "{log}"
    );
    drop(idle);
}

/// Item 8: the smaller defects, each as the client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_says_what_was_wrong() {
    let h = Harness::start(|c| c.server.max_agents = 3).await;
    let json_error = |r: reqwest::Response| async move {
        let status = r.status();
        assert_eq!(r.headers()["content-type"], "application/json", "{status}");
        (status, r.json::<Value>().await.unwrap())
    };
    // Names that would become labels are bounded.
    let long = "a".repeat(MAX_NAME_BYTES + 1);
    let (status, body) = h.create(json!({"agent_type": long})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = h.create(json!({"agent_type": "echo", "name": long})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // 405, an undecodable path, /ws without an upgrade, 404.
    let r = h
        .http
        .put(format!("{}/api/agents", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let r = h
        .http
        .get(format!("{}/api/agents/%FF%FE", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await.0, StatusCode::BAD_REQUEST);
    let r = h.http.get(format!("{}/ws", h.base)).send().await.unwrap();
    let (status, body) = json_error(r).await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        body["detail"].as_str().unwrap().contains("WebSocket"),
        "{body}"
    );
    let r = h.http.get(format!("{}/nope", h.base)).send().await.unwrap();
    assert_eq!(json_error(r).await.0, StatusCode::NOT_FOUND);
    // Binary garbage is told what was expected.
    let r = h
        .http
        .post(format!("{}/api/messages", h.base))
        .body(vec![0x7b, 0xff, 0x00, 0x9c])
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"),
        "{body}"
    );
    // A wait has an upper bound.
    let id = h.agent("test-agent").await;
    let msg = json!({"performative": "REQUEST", "receiver": id, "content": 1});
    let r = h
        .http
        .post(format!(
            "{}/api/messages?wait=true&timeout=1000000years",
            h.base
        ))
        .json(&msg)
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    // Pages continue from a cursor; the 429 for max_agents says when to retry.
    h.agent("echo").await;
    h.agent("echo").await;
    let page = |q: String| {
        let url = format!("{}/api/agents?{q}", h.base);
        let http = h.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = page("limit=2".into()).await;
    assert_eq!(first["agents"].as_array().unwrap().len(), 2);
    let rest = page(format!("limit=2&after={}", first["next"])).await;
    assert_eq!(rest["agents"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next"], Value::Null);
    let r = h.post("/api/agents", &json!({"agent_type": "echo"})).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    h.server.shutdown().await;
}

/// Item 8: a WebSocket client that does not read is dropped behind, not buffered for, and
/// is told how many events it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_does_not_read_is_told_what_it_missed() {
    // Room in the mailbox for every message, by count and by bytes: the events are the
    // point here, not the mailbox budgets.
    let h = Harness::start(|c| {
        c.agents.mailbox_capacity = 100_000;
        c.agents.mailbox_bytes = 1 << 30;
    })
    .await;
    let id = h.agent("echo").await;
    let url = format!("ws://{}/ws", h.server.api_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Just under the events' content bound, so the events themselves are large.
    let big = "x".repeat(caxton_runtime::internals::MAX_EVENT_CONTENT_BYTES - 1024);
    for _ in 0..3000 {
        let msg = json!({"performative": "INFORM", "receiver": id, "content": big});
        let r = h.post("/api/messages", &msg).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let mut skipped = 0u64;
    let mut largest = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while skipped == 0 && Instant::now() < deadline {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("events keep coming")
            .unwrap()
            .unwrap();
        let text = frame.to_text().unwrap();
        largest = largest.max(text.len());
        let ev: Value = serde_json::from_str(text).unwrap();
        if ev["type"] == "lagged" {
            skipped = ev["skipped"].as_u64().unwrap();
        }
    }
    assert!(skipped > 0, "the client was never told it lagged");
    assert!(largest < 32 * 1024, "events are bounded: {largest}");
    h.server.shutdown().await;
}

/// Item 9: a deleted agent's executions are on the next scrape, and once every agent is
/// gone all of the guide's 19 names are still on /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_agents_loses_no_counts_and_no_names() {
    let h = Harness::start(|_| {}).await;
    let id = h.agent("test-agent").await;
    for _ in 0..3 {
        let (status, _) = h.ask(&id, "REQUEST").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(h.delete(&id).await, StatusCode::OK);
    let last = h.metrics().await;
    let series = format!(
        r#"caxton_agent_executions_total{{agent_id="{id}",agent_type="test-agent",status="ok"}} 3"#
    );
    assert!(
        last.contains(&series),
        "the deleted agent's count is read once more: {last}"
    );
    let after = h.metrics().await;
    assert!(!after.contains(&id), "then its series go: {after}");
    for name in ALL_METRIC_NAMES {
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{name} vanished with no agents"
        );
    }
    h.server.shutdown().await;
}

/// Item 8: `caxton check-config` prints the configuration without its secrets.
#[test]
fn check_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("caxton.toml");
    std::fs::write(
        &cfg,
        "[observability]\notlp_endpoint = \"https://user:hunter2@collector:4318\"\n\
         [observability.otlp_headers]\napi-key = \"s3cret-token\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caxton"))
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("api-key"), "{text}");
    assert!(
        !text.contains("s3cret-token") && !text.contains("hunter2"),
        "{text}"
    );
}

/// Waits until the API listener has no connection open, failing with `what` after `bound`.
async fn connections_close(p: &Process, bound: Duration, what: &str) {
    let started = Instant::now();
    while !p
        .caxton
        .metrics()
        .await
        .unwrap()
        .contains("caxton_http_active_connections 0")
    {
        assert!(started.elapsed() < bound, "{what}");
        tokio::task::yield_now().await;
    }
}

/// Issue 25, item 2: `max_connections` clients that send their headers and one byte of a
/// 100-byte body hold every slot; `/health` still answers within a second, a non-probe
/// request on the reserved connections is refused, and each slow client gets 408 once
/// `server.body_read_timeout` has passed, then its connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_cannot_starve_health() {
    const SLOTS: usize = 8;
    // Long enough that a CI machine busy with other tests accepts every slow client, and
    // checks /health while they hold the slots, before the first 408.
    let timeout = Duration::from_secs(5);
    let p = Process::start(
        &format!("max_connections = {SLOTS}\nbody_read_timeout = \"5s\"\n"),
        None,
    )
    .await;
    let addr = p.base.trim_start_matches("http://").to_owned();
    // The readiness probe's connection may still hold a slot: a slow client would then land
    // on a probe-only connection and be refused rather than timed out.
    connections_close(&p, timeout, "the readiness probe's connection stayed open").await;
    let sent = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOTS {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /api/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    // Every slot is taken once the gauge says so (the /ready probe's connection has closed).
    let open = format!("caxton_http_active_connections {SLOTS}");
    let waiting = Instant::now();
    while !p.caxton.metrics().await.unwrap().contains(&open) {
        assert!(
            waiting.elapsed() < timeout / 2,
            "the slow clients were not all accepted"
        );
        tokio::task::yield_now().await;
    }
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let started = Instant::now();
    let health = fresh()
        .get(format!("{}/health", p.base))
        .send()
        .await
        .expect("/health answers");
    assert_eq!(health.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "/health took {waited:?}");
    let r = fresh()
        .get(format!("{}/api/agents", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "connection limit reached", "{body}");

    for mut s in slow {
        let mut answer = Vec::new();
        tokio::time::timeout(timeout * 3, s.read_to_end(&mut answer))
            .await
            .expect("the slow connection is closed")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("server.body_read_timeout"), "{answer}");
        assert!(
            sent.elapsed() >= timeout - Duration::from_millis(100),
            "answered before the timeout"
        );
    }
    // The slots are free again: an ordinary request is served.
    connections_close(&p, timeout, "the slow connections stayed open").await;
    let r = fresh()
        .get(format!("{}/api/agents", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
