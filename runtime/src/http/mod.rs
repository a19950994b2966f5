//! The runtime over HTTP: the API's handlers and request bodies, its access check, the
//! request-metrics and server-span layers, the accept loop and the OpenAPI document. The
//! composition root that starts a whole runtime behind them is `crate::server`.

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod connections;
pub(crate) mod create_request;
pub(crate) mod metrics_layer;
pub(crate) mod openapi;
pub(crate) mod trace_layer;
