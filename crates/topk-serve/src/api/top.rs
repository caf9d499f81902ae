//! `GET /api/v1/top`: the top K of a bucket or of any hour-aligned range.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use topk_core::breakdown::OTHER;
use topk_core::time::{Bucket, Granularity};
use topk_store::{By, ServingStore, StoreError};

use super::breakdowns::{other_note, parse_filter, parse_group_by, GroupBy, ValueTotal, FILTERS};
use super::export::{top_csv, Format};
use super::{bad, check_order, params, parse_granularity, parse_instant, ApiError, ErrorReply, Shared};
use crate::cache::Cached;
use crate::query::{self, QueryError, Source, TopAnswer};
use crate::state::AppState;
use crate::stores::StorePool;

/// How long an answer may be reused: exact answers of ended periods change only when
/// late data reaches the batch layer (and then the exact generation changes too); the
/// others with every write.
const EXACT_TTL: Duration = Duration::from_secs(60);
const APPROXIMATE_TTL: Duration = Duration::from_secs(1);

/// How long the store's exact generation is trusted before it is read again: a cached
/// exact answer outlives a re-roll by at most this much.
const GENERATION_CHECK: Duration = Duration::from_millis(250);

/// The longest range one query may cover.
const MAX_RANGE_DAYS: i64 = 5 * 366;

impl AppState {
    /// The store's exact generation (see `Store::exact_generation`), read at most every
    /// [`GENERATION_CHECK`].
    async fn exact_generation(&self) -> Result<(i64, i64), ApiError> {
        if let Some((g, at)) = *self.generation.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < GENERATION_CHECK {
                return Ok(g);
            }
        }
        let g = self.stores.with(|s| s.exact_generation()).await?;
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, Instant::now()));
        Ok(g)
    }
}

