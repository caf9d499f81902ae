//! The archive role (the chapter's HDFS): flush log → Parquet files, one per hour per
//! group of [`GROUP_BATCHES`] consecutive flush batches of a partition, and the record of
//! which hours are complete.
//!
//! # Layout
//! ```text
//! ARCHIVE/hour=2026-12-10T00/part-0003-00000000000000001000-00000000000000001999.parquet
//! ARCHIVE/_state.json     per-partition progress and watermarks; per-hour complete/dirty
//! ```
//! A file is named after the flush batches it came from (partition, first and last events
//! offset), so writing it again after a crash produces the same file: idempotent by name.
//! Groups are a pure function of the flush log — they start where the state says the
//! archive resumes and end after [`GROUP_BATCHES`] batches or at the end of an input — so
//! a restart regroups exactly as before. Aggregators flush every second for the speed
//! layer's freshness; grouping keeps that from becoming 3 600 files per hour per partition.
//! `_state.json` is replaced atomically after the files it describes are durable, and
//! its per-partition `next_flush_offset` is where the archive resumes.
//!
//! # Parquet schema
//! | column | type |
//! | --- | --- |
//! | product_id | UTF8 (string), required |
//! | hour | TIMESTAMP(MILLIS, UTC), required: start of the hour |
//! | count | INT64, required: net quantity (refunds subtract) |
//! | revenue_cents | INT64, required |
//! | earliest_ts | TIMESTAMP(MILLIS, UTC), required |
//! | latest_ts | TIMESTAMP(MILLIS, UTC), required |
//! | country, city, category | UTF8, optional: the events' values of the dimensions a configured breakdown uses; null otherwise (and in files written before breakdowns) |
//!
//! A row is one (product, hour, country, city, category): the global count of a product
//! is `SELECT product_id, SUM(count) … GROUP BY product_id`, its count per country
//! `… GROUP BY country, product_id`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use topk_core::breakdown::Dimension;
use topk_core::flush::{AggRow, CorruptFlush, FlushBatch};
use topk_core::time::{Bucket, Granularity};
use topk_core::{Shutdown, HOUR_MS};
use topk_log::{Log, LogError};

mod storage;
/// Test servers for the suites of this and other crates (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
use storage::Pending;
pub use storage::Root;

/// The consumer group under which the archive commits flush-log offsets.
pub const GROUP: &str = "archive";
/// Flush batches of one partition archived together.
pub const GROUP_BATCHES: usize = 10;
const STATE_FILE: &str = "_state.json";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Flush(#[from] CorruptFlush),
    #[error("archive i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("parquet file {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("archive state {path} is unreadable: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("archive {url}: {reason}")]
    Object { url: String, reason: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

/// The archive's view of one flush-log partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Flush-log offsets below this are archived.
    pub next_flush_offset: u64,
    /// The event time up to which this partition's hours are final. It never passes the
    /// wall clock because of an end of input (older state files may carry an
    /// `end_of_input` flag that made it infinite: it is ignored).
    pub watermark_ms: Option<i64>,
}

impl PartitionState {
    fn effective_watermark(&self) -> i64 {
        self.watermark_ms.unwrap_or(i64::MIN)
    }
}

/// What the archive knows of one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourState {
    /// Every partition's watermark has passed the end of the hour.
    pub complete: bool,
    /// Data arrived after the hour was complete: its rollups must be recomputed.
    pub dirty: bool,
    pub files: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveState {
    pub partitions: Vec<PartitionState>,
    /// Keyed by hour label (`2026-12-10T00`), which sorts chronologically.
    pub hours: BTreeMap<String, HourState>,
}

impl ArchiveState {
    /// Reads the state file of the archive at `root` (empty if there is none yet).
    pub fn load(root: &Root) -> Result<ArchiveState, ArchiveError> {
        match root.get(STATE_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ArchiveError::State {
                path: PathBuf::from(format!("{}/{STATE_FILE}", root.display())),
                reason: e.to_string(),
            }),
            None => Ok(ArchiveState::default()),
        }
    }

    /// The event time up to which every partition's hours are final.
    pub fn low_watermark(&self) -> i64 {
        self.partitions.iter().map(PartitionState::effective_watermark).min().unwrap_or(i64::MIN)
    }

    /// Whether every hour in `[from_ms, to_ms)` is complete: marked so, or (for hours that
    /// received no data) passed by every partition's watermark.
    pub fn complete(&self, from_ms: i64, to_ms: i64) -> bool {
        let low = self.low_watermark();
        if low >= to_ms {
            return true;
        }
        let mut h = from_ms;
        while h < to_ms {
            let done = self.hours.get(&hour_label(h)).map_or(low >= h + HOUR_MS, |s| s.complete);
            if !done {
                return false;
            }
            h += HOUR_MS;
        }
        true
    }

    /// The hours that hold data, with their version (it grows whenever data arrives).
    pub fn hours_with_data(&self) -> impl Iterator<Item = (i64, &HourState)> {
        self.hours.iter().filter_map(|(label, h)| Some((Bucket::parse(Granularity::Hour, label).ok()?.start_ms, h)))
    }
}

