//! The embedded partitioned log: the default stand-in for Kafka (DESIGN §1).
//!
//! # Layout on disk
//! ```text
//! DIR/LOCK                         held while a process has the log open
//! DIR/p-0003/00000000000000001234.seg   segments of partition 3, named by their first offset
//! DIR/groups/GROUP/p-0003          committed offset of a consumer group (text)
//! ```
//! A segment is a sequence of batches. Each batch has a fixed 48-byte header
//! (magic, crc32c of the rest, base offset, event count, payload length, and the source
//! position it carries) followed by its payload. Offsets count events, as in Kafka:
//! a batch of `count` events occupies offsets `base .. base + count`.
//!
//! # Durability
//! With [`FsyncPolicy::Batch`] an append returns only after its bytes are fsynced, and
//! readers never see bytes that are not yet durable. After a crash the last segment is
//! verified batch by batch: a torn or corrupt tail is truncated, never served.
//!
//! The source position in each header lets a producer (file replay) resume exactly:
//! it is written atomically with the events it describes.

mod reader;
mod segment;

pub use reader::DiskReader;
pub use segment::HEADER_LEN;
use segment::{scan_segment, segment_name, Header, Segment};

use crate::{io_err, Batch, FsyncPolicy, Log, LogConfig, LogError, LogReader, SourcePos};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

struct PartState {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    active: File,
    next_offset: u64,
    sources: HashMap<u64, SourcePos>,
    /// (base of the active segment, its length) after the last append that succeeded:
    /// everything up to there is published; anything after it was written by an append
    /// that failed, and recovery cuts it off.
    published: (u64, u64),
}

struct Part {
    state: Mutex<PartState>,
    /// Offsets below this are durable (per the fsync policy) and may be read.
    visible_end: AtomicU64,
}

struct Inner {
    dir: PathBuf,
    cfg: LogConfig,
    parts: Vec<Part>,
    _lock: File,
    /// Set when a write or fsync failed: what reached the files is unknown, so no later
    /// append may publish it until [`DiskLog::recover`] has cut the files back to what
    /// was published (the next append tries, so the log heals once space returns).
    broken: std::sync::atomic::AtomicBool,
    /// Held while [`DiskLog::recover`] runs.
    recovering: Mutex<()>,
    /// Bumped on every publish, so consumers can wait for new data.
    appended: (Mutex<u64>, Condvar),
}

