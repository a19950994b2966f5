//! Accepting and serving HTTP/1 connections with bounds a hostile client cannot outlast: a
//! header-read timeout (hyper's, which starts when the connection opens), an idle timeout
//! (no request in flight for `idle_timeout` closes the connection; hyper has none between
//! keep-alive requests), and a limit on open connections kept below the process's
//! open-files limit, so idle sockets can never take the descriptors `/health`, `/metrics` and
//! the runtime's own files need.
//!
//! `axum::serve` offers none of these, so this is its accept loop with them added: same
//! graceful shutdown (stop accepting, let each connection finish its request, wait for all).

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;

use crate::http::metrics_layer::GaugeGuard;

/// Descriptors kept free of connections: listeners, epoll, the data directory, telemetry
/// exporters' sockets, the pprof listener and the metrics listener's own connections.
const RESERVED_FDS: u64 = 64;
/// The metrics listener's own connection limit: scrapers are few.
pub const METRICS_CONNECTIONS: usize = 32;
/// Fewest API connections allowed however low the open-files limit is.
const MIN_CONNECTIONS: usize = 16;
/// How often "connection limit reached" may be logged while it stays reached.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The API listener's connection limit: the configured one, lowered to fit the open-files
/// limit (`open_files`, soft `RLIMIT_NOFILE`) minus what the rest of the process needs.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
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
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    open: Option<IntGauge>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = watch::channel(());
    let mut last_limit_log: Option<Instant> = None;
    let local = listener.local_addr().ok();
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_limit_log.is_none_or(|t| t.elapsed() >= LIMIT_LOG_INTERVAL) {
                    last_limit_log = Some(Instant::now());
                    tracing::warn!(
                        listener = ?local,
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait in the listen backlog \
                         until one closes (idle ones close after server.idle_timeout)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
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
    mut stop: watch::Receiver<bool>,
    close_rx: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(&requests);
        let mut app = app.clone();
        async move {
            let response = app.call(req.map(axum::body::Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
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
