//! The store: plain SQL tables that the batch layer writes, the API reads, and a BI tool
//! or an analyst can query directly (DESIGN §7).
//!
//! # Layout
//! - [`schema`]: the migrations, and every query, written once in the SQL that SQLite and
//!   PostgreSQL share (`$1` placeholders, `ON CONFLICT`, `RETURNING`).
//! - [`Store`]: the small trait the batch layer and the API use.
//! - [`SqlStore`]: its one implementation, over a connection of either backend: SQLite
//!   (the embedded default, one file in the data directory) or PostgreSQL (production).
//!
//! Times are epoch milliseconds (UTC) in `BIGINT` columns; a bucket is
//! (`granularity`, `bucket_start`).

mod postgres;
pub mod schema;
mod sql;
mod sqlite;
#[doc(hidden)]
pub mod testing;

pub use postgres::redact;
pub use sql::{Conn, SqlRow, SqlStore, Value};
use topk_core::accuracy::Accuracy;
use topk_core::time::{Bucket, Granularity};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {0}")]
    Postgres(String),
    #[error("store {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("unexpected value in the store: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Exact sums of one product in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSum {
    pub product_id: String,
    pub count: i64,
    pub revenue_cents: i64,
}

/// What a top list ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum By {
    Quantity,
    Revenue,
}

impl By {
    pub const ALL: [By; 2] = [By::Quantity, By::Revenue];

    pub fn as_str(self) -> &'static str {
        match self {
            By::Quantity => "quantity",
            By::Revenue => "revenue",
        }
    }
}

/// One row of a top list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRow {
    pub rank: i64,
    pub product_id: String,
    pub count: i64,
    pub revenue_cents: i64,
    /// 0 for exact (batch) rows.
    pub error_bound: i64,
    /// `batch` (exact) or `speed` (approximate).
    pub source: String,
}

/// One approximate row of `speed_table`: the true count lies in `count ± error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedRow {
    pub product_id: String,
    pub count: i64,
    pub error: i64,
    pub revenue_cents: i64,
    pub updated_ms: i64,
}

/// What the speed layer writes for one bucket in one write cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedWrite {
    pub bucket: topk_core::time::Bucket,
    /// Replaces the bucket's rows in `speed_table`.
    pub rows: Vec<SpeedRow>,
    /// Per partition, the serialised sketch to resume from after a restart.
    pub sketches: Vec<(u32, Vec<u8>)>,
    /// The bucket is done: its sketches are deleted instead of saved.
    pub finished: bool,
    /// The most any product missing from `rows` can have sold in the bucket.
    pub unlisted_bound: i64,
    /// The bucket's net quantity (exact).
    pub total_count: i64,
}

/// An approximate bucket's facts beside its rows (`speed_buckets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeedBucket {
    pub bucket: Bucket,
    pub unlisted_bound: i64,
    pub total_count: i64,
    pub updated_ms: i64,
}

/// An exact bucket's totals (`bucket_totals`), written with its top lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactBucket {
    pub bucket: Bucket,
    pub count: i64,
    pub revenue_cents: i64,
    pub products: i64,
}

/// A catalog entry (`products`): every product that sold, with the newest name and
/// category its events carried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Product {
    pub product_id: String,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// A scored speed-layer bucket (`accuracy`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyRecord {
    pub bucket: Bucket,
    pub accuracy: Accuracy,
    pub scored_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Success,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(RunStatus::Running),
            "success" => Ok(RunStatus::Success),
            "failed" => Ok(RunStatus::Failed),
            other => Err(StoreError::Corrupt(format!("run status {other:?}"))),
        }
    }
}

/// One attempt of one task on one bucket (`pipeline_runs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: i64,
    pub task: String,
    pub bucket: Bucket,
    pub status: RunStatus,
    pub attempt: i64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub rows: Option<i64>,
    pub error: Option<String>,
}

/// Runs of one task with one status, and the time the finished ones took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub task: String,
    pub status: RunStatus,
    pub runs: i64,
    pub duration_ms: i64,
}

/// The operations of the batch layer and the API on the store. Each method that writes
/// runs in one transaction: after a crash it has happened entirely or not at all.
pub trait Store: Send {
    /// Replaces the hour's exact rows, records which archive version they came from, and
    /// marks `pending` (the buckets above) for re-computation — all atomically.
    fn replace_hour(&mut self, hour: Bucket, rows: &[ProductSum], version: u64, pending: &[Bucket]) -> Result<u64>;
    /// Replaces a bucket's rows with the sums of its children's rows (rollup lineage).
    fn rollup(&mut self, bucket: Bucket) -> Result<u64>;
    /// Deletes the bucket's approximate rows once the exact ones exist.
    fn delete_speed_rows(&mut self, bucket: Bucket) -> Result<u64>;
    /// Rebuilds the bucket's top lists (by quantity and by revenue) from its exact rows.
    fn regenerate_top_lists(&mut self, bucket: Bucket, k: usize) -> Result<u64>;
    fn bucket_rows(&mut self, bucket: Bucket) -> Result<Vec<ProductSum>>;
    fn top_list(&mut self, bucket: Bucket, by: By, k: usize) -> Result<Vec<TopRow>>;

