//! Criterion benchmarks of the runtime's hot paths, calling the runtime's real code
//! (inputs and set-ups in `caxton_benches::workloads`, shared with the instruction counter).
//!
//! `cargo bench -p caxton-benches` runs them all in under four minutes on two cores; cheap
//! benches get a short warm-up and measurement, the millisecond ones fewer samples.
//! Regression gate: `cargo bench -p caxton-benches -- --baseline main` then
//! `bench-gate criterion` (README, BENCHMARKS.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caxton_benches::workloads::{
    self, FIPA_CONTENT_SIZES, ROUTING_AGENTS, ROUTING_BATCH, Routing, SEED_TABLES_TOML,
    TraceContext,
};
use caxton_runtime::Runtime;
use caxton_runtime::config::Config;
use caxton_runtime::internals::AclMessage;
use caxton_runtime::internals::Metrics;
use caxton_runtime::internals::Performative;
use caxton_runtime::internals::Tracing;
use caxton_runtime::internals::builtin;
use caxton_runtime::internals::{ApiState, router};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt;

/// FIPA-ACL JSON: `AclMessage::to_json` as the router does before an execution, and
/// `from_slice` as the API does on `POST /api/messages`.
fn fipa_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("fipa");
    for size in FIPA_CONTENT_SIZES {
        let msg = workloads::fipa_message(size);
        let bytes = serde_json::to_vec(&msg).expect("serialize");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode/{size}"), |b| {
            b.iter(|| black_box(&msg).to_json().expect("serialize"))
        });
        g.bench_function(format!("decode/{size}"), |b| {
            b.iter(|| serde_json::from_slice::<AclMessage>(black_box(&bytes)).expect("parse"))
        });
    }
    g.finish();
}

