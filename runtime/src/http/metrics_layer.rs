//! HTTP request and connection accounting: the middleware behind
//! `caxton_http_requests_total`/`caxton_http_request_duration_seconds`, and the gauge guard
//! behind `caxton_http_active_connections` (counted by connections.rs).
//!
//! The same future tags the thread that polls it with the request's id
//! ([`caxton_profiles::request_tag`]) and records the request's latency under that id, so CPU
//! samples can be told apart by request: a tag set for each poll and cleared after it stays
//! right when the task moves between workers. Here rather than in a layer of its own: a
//! layer is one more service and future per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use caxton_profiles::request_tag::{self, Tagged};
use opentelemetry::trace::TraceContextExt as _;
use prometheus::IntGauge;
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Route label for requests no route matched: raw paths would explode cardinality.
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// Records every request under its route template (`/api/agents/{id}`, never the raw path).
///
/// A tower layer rather than `middleware::from_fn`: that would clone a boxed service and box
/// a future for every request (measured on the message path: BENCHMARKS.md, "Design choices").
#[derive(Clone)]
pub(crate) struct TrackLayer(Arc<Metrics>);

impl TrackLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self(metrics)
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        // `MatchedPath` is an `Arc<str>`: cloning it spares a String per request.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let request = request_tag::next_id();
        let inner = {
            let _tag = Tagged::enter(request);
            self.inner.call(req)
        };
        TrackFuture {
            inner,
            metrics: self.metrics.clone(),
            started,
            method,
            route,
            request,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TrackFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        started: Instant,
        method: Method,
        route: Option<MatchedPath>,
        request: u64,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _tag = Tagged::enter(*this.request);
            ready!(this.inner.poll(cx))
        };
        if request_tag::active() {
            // The trace layer runs this future in the sampled request's context: the samples
            // of a traced request then name its trace.
            let cx = opentelemetry::Context::current();
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_sampled() && sc.is_valid() {
                request_tag::traced(*this.request, u128::from_be_bytes(sc.trace_id().to_bytes()));
            }
        }
        request_tag::finished(*this.request, this.started.elapsed());
        if let Ok(response) = &result {
            this.metrics.http_request(
                this.method.as_str(),
                this.route
                    .as_ref()
                    .map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
                response.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

/// Increments a gauge now and decrements it when dropped.
pub(crate) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
