//! One product over time: its count, source and rank in every bucket of a range, and
//! which source each bucket of a range answers from.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use topk_core::time::{Bucket, Granularity};
use topk_core::timestamp::format_rfc3339;
use topk_store::{By, ServingStore, StoreError};
use utoipa::ToSchema;

use super::{BucketState, Period, Rules, Source};

/// One bucket of a product's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPoint {
    pub start: String,
    pub label: String,
    pub source: Source,
    pub count: i64,
    pub error_bound: i64,
    pub revenue_cents: i64,
    /// Rank by quantity, when the product is on the bucket's list (top 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
}

/// A product and its count and rank per bucket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductHistory {
    pub product_id: String,
    /// The newest name its events carried.
    pub name: Option<String>,
    pub category: Option<String>,
    #[schema(value_type = String, example = "day")]
    pub granularity: Granularity,
    pub points: Vec<HistoryPoint>,
}

/// A product's count and rank in every `granularity` bucket of `[from_ms, to_ms)`;
/// `None` for a product never seen (not in the catalog, and no sale in the range).
pub fn history(
    store: &mut dyn ServingStore,
    product_id: &str,
    granularity: Granularity,
    from_ms: i64,
    to_ms: i64,
    rules: Rules,
) -> Result<Option<ProductHistory>, StoreError> {
    let period = Period::load(store, every(granularity, from_ms, to_ms), rules)?;
    let mut points = Vec::with_capacity(period.buckets.len());
    for &b in &period.buckets {
        let source = period.source(b);
        let (mut count, mut error, mut revenue, mut rank) = (0, 0, 0, None);
        match source {
            Source::Batch | Source::Pending => {
                if let Some(p) = store.product_sums(b, &[product_id])?.pop() {
                    (count, revenue) = (p.count, p.revenue_cents);
                }
                rank = store.ranks_of(b, By::Quantity, &[product_id])?.pop().map(|(_, r)| r);
            }
            Source::Speed => {
                let rows = store.speed_rows(b)?;
                match rows.iter().position(|r| r.product_id == product_id) {
                    Some(i) => {
                        let r = &rows[i];
                        (count, error, revenue, rank) = (r.count, r.error, r.revenue_cents, Some(i as i64 + 1));
                    }
                    None => error = period.speed[&b].unlisted_bound,
                }
            }
            Source::None => {}
        }
        points.push(HistoryPoint {
            start: format_rfc3339(b.start_ms),
            label: b.to_string(),
            source,
            count,
            error_bound: error,
            revenue_cents: revenue,
            rank,
        });
    }
    let known = store.products(&[product_id])?.pop();
    if known.is_none() && points.iter().all(|p| p.count == 0 && p.rank.is_none()) {
        return Ok(None);
    }
    let (name, category) = known.map_or((None, None), |p| (p.name, p.category));
    Ok(Some(ProductHistory { product_id: product_id.to_string(), name, category, granularity, points }))
}

/// Every `granularity` bucket that overlaps `[from_ms, to_ms)`, in order.
fn every(granularity: Granularity, from_ms: i64, to_ms: i64) -> Vec<Bucket> {
    let mut buckets = Vec::new();
    let mut b = Bucket::containing(granularity, from_ms);
    while b.start_ms < to_ms {
        buckets.push(b);
        b = b.next();
    }
    buckets
}

/// Some products' counts over a run of buckets: the sparklines beside a list's rows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Trends {
    #[schema(value_type = String, example = "day")]
    pub granularity: Granularity,
    /// The buckets, oldest first, and where each one's numbers come from.
    pub buckets: Vec<BucketState>,
    pub products: Vec<Trend>,
}

/// One product's count per bucket of [`Trends::buckets`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Trend {
    pub product_id: String,
    /// Net units per bucket (an estimate in a `speed` bucket); null where the speed layer
    /// did not list the product, so that nothing more is known than the bucket's bound.
    pub counts: Vec<Option<i64>>,
}

/// The counts of `ids` in every `granularity` bucket of `[from_ms, to_ms)`: one read per
/// bucket for all of them.
pub fn trends(
    store: &mut dyn ServingStore,
    ids: &[String],
    granularity: Granularity,
    from_ms: i64,
    to_ms: i64,
    rules: Rules,
) -> Result<Trends, StoreError> {
    let period = Period::load(store, every(granularity, from_ms, to_ms), rules)?;
    let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut counts: Vec<Vec<Option<i64>>> = vec![Vec::with_capacity(period.buckets.len()); ids.len()];
    for &b in &period.buckets {
        let known: HashMap<String, i64> = match period.source(b) {
            Source::Batch | Source::Pending => {
                store.product_sums(b, &wanted)?.into_iter().map(|p| (p.product_id, p.count)).collect()
            }
            Source::Speed => store.speed_rows(b)?.into_iter().map(|r| (r.product_id, r.count)).collect(),
            Source::None => HashMap::new(),
        };
        // Only the speed layer leaves a product unknown: elsewhere not found is no sale.
        let unknown = period.source(b) == Source::Speed;
        for (id, series) in ids.iter().zip(&mut counts) {
            series.push(known.get(id).copied().or((!unknown).then_some(0)));
        }
    }
    Ok(Trends {
        granularity,
        buckets: period.states(),
        products: ids.iter().cloned().zip(counts).map(|(product_id, counts)| Trend { product_id, counts }).collect(),
    })
}

/// `GET /api/v1/buckets`: every bucket of a granularity in a range, and its source.
pub fn buckets(
    store: &mut dyn ServingStore,
    granularity: Granularity,
    from_ms: i64,
    to_ms: i64,
    rules: Rules,
) -> Result<Vec<BucketState>, StoreError> {
    let mut known: BTreeMap<i64, Bucket> = BTreeMap::new();
    for e in store.exact_buckets(granularity, from_ms, to_ms)? {
        known.insert(e.bucket.start_ms, e.bucket);
    }
    for s in store.speed_buckets(granularity, from_ms, to_ms)? {
        known.insert(s.bucket.start_ms, s.bucket);
    }
    Ok(Period::load(store, known.into_values().collect(), rules)?.states())
}
