//! What the speed role writes, each cycle in one transaction with the flush-log offsets it
//! covers: the approximate rows of open buckets, their sketches and facts, and the catalog
//! — or, in Kappa, exact rows and their top lists.

use topk_core::time::Bucket;

use crate::dialect::Insert;
use crate::schema::EXACT_COLUMNS;
use crate::serving::has_exact;
use crate::serving::ServingStore;
use crate::sql::{bucket_at, lock_buckets, query, Conn, SqlStore, Value};
use crate::{catalog, top_lists, vals, Product, ProductSum, Result, SpeedWrite};

/// A saved sketch: (bucket, breakdown, partition, bytes).
pub type SavedSketch = (Bucket, String, u32, Vec<u8>);

/// The store as the speed role sees it: the reads, and its write cycles.
pub trait SpeedStore: ServingStore {
    /// The next offset per partition that `consumer` has absorbed into the store.
    fn consumer_offsets(&mut self, consumer: &str) -> Result<Vec<(u32, u64)>>;
    /// The speed layer's write cycle: every bucket's rows and sketches, the catalog entries
    /// of the flushes absorbed, and the offsets they cover, in one transaction — so a
    /// restart resumes from exactly what was saved — and the least watermark of the
    /// flushes absorbed (`speed_watermark`; `i64::MIN` until every partition has one;
    /// `None` keeps the stored one).
    fn write_speed(
        &mut self,
        consumer: &str,
        writes: &[SpeedWrite],
        offsets: &[(u32, u64)],
        watermark_ms: Option<i64>,
        products: &[Product],
    ) -> Result<()>;
    /// Every saved sketch.
    fn speed_sketches(&mut self) -> Result<Vec<SavedSketch>>;
    /// Kappa's write cycle: upserts exact rows and catalog entries, regenerates the touched
    /// buckets' top lists and records the offsets, in one transaction.
    fn write_exact(
        &mut self,
        consumer: &str,
        rows: &[(Bucket, String, Vec<ProductSum>)],
        top_k: usize,
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()>;
}

const DELETE_ROWS: &str = "DELETE FROM speed_table WHERE granularity = $1 AND bucket_start = $2";
const DELETE_BREAKDOWN_ROWS: &str =
    "DELETE FROM speed_table WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3";
pub(crate) const ROW: Insert = Insert {
    table: "speed_table",
    columns: &[
        "granularity",
        "bucket_start",
        "breakdown",
        "product_id",
        "count_estimate",
        "error_bound",
        "revenue_estimate",
        "updated_at",
    ],
    on_conflict: None,
};
const UPSERT_SKETCH: &str = "INSERT INTO speed_sketches (granularity, bucket_start, breakdown, partition_id, sketch)
    VALUES ($1, $2, $5, $3, $4)
    ON CONFLICT (granularity, bucket_start, breakdown, partition_id) DO UPDATE SET sketch = excluded.sketch";
const DELETE_SKETCHES: &str =
    "DELETE FROM speed_sketches WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3";
const SKETCHES: &str = "SELECT granularity, bucket_start, breakdown, partition_id, sketch FROM speed_sketches";
/// Per approximate bucket: the most any product missing from its rows can have sold, the
/// bucket's exact net quantity, and when the speed layer last wrote it.
const UPSERT_BUCKET: &str =
    "INSERT INTO speed_buckets (granularity, bucket_start, breakdown, unlisted_bound, total_count, updated_at)
    VALUES ($1, $2, $6, $3, $4, $5) ON CONFLICT (granularity, bucket_start, breakdown) DO UPDATE SET
    unlisted_bound = excluded.unlisted_bound, total_count = excluded.total_count, updated_at = excluded.updated_at";
const DELETE_BUCKET: &str = "DELETE FROM speed_buckets WHERE granularity = $1 AND bucket_start = $2";
const DELETE_BREAKDOWN_BUCKET: &str =
    "DELETE FROM speed_buckets WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3";
const UPSERT_OFFSET: &str = "INSERT INTO consumer_offsets (consumer, partition_id, next_offset) VALUES ($1, $2, $3)
    ON CONFLICT (consumer, partition_id) DO UPDATE SET next_offset = excluded.next_offset";
const UPSERT_WATERMARK: &str = "INSERT INTO speed_watermark (consumer, watermark_ms, updated_at) VALUES ($1, $2, $3)
    ON CONFLICT (consumer) DO UPDATE SET watermark_ms = excluded.watermark_ms, updated_at = excluded.updated_at";
const OFFSETS: &str =
    "SELECT partition_id, next_offset FROM consumer_offsets WHERE consumer = $1 ORDER BY partition_id";
/// Kappa's exact rows: the newest sums replace the stored ones.
pub(crate) const UPSERT_EXACT_ROW: Insert = Insert {
    table: "batch_table",
    columns: EXACT_COLUMNS,
    on_conflict: Some(
        "ON CONFLICT (granularity, bucket_start, breakdown, product_id)
        DO UPDATE SET count = excluded.count, revenue_cents = excluded.revenue_cents",
    ),
};

/// The rows of a bucket's breakdowns marked in `batch_as_global`, copied from its global ones.
const COPY_AS_GLOBAL: &str =
    "INSERT INTO batch_table (granularity, bucket_start, breakdown, product_id, count, revenue_cents)
    SELECT b.granularity, b.bucket_start, a.breakdown, b.product_id, b.count, b.revenue_cents
    FROM batch_as_global a JOIN batch_table b
    ON b.granularity = a.granularity AND b.bucket_start = a.bucket_start AND b.breakdown = ''
    WHERE a.granularity = $1 AND a.bucket_start = $2";

/// Deletes a bucket's approximate rows and facts, of every breakdown (the batch layer, once
/// exact rows exist); returns the rows deleted.
pub(crate) fn delete_bucket(c: &mut dyn Conn, bucket: Bucket) -> Result<u64> {
    let params = vals![bucket.granularity.as_str(), bucket.start_ms];
    let n = c.exec(DELETE_ROWS, &params)?;
    c.exec(DELETE_BUCKET, &params)?;
    Ok(n)
}

fn upsert_offsets(c: &mut dyn Conn, consumer: &str, offsets: &[(u32, u64)]) -> Result<()> {
    for &(p, next) in offsets {
        c.exec(UPSERT_OFFSET, &vals![consumer, i64::from(p), next as i64])?;
    }
    Ok(())
}

impl SpeedStore for SqlStore {
    fn consumer_offsets(&mut self, consumer: &str) -> Result<Vec<(u32, u64)>> {
        query(&mut *self.conn, OFFSETS, &vals![consumer], |r| Ok((r.int(0)? as u32, r.int(1)? as u64)))
    }

