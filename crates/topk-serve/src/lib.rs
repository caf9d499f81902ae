//! The serving layer (DESIGN §7): the HTTP API — the top K of any period, merging the
//! batch layer's exact rows with the speed layer's estimates — ingest over HTTP, health,
//! metrics and the dashboard.
//!
//! # Layout
//! - [`api`]: one module per area (`top`, `products`, `buckets`, `events`, `sources`,
//!   `health`, `metrics`), the router and what they share (errors, parameters, the
//!   bearer check); the OpenAPI document is generated from the handlers.
//! - [`query`]: the merge rule and the threshold algorithm, pure logic over the store.
//! - `cache`: the response cache; `stores`: the pool of read connections.
//! - [`telemetry`]: every metric topk exports, declared in one place.
//! - [`dashboard`]: the page at `/`, compiled in (`assets/`).
//!
//! The API knows the process it runs in only through [`Process`]: the events log to
//! ingest into, health, and the positions the metrics report. The roles and their
//! wiring are the binary's.

pub mod api;
mod cache;
pub mod dashboard;
pub mod query;
mod stores;
pub mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use topk_ingest::kafka_source::SourceState;
use topk_ingest::{IngestStats, Ingestor};
use topk_log::{Log, LogError};

pub use api::{router, run, MAX_CONCURRENT_INGESTS};

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
    fn lags(&self) -> Result<Vec<telemetry::PartitionLag>, LogError>;
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
    /// The store: a SQLite path or a `postgres://` URL.
    pub store: String,
    /// Lambda (exact rows come from the batch layer, only for ended buckets) or Kappa.
    pub lambda: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig { max_body_bytes: 64 << 20, auth_token: None, api_cache: true, store: String::new(), lambda: true }
    }
}

/// What the handlers share.
pub struct AppState {
    process: Arc<dyn Process>,
    cfg: ServeConfig,
    stores: Arc<stores::StorePool>,
    cache: cache::ResponseCache,
    telemetry: telemetry::Telemetry,
    /// Bounds concurrent ingests (memory), and lets shutdown wait for them to finish.
    pub ingests: Arc<tokio::sync::Semaphore>,
    /// Serialises ingests that carry a replay position: checking how far a source got and
    /// appending its next lines must not interleave with a retry of the same lines.
    sources: Mutex<()>,
    /// The store's exact generation as last read, and when.
    generation: Mutex<Option<((i64, i64), Instant)>>,
}

impl AppState {
    pub fn new(process: Arc<dyn Process>, cfg: ServeConfig) -> Self {
        AppState {
            stores: Arc::new(stores::StorePool::new(cfg.store.clone())),
            cache: cache::ResponseCache::new(),
            telemetry: telemetry::Telemetry::default(),
            process,
            cfg,
            ingests: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INGESTS)),
            sources: Mutex::new(()),
            generation: Mutex::new(None),
        }
    }

    /// Waits for ingests whose client went away but which are still appending.
    pub async fn drained(&self) {
        let all = MAX_CONCURRENT_INGESTS as u32;
        let _all = self.ingests.acquire_many(all).await;
    }
}