/// Progress shared with code that waits for the archive (replay).
#[derive(Debug, Default)]
pub struct ArchiveProgress {
    /// Per flush partition: offsets below this are archived and recorded.
    pub applied: Vec<AtomicU64>,
    pub files: AtomicU64,
}

impl ArchiveProgress {
    pub fn new(partitions: u32) -> Arc<Self> {
        Arc::new(ArchiveProgress {
            applied: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            files: AtomicU64::new(0),
        })
    }
}

/// The Arrow schema of every archive file.
pub fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("hour", ts(), false),
        Field::new("count", DataType::Int64, false),
        Field::new("revenue_cents", DataType::Int64, false),
        Field::new("earliest_ts", ts(), false),
        Field::new("latest_ts", ts(), false),
        // The breakdowns' dimensions (null where not kept or not carried); files written
        // before breakdowns lack them, and read as null.
        Field::new("country", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
    ]))
}

/// The label used for an hour in paths and in the state file.
pub fn hour_label(hour_ms: i64) -> String {
    Bucket::containing(Granularity::Hour, hour_ms).to_string()
}

/// The directory (prefix) of one hour's files.
pub fn hour_dir(hour_ms: i64) -> String {
    format!("hour={}", hour_label(hour_ms))
}

fn file_name(batch: &FlushBatch, last: u64) -> String {
    format!("part-{:04}-{:020}-{:020}.parquet", batch.partition, batch.first_offset, last)
}

/// The archive (a directory or an object-store prefix) and its state.
pub struct Archive {
    root: Root,
    state: ArchiveState,
    /// Files written by `apply` that `save` makes durable before recording them (in a
    /// directory; an object store stores each at once).
    pending: Vec<Pending>,
    /// The files written since the last save.
    written: std::collections::HashSet<String>,
}

impl Archive {
    pub fn open(root: Root, partitions: u32) -> Result<Archive, ArchiveError> {
        root.create()?;
        let mut state = ArchiveState::load(&root)?;
        state.partitions.resize(partitions as usize, PartitionState::default());
        Ok(Archive { root, state, pending: Vec::new(), written: Default::default() })
    }

