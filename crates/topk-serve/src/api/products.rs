//! `GET /api/v1/products?q=`: finding products; `GET /api/v1/products/{id}`: one
//! product's counts and rank over time.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use topk_core::time::{Bucket, Granularity};

use super::breakdowns::{parse_filter, FILTERS};
use super::{bad, check_order, params, parse_granularity, parse_instant, parse_limit, ApiError, ErrorReply, Shared};
use crate::query::{self, ProductHistory, Trends};

/// A catalog entry: the product, with the newest name and category its events carried.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CatalogEntry {
    product_id: String,
    name: Option<String>,
    category: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Matches {
    products: Vec<CatalogEntry>,
}

/// Products whose id, or name (case-insensitive), starts with `q`.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "products",
    params(
        ("q" = String, Query, description = "The start of a product id or name"),
        ("limit" = Option<usize>, Query, description = "At most this many, 1 to 100 (default 20)"),
    ),
    responses(
        (status = 200, description = "Matches: ids first, then names", body = Matches),
        (status = 400, description = "Bad parameter", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn search_products(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(query, &["q", "limit"])?;
    let q = p.get("q").map(|q| q.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return Err(bad("q: give the start of a product id or name"));
    }
    let limit = parse_limit(&p, 20, 100)?;
    let found = state.stores.with(move |s| s.search_products(&q, limit)).await?;
    let products = found
        .into_iter()
        .map(|p| CatalogEntry { product_id: p.product_id, name: p.name, category: p.category })
        .collect();
    Ok(Json(Matches { products }).into_response())
}

/// A product's units, revenue, error bound and rank per bucket over a range (default:
/// the last 30 days, or 48 hours, 26 weeks, 24 months, 10 years).
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product id, exactly as events carry it"),
        ("granularity" = Option<String>, Query, description = "hour, day (default), week, month or year"),
        ("from" = Option<String>, Query, description = "Range start (default: 30 days, 48 hours, 26 weeks, 24 months or 10 years back)"),
        ("to" = Option<String>, Query, description = "Range end (default: the end of the current bucket)"),
    ),
    responses(
        (status = 200, description = "One point per bucket", body = ProductHistory),
        (status = 400, description = "Bad parameter, or an id that breaks the product_id rules", body = ErrorReply),
        (status = 404, description = "A product never seen: not in the catalog and no sale in the range", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn product(
    State(state): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["granularity", "from", "to"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    topk_core::event::check_id("product id", &id).map_err(bad)?;
    let breakdown = parse_filter(&p, &state.cfg.breakdowns)?.unwrap_or_default();
    let span = |g| match g {
        Granularity::Hour => 48,
        Granularity::Day => 30,
        Granularity::Week => 26,
        Granularity::Month => 24,
        Granularity::Year => 10,
    };
    let (g, from, to) = window(&p, span, 2000)?;
    let rules = state.rules();
    let shown = id.clone();
    match state.stores.with_breakdown(breakdown, move |s| query::history(s, &id, g, from, to, rules)).await? {
        Some(history) => Ok(Json(history).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("product {shown:?} was never seen: no event named it (ids are exact, case included)"),
        )),
    }
}

/// Most ids and buckets one trends query may ask for.
const MAX_TREND_IDS: usize = 100;
const MAX_TREND_BUCKETS: i64 = 200;

/// Several products' units per bucket over a range, one read per bucket: the sparklines
/// beside a list's rows.
#[utoipa::path(
    get,
    path = "/api/v1/trends",
    tag = "products",
    params(
        ("ids" = String, Query, description = "Product ids, comma-separated (at most 100)"),
        ("granularity" = Option<String>, Query, description = "hour, day (default), week, month or year"),
        ("from" = Option<String>, Query, description = "Range start (default: 12 buckets before to)"),
        ("to" = Option<String>, Query, description = "Range end (default: the end of the current bucket); at most 200 buckets"),
    ),
    responses(
        (status = 200, description = "Each product's units per bucket", body = Trends),
        (status = 400, description = "Bad parameter: the message names it and says why", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn trends(State(state): State<Shared>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let mut allowed = vec!["ids", "granularity", "from", "to"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    let breakdown = parse_filter(&p, &state.cfg.breakdowns)?.unwrap_or_default();
    let ids: Vec<String> =
        p.get("ids").map_or("", String::as_str).split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    if ids.is_empty() || ids.len() > MAX_TREND_IDS {
        return Err(bad(format!("ids: give 1 to {MAX_TREND_IDS} product ids, comma-separated")));
    }
    for id in &ids {
        topk_core::event::check_id("ids", id).map_err(bad)?;
    }
    let (g, from, to) = window(&p, |_| 12, MAX_TREND_BUCKETS)?;
    let rules = state.rules();
    let trends = state.stores.with_breakdown(breakdown, move |s| query::trends(s, &ids, g, from, to, rules)).await?;
    Ok(Json(trends).into_response())
}

/// `granularity` (default day), `to` (default the end of the current bucket) and `from`
/// (default `span(granularity)` buckets before `to`), checked: at most `max` buckets.
fn window(
    p: &std::collections::HashMap<String, String>,
    span: impl Fn(Granularity) -> usize,
    max: i64,
) -> Result<(Granularity, i64, i64), ApiError> {
    let g = parse_granularity(p)?.unwrap_or(Granularity::Day);
    let to = parse_instant(p, "to")?.unwrap_or_else(|| Bucket::containing(g, topk_core::clock::now_ms()).end_ms());
    let from = match parse_instant(p, "from")? {
        Some(from) => from,
        None => (0..span(g)).fold(Bucket::containing(g, to - 1), |b, _| b.prev()).next().start_ms,
    };
    check_order(from, to)?;
    let buckets = (to - from) / Bucket::containing(g, from).duration_ms().max(1);
    if buckets > max {
        return Err(bad(format!("about {buckets} {g} buckets; at most {max} per query: use a coarser granularity")));
    }
    Ok((g, from, to))
}
