//! The Caxton runtime: WebAssembly agents that talk in FIPA-ACL messages behind an HTTP API,
//! with Prometheus metrics. ARCHITECTURE.md at the repository root has the map.

pub mod abi_probe;
pub mod access;
pub mod agent;
pub mod api;
pub mod budget;
pub mod builtin;
pub mod config;
pub mod connections;
pub mod create_request;
pub mod events;
pub mod execution;
pub mod fipa;
pub mod http_metrics;
pub mod http_tracing;
pub mod log_throttle;
pub mod logging;
pub mod metrics;
pub mod module_cache;
pub mod openapi;
pub mod otlp_metrics;
pub mod profiling;
pub mod routing;
pub mod runtime;
pub mod sampling;
pub mod server;
pub mod store;
pub mod system;
pub mod telemetry;
pub mod threads;
pub mod trace_context;
pub mod traceparent;
pub mod wasm;
