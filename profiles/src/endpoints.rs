//! The `/debug/pprof/*` HTTP endpoints (Go's `net/http/pprof` paths, so `go tool pprof
//! http://host:6060/debug/pprof/profile` works unchanged).

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::capture::{CaptureError, CpuProfile, MAX_CAPTURE_SECONDS};
use crate::heap::{self, HeapError};
use crate::profiler::Profiler;
use crate::settings::ProfileType;

/// Route of the gzipped pprof CPU profile.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";
/// Route of the SVG flamegraph.
pub const FLAMEGRAPH_PATH: &str = "/debug/pprof/flamegraph";
/// Route of the heap profile.
pub const HEAP_PATH: &str = "/debug/pprof/heap";
/// Capture length when `seconds` is absent (Go's default).
pub const DEFAULT_SECONDS: u64 = 30;

/// Response headers of a CPU capture with its sample accounting ([`SampleCount`]), so a
/// client can tell a thin profile from an idle target.
pub const SAMPLES_HEADER: &str = "x-pprof-samples";
/// Samples the target's CPU time called for that the sampler did not take.
pub const LOST_HEADER: &str = "x-pprof-samples-lost";
/// Samples of threads that are not the target's, left out.
pub const EXCLUDED_HEADER: &str = "x-pprof-samples-excluded";
/// The sampling frequency, Hz: the full rate, the unit of the profile's CPU values.
pub const RATE_HEADER: &str = "x-pprof-sample-rate";
/// The lowest rate a thread was sampled at, Hz; present only when the sampler lowered the rate
/// to keep within `[profiling] sample_budget`.
pub const LOWEST_RATE_HEADER: &str = "x-pprof-sample-rate-lowest";
/// The backend that took the samples: `perf_event` or `signal`.
pub const SAMPLER_HEADER: &str = "x-pprof-sampler";

fn sample_headers(p: &CpuProfile) -> AppendHeaders<Vec<(&'static str, String)>> {
    let mut headers = vec![
        (SAMPLES_HEADER, p.samples.taken.to_string()),
        (LOST_HEADER, p.samples.lost().to_string()),
        (EXCLUDED_HEADER, p.samples.excluded.to_string()),
        (RATE_HEADER, p.frequency_hz.to_string()),
        (SAMPLER_HEADER, p.sampler.as_str().to_owned()),
    ];
    if let Some(lowest) = p.samples.lowest_hz {
        headers.push((LOWEST_RATE_HEADER, lowest.to_string()));
    }
    AppendHeaders(headers)
}

impl Profiler {
    /// The `/debug/pprof/*` routes, ready to serve or to merge into another router.
    pub fn router(&self) -> Router {
        Router::new()
            .route(PROFILE_PATH, get(profile))
            .route(FLAMEGRAPH_PATH, get(flamegraph))
            .route(HEAP_PATH, get(heap))
            .with_state(self.clone())
    }
}

/// An error as the API's JSON body `{"error": .., "detail": ..}`.
struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.error, "detail": self.detail }));
        (self.status, body).into_response()
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let (status, error) = match &e {
            CaptureError::Busy { .. } | CaptureError::OtherSampler { .. } => {
                (StatusCode::CONFLICT, "capture in progress")
            }
            CaptureError::InvalidDuration(_) | CaptureError::InvalidFrequency(_) => {
                (StatusCode::BAD_REQUEST, "invalid capture")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "capture failed"),
        };
        ApiError {
            status,
            error,
            detail: e.to_string(),
        }
    }
}

fn seconds(query: &HashMap<String, String>) -> Result<Duration, ApiError> {
    let Some(raw) = query.get("seconds") else {
        return Ok(Duration::from_secs(DEFAULT_SECONDS));
    };
    let bad = |why: &str| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid query parameter `seconds`",
        detail: format!(
            "`seconds={raw}` {why}; expected a whole number from 1 to {MAX_CAPTURE_SECONDS}"
        ),
    };
    let n: u64 = raw
        .trim()
        .parse()
        .map_err(|_| bad("is not a whole number"))?;
    if n == 0 || n > MAX_CAPTURE_SECONDS {
        return Err(bad("is out of range"));
    }
    Ok(Duration::from_secs(n))
}

fn require_cpu(profiler: &Profiler) -> Result<(), ApiError> {
    if profiler.settings().has(ProfileType::Cpu) {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "profile type not enabled",
            detail: "`cpu` is not in [profiling] profile_types".to_owned(),
        })
    }
}

async fn profile(
    State(profiler): State<Profiler>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_cpu(&profiler)?;
    let profile = profiler.capture_cpu(seconds(&query)?).await?;
    Ok((
        sample_headers(&profile),
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"profile.pb.gz\"",
            ),
        ],
        profile.pprof_gz,
    )
        .into_response())
}

async fn flamegraph(
    State(profiler): State<Profiler>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_cpu(&profiler)?;
    let profile = profiler.capture_cpu(seconds(&query)?).await?;
    let headers = sample_headers(&profile);
    let svg = profile.flamegraph_svg.unwrap_or_default();
    Ok((headers, [(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn heap(State(profiler): State<Profiler>) -> Result<Response, ApiError> {
    if !profiler.settings().wants_heap() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "profile type not enabled",
            detail: "none of alloc_objects, alloc_space, inuse_objects, inuse_space is in \
                     [profiling] profile_types"
                .to_owned(),
        });
    }
    match heap::dump_heap().await {
        Ok(pprof_gz) => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"heap.pb.gz\"",
                ),
            ],
            pprof_gz,
        )
            .into_response()),
        Err(e @ HeapError::Dump(_)) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "heap profile failed",
            detail: e.to_string(),
        }),
        Err(e) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "heap profiling not available",
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str) -> HashMap<String, String> {
        HashMap::from([("seconds".to_owned(), v.to_owned())])
    }

    #[test]
    fn seconds_default_and_bounds() {
        assert_eq!(seconds(&HashMap::new()).ok(), Some(Duration::from_secs(30)));
        assert_eq!(seconds(&q("300")).ok(), Some(Duration::from_secs(300)));
        for bad in ["0", "301", "abc", "-1", "1.5", ""] {
            let err = seconds(&q(bad)).err().map(|e| (e.status, e.detail));
            let (status, detail) = err.unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(detail.contains(&format!("`seconds={bad}`")), "{detail}");
        }
    }
}
