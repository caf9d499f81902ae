//! `GET /healthz`, `GET /readyz`: 200, or 503 saying what is wrong.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// 200 "ok", or 503 naming the role that failed (or why the Kafka source is paused).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses(
        (status = 200, description = "Healthy", body = String, content_type = "text/plain"),
        (status = 503, description = "A role failed within the last 30 s, an ingest could not append, or the source is paused", body = String, content_type = "text/plain"),
    )
)]
pub(super) async fn healthz(State(state): State<Shared>) -> Response {
    if let Some(why) = state.process.source().and_then(|(_, s)| s.paused()) {
        let hint = "resume with `topk resume --server URL` or POST /api/v1/sources/kafka/resume";
        return (StatusCode::SERVICE_UNAVAILABLE, format!("source paused: {why}; {hint}\n")).into_response();
    }
    match state.process.failure() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(f) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {f}\n")).into_response(),
    }
}

/// The same as `/healthz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready, and why", body = String, content_type = "text/plain"),
    )
)]
pub(super) async fn readyz(state: State<Shared>) -> Response {
    healthz(state).await
}
