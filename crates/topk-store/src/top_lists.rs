//! An exact bucket's top lists (`top_lists`, by quantity and by revenue) and its totals
//! (`bucket_totals`): computed from the rows in memory by the batch layer, which has them
//! at hand after a rollup ([`write`]); rebuilt from the stored rows by Kappa after each
//! write ([`regenerate`]). Both rank the same way: by the measure, largest first, ties by
//! product id in byte order.

use topk_core::time::Bucket;

use crate::dialect::Insert;
use crate::sql::{product_sum, query, Conn, Value};
use crate::{vals, By, ProductSum, Result};

const DELETE: &str = "DELETE FROM top_lists WHERE granularity = $1 AND bucket_start = $2";
const DELETE_TOTALS: &str = "DELETE FROM bucket_totals WHERE granularity = $1 AND bucket_start = $2";
const DELETE_BREAKDOWN: &str = "DELETE FROM top_lists WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3";
/// A bucket's best `$3` rows by quantity; ties break by product id so lists are
/// deterministic. `ORDER BY … LIMIT` lets both databases keep a top-N heap instead of
/// sorting the whole bucket (5–10× faster than numbering every row with a window function).
const BEST_BY_QUANTITY: &str = "SELECT product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $4 ORDER BY count DESC, product_id LIMIT $3";
/// The same by revenue.
const BEST_BY_REVENUE: &str = "SELECT product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $4 ORDER BY revenue_cents DESC, product_id LIMIT $3";
pub(crate) const ROW: Insert = Insert {
    table: "top_lists",
    columns: &[
        "granularity",
        "bucket_start",
        "breakdown",
        "ranked_by",
        "rank",
        "product_id",
        "count",
        "revenue_cents",
        "error_bound",
        "source",
    ],
    on_conflict: None,
};
const UPSERT_TOTALS: &str = "INSERT INTO bucket_totals
    (granularity, bucket_start, breakdown, count, revenue_cents, products, min_count, min_revenue_cents)
    SELECT $1, $2, $3, COALESCE(SUM(count), 0), COALESCE(SUM(revenue_cents), 0), COUNT(*), MIN(count), MIN(revenue_cents)
    FROM batch_table WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3
    ON CONFLICT (granularity, bucket_start, breakdown) DO UPDATE SET count = excluded.count,
    revenue_cents = excluded.revenue_cents, products = excluded.products, min_count = excluded.min_count,
    min_revenue_cents = excluded.min_revenue_cents";

/// The totals of a bucket's rows, as [`UPSERT_TOTALS`] computes them in SQL.
const SET_TOTALS: &str = "INSERT INTO bucket_totals
    (granularity, bucket_start, breakdown, count, revenue_cents, products, min_count, min_revenue_cents)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (granularity, bucket_start, breakdown) DO UPDATE SET count = excluded.count,
    revenue_cents = excluded.revenue_cents, products = excluded.products, min_count = excluded.min_count,
    min_revenue_cents = excluded.min_revenue_cents";

/// The best `k` of `rows` by `by`, best first; ties by product id in byte order (the
/// order of [`BEST_BY_QUANTITY`] and [`BEST_BY_REVENUE`]).
pub fn best(rows: &[ProductSum], by: By, k: usize) -> Vec<&ProductSum> {
    let key = |r: &ProductSum| match by {
        By::Quantity => r.count,
        By::Revenue => r.revenue_cents,
    };
    let order = |a: &&ProductSum, b: &&ProductSum| key(b).cmp(&key(a)).then_with(|| a.product_id.cmp(&b.product_id));
    let mut top: Vec<&ProductSum> = rows.iter().collect();
    if top.len() > k {
        top.select_nth_unstable_by(k, order);
        top.truncate(k);
    }
    top.sort_unstable_by(order);
    top
}

/// Writes the lists (`k` long) and totals of one breakdown of `bucket` from `rows`, all of
/// its exact rows there, after [`delete`]; returns the list rows written.
pub(crate) fn write(c: &mut dyn Conn, bucket: Bucket, breakdown: &str, rows: &[ProductSum], k: usize) -> Result<u64> {
    let g = bucket.granularity.as_str();
    let mut n = 0;
    for by in By::ALL {
        n += insert(c, bucket, breakdown, by, &best(rows, by, k))?;
    }
    let (mut count, mut revenue) = (0i64, 0i64);
    for r in rows {
        count = count.saturating_add(r.count);
        revenue = revenue.saturating_add(r.revenue_cents);
    }
    let min_count = rows.iter().map(|r| r.count).min();
    let min_revenue = rows.iter().map(|r| r.revenue_cents).min();
    let params = vals![g, bucket.start_ms, breakdown, count, revenue, rows.len() as i64, min_count, min_revenue];
    c.exec(SET_TOTALS, &params)?;
    Ok(n)
}

/// Deletes the bucket's lists and totals, of every breakdown.
pub(crate) fn delete(c: &mut dyn Conn, bucket: Bucket) -> Result<()> {
    let params = vals![bucket.granularity.as_str(), bucket.start_ms];
    c.exec(DELETE, &params)?;
    c.exec(DELETE_TOTALS, &params).map(drop)
}

/// Rebuilds the lists (`k` long) and totals of one breakdown of `bucket` from its stored
/// rows; returns the rows written.
pub(crate) fn regenerate(c: &mut dyn Conn, bucket: Bucket, breakdown: &str, k: usize) -> Result<u64> {
    let g = bucket.granularity.as_str();
    c.exec(DELETE_BREAKDOWN, &vals![g, bucket.start_ms, breakdown])?;
    let mut n = 0;
    for by in By::ALL {
        let best = match by {
            By::Quantity => BEST_BY_QUANTITY,
            By::Revenue => BEST_BY_REVENUE,
        };
        let top = query(c, best, &vals![g, bucket.start_ms, k as i64, breakdown], product_sum)?;
        n += insert(c, bucket, breakdown, by, &top.iter().collect::<Vec<_>>())?;
    }
    c.exec(UPSERT_TOTALS, &vals![g, bucket.start_ms, breakdown])?;
    Ok(n)
}

/// Inserts one list, best first.
fn insert(c: &mut dyn Conn, bucket: Bucket, breakdown: &str, by: By, top: &[&ProductSum]) -> Result<u64> {
    let g = bucket.granularity.as_str();
    let params: Vec<Value<'_>> = (1i64..)
        .zip(top)
        .flat_map(|(rank, row)| {
            vals![
                g,
                bucket.start_ms,
                breakdown,
                by.as_str(),
                rank,
                &row.product_id,
                row.count,
                row.revenue_cents,
                0i64,
                "batch"
            ]
        })
        .collect();
    c.insert(&ROW, &params)
}
