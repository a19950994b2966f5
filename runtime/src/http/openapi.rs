//! The API's OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and
//! the bodies' `ToSchema` derives (so it cannot drift from them), served at
//! `/api/openapi.json`. Paths are documented under `/api`; `/api/v1` serves the same routes.

use std::sync::OnceLock;

use utoipa::OpenApi;

use crate::http::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Caxton runtime API",
        description = "WebAssembly agents exchanging FIPA-ACL messages. Every error is JSON \
                       `{error, detail}`; every 429 carries Retry-After."
    ),
    paths(
        api::create_agent,
        api::list_agents,
        api::get_agent,
        api::delete_agent,
        api::send_message,
        api::health,
        api::ready
    ),
    tags(
        (name = "agents", description = "Agent lifecycle"),
        (name = "messages", description = "FIPA-ACL messaging"),
        (name = "probes", description = "Liveness and readiness")
    )
)]
struct ApiDoc;

/// The document as a value, for tests and tools.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document's JSON, built once.
pub(crate) fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_default())
}
