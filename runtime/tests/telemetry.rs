//! Telemetry end to end: the real `caxton` binary, configured by a TOML file, exporting over
//! OTLP to a receiver.
//!
//! The receiver for the HTTP tests is a small OTLP/HTTP server inside this test: it has to hand
//! back the request headers and the spans' parent links in a checkable form, which the
//! installable collector (rotel) does not. It decodes the real OTLP protobuf with the
//! `opentelemetry-proto` types, exactly what a collector parses. The gRPC test uses rotel
//! (`pip install rotel`, see ci/install-tools) as a real third-party receiver.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::watch;

use caxton_testkit::{CaxtonConfig, CaxtonOptions, Rotel, free_addr};

const DEADLINE: Duration = Duration::from_secs(40);

// ---- the OTLP/HTTP receiver ----

#[derive(Debug, Clone)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    resource: HashMap<String, String>,
    trace_headers: Vec<HeaderMap>,
    log_bodies: Vec<String>,
    metric_names: Vec<String>,
}

impl Received {
    /// The spans received so far of the trace `trace_id`.
    fn spans_of(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

type Shared = Arc<Mutex<Received>>;

fn text(kv: &[KeyValue]) -> HashMap<String, String> {
    kv.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

async fn traces(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP trace protobuf");
    let mut r = r.lock().unwrap();
    r.trace_headers.push(headers);
    for rs in req.resource_spans {
        if let Some(res) = &rs.resource {
            r.resource = text(&res.attributes);
        }
        for ss in rs.scope_spans {
            for s in ss.spans {
                r.spans.push(ReceivedSpan {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: text(&s.attributes),
                });
            }
        }
    }
    Vec::new()
}

async fn logs(State(r): State<Shared>, body: Bytes) -> Vec<u8> {
    let req = ExportLogsServiceRequest::decode(body).expect("OTLP logs protobuf");
    let mut r = r.lock().unwrap();
    for rl in req.resource_logs {
        for sl in rl.scope_logs {
            for l in sl.log_records {
                if let Some(AnyValue::StringValue(s)) = l.body.and_then(|b| b.value) {
                    r.log_bodies.push(s);
                }
            }
        }
    }
    Vec::new()
}

async fn metrics(State(r): State<Shared>, body: Bytes) -> Vec<u8> {
    let req = ExportMetricsServiceRequest::decode(body).expect("OTLP metrics protobuf");
    let names = req
        .resource_metrics
        .into_iter()
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .map(|m| m.name);
    r.lock().unwrap().metric_names.extend(names);
    Vec::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn start_receiver() -> (SocketAddr, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(metrics))
        .with_state(shared.clone());
    (caxton_testkit::serve(app).await.unwrap(), shared)
}

// ---- the runtime process ----

struct Caxton {
    caxton: caxton_testkit::Caxton,
    api: String,
    metrics: String,
    _dir: tempfile::TempDir,
    log_file: PathBuf,
}

impl Caxton {
    /// Starts `caxton serve` with `observability` (TOML lines of `[observability]`) and JSON
    /// logs to a file with `trace_id_key = "tid"`; returns once `/ready` answers.
    async fn start(observability: &str) -> Caxton {
        let dir = tempfile::tempdir().unwrap();
        let log_file = dir.path().join("caxton.log");
        let config = CaxtonConfig::write(
            dir.path(),
            &format!(
                "\n[observability]\n{observability}\n\n\
                 [observability.logging]\nlevel = \"debug\"\nformat = \"json\"\noutput = \"{log}\"\n\
                 trace_id_key = \"tid\"\nspan_id_key = \"sid\"\ndebug_sample_rate = 1.0\n",
                log = log_file.display(),
            ),
        )
        .unwrap();
        // Export batches every 200 ms instead of 5 s so the test does not wait.
        let envs = [
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        ];
        let options = CaxtonOptions {
            envs: &envs,
            deadline: DEADLINE,
            ..CaxtonOptions::default()
        };
        let caxton = support::caxton(&config, options).await;
        Caxton {
            api: caxton.base().to_owned(),
            metrics: caxton.metrics_url().to_owned(),
            caxton,
            _dir: dir,
            log_file,
        }
    }

    /// SIGTERM (graceful: telemetry is flushed) and wait for the exit.
    fn stop(mut self) -> String {
        let exit = self.caxton.terminate().unwrap();
        assert!(exit.success(), "caxton exited with {exit}");
        read(&self.log_file)
    }

    async fn create_agent(&self) -> String {
        self.caxton.api().create_type("test-agent").await.unwrap()
    }
}

impl Caxton {
    /// POSTs REQUEST number `n` to `agent` with `?wait=true`; the reply must be a 200.
    async fn message(&self, client: &reqwest::Client, agent: &str, n: u32) -> reqwest::Response {
        let resp = client
            .post(format!("{}/api/messages?wait=true", self.api))
            .json(&request(agent, n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp
    }
}

fn request(agent: &str, n: u32) -> Value {
    json!({"performative": "REQUEST", "sender": "tester", "receiver": agent,
           "content": {"n": n}, "conversation_id": format!("conv-{n}")})
}

async fn wait_for<T>(shared: &Shared, what: &str, mut f: impl FnMut(&Received) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = f(&shared.lock().unwrap()) {
            return t;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_observability(addr: SocketAddr, rate: f64) -> String {
    format!(
        "enable_tracing = true\nenable_logging = true\nenable_metrics = true\n\
         otlp_endpoint = \"http://{addr}\"\notlp_protocol = \"http/protobuf\"\n\
         otlp_timeout = \"2s\"\notlp_headers = {{ \"api-key\" = \"test-key-123\" }}\n\
         trace_sample_rate = {rate}\nmetrics_export_interval = \"1s\"\n\
         service_name = \"caxton-under-test\"\ndeployment_environment = \"ci\""
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_traceparent_links_server_route_execute_and_reply_spans() {
    let (addr, shared) = start_receiver().await;
    // Rate 0: only the caller's sampled flag (parent-based) gets these spans recorded.
    let caxton = Caxton::start(&http_observability(addr, 0.0)).await;
    let client = reqwest::Client::new();
    let agent = caxton.create_agent().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = client
        .post(format!("{}/api/messages?wait=true", caxton.api))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("tracestate", "caller=1")
        .json(&request(&agent, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-trace-id"], trace_id);
    let traceresponse = resp.headers()["traceresponse"].to_str().unwrap().to_owned();
    assert!(
        traceresponse.starts_with(&format!("00-{trace_id}-")),
        "{traceresponse}"
    );
    assert!(traceresponse.ends_with("-01"), "{traceresponse}");
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["performative"], "INFORM");
    // The reply carries the trace on as FIPA metadata.
    let reply_tp = reply["metadata"]["traceparent"].as_str().unwrap();
    assert!(reply_tp.contains(trace_id), "{reply}");
    assert_eq!(reply["metadata"]["tracestate"], "caller=1", "{reply}");

    let spans = wait_for(&shared, "server, route, execute and reply spans", |r| {
        let ours = r.spans_of(trace_id);
        (ours.iter().filter(|s| s.name == "message.route").count() >= 2).then_some(ours)
    })
    .await;
    let one = |name: &str, parent: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent)
            .unwrap_or_else(|| panic!("no {name} span under {parent}: {spans:#?}"))
            .clone()
    };
    let server = one("POST /api/messages", caller_span);
    assert_eq!(server.attributes["http.route"], "/api/messages");
    assert_eq!(server.attributes["http.response.status_code"], "200");
    assert!(traceresponse.contains(&server.span_id), "{traceresponse}");
    let route = one("message.route", &server.span_id);
    assert_eq!(route.attributes["fipa.performative"], "REQUEST");
    assert_eq!(route.attributes["conversation_id"], "conv-1");
    let execute = one("agent.execute", &route.span_id);
    assert_eq!(execute.attributes["agent.id"], agent);
    assert_eq!(execute.attributes["agent.type"], "test-agent");
    assert_eq!(execute.attributes["fipa.performative"], "REQUEST");
    assert_eq!(execute.attributes["conversation_id"], "conv-1");
    let reply_route = one("message.route", &execute.span_id);
    assert_eq!(reply_route.attributes["fipa.performative"], "INFORM");
    assert!(reply_tp.contains(&reply_route.span_id), "{reply_tp}");

    {
        let r = shared.lock().unwrap();
        // The configured header reached the receiver on the export requests.
        assert!(
            r.trace_headers
                .iter()
                .all(|h| h.get("api-key").is_some_and(|v| v == "test-key-123"))
        );
        assert_eq!(r.resource["service.name"], "caxton-under-test");
        assert_eq!(r.resource["deployment.environment"], "ci");
        assert_eq!(r.resource["service.version"], env!("CARGO_PKG_VERSION"));
    }
    // Logs and metrics went out over OTLP too.
    wait_for(&shared, "OTLP logs and metrics", |r| {
        (r.log_bodies.iter().any(|b| b == "message accepted")
            && r.metric_names
                .iter()
                .any(|m| m == "caxton_http_requests_total")
            && r.metric_names
                .iter()
                .any(|m| m == "caxton_agent_execution_duration_seconds_bucket"))
        .then_some(())
    })
    .await;

    let lines = caxton.stop();
    let accepted: Vec<Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "message accepted" && v["tid"] == trace_id)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "no log line with tid={trace_id}:\n{lines}"
    );
    assert_eq!(accepted[0]["sid"], route.span_id);
    assert_eq!(accepted[0]["level"], "DEBUG");
}

/// One trace from the client to the disk: a sampled `POST /api/agents` has a
/// `store.insert` child (OpenTelemetry's database attributes), and a delete a `store.delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_operations_are_child_spans_of_the_request() {
    let (addr, shared) = start_receiver().await;
    let caxton = Caxton::start(&http_observability(addr, 0.0)).await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let traced = caxton
        .caxton
        .api()
        .with_header("traceparent", &traceparent)
        .unwrap();
    let id = traced.create_type("test-agent").await.unwrap();
    let r = traced.delete(&id).await.unwrap();
    assert_eq!(r.status, 200);
    let spans = wait_for(&shared, "store.insert and store.delete", |r| {
        let ours = r.spans_of(trace_id);
        let names = [
            "POST /api/agents",
            "DELETE /api/agents/{id}",
            "store.insert",
            "store.delete",
        ];
        names
            .iter()
            .all(|n| ours.iter().any(|s| s.name == *n))
            .then_some(ours)
    })
    .await;
    let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap().clone();
    for (server, store, operation) in [
        ("POST /api/agents", "store.insert", "INSERT"),
        ("DELETE /api/agents/{id}", "store.delete", "DELETE"),
    ] {
        let (server, store) = (named(server), named(store));
        assert_eq!(store.parent_span_id, server.span_id, "{spans:#?}");
        assert_eq!(store.attributes["db.system"], "sqlite");
        assert_eq!(store.attributes["db.operation.name"], operation);
    }
    caxton.stop();
}

async fn traces_sent_at_rate(rate: f64, requests: u32) -> Vec<ReceivedSpan> {
    let (addr, shared) = start_receiver().await;
    let caxton = Caxton::start(&http_observability(addr, rate)).await;
    let client = reqwest::Client::new();
    let agent = caxton.create_agent().await;
    for n in 0..requests {
        caxton.message(&client, &agent, n).await;
    }
    // Graceful stop flushes everything that was sampled.
    caxton.stop();
    shared.lock().unwrap().spans.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rate_zero_sends_no_spans_and_one_sends_all() {
    let none = traces_sent_at_rate(0.0, 5).await;
    assert!(none.is_empty(), "rate 0 exported {none:#?}");

    let all = traces_sent_at_rate(1.0, 5).await;
    let server: Vec<_> = all
        .iter()
        .filter(|s| s.name == "POST /api/messages")
        .collect();
    assert_eq!(server.len(), 5, "{all:#?}");
    let executions = all.iter().filter(|s| s.name == "agent.execute").count();
    assert_eq!(executions, 5);
    // Each request is its own trace, and everything of a request is in it.
    for s in &server {
        let in_trace = all.iter().filter(|x| x.trace_id == s.trace_id).count();
        assert_eq!(in_trace, 4, "server, route, execute, reply route");
    }
    assert!(all.iter().any(|s| s.name == "agent.create"));
}

/// The SDK's trace-id ratio rule (the low 64 bits, shifted, under `rate * 2^63`), restated
/// here so the test checks the decision against the definition, not against our code.
fn ratio_samples(trace_id: &str, rate: f64) -> bool {
    let low = u64::from_str_radix(&trace_id[16..], 16).unwrap();
    (low >> 1) < (rate * (1u64 << 63) as f64) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_build_no_spans_yet_keep_their_trace_everywhere() {
    const RATE: f64 = 0.5;
    let (addr, shared) = start_receiver().await;
    let caxton = Caxton::start(&http_observability(addr, RATE)).await;
    let client = reqwest::Client::new();
    let agent = caxton.create_agent().await;
    // (trace id, server span id from traceresponse, sampled flag)
    let mut seen = Vec::new();
    for n in 0..40 {
        let resp = caxton.message(&client, &agent, n).await;
        let tr = resp.headers()["traceresponse"].to_str().unwrap().to_owned();
        let parts: Vec<&str> = tr.split('-').collect();
        assert_eq!(parts.len(), 4, "{tr}");
        let (trace_id, span_id, sampled) =
            (parts[1].to_owned(), parts[2].to_owned(), parts[3] == "01");
        assert_eq!(resp.headers()["x-trace-id"], trace_id.as_str());
        // New traces are sampled by the ratio rule on the very trace id they carry.
        assert_eq!(sampled, ratio_samples(&trace_id, RATE), "{tr}");
        let reply: Value = resp.json().await.unwrap();
        // The reply continues the same trace, with the same sampled flag.
        let reply_tp = reply["metadata"]["traceparent"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reply_tp.starts_with(&format!("00-{trace_id}-")),
            "{reply_tp}"
        );
        assert_eq!(reply_tp.ends_with("-01"), sampled, "{reply_tp} vs {tr}");
        seen.push((trace_id, span_id, sampled));
    }
    let sampled = seen.iter().filter(|s| s.2).count();
    assert!(
        sampled > 0 && sampled < seen.len(),
        "{sampled} of 40 sampled at 0.5"
    );
    // A caller that did not sample (flags 00) is followed, and its tracestate carried on.
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = client
        .post(format!("{}/api/messages?wait=true", caxton.api))
        .header(
            "traceparent",
            format!("00-{caller_trace}-b7ad6b7169203331-00"),
        )
        .header("tracestate", "caller=1")
        .json(&request(&agent, 99))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-trace-id"], caller_trace);
    let tr = resp.headers()["traceresponse"].to_str().unwrap().to_owned();
    assert!(
        tr.starts_with(&format!("00-{caller_trace}-")) && tr.ends_with("-00"),
        "{tr}"
    );
    let reply: Value = resp.json().await.unwrap();
    let reply_tp = reply["metadata"]["traceparent"].as_str().unwrap();
    assert!(
        reply_tp.contains(caller_trace) && reply_tp.ends_with("-00"),
        "{reply}"
    );
    assert_eq!(reply["metadata"]["tracestate"], "caller=1", "{reply}");
    let tr_span = tr.split('-').nth(2).unwrap().to_owned();
    seen.push((caller_trace.to_owned(), tr_span, false));
    let lines = caxton.stop();
    let spans = shared.lock().unwrap().spans.clone();
    let logs: Vec<Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "message accepted")
        .collect();
    for (trace_id, span_id, sampled) in &seen {
        let in_trace: Vec<_> = spans.iter().filter(|s| &s.trace_id == trace_id).collect();
        if *sampled {
            assert_eq!(
                in_trace.len(),
                4,
                "server, route, execute, reply route: {in_trace:#?}"
            );
            assert!(
                in_trace
                    .iter()
                    .any(|s| &s.span_id == span_id && s.name == "POST /api/messages")
            );
        } else {
            assert!(
                in_trace.is_empty(),
                "unsampled trace {trace_id} exported {in_trace:#?}"
            );
            // Its log lines still name the trace, and the id the client was given.
            let line = logs
                .iter()
                .find(|v| v["tid"] == trace_id.as_str())
                .unwrap_or_else(|| panic!("no log line with tid={trace_id}:\n{lines}"));
            assert_eq!(line["sid"], span_id.as_str());
        }
    }
}

/// The value of `series` (name and labels as Prometheus prints them) in a scrape.
fn sample(metrics_text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics_text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

fn dropped(metrics_text: &str, signal: &str, reason: &str) -> f64 {
    sample(
        metrics_text,
        &format!("caxton_telemetry_dropped_total{{reason=\"{reason}\",signal=\"{signal}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_requests_still_answer_and_drops_are_counted() {
    // A collector that was there and is gone: its port refuses connections.
    let dead = free_addr().unwrap();
    let caxton = Caxton::start(&http_observability(dead, 1.0)).await;
    let client = reqwest::Client::new();
    let agent = caxton.create_agent().await;
    let started = Instant::now();
    loop {
        for n in 0..20 {
            let resp = caxton.message(&client, &agent, n).await;
            let reply: Value = resp.json().await.unwrap();
            assert_eq!(reply["performative"], "INFORM");
            assert_eq!(reply["content"]["status"], "done", "{reply}");
            assert_eq!(reply["conversation_id"], format!("conv-{n}"));
        }
        let text = caxton.caxton.metrics().await.unwrap();
        if dropped(&text, "traces", "export_failed") > 0.0 {
            assert_eq!(dropped(&text, "traces", "queue_full"), 0.0);
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no dropped spans counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines = caxton.stop();
    let warnings = lines
        .lines()
        .filter(|l| l.contains("telemetry data dropped"))
        .count();
    // At most one warning per metrics_export_interval (1 s) of the run, and never the key.
    assert!(warnings >= 1, "{lines}");
    assert!(
        warnings as u64 <= started.elapsed().as_secs() + 2,
        "{warnings} warnings"
    );
    assert!(!lines.contains("test-key-123"));
}

fn queued(metrics_text: &str, signal: &str) -> f64 {
    sample(
        metrics_text,
        &format!("caxton_telemetry_queued{{signal=\"{signal}\"}}"),
    )
}

/// A collector that takes trace exports but answers none until `open` turns true: a stalled
/// collector, as the runtime sees one. Counts the spans of the exports it holds.
async fn start_stalled_receiver() -> (SocketAddr, Arc<AtomicUsize>, watch::Sender<bool>) {
    async fn held(
        State((spans, open)): State<(Arc<AtomicUsize>, watch::Receiver<bool>)>,
        body: Bytes,
    ) -> Vec<u8> {
        let req = ExportTraceServiceRequest::decode(body).expect("OTLP trace protobuf");
        let n: usize = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        spans.fetch_add(n, Ordering::SeqCst);
        let _ = open.clone().wait_for(|open| *open).await;
        Vec::new()
    }
    let spans = Arc::new(AtomicUsize::new(0));
    let (gate, open) = watch::channel(false);
    let app = Router::new()
        .route("/v1/traces", post(held))
        .with_state((spans.clone(), open))
        .route("/v1/logs", post(|| async { Vec::<u8>::new() }))
        .route("/v1/metrics", post(|| async { Vec::<u8>::new() }));
    (caxton_testkit::serve(app).await.unwrap(), spans, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_held_by_a_stalled_collector_show_as_queued_until_it_answers() {
    let (addr, held, gate) = start_stalled_receiver().await;
    // Long enough that the held export does not time out while the test looks at it.
    let observability =
        http_observability(addr, 1.0).replace("otlp_timeout = \"2s\"", "otlp_timeout = \"60s\"");
    let caxton = Caxton::start(&observability).await;
    let client = reqwest::Client::new();
    let scrape = || async {
        let resp = client.get(&caxton.metrics).send().await.unwrap();
        resp.text().await.unwrap()
    };
    let agent = caxton.create_agent().await;
    for n in 0..5 {
        caxton.message(&client, &agent, n).await;
    }
    let started = Instant::now();
    while held.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < DEADLINE, "no trace export arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The export in flight is still the runtime's: its spans count until it returns.
    let during = scrape().await;
    let in_flight = held.load(Ordering::SeqCst) as f64;
    assert!(
        queued(&during, "traces") >= in_flight,
        "{in_flight} spans held by the collector, but:\n{during}"
    );
    gate.send(true).unwrap();
    let started = Instant::now();
    loop {
        let text = scrape().await;
        if queued(&text, "traces") == 0.0 {
            assert_eq!(dropped(&text, "traces", "export_failed"), 0.0, "{text}");
            assert_eq!(dropped(&text, "traces", "queue_full"), 0.0, "{text}");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the queue never drained:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    caxton.stop();
    // At least the agent's creation (server span, agent.create) and 5 x (server, route,
    // execute, reply route) reached the collector: nothing queued was lost.
    let spans = held.load(Ordering::SeqCst);
    assert!(spans >= 22, "{spans} spans exported");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_reaches_rotel() {
    let rotel = Rotel::start(&["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
        .await
        .unwrap();
    let grpc_addr = rotel.grpc();
    let caxton = Caxton::start(&format!(
        "enable_tracing = true\notlp_endpoint = \"http://{grpc_addr}\"\n\
         trace_sample_rate = 1.0\nservice_name = \"caxton-grpc\""
    ))
    .await;
    let client = reqwest::Client::new();
    let agent = caxton.create_agent().await;
    let resp = client
        .post(format!("{}/api/messages?wait=true", caxton.api))
        .json(&request(&agent, 7))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let trace_id = resp.headers()["x-trace-id"].to_str().unwrap().to_owned();
    caxton.stop();
    let seen = rotel.stop().unwrap();
    for expected in [
        "agent.execute",
        "message.route",
        "caxton-grpc",
        trace_id.as_str(),
        // The create's store write, a child of its server span (parent links are checked
        // with the in-test receiver: store_operations_are_child_spans_of_the_request).
        "store.insert",
        "db.operation.name",
    ] {
        assert!(
            seen.contains(expected),
            "rotel did not log {expected}:\n{seen}"
        );
    }
}
