//! W3C trace context (`traceparent`, `tracestate`) in and out of HTTP headers and FIPA message
//! metadata, and the runtime's spans.
//!
//! The flow, which makes a whole conversation one trace:
//! 1. `http/trace_layer.rs` opens the server span of a request, continuing the caller's
//!    `traceparent` header when there is one, and makes it the current OpenTelemetry context
//!    while the request is served.
//! 2. `Runtime::send` (a client's message) and `Runtime::route` (a message an agent sent)
//!    open a `message.route` span under the current context and write its context into the
//!    message's `metadata`, replacing whatever trace context the message carried (an agent's
//!    outgoing message inherits its trigger's metadata through `address_reply`; the new
//!    context makes it a child of the execution that sent it).
//! 3. `Runtime::process` opens `agent.execute` with the parent read back from the metadata,
//!    so the execution hangs under the route span of the message that caused it, even though
//!    it runs on another task, later.
//!
//! **These spans are built with the SDK's tracer directly** ([`RuntimeSpan`]), not as
//! `tracing` spans: a sampled request cost far more instructions through
//! `tracing-subscriber`'s registry and `tracing-opentelemetry`'s per-span builder, layer
//! filters and enter/exit bookkeeping (BENCHMARKS.md, "Design choices"). They still nest
//! with `tracing` spans both ways: `tracing-opentelemetry` activates an entered span's
//! context, and a `tracing` span opened under a [`RuntimeSpan`] takes the current context as
//! its parent (`examples/task_span.rs` opens such a span).
//!
//! Work that belongs to an unsampled trace builds no span either (`sampling.rs`): the route
//! writes the unsampled context into the message, and its execution, replies and their
//! routes see it there and skip theirs.
//!
//! Every function here takes the server's [`Tracing`] and returns [`RuntimeSpan::none`] when
//! tracing is off: no span is built and no metadata is touched.

use std::borrow::Cow;
use std::collections::BTreeMap;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue};

use crate::fipa::AclMessage;
use crate::telemetry::Tracing;
use crate::telemetry::sampling;
use crate::telemetry::traceparent;
pub(crate) use crate::telemetry::traceparent::{TRACEPARENT, TRACESTATE};

/// One of the runtime's spans, or none (tracing off, or the trace is not sampled). It ends
/// when the last clone of its context is dropped, or at [`RuntimeSpan::end`].
#[derive(Debug, Default)]
pub(crate) struct RuntimeSpan(Option<Context>);

impl RuntimeSpan {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Starts `name` under `parent` with the server's tracer (none when tracing is off).
    pub(crate) fn start(
        tracing: &Tracing,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        parent: &Context,
    ) -> Self {
        Self(tracing.tracer().map(|tracer| {
            let span = tracer
                .span_builder(name)
                .with_kind(kind)
                .with_attributes(attributes)
                .start_with_context(tracer, parent);
            parent.with_span(span)
        }))
    }

    /// The context with this span in it, for futures (`with_context`) and propagation.
    pub(crate) fn context(&self) -> Option<&Context> {
        self.0.as_ref()
    }

    /// Makes this span the current context until the guard drops. For synchronous sections
    /// only (the guard cannot cross an `.await`); futures take [`RuntimeSpan::context`].
    pub(crate) fn enter(&self) -> Option<ContextGuard> {
        self.0.as_ref().map(|cx| cx.clone().attach())
    }

    pub(crate) fn set_attribute(&self, attribute: KeyValue) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute);
        }
    }

    /// Ends the span now, even while clones of its context are still alive.
    pub(crate) fn end(&mut self) {
        if let Some(cx) = self.0.take() {
            cx.span().end();
        }
    }

    /// Status Error (what `otel.status_code = "ERROR"` gave as a `tracing` span).
    pub(crate) fn set_error(&self) {
        if let Some(cx) = &self.0 {
            cx.span().set_status(Status::error(""));
        }
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataCarrier<'a>(&'a BTreeMap<String, String>);

impl Extractor for MetadataCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The caller's context from `traceparent`/`tracestate` request headers (empty if absent or
/// malformed: a bad header starts a new trace rather than failing the request).
pub(crate) fn from_headers(headers: &axum::http::HeaderMap) -> Context {
    traceparent::extract(&HeaderExtractor(headers))
}

/// The context a message carries in its metadata.
pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Context {
    traceparent::extract(&MetadataCarrier(metadata))
}

/// Writes `cx` into `metadata` as `traceparent`/`tracestate`, replacing any previous trace
/// context (a stale `tracestate` must not outlive its `traceparent`).
pub fn inject(cx: &Context, metadata: &mut BTreeMap<String, String>) {
    let span = cx.span();
    let sc = span.span_context();
    if let Some((_, header)) = traceparent::encode(sc) {
        write_context(metadata, header, sc);
    }
}

/// `traceparent` (already encoded from `sc`) and `sc`'s `tracestate` into `metadata`; an
/// empty `tracestate` removes any previous one.
fn write_context(metadata: &mut BTreeMap<String, String>, traceparent: String, sc: &SpanContext) {
    metadata.insert(TRACEPARENT.to_owned(), traceparent);
    let state = sc.trace_state().header();
    if state.is_empty() {
        metadata.remove(TRACESTATE);
    } else {
        metadata.insert(TRACESTATE.to_owned(), state);
    }
}

/// Whether a span (the runtime's or a `tracing` one) is current on this thread.
fn in_span() -> bool {
    Context::map_current(|cx| cx.has_active_span())
}

