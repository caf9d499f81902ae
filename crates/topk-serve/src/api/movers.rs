//! `GET /api/v1/movers`: the products whose sales changed the most against a baseline.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use topk_core::time::Bucket;

use super::breakdowns::{parse_filter, FILTERS};
use super::export::{movers_csv, Format};
use super::top::{cached_answer, parse_by, parse_k, parse_period, range, refusable};
use super::{bad, instant, params, ApiError, ErrorReply, Shared};
use crate::query::{self, Change, Direction, MoversAnswer, MoversRequest};

/// The biggest movers of a period against its baseline, exact where both are.
#[utoipa::path(
    get,
    path = "/api/v1/movers",
    tag = "top",
    params(
        ("granularity" = Option<String>, Query, description = "hour, day, week, month or year (with start; or from and to instead)"),
        ("start" = Option<String>, Query, description = "The bucket, as for /api/v1/top; default the current one"),
        ("from" = Option<String>, Query, description = "Range start (inclusive), as for /api/v1/top"),
        ("to" = Option<String>, Query, description = "Range end (exclusive), as for /api/v1/top"),
        ("baseline" = Option<String>, Query, description = "previous (default: the bucket before, or the range of the same length before), same_last_year (the same bucket, or range, a year earlier), or FROM,TO (any range, bounds as for from and to)"),
        ("direction" = Option<String>, Query, description = "up (default: the biggest gains) or down (the biggest drops)"),
        ("change" = Option<String>, Query, description = "absolute (default) or relative (change over the baseline's count; products new in the period have none and are not ranked)"),
        ("min_count" = Option<i64>, Query, description = "Rank only products that sold at least this many in the period or the baseline (relative: in the baseline); default 0 (relative: 1)"),
        ("k" = Option<usize>, Query, description = "How many rows, 1 to 1000 (default 10)"),
        ("by" = Option<String>, Query, description = "quantity (default) or revenue"),
        ("format" = Option<String>, Query, description = "json (default) or csv: the rows as CSV, a header line first (also with Accept: text/csv)"),
    ),
    responses(
        (status = 200, description = "The movers (or, with format=csv, the rows as text/csv)", body = MoversAnswer,
            headers(("x-cache" = String, description = "hit or miss"))),
        (status = 400, description = "Bad parameter: the message names it and says why", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn movers(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed =
        vec!["granularity", "start", "from", "to", "baseline", "direction", "change", "min_count", "k", "by", "format"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    let req = parse_movers(&p)?;
    let format = Format::of(&p, &headers)?;
    let breakdown = parse_filter(&p, &state.cfg.breakdowns)?.unwrap_or_default();
    let key = format!("movers {req:?} {breakdown:?}");
    let rules = state.rules();
    let stores = state.stores.clone();
    cached_answer(&state, key, format, movers_csv, async move {
        let answer = refusable(&stores, breakdown, move |s| query::movers(s, req, rules)).await?;
        let settled = answer.exact && !answer.open;
        Ok((answer, settled))
    })
    .await
}

fn parse_movers(p: &HashMap<String, String>) -> Result<MoversRequest, ApiError> {
    let period = parse_period(p)?;
    let baseline = match p.get("baseline").map(String::as_str) {
        None | Some("previous") => query::previous(&period).map_err(|e| bad(format!("baseline: {e}")))?,
        Some("same_last_year") => query::same_last_year(&period).map_err(|e| bad(format!("baseline: {e}")))?,
        Some(other) => {
            let Some((a, b)) = other.split_once(',') else {
                return Err(bad(format!(
                    "baseline: {other:?} is not previous, same_last_year, or FROM,TO (e.g. 2026-11-01,2026-11-08)"
                )));
            };
            let (a, b) = (instant("baseline from", a)?, instant("baseline to", b)?);
            range(a, b).map_err(|e| ApiError(e.0, format!("baseline: {}", e.1)))?
        }
    };
    let direction = match p.get("direction").map(String::as_str) {
        None | Some("up") => Direction::Up,
        Some("down") => Direction::Down,
        Some(other) => return Err(bad(format!("direction: {other:?} is not one of up, down"))),
    };
    let change = match p.get("change").map(String::as_str) {
        None | Some("absolute") => Change::Absolute,
        Some("relative") => Change::Relative,
        Some(other) => return Err(bad(format!("change: {other:?} is not one of absolute, relative"))),
    };
    let min_count = match p.get("min_count") {
        None => 0,
        Some(m) => m
            .parse::<i64>()
            .ok()
            .filter(|m| *m >= 0)
            .ok_or_else(|| bad(format!("min_count: {m:?} is not a whole number of at least 0")))?,
    };
    let overlap = |a: &[Bucket], b: &[Bucket]| {
        a.iter().any(|x| b.iter().any(|y| x.start_ms < y.end_ms() && y.start_ms < x.end_ms()))
    };
    if overlap(&period, &baseline) {
        return Err(bad("baseline: it overlaps the period; a baseline must be a different time"));
    }
    Ok(MoversRequest { period, baseline, k: parse_k(p)?, by: parse_by(p)?, direction, change, min_count })
}
