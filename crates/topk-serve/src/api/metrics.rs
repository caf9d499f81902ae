//! `GET /metrics`: every metric of the process (declared in [`crate::telemetry`]).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ErrorReply, Shared};
use crate::telemetry::{Scrape, CONTENT_TYPE};

/// OpenMetrics text: ingest and API counters, each role's lag, the batch layer's runs,
/// and the speed layer's accuracy per granularity (latest scored bucket).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 503, description = "The store or the logs cannot be read", body = ErrorReply),
    )
)]
pub(super) async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let (accuracy, runs) = state.stores.with(|s| Ok((s.accuracy(1000)?, s.run_stats()?))).await?;
    // Log positions may come over the network (Kafka): off the async workers.
    let st = state.clone();
    let lags = match tokio::task::spawn_blocking(move || st.process.lags()).await {
        Ok(Ok(lags)) => lags,
        Ok(Err(e)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("reading log positions: {e}"))),
        Err(e) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reading log positions: {e}"))),
    };
    let scrape = Scrape { ingest: state.process.ingest_stats(), lags, source: state.process.source(), runs, accuracy };
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], state.telemetry.render(&scrape)).into_response())
}
