//! What the API reads — and, beneath their writes, the batch and speed roles: exact and
//! approximate buckets, rows and top lists, the catalog, runs and scores. Nothing here
//! writes.

use topk_core::time::{Bucket, Granularity};

use crate::dialect::PerDialect;
use crate::sql::{bucket_at, json_array, product_sum, query, query_int, Conn, SqlStore};
use crate::{
    catalog, vals, AccuracyRecord, By, ExactBucket, Product, ProductSum, Result, RunRecord, RunStats, RunStatus,
    SpeedBucket, SpeedRow, TopRow,
};
use topk_core::accuracy::Accuracy;

/// The store as the API sees it: read-only.
pub trait ServingStore: Send {
    /// A bucket's exact rows, by product id.
    fn bucket_rows(&mut self, bucket: Bucket) -> Result<Vec<ProductSum>>;
    fn top_list(&mut self, bucket: Bucket, by: By, k: usize) -> Result<Vec<TopRow>>;
    /// Whether the bucket has exact top lists (the batch layer, or Kappa, has spoken).
    fn has_exact(&mut self, bucket: Bucket) -> Result<bool>;
    /// Exact buckets (with top lists) of a granularity starting in `[from_ms, to_ms)`.
    fn exact_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<ExactBucket>>;
    /// The exact sums in a bucket of those of `product_ids` that sold there.
    fn product_sums(&mut self, bucket: Bucket, product_ids: &[&str]) -> Result<Vec<ProductSum>>;
    /// The ranks of those of `product_ids` that are on the bucket's stored top list: one
    /// read of the list for all of them (a lookup per id read the list each time: two
    /// thirds of an uncached closed day's answer, for its previous ranks).
    fn ranks_of(&mut self, bucket: Bucket, by: By, product_ids: &[&str]) -> Result<Vec<(String, i64)>>;
    /// Buckets whose exact rows wait for the batch layer.
    fn pending(&mut self) -> Result<Vec<Bucket>>;
    /// A bucket's approximate rows, largest first.
    fn speed_rows(&mut self, bucket: Bucket) -> Result<Vec<SpeedRow>>;
    /// Approximate buckets of a granularity starting in `[from_ms, to_ms)`.
    fn speed_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<SpeedBucket>>;
    /// The catalog entries of those of `product_ids` it has.
    fn products(&mut self, product_ids: &[&str]) -> Result<Vec<Product>>;
    /// Products whose id, or name (case-insensitive), starts with `prefix`.
    fn search_products(&mut self, prefix: &str, limit: usize) -> Result<Vec<Product>>;
    /// Up to `limit` catalog product ids after `after` ("" for the first), in byte order:
    /// how the worst sellers find the products that did not sell in a period.
    fn catalog_ids_after(&mut self, after: &str, limit: usize) -> Result<Vec<String>>;
    /// A value that changes whenever exact rows may have (see [`EXACT_GENERATION`]).
    fn exact_generation(&mut self) -> Result<(i64, i64)>;
    /// Scopes the reads of rows, lists and totals to one breakdown (its key, such as
    /// `country=DE`; `""`: the global lists, the default).
    fn set_breakdown(&mut self, key: &str);
    /// The values of the set whose keys start with `prefix` (`country=`) in `bucket`, with
    /// their net quantity and revenue: exact where the bucket is, else the speed layer's
    /// quantities with a revenue of 0.
    fn breakdown_values(&mut self, bucket: Bucket, prefix: &str) -> Result<Vec<(String, i64, i64)>>;
    /// How many values the breakdown set `set` (`country`) has admitted.
    fn admitted_count(&mut self, set: &str) -> Result<i64>;
    /// Whether `set` has admitted `value`.
    fn is_admitted(&mut self, set: &str, value: &str) -> Result<bool>;
    /// Scored buckets, newest first.
    fn accuracy(&mut self, limit: usize) -> Result<Vec<AccuracyRecord>>;
    /// Runs, failures first, then newest first.
    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>>;
    /// Run counts and durations per task and status.
    fn run_stats(&mut self) -> Result<Vec<RunStats>>;
}

