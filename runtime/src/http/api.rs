//! The HTTP API (axum), served under both `/api` and `/api/v1`, plus `/ws`, `/health` and
//! `/ready`. Every client mistake is a JSON `{error, detail}` with a 4xx status: handlers
//! take raw bytes and parse themselves so that even extractor failures keep that shape.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::agent::{Agent, AgentState};
use crate::events::Published;
use crate::fipa::AclMessage;
use crate::http::create_request::{self, BodyError, Encoding};
use crate::http::metrics_layer::{self, GaugeGuard};
use crate::http::trace_layer;
use crate::runtime::routing::SendError;
use crate::runtime::{AgentSource, Runtime, RuntimeError};

/// Largest page `GET /api/agents` returns.
const MAX_PAGE: usize = 1000;
/// Longest `?timeout` of `POST /api/messages?wait=true`: a waiting client holds a connection
/// and a reply slot, so "wait forever" is refused rather than granted.
const MAX_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct ApiState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) reply_timeout: Duration,
    /// False once shutdown has begun: `/ready` turns 503 so load balancers drain us.
    pub(crate) ready: Arc<AtomicBool>,
    /// `[server] max_body_bytes`: larger request bodies get 413.
    pub(crate) max_body_bytes: usize,
    /// `[server] api_token`: when set, `/api/*` and `/ws` need it (`access.rs`).
    pub(crate) api_token: Option<crate::http::access::Token>,
}

impl ApiState {
    /// The state of a router without a server around it (the benches drive handlers
    /// through it): ready, no API token, the configuration's timeout and body limit.
    pub fn without_server(runtime: Arc<Runtime>, server: &crate::config::ServerConfig) -> Self {
        Self {
            runtime,
            reply_timeout: server.reply_timeout,
            ready: Arc::new(AtomicBool::new(true)),
            max_body_bytes: server.max_body_bytes,
            api_token: None,
        }
    }
}

/// A request body of at most [`ApiState::max_body_bytes`]. An extractor rather than axum's
/// `DefaultBodyLimit` layer: a layer is one more boxed service cloned on every request of
/// every route, for a limit only two handlers read.
pub(crate) struct Body(Bytes);

impl FromRequest<ApiState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(Body)
            .map_err(|e| {
                let e = e.into_inner();
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body too large",
                        format!("the body exceeds server.max_body_bytes ({limit} bytes)"),
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "unreadable body", e.to_string())
                }
            })
    }
}

/// What axum's `Json` sets, for bodies serialized here.
const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json");

/// The body of every error: what class of mistake, and what exactly was wrong where.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
    pub(crate) detail: String,
}

/// A client-visible error: status plus `{error, detail}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_owned(),
            detail: self.detail,
        };
        let mut resp = (self.status, Json(body)).into_response();
        // Every 429 says when to come back: capacity frees as agents finish or are deleted.
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad query string", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(r.status(), "bad path", r.body_text())
    }
}

impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(r: WebSocketUpgradeRejection) -> Self {
        Self::new(
            r.status(),
            "websocket upgrade required",
            format!(
                "GET /ws is a WebSocket endpoint (Connection: Upgrade, Upgrade: websocket): {}",
                r.body_text()
            ),
        )
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let (status, error) = match &e {
            RuntimeError::UnknownType(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown agent type")
            }
            RuntimeError::Module(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid wasm module"),
            RuntimeError::TypeConflict(_) => (StatusCode::CONFLICT, "agent type conflict"),
            RuntimeError::TooManyAgents(_) => (StatusCode::TOO_MANY_REQUESTS, "too many agents"),
            RuntimeError::Init(_) => (StatusCode::UNPROCESSABLE_ENTITY, "agent_init failed"),
            RuntimeError::NoSuchAgent(_) => (StatusCode::NOT_FOUND, "agent not found"),
            RuntimeError::CacheFull(_) => (StatusCode::TOO_MANY_REQUESTS, "module cache full"),
            RuntimeError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
        };
        Self::new(status, error, e.to_string())
    }
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        let (status, error) = match &e {
            SendError::NoReceiver => (StatusCode::BAD_REQUEST, "no receiver"),
            SendError::UnknownReceiver(_) => (StatusCode::NOT_FOUND, "unknown receiver"),
            SendError::NotAccepting { .. } => (StatusCode::CONFLICT, "receiver not running"),
            SendError::MailboxFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "mailbox full"),
            SendError::TooManyReceivers { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too many receivers")
            }
            SendError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message too large"),
            SendError::InFlightFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "runtime busy"),
            SendError::HopLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "hop limit"),
            SendError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        };
        let mut err = Self::new(status, error, e.to_string());
        match &e {
            SendError::MailboxFull { accepted, .. } => {
                err.retry_after = Some(1);
                if !accepted.is_empty() {
                    err.detail = format!("{e}; already queued for: {}", accepted.join(", "));
                }
            }
            SendError::InFlightFull { .. } => err.retry_after = Some(1),
            _ => {}
        }
        err
    }
}

