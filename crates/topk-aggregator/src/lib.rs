//! The aggregator role (the chapter's §17.4): events log → per-(product, hour) sums →
//! flush log, one loop per partition.
//!
//! # Exactly once
//! A flush batch records the events log offsets it covers (its flush_id), the watermark,
//! and where the dedup window can be rebuilt from. On start the aggregator resumes from
//! the end of the last flush in the flush log — not from a committed offset — so a crash
//! between "flush written" and anything after it neither loses nor repeats an event
//! (DESIGN §3).
//!
//! # Dedup window
//! An event whose id was already seen while the partition's newest event time advanced by
//! less than `dedup_window` is dropped. The window is a pure function of the events
//! consumed so far, in log order. Each flush stores `dedup_from` (an offset before which
//! every id has left the window) and the newest event time at that offset, so after a
//! crash re-reading `dedup_from .. resume` rebuilds the very same window and the same
//! events are dropped as in an uninterrupted run.
//!
//! # Fencing
//! Two aggregators may briefly write the same partition: on Kafka, one that stalled past
//! its session timeout wakes up after the group gave its partition to another, and flushes
//! what it held. Each flush therefore names its *slot*: the flush log offset it must land
//! at, the end of the log as its writer last read or wrote it. A flush found elsewhere was
//! written after someone else's flush its writer had not seen; every reader (archive,
//! speed layer, the recovery below) skips it, and its writer fails with
//! [`AggregatorError::Superseded`] and recovers from the flush log. The flushes that count
//! therefore follow each other without a gap or an overlap, whoever wrote them.

mod dedup;
mod role;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use dedup::{DedupWindow, DEDUP_SLICES};
use foldhash::fast::RandomState;
pub use role::{run, Control, Progress};
use topk_core::breakdown::{DimSet, DimValues, Dimension};
use topk_core::codec::{CorruptRecord, Decoder, EventRef};
pub use topk_core::flush::{AggRow, CorruptFlush, FlushBatch, ProductInfo};
use topk_core::hour_floor;
use topk_log::{Log, LogError, SourcePos};

/// The consumer group name under which aggregators commit (for log retention).
pub const GROUP: &str = "aggregator";

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Flush at least this often (also the heartbeat that carries the watermark).
    pub flush_interval: Duration,
    /// Flush when a partition holds this many (product, hour) entries: bounds memory.
    pub max_entries: usize,
    /// How far behind the newest event an event may arrive and still be on time.
    pub allowed_lateness_ms: i64,
    /// Event-time span within which a repeated `event_id` is a duplicate.
    pub dedup_window_ms: i64,
    /// With no events for this long, a partition's watermark follows the wall clock, so
    /// an idle partition does not hold every hour open. `None` in file replays.
    pub idle_timeout: Option<Duration>,
    /// The dimensions rows are kept apart by: those of the configured breakdowns
    /// ([`Breakdowns::kept`](topk_core::breakdown::Breakdowns::kept)). Empty: one row per
    /// (product, hour), as without breakdowns.
    pub dims: DimSet,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            flush_interval: Duration::from_secs(1),
            max_entries: 500_000,
            allowed_lateness_ms: 5 * 60_000,
            dedup_window_ms: 10 * 60_000,
            idle_timeout: Some(Duration::from_secs(30)),
            dims: topk_core::breakdown::Breakdowns::default().kept(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("events log partition {partition}: {source}")]
    Record { partition: u32, source: CorruptRecord },
    #[error("flush log partition {partition}: {source}")]
    Flush { partition: u32, source: CorruptFlush },
    #[error("events log partition {partition} ends at offset {events_end} but flushes cover up to {flushed_end}: events were lost (fsync policy \"never\" and a machine crash?); restore the data directory from a backup")]
    LogBehindFlush { partition: u32, events_end: u64, flushed_end: u64 },
    #[error("flush log partition {partition}: another aggregator wrote it; this flush landed at offset {landed}, not {slot}, and is ignored; resuming from the flush log")]
    Superseded { partition: u32, slot: u64, landed: u64 },
}

#[derive(Default)]
struct Acc {
    count: i64,
    revenue: i64,
    earliest: i64,
    latest: i64,
}

/// The last flush of `partition` below offset `end` that readers count.
fn last_counted_flush(flush_log: &dyn Log, partition: u32, end: u64) -> Result<Option<FlushBatch>, AggregatorError> {
    let mut below = end;
    while let Some(rec) = flush_log.batch_before(partition, below)? {
        if let Some(batch) = FlushBatch::read(rec.base_offset, &rec.payload)
            .map_err(|source| AggregatorError::Flush { partition, source })?
        {
            return Ok(Some(batch));
        }
        below = rec.base_offset;
    }
    Ok(None)
}

