//! Head sampling decided at the edge, before any span is built.
//!
//! The SDK's sampler (parent-based, trace-id ratio at `trace_sample_rate`) only runs once
//! `tracing-opentelemetry` has built a span: its builder, attributes, context activation
//! on every poll, and the drop. At the Caxton Monitoring and Observability Guide's 10% most
//! of that work went to spans nobody exports (BENCHMARKS.md has the figures). So the
//! HTTP server span makes the same decision first, with the same function on the same
//! trace id:
//! - **sampled**: the spans are built as before, and the SDK, asked again, agrees (for a
//!   new trace, [`EdgeIdGenerator`] makes the SDK use the trace id decided on here);
//! - **not sampled**: no span is built. The request still belongs to a trace: its
//!   context, with the sampled flag off, goes into the response headers, the messages it
//!   sends (so the agents' executions and replies skip their spans too) and the log lines'
//!   trace ids, exactly as an unsampled span would have given.
//!
//! The unsampled context of the request being served is a task-local ([`current`]); an
//! agent execution finds it in its message's metadata instead ([`unsampled_parent`]).

use std::cell::Cell;
use std::future::Future;

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tokio::task::futures::TaskLocalFuture;

/// The sampler the tracer provider is built with: one definition for both deciders.
pub(crate) fn sampler(rate: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(rate)))
}

thread_local! {
    /// The trace id decided on for a sampled new trace, taken by the next
    /// [`EdgeIdGenerator::new_trace_id`] on this thread.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

tokio::task_local! {
    static UNSAMPLED: Unsampled;
}

/// An unsampled request's context, and its `traceparent` value formatted once: the
/// response headers and every message the request sends carry that same string.
#[derive(Debug, Clone)]
pub(crate) struct Unsampled {
    pub(crate) cx: SpanContext,
    pub(crate) traceparent: String,
}

/// The SDK's random ids, except a new trace's id right after [`Decision::Sampled`] decided
/// on it (see [`start_sampled`]).
#[derive(Debug, Default)]
pub(crate) struct EdgeIdGenerator(RandomIdGenerator);

impl IdGenerator for EdgeIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// What the edge decided for one request.
pub(crate) enum Decision {
    /// Build the server span under `parent`; for a new trace, with `new_trace`'s id.
    Sampled {
        parent: Context,
        new_trace: Option<TraceId>,
    },
    /// Build no span; this is the request's context (sampled flag off).
    Unsampled(SpanContext),
}

/// Decides for a request whose caller sent `parent` (invalid when there is none), with
/// new traces sampled at `rate` ([`rate`] when serving).
pub(crate) fn decide(parent: Context, rate: f64) -> Decision {
    let ids = RandomIdGenerator::default();
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        if remote.is_sampled() {
            return Decision::Sampled {
                parent,
                new_trace: None,
            };
        }
        return Decision::Unsampled(SpanContext::new(
            remote.trace_id(),
            ids.new_span_id(),
            TraceFlags::NOT_SAMPLED,
            false,
            remote.trace_state().clone(),
        ));
    }
    let trace_id = ids.new_trace_id();
    let verdict = sampler(rate).should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
    match verdict.decision {
        SamplingDecision::RecordAndSample => Decision::Sampled {
            parent,
            new_trace: Some(trace_id),
        },
        SamplingDecision::Drop | SamplingDecision::RecordOnly => {
            Decision::Unsampled(SpanContext::new(
                trace_id,
                ids.new_span_id(),
                TraceFlags::NOT_SAMPLED,
                false,
                TraceState::NONE,
            ))
        }
    }
}

/// Runs `start`, which must start the new trace's first span on this thread (e.g. by asking
/// the span for its context), with `new_trace` as the id the SDK gives that trace.
pub(crate) fn start_sampled<R>(new_trace: Option<TraceId>, start: impl FnOnce() -> R) -> R {
    NEXT_TRACE_ID.with(|c| c.set(new_trace));
    let out = start();
    // Not taken means the span was not started here (a filter disabled it): never let the
    // id leak into an unrelated trace.
    NEXT_TRACE_ID.with(|c| c.set(None));
    out
}

/// `fut`, run as the unsampled request `request`.
pub(crate) fn unsampled<F: Future>(request: Unsampled, fut: F) -> TaskLocalFuture<Unsampled, F> {
    UNSAMPLED.scope(request, fut)
}

/// The unsampled context of the request this task serves, if it is one.
pub(crate) fn current() -> Option<SpanContext> {
    with_current(|u| u.cx.clone())
}

/// `f` applied to the unsampled request this task serves, if it is one.
pub(crate) fn with_current<R>(f: impl FnOnce(&Unsampled) -> R) -> Option<R> {
    UNSAMPLED.try_with(f).ok()
}

/// The unsampled trace a message belongs to, from its metadata: its execution and the
/// messages it causes build no spans.
pub(crate) fn unsampled_parent(parent: &Context) -> bool {
    let sc = parent.span().span_context().clone();
    sc.is_valid() && !sc.is_sampled()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            flags,
            true,
            TraceState::NONE,
        ))
    }

    #[test]
    fn a_remote_parent_decides_and_keeps_its_trace() {
        assert!(matches!(
            decide(remote(TraceFlags::SAMPLED), 0.0),
            Decision::Sampled {
                new_trace: None,
                ..
            }
        ));
        match decide(remote(TraceFlags::NOT_SAMPLED), 1.0) {
            Decision::Unsampled(sc) => {
                assert_eq!(
                    sc.trace_id().to_string(),
                    "4bf92f3577b34da6a3ce929d0e0e4736"
                );
                assert!(!sc.is_sampled());
                assert_ne!(sc.span_id(), SpanId::from(0x00f0_67aa_0ba9_02b7_u64));
            }
            Decision::Sampled { .. } => panic!("an unsampled parent must not be sampled"),
        }
    }

    #[test]
    fn new_traces_are_sampled_at_the_rate_by_trace_id() {
        let n = 20_000;
        let mut sampled = 0;
        for _ in 0..n {
            if let Decision::Sampled { new_trace, .. } = decide(Context::new(), 0.1) {
                let id = new_trace.expect("a new trace carries its id");
                // The SDK's own ratio sampler agrees on that id.
                let again = Sampler::TraceIdRatioBased(0.1).should_sample(
                    None,
                    id,
                    "",
                    &SpanKind::Server,
                    &[],
                    &[],
                );
                assert_eq!(again.decision, SamplingDecision::RecordAndSample);
                sampled += 1;
            }
        }
        let share = f64::from(sampled) / f64::from(n);
        assert!((0.08..0.12).contains(&share), "sampled share {share}");
    }

    #[test]
    fn the_generator_hands_out_the_decided_id_once() {
        let ids = EdgeIdGenerator::default();
        let id = TraceId::from(7_u128);
        let got = start_sampled(Some(id), || ids.new_trace_id());
        assert_eq!(got, id);
        assert_ne!(ids.new_trace_id(), id);
    }
}
