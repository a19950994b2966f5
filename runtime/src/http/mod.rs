//! The runtime over HTTP: the API's handlers and request bodies, its access check, the
//! request-metrics and server-span layers, the accept loop, the OpenAPI document, and
//! [`server::start`], which starts a whole runtime behind its listeners.

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod connections;
pub(crate) mod create_request;
pub(crate) mod metrics_layer;
pub(crate) mod openapi;
pub(crate) mod server;
pub(crate) mod trace_layer;
