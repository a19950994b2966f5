//! Loopback addresses for tests: a port nothing listens on, and in-test HTTP servers.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released for the caller
/// to bind). Another process can take it in between: servers started on one retry
/// ([`crate::prometheus`]) or a test uses it only as a port nobody answers on.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// [`free_port`] as a socket address on 127.0.0.1.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

/// Serves `app` on an ephemeral 127.0.0.1 port until the test's runtime ends: a webhook, an
/// OTLP receiver, a stand-in target. The listener is bound before this returns, so the
/// address takes connections at once.
pub async fn serve(app: axum::Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