/// Parses a JSON body, reporting where it broke.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    create_request::parse_json(body).map_err(ApiError::from)
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let status = if e.is_invalid_value() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, e.class(), e.to_string())
    }
}

/// The API's routes. The server-span middleware is layered only when the runtime's tracing
/// is on: with it off, it would be a boxed service and future per request that only read a
/// flag.
pub fn router(state: ApiState) -> Router {
    let tracing = state.runtime.tracing.clone();
    // Both prefixes as flat routes, not `nest`: a nested router strips the prefix by
    // rebuilding every request's URI, an allocation and a parse on the message path.
    let mut app = Router::new();
    for prefix in ["/api", "/api/v1"] {
        app = app
            .route(
                &format!("{prefix}/agents"),
                post(create_agent).get(list_agents),
            )
            .route(
                &format!("{prefix}/agents/{{id}}"),
                get(get_agent).delete(delete_agent),
            )
            .route(&format!("{prefix}/messages"), post(send_message));
    }
    let metrics = state.runtime.metrics.clone();
    let mut app = app.route("/ws", get(ws));
    // Only the routes above need the token; a layer costs a boxed service per request, so
    // an open API has none.
    if let Some(token) = state.api_token.clone() {
        app = app.route_layer(axum::middleware::from_fn_with_state(
            token,
            crate::http::access::require_token,
        ));
    }
    let app = app
        .route("/api/openapi.json", get(openapi_json))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not found",
                format!("no route for {} {}", req.method(), req.uri().path()),
            )
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                format!("{} is not served on {}", req.method(), req.uri().path()),
            )
        })
        .layer(metrics_layer::TrackLayer::new(metrics));
    let app = if tracing.enabled() {
        app.layer(trace_layer::TraceLayer::new(tracing))
    } else {
        app
    };
    app.with_state(state)
}

/// `GET /health` and `GET /ready`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Status {
    status: &'static str,
    /// Agents registered (`/ready` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    agents: Option<usize>,
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
        crate::http::openapi::document_json(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "The process serves HTTP", body = Status)))]
pub(crate) async fn health() -> Json<Status> {
    Json(Status {
        status: "ok",
        agents: None,
    })
}

#[utoipa::path(get, path = "/ready", tag = "probes", responses(
    (status = 200, description = "Taking traffic", body = Status),
    (status = 503, description = "Shutting down", body = ErrorBody)))]
pub(crate) async fn ready(State(state): State<ApiState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        Json(Status {
            status: "ready",
            agents: Some(state.runtime.agent_count()),
        })
        .into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down", "draining").into_response()
    }
}

/// The JSON view of an agent.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentView {
    id: String,
    agent_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    state: AgentState,
    created_at: String,
    mailbox: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
}

/// A page of `GET /api/agents`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentPage {
    agents: Vec<AgentView>,
    total: usize,
    offset: usize,
    limit: usize,
    /// Pass as `after` for the next page; null on the last page.
    next: Option<u64>,
}

/// The answer to `DELETE /api/agents/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    id: String,
    state: AgentState,
}

