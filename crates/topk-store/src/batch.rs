//! What the batch layer writes: exact hour rows from the archive, rollups, top lists, the
//! bookkeeping of stale buckets and runs, retention, and the speed layer's scores.

use topk_core::accuracy::Accuracy;
use topk_core::time::Bucket;

use crate::dialect::Insert;
use crate::schema::EXACT_COLUMNS;
use crate::serving::ServingStore;
use crate::sql::{lock_buckets, query, query_int, Conn, SqlStore, Value};
use crate::{speed, top_lists, vals, ProductSum, Result, Rows, RunStatus, Slice, SpeedWatermark, StoreError};

/// One task of a bucket's run, recorded in `pipeline_runs` once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRun<'a> {
    pub task: &'a str,
    pub attempt: i64,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub status: RunStatus,
    pub rows: Option<i64>,
    pub error: Option<&'a str>,
}

/// What one run of a bucket's DAG commits ([`BatchStore::commit_bucket`]).
#[derive(Debug, Clone, Copy)]
pub struct BucketRun<'a> {
    pub bucket: Bucket,
    /// Its exact rows per breakdown (the global ones under `""`), each in product-id
    /// order; `None` for an hour past retention, whose rows, lists and totals are deleted
    /// rather than written.
    pub rows: Option<&'a [Slice]>,
    /// Values the run admitted to their sets (`breakdown_values`): (set, value).
    pub admitted: &'a [(String, String)],
    /// The length of its top lists.
    pub top_k: usize,
    /// For an hour: the archive version its rows were summed from.
    pub hour_version: Option<u64>,
    /// Buckets to mark pending (an hour's ancestors).
    pub mark_pending: &'a [Bucket],
    /// The speed layer's score against these rows, where it had rows for the bucket.
    pub accuracy: Option<&'a Accuracy>,
    pub runs: &'a [TaskRun<'a>],
    /// The pending generation the run started from: cleared if it is still the current one.
    pub generation: Option<i64>,
    pub now_ms: i64,
}

