//! `GET /api/v1/projection`: the projected end of an open hour, day, week, month or year.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use topk_core::time::Bucket;

use super::breakdowns::{parse_filter, FILTERS};
use super::export::{projection_csv, Format};
use super::top::{cached_answer, parse_by, parse_k, refusable};
use super::{bad, params, parse_granularity, ApiError, ErrorReply, Shared};
use crate::query::{self, ProjectionAnswer};

/// Each listed product's projected count at the end of an open period, with an 80 %
/// interval, from its run rate so far and the shape of the same hours of the week in the
/// last four weeks. Every number is labelled: `counted` so far, or `projected`.
#[utoipa::path(
    get,
    path = "/api/v1/projection",
    tag = "top",
    params(
        ("granularity" = String, Query, description = "hour, day, week, month or year"),
        ("start" = Option<String>, Query, description = "The bucket, as for /api/v1/top; default the current one. It must be open: ended ones are counted (ask /api/v1/top), future ones have nothing to project from"),
        ("k" = Option<usize>, Query, description = "How many rows, 1 to 1000 (default 10)"),
        ("by" = Option<String>, Query, description = "quantity (default) or revenue"),
        ("format" = Option<String>, Query, description = "json (default) or csv: the rows as CSV, a header line first (also with Accept: text/csv)"),
    ),
    responses(
        (status = 200, description = "The projection (or, with format=csv, its rows as text/csv)", body = ProjectionAnswer,
            headers(("x-cache" = String, description = "hit or miss"))),
        (status = 400, description = "Bad parameter, or a period that is not open: the message says which and why", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn projection(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["granularity", "start", "k", "by", "format"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    let Some(g) = parse_granularity(&p)? else {
        return Err(bad("granularity: missing; one of hour, day, week, month, year"));
    };
    let bucket = match p.get("start") {
        Some(s) => Bucket::parse(g, s).map_err(|e| bad(format!("start: {e}")))?,
        None => Bucket::containing(g, topk_core::clock::now_ms()),
    };
    let (k, by) = (parse_k(&p)?, parse_by(&p)?);
    let format = Format::of(&p, &headers)?;
    let breakdown = parse_filter(&p, &state.cfg.breakdowns)?.unwrap_or_default();
    let key = format!("projection {bucket:?} {k} {} {breakdown:?}", by.as_str());
    let rules = state.rules();
    let stores = state.stores.clone();
    cached_answer(&state, key, format, projection_csv, async move {
        let answer = refusable(&stores, breakdown, move |s| query::project(s, bucket, k, by, rules)).await?;
        Ok((answer, false))
    })
    .await
}
