//! The inputs and set-ups of the measured paths, shared by the criterion benches
//! (`benches/hot_paths.rs`) and the instruction counter (`callgrind-paths`), so both measure
//! the same work. Every function here calls the runtime's real code; nothing is re-implemented.

use std::collections::BTreeMap;
use std::sync::Arc;

use caxton_runtime::Runtime;
use caxton_runtime::config::Config;
use caxton_runtime::internals::Tracing;
use caxton_runtime::internals::builtin;
use caxton_runtime::internals::trace_context;
use caxton_runtime::internals::{AclMessage, Performative};
use caxton_runtime::internals::{Agent, Envelope, MailboxLimits};
use caxton_runtime::internals::{AgentSource, RuntimeError};
use caxton_runtime::internals::{AgentType, ModuleError, WasmEngine};
use caxton_runtime::internals::{Metrics, MetricsError};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use thiserror::Error;

/// The Caxton Monitoring and Observability Guide's configuration tables (`[observability]`,
/// `[observability.metrics]`, `[observability.logging]`, `[profiling]`), the runtime's own test
/// fixture.
pub const SEED_TABLES_TOML: &str = include_str!("../../runtime/tests/fixtures/seed-tables.toml");

/// FIPA content sizes the encode/decode benches cover, in bytes of JSON content.
pub const FIPA_CONTENT_SIZES: [usize; 4] = [64, 512, 4096, 32768];

/// Agent counts of the routing benches.
pub const ROUTING_AGENTS: [usize; 3] = [1, 100, 1000];

