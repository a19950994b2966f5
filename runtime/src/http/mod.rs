//! The runtime over HTTP: the API's handlers and request bodies, its access check, the
//! request-metrics and server-span layers, the accept loop, the OpenAPI document, and
//! [`server::start`], which starts a whole runtime behind its listeners.

pub mod access;
pub mod api;
pub mod connections;
pub mod create_request;
pub mod metrics_layer;
pub mod openapi;
pub mod server;
pub mod trace_layer;
