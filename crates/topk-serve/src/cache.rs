//! The response cache: serialised answers by canonical request, each with its own time
//! to live, through moka (`entry().or_try_insert_with` computes a missing answer once
//! however many requests ask for it at the same moment: no stampede when it expires).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// Entries kept at most; moka evicts the least used beyond it.
const ENTRIES: u64 = 10_000;

/// One answer and how long it may be reused.
#[derive(Clone)]
pub struct Cached {
    pub body: Bytes,
    pub ttl: Duration,
}

/// Each entry lives as long as its answer says.
struct ByTtl;

impl moka::Expiry<String, Cached> for ByTtl {
    fn expire_after_create(&self, _: &String, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct ResponseCache {
    entries: moka::future::Cache<String, Cached>,
}

impl ResponseCache {
    pub fn new() -> Self {
        ResponseCache { entries: moka::future::Cache::builder().max_capacity(ENTRIES).expire_after(ByTtl).build() }
    }

    /// The cached answer, or the one `compute` makes; and whether it was a hit.
    pub async fn get_or_compute<F, E>(&self, key: String, compute: F) -> Result<(Cached, bool), Arc<E>>
    where
        F: std::future::Future<Output = Result<Cached, E>>,
        E: Send + Sync + 'static,
    {
        let entry = self.entries.entry(key).or_try_insert_with(compute).await?;
        let hit = !entry.is_fresh();
        Ok((entry.into_value(), hit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_computation_and_expired_entries_are_recomputed() {
        let cache = Arc::new(ResponseCache::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let ask = |ttl: Duration| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                let compute = async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>(Cached { body: Bytes::from_static(b"answer"), ttl })
                };
                cache.get_or_compute("k".into(), compute).await.ok().unwrap()
            })
        };
        let replies: Vec<_> = (0..20).map(|_| ask(Duration::from_millis(200))).collect();
        let mut hits = 0;
        for r in replies {
            let (answer, hit) = r.await.unwrap();
            assert_eq!(&answer.body[..], b"answer");
            hits += usize::from(hit);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one computation for 20 concurrent requests");
        assert_eq!(hits, 19);
        assert!(ask(Duration::from_millis(200)).await.unwrap().1, "fresh: a hit");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!ask(Duration::from_millis(200)).await.unwrap().1, "expired: computed again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