// Every read of rows, lists and totals is of the store's current breakdown (the last
// parameter; `''`: the global lists). Whether a bucket is exact is the global lists'
// matter: the batch layer writes every breakdown of a bucket in the same transaction, and a
// value without sales there has no rows, exactly.
/// A breakdown marked in `batch_as_global` reads the global rows (`''`).
const BUCKET_ROWS: &str = "SELECT product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 AND breakdown = COALESCE((SELECT '' FROM batch_as_global a
    WHERE a.granularity = $1 AND a.bucket_start = $2 AND a.breakdown = $3), $3) ORDER BY product_id";
const TOP_LIST: &str = "SELECT rank, product_id, count, revenue_cents, error_bound, source FROM top_lists
    WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $5 AND ranked_by = $3 AND rank <= $4 ORDER BY rank";
const HAS_EXACT: &str =
    "SELECT COUNT(*) FROM top_lists WHERE granularity = $1 AND bucket_start = $2 AND breakdown = ''";
/// Whether the batch layer has committed the bucket's exact answer (its global top lists).
pub(crate) fn has_exact(c: &mut dyn Conn, bucket: Bucket) -> Result<bool> {
    Ok(query_int(c, HAS_EXACT, &vals![bucket.granularity.as_str(), bucket.start_ms])?.unwrap_or(0) > 0)
}

/// Exact buckets (those with global top lists) in a range, with the breakdown's totals
/// (none: it sold nothing there).
const EXACT_BUCKETS: &str = "SELECT t.bucket_start, COALESCE(b.count, 0), COALESCE(b.revenue_cents, 0),
    COALESCE(b.products, 0), b.min_count, b.min_revenue_cents FROM bucket_totals t
    LEFT JOIN bucket_totals b ON b.granularity = t.granularity AND b.bucket_start = t.bucket_start AND b.breakdown = $4
    WHERE t.granularity = $1 AND t.bucket_start >= $2 AND t.bucket_start < $3 AND t.breakdown = ''
    AND EXISTS (SELECT 1 FROM top_lists l
    WHERE l.granularity = t.granularity AND l.bucket_start = t.bucket_start AND l.breakdown = '') ORDER BY t.bucket_start";
/// Several products' sums in one bucket; `$3` is a JSON array of ids. A breakdown marked
/// in `batch_as_global` reads the global rows, as [`BUCKET_ROWS`] does.
const PRODUCT_SUMS: PerDialect = PerDialect {
    sqlite: "SELECT product_id, count, revenue_cents FROM batch_table
        WHERE granularity = $1 AND bucket_start = $2 AND breakdown = COALESCE((SELECT '' FROM batch_as_global a
        WHERE a.granularity = $1 AND a.bucket_start = $2 AND a.breakdown = $4), $4)
        AND product_id IN (SELECT value FROM json_each($3))",
    postgres: "SELECT product_id, count, revenue_cents FROM batch_table
        WHERE granularity = $1 AND bucket_start = $2 AND breakdown = COALESCE((SELECT '' FROM batch_as_global a
        WHERE a.granularity = $1 AND a.bucket_start = $2 AND a.breakdown = $4), $4)
        AND product_id IN (SELECT json_array_elements_text(($3::text)::json))",
};
const RANKS_OF: PerDialect = PerDialect {
    sqlite: "SELECT product_id, rank FROM top_lists
        WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $5 AND ranked_by = $3
        AND product_id IN (SELECT value FROM json_each($4))",
    postgres: "SELECT product_id, rank FROM top_lists
        WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $5 AND ranked_by = $3
        AND product_id IN (SELECT json_array_elements_text(($4::text)::json))",
};
const PENDING: &str = "SELECT granularity, bucket_start FROM batch_pending ORDER BY bucket_start, granularity";
const SPEED_ROWS: &str = "SELECT product_id, count_estimate, error_bound, revenue_estimate, updated_at FROM speed_table
    WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3 ORDER BY count_estimate DESC, product_id";
const SPEED_BUCKETS: &str = "SELECT bucket_start, unlisted_bound, total_count, updated_at FROM speed_buckets
    WHERE granularity = $1 AND bucket_start >= $2 AND bucket_start < $3 AND breakdown = $4 ORDER BY bucket_start";
