//! The runtime's HTTP API as typed calls: one method a route, each answering a [`Reply`]
//! whatever its status, so a test asserts on exactly what a client sees. The bodies stay JSON
//! values: the runtime's types are the one definition of their shape.

use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::Error;

/// A client of one runtime's API at `base` (`http://127.0.0.1:PORT`).
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    headers: HeaderMap,
}

/// One answer: status, headers and the JSON body (`Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The body's `id` (an agent's, on a create), if it has one.
    pub fn id(&self) -> Option<&str> {
        self.body["id"].as_str()
    }
}

/// A REQUEST from `tester` to `receiver` with `content`.
pub fn request(receiver: &str, content: Value) -> Value {
    json!({"performative": "REQUEST", "sender": "tester", "receiver": receiver, "content": content})
}

/// A custom agent whose `handle_message` runs `body` (WAT instructions that leave the status
/// on the stack), exporting what the agent ABI requires.
pub fn agent_wat(body: &str) -> String {
    format!(
        r#"(module (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) (i32.const 1024))
             (func (export "handle_message") (param i32 i32) (result i32) {body}))"#
    )
}

/// A WAT module as the base64 `wasm_module` of a create.
pub fn module_b64(wat: &str) -> Result<String, Error> {
    Ok(base64::engine::general_purpose::STANDARD.encode(wat::parse_str(wat)?))
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> ApiClient {
        ApiClient {
            http: reqwest::Client::new(),
            base: base.into(),
            headers: HeaderMap::new(),
        }
    }

    /// The same client sending `name: value` on every request (a token, a `traceparent`).
    pub fn with_header(&self, name: &'static str, value: &str) -> Result<ApiClient, Error> {
        let mut client = self.clone();
        let value: reqwest::header::HeaderValue = value
            .parse()
            .map_err(|e| std::io::Error::other(format!("header {name}: {e}")))?;
        client.headers.insert(name, value);
        Ok(client)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for requests no method here makes.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn reply(&self, request: RequestBuilder, url: &str) -> Result<Reply, Error> {
        let http = |source| Error::Http {
            url: url.to_owned(),
            source,
        };
        let response = request
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(http)?;
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.map_err(http)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Reply, Error> {
        let url = format!("{}{path}", self.base);
        self.reply(self.http.post(&url).json(body), &url).await
    }

    async fn get(&self, path: &str) -> Result<Reply, Error> {
        let url = format!("{}{path}", self.base);
        self.reply(self.http.get(&url), &url).await
    }

    /// `POST /api/agents` with a JSON body, any answer.
    pub async fn create_agent(&self, body: &Value) -> Result<Reply, Error> {
        self.post("/api/agents", body).await
    }

    /// `POST /api/agents` that must answer 200: the new agent's id.
    pub async fn create(&self, body: &Value) -> Result<String, Error> {
        let reply = self.create_agent(body).await?;
        match reply.id() {
            Some(id) if reply.status == StatusCode::OK => Ok(id.to_owned()),
            _ => Err(Error::Status {
                method: "POST",
                url: format!("{}/api/agents", self.base),
                status: reply.status,
                body: reply.body,
            }),
        }
    }

    /// An agent of a built-in type (`test-agent`, `echo`, `cpu-heavy`): its id.
    pub async fn create_type(&self, agent_type: &str) -> Result<String, Error> {
        self.create(&json!({ "agent_type": agent_type })).await
    }

    /// A custom agent from a WAT module: its id.
    pub async fn create_wat(&self, wat: &str) -> Result<String, Error> {
        self.create(&json!({ "wasm_module": module_b64(wat)? }))
            .await
    }

    /// `POST /api/messages`: queued, answered 202.
    pub async fn send(&self, message: &Value) -> Result<Reply, Error> {
        self.post("/api/messages", message).await
    }

    /// `POST /api/messages?wait=true`: the reply, or the error, as the body.
    pub async fn ask(&self, message: &Value) -> Result<Reply, Error> {
        self.post("/api/messages?wait=true", message).await
    }

    /// `GET /api/agents?limit=&offset=`: one page.
    pub async fn list(&self, limit: usize, offset: usize) -> Result<Reply, Error> {
        self.get(&format!("/api/agents?limit={limit}&offset={offset}"))
            .await
    }

    /// Every agent, page by page, in creation order.
    pub async fn all_agents(&self) -> Result<Vec<Value>, Error> {
        let mut all = Vec::new();
        loop {
            let page = self.list(1000, all.len()).await?;
            match page.body["agents"].as_array() {
                Some(agents) if !agents.is_empty() => all.extend(agents.iter().cloned()),
                _ => return Ok(all),
            }
        }
    }

    /// `DELETE /api/agents/{id}`.
    pub async fn delete(&self, id: &str) -> Result<Reply, Error> {
        let url = format!("{}/api/agents/{id}", self.base);
        self.reply(self.http.delete(&url), &url).await
    }

    /// The text at `url` (e.g. a `/metrics` on another listener), which must answer 2xx.
    pub async fn get_text(&self, url: &str) -> Result<String, Error> {
        get_text(&self.http, url).await
    }
}

/// The body of `GET url`, which must answer 2xx.
pub(crate) async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, Error> {
    let error = |source| Error::Http {
        url: url.to_owned(),
        source,
    };
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(error)?
        .text()
        .await
        .map_err(error)
}
