//! What the batch layer writes: exact hour rows from the archive, rollups, top lists, the
//! bookkeeping of stale buckets and runs, retention, and the speed layer's scores.

use topk_core::accuracy::Accuracy;
use topk_core::time::Bucket;

use crate::dialect::Insert;
use crate::schema::EXACT_COLUMNS;
use crate::serving::ServingStore;
use crate::sql::{query_int, Conn, SqlStore, Value};
use crate::{speed, top_lists, vals, ProductSum, Result, RunStatus, StoreError};

/// The store as the batch layer sees it: the reads, and its writes. Each method that
/// writes runs in one transaction: after a crash it has happened entirely or not at all.
pub trait BatchStore: ServingStore {
    /// Replaces the hour's exact rows, records which archive version they came from, and
    /// marks `pending` (the buckets above) for re-computation — all atomically.
    fn replace_hour(&mut self, hour: Bucket, rows: &[ProductSum], version: u64, pending: &[Bucket]) -> Result<u64>;
    /// Replaces a bucket's rows with the sums of its children's rows (rollup lineage).
    fn rollup(&mut self, bucket: Bucket) -> Result<u64>;
    /// Deletes the bucket's approximate rows once the exact ones exist.
    fn delete_speed_rows(&mut self, bucket: Bucket) -> Result<u64>;
    /// Rebuilds the bucket's top lists (by quantity and by revenue) from its exact rows.
    fn regenerate_top_lists(&mut self, bucket: Bucket, k: usize) -> Result<u64>;
    /// The archive version an hour was last rolled up from.
    fn hour_version(&mut self, hour: Bucket) -> Result<Option<u64>>;
    /// Marks buckets pending; one already pending gets a new generation.
    fn add_pending(&mut self, buckets: &[Bucket]) -> Result<()>;
    /// The pending generation of a bucket, `None` if it is not pending.
    fn pending_generation(&mut self, bucket: Bucket) -> Result<Option<i64>>;
    /// Clears a bucket's pending mark if it is still at `generation`: a run clears only
    /// the staleness it started from, never a change that arrived while it ran.
    fn remove_pending(&mut self, bucket: Bucket, generation: i64) -> Result<()>;
    fn start_run(&mut self, task: &str, bucket: Bucket, attempt: i64, now_ms: i64) -> Result<i64>;
    fn finish_run(
        &mut self,
        id: i64,
        status: RunStatus,
        rows: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;
    /// Marks runs left `running` by a process that died as failed.
    fn fail_interrupted_runs(&mut self, now_ms: i64) -> Result<u64>;
    /// Previous attempts of a task on a bucket.
    fn attempts(&mut self, task: &str, bucket: Bucket) -> Result<i64>;
    /// Retention: deletes hourly rows (and their top lists and totals) of hours starting
    /// before `before_ms`.
    fn delete_hours_before(&mut self, before_ms: i64) -> Result<u64>;
    fn record_accuracy(&mut self, bucket: Bucket, accuracy: &Accuracy, now_ms: i64) -> Result<()>;
}

const DELETE_BUCKET_ROWS: &str = "DELETE FROM batch_table WHERE granularity = $1 AND bucket_start = $2";
/// Exact rows of a bucket whose rows were just deleted.
pub const EXACT_ROW: Insert = Insert { table: "batch_table", columns: EXACT_COLUMNS, on_conflict: None };
/// Sums the child granularity's rows inside [start, end) into the bucket.
const ROLLUP: &str = "INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents)
    SELECT $1, $2, product_id, SUM(count), SUM(revenue_cents) FROM batch_table
    WHERE granularity = $3 AND bucket_start >= $2 AND bucket_start < $4
    GROUP BY product_id";
const HOUR_VERSION: &str = "SELECT archive_version FROM batch_hour_versions WHERE bucket_start = $1";
const SET_HOUR_VERSION: &str = "INSERT INTO batch_hour_versions (bucket_start, archive_version) VALUES ($1, $2)
    ON CONFLICT (bucket_start) DO UPDATE SET archive_version = excluded.archive_version";
const ADD_PENDING: &str = "INSERT INTO batch_pending (granularity, bucket_start, generation) VALUES ($1, $2, 0)
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET generation = batch_pending.generation + 1";
/// Only the generation the run started from: a bucket made stale again meanwhile stays.
const REMOVE_PENDING: &str =
    "DELETE FROM batch_pending WHERE granularity = $1 AND bucket_start = $2 AND generation = $3";
const PENDING_GENERATION: &str = "SELECT generation FROM batch_pending WHERE granularity = $1 AND bucket_start = $2";
const START_RUN: &str = "INSERT INTO pipeline_runs (task, granularity, bucket_start, status, attempt, started_at)
    VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id";
const FINISH_RUN: &str =
    "UPDATE pipeline_runs SET status = $1, rows_written = $2, error = $3, finished_at = $4 WHERE id = $5";
const FAIL_INTERRUPTED: &str = "UPDATE pipeline_runs SET status = 'failed',
    error = 'interrupted: the process stopped during the run', finished_at = $1 WHERE status = 'running'";
const ATTEMPTS: &str = "SELECT COUNT(*) FROM pipeline_runs WHERE task = $1 AND granularity = $2 AND bucket_start = $3";
/// Retention drops an hour's rows, and with them its top lists and totals: without the
/// rows a range cannot be answered exactly from that hour any more.
const DELETE_HOURS_BEFORE: &str = "DELETE FROM batch_table WHERE granularity = 'hour' AND bucket_start < $1";
const DELETE_HOUR_LISTS_BEFORE: &str = "DELETE FROM top_lists WHERE granularity = 'hour' AND bucket_start < $1";
const DELETE_HOUR_TOTALS_BEFORE: &str = "DELETE FROM bucket_totals WHERE granularity = 'hour' AND bucket_start < $1";
const UPSERT_ACCURACY: &str = "INSERT INTO accuracy (granularity, bucket_start, precision_at_10, precision_at_100,
    max_relative_error, mean_relative_error, bound_coverage, scored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET precision_at_10 = excluded.precision_at_10,
    precision_at_100 = excluded.precision_at_100, max_relative_error = excluded.max_relative_error,
    mean_relative_error = excluded.mean_relative_error, bound_coverage = excluded.bound_coverage,
    scored_at = excluded.scored_at";

fn add_pending(c: &mut dyn Conn, buckets: &[Bucket]) -> Result<()> {
    for b in buckets {
        c.exec(ADD_PENDING, &vals![b.granularity.as_str(), b.start_ms])?;
    }
    Ok(())
}

impl BatchStore for SqlStore {
    fn replace_hour(&mut self, hour: Bucket, rows: &[ProductSum], version: u64, pending: &[Bucket]) -> Result<u64> {
        self.transaction(|c| {
            let g = hour.granularity.as_str();
            c.exec(DELETE_BUCKET_ROWS, &vals![g, hour.start_ms])?;
            let params: Vec<Value<'_>> =
                rows.iter().flat_map(|r| vals![g, hour.start_ms, &r.product_id, r.count, r.revenue_cents]).collect();
            c.insert(&EXACT_ROW, &params)?;
            c.exec(SET_HOUR_VERSION, &vals![hour.start_ms, version as i64])?;
            add_pending(c, pending)?;
            Ok(rows.len() as u64)
        })
    }