/// The answer to `POST /api/messages` without `wait`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    accepted: bool,
    receivers: usize,
}

impl AgentView {
    fn of(agent: &Agent) -> Self {
        // Restored rows are range-checked (store.rs); the fallback keeps a handler from
        // panicking on a time SystemTime cannot hold anyway.
        let ms = agent
            .created_at_ms
            .min(crate::store::MAX_CREATED_AT_MS as u64);
        let created = UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(UNIX_EPOCH);
        Self {
            id: agent.id.to_string(),
            agent_type: agent.agent_type.name.clone(),
            name: agent.name.clone(),
            state: agent.state(),
            created_at: humantime::format_rfc3339_millis(created).to_string(),
            mailbox: agent.queue_len(),
            config: agent
                .config
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
        }
    }
}

#[utoipa::path(post, path = "/api/agents", tag = "agents",
    request_body(content(
        (crate::http::create_request::JsonBody = "application/json"),
        (crate::http::create_request::FormBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Created and Running", body = AgentView),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 409, description = "The type name belongs to another module", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Unknown type, invalid module, name too long, agent_init failed", body = ErrorBody),
        (status = 429, description = "max_agents reached or the module cache full", body = ErrorBody,
            headers(("retry-after" = u32, description = "Seconds to wait"))),
        (status = 503, description = "The agent store could not record the agent", body = ErrorBody)))]
pub(crate) async fn create_agent(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<AgentView>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let req = create_request::parse(Encoding::of(content_type), &body)?;
    let source = match (req.wasm_module, req.agent_type) {
        (Some(b64), name) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid request",
                        format!("wasm_module is not base64: {e}"),
                    )
                })?;
            AgentSource::Module { name, bytes }
        }
        (None, Some(t)) => AgentSource::Builtin(t),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid request",
                "give `agent_type` (test-agent, echo, cpu-heavy) or `wasm_module`",
            ));
        }
    };
    let rt = state.runtime.clone();
    let ty = match source {
        AgentSource::Builtin(_) => rt.resolve_type(source)?,
        // Compiling is heavy CPU work; keep it off the async workers.
        module => tokio::task::spawn_blocking(move || rt.resolve_type(module))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??,
    };
    let config = req.config.map(|c| c.to_string().into_boxed_str());
    match state.runtime.create_agent(ty, req.name, config) {
        Ok(agent) => {
            state.runtime.persist_created(&agent).await?;
            Ok(Json(AgentView::of(&agent)))
        }
        Err((agent, e)) => {
            let mut err = ApiError::from(e);
            if let Some(agent) = agent {
                state.runtime.persist_created(&agent).await?;
                err.detail = format!("{}; agent {} is Failed", err.detail, agent.id);
            }
            Err(err)
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    /// Agents to skip, in creation order.
    #[serde(default)]
    offset: usize,
    /// Page size, at most 1000; default 100.
    limit: Option<usize>,
    /// The previous page's `next`: continues after it without counting `offset` agents.
    after: Option<u64>,
}

#[utoipa::path(get, path = "/api/agents", tag = "agents", params(Page), responses(
    (status = 200, description = "A page in creation order", body = AgentPage),
    (status = 400, description = "Bad query string", body = ErrorBody)))]
pub(crate) async fn list_agents(
    State(state): State<ApiState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<AgentPage>, ApiError> {
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(100).min(MAX_PAGE);
    let rt = &state.runtime;
    let listed = match page.after {
        Some(after) => rt.list_agents_after(after, limit),
        None => rt.list_agents(page.offset, limit),
    };
    let next = if listed.len() == limit {
        listed.last().map(|a| a.seq)
    } else {
        None
    };
    let agents: Vec<AgentView> = listed.iter().map(|a| AgentView::of(a)).collect();
    Ok(Json(AgentPage {
        agents,
        total: rt.agent_count(),
        offset: page.offset,
        limit,
        next,
    }))
}

#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id")), responses(
    (status = 200, description = "The agent", body = AgentView),
    (status = 400, description = "Undecodable id", body = ErrorBody),
    (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn get_agent(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let Path(id) = id?;
    let agent = state
        .runtime
        .agent(&id)
        .ok_or(RuntimeError::NoSuchAgent(id))?;
    Ok(Json(AgentView::of(&agent)))
}

#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id")), responses(
    (status = 200, description = "Stopped, or Draining its mailbox", body = Deleted),
    (status = 400, description = "Undecodable id", body = ErrorBody),
    (status = 404, description = "No such agent", body = ErrorBody),
    (status = 503, description = "The agent store could not record the delete", body = ErrorBody)))]
