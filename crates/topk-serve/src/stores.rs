//! Read connections to the store, reused between requests. Queries run at most two per
//! core at once: more would only thrash the CPU and the page cache, and lengthen every
//! request's wait.

use std::sync::{Arc, Mutex};

use topk_store::{ServingStore, SqlStore, StoreError};

/// Why a pooled read did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("shutting down")]
    Closed,
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("query failed: {0}")]
    Panicked(String),
}

pub struct StorePool {
    location: String,
    idle: Mutex<Vec<SqlStore>>,
    running: tokio::sync::Semaphore,
}

impl StorePool {
    pub fn new(location: String) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        StorePool { location, idle: Mutex::default(), running: tokio::sync::Semaphore::new(2 * cores) }
    }

    /// Runs `f` on a pooled connection, on the blocking thread pool, reading the global lists.
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn ServingStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PoolError> {
        self.with_breakdown(String::new(), f).await
    }

    /// [`StorePool::with`], reading the lists of one breakdown (its key; `""`: global).
    pub async fn with_breakdown<T: Send + 'static>(
        self: &Arc<Self>,
        breakdown: String,
        f: impl FnOnce(&mut dyn ServingStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PoolError> {
        let Ok(_running) = self.running.acquire().await else { return Err(PoolError::Closed) };
        let pool = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut store = match idle {
                Some(s) => s,
                None => SqlStore::open(&pool.location)?,
            };
            store.set_breakdown(&breakdown);
            let out = f(&mut store);
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
            out
        })
        .await;
        match result {
            Ok(r) => Ok(r?),
            Err(e) => Err(PoolError::Panicked(e.to_string())),
        }
    }
}