/// A product's name and category as its events carry them (empty: none).
type NameAndCategory = (Box<[u8]>, Box<[u8]>);

/// One partition's aggregation state between two flushes.
pub struct PartitionAggregator {
    partition: u32,
    cfg: AggregatorConfig,
    products: HashMap<Box<[u8]>, u32, RandomState>,
    product_ids: Vec<Box<[u8]>>,
    /// Per product, the newest (name, category) its events carried since the last flush.
    info: HashMap<u32, NameAndCategory, RandomState>,
    /// The distinct dimension values since the last flush, each as the kept dimensions'
    /// values, length-prefixed (index 0: none kept).
    dim_ids: HashMap<Box<[u8]>, u32, RandomState>,
    dim_values: Vec<DimValues>,
    /// Scratch space for a dimension lookup's key.
    dim_key: Vec<u8>,
    /// Per (product, hour, dimension values).
    table: HashMap<(u32, i64, u32), Acc, RandomState>,
    dedup: DedupWindow,
    /// (first consumed offset, newest event time before it, after it) of each consumed
    /// log batch whose ids may still be in the dedup window.
    batches: VecDeque<(u64, i64, i64)>,
    /// Next events offset to consume; also the end of what the next flush covers.
    next: u64,
    /// Where the next flush's range starts.
    first: u64,
    /// The flush log offset the next flush must land at (see "Fencing").
    slot: u64,
    max_ts: i64,
    accepted: u64,
    duplicates: u64,
    late: u64,
}

impl PartitionAggregator {
    /// Restores the state after the last flush of `partition` in `flush_log`.
    pub fn recover(
        events: &dyn Log,
        flush_log: &dyn Log,
        partition: u32,
        cfg: AggregatorConfig,
    ) -> Result<Self, AggregatorError> {
        let mut agg = PartitionAggregator {
            partition,
            products: HashMap::default(),
            product_ids: Vec::new(),
            info: HashMap::default(),
            dim_ids: HashMap::default(),
            dim_values: Vec::new(),
            dim_key: Vec::new(),
            table: HashMap::default(),
            dedup: DedupWindow::new(cfg.dedup_window_ms),
            batches: VecDeque::new(),
            next: 0,
            first: 0,
            slot: flush_log.end_offset(partition)?,
            max_ts: i64::MIN,
            accepted: 0,
            duplicates: 0,
            late: 0,
            cfg,
        };
        if let Some(last) = last_counted_flush(flush_log, partition, agg.slot)? {
            // Rebuild the dedup window by replaying, uncounted, the events it covers, from
            // the newest event time they first arrived at.
            agg.max_ts = last.dedup_from_max_ts;
            agg.next = last.dedup_from;
            let mut reader = events.reader(partition, last.dedup_from)?;
            let mut tick = 0;
            while agg.next < last.end_offset {
                let Some(batch) = reader.next_batch()? else {
                    let events_end = events.end_offset(partition)?;
                    if events.distance(agg.next, events_end) > 0 {
                        // Not fetched yet (Kafka): the events are there.
                        events.wait_for_append(&mut tick, Duration::from_millis(10));
                        continue;
                    }
                    // The flush log covers events the events log no longer has: only
                    // possible after losing unsynced data (fsync "never" and power loss).
                    return Err(AggregatorError::LogBehindFlush {
                        partition,
                        events_end,
                        flushed_end: last.end_offset,
                    });
                };
                agg.consume(&batch, false, last.end_offset)?;
            }
            debug_assert!(agg.table.is_empty());
            agg.max_ts = last.max_event_ts_ms;
            agg.next = last.end_offset;
            agg.first = last.end_offset;
            tracing::info!(
                partition,
                resume = agg.next,
                dedup_from = last.dedup_from,
                window = agg.dedup.len(),
                "aggregator resumed after last flush"
            );
        }
        Ok(agg)
    }

    pub fn watermark_ms(&self) -> i64 {
        self.max_ts.saturating_sub(self.cfg.allowed_lateness_ms)
    }

    /// The offset of the next event to consume.
    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// Whether anything was consumed since the last flush.
    pub fn has_unflushed(&self) -> bool {
        self.next > self.first
    }

