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
//! Sampling is decided here, before the span is built (`sampling.rs`): an unsampled request
//! builds no span, yet still gets its trace headers (flags `00`) and propagates its context.
//! With tracing off this middleware only reads a flag and calls the next service.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::http_metrics::UNMATCHED_ROUTE;
use crate::sampling::{self, Decision, Unsampled};
use crate::telemetry::tracing_enabled;
use crate::trace_context;
use crate::traceparent;

pub const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");
pub const TRACERESPONSE_HEADER: HeaderName = HeaderName::from_static("traceresponse");

pub async fn trace(req: Request, next: Next) -> Response {
    if !tracing_enabled() {
        return next.run(req).await;
    }
    let parent = trace_context::from_headers(req.headers());
    let (parent, new_trace) = match sampling::decide(parent, sampling::rate()) {
        Decision::Sampled { parent, new_trace } => (parent, new_trace),
        Decision::Unsampled(cx) => {
            let ids = traceparent::encode(&cx);
            let Some((_, traceparent)) = &ids else {
                return next.run(req).await;
            };
            let request = Unsampled {
                cx,
                traceparent: traceparent.clone(),
            };
            let mut response = sampling::unsampled(request, next.run(req)).await;
            set_trace_headers(&mut response, ids);
            return response;
        }
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    // Asking for the context starts the OpenTelemetry span now, on this thread: the new
    // trace gets the id the decision was made on.
    let ids = sampling::start_sampled(new_trace, || trace_context::traceparent_of(&span));
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    set_trace_headers(&mut response, ids);
    response
}

fn set_trace_headers(response: &mut Response, ids: Option<(String, String)>) {
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
