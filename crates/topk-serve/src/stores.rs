//! Read connections to the store, reused between requests. Queries run at most two per
//! core at once: more would only thrash the CPU and the page cache, and lengthen every
//! request's wait. Past a bound on those waiting, a query is refused at once (503) instead
//! of queueing without end behind a backlog it would only lengthen.

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
    #[error("{queued} queries are waiting for the store already (max_queued_queries): retry in a moment")]
    Busy { queued: usize },
}

pub struct StorePool {
    location: String,
    idle: Mutex<Vec<SqlStore>>,
    running: tokio::sync::Semaphore,
    /// Places for queries running or waiting: `running`'s plus `max_queued`.
    admitted: tokio::sync::Semaphore,
    max_queued: usize,
}

impl StorePool {
    pub fn new(location: String, max_queued: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        StorePool {
            location,
            idle: Mutex::default(),
            running: tokio::sync::Semaphore::new(2 * cores),
            admitted: tokio::sync::Semaphore::new(2 * cores + max_queued),
            max_queued,
        }
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
        let _admitted = match self.admitted.try_acquire() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(PoolError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(PoolError::Busy { queued: self.max_queued }),
        };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_max_queued_a_query_is_refused_with_503_at_once_and_taken_again_once_the_backlog_drains() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(StorePool::new(dir.path().join("store.db").display().to_string(), 1));
        let running = pool.running.available_permits();
        // Every query blocks until the gate opens: `running` of them run, one waits.
        let open = Arc::new(AtomicBool::new(false));
        let mut queries = Vec::new();
        for _ in 0..=running {
            let (pool, open) = (pool.clone(), open.clone());
            queries.push(tokio::spawn(async move {
                pool.with(move |s| {
                    while !open.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    s.search_products("p", 1).map(|found| found.len())
                })
                .await
            }));
        }
        while pool.admitted.available_permits() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let refused = pool.with(|s| s.search_products("p", 1)).await;
        assert!(matches!(refused, Err(PoolError::Busy { queued: 1 })), "{refused:?}");
        let reply = crate::api::ApiError::from(refused.unwrap_err()).into_response();
        assert_eq!(reply.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.headers()[axum::http::header::RETRY_AFTER], "1");

        open.store(true, Ordering::SeqCst);
        for q in queries {
            assert_eq!(q.await.unwrap().unwrap(), 0, "every admitted query answers");
        }
        assert!(pool.with(|s| s.search_products("p", 1)).await.is_ok(), "room again");
    }
}