    /// Consumes the events of `batch` from the current position up to `until` (exclusive).
    /// With `count == false` only the dedup window and watermark are updated (recovery).
    ///
    /// Every id of a log batch (one ingest request's events for this partition, or one
    /// poll of a source topic) is remembered until the window has passed the batch's
    /// newest event time, not its own arrival's: a client that retries a request then
    /// finds all of its ids still remembered, however much event time the request spans
    /// (a backfill's batch of 36 minutes against a 10-minute window was counted twice,
    /// less its last 10 minutes: the fault campaign). It is a function of the batch and
    /// the newest time before it, so a rebuild after a crash keeps the same ids as long.
    fn consume(&mut self, batch: &topk_log::Batch, count: bool, until: u64) -> Result<(), AggregatorError> {
        let (before, start) = (self.max_ts, self.next);
        let partition = self.partition;
        let decode_error = |source| AggregatorError::Record { partition, source };
        let mut batch_max = self.max_ts;
        for ev in Decoder::new(&batch.payload) {
            batch_max = batch_max.max(ev.map_err(decode_error)?.ts_ms);
        }
        for (offset, ev) in (batch.base_offset..).zip(Decoder::new(&batch.payload)) {
            let ev = ev.map_err(decode_error)?;
            if offset >= self.next && offset < until {
                self.observe(&ev, count, batch_max);
                self.next = offset + 1;
            }
        }
        if self.next > start {
            // From where consumption started (a batch may be consumed in two parts across a
            // restart), so a rebuild starting there begins at exactly the recorded max; its
            // ids stay in the window until the window passes `batch_max`.
            self.batches.push_back((start, before, batch_max));
        }
        Ok(())
    }

    /// Counts one event of a batch whose newest event time is `batch_max` (its id is
    /// remembered until the window has passed that).
    fn observe(&mut self, ev: &EventRef<'_>, count: bool, batch_max: i64) {
        let watermark = self.watermark_ms();
        self.max_ts = self.max_ts.max(ev.ts_ms);
        if self.dedup.is_duplicate_in_batch(ev.id_digest, self.max_ts, batch_max) {
            if count {
                self.duplicates += 1;
            }
            return;
        }
        if !count {
            return;
        }
        self.accepted += 1;
        // Late: the time it counts at (a refund's: its sale's) is behind the watermark.
        if ev.bucket_ts_ms < watermark {
            self.late += 1;
        }
        let product = match self.products.get(ev.product_id) {
            Some(&i) => i,
            None => {
                let i = self.product_ids.len() as u32;
                self.products.insert(ev.product_id.into(), i);
                self.product_ids.push(ev.product_id.into());
                i
            }
        };
        if !(ev.product_name.is_empty() && ev.category.is_empty()) {
            // Compared before copying: most events repeat what their product's last one said.
            let newest = (ev.product_name, ev.category);
            match self.info.get_mut(&product) {
                Some((name, category)) if (&name[..], &category[..]) == newest => {}
                Some(known) => *known = (newest.0.into(), newest.1.into()),
                None => {
                    self.info.insert(product, (newest.0.into(), newest.1.into()));
                }
            }
        }
        let dims = if self.cfg.dims.is_empty() { 0 } else { self.dims_of(ev) };
        let acc = self.table.entry((product, hour_floor(ev.bucket_ts_ms), dims)).or_insert(Acc {
            count: 0,
            revenue: 0,
            earliest: i64::MAX,
            latest: i64::MIN,
        });
        // Saturating: validation bounds one event, not a sum of many.
        acc.count = acc.count.saturating_add(ev.quantity);
        acc.revenue = acc.revenue.saturating_add(ev.revenue_cents());
        acc.earliest = acc.earliest.min(ev.bucket_ts_ms);
        acc.latest = acc.latest.max(ev.bucket_ts_ms);
    }

    /// The id of the event's values of the kept dimensions, since the last flush.
    fn dims_of(&mut self, ev: &EventRef<'_>) -> u32 {
        let kept = self.cfg.dims;
        self.dim_key.clear();
        for (d, v) in Dimension::ALL.into_iter().zip([ev.country, ev.city, ev.category]) {
            let v = if kept.contains(d) { v } else { b"" };
            self.dim_key.extend_from_slice(&(v.len() as u16).to_le_bytes());
            self.dim_key.extend_from_slice(v);
        }
        if let Some(&id) = self.dim_ids.get(&self.dim_key[..]) {
            return id;
        }
        let id = self.dim_values.len() as u32;
        let text = |d: Dimension, v: &[u8]| {
            if kept.contains(d) {
                String::from_utf8_lossy(v).into_owned()
            } else {
                String::new()
            }
        };
        self.dim_values.push([
            text(Dimension::Country, ev.country),
            text(Dimension::City, ev.city),
            text(Dimension::Category, ev.category),
        ]);
        self.dim_ids.insert(self.dim_key.as_slice().into(), id);
        id
    }

