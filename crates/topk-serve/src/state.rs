//! What the handlers share, and what they need of the process they serve in.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use topk_core::breakdown::Breakdowns;
use topk_ingest::kafka_source::SourceState;
use topk_ingest::{IngestStats, Ingestor};
use topk_log::{Log, LogError};

use crate::cache::ResponseCache;
use crate::stores::StorePool;
use crate::telemetry::{PartitionLag, Telemetry};

/// Ingest requests handled at once: each may hold a large body and its parse buffers.
pub const MAX_CONCURRENT_INGESTS: usize = 4;

/// What the API needs of the process it serves in; the binary's wiring implements it.
pub trait Process: Send + Sync + 'static {
    /// The events log that ingest appends to, and whose source positions replays ask for.
    fn events(&self) -> &Arc<dyn Log>;
    /// A new ingestor over the events log.
    fn ingestor(&self) -> Ingestor;
    /// What ingest has done, for the metrics.
    fn ingest_stats(&self) -> &IngestStats;
    /// A role's recent error: while there is one the process is unhealthy.
    fn failure(&self) -> Option<String>;
    /// An error outside the roles (an ingest that could not append): unhealthy from now.
    fn record_failure(&self, message: String);
    /// The position and lag of each role this process runs, per partition. May read the
    /// logs (on Kafka, over the network): called off the async workers.
    fn lags(&self) -> Result<Vec<PartitionLag>, LogError>;
    /// The Kafka source this process runs, if any: its topic and state.
    fn source(&self) -> Option<(&str, &SourceState)>;
}

/// The API's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServeConfig {
    /// Largest accepted ingest body, after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Bearer token required by ingest and `resume` (none: open).
    pub auth_token: Option<String>,
    /// Cache answers (exact ones for 60 s, approximate ones for 1 s).
    pub api_cache: bool,
    /// Queries waiting for a store connection (beyond those running, two per core) past
    /// which a query is answered 503 at once rather than queued behind them.
    pub max_queued_queries: usize,
    /// The store: a SQLite path or a `postgres://` URL.
    pub store: String,
    /// Lambda (exact rows come from the batch layer, only for ended buckets) or Kappa.
    pub lambda: bool,
    /// The dimension sets with lists: what filters and `group_by` accept.
    pub breakdowns: Breakdowns,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 64 << 20,
            auth_token: None,
            api_cache: true,
            max_queued_queries: 512,
            store: String::new(),
            lambda: true,
            breakdowns: Breakdowns::default(),
        }
    }
}

/// What the handlers share.
pub struct AppState {
    pub(crate) process: Arc<dyn Process>,
    pub(crate) cfg: ServeConfig,
    pub(crate) stores: Arc<StorePool>,
    pub(crate) cache: ResponseCache,
    pub(crate) telemetry: Telemetry,
    /// Bounds concurrent ingests (memory), and lets shutdown wait for them to finish.
    pub ingests: Arc<tokio::sync::Semaphore>,
    /// Serialises ingests that carry a replay position: checking how far a source got and
    /// appending its next lines must not interleave with a retry of the same lines.
    pub(crate) sources: Mutex<()>,
    /// The store's exact generation as last read, and when.
    pub(crate) generation: Mutex<Option<((i64, i64), Instant)>>,
    /// The last ended day's projection backtests (for `/metrics`), once it was exact.
    pub(crate) projection_scores: Mutex<Option<(i64, Vec<crate::query::Backtest>)>>,
}

impl AppState {
    pub fn new(process: Arc<dyn Process>, cfg: ServeConfig) -> Self {
        AppState {
            stores: Arc::new(StorePool::new(cfg.store.clone(), cfg.max_queued_queries)),
            cache: ResponseCache::new(),
            telemetry: Telemetry::default(),
            process,
            cfg,
            ingests: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INGESTS)),
            sources: Mutex::new(()),
            generation: Mutex::new(None),
            projection_scores: Mutex::new(None),
        }
    }

    /// Waits for ingests whose client went away but which are still appending.
    pub async fn drained(&self) {
        let all = MAX_CONCURRENT_INGESTS as u32;
        let _all = self.ingests.acquire_many(all).await;
    }
}
