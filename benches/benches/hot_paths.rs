//! Criterion benchmarks of the runtime's hot paths, calling the runtime's real code.

use std::hint::black_box;
use std::sync::Arc;

use caxton_runtime::builtin;
use caxton_runtime::config::AgentsConfig;
use caxton_runtime::fipa::{AclMessage, Performative};
use caxton_runtime::wasm::WasmEngine;
use criterion::{Criterion, criterion_group, criterion_main};

/// One full agent execution: fresh instance from `InstancePre` (pooling allocator), `alloc`,
/// copy-in, `handle_message`, and the reply parsed out of `send_message`.
fn handle_message_round_trip(c: &mut Criterion) {
    let engine = WasmEngine::new(&AgentsConfig::default()).expect("engine");
    let ty = engine
        .compile("test-agent", builtin::TEST_AGENT.wat().as_bytes(), true)
        .expect("compile");
    let mut msg = AclMessage::new(Performative::Request);
    msg.sender = "bench".into();
    msg.receiver = vec!["agent".into()];
    msg.content = serde_json::json!({"test": true});
    msg.conversation_id = Some("c-1".into());
    let bytes = serde_json::to_vec(&msg).expect("serialize");
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

criterion_group!(benches, handle_message_round_trip);
criterion_main!(benches);
