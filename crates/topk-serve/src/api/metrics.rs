//! `GET /metrics`: every metric of the process (declared in [`crate::telemetry`]).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use topk_core::time::{Bucket, Granularity};

use super::{ApiError, ErrorReply, Shared};
use crate::query::{self, Backtest, QueryError};
use crate::state::AppState;
use crate::telemetry::{Scrape, CONTENT_TYPE};

/// Where in an ended day its projection is scored for the metrics.
const SCORED_AT: [f64; 3] = [0.25, 0.5, 0.75];

impl AppState {
    /// How the projection of the last ended day did at 25, 50 and 75 % of it (see
    /// `query::backtest`): computed once the day is exact, then kept until the next day.
    async fn projection_scores(&self) -> Result<Vec<Backtest>, ApiError> {
        let day = Bucket::containing(Granularity::Day, topk_core::clock::now_ms()).prev();
        if let Some((d, scores)) = &*self.projection_scores.lock().unwrap_or_else(|e| e.into_inner()) {
            if *d == day.start_ms {
                return Ok(scores.clone());
            }
        }
        let scores = self
            .stores
            .with(move |s| {
                let mut scores = Vec::new();
                for at in SCORED_AT {
                    match query::backtest(s, day, at, 10) {
                        Ok(Some(b)) => scores.push(b),
                        Ok(None) | Err(QueryError::Refused(_)) => {}
                        Err(QueryError::Store(e)) => return Err(e),
                    }
                }
                Ok(scores)
            })
            .await?;
        if !scores.is_empty() {
            *self.projection_scores.lock().unwrap_or_else(|e| e.into_inner()) = Some((day.start_ms, scores.clone()));
        }
        Ok(scores)
    }
}

/// OpenMetrics text: ingest and API counters, each role's lag, the batch layer's runs,
/// the speed layer's accuracy per granularity (latest scored bucket) and how the last
/// ended day's projection did.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 503, description = "The store or the logs cannot be read, or max_queued_queries queries already wait for the store", body = ErrorReply),
    )
)]
pub(super) async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let sets = state.cfg.breakdowns.names();
    let max_values = state.cfg.breakdowns.max_values;
    let (accuracy, runs, breakdowns) = state
        .stores
        .with(move |s| {
            let mut breakdowns = Vec::with_capacity(sets.len());
            for set in sets {
                let n = s.admitted_count(&set)?;
                breakdowns.push((set, n, max_values));
            }
            Ok((s.accuracy(1000)?, s.run_stats()?, breakdowns))
        })
        .await?;
    // Log positions may come over the network (Kafka): off the async workers.
    let st = state.clone();
    let lags = match tokio::task::spawn_blocking(move || st.process.lags()).await {
        Ok(Ok(lags)) => lags,
        Ok(Err(e)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("reading log positions: {e}"))),
        Err(e) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reading log positions: {e}"))),
    };
    let projections = state.projection_scores().await?;
    let scrape = Scrape {
        ingest: state.process.ingest_stats(),
        lags,
        source: state.process.source(),
        runs,
        accuracy,
        projections: &projections,
        breakdowns,
    };
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], state.telemetry.render(&scrape)).into_response())
}