/// A handle to an open log; clones share it.
#[derive(Clone)]
pub struct DiskLog {
    inner: Arc<Inner>,
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// How long `open` waits for a lock held elsewhere before it reports `Locked`.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl DiskLog {
    /// Opens (creating if needed) the log in `dir`, recovering from any crash.
    pub fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<DiskLog, LogError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("groups")).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        // A child process forked by another thread holds a copy of this descriptor, and so
        // the lock, until it execs (milliseconds): reopening a log just dropped could fail
        // for that alone (a log test failed so once in five clean CI runs, while other tests
        // started servers). Another process that really has the log open still holds it after the grace.
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        while lock.try_lock().is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(LogError::Locked(dir));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The partition count is recorded once every partition exists, so a crash while
        // creating them is finished on the next open rather than mistaken for a change.
        let meta = dir.join("PARTITIONS");
        match fs::read_to_string(&meta) {
            Ok(s) => {
                let found = s.trim().parse().map_err(|_| LogError::Corrupt {
                    path: meta.clone(),
                    pos: 0,
                    what: format!("partition count {s:?} is not a number"),
                })?;
                if found != cfg.partitions {
                    return Err(LogError::PartitionCount { dir, found, configured: cfg.partitions });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::Io { path: meta, source: e }),
        }
        let mut parts = Vec::with_capacity(cfg.partitions as usize);
        for p in 0..cfg.partitions {
            let state = PartState::open(dir.join(format!("p-{p:04}")))?;
            parts.push(Part { visible_end: AtomicU64::new(state.next_offset), state: Mutex::new(state) });
        }
        if !meta.exists() {
            let tmp = dir.join("PARTITIONS.tmp");
            fs::write(&tmp, cfg.partitions.to_string())
                .and_then(|_| File::open(&tmp)?.sync_all())
                .and_then(|_| fs::rename(&tmp, &meta))
                .map_err(io_err(&meta))?;
            sync_dir(&dir)?;
        }
        let broken = std::sync::atomic::AtomicBool::new(false);
        let appended = (Mutex::new(0), Condvar::new());
        let recovering = Mutex::new(());
        Ok(DiskLog { inner: Arc::new(Inner { dir, cfg, parts, _lock: lock, broken, recovering, appended }) })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn part(&self, partition: u32) -> Result<&Part, LogError> {
        self.inner
            .parts
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition { partition, partitions: self.partitions() })
    }

    fn lock(&self, partition: u32) -> Result<MutexGuard<'_, PartState>, LogError> {
        // A poisoned lock means a writer panicked mid-append; the file is still consistent
        // up to `visible_end`, and the next open truncates anything torn.
        Ok(self.part(partition)?.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Appends one batch to each listed partition (each at most once), then makes them
    /// durable together: one fsync per partition for the whole call, run in parallel.
    pub fn append_all(&self, batches: &[(u32, u32, &[u8], SourcePos)]) -> Result<Vec<u64>, LogError> {
        let parts: Vec<(u32, u32, [&[u8]; 1], SourcePos)> =
            batches.iter().map(|&(p, c, b, s)| (p, c, [b], s)).collect();
        let parts: Vec<(u32, u32, &[&[u8]], SourcePos)> =
            parts.iter().map(|(p, c, b, s)| (*p, *c, &b[..], *s)).collect();
        self.append_parts(&parts)
    }

    fn write_and_sync(&self, batches: &[(u32, u32, &[&[u8]], SourcePos)]) -> Result<Vec<u64>, LogError> {
        let mut guards = Vec::with_capacity(batches.len());
        let mut bases = Vec::with_capacity(batches.len());
        for &(p, count, parts, source) in batches {
            let mut st = self.lock(p)?;
            bases.push(st.write(count, parts, source, self.inner.cfg.segment_bytes)?);
            guards.push((p, st));
        }
        if self.inner.cfg.fsync == FsyncPolicy::Batch {
            let results: Vec<Result<(), LogError>> = std::thread::scope(|s| {
                let handles: Vec<_> =
                    guards.iter().map(|(_, st)| s.spawn(|| st.active.sync_data().map_err(io_err(&st.dir)))).collect();
                let panicked =
                    || LogError::Io { path: self.inner.dir.clone(), source: io::Error::other("fsync thread panicked") };
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(panicked()))).collect()
            });
            results.into_iter().collect::<Result<(), _>>()?;
        }
        for (p, st) in &mut guards {
            st.published = st.active_end();
            self.inner.parts[*p as usize].visible_end.store(st.next_offset, Ordering::Release);
        }
        drop(guards);
        let (m, cv) = &self.inner.appended;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
        Ok(bases)
    }

    /// After a failed append (a full disk, an I/O error): cuts every partition back to
    /// what its last successful append published, and reopens it from disk, verifying the
    /// tail as after a crash. Nothing acknowledged is lost, nothing unacknowledged stays.
    fn recover(&self) -> Result<(), LogError> {
        for (p, part) in self.inner.parts.iter().enumerate() {
            let mut st = self.lock(p as u32)?;
            let (base, len) = st.published;
            let unpublished: Vec<u64> = st.segments.range(base + 1..).map(|(&b, _)| b).collect();
            for b in unpublished {
                let path = st.segments[&b].path.clone();
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            if let Some(seg) = st.segments.get(&base) {
                let path = seg.path.clone();
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
                    .map_err(io_err(&path))?;
            }
            sync_dir(&st.dir)?;
            let dir = st.dir.clone();
            *st = PartState::open(dir)?;
            let visible = part.visible_end.load(Ordering::Acquire);
            if st.next_offset != visible {
                return Err(LogError::Corrupt {
                    path: st.dir.clone(),
                    pos: len,
                    what: format!("after recovery the partition ends at {}, not at {visible}", st.next_offset),
                });
            }
        }
        self.inner.broken.store(false, Ordering::SeqCst);
        tracing::warn!(dir = %self.inner.dir.display(), "log recovered after a failed write: appends resume");
        Ok(())
    }

    /// The first offset still on disk.
    pub fn start_offset(&self, partition: u32) -> Result<u64, LogError> {
        let st = self.lock(partition)?;
        Ok(st.segments.keys().next().copied().unwrap_or(st.next_offset))
    }

    fn group_path(&self, group: &str, partition: u32) -> PathBuf {
        self.inner.dir.join("groups").join(group).join(format!("p-{partition:04}"))
    }
}