    pub fn state(&self) -> &ArchiveState {
        &self.state
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Writes the files of one flush batch (found at `offset` in the flush log) and
    /// records it in memory; [`Archive::save`] makes files and record durable.
    pub fn apply(&mut self, offset: u64, batch: &FlushBatch) -> Result<u64, ArchiveError> {
        let mut files = 0;
        if let Some(last) = batch.last_offset() {
            let mut rest = batch.rows.as_slice();
            while let Some(first) = rest.first() {
                let n = rest.iter().take_while(|r| r.hour_ms == first.hour_ms).count();
                let (rows, tail) = rest.split_at(n);
                rest = tail;
                let rel = format!("{}/{}", hour_dir(first.hour_ms), file_name(batch, last));
                // A batch seen twice in one round (only after a crash) is written once.
                if !self.written.insert(rel.clone()) {
                    continue;
                }
                if let Some(written) = write_parquet(&self.root, &rel, rows)? {
                    self.pending.extend(written);
                    files += 1;
                }
                let hour = self.state.hours.entry(hour_label(first.hour_ms)).or_default();
                hour.files += 1;
                hour.rows += rows.len() as u64;
                if hour.complete && !hour.dirty {
                    hour.dirty = true;
                    tracing::info!(hour = %hour_label(first.hour_ms), partition = batch.partition, "late data for a complete hour: marked dirty");
                }
            }
        }
        let p = &mut self.state.partitions[batch.partition as usize];
        p.next_flush_offset = offset + 1;
        p.watermark_ms = Some(batch.watermark_ms);
        Ok(files)
    }

    /// Marks complete every hour that all partitions' watermarks have passed.
    fn mark_complete(&mut self) {
        let low = self.state.low_watermark();
        for (label, hour) in self.state.hours.iter_mut().filter(|(_, h)| !h.complete) {
            let start = Bucket::parse(Granularity::Hour, label).map_or(i64::MAX, |b| b.start_ms);
            if start.saturating_add(HOUR_MS) <= low {
                hour.complete = true;
            }
        }
    }

    /// Completes what can be completed and replaces the state file atomically.
    pub fn save(&mut self) -> Result<(), ArchiveError> {
        publish(&std::mem::take(&mut self.pending))?;
        self.written.clear();
        self.mark_complete();
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        if let Some(state) = self.root.put(STATE_FILE, bytes)? {
            publish(&[state])?;
        }
        Ok(())
    }

    /// Clears the dirty mark of an hour once its rollups were recomputed.
    pub fn clear_dirty(&mut self, hour_ms: i64) -> bool {
        self.state.hours.get_mut(&hour_label(hour_ms)).is_some_and(|h| std::mem::take(&mut h.dirty))
    }
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Writes the file (in a directory: not yet synced, under a temporary name); `None` if
/// it already exists.
fn write_parquet(root: &Root, rel: &str, rows: &[AggRow]) -> Result<Option<Option<Pending>>, ArchiveError> {
    if root.exists(rel)? {
        // Written before a crash: the name is the flush_id, so the content is the same.
        return Ok(None);
    }
    let path = PathBuf::from(rel);
    let ts = |f: fn(&AggRow) -> i64| {
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC")) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.product_id.as_str()))),
        ts(|r| r.hour_ms),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.count))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.revenue_cents))),
        ts(|r| r.earliest_ts_ms),
        ts(|r| r.latest_ts_ms),
    ];
    let columns: Vec<ArrayRef> = columns
        .into_iter()
        .chain(Dimension::ALL.map(|d| {
            let values = rows.iter().map(|r| Some(r.dims[d.index()].as_str()).filter(|v| !v.is_empty()));
            Arc::new(StringArray::from_iter(values)) as ArrayRef
        }))
        .collect();
    let pq = |source| ArchiveError::Parquet { path: path.clone(), source };
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| pq(e.into()))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_dictionary_enabled(false).build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema(), Some(props)).map_err(pq)?;
    writer.write(&batch).map_err(pq)?;
    writer.close().map_err(pq)?;
    Ok(Some(root.put(rel, bytes)?))
}

/// Runs `f` over `items` on a few threads: concurrent fsyncs share journal commits, so
/// syncing a round's files together costs about as much as syncing one.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<(), ArchiveError> + Sync) -> Result<(), ArchiveError> {
    let threads = items.len().clamp(1, 16);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| s.spawn(|| c.iter().try_for_each(&f))).collect();
        handles.into_iter().try_for_each(|h| h.join().expect("fsync thread panicked"))
    })
}

