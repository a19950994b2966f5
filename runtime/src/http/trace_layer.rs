//! The server span of every HTTP request.
//!
//! The span continues the caller's W3C `traceparent`/`tracestate` request headers (or starts
//! a trace), is named `METHOD route-template` (`POST /api/messages`), and records
//! `http.request.method`, `http.route` and `http.response.status_code`; 5xx marks it as an
//! error. Every response then says which trace it belongs to:
//! - `x-trace-id`: the 32-hex trace id, for people and log searches;
//! - `traceresponse`: `00-<trace-id>-<server-span-id>-<flags>` (W3C Trace Context Level 2), so a
//!   client can link its own span to ours and see whether we sampled it.
//!
//! Sampling is decided here, before the span is built (`telemetry/sampling.rs`): an unsampled request
//! builds no span, yet still gets its trace headers (flags `00`) and propagates its context.
//! It is a tower layer with its own future, not `middleware::from_fn`, which clones a boxed
//! service and boxes a future per request; and `api::router` adds it only with tracing on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::context::{FutureExt, WithContext};
use opentelemetry::trace::{SpanKind, TraceContextExt};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::http::metrics_layer::UNMATCHED_ROUTE;
use crate::telemetry::Tracing;
use crate::telemetry::sampling::{self, Decision, Unsampled};
use crate::telemetry::trace_context::{self, RuntimeSpan};
use crate::telemetry::traceparent;

pub(crate) const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");
pub(crate) const TRACERESPONSE_HEADER: HeaderName = HeaderName::from_static("traceresponse");

/// The trace id and `traceresponse` value a response carries.
type TraceIds = Option<(String, String)>;

/// Server spans with the server's own trace pipeline.
#[derive(Clone)]
pub(crate) struct TraceLayer {
    tracing: Tracing,
}

impl TraceLayer {
    pub(crate) fn new(tracing: Tracing) -> Self {
        Self { tracing }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            tracing: self.tracing.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Trace<S> {
    inner: S,
    tracing: Tracing,
}

impl<S> Service<Request> for Trace<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !self.tracing.enabled() {
            return TraceFuture::Plain {
                inner: self.inner.call(req),
            };
        }
        let parent = trace_context::from_headers(req.headers());
        let (parent, new_trace) = match sampling::decide(parent, self.tracing.sample_rate()) {
            Decision::Sampled { parent, new_trace } => (parent, new_trace),
            Decision::Unsampled(cx) => {
                let ids = traceparent::encode(&cx);
                let Some((_, traceparent)) = &ids else {
                    return TraceFuture::Plain {
                        inner: self.inner.call(req),
                    };
                };
                let request = Unsampled {
                    cx,
                    traceparent: traceparent.clone(),
                };
                return TraceFuture::Unsampled {
                    inner: sampling::unsampled(request, self.inner.call(req)),
                    ids,
                };
            }
        };
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, |p| p.as_str());
        let method = req.method().as_str();
        let attributes = vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
        ];
        let name = format!("{method} {route}");
        // Started here, on this thread: the new trace gets the id the decision was made on.
        let span = sampling::start_sampled(new_trace, || {
            RuntimeSpan::start(&self.tracing, name, SpanKind::Server, attributes, &parent)
        });
        let Some(cx) = span.context().cloned() else {
            return TraceFuture::Plain {
                inner: self.inner.call(req),
            };
        };
        let ids = traceparent::encode(cx.span().span_context());
        TraceFuture::Sampled {
            inner: self.inner.call(req).with_context(cx),
            span,
            ids,
        }
    }
}

pin_project_lite::pin_project! {
    /// The next service's future, run in the request's trace: the sampled request's span as
    /// the current context, or the unsampled request's context as a task-local.
    #[project = TraceFutureProj]
    pub(crate) enum TraceFuture<F> {
        Plain { #[pin] inner: F },
        Unsampled { #[pin] inner: TaskLocalFuture<Unsampled, F>, ids: TraceIds },
        Sampled { #[pin] inner: WithContext<F>, span: RuntimeSpan, ids: TraceIds },
    }
}

impl<F, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TraceFutureProj::Plain { inner } => inner.poll(cx),
            TraceFutureProj::Unsampled { inner, ids } => {
                let mut result = ready!(inner.poll(cx));
                if let Ok(response) = &mut result {
                    set_trace_headers(response, ids.take());
                }
                Poll::Ready(result)
            }
            TraceFutureProj::Sampled { inner, span, ids } => {
                let mut result = ready!(inner.poll(cx));
                if let Ok(response) = &mut result {
                    let status = response.status();
                    span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status.as_u16()),
                    ));
                    if status.is_server_error() {
                        span.set_error();
                    }
                    set_trace_headers(response, ids.take());
                }
                // The span ends with the response, not when the connection drops this
                // future (whose context still holds it).
                span.end();
                Poll::Ready(result)
            }
        }
    }
}

fn set_trace_headers(response: &mut Response, ids: TraceIds) {
    let Some((trace_id, traceresponse)) = ids else {
        return;
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::try_from(trace_id) {
        headers.insert(TRACE_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::try_from(traceresponse) {
        headers.insert(TRACERESPONSE_HEADER, v);
    }
}
