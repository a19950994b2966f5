//! The HTTP client every virtual user of a run shares.
//!
//! Goose hands each user a reqwest client. caxton-bench does not send through it: for an
//! `http://` target it uses hyper directly (as oha does), and for `https://` one shared
//! reqwest client. Two measured reasons (BENCHMARKS.md, "Design choices"):
//! - CPU: reqwest's layers (URL re-parsing, redirect policy, decompression, a timer and
//!   boxed futures per request) are most of goose's CPU per request; a request on a
//!   pre-parsed [`Uri`] through hyper's pool costs a fraction of that.
//! - Memory: one pool for all users means a sleeping user holds no connection and no
//!   client of its own; the connections in the pool follow the number of requests in
//!   flight, not the number of users.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri, header};
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

use crate::recorder::ErrorKind;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("`{url}` is not a valid URL: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("building the HTTP client failed: {0}")]
    Client(String),
}

/// A POST endpoint, parsed once per run.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    url: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, TransportError> {
        let uri = url.parse::<Uri>().map_err(|e| TransportError::BadUrl {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Endpoint {
            uri,
            url: url.to_string(),
        })
    }
}

/// What one request came to: the status and the whole body, or why there is none.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// A request that got no complete response; the status when the head arrived.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: Option<u16>,
    pub kind: ErrorKind,
}

enum Inner {
    Plain(Box<Client<HttpConnector, Full<Bytes>>>),
    Tls(reqwest::Client),
}

/// The shared client: cheap to use from many tasks at once.
pub(crate) struct Transport {
    inner: Inner,
    timeout: Duration,
    /// Sent with every request (`--header`, `--token-file`).
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The most of a body kept (`--max-body`); the rest is read and dropped.
    max_body: usize,
    /// Responses whose body was longer than `max_body`.
    oversized: AtomicU64,
}

/// The default of `--max-body`: far more than any answer of the API, far less than a
/// hostile target's.
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The first `max` bytes of a body, the rest read to its end without being kept: the
/// latency still runs to the end of the body, and memory stays bounded by `max`.
struct Bounded {
    kept: Vec<u8>,
    max: usize,
    dropped: bool,
}

impl Bounded {
    fn new(max: usize) -> Bounded {
        Bounded {
            kept: Vec::new(),
            max,
            dropped: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.max.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.dropped |= data.len() > room;
    }
}

async fn read_bounded(
    mut body: hyper::body::Incoming,
    max: usize,
) -> Result<Bounded, hyper::Error> {
    let mut out = Bounded::new(max);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.push(&data);
        }
    }
    Ok(out)
}