/// Makes pending files durable: fsync them, rename them into place, fsync their dirs.
fn publish(pending: &[Pending]) -> Result<(), ArchiveError> {
    in_parallel(pending, |p| File::open(&p.tmp).and_then(|f| f.sync_all()).map_err(io_err(&p.tmp)))?;
    for p in pending {
        fs::rename(&p.tmp, &p.path).map_err(io_err(&p.path))?;
    }
    let dirs: std::collections::BTreeSet<&Path> = pending.iter().filter_map(|p| p.path.parent()).collect();
    in_parallel(&dirs.into_iter().collect::<Vec<_>>(), |d| sync_dir(d))
}

/// Reads the rows of one archive file (`rel` as [`list_files`] gives it).
pub fn read_file(root: &Root, rel: &str) -> Result<Vec<AggRow>, ArchiveError> {
    let mut rows = Vec::new();
    visit_file(root, rel, |r| {
        rows.push(AggRow {
            product_id: r.product_id.to_string(),
            hour_ms: r.hour_ms,
            count: r.count,
            revenue_cents: r.revenue_cents,
            earliest_ts_ms: r.earliest_ts_ms,
            latest_ts_ms: r.latest_ts_ms,
            dims: r.dims.map(str::to_string),
        })
    })?;
    Ok(rows)
}

/// One row of an archive file, borrowed from the decoded columns ([`visit_file`]).
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub product_id: &'a str,
    pub hour_ms: i64,
    pub count: i64,
    pub revenue_cents: i64,
    pub earliest_ts_ms: i64,
    pub latest_ts_ms: i64,
    /// Country, city, category; empty where the row carries none.
    pub dims: [&'a str; 3],
}

/// Calls `f` with each row of one archive file without copying its strings: what the
/// batch layer sums an hour with (an hour's rows as owned [`AggRow`]s took ~230 bytes
/// each, gigabytes for a busy hour).
pub fn visit_file(root: &Root, rel: &str, mut f: impl FnMut(RowRef<'_>)) -> Result<(), ArchiveError> {
    let path = PathBuf::from(rel);
    let pq = |source| ArchiveError::Parquet { path: path.clone(), source };
    let bytes = root.get(rel)?.ok_or_else(|| ArchiveError::Io {
        path: PathBuf::from(format!("{}/{rel}", root.display())),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).map_err(pq)?.build().map_err(pq)?;
    for batch in reader {
        let batch = batch.map_err(|e| pq(e.into()))?;
        let col = |name: &str| batch.column_by_name(name).cloned();
        let bad = || pq(parquet::errors::ParquetError::General("unexpected archive schema".into()));
        let ids = col("product_id").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()).ok_or_else(bad)?;
        let int = |name: &str| -> Result<Int64Array, ArchiveError> {
            let c = col(name).ok_or_else(bad)?;
            let data = c.to_data();
            Ok(Int64Array::from(data.into_builder().data_type(DataType::Int64).build().map_err(|e| pq(e.into()))?))
        };
        let (hour, count, revenue, earliest, latest) =
            (int("hour")?, int("count")?, int("revenue_cents")?, int("earliest_ts")?, int("latest_ts")?);
        let dims =
            Dimension::ALL.map(|d| col(d.name()).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()));
        fn value(c: &Option<StringArray>, i: usize) -> &str {
            match c {
                Some(c) if c.is_valid(i) => c.value(i),
                _ => "",
            }
        }
        for i in 0..batch.num_rows() {
            f(RowRef {
                product_id: ids.value(i),
                hour_ms: hour.value(i),
                count: count.value(i),
                revenue_cents: revenue.value(i),
                earliest_ts_ms: earliest.value(i),
                latest_ts_ms: latest.value(i),
                dims: [value(&dims[0], i), value(&dims[1], i), value(&dims[2], i)],
            });
        }
    }
    Ok(())
}