impl Log for DiskLog {
    fn partitions(&self) -> u32 {
        self.inner.cfg.partitions
    }
    /// Like [`DiskLog::append_all`], with each batch's payload given as pieces to concatenate
    /// (so producers that encode in parallel need not copy their buffers together).
    /// Partitions must be listed in ascending order, each once (the lock order).
    fn append_parts(&self, batches: &[(u32, u32, &[&[u8]], SourcePos)]) -> Result<Vec<u64>, LogError> {
        debug_assert!(batches.windows(2).all(|w| w[0].0 < w[1].0), "partitions must ascend");
        // One append at a time recovers; the others wait for it and find the log healed.
        if self.inner.broken.load(Ordering::SeqCst) {
            let _one = self.inner.recovering.lock().unwrap_or_else(|e| e.into_inner());
            if self.inner.broken.load(Ordering::SeqCst) {
                self.recover()?;
            }
        }
        let result = self.write_and_sync(batches);
        if result.is_err() {
            self.inner.broken.store(true, Ordering::SeqCst);
        }
        result
    }
    /// The offset the next appended event of `partition` will get (all below it are readable).
    fn end_offset(&self, partition: u32) -> Result<u64, LogError> {
        Ok(self.part(partition)?.visible_end.load(Ordering::Acquire))
    }
    /// Counts as an append, so a reader about to wait with an older count returns at once
    /// (no wake is lost between its last look and its wait).
    fn wake(&self) {
        let (m, cv) = &self.inner.appended;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
    }
    /// Blocks until something is appended anywhere, a wake, or `timeout` passes.
    fn wait_for_append(&self, seen: &mut u64, timeout: Duration) {
        let (m, cv) = &self.inner.appended;
        let guard = m.lock().unwrap_or_else(|e| e.into_inner());
        let guard =
            if *guard == *seen { cv.wait_timeout(guard, timeout).unwrap_or_else(|e| e.into_inner()).0 } else { guard };
        *seen = *guard;
    }
    /// The last source position recorded in `partition` for `source`, if any.
    fn source_position(&self, partition: u32, source: u64) -> Result<Option<SourcePos>, LogError> {
        Ok(self.lock(partition)?.sources.get(&source).copied())
    }
    /// The last batch of `partition` that starts below `offset`, if there is one.
    fn batch_before(&self, partition: u32, offset: u64) -> Result<Option<Batch>, LogError> {
        let start = {
            let st = self.lock(partition)?;
            // A segment may be empty (just rolled, or its only batch was torn).
            let below = st.segments.range(..offset).rev().find_map(|(_, s)| {
                let i = s.index.partition_point(|&(base, _)| base < offset);
                i.checked_sub(1).map(|i| s.index[i].0)
            });
            match below {
                Some(base) => base,
                None => return Ok(None),
            }
        };
        self.reader(partition, start)?.next_batch()
    }
    /// A reader of `partition` starting at the batch containing `offset`.
    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn LogReader>, LogError> {
        self.part(partition)?;
        Ok(Box::new(DiskReader { log: self.clone(), partition, next: offset, file: None }))
    }
    /// Records that `group` has consumed `partition` below `offset`. Durable on return.
    fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let path = self.group_path(group, partition);
        let dir = path.parent().expect("group path has a parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(offset.to_string().as_bytes()).and_then(|_| f.sync_data()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(dir)
    }
    /// The offset `group` committed for `partition`, if it ever committed one.
    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        let path = self.group_path(group, partition);
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| LogError::Corrupt {
                path,
                pos: 0,
                what: format!("committed offset {s:?} is not a number"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Io { path, source: e }),
        }
    }
    /// Deletes closed segments older than the retention period whose every event has
    /// been committed by every consumer group. Returns how many were deleted.
    fn enforce_retention(&self) -> Result<usize, LogError> {
        let groups: Vec<String> = fs::read_dir(self.inner.dir.join("groups"))
            .map_err(io_err(&self.inner.dir))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut deleted = 0;
        for p in 0..self.partitions() {
            let mut floor = u64::MAX;
            for g in &groups {
                floor = floor.min(self.committed(g, p)?.unwrap_or(0));
            }
            if groups.is_empty() {
                continue;
            }
            let mut st = self.lock(p)?;
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            for pair in bases.windows(2) {
                let (base, next_base) = (pair[0], pair[1]);
                let path = st.segments[&base].path.clone();
                let old = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= self.inner.cfg.retention)
                    .map_err(io_err(&path))?;
                if next_base > floor || !old {
                    break;
                }
                fs::remove_file(&path).map_err(io_err(&path))?;
                st.segments.remove(&base);
                deleted += 1;
                tracing::info!(partition = p, base, "deleted segment past retention");
            }
        }
        Ok(deleted)
    }
}