    fn rollup(&mut self, bucket: Bucket) -> Result<u64> {
        let child = bucket
            .granularity
            .child()
            .ok_or_else(|| StoreError::Corrupt(format!("{bucket} has no finer granularity to roll up from")))?;
        self.transaction(|c| {
            let g = bucket.granularity.as_str();
            c.exec(DELETE_BUCKET_ROWS, &vals![g, bucket.start_ms])?;
            c.exec(ROLLUP, &vals![g, bucket.start_ms, child.as_str(), bucket.end_ms()])
        })
    }

    fn delete_speed_rows(&mut self, bucket: Bucket) -> Result<u64> {
        self.transaction(|c| speed::delete_bucket(c, bucket))
    }

    fn regenerate_top_lists(&mut self, bucket: Bucket, k: usize) -> Result<u64> {
        self.transaction(|c| top_lists::regenerate(c, bucket, k))
    }

    fn hour_version(&mut self, hour: Bucket) -> Result<Option<u64>> {
        Ok(query_int(&mut *self.conn, HOUR_VERSION, &vals![hour.start_ms])?.map(|v| v as u64))
    }

    fn add_pending(&mut self, buckets: &[Bucket]) -> Result<()> {
        self.transaction(|c| add_pending(c, buckets))
    }

    fn pending_generation(&mut self, bucket: Bucket) -> Result<Option<i64>> {
        query_int(&mut *self.conn, PENDING_GENERATION, &vals![bucket.granularity.as_str(), bucket.start_ms])
    }

    fn remove_pending(&mut self, bucket: Bucket, generation: i64) -> Result<()> {
        self.conn.exec(REMOVE_PENDING, &vals![bucket.granularity.as_str(), bucket.start_ms, generation]).map(drop)
    }

    fn start_run(&mut self, task: &str, bucket: Bucket, attempt: i64, now_ms: i64) -> Result<i64> {
        let params = vals![task, bucket.granularity.as_str(), bucket.start_ms, attempt, now_ms];
        query_int(&mut *self.conn, START_RUN, &params)?
            .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING gave no id".into()))
    }

    fn finish_run(
        &mut self,
        id: i64,
        status: RunStatus,
        rows: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.conn.exec(FINISH_RUN, &vals![status.as_str(), rows, error, now_ms, id]).map(drop)
    }

    fn fail_interrupted_runs(&mut self, now_ms: i64) -> Result<u64> {
        self.conn.exec(FAIL_INTERRUPTED, &vals![now_ms])
    }

    fn attempts(&mut self, task: &str, bucket: Bucket) -> Result<i64> {
        let params = vals![task, bucket.granularity.as_str(), bucket.start_ms];
        Ok(query_int(&mut *self.conn, ATTEMPTS, &params)?.unwrap_or(0))
    }

    fn delete_hours_before(&mut self, before_ms: i64) -> Result<u64> {
        self.transaction(|c| {
            let n = c.exec(DELETE_HOURS_BEFORE, &vals![before_ms])?;
            c.exec(DELETE_HOUR_LISTS_BEFORE, &vals![before_ms])?;
            c.exec(DELETE_HOUR_TOTALS_BEFORE, &vals![before_ms])?;
            Ok(n)
        })
    }

    fn record_accuracy(&mut self, bucket: Bucket, a: &Accuracy, now_ms: i64) -> Result<()> {
        let params = vals![
            bucket.granularity.as_str(),
            bucket.start_ms,
            a.precision_at_10,
            a.precision_at_100,
            a.max_relative_error,
            a.mean_relative_error,
            a.bound_coverage,
            now_ms,
        ];
        self.conn.exec(UPSERT_ACCURACY, &params).map(drop)
    }
}