    /// Takes everything since the last flush as a flush batch and starts a new one.
    /// With `end_of_input` the producer's input is declared complete (see
    /// [`FlushBatch::end_of_input`]); the watermark is moved with [`Self::end_input`].
    pub fn take_flush(&mut self, end_of_input: bool) -> FlushBatch {
        let cutoff = self.dedup.horizon(self.max_ts);
        while self.batches.front().is_some_and(|&(_, _, after)| after < cutoff) {
            self.batches.pop_front();
        }
        let string = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut rows: Vec<AggRow> = self
            .table
            .drain()
            .map(|((p, hour_ms, dims), a)| AggRow {
                product_id: string(&self.product_ids[p as usize]),
                hour_ms,
                count: a.count,
                revenue_cents: a.revenue,
                earliest_ts_ms: a.earliest,
                latest_ts_ms: a.latest,
                dims: self.dim_values.get(dims as usize).cloned().unwrap_or_default(),
            })
            .collect();
        // Sorted, so the same events always give byte-identical flushes and files.
        rows.sort_unstable_by(|a, b| (a.hour_ms, &a.product_id, &a.dims).cmp(&(b.hour_ms, &b.product_id, &b.dims)));
        let text = |b: &[u8]| (!b.is_empty()).then(|| string(b));
        let mut products: Vec<ProductInfo> = self
            .info
            .drain()
            .map(|(p, (name, category))| ProductInfo {
                product_id: string(&self.product_ids[p as usize]),
                name: text(&name),
                category: text(&category),
            })
            .collect();
        products.sort_unstable_by(|a, b| a.product_id.cmp(&b.product_id));
        let batch = FlushBatch {
            slot: Some(self.slot),
            partition: self.partition,
            first_offset: self.first,
            end_offset: self.next,
            watermark_ms: self.watermark_ms(),
            max_event_ts_ms: self.max_ts,
            dedup_from: self.batches.front().map_or(self.next, |&(base, _, _)| base),
            dedup_from_max_ts: self.batches.front().map_or(self.max_ts, |&(_, before, _)| before),
            end_of_input,
            accepted: std::mem::take(&mut self.accepted),
            duplicates: std::mem::take(&mut self.duplicates),
            late: std::mem::take(&mut self.late),
            rows,
            products,
        };
        self.products.clear();
        self.product_ids.clear();
        self.dim_ids.clear();
        self.dim_values.clear();
        self.first = self.next;
        batch
    }

    /// Writes `batch` (from [`Self::take_flush`]) durably, then commits the dedup rebuild
    /// point for log retention. Fails with [`AggregatorError::Superseded`] if the batch did
    /// not land at its slot: it does not count, and this aggregator must recover again.
    pub fn write(
        &mut self,
        events: &dyn Log,
        flush_log: &dyn Log,
        batch: &FlushBatch,
        progress: &Progress,
    ) -> Result<(), AggregatorError> {
        let slot = batch.slot.expect("taken batches have a slot");
        let landed = flush_log.append(batch.partition, 1, &batch.encode(), SourcePos::default())?;
        if landed != slot {
            return Err(AggregatorError::Superseded { partition: batch.partition, slot, landed });
        }
        self.slot = flush_log.offset_after(landed, 1);
        events.commit(GROUP, batch.partition, batch.dedup_from)?;
        progress.flushed_end.store(batch.end_offset, Ordering::SeqCst);
        progress.accepted.fetch_add(batch.accepted, Ordering::Relaxed);
        progress.duplicates.fetch_add(batch.duplicates, Ordering::Relaxed);
        progress.late.fetch_add(batch.late, Ordering::Relaxed);
        progress.flushes.fetch_add(1, Ordering::Relaxed);
        progress.watermark_ms.store(batch.watermark_ms as u64, Ordering::Relaxed);
        progress.dedup_bytes.store(self.dedup.memory_bytes() as u64, Ordering::Relaxed);
        tracing::debug!(
            partition = batch.partition,
            first = batch.first_offset,
            end = batch.end_offset,
            rows = batch.rows.len(),
            watermark = batch.watermark_ms,
            end_of_input = batch.end_of_input,
            "flushed"
        );
        Ok(())
    }

    /// Takes a flush and writes it.
    fn flush(
        &mut self,
        events: &dyn Log,
        flush_log: &dyn Log,
        end_of_input: bool,
        progress: &Progress,
    ) -> Result<(), AggregatorError> {
        let batch = self.take_flush(end_of_input);
        self.write(events, flush_log, &batch, progress)
    }

    /// The producer's input ended at wall-clock time `now_ms`: nothing older than the
    /// allowed lateness is still on its way, so the watermark moves forward to
    /// `now_ms - allowed_lateness`, never past it. The buckets of the input that have
    /// ended close; those that have not (this hour, today, this year) stay open, whatever
    /// the input held (DESIGN §4).
    pub fn end_input(&mut self, now_ms: i64) {
        self.advance_idle(now_ms);
    }

    /// Lets the watermark of an idle partition follow the wall clock.
    fn advance_idle(&mut self, now_ms: i64) {
        let wall = now_ms.saturating_sub(self.cfg.allowed_lateness_ms);
        if self.watermark_ms() < wall {
            self.max_ts = now_ms;
        }
    }
}

#[cfg(test)]
mod tests;
