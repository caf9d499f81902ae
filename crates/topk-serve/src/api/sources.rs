//! Sources: how far a replayed file has been ingested (`topk replay --server` resumes
//! from it), and the plain Kafka source of a `topk source` process.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use topk_ingest::SourceResume;

use super::{ApiError, Authorized, ErrorReply, Shared};

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SourcePosition {
    source: u64,
    /// Byte offset in the file below which every line is in the log.
    offset: u64,
    /// Lines up to that offset.
    line: u64,
}

/// How far a replay source has been ingested.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = u64, Path, description = "The file's source id (topk replay computes it)")),
    responses(
        (status = 200, description = "Where to resume", body = SourcePosition),
        (status = 400, description = "The id is not a whole number (0 to 2^64 - 1)", body = ErrorReply),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorReply),
        (status = 503, description = "The events log cannot be read", body = ErrorReply),
    ),
    security(("bearer" = []))
)]
pub(super) async fn source(
    State(state): State<Shared>,
    _: Authorized,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    // On Kafka this reads the topic: off the async workers.
    let st = state.clone();
    match tokio::task::spawn_blocking(move || SourceResume::load(&**st.process.events(), id)).await {
        Ok(Ok((_, start))) => {
            Ok(Json(SourcePosition { source: id, offset: start.pos, line: start.line }).into_response())
        }
        Ok(Err(e)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct KafkaSource {
    /// The topic read; absent when this process runs no source.
    topic: Option<String>,
    /// Why the source is paused, if it is.
    paused: Option<String>,
    consumed: u64,
    dead_letters: u64,
}

/// The plain Kafka source: its topic, whether it is paused and why, and its counters.
#[utoipa::path(
    get,
    path = "/api/v1/sources/kafka",
    tag = "sources",
    responses((status = 200, description = "The source's state", body = KafkaSource))
)]
pub(super) async fn kafka_source(State(state): State<Shared>) -> Response {
    let reply = match state.process.source() {
        Some((topic, s)) => KafkaSource {
            topic: Some(topic.to_string()),
            paused: s.paused(),
            consumed: s.consumed.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
        },
        None => KafkaSource { topic: None, paused: None, consumed: 0, dead_letters: 0 },
    };
    Json(reply).into_response()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Resumed {
    /// Whether the source was paused (and now goes on).
    resumed: bool,
}

/// Lets a source paused by its reject rate go on (`topk resume`).
#[utoipa::path(
    post,
    path = "/api/v1/sources/kafka/resume",
    tag = "sources",
    responses(
        (status = 200, description = "Resumed, or was not paused", body = Resumed),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorReply),
        (status = 404, description = "This process runs no source", body = ErrorReply),
    ),
    security(("bearer" = []))
)]
pub(super) async fn resume_kafka_source(State(state): State<Shared>, _: Authorized) -> Result<Response, ApiError> {
    let Some((_, source)) = state.process.source() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "no source_topic is configured on this process".into()));
    };
    Ok(Json(Resumed { resumed: source.resume() }).into_response())
}
