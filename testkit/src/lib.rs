//! The workspace's test harness, a dev-dependency of every crate's integration tests and of
//! nothing else.
//!
//! - [`process`]: [`ServerProcess`], one child server with readiness, early-exit detection
//!   and kill on drop, under every server below.
//! - [`prometheus`]: real Prometheus, Pushgateway and Alertmanager (Debian's packages).
//! - [`rotel`]: the rotel OTLP collector (`pip install rotel`).
//! - [`caxton`]: the `caxton` binary on a config with free loopback listeners.
//! - [`loopback`]: free ports and in-test HTTP servers on 127.0.0.1.
//! - [`api`]: [`ApiClient`], the runtime's HTTP API as typed calls.
//!
//! `ci/install-tools` installs the third-party servers; a missing one is an error that says so.

pub mod api;
pub mod caxton;
pub mod error;
pub mod loopback;
pub mod process;
pub mod prometheus;
pub mod rotel;

pub use api::{ApiClient, Reply};
pub use caxton::{Caxton, CaxtonConfig, CaxtonOptions};
pub use error::Error;
pub use loopback::{free_addr, free_port, serve};
pub use process::{Readiness, ServerProcess};
pub use prometheus::{Alertmanager, Prometheus, Pushgateway};
pub use rotel::Rotel;
