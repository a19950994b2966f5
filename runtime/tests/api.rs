//! The runtime's HTTP API over real loopback HTTP: what a client of `caxton serve` sees.

use std::time::Duration;

use caxton_runtime::internals::ALL_METRIC_NAMES;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::{Harness, misbehaving};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_created_listed_fetched_and_deleted() {
    let h = Harness::start(|_| {}).await;
    let (status, created) = h
        .create(json!({"agent_type": "test-agent", "config": {"test": true}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["agent_type"], "test-agent");
    assert_eq!(created["state"], "Running");
    assert_eq!(created["config"], json!({"test": true}));
    let id = created["id"].as_str().unwrap();
    let second = h.agent("echo").await;

    let list: Value = h.get("/api/v1/agents?limit=1").await.json().await.unwrap();
    assert_eq!(list["total"], 2);
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    assert_eq!(list["agents"][0]["id"], id, "pages are in creation order");

    let got = h.get(&format!("/api/agents/{id}")).await;
    assert_eq!(got.status(), StatusCode::OK);

    let del = h
        .http
        .delete(format!("{}/api/agents/{id}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    assert_eq!(del.json::<Value>().await.unwrap()["state"], "Stopped");
    let gone = h.get(&format!("/api/agents/{id}")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let body: Value = gone.json().await.unwrap();
    assert!(
        body["error"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    let list: Value = h.get("/api/agents").await.json().await.unwrap();
    assert_eq!(list["agents"][0]["id"], second);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_test_agent_gets_an_inform_reply_in_the_same_conversation() {
    let h = Harness::start(|_| {}).await;
    let id = h.agent("test-agent").await;
    let (status, reply) = h.ask(&id, "REQUEST").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["performative"], "INFORM");
    assert_eq!(reply["sender"], id.as_str());
    assert_eq!(reply["receiver"], json!(["tester"]));
    assert_eq!(reply["conversation_id"], "conv-1");
    let (_, reply) = h.ask(&id, "QUERY_IF").await;
    assert_eq!(reply["performative"], "NOT_UNDERSTOOD");

    let echo = h.agent("echo").await;
    let (status, reply) = h.ask(&echo, "PROPOSE").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply["content"]["performative"], "PROPOSE",
        "echo returns the message: {reply}"
    );
    assert_eq!(reply["content"]["content"], json!({"q": 1}));

    let heavy = h.agent("cpu-heavy").await;
    let (_, reply) = h.ask(&heavy, "REQUEST").await;
    assert_eq!(
        reply["content"]["fnv1a"].as_str().unwrap().len(),
        8,
        "{reply}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_agents_are_contained_while_others_keep_answering() {
    let h = Harness::start(|_| {}).await;
    let good = h.agent("test-agent").await;
    let cases = [
        ("(loop $l (br $l))", "fuel_exhausted"),
        (
            "(loop $l (drop (memory.grow (i32.const 16))) (br $l))",
            "memory_limit",
        ),
        ("unreachable", "trap"),
    ];
    for (body, kind) in cases {
        let bad = h.custom(&misbehaving(body)).await;
        let (status, reply) = h.ask(&bad, "REQUEST").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["performative"], "FAILURE");
        assert_eq!(reply["content"]["error"], kind, "{reply}");
        let (status, reply) = h.ask(&good, "REQUEST").await;
        assert_eq!(
            (status, reply["performative"].as_str()),
            (StatusCode::OK, Some("INFORM"))
        );
    }
    let metrics = h.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("caxton_agent_executions_total{")
                && l.contains("status=\"error\"")),
        "{metrics}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_with_unbounded_fuel_is_stopped_by_the_execution_timeout() {
    let h = Harness::start(|c| {
        c.agents.fuel_per_message = u64::MAX;
        c.agents.execution_timeout = Duration::from_millis(200);
    })
    .await;
    let bad = h.custom(&misbehaving("(loop $l (br $l))")).await;
    let (_, reply) = h.ask(&bad, "REQUEST").await;
    assert_eq!(reply["content"]["error"], "timeout", "{reply}");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_refuses_with_429_and_is_counted() {
    let h = Harness::start(|c| c.agents.mailbox_capacity = 1).await;
    let slow = h.agent("cpu-heavy").await;
    // One message to five copies of the same receiver is queued in one synchronous step, so
    // the single slot fills whatever the drain task does.
    let msg = json!({"performative": "REQUEST", "receiver": [&slow, &slow, &slow, &slow, &slow]});
    let r = h
        .http
        .post(format!("{}/api/messages", h.base))
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "mailbox full");
    assert!(
        body["detail"].as_str().unwrap().contains("already queued"),
        "{body}"
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("caxton_message_errors_total{kind=\"mailbox_full\"} 1"),
        "{metrics}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_json_4xx_never_5xx() {
    let h = Harness::start(|c| c.server.max_body_bytes = 1024).await;
    let post = |path: &str, body: String| {
        h.http
            .post(format!("{}{path}", h.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post("/api/agents", "{\"agent_type\":\n \"test-agent\",,}".into())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("line 2 column"),
        "{body}"
    );

    let r = post(
        "/api/messages",
        format!(
            "{{\"performative\":\"INFORM\",\"content\":\"{}\"}}",
            "x".repeat(4096)
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "body too large");

    let (status, body) = h.create(json!({"agent_type": "no-such-type"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = h.create(json!({"wasm_module": "AGFzbQEAAAA="})).await; // empty module
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("memory"),
        "{body}"
    );
    let (status, _) = h
        .create(json!({"agent_type": "echo", "colour": "red"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let r = post(
        "/api/messages",
        json!({"performative": "SHOUT", "receiver": "x"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(
        "/api/messages",
        json!({"performative": "INFORM", "receiver": "nobody"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h.get("/no/such/route").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_all_seed_names_and_queried_labels_after_traffic() {
    let h = Harness::start(|_| {}).await;
    for path in ["/health", "/ready"] {
        assert_eq!(
            h.http
                .get(format!("{}{path}", h.base))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let id = h.agent("test-agent").await;
    h.ask(&id, "REQUEST").await;
    let bad = h.custom(&misbehaving("unreachable")).await;
    h.ask(&bad, "REQUEST").await;
    h.http
        .get(format!("{}/api/agents/{id}", h.base))
        .send()
        .await
        .unwrap();
    // Open a WebSocket so the connection gauge has a live value.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.server.api_addr()))
        .await
        .unwrap();
    let metrics = h.metrics().await;
    for name in ALL_METRIC_NAMES {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let has = |needle: &str| metrics.lines().any(|l| l.contains(needle));
    assert!(
        has("caxton_agent_executions_total{agent_id="),
        "executions carry agent_id"
    );
    assert!(has("agent_type=\"test-agent\"") && has("status=\"ok\"") && has("status=\"error\""));
    assert!(has(&format!(
        "caxton_wasm_memory_usage_bytes{{agent_id=\"{id}\",agent_type=\"test-agent\"}}"
    )));
    assert!(
        has("route=\"/api/agents/{id}\""),
        "route label is the template, not the raw path"
    );
    assert!(
        !has(&format!("route=\"/api/agents/{id}\"")),
        "raw paths never become labels"
    );
    assert!(has(
        "caxton_messages_received_total{message_type=\"REQUEST\"}"
    ));
    assert!(has("caxton_websocket_connections 1"));
    ws.close(None).await.ok();
    let _ = ws.next().await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_streams_the_filtered_conversation() {
    let h = Harness::start(|_| {}).await;
    let id = h.agent("test-agent").await;
    let url = format!("ws://{}/ws?conversation=conv-1", h.server.api_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    h.ask(&id, "REQUEST").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let ev: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(ev["type"], "message");
        seen.push(ev["message"]["performative"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["REQUEST", "INFORM"]);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waits_with_the_same_reply_with_each_get_their_own_reply() {
    let h = Harness::start(|_| {}).await;
    let a = h.agent("echo").await;
    let b = h.agent("echo").await;
    let ask = |to: String, n: u32| {
        let msg = json!({"performative": "REQUEST", "sender": format!("user-{n}"), "receiver": to,
                         "content": {"n": n}, "reply_with": "r-1"});
        h.http
            .post(format!("{}/api/messages?wait=true", h.base))
            .json(&msg)
            .send()
    };
    let mut pending = Vec::new();
    for n in 0..20 {
        pending.push(ask(if n % 2 == 0 { a.clone() } else { b.clone() }, n));
    }
    for (n, r) in futures_util::future::join_all(pending)
        .await
        .into_iter()
        .enumerate()
    {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let reply: Value = r.json().await.unwrap();
        assert_eq!(
            reply["in_reply_to"], "r-1",
            "the client's reply_with comes back"
        );
        assert_eq!(
            reply["content"]["content"]["n"], n,
            "each client gets the reply to its own message"
        );
    }
    h.server.shutdown().await;
}

/// Issue 25, item 3: a stream filtered on an agent that does not exist is refused with the
/// API's 404, not upgraded into a stream that never shows anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_for_an_unknown_agent_is_404() {
    let h = Harness::start(|_| {}).await;
    let url = format!("ws://{}/ws?agent=no-such-agent", h.server.api_addr());
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) =
        tokio_tungstenite::connect_async(url).await
    else {
        panic!("upgraded a stream for an unknown agent");
    };
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"], "agent not found", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no-such-agent"),
        "{body}"
    );
    // A known agent's stream still opens.
    let id = h.agent("echo").await;
    let url = format!("ws://{}/ws?agent={id}", h.server.api_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.close(None).await.ok();
    h.server.shutdown().await;
}

/// Issue 25, item 4: echo returns numbers as they were sent, digit for digit (checked on the
/// raw text of the reply, not through a JSON parser that could round them again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_numbers_as_received() {
    let h = Harness::start(|_| {}).await;
    let echo = h.agent("echo").await;
    let numbers = [
        "123456789012345678901234567890",
        "-98765432109876543210",
        "3.14159265358979323846264338327950288",
        "18446744073709551616",
    ];
    let body = format!(
        r#"{{"performative":"REQUEST","sender":"tester","receiver":"{echo}",
            "content":{{"n":[{}]}}}}"#,
        numbers.join(",")
    );
    let r = h
        .http
        .post(format!("{}/api/messages?wait=true", h.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!(r#""content":{{"n":[{}]}}"#, numbers.join(","))),
        "{text}"
    );
    h.server.shutdown().await;
}

/// The statuses `/api/openapi.json` documents for one operation.
fn documented(doc: &Value, method: &str, path: &str) -> Vec<String> {
    doc["paths"][path][method]["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every status a handler returns for the cases driven here is in the served OpenAPI
/// document for that path and method, so the contract schemathesis checks (ci/api-contract)
/// cannot leave an answer out. (`http::api`'s unit test covers every `SendError`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_a_handler_returns_is_documented() {
    let h = Harness::start(|c| c.agents.max_receivers = 2).await;
    let doc: Value = h.get("/api/openapi.json").await.json().await.unwrap();
    let echo = h.agent("echo").await;
    let test_agent = h.agent("test-agent").await;
    let msg = |receiver: Value, extra: Value| {
        let mut m = json!({"performative": "INFORM", "sender": "t", "receiver": receiver,
                           "content": {"q": 1}});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        m
    };
    let mut seen: Vec<(&str, &str, StatusCode)> = Vec::new();
    let messages = [
        ("", msg(json!([echo]), json!({}))),
        (
            "?wait=true",
            msg(json!([test_agent]), json!({"performative": "REQUEST"})),
        ),
        ("", msg(json!([]), json!({}))),
        ("", msg(json!(["nobody"]), json!({}))),
        ("", msg(json!([echo, echo, echo]), json!({}))),
        (
            "",
            msg(
                json!([echo]),
                json!({"metadata": {"caxton-hops": "100000"}}),
            ),
        ),
        ("?wait=maybe", msg(json!([echo]), json!({}))),
    ];
    for (query, body) in &messages {
        let r = h.post(&format!("/api/messages{query}"), body).await;
        seen.push(("post", "/api/messages", r.status()));
    }
    let r = h
        .http
        .post(format!("{}/api/messages", h.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    seen.push(("post", "/api/messages", r.status()));
    for body in [
        json!({"agent_type": "echo"}),
        json!({"agent_type": "no-such-type"}),
        json!({"agent_type": 7}),
    ] {
        seen.push((
            "post",
            "/api/agents",
            h.post("/api/agents", &body).await.status(),
        ));
    }
    for query in ["", "?limit=abc"] {
        let r = h.get(&format!("/api/agents{query}")).await;
        seen.push(("get", "/api/agents", r.status()));
    }
    for id in [echo.as_str(), "nobody"] {
        let r = h.get(&format!("/api/agents/{id}")).await;
        seen.push(("get", "/api/agents/{id}", r.status()));
    }
    for id in ["nobody", echo.as_str()] {
        seen.push(("delete", "/api/agents/{id}", h.delete(id).await));
    }
    let mut missing = Vec::new();
    for (method, path, status) in &seen {
        if !documented(&doc, method, path).contains(&status.as_u16().to_string()) {
            missing.push(format!("{} {path} -> {status}", method.to_uppercase()));
        }
    }
    assert!(missing.is_empty(), "undocumented statuses: {missing:?}");
    // The cases above reach the statuses they are meant to (else the check proves little).
    let statuses: Vec<u16> = seen.iter().map(|(_, _, s)| s.as_u16()).collect();
    for expected in [200, 202, 400, 404, 413, 422] {
        assert!(
            statuses.contains(&expected),
            "{expected} not reached: {seen:?}"
        );
    }
    h.server.shutdown().await;
}
