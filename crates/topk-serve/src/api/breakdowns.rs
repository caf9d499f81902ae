//! Breakdowns in the API: the filters (`country=DE`, `category=toys`, `city=…`) that pick
//! one value's lists, `group_by` (the top K of each of a period's biggest values), and
//! `GET /api/v1/dimensions/{name}`, the values of a dimension with their totals.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use topk_core::breakdown::{split_value, Breakdowns, DimSet, Dimension, OTHER};
use topk_core::time::{Bucket, Granularity};
use topk_store::{By, ServingStore, StoreError};

use super::{bad, params, parse_instant, parse_limit, ApiError, ErrorReply, Shared};

/// The filter parameters, one per dimension.
pub(super) const FILTERS: [&str; 3] = ["country", "city", "category"];

/// The breakdown the filters in `p` pick: `None` without filters; a 400 naming the
/// configured sets when they match none.
pub(super) fn parse_filter(p: &HashMap<String, String>, breakdowns: &Breakdowns) -> Result<Option<String>, ApiError> {
    let given: Vec<(Dimension, &str)> =
        Dimension::ALL.into_iter().filter_map(|d| p.get(d.name()).map(|v| (d, v.as_str()))).collect();
    if given.is_empty() {
        return Ok(None);
    }
    if let Some((d, _)) = given.iter().find(|(_, v)| v.is_empty()) {
        return Err(bad(format!("{}: give a value (\"(none)\" for events without one)", d.name())));
    }
    let dims: Vec<Dimension> = given.iter().map(|(d, _)| *d).collect();
    let set = configured(breakdowns, DimSet::of(&dims))?;
    let values: Vec<&str> = given.iter().map(|(_, v)| *v).collect();
    Ok(Some(set.key(&set.value_from(&values))))
}

/// `dims` if it is a configured set, else a 400 that names the configured ones.
fn configured(breakdowns: &Breakdowns, dims: DimSet) -> Result<DimSet, ApiError> {
    breakdowns.find(dims).ok_or_else(|| {
        let names = breakdowns.names();
        let configured = if names.is_empty() {
            "none are configured (breakdowns = [])".to_string()
        } else {
            format!("the configured ones are {}", names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "))
        };
        bad(format!("there are no lists broken down by {dims:?}; {configured}", dims = dims.to_string()))
    })
}

/// `group_by=country&groups=10` (with the other filters, if any): the set, the filters'
/// values it must match, and how many groups.
#[derive(Debug)]
pub(super) struct GroupBy {
    pub set: DimSet,
    /// Per dimension of the set, the value a filter fixes it to.
    fixed: Vec<Option<String>>,
    pub groups: usize,
}

pub(super) fn parse_group_by(
    p: &HashMap<String, String>,
    breakdowns: &Breakdowns,
) -> Result<Option<GroupBy>, ApiError> {
    let Some(name) = p.get("group_by") else {
        if p.contains_key("groups") {
            return Err(bad("groups: only with group_by"));
        }
        return Ok(None);
    };
    let by = Dimension::parse(name)
        .ok_or_else(|| bad(format!("group_by: {name:?} is not one of country, city, category")))?;
    if p.contains_key(by.name()) {
        return Err(bad(format!("group_by={name} and a {name} filter: give one of them")));
    }
    let filters: Vec<Dimension> = Dimension::ALL.into_iter().filter(|d| p.contains_key(d.name())).collect();
    let set = configured(breakdowns, DimSet::of(&[filters.as_slice(), &[by]].concat()))?;
    let groups = match p.get("groups") {
        None => 10,
        Some(g) => match g.parse::<usize>() {
            Ok(g) if (1..=50).contains(&g) => g,
            _ => return Err(bad(format!("groups: {g:?} is not a whole number from 1 to 50"))),
        },
    };
    let fixed = set.dims().map(|d| p.get(d.name()).cloned()).collect();
    Ok(Some(GroupBy { set, fixed, groups }))
}

/// One value of a set in a period, with its totals.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ValueTotal {
    /// The value (for a set of several dimensions, its values joined by `|`).
    pub value: String,
    /// Its breakdown key, as stored (`country=DE`).
    pub breakdown: String,
    /// Net quantity in the period.
    pub count: i64,
    /// Net revenue in the period (0 where only the speed layer has counted it).
    pub revenue_cents: i64,
}

/// The values of `set` (matching `fixed`) over `buckets`, biggest by `by` first.
pub(super) fn value_totals(
    s: &mut dyn ServingStore,
    set: DimSet,
    fixed: &[Option<String>],
    buckets: &[Bucket],
    by: By,
) -> Result<Vec<ValueTotal>, StoreError> {
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    for &b in buckets {
        for (key, count, revenue) in s.breakdown_values(b, &set.key_prefix())? {
            let t = totals.entry(key).or_default();
            t.0 = t.0.saturating_add(count);
            t.1 = t.1.saturating_add(revenue);
        }
    }
    let prefix = set.key_prefix();
    let mut out: Vec<ValueTotal> = totals
        .into_iter()
        .filter_map(|(key, (count, revenue_cents))| {
            let value = key.strip_prefix(&prefix)?.to_string();
            let parts = split_value(&value);
            let matches = fixed.iter().zip(&parts).all(|(f, v)| f.as_ref().is_none_or(|f| f == v));
            matches.then_some(ValueTotal { value, breakdown: key, count, revenue_cents })
        })
        .collect();
    let measure = |v: &ValueTotal| match by {
        By::Quantity => v.count,
        By::Revenue => v.revenue_cents,
    };
    out.sort_by(|a, b| measure(b).cmp(&measure(a)).then_with(|| a.value.cmp(&b.value)));
    Ok(out)
}

