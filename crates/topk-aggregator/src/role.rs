//! The role around [`PartitionAggregator`]: the loop of one partition, and the
//! [`Control`] the process drives its partitions' loops with (drain requests, ownership,
//! the counters the metrics read).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use topk_core::clock::now_ms;
use topk_core::Shutdown;
use topk_log::Log;

use crate::{AggregatorConfig, AggregatorError, PartitionAggregator};

/// Live counters of one partition's aggregator, shared with whoever waits on it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events log offsets below this are covered by a durable flush.
    pub flushed_end: AtomicU64,
    /// The last drain request this partition has answered with an end-of-input flush.
    pub drained: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub late: AtomicU64,
    pub flushes: AtomicU64,
    /// Current watermark (ms), for lag metrics.
    pub watermark_ms: AtomicU64,
    /// Bytes the dedup window's table has allocated, as of the last flush.
    pub dedup_bytes: AtomicU64,
}

/// Shared between the aggregators of a process and the code that drives them.
#[derive(Debug)]
pub struct Control {
    /// Bumped by a producer whose input has ended (file replay): each partition answers by
    /// flushing everything with `end_of_input` once it has consumed the whole log.
    drain_requested: AtomicU64,
    pub progress: Vec<Progress>,
    /// Whether this process aggregates each partition (for its metrics).
    owned: Vec<AtomicBool>,
}

impl Control {
    pub fn new(partitions: u32) -> Self {
        Control {
            drain_requested: AtomicU64::new(0),
            progress: (0..partitions).map(|_| Progress::default()).collect(),
            owned: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Records that this process aggregates `partition`, or no longer does.
    pub fn set_owned(&self, partition: u32, owned: bool) {
        self.owned[partition as usize].store(owned, Ordering::SeqCst);
    }

    pub fn owns(&self, partition: u32) -> bool {
        self.owned[partition as usize].load(Ordering::SeqCst)
    }

    /// Asks every partition to flush all it has as final; returns the request number to
    /// wait for in [`Progress::drained`].
    pub fn request_drain(&self) -> u64 {
        self.drain_requested.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn all_drained(&self, request: u64) -> bool {
        self.progress.iter().all(|p| p.drained.load(Ordering::SeqCst) >= request)
    }
}

/// The aggregator loop for one partition: runs until `stop` (the process stops, or the
/// partition is taken away), then flushes what it holds.
pub fn run(
    events: &dyn Log,
    flush_log: &dyn Log,
    partition: u32,
    cfg: AggregatorConfig,
    control: &Control,
    stop: &Shutdown,
) -> Result<(), AggregatorError> {
    let progress = &control.progress[partition as usize];
    let mut agg = PartitionAggregator::recover(events, flush_log, partition, cfg.clone())?;
    progress.flushed_end.store(agg.position(), Ordering::SeqCst);
    let mut reader = events.reader(partition, agg.position())?;
    let mut last_flush = Instant::now();
    let mut last_event = Instant::now();
    let mut tick = 0;
    loop {
        // Read the drain request before looking for data: if it is set, every append
        // it covers is already visible, so "no data" below really means "caught up".
        let drain = control.drain_requested.load(Ordering::SeqCst);
        let stopping = stop.is_triggered();
        match reader.next_batch()? {
            Some(batch) => {
                agg.consume(&batch, true, u64::MAX)?;
                last_event = Instant::now();
                if agg.entries() >= cfg.max_entries {
                    agg.flush(events, flush_log, false, progress)?;
                    last_flush = Instant::now();
                }
            }
            None => {
                // Caught up, unless the log has more than the reader fetched so far (Kafka).
                let drained = drain > progress.drained.load(Ordering::SeqCst)
                    && events.distance(agg.position(), events.end_offset(partition)?) == 0;
                if drained {
                    agg.end_input(now_ms());
                    agg.flush(events, flush_log, true, progress)?;
                    progress.drained.store(drain, Ordering::SeqCst);
                    last_flush = Instant::now();
                } else if stopping {
                    if agg.has_unflushed() {
                        match agg.flush(events, flush_log, false, progress) {
                            // Nothing is lost: the flushes that count carry on from the other's.
                            Err(AggregatorError::Superseded { .. }) => tracing::warn!(
                                partition,
                                "stopping: another aggregator wrote this partition's flush log, so the last flush is ignored"
                            ),
                            done => done?,
                        }
                    }
                    tracing::info!(partition, position = agg.position(), "aggregator stopped");
                    return Ok(());
                } else if last_flush.elapsed() >= cfg.flush_interval {
                    if cfg.idle_timeout.is_some_and(|t| last_event.elapsed() >= t) {
                        agg.advance_idle(now_ms());
                    }
                    agg.flush(events, flush_log, false, progress)?;
                    last_flush = Instant::now();
                } else {
                    // Until an append, the next flush, or a wake (a stop, a drain request).
                    events.wait_for_append(&mut tick, cfg.flush_interval.saturating_sub(last_flush.elapsed()));
                }
            }
        }
        if last_flush.elapsed() >= cfg.flush_interval && agg.has_unflushed() {
            agg.flush(events, flush_log, false, progress)?;
            last_flush = Instant::now();
        }
    }
}