/// The top K of a period, exact where the batch layer has spoken.
#[utoipa::path(
    get,
    path = "/api/v1/top",
    tag = "top",
    params(
        ("granularity" = Option<String>, Query, description = "hour, day, week, month or year (with start; or from and to instead)"),
        ("start" = Option<String>, Query, description = "The bucket: a label (2026-11-27T13, 2026-11-27, 2026-W48, 2026-11, 2026), a date, or an RFC 3339 timestamp on its boundary; default the current one"),
        ("from" = Option<String>, Query, description = "Range start (inclusive): any bucket label, or an RFC 3339 timestamp on an hour boundary"),
        ("to" = Option<String>, Query, description = "Range end (exclusive), like from; at most 1830 days after from"),
        ("k" = Option<usize>, Query, description = "How many rows, 1 to 1000 (default 10)"),
        ("by" = Option<String>, Query, description = "quantity (default) or revenue"),
        ("format" = Option<String>, Query, description = "json (default) or csv: the rows as CSV, a header line first (also with Accept: text/csv)"),
        ("order" = Option<String>, Query, description = "desc (default): the top K, best first; asc: the K worst sellers, least first, counting catalog products without a sale in the period as 0 (ties by product id). asc needs every bucket of the period exact: an open or approximate one is a 400"),
        ("country" = Option<String>, Query, description = "Only this country's sales: the lists of the configured breakdown \"country\" (with city or category too: of that configured combination). \"(none)\": events without a country; \"(other)\": values past breakdown_max_values. A combination that is not configured is a 400 naming the configured ones"),
        ("city" = Option<String>, Query, description = "Only this city's sales, like country"),
        ("category" = Option<String>, Query, description = "Only this category's sales, like country"),
        ("group_by" = Option<String>, Query, description = "country, city or category: the top K of each of the period's biggest values of that dimension (with the other filters given: of the configured combination), as a GroupedAnswer"),
        ("groups" = Option<usize>, Query, description = "With group_by: how many values, 1 to 50 (default 10)"),
    ),
    responses(
        (status = 200, description = "The period's top K (or, with format=csv, its rows as text/csv; with group_by, a GroupedAnswer)", body = TopAnswer,
            headers(("x-cache" = String, description = "hit or miss"))),
        (status = 400, description = "Bad parameter (the message names it and says why), or order=asc for a period that is not exact", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn top(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["granularity", "start", "from", "to", "k", "by", "order", "format", "group_by", "groups"];
    allowed.extend(FILTERS);
    let p = params(query, &allowed)?;
    let TopRequest { buckets, k, by, ascending } = parse_top(&p)?;
    let format = Format::of(&p, &headers)?;
    let breakdowns = &state.cfg.breakdowns;
    if let Some(group) = parse_group_by(&p, breakdowns)? {
        if ascending || format != Format::Json {
            return Err(bad("group_by answers the top K of each group, as JSON: not with order=asc or format=csv"));
        }
        return grouped(state, group, buckets, k, by).await;
    }
    let filter = parse_filter(&p, breakdowns)?;
    let key = format!("top {buckets:?} {k} {} {ascending} {filter:?}", by.as_str());
    let rules = state.rules();
    let stores = state.stores.clone();
    let max_values = breakdowns.max_values;
    cached_answer(&state, key, format, top_csv, async move {
        let breakdown = filter.clone().unwrap_or_default();
        let asked = buckets.clone();
        let mut answer = if ascending {
            refusable(&stores, breakdown.clone(), move |s| query::bottom(s, buckets, k, by, rules)).await?
        } else {
            stores.with_breakdown(breakdown.clone(), move |s| query::top(s, buckets, k, by, rules)).await?
        };
        if let Some((set, value)) = topk_core::breakdown::parse_key(&breakdown) {
            let other = set.key(OTHER);
            // A bucket without this value's numbers may hold them under the set's (other):
            // the speed layer's sketches for breakdowns were at their memory cap.
            let missing: Vec<Bucket> = if other == breakdown {
                Vec::new()
            } else {
                asked.iter().zip(&answer.buckets).filter(|(_, b)| b.source == Source::None).map(|(b, _)| *b).collect()
            };
            let (set, value) = (set.to_string(), value.to_string());
            let (admitted, in_other) = stores
                .with_breakdown(other, move |s| Ok((s.is_admitted(&set, &value)?, in_speed(s, &missing)?)))
                .await?;
            answer.notes.extend(other_note(&breakdown, admitted, max_values));
            if in_other > 0 {
                answer.notes.push(format!(
                    "in {in_other} of {} buckets the speed layer counts this value under {OTHER}: its breakdown \
                     sketches were at their memory cap (speed_breakdown_memory_mb) when the value first sold there; \
                     the exact lists will have it once the batch layer has the bucket",
                    answer.buckets.len()
                ));
            }
        }
        answer.breakdown = filter;
        let settled = answer.exact && !answer.open;
        Ok((answer, settled))
    })
    .await
}

/// How many of `buckets` the speed layer wrote for the breakdown the store is scoped to:
/// one read per granularity, over the span of that granularity's buckets.
fn in_speed(store: &mut dyn ServingStore, buckets: &[Bucket]) -> Result<usize, StoreError> {
    let mut n = 0;
    for g in Granularity::ALL {
        let starts: Vec<i64> = buckets.iter().filter(|b| b.granularity == g).map(|b| b.start_ms).collect();
        let (Some(&from), Some(&last)) = (starts.iter().min(), starts.iter().max()) else { continue };
        let written = store.speed_buckets(g, from, last + 1)?;
        n += written.iter().filter(|w| starts.contains(&w.bucket.start_ms)).count();
    }
    Ok(n)
}

/// The top K of each of a period's biggest values of a set (`group_by`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct GroupedAnswer {
    group_by: String,
    /// The groups, biggest first (by the measure ranked by).
    groups: Vec<Group>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Group {
    #[serde(flatten)]
    value: ValueTotal,
    top: TopAnswer,
}

async fn grouped(state: Shared, group: GroupBy, buckets: Vec<Bucket>, k: usize, by: By) -> Result<Response, ApiError> {
    let key = format!("group {buckets:?} {k} {} {group:?}", by.as_str());
    let rules = state.rules();
    let stores = state.stores.clone();
    let group_by = group.set.to_string();
    cached_answer(&state, key, Format::Json, |_| Vec::new(), async move {
        let groups = stores
            .with(move |s| {
                let mut values = group.values(s, &buckets, by)?;
                values.truncate(group.groups);
                let mut groups = Vec::with_capacity(values.len());
                for value in values {
                    s.set_breakdown(&value.breakdown);
                    let mut top = query::top(s, buckets.clone(), k, by, rules)?;
                    top.breakdown = Some(value.breakdown.clone());
                    groups.push(Group { value, top });
                }
                Ok(groups)
            })
            .await?;
        let settled = groups.iter().all(|g| g.top.exact && !g.top.open);
        Ok((GroupedAnswer { group_by, groups }, settled))
    })
    .await
}

/// Runs a query that some periods refuse (worst sellers, movers) on a pooled store: a
/// refusal is the client's 400, not a store failure.
pub(super) async fn refusable<T: Send + 'static>(
    stores: &Arc<StorePool>,
    breakdown: String,
    f: impl FnOnce(&mut dyn ServingStore) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    let answer = stores
        .with_breakdown(breakdown, move |s| match f(s) {
            Ok(a) => Ok(Ok(a)),
            Err(QueryError::Refused(why)) => Ok(Err(why)),
            Err(QueryError::Store(e)) => Err(e),
        })
        .await?;
    answer.map_err(bad)
}

/// An answer as JSON (or its rows as CSV, by `csv`), from the response cache where it
/// may be reused: `compute` returns the answer and whether it is settled (exact and
/// ended: reused for a minute, as long as the store's exact generation stays the same;
/// the others for a second).
pub(super) async fn cached_answer<T: serde::Serialize>(
    state: &AppState,
    key: String,
    format: Format,
    csv: fn(&T) -> Vec<u8>,
    compute: impl std::future::Future<Output = Result<(T, bool), ApiError>>,
) -> Result<Response, ApiError> {
    let cache = state.cfg.api_cache;
    // An answer is reused only while the exact rows it was computed from stay the same.
    let generation = if cache { state.exact_generation().await? } else { (0, 0) };
    let key = format!("{generation:?} {format:?} {key}");
    let compute = async {
        let (answer, settled) = compute.await?;
        let ttl = if settled { EXACT_TTL } else { APPROXIMATE_TTL };
        let body = match format {
            Format::Json => serde_json::to_vec(&answer).expect("answers serialise"),
            Format::Csv => csv(&answer),
        };
        Ok::<_, ApiError>(Cached { body: Bytes::from(body), ttl })
    };
    let (answer, hit) = if cache {
        state.cache.get_or_compute(key, compute).await.map_err(|e| ApiError(e.0, e.1.clone()))?
    } else {
        (compute.await?, false)
    };
    let headers = [
        (header::CONTENT_TYPE, format.content_type().to_string()),
        (header::CACHE_CONTROL, format!("max-age={}", answer.ttl.as_secs())),
        (header::HeaderName::from_static("x-cache"), if hit { "hit" } else { "miss" }.to_string()),
    ];
    Ok((headers, answer.body).into_response())
}

struct TopRequest {
    buckets: Vec<Bucket>,
    k: usize,
    by: By,
    /// `order=asc`: the worst sellers.
    ascending: bool,
}

/// A `/top` range: ordered, and no longer than [`MAX_RANGE_DAYS`].
fn check_range(from_ms: i64, to_ms: i64) -> Result<(), ApiError> {
    check_order(from_ms, to_ms)?;
    if to_ms - from_ms > MAX_RANGE_DAYS * 24 * topk_core::HOUR_MS {
        return Err(bad(format!(
            "the range covers {} days; one query may cover at most {MAX_RANGE_DAYS} days",
            (to_ms - from_ms) / (24 * topk_core::HOUR_MS)
        )));
    }
    Ok(())
}

fn parse_top(p: &HashMap<String, String>) -> Result<TopRequest, ApiError> {
    let ascending = match p.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(bad(format!("order: {other:?} is not one of desc, asc"))),
    };
    Ok(TopRequest { k: parse_k(p)?, by: parse_by(p)?, buckets: parse_period(p)?, ascending })
}