impl GroupBy {
    /// The values of the group's set that the filters fix, over `buckets`.
    pub fn values(&self, s: &mut dyn ServingStore, buckets: &[Bucket], by: By) -> Result<Vec<ValueTotal>, StoreError> {
        value_totals(s, self.set, &self.fixed, buckets, by)
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Configured {
    /// The dimension sets with lists of their own, such as `country` or `country,category`:
    /// the filters (and `group_by` with filters) that `/api/v1/top` accepts.
    sets: Vec<String>,
    /// Distinct values per set with lists of their own; later ones count under `(other)`.
    max_values: usize,
}

/// The configured breakdowns: which filters the other endpoints accept.
#[utoipa::path(
    get,
    path = "/api/v1/breakdowns",
    tag = "breakdowns",
    responses((status = 200, description = "The configured dimension sets", body = Configured))
)]
pub(super) async fn configured_sets(State(state): State<Shared>) -> Response {
    let b = &state.cfg.breakdowns;
    Json(Configured { sets: b.names(), max_values: b.max_values }).into_response()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DimensionValues {
    /// The dimension.
    dimension: String,
    from: String,
    to: String,
    /// The values, biggest first (by net quantity); `(none)` counts events without one,
    /// `(other)` the values past `breakdown_max_values`.
    values: Vec<ValueTotal>,
    /// Whether the set has admitted `breakdown_max_values` values: later ones count under
    /// `(other)`.
    full: bool,
}

/// The values of a dimension in a period, with their totals: what a filter picker offers.
#[utoipa::path(
    get,
    path = "/api/v1/dimensions/{name}",
    tag = "breakdowns",
    params(
        ("name" = String, Path, description = "country, city or category: a dimension configured as a breakdown of its own"),
        ("q" = Option<String>, Query, description = "Only values starting with this (case-insensitive)"),
        ("from" = Option<String>, Query, description = "Period start, like /api/v1/top's (default: the start of the current year)"),
        ("to" = Option<String>, Query, description = "Period end (default: the end of the current year)"),
        ("limit" = Option<usize>, Query, description = "At most this many, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "The values, biggest first", body = DimensionValues),
        (status = 400, description = "Bad parameter, or a dimension without lists of its own", body = ErrorReply),
        (status = 503, description = "The store cannot be read, or max_queued_queries queries already wait for it (retry after Retry-After seconds)", body = ErrorReply),
    )
)]
pub(super) async fn dimension(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(query, &["q", "from", "to", "limit"])?;
    let dim = Dimension::parse(&name)
        .ok_or_else(|| bad(format!("{name:?} is not a dimension: one of country, city, category")))?;
    let set = configured(&state.cfg.breakdowns, DimSet::of(&[dim]))?;
    let year = Bucket::containing(Granularity::Year, topk_core::clock::now_ms());
    let from = parse_instant(&p, "from")?.unwrap_or(year.start_ms);
    let to = parse_instant(&p, "to")?.unwrap_or(year.end_ms());
    let buckets = super::top::range(from, to)?;
    let limit = parse_limit(&p, 100, 1000)?;
    let q = p.get("q").map(|q| q.trim().to_lowercase()).unwrap_or_default();
    let max_values = state.cfg.breakdowns.max_values;
    let (mut values, admitted) = state
        .stores
        .with(move |s| {
            Ok((value_totals(s, set, &[None], &buckets, By::Quantity)?, s.admitted_count(&set.to_string())?))
        })
        .await?;
    values.retain(|v| v.value.to_lowercase().starts_with(&q));
    values.truncate(limit);
    let label = topk_core::timestamp::format_rfc3339;
    let answer = DimensionValues {
        dimension: dim.name().to_string(),
        from: label(from),
        to: label(to),
        values,
        full: admitted >= max_values as i64,
    };
    Ok(Json(answer).into_response())
}

/// The note an answer of `breakdown` carries about values past `breakdown_max_values`,
/// given whether its value was admitted to its set.
pub(super) fn other_note(breakdown: &str, admitted: bool, max_values: usize) -> Option<String> {
    let (set, value) = topk_core::breakdown::parse_key(breakdown)?;
    if value.split('|').any(|v| v == OTHER) {
        return Some(format!(
            "{OTHER} counts the {set} values seen after the first {max_values} (breakdown_max_values): they have no lists of their own"
        ));
    }
    (!admitted).then(|| {
        format!(
            "{value:?} has no exact lists of its own in {set}: it has not been seen in an hour the batch layer has summed, or it came after the set's first {max_values} values (breakdown_max_values) and counts under {OTHER}"
        )
    })
}
