//! Accepting and serving HTTP/1 connections with bounds a hostile client cannot outlast: a
//! header-read timeout (hyper's, which starts when the connection opens), an idle timeout
//! (no request in flight for `idle_timeout` closes the connection; hyper has none between
//! keep-alive requests), and a limit on open connections kept below the process's
//! open-files limit, so idle sockets can never take the descriptors `/health`, `/metrics` and
//! the runtime's own files need.
//!
//! A request's body must arrive within `body_read_timeout` of its headers: a late one gets
//! 408 and the connection closes. When every connection slot is taken, a few more
//! connections ([`PROBE_CONNECTIONS`]) are still accepted for `/health` and `/ready` only
//! (anything else on them gets 503), one request each: slow clients holding every slot
//! cannot make a liveness probe wait for their timeouts.
//!
//! `axum::serve` offers none of these, so this is its accept loop with them added: same
//! graceful shutdown (stop accepting, let each connection finish its request, wait for all).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;

use crate::http::api::ApiError;
use crate::http::metrics_layer::GaugeGuard;

/// Descriptors kept free of connections: listeners, epoll, the data directory, telemetry
/// exporters' sockets, the pprof listener and the metrics listener's own connections.
const RESERVED_FDS: u64 = 64;
/// The metrics listener's own connection limit: scrapers are few.
pub(crate) const METRICS_CONNECTIONS: usize = 32;
/// Fewest API connections allowed however low the open-files limit is.
const MIN_CONNECTIONS: usize = 16;
/// Connections accepted beyond `max_connections` for the probes only (within
/// `RESERVED_FDS`).
pub(crate) const PROBE_CONNECTIONS: usize = 8;
/// The paths a probe connection serves.
const PROBE_PATHS: [&str; 2] = ["/health", "/ready"];
/// How often "connection limit reached" may be logged while it stays reached.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    /// From a request's headers to the end of its body.
    pub(crate) body_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    /// Connections beyond `max_connections` for the probes only.
    pub(crate) probe_reserve: usize,
}

/// The API listener's connection limit: the configured one, lowered to fit the open-files
/// limit (`open_files`, soft `RLIMIT_NOFILE`) minus what the rest of the process needs.
pub(crate) fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return configured;
    };
    let room = limit.saturating_sub(RESERVED_FDS + METRICS_CONNECTIONS as u64);
    configured.min(
        usize::try_from(room)
            .unwrap_or(usize::MAX)
            .max(MIN_CONNECTIONS),
    )
}

/// When the connection last finished a request, and how many it is serving.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Relaxed) > 0 {
                idle
            } else {
                let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                let quiet = self.started.elapsed().saturating_sub(last);
                if quiet >= idle {
                    return;
                }
                idle - quiet
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counts a request in flight until dropped (finished, or abandoned with its connection).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `stop` turns true, then finishes open requests and
/// returns once every connection has closed (upgraded WebSockets are not waited for, as
/// with `axum::serve`).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    open: Option<IntGauge>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let probe_slots = Arc::new(Semaphore::new(limits.probe_reserve));
    let (close_tx, close_rx) = watch::channel(());
    let mut last_limit_log: Option<Instant> = None;
    let local = listener.local_addr().ok();
    loop {
        let (slot, probe_only) = match slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => {
                if last_limit_log.is_none_or(|t| t.elapsed() >= LIMIT_LOG_INTERVAL) {
                    last_limit_log = Some(Instant::now());
                    tracing::warn!(
                        listener = ?local,
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait in the listen backlog \
                         until one closes (idle ones close after server.idle_timeout, slow \
                         bodies after server.body_read_timeout); /health and /ready still \
                         answer on a few reserved connections"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => (slot, false),
                        Err(_) => break,
                    },
                    slot = probe_slots.clone().acquire_owned() => match slot {
                        Ok(slot) => (slot, true),
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, _peer): (TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if !is_connection_error(&e) {
                    // EMFILE and the like: back off instead of spinning on the error.
                    tracing::error!(error = %e, listener = ?local, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        // A probe slot taken while every slot was busy: one may have freed while waiting
        // for this connection.
        let (slot, probe_only) = match probe_only {
            true => match slots.clone().try_acquire_owned() {
                Ok(free) => (free, false),
                Err(_) => (slot, true),
            },
            false => (slot, false),
        };
        let _ = stream.set_nodelay(true);
        let io = Connection {
            stream,
            _open: open.as_ref().map(GaugeGuard::new),
            _slot: slot,
        };
        tokio::spawn(serve_connection(
            io,
            app.clone(),
            limits,
            probe_only,
            stop.clone(),
            close_rx.clone(),
        ));
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    io: Connection,
    app: Router,
    limits: Limits,
    probe_only: bool,
    mut stop: watch::Receiver<bool>,
    close_rx: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let requests = activity.clone();
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(&requests);
        let mut app = app.clone();
        async move {
            if probe_only && !PROBE_PATHS.contains(&req.uri().path()) {
                drop(in_flight);
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "connection limit reached",
                    format!(
                        "every connection slot is taken; this reserved connection serves only \
                         {PROBE_PATHS:?}, not {}",
                        req.uri().path()
                    ),
                )
                .into_response();
                close_after(&mut response);
                return Ok(response);
            }
            let late = Arc::new(AtomicBool::new(false));
            let req = req.map(|body| {
                axum::body::Body::new(TimedBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep(body_timeout)),
                    timeout: body_timeout,
                    late: late.clone(),
                })
            });
            let mut response = app.call(req).await;
            drop(in_flight);
            if late.load(Ordering::Relaxed) {
                let mut timed_out = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body timeout",
                    format!(
                        "the request body did not arrive within server.body_read_timeout ({})",
                        humantime::format_duration(body_timeout)
                    ),
                )
                .into_response();
                close_after(&mut timed_out);
                response = Ok(timed_out);
            }
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(!probe_only);
    let mut conn = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.idle_for(limits.idle_timeout), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(close_rx);
}

/// Tells hyper (and the client) the connection closes after this response.
fn close_after(response: &mut axum::response::Response) {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
}

pin_project_lite::pin_project! {
    /// A request body that must end by its deadline: a late one is an error to whoever reads
    /// it, and `late` tells the connection to answer 408 instead.
    struct TimedBody {
        #[pin]
        inner: Incoming,
        deadline: Pin<Box<tokio::time::Sleep>>,
        timeout: Duration,
        late: Arc<AtomicBool>,
    }
}

impl hyper::body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Http)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.late.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyError::Late(*this.timeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Http(hyper::Error),
    #[error("the request body did not arrive within server.body_read_timeout ({})", humantime::format_duration(*.0))]
    Late(Duration),
}

/// An accepted connection: counted in `caxton_http_active_connections` (API listener) and holding one of
/// the listener's connection slots while open (through a WebSocket upgrade too).
struct Connection {
    stream: TcpStream,
    _open: Option<GaugeGuard>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_below_the_open_files_limit() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1_048_576)), 10_000);
        let low = effective_max_connections(10_000, Some(256));
        assert!(
            low + METRICS_CONNECTIONS + RESERVED_FDS as usize <= 256,
            "{low}"
        );
        assert_eq!(effective_max_connections(10_000, Some(10)), MIN_CONNECTIONS);
    }
}