/// `k`: 1 to [`query::MAX_K`], default 10.
pub(super) fn parse_k(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match p.get("k") {
        None => Ok(10),
        Some(k) => match k.parse::<usize>() {
            Ok(k) if (1..=query::MAX_K).contains(&k) => Ok(k),
            _ => Err(bad(format!("k: {k:?} is not a whole number from 1 to {}", query::MAX_K))),
        },
    }
}

/// `by`: quantity (default) or revenue.
pub(super) fn parse_by(p: &HashMap<String, String>) -> Result<By, ApiError> {
    match p.get("by").map(String::as_str) {
        None | Some("quantity") => Ok(By::Quantity),
        Some("revenue") => Ok(By::Revenue),
        Some(other) => Err(bad(format!("by: {other:?} is not one of quantity, revenue"))),
    }
}

/// The period asked for: one bucket (`granularity`, `start`: default the current one) or
/// a range (`from`, `to`) as the fewest whole buckets.
pub(super) fn parse_period(p: &HashMap<String, String>) -> Result<Vec<Bucket>, ApiError> {
    let granularity = parse_granularity(p)?;
    match (granularity, p.contains_key("from") || p.contains_key("to")) {
        (Some(_), true) => Err(bad("give either granularity (and start) or from and to, not both")),
        (Some(g), false) => {
            let bucket = match p.get("start") {
                Some(s) => Bucket::parse(g, s).map_err(|e| bad(format!("start: {e}")))?,
                None => Bucket::containing(g, topk_core::clock::now_ms()),
            };
            Ok(vec![bucket])
        }
        (None, true) => {
            let (Some(from), Some(to)) = (parse_instant(p, "from")?, parse_instant(p, "to")?) else {
                return Err(bad("a range needs both from and to"));
            };
            range(from, to)
        }
        (None, false) if p.contains_key("start") => Err(bad("start needs a granularity")),
        (None, false) => Err(bad("give granularity (and optionally start), or from and to")),
    }
}

/// `[from_ms, to_ms)` as the fewest whole buckets, checked.
pub(super) fn range(from_ms: i64, to_ms: i64) -> Result<Vec<Bucket>, ApiError> {
    check_range(from_ms, to_ms)?;
    topk_core::time::decompose(from_ms, to_ms).map_err(|e| bad(e.to_string()))
}
