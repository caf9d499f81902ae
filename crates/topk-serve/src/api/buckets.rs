//! `GET /api/v1/buckets`: the buckets that have data, and which of them are exact.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use topk_core::time::Granularity;

use super::breakdowns::{parse_filter, FILTERS};
use super::{bad, check_order, params, parse_granularity, parse_instant, ApiError, ErrorReply, Shared};
use crate::query::{self, BucketState};

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BucketList {
    #[schema(value_type = String)]
    granularity: Granularity,
    buckets: Vec<BucketState>,
}

/// Every bucket of a granularity that has data, in a range, and its source.
#[utoipa::path(
    get,
    path = "/api/v1/buckets",
    tag = "buckets",
    params(
        ("granularity" = String, Query, description = "hour, day, week, month or year"),
        ("from" = Option<String>, Query, description = "Only buckets starting at or after this"),
        ("to" = Option<String>, Query, description = "Only buckets starting before this"),
    ),
    responses(
        (status = 200, description = "The buckets, oldest first", body = BucketList),
        (status = 400, description = "Bad parameter", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn buckets(State(state): State<Shared>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let mut allowed = vec!["granularity", "from", "to"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    let breakdown = parse_filter(&p, &state.cfg.breakdowns)?.unwrap_or_default();
    let Some(g) = parse_granularity(&p)? else {
        return Err(bad("granularity: one of hour, day, week, month, year"));
    };
    let from = parse_instant(&p, "from")?.unwrap_or(i64::MIN);
    let to = parse_instant(&p, "to")?.unwrap_or(i64::MAX);
    check_order(from, to)?;
    let rules = state.rules();
    let buckets = state.stores.with_breakdown(breakdown, move |s| query::buckets(s, g, from, to, rules)).await?;
    Ok(Json(BucketList { granularity: g, buckets }).into_response())
}