/// `Runtime::send` into mailboxes and the drain task's dequeue, without wasm execution
/// (see `workloads::Routing`). One iteration routes `ROUTING_BATCH` messages round-robin.
fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(ROUTING_BATCH as u64));
    for agents in ROUTING_AGENTS {
        let routing = Routing::new(agents).expect("routing set-up");
        g.bench_function(format!("send_and_dequeue/{agents}_agents"), |b| {
            b.iter_batched(
                || routing.messages(ROUTING_BATCH),
                |msgs| assert_eq!(routing.route(msgs), ROUTING_BATCH),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// One full agent execution: fresh instance from `InstancePre` (pooling allocator), `alloc`,
/// copy-in, `handle_message`, and the reply parsed out of `send_message`.
fn handle_message_round_trip(c: &mut Criterion) {
    let (engine, ty) = workloads::test_agent().expect("test-agent");
    let bytes = workloads::test_agent_request();
    let id: Arc<str> = "agent".into();
    c.bench_function("agent/handle_message_round_trip", |b| {
        b.iter(|| {
            black_box(
                engine
                    .execute(&ty, &id, black_box(&bytes))
                    .expect("execute"),
            )
        })
    });
}

/// Cold compile of the test-agent: WAT parse, validation, Cranelift, ABI check, linking.
fn module_compile(c: &mut Criterion) {
    let (engine, _) = workloads::test_agent().expect("test-agent");
    let wat = builtin::TEST_AGENT.wat();
    let mut g = c.benchmark_group("wasm");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("compile_test_agent", |b| {
        b.iter(|| {
            engine
                .compile("test-agent", black_box(wat.as_bytes()), true)
                .expect("compile")
        })
    });
    g.finish();
}

/// The `Metrics` methods the message path calls: label lookup plus the update.
fn metric_recording(c: &mut Criterion) {
    let metrics = workloads::seed_metrics().expect("metrics");
    let mut g = c.benchmark_group("metrics");
    g.bench_function("counter_inc_labelled", |b| {
        b.iter(|| metrics.message_sent(black_box(Performative::Request)))
    });
    g.bench_function("histogram_observe_labelled", |b| {
        b.iter(|| metrics.message_processed(black_box(Performative::Request), black_box(0.0042)))
    });
    g.bench_function("http_request", |b| {
        b.iter(|| {
            metrics.http_request(
                black_box("POST"),
                black_box("/api/messages"),
                200,
                black_box(0.0007),
            )
        })
    });
    g.finish();
}

fn trace_context(c: &mut Criterion) {
    let tc = TraceContext::default();
    let mut g = c.benchmark_group("trace_context");
    g.bench_function("inject", |b| b.iter(|| tc.inject()));
    g.bench_function("extract", |b| b.iter(|| tc.extract()));
    g.finish();
}

/// The axum router in process (`tower::ServiceExt::oneshot`): middleware, body parsing,
/// the handler, the runtime, the JSON response. No sockets.
fn http_in_process(c: &mut Criterion) {
    let mut cfg = Config::for_tests();
    // Every iteration of `POST /api/agents` creates an agent.
    cfg.server.max_agents = usize::MAX;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let metrics = Arc::new(Metrics::new(&cfg.observability.metrics).expect("metrics"));
    let runtime = Arc::new(Runtime::new(&cfg, metrics, Tracing::off()).expect("runtime"));
    let state = ApiState::without_server(runtime, &cfg.server);
    let app = router(state);
    let call = |req: Request<Body>| {
        let app = app.clone();
        tokio.block_on(async move {
            let resp = app.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            (status, body)
        })
    };
    let create = || {
        Request::post("/api/agents")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"agent_type":"test-agent","config":{"test":true}}"#,
            ))
            .expect("request")
    };
    let (status, body) = call(create());
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let agent: serde_json::Value = serde_json::from_slice(&body).expect("agent JSON");
    let id = agent["id"].as_str().expect("id").to_owned();
    let message = serde_json::json!({
        "performative": "REQUEST", "sender": "bench-1", "receiver": id,
        "content": {"n": 1}, "conversation_id": "c-1", "reply_with": "r-1"
    })
    .to_string();

    let mut g = c.benchmark_group("http");
    g.bench_function("post_agents", |b| {
        b.iter(|| assert_eq!(call(create()).0, StatusCode::OK))
    });
    let post_message = || {
        let req = Request::post("/api/messages?wait=true")
            .header("content-type", "application/json")
            .body(Body::from(message.clone()))
            .expect("request");
        assert_eq!(call(req).0, StatusCode::OK)
    };
    g.bench_function("post_messages_wait", |b| b.iter(post_message));
    // The same path while the perf_event sampler would be reading request tags: every tag
    // change logged with its time, every latency recorded (issue 26). Alternated with the
    // untagged path, in the same run: the first of a pair pays the pool's warm-up.
    for round in ["", "/2"] {
        caxton_profiles::request_tag::set_active(true);
        g.bench_function(format!("post_messages_wait_tagged{round}"), |b| {
            b.iter(post_message)
        });
        caxton_profiles::request_tag::set_active(false);
        g.bench_function(format!("post_messages_wait_untagged{round}"), |b| {
            b.iter(post_message)
        });
    }
    g.finish();
}

/// What request tagging adds to one `?wait=true` request, alone: a fresh id, two polls of
/// its future on an HTTP worker and one execution of its message, each tagged, and its
/// latency recorded; with the log off (no perf_event capture) and on, in the same run.
fn request_tagging(c: &mut Criterion) {
    use caxton_profiles::request_tag::{self, Tagged};
    let one_request = || {
        let id = request_tag::next_id();
        for _ in 0..3 {
            let _tag = Tagged::enter(black_box(id));
        }
        request_tag::finished(id, Duration::from_micros(50));
    };
    let mut g = c.benchmark_group("request_tag");
    for (name, on) in [("per_request_off", false), ("per_request_on", true)] {
        request_tag::set_active(on);
        g.bench_function(name, |b| b.iter(one_request));
    }
    request_tag::set_active(false);
    g.finish();
}

fn config_parse(c: &mut Criterion) {
    c.bench_function("config/parse_seed_tables", |b| {
        b.iter(|| {
            Config::from_toml_str(black_box(SEED_TABLES_TOML), "seed-tables.toml").expect("parse")
        })
    });
}

/// Short runs keep `cargo bench` at a few minutes on two cores; the gate relies on the
/// confidence interval, not on long runs, to tell noise from change.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = fipa_json, routing, handle_message_round_trip, module_compile, metric_recording,
        trace_context, http_in_process, request_tagging, config_parse
}
criterion_main!(benches);