impl PartState {
    fn open(dir: PathBuf) -> Result<PartState, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut bases: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
            File::create(dir.join(segment_name(0))).map_err(io_err(&dir))?;
            sync_dir(&dir)?;
        }
        let mut segments = BTreeMap::new();
        let mut sources = HashMap::new();
        let mut next_offset = bases[0];
        let last = *bases.last().expect("at least one segment");
        for &base in &bases {
            let path = dir.join(segment_name(base));
            if base != next_offset {
                return Err(LogError::Corrupt {
                    path,
                    pos: 0,
                    what: format!("segment starts at {base}, expected {next_offset}"),
                });
            }
            let (seg, end) = scan_segment(&path, base, base == last, &mut sources)?;
            next_offset = end;
            segments.insert(base, seg);
        }
        let active_path = dir.join(segment_name(last));
        let active = OpenOptions::new().append(true).open(&active_path).map_err(io_err(&active_path))?;
        let published = (last, segments[&last].len);
        Ok(PartState { dir, segments, active, next_offset, sources, published })
    }

    /// (base, length) of the active segment.
    fn active_end(&self) -> (u64, u64) {
        self.segments.iter().next_back().map_or((0, 0), |(&base, seg)| (base, seg.len))
    }

    fn write(&mut self, count: u32, parts: &[&[u8]], source: SourcePos, segment_bytes: u64) -> Result<u64, LogError> {
        let (&active_base, seg) = self.segments.iter().next_back().expect("an active segment");
        if seg.len >= segment_bytes && !seg.index.is_empty() {
            // Close the full segment durably before starting the next, so only the last
            // segment can ever hold a torn tail.
            self.active.sync_all().map_err(io_err(&seg.path))?;
            let path = self.dir.join(segment_name(self.next_offset));
            self.active = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            self.segments.insert(self.next_offset, Segment { path, index: Vec::new(), len: 0 });
            tracing::debug!(base = self.next_offset, previous = active_base, "rolled segment");
            // Carry every source's position into the new segment as an empty batch, so
            // retention deleting old segments never forgets how far a file was replayed.
            let mut carried: Vec<SourcePos> = self.sources.values().copied().collect();
            carried.sort_unstable_by_key(|s| s.source);
            for pos in carried {
                self.write_batch(0, &[], pos)?;
            }
        }
        self.write_batch(count, parts, source)
    }

    fn write_batch(&mut self, count: u32, parts: &[&[u8]], source: SourcePos) -> Result<u64, LogError> {
        let seg = self.segments.values_mut().next_back().expect("an active segment");
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let payload_len = u32::try_from(total).map_err(|_| LogError::Io {
            path: seg.path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "batch payload over 4 GiB"),
        })?;
        let mut header = Header { crc: 0, base_offset: self.next_offset, count, payload_len, source }.encode();
        let crc = parts.iter().fold(crc32c::crc32c(&header[8..]), |crc, p| crc32c::crc32c_append(crc, p));
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        let base = self.next_offset;
        let pos = seg.len;
        let write =
            self.active.write_all(&header).and_then(|_| parts.iter().try_for_each(|p| self.active.write_all(p)));
        if let Err(e) = write {
            // Cut off whatever part of the batch reached the file, so the next append
            // does not land behind garbage.
            let _ = self.active.set_len(pos);
            return Err(LogError::Io { path: seg.path.clone(), source: e });
        }
        seg.index.push((base, pos));
        seg.len += (HEADER_LEN + total) as u64;
        self.next_offset += u64::from(count);
        if source.source != 0 {
            self.sources.insert(source.source, source);
        }
        Ok(base)
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
