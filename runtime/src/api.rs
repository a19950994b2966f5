//! The HTTP API (axum), served under both `/api` and `/api/v1`, plus `/ws`, `/health` and
//! `/ready`. Every client mistake is a JSON `{error, detail}` with a 4xx status: handlers
//! take raw bytes and parse themselves so that even extractor failures keep that shape.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::agent::{Agent, AgentState};
use crate::events::Event;
use crate::fipa::AclMessage;
use crate::http_metrics::{self, GaugeGuard};
use crate::http_tracing;
use crate::routing::SendError;
use crate::runtime::{AgentSource, Runtime, RuntimeError};

/// Largest page `GET /api/agents` returns.
const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub struct ApiState {
    pub runtime: Arc<Runtime>,
    pub reply_timeout: Duration,
    /// False once shutdown has begun: `/ready` turns 503 so load balancers drain us.
    pub ready: Arc<AtomicBool>,
    /// `[server] max_body_bytes`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `[server] api_token`: when set, `/api/*` and `/ws` need it (`access.rs`).
    pub api_token: Option<crate::access::Token>,
}

/// A request body of at most [`ApiState::max_body_bytes`]. An extractor rather than axum's
/// `DefaultBodyLimit` layer: a layer is one more boxed service cloned on every request of
/// every route, for a limit only two handlers read.
struct Body(Bytes);

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

/// A client-visible error: status plus `{error, detail}`.
#[derive(Debug)]
pub struct ApiError {
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
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "detail": self.detail})),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
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
        };
        let mut err = Self::new(status, error, e.to_string());
        if let SendError::MailboxFull { accepted, .. } = &e {
            err.retry_after = Some(1);
            if !accepted.is_empty() {
                err.detail = format!("{e}; already queued for: {}", accepted.join(", "));
            }
        }
        err
    }
}

/// Parses a JSON body, reporting where it broke.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_data() {
            "invalid request"
        } else {
            "malformed JSON"
        };
        // serde_json's Display already ends in "at line L column C".
        ApiError::new(StatusCode::BAD_REQUEST, what, e.to_string())
    })
}

/// The API's routes. The server-span middleware is layered only when `tracing` is on:
/// with it off, it would be a boxed service and future per request that only read a flag.
pub fn router(state: ApiState, tracing: bool) -> Router {
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
            crate::access::require_token,
        ));
    }
    let app = app
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found", "no such route") })
        .layer(http_metrics::TrackLayer::new(metrics));
    let app = if tracing {
        app.layer(http_tracing::TraceLayer)
    } else {
        app
    };
    app.with_state(state)
}

async fn ready(State(state): State<ApiState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        Json(json!({"status": "ready", "agents": state.runtime.agent_count()})).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down", "draining").into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    agent_type: Option<String>,
    name: Option<String>,
    /// Opaque agent configuration, kept and returned as given.
    config: Option<serde_json::Value>,
    /// Base64 of a wasm binary (or WAT text) following the agent ABI.
    wasm_module: Option<String>,
}

/// The JSON view of an agent.
#[derive(Serialize)]
pub struct AgentView {
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

impl AgentView {
    fn of(agent: &Agent) -> Self {
        let created = UNIX_EPOCH + Duration::from_millis(agent.created_at_ms);
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

async fn create_agent(
    State(state): State<ApiState>,
    Body(body): Body,
) -> Result<Json<AgentView>, ApiError> {
    let req: CreateAgent = parse_json(&body)?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

async fn list_agents(
    State(state): State<ApiState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(100).min(MAX_PAGE);
    let agents: Vec<AgentView> = state
        .runtime
        .list_agents(page.offset, limit)
        .iter()
        .map(|a| AgentView::of(a))
        .collect();
    Ok(Json(json!({
        "agents": agents,
        "total": state.runtime.agent_count(),
        "offset": page.offset,
        "limit": limit,
    })))
}

async fn get_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let agent = state
        .runtime
        .agent(&id)
        .ok_or(RuntimeError::NoSuchAgent(id))?;
    Ok(Json(AgentView::of(&agent)))
}

async fn delete_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reached = state.runtime.stop_agent(&id)?;
    state.runtime.persist_deleted(&id).await?;
    Ok(Json(json!({"id": id, "state": reached})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendParams {
    #[serde(default)]
    wait: bool,
    /// Reply timeout for `wait=true`, e.g. `500ms`; defaults to `server.reply_timeout`.
    timeout: Option<String>,
}

async fn send_message(
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
        let body = json!({"accepted": true, "receivers": receivers});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let timeout = match params.timeout.as_deref() {
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad query string",
                format!("timeout `{t}`: {e}"),
            )
        })?,
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
        _ => {
            rt.metrics().message_error("reply_timeout");
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
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(filter) = filter?;
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
    mut events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    filter: WsFilter,
) {
    let _open = GaugeGuard::new(rt.metrics().websocket_connections());
    loop {
        tokio::select! {
            ev = events.recv() => {
                let text = match ev {
                    Ok(ev) if ev.matches(filter.agent.as_deref(), filter.conversation.as_deref()) => {
                        serde_json::to_string(&*ev).unwrap_or_default()
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