    /// The archive version an hour was last rolled up from.
    fn hour_version(&mut self, hour: Bucket) -> Result<Option<u64>>;
    /// Marks buckets pending; one already pending gets a new generation.
    fn add_pending(&mut self, buckets: &[Bucket]) -> Result<()>;
    /// The pending generation of a bucket, `None` if it is not pending.
    fn pending_generation(&mut self, bucket: Bucket) -> Result<Option<i64>>;
    /// Clears a bucket's pending mark if it is still at `generation`: a run clears only
    /// the staleness it started from, never a change that arrived while it ran.
    fn remove_pending(&mut self, bucket: Bucket, generation: i64) -> Result<()>;
    fn pending(&mut self) -> Result<Vec<Bucket>>;

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
    /// Runs, failures first, then newest first.
    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>>;

    /// Run counts and durations per task and status.
    fn run_stats(&mut self) -> Result<Vec<RunStats>>;

    /// Retention: deletes hourly rows (and their top lists and totals) of hours starting
    /// before `before_ms`.
    fn delete_hours_before(&mut self, before_ms: i64) -> Result<u64>;

    /// The next offset per partition that `consumer` has absorbed into the store.
    fn consumer_offsets(&mut self, consumer: &str) -> Result<Vec<(u32, u64)>>;
    /// The speed layer's write cycle: every bucket's rows and sketches, the catalog entries
    /// of the flushes absorbed, and the offsets they cover, in one transaction — so a
    /// restart resumes from exactly what was saved.
    fn write_speed(
        &mut self,
        consumer: &str,
        writes: &[SpeedWrite],
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()>;
    /// Every saved sketch: (bucket, partition, bytes).
    fn speed_sketches(&mut self) -> Result<Vec<(Bucket, u32, Vec<u8>)>>;
    /// A bucket's approximate rows, largest first.
    fn speed_rows(&mut self, bucket: Bucket) -> Result<Vec<SpeedRow>>;
    /// Kappa's write cycle: upserts exact rows and catalog entries, regenerates the touched
    /// buckets' top lists and records the offsets, in one transaction.
    fn write_exact(
        &mut self,
        consumer: &str,
        rows: &[(Bucket, Vec<ProductSum>)],
        top_k: usize,
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()>;
    /// Whether the bucket has exact top lists (the batch layer, or Kappa, has spoken).
    fn has_exact(&mut self, bucket: Bucket) -> Result<bool>;
    /// Approximate buckets of a granularity starting in `[from_ms, to_ms)`.
    fn speed_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<SpeedBucket>>;
    /// Exact buckets (with top lists) of a granularity starting in `[from_ms, to_ms)`.
    fn exact_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<ExactBucket>>;
    /// The exact sums in a bucket of those of `product_ids` that sold there.
    fn product_sums(&mut self, bucket: Bucket, product_ids: &[&str]) -> Result<Vec<ProductSum>>;
    /// A product's rank in the bucket's stored top list, if it is on it.
    fn rank_of(&mut self, bucket: Bucket, by: By, product_id: &str) -> Result<Option<i64>>;
    /// Adds products to the catalog; a missing name or category keeps the stored one. The
    /// ids must be distinct.
    fn upsert_products(&mut self, products: &[Product]) -> Result<()>;
    /// The catalog entries of those of `product_ids` it has.
    fn products(&mut self, product_ids: &[&str]) -> Result<Vec<Product>>;
    /// Products whose id, or name (case-insensitive), starts with `prefix`.
    fn search_products(&mut self, prefix: &str, limit: usize) -> Result<Vec<Product>>;
    fn record_accuracy(&mut self, bucket: Bucket, accuracy: &Accuracy, now_ms: i64) -> Result<()>;
    /// A value that changes whenever exact rows may have (see [`schema::EXACT_GENERATION`]).
    fn exact_generation(&mut self) -> Result<(i64, i64)>;
    /// Scored buckets, newest first.
    fn accuracy(&mut self, limit: usize) -> Result<Vec<AccuracyRecord>>;
}

#[cfg(test)]
mod tests;
