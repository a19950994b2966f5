//! The Caxton runtime: WebAssembly agents that talk in FIPA-ACL messages behind an HTTP API,
//! with Prometheus metrics. ARCHITECTURE.md at the repository root has the map.
//!
//! What it offers: [`start`] (a running runtime, API and metrics listeners, from a
//! [`Config`]), the [`Runtime`] itself for in-process use, the configuration's types in
//! [`config`], and the names of the runtime's threads in [`threads`] (a profiler embedding
//! the runtime keeps only those). Everything else is the crate's own; [`internals`] is for the
//! workspace's benches, fuzz targets and tests, not an API.

mod abi_probe;
mod agent;
mod budget;
mod builtin;
pub mod config;
mod events;
mod execution;
mod fipa;
mod http;
mod metrics;
mod module_cache;
mod profiling;
mod runtime;
mod secret;
mod server;
mod store;
mod system;
mod telemetry;
pub mod threads;
mod wasm;

pub use config::Config;
pub use runtime::Runtime;
pub use server::{RunningServer, ServerError, start};

/// The hooks the workspace's benches (benches/), fuzz targets (fuzz/) and integration tests
/// reach in through: the parts a micro-benchmark drives on their own, and each fuzz target's
/// one entry. Hidden and unstable: a program embedding the runtime uses the items above.
#[doc(hidden)]
pub mod internals {
    pub use crate::agent::{Agent, Envelope, MailboxLimits};
    /// The built-in agents' modules (runtime/src/builtin.rs).
    pub mod builtin {
        pub use crate::builtin::*;
    }
    pub use crate::events::MAX_EVENT_CONTENT_BYTES;
    pub use crate::fipa::{AclMessage, Performative};
    pub use crate::http::api::{ApiState, router};
    pub use crate::http::create_request::MAX_NAME_BYTES;
    pub use crate::metrics::{ALL_METRIC_NAMES, Metrics, MetricsError};
    pub use crate::runtime::{AgentSource, RuntimeError};
    pub use crate::store::FILE_NAME as STORE_FILE_NAME;
    pub use crate::system::parse_rss_bytes;
    pub use crate::telemetry::{Tracing, trace_context};
    pub use crate::wasm::{AgentType, ModuleError, WasmEngine};

    /// The `wasm_abi` fuzz target's probe (runtime/src/abi_probe.rs).
    pub mod abi_probe {
        pub use crate::abi_probe::*;
    }

    /// The `config_parse` fuzz target and its corpus replay: any text parses or is refused.
    pub fn fuzz_config_parse(data: &[u8]) {
        crate::config::Config::fuzz_parse(data);
    }

    /// The `fipa_decode` fuzz target and its corpus replay.
    pub fn fuzz_fipa_decode(data: &[u8]) {
        crate::fipa::AclMessage::fuzz_decode(data);
    }

    /// The `create_agent_body` fuzz target and its corpus replay.
    pub fn fuzz_create_agent_body(data: &[u8]) {
        crate::http::create_request::fuzz_parse(data);
    }
}
