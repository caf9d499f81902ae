//! `POST /api/v1/events`: NDJSON sale events into the events log.

use std::io::Read;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use topk_ingest::{IngestReport, SourceResume};

use super::{bad, ApiError, Authorized, ErrorReply, Shared};

use crate::state::MAX_CONCURRENT_INGESTS;

/// How long an ingest request waits for one of the [`MAX_CONCURRENT_INGESTS`] places
/// before it is turned away with 503.
const INGEST_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

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

/// Decodes a gzip body, every member of it (as `gzip -d` does), into at most `limit`
/// bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    // One byte past the limit tells "at the limit" from "over it" (gzip bombs).
    match flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => {
            Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("decompressed body is over {limit} bytes")))
        }
        Ok(_) => Ok(out),
        Err(e) => Err(bad(format!(
            "body is not valid gzip after {} decompressed bytes: {e} (trailing bytes after the last gzip member are refused)",
            out.len()
        ))),
    }
}

/// Appends the valid lines durably (they are safe when this answers) and reports every
/// rejected one. The request takes one of [`MAX_CONCURRENT_INGESTS`] places before its
/// body is read, so at most that many bodies (and their decompressed and encoded
/// copies) are in memory at once, whatever the number of clients.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "events",
    params(
        ("source" = Option<u64>, Query, description = "A replayed file's id (topk replay --server): lines it already has are skipped"),
        ("offset" = Option<u64>, Query, description = "The body's byte offset in that file"),
        ("line" = Option<u64>, Query, description = "The body's first line number in that file (from 1)"),
    ),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "One JSON sale event per line; Content-Encoding: gzip accepted (every member)"),
    responses(
        (status = 200, description = "What was accepted and rejected", body = IngestReport),
        (status = 400, description = "Every line was rejected, the body is empty, not valid gzip (trailing bytes after the last member are refused), gzip sent without Content-Encoding, or a query parameter is wrong", body = ErrorReply),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorReply),
        (status = 413, description = "Body over max_body_bytes, before or after decompression", body = ErrorReply),
        (status = 415, description = "A Content-Encoding other than identity or gzip", body = ErrorReply),
        (status = 503, description = "The events log cannot be appended to (a full disk), or no place came free within 30 s", body = ErrorReply),
    ),
    security(("bearer" = []))
)]
pub(super) async fn ingest(
    State(state): State<Shared>,
    _: Authorized,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let params: SourceParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| bad(format!("query string: {e} (allowed: source, offset, line)")))?;
    if params.line.is_some_and(|l| l == 0 || l > u64::MAX / 2) || params.offset > u64::MAX / 2 {
        return Err(bad("line must be at least 1 and offset a file position"));
    }
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported: send the body plain or gzip-compressed"),
            ))
        }
    };
    let permit = match tokio::time::timeout(INGEST_QUEUE_WAIT, state.ingests.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())),
        Err(_) => {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                "{MAX_CONCURRENT_INGESTS} ingest requests are being processed and this one waited {} s: retry later",
                INGEST_QUEUE_WAIT.as_secs()
            ),
            ))
        }
    };
    let limit = state.cfg.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("body is over {limit} bytes (max_body_bytes)"))
        } else {
            bad(format!("reading the body: {e}"))
        }
    })?;
    let body = if gzip {
        Bytes::from(gunzip(&body, limit)?)
    } else if body.starts_with(&GZIP_MAGIC) {
        return Err(bad("the body looks gzip-compressed: send it with Content-Encoding: gzip"));
    } else {
        body
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty body: send NDJSON, one event per line"));
    }
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut ingestor = st.process.ingestor();
        match params.source {
            Some(id) if id != 0 => {
                let _one_at_a_time = st.sources.lock().unwrap_or_else(|e| e.into_inner());
                let (mut resume, _) = SourceResume::load(&**st.process.events(), id)?;
                let line = params.line.unwrap_or(1);
                ingestor.ingest_ndjson(&body, line, params.offset, Some(&mut resume))
            }
            _ => ingestor.ingest_ndjson(&body, 1, 0, None),
        }
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            let status = if report.nothing_accepted() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            Ok((status, Json(report)).into_response())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "ingest append failed");
            state.process.record_failure(format!("ingest: could not append to the events log: {e}"));
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("could not append to the events log: {e}")))
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {e}"))),
    }
}