/// Every archive file, as paths relative to the root, sorted.
pub fn list_files(root: &Root) -> Result<Vec<String>, ArchiveError> {
    root.list("hour=")
}

/// The archive files of one hour, sorted by name.
pub fn hour_files(root: &Root, hour_ms: i64) -> Result<Vec<String>, ArchiveError> {
    root.list(&format!("{}/", hour_dir(hour_ms)))
}

/// One batch standing for consecutive flush batches of a partition, given as the flush
/// records they were read from: their events range, the last one's watermark and
/// end-of-input, all rows ordered by hour. Returns it with the flush-log offset of the
/// last batch. The records wait encoded (a row of the reference replay is about 60 bytes
/// so, and a 136-byte struct with its strings decoded): a replay's archive had held up to
/// 285 MB of decoded rows waiting for their groups (BENCHMARKS.md).
fn merge_group(group: Vec<(u64, Vec<u8>)>) -> Result<(u64, FlushBatch), CorruptFlush> {
    let mut merged: Option<(u64, FlushBatch)> = None;
    for (offset, payload) in group {
        let mut batch = FlushBatch::decode(&payload)?;
        drop(payload);
        if let Some((_, so_far)) = merged.as_mut() {
            so_far.rows.append(&mut batch.rows);
            batch.rows = std::mem::take(&mut so_far.rows);
            batch.first_offset = so_far.first_offset;
        }
        merged = Some((offset, batch));
    }
    let (offset, mut merged) = merged.unwrap_or_default();
    merged.rows.sort_by_key(|r| r.hour_ms);
    Ok((offset, merged))
}

/// The archive loop: applies flush batches from every partition until shutdown.
pub fn run(
    flush_log: &dyn Log,
    mut archive: Archive,
    progress: &ArchiveProgress,
    shutdown: &Shutdown,
) -> Result<(), ArchiveError> {
    let partitions = flush_log.partitions();
    let mut readers = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let from = archive.state.partitions[p as usize].next_flush_offset;
        progress.applied[p as usize].store(from, Ordering::SeqCst);
        readers.push(flush_log.reader(p, from)?);
    }
    let mut tick = 0;
    // Flush records read but not yet archived; a group left here at shutdown is read again.
    let mut groups: Vec<Vec<(u64, Vec<u8>)>> = (0..partitions).map(|_| Vec::new()).collect();
    loop {
        let stopping = shutdown.is_triggered();
        let mut applied = 0;
        for (p, reader) in readers.iter_mut().enumerate() {
            // Bounded per round, so the state is saved regularly during a long backlog.
            for _ in 0..64 {
                let Some(rec) = reader.next_batch()? else { break };
                // A superseded aggregator's flush (see topk_aggregator's "Fencing") is skipped.
                let Some(batch) = FlushBatch::read_header(rec.base_offset, &rec.payload)? else { continue };
                debug_assert_eq!(batch.partition as usize, p);
                groups[p].push((rec.base_offset, rec.payload));
                if batch.end_of_input || groups[p].len() >= GROUP_BATCHES {
                    let (offset, merged) = merge_group(std::mem::take(&mut groups[p]))?;
                    let files = archive.apply(offset, &merged)?;
                    progress.files.fetch_add(files, Ordering::Relaxed);
                    applied += 1;
                }
            }
        }
        if applied > 0 {
            archive.save()?;
            for (p, part) in archive.state.partitions.iter().enumerate() {
                flush_log.commit(GROUP, p as u32, part.next_flush_offset)?;
                progress.applied[p].store(part.next_flush_offset, Ordering::SeqCst);
            }
        } else if stopping {
            return Ok(());
        } else {
            // Until a flush is appended or a stop wakes it; the timeout is only a backstop.
            flush_log.wait_for_append(&mut tick, Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests;
