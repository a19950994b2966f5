//! The Caxton runtime: WebAssembly agents that talk in FIPA-ACL messages behind an HTTP API,
//! with Prometheus metrics. ARCHITECTURE.md at the repository root has the map.
//!
//! What it offers: [`http::server::start`] (a running runtime from a [`config::Config`]),
//! the [`runtime::Runtime`] itself for in-process use, and its parts grouped by concern:
//! [`config`] (the file), [`http`] (the API and its listeners), [`telemetry`] (traces, logs,
//! OTLP), plus the agents' engine, messaging and metrics.

/// The agent ABI's host calls driven with arbitrary bytes: for the `wasm_abi` fuzz target
/// and its corpus replay only, not an API.
#[doc(hidden)]
pub mod abi_probe;
pub mod agent;
pub mod budget;
pub mod builtin;
pub mod config;
pub mod events;
pub mod execution;
pub mod fipa;
pub mod http;
pub mod metrics;
pub mod module_cache;
pub mod profiling;
pub mod runtime;
pub mod secret;
pub mod store;
pub mod system;
pub mod telemetry;
pub mod threads;
pub mod wasm;

// The narrow surface: what a program embedding the runtime needs. The modules above stay
// public while loadgen, benches, testkit and the tests move to these paths.
pub use config::Config;
pub use http::server::{RunningServer, ServerError, start};
pub use runtime::Runtime;
