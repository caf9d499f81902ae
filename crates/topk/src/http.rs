//! The HTTP front of `topk serve`: ingest, health, and source positions for remote replay.
//!
//! `run` takes an already-bound listener, so tests bind port 0 and never race for ports.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::pipeline::{Pipeline, SourceResume};

/// Ingest requests handled at once: each may hold a large body and its parse buffers.
pub const MAX_CONCURRENT_INGESTS: usize = 4;

/// What the handlers share.
pub struct AppState {
    pub pipeline: Pipeline,
    /// Bounds concurrent ingests (memory), and lets shutdown wait for them to finish.
    pub ingests: Arc<tokio::sync::Semaphore>,
    /// Serialises ingests that carry a replay position: checking how far a source got and
    /// appending its next lines must not interleave with a retry of the same lines.
    sources: std::sync::Mutex<()>,
}

impl AppState {
    pub fn new(pipeline: Pipeline) -> Self {
        AppState {
            pipeline,
            ingests: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INGESTS)),
            sources: std::sync::Mutex::new(()),
        }
    }
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let limit = state.pipeline.cfg.max_body_bytes;
    Router::new()
        .route("/api/v1/events", post(ingest))
        .route("/api/v1/sources/{id}", get(source))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.pipeline.cfg.auth_token else { return true };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time so the token cannot be guessed byte by byte.
    given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

/// Where a request's body sits in a replayed file (`topk replay --server`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceParams {
    source: Option<u64>,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    line: Option<u64>,
}

async fn ingest(
    State(state): State<Shared>,
    Query(params): Query<SourceParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)");
    }
    let limit = state.pipeline.cfg.max_body_bytes;
    let gzip = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        // Read one byte past the limit to tell "at the limit" from "over it" (gzip bombs).
        match flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1).read_to_end(&mut out) {
            Ok(_) if out.len() > limit => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, format!("decompressed body is over {limit} bytes"))
            }
            Ok(_) => Bytes::from(out),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not valid gzip: {e}")),
        }
    } else {
        body
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(StatusCode::BAD_REQUEST, "empty body: send NDJSON, one event per line");
    }
    if params.line.is_some_and(|l| l == 0 || l > u64::MAX / 2) || params.offset > u64::MAX / 2 {
        return error(StatusCode::BAD_REQUEST, "line must be at least 1 and offset a file position");
    }
    let Ok(permit) = state.ingests.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut ingestor = state.pipeline.ingestor();
        match params.source {
            Some(id) if id != 0 => {
                let _one_at_a_time = state.sources.lock().unwrap_or_else(|e| e.into_inner());
                let (mut resume, _) = SourceResume::load(&state.pipeline.events, id)?;
                let line = params.line.unwrap_or(1);
                ingestor.ingest_ndjson(&body, line, params.offset, Some(&mut resume))
            }
            _ => ingestor.ingest_ndjson(&body, 1, 0, None),
        }
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            let status = if report.accepted == 0 && report.already_ingested == 0 && report.rejected_count > 0 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, Json(report)).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "ingest append failed");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("could not append to the events log: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {e}")),
    }
}

async fn source(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)");
    }
    match SourceResume::load(&state.pipeline.events, id) {
        Ok((_, start)) => Json(json!({ "source": id, "offset": start.pos, "line": start.line })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    match state.pipeline.failure() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(f) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {f}\n")).into_response(),
    }
}

async fn readyz(State(state): State<Shared>) -> Response {
    healthz(State(state)).await
}

/// Prometheus text exposition: the speed layer's accuracy, per granularity, from the most
/// recently scored bucket (the batch layer scores each bucket when it closes it).
async fn metrics(State(state): State<Shared>) -> Response {
    let path = state.pipeline.cfg.store_path();
    let scored = tokio::task::spawn_blocking(move || {
        use topk_store::Store;
        topk_store::SqliteStore::open(path)?.accuracy(1000)
    })
    .await;
    let records = match scored {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("reading the store: {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut out = String::new();
    type Field = fn(&topk_core::accuracy::Accuracy) -> f64;
    let gauges: [(&str, &str, Field); 5] = [
        ("precision_at_10", "share of the speed layer's top 10 in the true top 10", |a| a.precision_at_10),
        ("precision_at_100", "share of the speed layer's top 100 in the true top 100", |a| a.precision_at_100),
        ("max_relative_error", "largest relative error over the true top 10", |a| a.max_relative_error),
        ("mean_relative_error", "mean relative error over the true top 10", |a| a.mean_relative_error),
        ("bound_coverage", "share of reported rows whose true count lay inside the error bound", |a| a.bound_coverage),
    ];
    for (name, help, field) in gauges {
        out.push_str(&format!(
            "# HELP topk_speed_{name} {help}, latest scored bucket\n# TYPE topk_speed_{name} gauge\n"
        ));
        for g in topk_core::time::Granularity::ALL {
            // Newest first: the first record of a granularity is its latest.
            if let Some(r) = records.iter().find(|r| r.bucket.granularity == g) {
                out.push_str(&format!("topk_speed_{name}{{granularity=\"{}\"}} {}\n", g.as_str(), field(&r.accuracy)));
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