/// Messages routed per routing iteration (fits the default mailbox of 1024 with one agent).
pub const ROUTING_BATCH: usize = 1000;

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("runtime set-up: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("wasm engine set-up: {0}")]
    Module(#[from] ModuleError),
    #[error("metrics set-up: {0}")]
    Metrics(#[from] MetricsError),
    #[error("creating agent {index} of {total}: {reason}")]
    Agent {
        index: usize,
        total: usize,
        reason: String,
    },
    #[error("mailbox of agent {0} refused the parked message")]
    Park(String),
}

/// A REQUEST whose JSON `content` is an object of about `content_bytes` bytes: an array of
/// small records, so decoding exercises numbers, strings and nesting as real content does.
pub fn fipa_message(content_bytes: usize) -> AclMessage {
    let mut items = Vec::new();
    let mut size = 12; // `{"items":[]}`
    let mut i = 0u64;
    while size < content_bytes {
        let item = serde_json::json!({"k": i, "v": "lorem ipsum dolor"});
        size += item.to_string().len() + 1;
        items.push(item);
        i += 1;
    }
    let mut msg = AclMessage::new(Performative::Request);
    msg.sender = "bench-client".into();
    msg.receiver = vec!["6f1c2a9e-3b7d-4c55-9a0e-2d8f4b1e7c30".into()];
    msg.content = serde_json::json!({ "items": items });
    msg.conversation_id = Some("conv-1".into());
    msg.reply_with = Some("r-1".into());
    msg.metadata.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    msg
}

/// The REQUEST the test-agent answers, as the wire bytes `handle_message` receives.
pub fn test_agent_request() -> Vec<u8> {
    let mut msg = AclMessage::new(Performative::Request);
    msg.sender = "bench".into();
    msg.receiver = vec!["agent".into()];
    msg.content = serde_json::json!({"test": true});
    msg.conversation_id = Some("c-1".into());
    // A message built in code always serializes.
    msg.to_json().unwrap_or_default()
}

/// A wasm engine with the default agent limits and the compiled `test-agent`.
pub fn test_agent() -> Result<(WasmEngine, AgentType), WorkloadError> {
    let engine = WasmEngine::new(&Config::default().agents)?;
    let ty = engine.compile("test-agent", builtin::TEST_AGENT.wat().as_bytes(), true)?;
    Ok((engine, ty))
}

/// Metrics with the guide's configuration (all optional labels on).
pub fn seed_metrics() -> Result<Metrics, WorkloadError> {
    Ok(Metrics::new(&Config::default().observability.metrics)?)
}

/// Message routing without wasm execution: `Runtime::send` (registry lookup, state check,
/// metrics, event publication, mailbox enqueue) and the drain task's dequeue
/// (`Agent::next_message`).
///
/// The bench plays the drain task. Each mailbox holds one parked message and so stays
/// "scheduled": `Runtime::send` then never spawns a drain task (which would execute wasm),
/// and the bench pops exactly what it sent, leaving one message parked.
pub struct Routing {
    runtime: Arc<Runtime>,
    agents: Vec<Arc<Agent>>,
}

impl Routing {
    pub fn new(agents: usize) -> Result<Routing, WorkloadError> {
        let mut cfg = Config::default();
        cfg.server.max_agents = agents.max(1);
        // The message path in memory: no store opened under ./data.
        cfg.server.persist_agents = false;
        let metrics = Arc::new(Metrics::new(&cfg.observability.metrics)?);
        let runtime = Arc::new(Runtime::new(&cfg, metrics, Tracing::off())?);
        let ty = runtime.resolve_type(AgentSource::Builtin("test-agent".into()))?;
        let capacity = cfg.agents.mailbox_capacity;
        let mut list = Vec::with_capacity(agents);
        for index in 0..agents {
            let agent = runtime
                .create_agent(ty.clone(), None, None)
                .map_err(|(_, e)| WorkloadError::Agent {
                    index,
                    total: agents,
                    reason: e.to_string(),
                })?;
            // `Ok(true)`: we now own the drain of this mailbox.
            let parked = Envelope::new(AclMessage::new(Performative::Inform), 0, None);
            let limits = MailboxLimits {
                messages: capacity,
                bytes: usize::MAX,
            };
            if agent.enqueue(parked, limits) != Ok(true) {
                return Err(WorkloadError::Park(agent.id.to_string()));
            }
            list.push(agent);
        }
        Ok(Routing {
            runtime,
            agents: list,
        })
    }

    /// `count` REQUESTs addressed round-robin to the agents.
    pub fn messages(&self, count: usize) -> Vec<AclMessage> {
        (0..count)
            .map(|i| {
                let mut msg = AclMessage::new(Performative::Request);
                msg.sender = "bench-client".into();
                msg.receiver = vec![self.agents[i % self.agents.len()].id.to_string()];
                msg.content = serde_json::json!({"n": i});
                msg.conversation_id = Some("conv-1".into());
                msg
            })
            .collect()
    }

    /// Sends every message through `Runtime::send`, then dequeues as many, round-robin as
    /// they were addressed. Returns how many were dequeued (== `messages.len()` unless a
    /// send was refused).
    pub fn route(&self, messages: Vec<AclMessage>) -> usize {
        let count = messages.len();
        let mut sent = 0;
        for msg in messages {
            sent += usize::from(self.runtime.send(msg).is_ok());
        }
        let mut delivered = 0;
        for i in 0..sent.min(count) {
            delivered += usize::from(self.agents[i % self.agents.len()].next_message().is_some());
        }
        delivered
    }
}

/// W3C trace context in and out of a message's metadata, through the runtime's own helpers
/// (`caxton_runtime::internals::trace_context`), as `Runtime::send`/`route` inject it and
/// `Runtime::process` extracts it.
pub struct TraceContext {
    context: Context,
    metadata: BTreeMap<String, String>,
}

impl Default for TraceContext {
    fn default() -> Self {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID),
            SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = Context::new().with_remote_span_context(span);
        let mut metadata = BTreeMap::new();
        trace_context::inject(&context, &mut metadata);
        TraceContext { context, metadata }
    }
}

impl TraceContext {
    /// Writes `traceparent` of a sampled remote span into fresh message metadata.
    pub fn inject(&self) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::new();
        trace_context::inject(&self.context, &mut metadata);
        metadata
    }

    /// Reads the span context back from metadata holding a valid `traceparent`.
    pub fn extract(&self) -> SpanContext {
        trace_context::from_metadata(&self.metadata)
            .span()
            .span_context()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fipa_messages_have_the_requested_content_size() {
        for size in FIPA_CONTENT_SIZES {
            let msg = fipa_message(size);
            let content = msg.content.to_string().len();
            assert!(
                content >= size && content < size + 64,
                "{size}: content is {content} bytes"
            );
        }
    }

    #[test]
    fn routing_delivers_every_message_and_keeps_one_parked() {
        let routing = Routing::new(3).unwrap();
        let msgs = routing.messages(10);
        assert_eq!(routing.route(msgs), 10);
        for agent in &routing.agents {
            assert_eq!(agent.queue_len(), 1, "one parked message stays");
            assert!(agent.busy(), "no drain task may be started");
        }
        assert_eq!(routing.route(routing.messages(7)), 7);
    }

    #[test]
    fn trace_context_round_trips() {
        let tc = TraceContext::default();
        let carrier = tc.inject();
        assert_eq!(
            carrier["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let span = tc.extract();
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
    }
}
