//! The store: plain SQL tables that the batch layer writes, the API reads, and a BI tool
//! or an analyst can query directly (DESIGN §7).
//!
//! # Layout
//! One trait per role, each in the file of its queries, all implemented by [`SqlStore`]:
//! - [`ServingStore`] (`serving.rs`): the reads — all the API needs; the writers' traits
//!   extend it. The catalog's queries are in `catalog.rs`;
//! - [`BatchStore`] (`batch.rs`): the batch layer's writes (exact rows, rollups, top lists
//!   via `top_lists.rs`, stale buckets, runs, retention, scores);
//! - [`SpeedStore`] (`speed.rs`): the speed role's write cycles (approximate rows,
//!   sketches and the catalog, or Kappa's exact rows), each with its offsets.
//!
//! [`SqlStore`] (`sql.rs`) is one connection of either backend — SQLite (`sqlite.rs`, the
//! embedded default: one file in the data directory) or PostgreSQL (`postgres.rs`,
//! production) — with its migrations (`schema.rs`) and transactions. Statements are
//! written once where the dialects agree (`$1` placeholders, `ON CONFLICT`, `RETURNING`)
//! and once per dialect where they do not (`dialect.rs`).
//!
//! Times are epoch milliseconds (UTC) in `BIGINT` columns; a bucket is
//! (`granularity`, `bucket_start`). Rows, lists, totals and sketches carry the
//! `breakdown` they belong to (`''`: the global lists; see `topk_core::breakdown`).

mod batch;
mod catalog;
pub mod dialect;
mod postgres;
pub mod schema;
mod serving;
mod speed;
mod sql;
mod sqlite;
/// Test databases for the suites of this and other crates (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod top_lists;

pub use batch::{BatchStore, BucketRun, TaskRun, EXACT_ROW};
pub use postgres::redact;
pub use serving::{ServingStore, EXACT_GENERATION};
pub use speed::{SavedSketch, SpeedStore};
pub use sql::{Conn, SqlRow, SqlStore, Value};
pub use top_lists::best;
use topk_core::accuracy::Accuracy;
use topk_core::time::Bucket;

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

/// A bucket's exact rows of one breakdown (its key; `""`: the global rows), in product-id
/// order.
pub type Slice = (String, Rows);

/// A slice's rows, shared: a breakdown whose rows are the global ones (`category=(none)`
/// where events carry no category) holds the global slice's rows rather than a copy of a
/// million of them.
pub type Rows = std::sync::Arc<Vec<ProductSum>>;

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
    /// The breakdown's key (`""`: the global list).
    pub breakdown: String,
    /// Replaces the bucket's rows in `speed_table`.
    pub rows: Vec<SpeedRow>,
    /// Per partition, the serialised sketch to resume from after a restart.
    pub sketches: Vec<(u32, Vec<u8>)>,
    /// The bucket is done: its sketches are deleted instead of saved.
    pub finished: bool,
    /// Every partition's watermark has passed the bucket's end. Such a bucket's estimates
    /// are not written once the batch layer's exact answer is there (it is looked up in
    /// the write's own transaction): they would only stand beside it.
    pub ended: bool,
    /// The most any product missing from `rows` can have sold in the bucket.
    pub unlisted_bound: i64,
    /// The bucket's net quantity (exact).
    pub total_count: i64,
}

/// How far the speed layer's written estimates reach (`speed_watermark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeedWatermark {
    /// Every event before it that is not late is in the estimates written.
    pub watermark_ms: i64,
    /// When the speed layer last wrote (wall clock): whether it is still running.
    pub updated_ms: i64,
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
    /// The least count and revenue of its rows (`None` when it has none, or for totals
    /// written before they were kept).
    pub min_count: Option<i64>,
    pub min_revenue_cents: Option<i64>,
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

/// Whether a store location names a PostgreSQL server (a `postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl SqlStore {
    /// Opens the store at `location`: a `postgres://` or `postgresql://` URL, else the
    /// path of a SQLite file (created if missing).
    pub fn open(location: &str) -> Result<SqlStore> {
        if is_postgres(location) {
            SqlStore::new(Box::new(postgres::PgConn::connect(location)?))
        } else {
            SqlStore::open_sqlite(location)
        }
    }
}

#[cfg(test)]
mod tests;