/// The values of one set (keys starting with `$3`) in an exact bucket, with their totals.
/// (A prefix by `substr`, not a range: a range's order would depend on the collation.)
const EXACT_VALUES: &str = "SELECT breakdown, count, revenue_cents FROM bucket_totals
    WHERE granularity = $1 AND bucket_start = $2 AND substr(breakdown, 1, length($3)) = $3 ORDER BY breakdown";
const ADMITTED_COUNT: &str = "SELECT COUNT(*) FROM breakdown_values WHERE dim_set = $1";
const IS_ADMITTED: &str = "SELECT COUNT(*) FROM breakdown_values WHERE dim_set = $1 AND value = $2";
/// The same of an approximate bucket (net quantities only; revenue is not kept there).
const SPEED_VALUES: &str = "SELECT breakdown, total_count FROM speed_buckets
    WHERE granularity = $1 AND bucket_start = $2 AND substr(breakdown, 1, length($3)) = $3 ORDER BY breakdown";
/// What changes whenever exact rows may have changed: the newest batch run (the batch
/// layer records a run before it touches rows) and Kappa's position in the flush log.
/// A cached exact answer is reused only while this stays the same.
pub const EXACT_GENERATION: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM pipeline_runs),
    (SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM consumer_offsets WHERE consumer = 'kappa')";
const ACCURACY: &str = "SELECT granularity, bucket_start, precision_at_10, precision_at_100, max_relative_error,
    mean_relative_error, bound_coverage, scored_at FROM accuracy ORDER BY bucket_start DESC, granularity LIMIT $1";
const RUNS: &str = "SELECT id, task, granularity, bucket_start, status, attempt, started_at, finished_at,
    rows_written, error FROM pipeline_runs
    ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, id DESC LIMIT $1";
/// Runs per task and status, and the time finished ones took (for metrics).
/// (`SUM` of `BIGINT` is `NUMERIC` on PostgreSQL, hence the cast.)
const RUN_STATS: &str = "SELECT task, status, COUNT(*), CAST(COALESCE(SUM(finished_at - started_at), 0) AS BIGINT)
    FROM pipeline_runs GROUP BY task, status ORDER BY task, status";