pub(crate) async fn delete_agent(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path(id) = id?;
    // Durable first: if the store cannot record the delete, the agent stays as it was
    // (503), rather than leaving now and coming back on the next start.
    if state.runtime.agent(&id).is_none() {
        return Err(RuntimeError::NoSuchAgent(id).into());
    }
    state.runtime.persist_deleted(&id).await?;
    let reached = state.runtime.stop_agent(&id)?;
    Ok(Json(Deleted { id, state: reached }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendParams {
    /// Wait for the receiver's reply and return it.
    #[serde(default)]
    wait: bool,
    /// Reply timeout for `wait=true`, e.g. `500ms`; defaults to `server.reply_timeout`.
    timeout: Option<String>,
}

#[utoipa::path(post, path = "/api/messages", tag = "messages", params(SendParams),
    request_body = AclMessage, responses(
    (status = 200, description = "The reply (wait=true)", body = AclMessage),
    (status = 202, description = "Queued for every receiver", body = Accepted),
    (status = 400, description = "Malformed message or query", body = ErrorBody),
    (status = 404, description = "Unknown receiver", body = ErrorBody),
    (status = 409, description = "Receiver not running", body = ErrorBody),
    (status = 413, description = "Body over server.max_body_bytes, more receivers than agents.max_receivers, or a message over a mailbox's byte bound", body = ErrorBody),
    (status = 422, description = "The conversation passed agents.max_hops", body = ErrorBody),
    (status = 429, description = "A receiver's mailbox is full, or agents.in_flight_bytes reached", body = ErrorBody,
        headers(("retry-after" = u32, description = "Seconds to wait"))),
    (status = 500, description = "The reply could not be serialized (wait=true)", body = ErrorBody),
    (status = 503, description = "Shutting down (before queueing, or before the reply)", body = ErrorBody),
    (status = 504, description = "No reply within the timeout", body = ErrorBody)))]
pub(crate) async fn send_message(
    State(state): State<ApiState>,
    params: Result<Query<SendParams>, QueryRejection>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let mut msg: AclMessage = parse_json(&body)?;
    if msg.sender.is_empty() {
        msg.sender = "http-client".into();
    }
    let rt = &state.runtime;
    if !params.wait {
        let receivers = msg.receiver.len();
        rt.send(msg)?;
        let body = Accepted {
            accepted: true,
            receivers,
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let timeout = match params.timeout.as_deref() {
        Some(t) => {
            let bad = |why: String| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad query string",
                    format!("timeout `{t}`: {why}"),
                )
            };
            let d = humantime::parse_duration(t).map_err(|e| bad(e.to_string()))?;
            if d > MAX_WAIT {
                return Err(bad(format!(
                    "longer than the limit of {}",
                    humantime::format_duration(MAX_WAIT)
                )));
            }
            d
        }
        None => state.reply_timeout,
    };
    // The runtime owns `reply_with` while a client waits: clients' own values collide (two
    // load-test users both sending `r-1`), and a collision must not hand one client's reply
    // to another. The reply's `in_reply_to` gets the client's value back.
    let client_key = msg.reply_with.take();
    let key = uuid::Uuid::new_v4().to_string();
    msg.reply_with = Some(key.clone());
    let mut waiter = rt.wait_for_reply(&key);
    rt.send(msg)?;
    match tokio::time::timeout(timeout, &mut waiter.rx).await {
        Ok(Ok(mut reply)) => {
            if client_key.is_some() {
                reply.in_reply_to = client_key;
            }
            let body = reply.to_json().map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unserializable reply",
                    e.to_string(),
                )
            })?;
            Ok(([(header::CONTENT_TYPE, JSON_CONTENT_TYPE)], body).into_response())
        }
        // The runtime dropped the reply slot: it shut down before the message executed.
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            format!("the runtime shut down before `{key}` was answered"),
        )),
        Err(_) => {
            rt.metrics()
                .message_error(crate::metrics::MessageErrorKind::ReplyTimeout);
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "reply timeout",
                format!(
                    "no reply to `{key}` within {}",
                    humantime::format_duration(timeout)
                ),
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WsFilter {
    agent: Option<String>,
    conversation: Option<String>,
}

async fn ws(
    State(state): State<ApiState>,
    filter: Result<Query<WsFilter>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = filter?;
    // An agent that does not exist would be a stream that never shows anything.
    if let Some(agent) = &filter.agent
        && state.runtime.agent(agent).is_none()
    {
        return Err(RuntimeError::NoSuchAgent(agent.clone()).into());
    }
    let upgrade = upgrade?;
    let rt = state.runtime.clone();
    // Subscribed before the 101 goes out: a client that sends a message as soon as its
    // handshake completes must see that message's events (subscribing in the upgrade
    // callback lost them under load).
    let events = rt.events().subscribe();
    Ok(upgrade.on_upgrade(move |socket| stream_events(socket, rt, events, filter)))
}

async fn stream_events(
    mut socket: WebSocket,
    rt: Arc<Runtime>,
    mut events: tokio::sync::broadcast::Receiver<Arc<Published>>,
    filter: WsFilter,
) {
    let _open = GaugeGuard::new(rt.metrics().websocket_connections());
    loop {
        tokio::select! {
            ev = events.recv() => {
                let text = match ev {
                    Ok(ev) if ev.event.matches(filter.agent.as_deref(), filter.conversation.as_deref()) => {
                        ev.json.clone()
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => json!({"type": "lagged", "skipped": n}).to_string(),
                    Err(RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentState, Refused};

    /// Every `SendError` (the match below fails to compile when one is added, so the list
    /// must grow with it) and every status `send_message` makes itself is documented for
    /// `POST /api/messages`.
    #[test]
    fn every_status_of_send_message_is_documented() {
        let errors = [
            SendError::NoReceiver,
            SendError::TooManyReceivers { count: 3, max: 2 },
            SendError::UnknownReceiver("a".into()),
            SendError::NotAccepting {
                id: "a".into(),
                state: AgentState::Stopped,
            },
            SendError::HopLimit { hops: 9, max: 8 },
            SendError::TooLarge { bytes: 9, limit: 8 },
            SendError::InFlightFull { limit: 8 },
            SendError::MailboxFull {
                receiver: "a".into(),
                full: Refused::Messages(1),
                accepted: vec![],
            },
            SendError::ShuttingDown,
        ];
        for e in &errors {
            match e {
                SendError::NoReceiver
                | SendError::TooManyReceivers { .. }
                | SendError::UnknownReceiver(_)
                | SendError::NotAccepting { .. }
                | SendError::HopLimit { .. }
                | SendError::TooLarge { .. }
                | SendError::InFlightFull { .. }
                | SendError::MailboxFull { .. }
                | SendError::ShuttingDown => {}
            }
        }
        let doc = serde_json::to_value(crate::http::openapi::document()).unwrap();
        let responses = doc["paths"]["/api/messages"]["post"]["responses"]
            .as_object()
            .unwrap();
        // The handler's own: reply (200), queued (202), bad query or body (400), body too
        // large (413), reply unserializable (500), shut down before the reply (503), no
        // reply in time (504).
        let own = [200u16, 202, 400, 413, 500, 503, 504];
        let statuses = errors
            .into_iter()
            .map(|e| ApiError::from(e).status.as_u16())
            .chain(own);
        for status in statuses {
            assert!(
                responses.contains_key(&status.to_string()),
                "POST /api/messages returns {status}, which the OpenAPI document leaves out"
            );
        }
    }
}
