//! Access to the API: `[server] api_token` / `api_token_file`. With a token, every `/api/*`
//! and `/ws` request needs `Authorization: Bearer <token>`, else 401 with
//! `WWW-Authenticate`; `/health` and `/ready` stay open, and `/metrics` is on its own
//! listener. The token is compared in constant time (`subtle`), and is never logged nor
//! printed: [`Secret`](crate::secret::Secret) shows as `<redacted>` in `Debug` and when serialized
//! (`caxton check-config`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::config::ServerConfig;
use crate::http::api::ApiError;

use crate::secret::REDACTED;

#[derive(Debug, Error)]
pub enum AccessError {
    #[error("server.api_token_file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("server.api_token_file {0}: the file is empty")]
    Empty(PathBuf),
}

/// The token requests must carry, as `Bearer <token>`.
#[derive(Clone)]
pub(crate) struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Token {
    /// The configured token: `api_token`, or the contents of `api_token_file` (trailing
    /// newline trimmed, as `kubectl create secret --from-file` keeps it); `None` when
    /// neither is set.
    pub(crate) fn from_config(server: &ServerConfig) -> Result<Option<Token>, AccessError> {
        if let Some(t) = &server.api_token {
            return Ok(Some(Token::of(t.expose())));
        }
        match &server.api_token_file {
            Some(path) => read_token_file(path).map(Some),
            None => Ok(None),
        }
    }

    fn of(token: &str) -> Token {
        Token(format!("Bearer {token}").into_bytes().into())
    }

    /// Whether an `Authorization` header value carries this token (constant time in the
    /// token's contents).
    pub(crate) fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        authorization.is_some_and(|v| bool::from(v.as_bytes().ct_eq(&self.0)))
    }
}

fn read_token_file(path: &Path) -> Result<Token, AccessError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(AccessError::Empty(path.to_path_buf()));
    }
    Ok(Token::of(token))
}

/// The middleware in front of `/api/*` and `/ws` when a token is configured.
pub(crate) async fn require_token(
    State(token): State<Token>,
    req: Request,
    next: Next,
) -> Response {
    if token.admits(req.headers().get(header::AUTHORIZATION)) {
        return next.run(req).await;
    }
    let detail = if req.headers().contains_key(header::AUTHORIZATION) {
        "the Authorization header does not carry this server's token"
    } else {
        "this server needs `Authorization: Bearer <token>` (server.api_token)"
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"caxton\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = Token::of("s3cret");
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(t.admits(Some(&ok)));
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret ",
            "bearer s3cret",
            "s3cret",
            "",
        ] {
            assert!(!t.admits(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!t.admits(None));
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_an_empty_one_refused() {
        let dir = std::env::temp_dir().join(format!("caxton-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "abc\n").unwrap();
        let t = read_token_file(&file).unwrap();
        assert!(t.admits(Some(&HeaderValue::from_static("Bearer abc"))));
        std::fs::write(&file, "\n").unwrap();
        let err = read_token_file(&file).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        let missing = dir.join("missing");
        let err = read_token_file(&missing).unwrap_err();
        assert!(
            err.to_string().starts_with("server.api_token_file"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