impl ServingStore for SqlStore {
    fn bucket_rows(&mut self, bucket: Bucket) -> Result<Vec<ProductSum>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, &self.breakdown];
        query(&mut *self.conn, BUCKET_ROWS, &params, product_sum)
    }

    fn top_list(&mut self, bucket: Bucket, by: By, k: usize) -> Result<Vec<TopRow>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, by.as_str(), k as i64, &self.breakdown];
        query(&mut *self.conn, TOP_LIST, &params, |r| {
            Ok(TopRow {
                rank: r.int(0)?,
                product_id: r.text(1)?,
                count: r.int(2)?,
                revenue_cents: r.int(3)?,
                error_bound: r.int(4)?,
                source: r.text(5)?,
            })
        })
    }

    fn has_exact(&mut self, bucket: Bucket) -> Result<bool> {
        has_exact(&mut *self.conn, bucket)
    }

    fn exact_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<ExactBucket>> {
        let params = vals![granularity.as_str(), from_ms, to_ms, &self.breakdown];
        query(&mut *self.conn, EXACT_BUCKETS, &params, |r| {
            Ok(ExactBucket {
                bucket: Bucket { granularity, start_ms: r.int(0)? },
                count: r.int(1)?,
                revenue_cents: r.int(2)?,
                products: r.int(3)?,
                min_count: r.opt_int(4)?,
                min_revenue_cents: r.opt_int(5)?,
            })
        })
    }

    fn product_sums(&mut self, bucket: Bucket, product_ids: &[&str]) -> Result<Vec<ProductSum>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_array(product_ids);
        let sql = PRODUCT_SUMS.get(self.conn.dialect());
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, &ids, &self.breakdown];
        query(&mut *self.conn, sql, &params, product_sum)
    }

    fn ranks_of(&mut self, bucket: Bucket, by: By, product_ids: &[&str]) -> Result<Vec<(String, i64)>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_array(product_ids);
        let sql = RANKS_OF.get(self.conn.dialect());
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, by.as_str(), &ids, &self.breakdown];
        query(&mut *self.conn, sql, &params, |r| Ok((r.text(0)?, r.int(1)?)))
    }

    fn pending(&mut self) -> Result<Vec<Bucket>> {
        query(&mut *self.conn, PENDING, &[], |r| bucket_at(r, 0, 1))
    }

    fn speed_rows(&mut self, bucket: Bucket) -> Result<Vec<SpeedRow>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, &self.breakdown];
        query(&mut *self.conn, SPEED_ROWS, &params, |r| {
            Ok(SpeedRow {
                product_id: r.text(0)?,
                count: r.int(1)?,
                error: r.int(2)?,
                revenue_cents: r.int(3)?,
                updated_ms: r.int(4)?,
            })
        })
    }

    fn speed_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<SpeedBucket>> {
        let params = vals![granularity.as_str(), from_ms, to_ms, &self.breakdown];
        query(&mut *self.conn, SPEED_BUCKETS, &params, |r| {
            Ok(SpeedBucket {
                bucket: Bucket { granularity, start_ms: r.int(0)? },
                unlisted_bound: r.int(1)?,
                total_count: r.int(2)?,
                updated_ms: r.int(3)?,
            })
        })
    }

    fn products(&mut self, product_ids: &[&str]) -> Result<Vec<Product>> {
        catalog::by_ids(&mut *self.conn, product_ids)
    }

    fn search_products(&mut self, prefix: &str, limit: usize) -> Result<Vec<Product>> {
        catalog::search(&mut *self.conn, prefix, limit)
    }

    fn catalog_ids_after(&mut self, after: &str, limit: usize) -> Result<Vec<String>> {
        catalog::ids_after(&mut *self.conn, after, limit)
    }

    fn exact_generation(&mut self) -> Result<(i64, i64)> {
        let rows = query(&mut *self.conn, EXACT_GENERATION, &[], |r| Ok((r.int(0)?, r.int(1)?)))?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    fn set_breakdown(&mut self, key: &str) {
        key.clone_into(&mut self.breakdown);
    }

    fn breakdown_values(&mut self, bucket: Bucket, prefix: &str) -> Result<Vec<(String, i64, i64)>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, prefix];
        if self.has_exact(bucket)? {
            query(&mut *self.conn, EXACT_VALUES, &params, |r| Ok((r.text(0)?, r.int(1)?, r.int(2)?)))
        } else {
            query(&mut *self.conn, SPEED_VALUES, &params, |r| Ok((r.text(0)?, r.int(1)?, 0)))
        }
    }

    fn admitted_count(&mut self, set: &str) -> Result<i64> {
        Ok(query_int(&mut *self.conn, ADMITTED_COUNT, &vals![set])?.unwrap_or(0))
    }

    fn is_admitted(&mut self, set: &str, value: &str) -> Result<bool> {
        Ok(query_int(&mut *self.conn, IS_ADMITTED, &vals![set, value])?.unwrap_or(0) > 0)
    }

    fn accuracy(&mut self, limit: usize) -> Result<Vec<AccuracyRecord>> {
        query(&mut *self.conn, ACCURACY, &vals![limit as i64], |r| {
            Ok(AccuracyRecord {
                bucket: bucket_at(r, 0, 1)?,
                accuracy: Accuracy {
                    precision_at_10: r.real(2)?,
                    precision_at_100: r.real(3)?,
                    max_relative_error: r.real(4)?,
                    mean_relative_error: r.real(5)?,
                    bound_coverage: r.real(6)?,
                },
                scored_ms: r.int(7)?,
            })
        })
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>> {
        query(&mut *self.conn, RUNS, &vals![limit as i64], |r| {
            Ok(RunRecord {
                id: r.int(0)?,
                task: r.text(1)?,
                bucket: bucket_at(r, 2, 3)?,
                status: RunStatus::parse(&r.text(4)?)?,
                attempt: r.int(5)?,
                started_ms: r.int(6)?,
                finished_ms: r.opt_int(7)?,
                rows: r.opt_int(8)?,
                error: r.opt_text(9)?,
            })
        })
    }

    fn run_stats(&mut self) -> Result<Vec<RunStats>> {
        query(&mut *self.conn, RUN_STATS, &[], |r| {
            Ok(RunStats {
                task: r.text(0)?,
                status: RunStatus::parse(&r.text(1)?)?,
                runs: r.int(2)?,
                duration_ms: r.int(3)?,
            })
        })
    }
}
