//! The partitioned logs that connect the roles (DESIGN §1, §3): the events log that
//! ingest appends to and the aggregators read, and the flush log that the aggregators
//! append to and the archive and speed roles read.
//!
//! [`Log`] is the small trait every role uses; two backends implement it:
//! - [`DiskLog`]: the embedded default, checksummed segment files in the data directory;
//! - [`KafkaLog`]: an Apache Kafka topic (librdkafka), for separate processes on many
//!   machines.
//!
//! # Offsets
//! A batch of `count` events occupies offsets `base .. base + count`; a reader positioned
//! inside a batch gets the whole batch, and the caller skips what it already has. Offsets
//! increase within a partition but need not be dense: on Kafka a batch is one message and
//! its offsets are `message offset << 24` onwards (see [`kafka`]).
//!
//! # Source positions
//! Each batch may carry the position in its input (a file, an upstream topic) just past
//! the lines it holds, written atomically with them, so a producer can resume exactly.

mod disk;
pub mod kafka;
/// Test servers for the suites of this and other crates (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use disk::{DiskLog, DiskReader, HEADER_LEN};
pub use kafka::{Assignments, DeadLetter, KafkaConfig, KafkaLog, Membership, TopicReader};

/// When appends are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum FsyncPolicy {
    /// fsync every append before it returns (and before readers see it). The default:
    /// an acknowledged ingest batch survives power loss.
    #[default]
    Batch,
    /// Leave flushing to the OS: survives a process crash (kill -9), not power loss.
    Never,
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(FsyncPolicy::Batch),
            "never" => Ok(FsyncPolicy::Never),
            _ => Err(format!("unknown fsync policy {s:?} (expected \"batch\" or \"never\")")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub partitions: u32,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Closed segments older than this, and consumed by every consumer group, are deleted.
    pub retention: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            partitions: 8,
            segment_bytes: 128 << 20,
            fsync: FsyncPolicy::Batch,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("log directory {0} is in use by another process (only one process may open an embedded log)")]
    Locked(PathBuf),
    #[error("partition {partition} does not exist (the log has {partitions})")]
    NoSuchPartition { partition: u32, partitions: u32 },
    #[error("log {dir} has {found} partitions but {configured} are configured; the partition count cannot change")]
    PartitionCount { dir: PathBuf, found: u32, configured: u32 },
    #[error("corrupt log segment {path} at byte {pos}: {what}")]
    Corrupt { path: PathBuf, pos: u64, what: String },
    #[error("offset {offset} of partition {partition} was deleted by retention (earliest is {earliest})")]
    OffsetGone { partition: u32, offset: u64, earliest: u64 },
    #[error("kafka topic {topic}: {reason}")]
    Kafka { topic: String, reason: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// Where a batch's events came from: lets a file replay resume exactly after a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourcePos {
    /// Stable id of the input (0 = none).
    pub source: u64,
    /// Byte offset in the input just past the last line this batch covers.
    pub pos: u64,
    /// Number of input lines up to `pos`.
    pub line: u64,
}

/// One batch read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub base_offset: u64,
    pub count: u32,
    pub source: SourcePos,
    pub payload: Vec<u8>,
}

impl Batch {
    /// The offset after this batch's last event.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// A partitioned, durable, append-only log.
pub trait Log: Send + Sync {
    fn partitions(&self) -> u32;

    /// Appends one batch of `count` events to `partition`, returning its base offset.
    /// Durable (per the backend's policy) when this returns.
    fn append(&self, partition: u32, count: u32, payload: &[u8], source: SourcePos) -> Result<u64, LogError> {
        Ok(self.append_parts(&[(partition, count, &[payload], source)])?[0])
    }

    /// Appends one batch to each listed partition (ascending, each at most once), with
    /// each payload given as pieces to concatenate; durable together when this returns.
    fn append_parts(&self, batches: &[(u32, u32, &[&[u8]], SourcePos)]) -> Result<Vec<u64>, LogError>;

    /// The offset the next appended event of `partition` will get, at least.
    fn end_offset(&self, partition: u32) -> Result<u64, LogError>;

    /// Waits until something may have been appended anywhere, [`Log::wake`] is called,
    /// or `timeout` passes.
    fn wait_for_append(&self, seen: &mut u64, timeout: Duration);

    /// Wakes every thread in [`Log::wait_for_append`] at once (a stop, a drain request).
    fn wake(&self);

    /// The last source position recorded in `partition` for `source`, if any.
    fn source_position(&self, partition: u32, source: u64) -> Result<Option<SourcePos>, LogError>;

    /// The last batch of `partition`, if it has any.
    fn last_batch(&self, partition: u32) -> Result<Option<Batch>, LogError> {
        self.batch_before(partition, u64::MAX)
    }

    /// The last batch of `partition` that starts below `offset`, if there is one.
    fn batch_before(&self, partition: u32, offset: u64) -> Result<Option<Batch>, LogError>;

    /// The offset the batch appended next to `partition` gets, if the last one was `batch`
    /// events at `base` (offsets count events on disk, messages on Kafka).
    fn offset_after(&self, base: u64, count: u32) -> u64 {
        base + u64::from(count)
    }

    /// A reader of `partition` starting at the batch containing `offset`.
    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn LogReader>, LogError>;

    /// Records that `group` has consumed `partition` below `offset`.
    fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError>;

    /// The offset `group` committed for `partition` (at most the one committed: a
    /// backend may round it down to the start of its batch).
    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError>;

    /// Deletes what retention allows; returns how many units (segments) went. Kafka's
    /// brokers apply their own retention, so there this does nothing.
    fn enforce_retention(&self) -> Result<usize, LogError> {
        Ok(0)
    }

    /// How far apart two offsets of a partition are, in the backend's unit (events on
    /// disk, messages on Kafka), for lag metrics.
    fn distance(&self, from: u64, to: u64) -> u64 {
        to.saturating_sub(from)
    }
}

/// Reads one partition in order.
pub trait LogReader: Send {
    /// The next offset this reader will return.
    fn position(&self) -> u64;

    /// The next batch at or after the position, or `None` when caught up (does not
    /// block). The batch may start before the position if the position is mid-batch.
    fn next_batch(&mut self) -> Result<Option<Batch>, LogError>;
}

#[cfg(test)]
mod tests;