impl<'a> BucketRun<'a> {
    /// A bucket's exact rows with their lists and totals, and nothing else.
    pub fn rows(bucket: Bucket, rows: &'a [Slice], top_k: usize) -> BucketRun<'a> {
        BucketRun {
            bucket,
            rows: Some(rows),
            admitted: &[],
            top_k,
            hour_version: None,
            mark_pending: &[],
            accuracy: None,
            runs: &[],
            generation: None,
            now_ms: 0,
        }
    }
}

/// The store as the batch layer sees it: the reads, and its writes. Each method that
/// writes runs in one transaction: after a crash it has happened entirely or not at all.
pub trait BatchStore: ServingStore {
    /// Commits everything one run of a bucket's DAG produced, in one transaction: its
    /// exact rows, top lists and totals (or their deletion, for an hour past retention),
    /// the archive version an hour came from, the pending marks of the buckets above, the
    /// speed layer's score and the deletion of its rows, the task runs, and the clearing
    /// of the bucket's pending mark at the generation the run started from. After a crash
    /// the run has happened entirely or not at all. Returns the top-list rows written.
    fn commit_bucket(&mut self, run: &BucketRun<'_>) -> Result<u64>;
    /// Records task runs that did not end in a commit (a failure, a bucket not ready).
    fn record_runs(&mut self, bucket: Bucket, runs: &[TaskRun<'_>]) -> Result<()>;
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
    /// A bucket's exact rows of every breakdown, by breakdown then product id.
    fn bucket_slices(&mut self, bucket: Bucket) -> Result<Vec<Slice>>;
    /// The values admitted to the breakdown sets so far: (set, value).
    fn admitted_values(&mut self) -> Result<Vec<(String, String)>>;
    /// The breakdown sets the stored rows were computed for, by name (`None`: never recorded).
    fn breakdown_sets(&mut self) -> Result<Option<Vec<String>>>;
    /// Records `sets` as those the rows are computed for. With `recompute`, forgets which
    /// archive version each hour was rolled up from, so that every hour, and every bucket
    /// above, runs again with them.
    fn set_breakdown_sets(&mut self, sets: &[String], recompute: bool) -> Result<()>;
    /// How far the speed layer's written estimates reach (`None`: it never said).
    fn speed_watermark(&mut self) -> Result<Option<SpeedWatermark>>;
}

/// Rows handed to one [`Conn::insert`] when a bucket's rows are written.
const INSERT_SLICE: usize = 16_384;
const DELETE_BUCKET_ROWS: &str = "DELETE FROM batch_table WHERE granularity = $1 AND bucket_start = $2";
pub(crate) const DELETE_BUCKET_AS_GLOBAL: &str =
    "DELETE FROM batch_as_global WHERE granularity = $1 AND bucket_start = $2";
const SLICES: &str = "SELECT breakdown, product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 ORDER BY breakdown, product_id";
/// A breakdown whose rows are the global ones: marked, not stored again (migration 7).
const ADD_AS_GLOBAL: &str = "INSERT INTO batch_as_global (granularity, bucket_start, breakdown) VALUES ($1, $2, $3)";
const AS_GLOBAL: &str = "SELECT breakdown FROM batch_as_global WHERE granularity = $1 AND bucket_start = $2";
const ADMIT: &str = "INSERT INTO breakdown_values (dim_set, value) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const ADMITTED: &str = "SELECT dim_set, value FROM breakdown_values";
/// `breakdown_sets` holds the sets and a row `-`, which marks that they were recorded (no
/// sets at all is a configuration too).
const SETS: &str = "SELECT dim_set FROM breakdown_sets ORDER BY dim_set";
const CLEAR_SETS: &str = "DELETE FROM breakdown_sets";
const ADD_SET: &str = "INSERT INTO breakdown_sets (dim_set) VALUES ($1)";
/// The least over the consumers that write estimates (one: the speed layer's).
const SPEED_WATERMARK: &str = "SELECT watermark_ms, updated_at FROM speed_watermark ORDER BY watermark_ms LIMIT 1";
const FORGET_HOUR_VERSIONS: &str = "DELETE FROM batch_hour_versions";
/// Exact rows of a bucket whose rows were just deleted.
pub const EXACT_ROW: Insert = Insert { table: "batch_table", columns: EXACT_COLUMNS, on_conflict: None };
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
const INSERT_RUN: &str = "INSERT INTO pipeline_runs
    (task, granularity, bucket_start, status, attempt, started_at, finished_at, rows_written, error)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
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
const DELETE_HOURS_AS_GLOBAL_BEFORE: &str =
    "DELETE FROM batch_as_global WHERE granularity = 'hour' AND bucket_start < $1";
const UPSERT_ACCURACY: &str = "INSERT INTO accuracy (granularity, bucket_start, precision_at_10, precision_at_100,
    max_relative_error, mean_relative_error, bound_coverage, scored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET precision_at_10 = excluded.precision_at_10,
    precision_at_100 = excluded.precision_at_100, max_relative_error = excluded.max_relative_error,
    mean_relative_error = excluded.mean_relative_error, bound_coverage = excluded.bound_coverage,
    scored_at = excluded.scored_at";

fn upsert_accuracy(c: &mut dyn Conn, bucket: Bucket, a: &Accuracy, now_ms: i64) -> Result<()> {
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
    c.exec(UPSERT_ACCURACY, &params).map(drop)
}

fn insert_runs(c: &mut dyn Conn, bucket: Bucket, runs: &[TaskRun<'_>]) -> Result<()> {
    for r in runs {
        let params = vals![
            r.task,
            bucket.granularity.as_str(),
            bucket.start_ms,
            r.status.as_str(),
            r.attempt,
            r.started_ms,
            r.finished_ms,
            r.rows,
            r.error,
        ];
        c.exec(INSERT_RUN, &params)?;
    }
    Ok(())
}

fn add_pending(c: &mut dyn Conn, buckets: &[Bucket]) -> Result<()> {
    for b in buckets {
        c.exec(ADD_PENDING, &vals![b.granularity.as_str(), b.start_ms])?;
    }
    Ok(())
}

impl BatchStore for SqlStore {
    fn commit_bucket(&mut self, run: &BucketRun<'_>) -> Result<u64> {
        self.transaction(|c| {
            let b = run.bucket;
            let g = b.granularity.as_str();
            // A speed-layer write of this bucket comes wholly before or after this commit.
            lock_buckets(c, [b])?;
            c.exec(DELETE_BUCKET_ROWS, &vals![g, b.start_ms])?;
            c.exec(DELETE_BUCKET_AS_GLOBAL, &vals![g, b.start_ms])?;
            top_lists::delete(c, b)?;
            let mut lists = 0;
            let slices = run.rows.unwrap_or_default();
            let global = slices.iter().find(|(breakdown, _)| breakdown.is_empty()).map(|(_, rows)| rows);
            for (breakdown, rows) in slices {
                // (`Arc`'s equality of `Eq` contents is true at once for the same rows.)
                if !breakdown.is_empty() && global == Some(rows) {
                    c.exec(ADD_AS_GLOBAL, &vals![g, b.start_ms, breakdown])?;
                    lists += top_lists::write(c, b, breakdown, rows, run.top_k)?;
                    continue;
                }
                // In chunks, so the parameters of a bucket of a million rows are never all
                // in memory at once.
                for chunk in rows.chunks(INSERT_SLICE) {
                    let params: Vec<Value<'_>> = chunk
                        .iter()
                        .flat_map(|r| vals![g, b.start_ms, breakdown, &r.product_id, r.count, r.revenue_cents])
                        .collect();
                    c.insert(&EXACT_ROW, &params)?;
                }
                lists += top_lists::write(c, b, breakdown, rows, run.top_k)?;
            }
            for (set, value) in run.admitted {
                c.exec(ADMIT, &vals![set, value])?;
            }
            if let Some(version) = run.hour_version {
                c.exec(SET_HOUR_VERSION, &vals![b.start_ms, version as i64])?;
            }
            add_pending(c, run.mark_pending)?;
            if let Some(a) = run.accuracy {
                upsert_accuracy(c, b, a, run.now_ms)?;
            }
            speed::delete_bucket(c, b)?;
            insert_runs(c, b, run.runs)?;
            if let Some(generation) = run.generation {
                c.exec(REMOVE_PENDING, &vals![g, b.start_ms, generation])?;
            }
            Ok(lists)
        })
    }

    fn record_runs(&mut self, bucket: Bucket, runs: &[TaskRun<'_>]) -> Result<()> {
        self.transaction(|c| insert_runs(c, bucket, runs))
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
            c.exec(DELETE_HOURS_AS_GLOBAL_BEFORE, &vals![before_ms])?;
            Ok(n)
        })
    }

    fn record_accuracy(&mut self, bucket: Bucket, a: &Accuracy, now_ms: i64) -> Result<()> {
        upsert_accuracy(&mut *self.conn, bucket, a, now_ms)
    }

    fn bucket_slices(&mut self, bucket: Bucket) -> Result<Vec<Slice>> {
        let rows = query(&mut *self.conn, SLICES, &vals![bucket.granularity.as_str(), bucket.start_ms], |r| {
            Ok((r.text(0)?, ProductSum { product_id: r.text(1)?, count: r.int(2)?, revenue_cents: r.int(3)? }))
        })?;
        let mut out: Vec<(String, Vec<ProductSum>)> = Vec::new();
        for (breakdown, row) in rows {
            match out.last_mut() {
                Some((b, sums)) if *b == breakdown => sums.push(row),
                _ => out.push((breakdown, vec![row])),
            }
        }
        let mut out: Vec<Slice> = out.into_iter().map(|(b, rows)| (b, Rows::new(rows))).collect();
        let as_global =
            query(&mut *self.conn, AS_GLOBAL, &vals![bucket.granularity.as_str(), bucket.start_ms], |r| r.text(0))?;
        if !as_global.is_empty() {
            let global = out.iter().find(|(b, _)| b.is_empty()).map(|(_, rows)| rows.clone()).unwrap_or_default();
            out.extend(as_global.into_iter().map(|b| (b, global.clone())));
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(out)
    }

    fn admitted_values(&mut self) -> Result<Vec<(String, String)>> {
        query(&mut *self.conn, ADMITTED, &[], |r| Ok((r.text(0)?, r.text(1)?)))
    }

    fn breakdown_sets(&mut self) -> Result<Option<Vec<String>>> {
        let mut sets = query(&mut *self.conn, SETS, &[], |r| r.text(0))?;
        if sets.is_empty() {
            return Ok(None);
        }
        sets.retain(|s| s != "-");
        Ok(Some(sets))
    }

    fn set_breakdown_sets(&mut self, sets: &[String], recompute: bool) -> Result<()> {
        self.transaction(|c| {
            c.exec(CLEAR_SETS, &[])?;
            c.exec(ADD_SET, &vals!["-"])?;
            for s in sets {
                c.exec(ADD_SET, &vals![s])?;
            }
            if recompute {
                c.exec(FORGET_HOUR_VERSIONS, &[])?;
            }
            Ok(())
        })
    }

    fn speed_watermark(&mut self) -> Result<Option<SpeedWatermark>> {
        let rows = query(&mut *self.conn, SPEED_WATERMARK, &[], |r| {
            Ok(SpeedWatermark { watermark_ms: r.int(0)?, updated_ms: r.int(1)? })
        })?;
        Ok(rows.into_iter().next())
    }
}
