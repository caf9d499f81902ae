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
//! - [`bytes`]: the little-endian reader of the other binary records (flush batches, sketches).
//! - [`accuracy`]: how an approximate top list scores against the exact one.
//! - [`random`]: seeded random numbers and a Zipf sampler for generated data.

pub mod accuracy;
pub mod bytes;
pub mod codec;
pub mod event;
pub mod partition;
pub mod random;
pub mod time;
pub mod timestamp;

/// One hour in milliseconds: the finest bucket, and the unit the aggregator keys on.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour containing `ts_ms` (correct for times before 1970 too).
pub fn hour_floor(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// A stop signal shared by the roles of one process: set once, seen by every loop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Shutdown {
    pub fn trigger(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
