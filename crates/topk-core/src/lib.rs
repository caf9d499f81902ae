//! Pure logic of topk: nothing here touches a disk, a socket or a clock.
//!
//! # Layout
//! - [`event`]: the sale event, its validation and the NDJSON / CSV parsers that turn
//!   input lines into validated events or per-line rejections.
//! - [`timestamp`]: RFC 3339 and epoch-millisecond parsing and formatting.
//! - [`time`]: buckets (hour, day, ISO week, month, year), the rollup lineage and the
//!   decomposition of any range into the fewest aligned buckets.
//! - [`partition`]: the stable hashes that choose a product's partition and key the
//!   dedup window; they must never change, since data on disk depends on them.
//! - [`codec`]: the compact binary form in which validated events travel through the log.
//! - [`flush`]: the flush batch, the aggregated rows the aggregator writes to the flush
//!   log and the archive, the speed layer and recovery read: the contract between roles.
//! - [`clock`]: the wall clock, read in one place.
//! - [`bytes`]: the little-endian reader of the other binary records (flush batches, sketches).
//! - [`accuracy`]: how an approximate top list scores against the exact one.
//! - [`breakdown`]: the dimension sets (country, city, category) that get their own lists.
//! - [`random`]: seeded random numbers and a Zipf sampler for generated data.

pub mod accuracy;
pub mod breakdown;
pub mod bytes;
pub mod clock;
pub mod codec;
pub mod event;
pub mod flush;
pub mod partition;
pub mod random;
pub mod time;
pub mod timestamp;

/// Length of the top lists kept per bucket unless configured (`top_k`): the batch
/// layer's, the speed layer's, and the most rows an answer may ask for.
pub const DEFAULT_TOP_K: usize = 1000;

/// One hour in milliseconds: the finest bucket, and the unit the aggregator keys on.
pub const HOUR_MS: i64 = 3_600_000;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the hour containing `ts_ms` (correct for times before 1970 too).
pub fn hour_floor(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// A stop signal shared by the roles of one process: set once, seen by every loop, and
/// waking every loop that waits on it — in [`Shutdown::wait`], or on anything that
/// registered a wake with [`Shutdown::on_trigger`] (a log's readers waiting for appends).
/// No loop sleeps in steps to notice a stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(std::sync::Arc<ShutdownState>);

#[derive(Default)]
struct ShutdownState {
    triggered: std::sync::atomic::AtomicBool,
    /// Called once by [`Shutdown::trigger`]; also the lock [`Shutdown::wait`] waits under.
    wakes: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    woken: std::sync::Condvar,
}

impl std::fmt::Debug for ShutdownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownState").field("triggered", &self.triggered).finish_non_exhaustive()
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.triggered.store(true, std::sync::atomic::Ordering::SeqCst);
        let wakes = std::mem::take(&mut *self.0.wakes.lock().unwrap_or_else(|e| e.into_inner()));
        self.0.woken.notify_all();
        for wake in wakes {
            wake();
        }
    }

    /// Runs `wake` when this is triggered (at once if it already is): how a loop blocked
    /// on something else (a log's appends) learns of the stop without polling.
    pub fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakes = self.0.wakes.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_triggered() {
            drop(wakes);
            wake();
        } else {
            wakes.push(Box::new(wake));
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until triggered or `timeout` passes; returns whether it was triggered.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let held = self.0.wakes.lock().unwrap_or_else(|e| e.into_inner());
        let (_held, _) =
            self.0.woken.wait_timeout_while(held, timeout, |_| !self.is_triggered()).unwrap_or_else(|e| e.into_inner());
        self.is_triggered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_trigger_wakes_a_waiting_loop_at_once() {
        let stop = Shutdown::default();
        assert!(!stop.wait(Duration::from_millis(1)), "not triggered: the wait times out");
        let waiter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (stop.wait(Duration::from_secs(30)), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.trigger();
        let (triggered, waited) = waiter.join().unwrap();
        assert!(triggered && waited < Duration::from_secs(10), "woken after {waited:?}");
        assert!(stop.is_triggered() && stop.wait(Duration::from_secs(30)), "and stays triggered");
    }

    #[test]
    fn a_trigger_runs_each_registered_wake_once_and_a_late_one_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Shutdown::default();
        let woken = Arc::new(AtomicUsize::new(0));
        let count = |w: &Arc<AtomicUsize>| {
            let w = w.clone();
            move || {
                w.fetch_add(1, Ordering::SeqCst);
            }
        };
        stop.on_trigger(count(&woken));
        stop.on_trigger(count(&woken));
        assert_eq!(woken.load(Ordering::SeqCst), 0, "not before the trigger");
        stop.trigger();
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        stop.trigger();
        assert_eq!(woken.load(Ordering::SeqCst), 2, "once each");
        stop.on_trigger(count(&woken));
        assert_eq!(woken.load(Ordering::SeqCst), 3, "registered after the trigger: run at once");
    }
}
