//! The one error type of the kit: what failed, and what the server printed.

use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {program:?} (is it installed? run ci/install-tools as root): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is not installed (ci/install-tools installs it): {detail}")]
    NotInstalled { name: String, detail: String },
    /// `output` is all the process wrote (it lived briefly); the message quotes its end.
    #[error(
        "{name} exited with {status} before it was ready ({probe}); the end of its output:\n{}",
        crate::process::tail(output)
    )]
    Exited {
        name: String,
        probe: String,
        status: ExitStatus,
        output: String,
    },
    #[error("{name} was not ready ({probe}) within {waited:?}; the end of its output:\n{tail}")]
    NotReady {
        name: String,
        probe: String,
        waited: Duration,
        tail: String,
    },
    #[error("{name} still ran {waited:?} after SIGTERM; killed. The end of its output:\n{tail}")]
    DidNotStop {
        name: String,
        waited: Duration,
        tail: String,
    },
    #[error("test server I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: reqwest::StatusCode,
        body: serde_json::Value,
    },
    #[error("not a WebAssembly text module: {0}")]
    Wat(#[from] wat::Error),
    #[error(transparent)]
    Query(#[from] caxton_reports::prometheus_query::QueryError),
}