/// Whether the work at hand belongs to an unsampled trace and builds no span: there is no
/// current span and either the request being served was not sampled (its context is
/// written into `metadata`), or `metadata` already carries an unsampled context (an
/// agent's message inherits its trigger's).
fn skip_unsampled(metadata: &mut BTreeMap<String, String>) -> bool {
    if in_span() {
        return false;
    }
    // What `inject` would write, from the value formatted once at the edge.
    let request = sampling::with_current(|u| write_context(metadata, u.traceparent.clone(), &u.cx));
    request.is_some()
        || (metadata.contains_key(TRACEPARENT)
            && sampling::unsampled_parent(&from_metadata(metadata)))
}

/// `message.route` for `msg`, under the current context; its context goes into the
/// message's metadata. Enter the returned span while routing. `from_unsampled` says the
/// message comes from an execution of an unsampled trace (its metadata, inherited from the
/// trigger, says so too; this spares parsing it again).
pub(crate) fn route_span(
    tracing: &Tracing,
    msg: &mut AclMessage,
    from_unsampled: bool,
) -> RuntimeSpan {
    if !tracing.enabled() || from_unsampled || skip_unsampled(&mut msg.metadata) {
        return RuntimeSpan::none();
    }
    let span = RuntimeSpan::start(
        tracing,
        "message.route",
        SpanKind::Internal,
        vec![
            KeyValue::new("fipa.performative", msg.performative.as_str()),
            KeyValue::new(
                "conversation_id",
                msg.conversation_id.clone().unwrap_or_default(),
            ),
            KeyValue::new("message.sender", msg.sender.clone()),
            KeyValue::new("message.receivers", msg.receiver.len() as i64),
        ],
        &Context::current(),
    );
    if let Some(cx) = span.context() {
        inject(cx, &mut msg.metadata);
    }
    span
}

/// `agent.execute` for `msg` at agent `agent_id`, continuing the trace in its metadata.
pub(crate) fn execute_span(
    tracing: &Tracing,
    msg: &AclMessage,
    agent_id: &str,
    agent_type: &str,
) -> RuntimeSpan {
    if !tracing.enabled() {
        return RuntimeSpan::none();
    }
    let parent = from_metadata(&msg.metadata);
    if sampling::unsampled_parent(&parent) {
        return RuntimeSpan::none();
    }
    RuntimeSpan::start(
        tracing,
        "agent.execute",
        SpanKind::Internal,
        vec![
            KeyValue::new("agent.id", agent_id.to_owned()),
            KeyValue::new("agent.type", agent_type.to_owned()),
            KeyValue::new("fipa.performative", msg.performative.as_str()),
            KeyValue::new(
                "conversation_id",
                msg.conversation_id.clone().unwrap_or_default(),
            ),
        ],
        &parent,
    )
}

/// `agent.create` under the current context; `agent.id` is recorded once known.
pub(crate) fn create_span(tracing: &Tracing, agent_type: &str) -> RuntimeSpan {
    if !tracing.enabled() || (!in_span() && sampling::current().is_some()) {
        return RuntimeSpan::none();
    }
    RuntimeSpan::start(
        tracing,
        "agent.create",
        SpanKind::Internal,
        vec![KeyValue::new("agent.type", agent_type.to_owned())],
        &Context::current(),
    )
}

/// A span of one agent-store operation (`store.insert`, `store.delete`, `store.load`), a
/// child of the current span (the request's), after OpenTelemetry's database conventions.
/// None when tracing is off or the request was not sampled.
pub(crate) fn store_span(
    tracing: &Tracing,
    name: &'static str,
    operation: &'static str,
) -> RuntimeSpan {
    if !tracing.enabled() || (!in_span() && sampling::current().is_some()) {
        return RuntimeSpan::none();
    }
    RuntimeSpan::start(
        tracing,
        name,
        SpanKind::Client,
        vec![
            KeyValue::new("db.system", "sqlite"),
            KeyValue::new("db.system.name", "sqlite"),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.collection.name", "agents"),
        ],
        &Context::current(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trip_keeps_trace_and_parent_ids() {
        let mut metadata = BTreeMap::new();
        metadata.insert(
            TRACEPARENT.to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        );
        metadata.insert(TRACESTATE.to_owned(), "vendor=x".to_owned());
        let cx = from_metadata(&metadata);
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled());
        let mut out = BTreeMap::new();
        out.insert(TRACESTATE.to_owned(), "stale=1".to_owned());
        inject(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], metadata[TRACEPARENT]);
        assert_eq!(out[TRACESTATE], "vendor=x");
    }

    #[test]
    fn malformed_traceparent_yields_no_parent_and_inject_skips_invalid() {
        let mut metadata = BTreeMap::new();
        metadata.insert(TRACEPARENT.to_owned(), "00-zz-yy-01".to_owned());
        let cx = from_metadata(&metadata);
        assert!(!cx.span().span_context().is_valid());
        let mut out = BTreeMap::new();
        inject(&cx, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn spans_are_disabled_when_tracing_is_off() {
        let off = Tracing::off();
        let mut msg = AclMessage::new(crate::fipa::Performative::Request);
        assert!(route_span(&off, &mut msg, false).is_none());
        assert!(msg.metadata.is_empty());
        assert!(execute_span(&off, &msg, "a", "t").is_none());
        assert!(create_span(&off, "t").is_none());
        assert!(store_span(&off, "store.insert", "INSERT").is_none());
    }
}