impl Transport {
    /// A client for `target` (`http://` takes the hyper path); every request is bounded
    /// by `timeout`, from sending to the end of the body, and carries `headers`.
    pub(crate) fn new(
        target: &str,
        timeout: Duration,
        headers: Vec<(HeaderName, HeaderValue)>,
        max_body: usize,
    ) -> Result<Transport, TransportError> {
        let inner = if target.starts_with("https://") {
            let client = reqwest::Client::builder()
                .default_headers(headers.iter().cloned().collect())
                .timeout(timeout)
                .build()
                .map_err(|e| TransportError::Client(e.to_string()))?;
            Inner::Tls(client)
        } else {
            let mut connector = HttpConnector::new();
            // Requests are small and latency is what is measured: no Nagle delay.
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(timeout));
            Inner::Plain(Box::new(
                Client::builder(TokioExecutor::new()).build(connector),
            ))
        };
        Ok(Transport {
            inner,
            timeout,
            headers,
            max_body,
            oversized: AtomicU64::new(0),
        })
    }

    /// How many responses so far were longer than `--max-body`.
    pub(crate) fn oversized(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    fn kept(&self, body: Bounded) -> Bytes {
        if body.dropped {
            self.oversized.fetch_add(1, Ordering::Relaxed);
        }
        Bytes::from(body.kept)
    }

    /// POSTs a JSON `body` and reads the response to its end.
    pub(crate) async fn post_json(&self, to: &Endpoint, body: Bytes) -> Result<Reply, Failure> {
        match &self.inner {
            Inner::Plain(client) => {
                let mut request =
                    Request::post(to.uri.clone()).header(header::CONTENT_TYPE, "application/json");
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                let request = request.body(Full::new(body)).map_err(|_| Failure {
                    status: None,
                    kind: ErrorKind::Request,
                })?;
                let exchange = async {
                    let response = client.request(request).await.map_err(|e| Failure {
                        status: None,
                        kind: if e.is_connect() {
                            ErrorKind::Connect
                        } else {
                            ErrorKind::Request
                        },
                    })?;
                    let status = response.status().as_u16();
                    let body = read_bounded(response.into_body(), self.max_body)
                        .await
                        .map_err(|_| Failure {
                            status: Some(status),
                            kind: ErrorKind::Body,
                        })?;
                    Ok(Reply {
                        status,
                        body: self.kept(body),
                    })
                };
                tokio::time::timeout(self.timeout, exchange)
                    .await
                    .unwrap_or(Err(Failure {
                        status: None,
                        kind: ErrorKind::Timeout,
                    }))
            }
            Inner::Tls(client) => {
                let response = client
                    .post(&to.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| Failure {
                        status: None,
                        kind: ErrorKind::of(&e),
                    })?;
                let status = response.status().as_u16();
                let mut response = response;
                let mut body = Bounded::new(self.max_body);
                loop {
                    match response.chunk().await {
                        Ok(Some(data)) => body.push(&data),
                        Ok(None) => break,
                        Err(e) => {
                            return Err(Failure {
                                status: Some(status),
                                kind: ErrorKind::of(&e),
                            });
                        }
                    }
                }
                Ok(Reply {
                    status,
                    body: self.kept(body),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    #[test]
    fn a_malformed_url_is_named() {
        let err = Endpoint::parse("http://[::1/api").unwrap_err();
        assert!(err.to_string().contains("http://[::1/api"), "{err}");
    }

    /// A real server on loopback: `/ok` echoes the body, `/fail` answers 500, `/slow`
    /// answers after 5 s.
    async fn server() -> String {
        let app = Router::new()
            .route("/ok", post(|body: Bytes| async move { body }))
            .route(
                "/fail",
                post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn statuses_bodies_timeouts_and_refusals_are_told_apart() {
        let base = server().await;
        let t = Transport::new(&base, Duration::from_millis(300), Vec::new(), 64).unwrap();
        let at = |path: &str| Endpoint::parse(&format!("{base}{path}")).unwrap();

        let ok = t
            .post_json(&at("/ok"), Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        assert_eq!((ok.status, &ok.body[..]), (200, &b"{\"a\":1}"[..]));
        // A 500 is a reply (the caller counts it as a `status` error), not a failure.
        let fail = t.post_json(&at("/fail"), Bytes::new()).await.unwrap();
        assert_eq!((fail.status, &fail.body[..]), (500, &b"boom"[..]));

        let slow = t.post_json(&at("/slow"), Bytes::new()).await.unwrap_err();
        assert_eq!(slow.kind, ErrorKind::Timeout);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = format!("http://{}/api", closed.local_addr().unwrap());
        drop(closed);
        let err = t
            .post_json(&Endpoint::parse(&refused).unwrap(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!((err.status, err.kind), (None, ErrorKind::Connect));
    }

    #[tokio::test]
    async fn a_body_longer_than_max_body_is_read_to_its_end_but_not_kept() {
        let base = server().await;
        let t = Transport::new(&base, Duration::from_secs(5), Vec::new(), 4).unwrap();
        let ok = Endpoint::parse(&format!("{base}/ok")).unwrap();
        let long = t
            .post_json(&ok, Bytes::from(vec![b'x'; 100_000]))
            .await
            .unwrap();
        assert_eq!((long.status, long.body.len()), (200, 4));
        assert_eq!(t.oversized(), 1);
        let short = t.post_json(&ok, Bytes::from_static(b"ab")).await.unwrap();
        assert_eq!(&short.body[..], b"ab");
        assert_eq!(t.oversized(), 1);
    }
}
