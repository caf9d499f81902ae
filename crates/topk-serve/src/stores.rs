//! Read connections to the store, reused between requests. Queries run at most two per
//! core at once: more would only thrash the CPU and the page cache, and lengthen every
//! request's wait.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use topk_store::{SqlStore, StoreError};

use crate::api::ApiError;

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

    /// Runs `f` on a pooled connection, on the blocking thread pool.
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SqlStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let Ok(_running) = self.running.acquire().await else {
            return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()));
        };
        let pool = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut store = match idle {
                Some(s) => s,
                None => SqlStore::open(&pool.location)?,
            };
            let out = f(&mut store);
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
            out
        })
        .await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("reading the store: {e}"))),
            Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("query failed: {e}"))),
        }
    }
}