    fn write_speed(
        &mut self,
        consumer: &str,
        writes: &[SpeedWrite],
        offsets: &[(u32, u64)],
        watermark_ms: Option<i64>,
        products: &[Product],
    ) -> Result<()> {
        self.transaction(|c| {
            // The batch layer's commit of one of these buckets comes wholly before this
            // write or wholly after it.
            lock_buckets(c, writes.iter().map(|w| w.bucket))?;
            catalog::upsert(c, products)?;
            // `writes` come a bucket's breakdowns together: one look per bucket.
            let mut exact_of: Option<(Bucket, bool)> = None;
            for w in writes {
                let (g, start, breakdown) = (w.bucket.granularity.as_str(), w.bucket.start_ms, &w.breakdown);
                c.exec(DELETE_BREAKDOWN_ROWS, &vals![g, start, breakdown])?;
                // An ended bucket whose exact answer was committed after the speed layer
                // last looked: it writes nothing there, and drops what it had saved.
                let superseded = w.ended
                    && match exact_of {
                        Some((b, exact)) if b == w.bucket => exact,
                        _ => has_exact(c, w.bucket)?,
                    };
                if w.ended {
                    exact_of = Some((w.bucket, superseded));
                }
                let finished = w.finished || superseded;
                if !superseded {
                    let params: Vec<Value<'_>> = w
                        .rows
                        .iter()
                        .flat_map(|r| {
                            vals![g, start, breakdown, &r.product_id, r.count, r.error, r.revenue_cents, r.updated_ms]
                        })
                        .collect();
                    c.insert(&ROW, &params)?;
                }
                if finished {
                    c.exec(DELETE_SKETCHES, &vals![g, start, breakdown])?;
                }
                if (w.rows.is_empty() || superseded) && finished {
                    c.exec(DELETE_BREAKDOWN_BUCKET, &vals![g, start, breakdown])?;
                } else {
                    let updated = w.rows.first().map_or(0, |r| r.updated_ms);
                    let params = vals![g, start, w.unlisted_bound, w.total_count, updated, breakdown];
                    c.exec(UPSERT_BUCKET, &params)?;
                }
                for (p, bytes) in w.sketches.iter().filter(|_| !finished) {
                    c.exec(UPSERT_SKETCH, &vals![g, start, i64::from(*p), bytes.as_slice(), breakdown])?;
                }
            }
            upsert_offsets(c, consumer, offsets)?;
            if let Some(w) = watermark_ms {
                c.exec(UPSERT_WATERMARK, &vals![consumer, w, topk_core::clock::now_ms()])?;
            }
            Ok(())
        })
    }

    fn speed_sketches(&mut self) -> Result<Vec<SavedSketch>> {
        query(&mut *self.conn, SKETCHES, &[], |r| Ok((bucket_at(r, 0, 1)?, r.text(2)?, r.int(3)? as u32, r.bytes(4)?)))
    }

    fn write_exact(
        &mut self,
        consumer: &str,
        rows: &[(Bucket, String, Vec<ProductSum>)],
        top_k: usize,
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()> {
        self.transaction(|c| {
            catalog::upsert(c, products)?;
            // Breakdowns the batch layer marked as the global rows (a store that ran Lambda)
            // get rows of their own before either changes.
            let mut buckets: Vec<Bucket> = rows.iter().map(|(bucket, _, _)| *bucket).collect();
            buckets.sort_unstable();
            buckets.dedup();
            for bucket in buckets {
                let params = vals![bucket.granularity.as_str(), bucket.start_ms];
                c.exec(COPY_AS_GLOBAL, &params)?;
                c.exec(crate::batch::DELETE_BUCKET_AS_GLOBAL, &params)?;
            }
            for (bucket, breakdown, sums) in rows {
                let g = bucket.granularity.as_str();
                let params: Vec<Value<'_>> = sums
                    .iter()
                    .flat_map(|r| vals![g, bucket.start_ms, breakdown, &r.product_id, r.count, r.revenue_cents])
                    .collect();
                c.insert(&UPSERT_EXACT_ROW, &params)?;
                top_lists::regenerate(c, *bucket, breakdown, top_k)?;
            }
            upsert_offsets(c, consumer, offsets)
        })
    }
}
