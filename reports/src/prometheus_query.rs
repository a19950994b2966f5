//! Prometheus' HTTP query API: one instant query, its errors named with the URL and the
//! expression (Prometheus' own message for a PromQL error).

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("query {expr:?} on {url} failed: {message}")]
    Query {
        url: String,
        expr: String,
        message: String,
    },
}

/// Instant query at the current time against the Prometheus at `base`; returns `data.result`
/// (for a vector: an array of `{"metric": {labels}, "value": [ts, "value"]}`).
pub async fn instant(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
) -> Result<Value, QueryError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let query_error = |message: String| QueryError::Query {
        url: url.clone(),
        expr: expr.to_owned(),
        message,
    };
    let request = reqwest::Url::parse_with_params(&url, [("query", expr)])
        .map_err(|e| query_error(e.to_string()))?;
    let http = |source| QueryError::Http {
        url: url.clone(),
        source,
    };
    // Errors (400 bad_data) carry their reason in the JSON body: read it whatever the status.
    let body: Value = client
        .get(request)
        .send()
        .await
        .map_err(http)?
        .json()
        .await
        .map_err(http)?;
    if body["status"] != "success" {
        return Err(query_error(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("(no message)")
        )));
    }
    Ok(body["data"]["result"].clone())
}
