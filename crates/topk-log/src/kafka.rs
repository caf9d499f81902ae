//! The Kafka backend: one topic per log, one message per batch (librdkafka through
//! `rdkafka`).
//!
//! # Mapping
//! - A batch of `count` events is one message; its offsets are `message offset << 24`
//!   onwards ([`OFFSET_BITS`]), so every event keeps an offset of its own (the aggregator
//!   records event offsets in its flushes) while Kafka numbers messages. The header
//!   `topk-count` carries `count`, and `topk-source` the [`SourcePos`] when there is one.
//! - The partition is chosen by the caller (the same stable product hash as on disk);
//!   the producer is idempotent with `acks=all`, and an append returns once the broker
//!   has acknowledged every message of it.
//! - Readers assign themselves to one partition without a consumer group: each role
//!   keeps its own position (flushes, archive state, store), as on disk. Committed
//!   offsets are recorded in a consumer group per role (message offsets, visible to
//!   Kafka's tools), and retention is the broker's.
//! - The topic is created with the configured partition count if it does not exist; an
//!   existing topic with another count is refused.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

mod admin;
mod group;
mod reader;

pub use admin::partition_count;
use admin::{create_topic, topic_partitions};
pub use group::{Assignments, Membership};
pub use reader::{KafkaReader, TopicReader};

use crate::{Batch, Log, LogError, LogReader, SourcePos};

/// Bits of an offset that number the events inside one message.
pub const OFFSET_BITS: u32 = 24;
const MAX_COUNT: u32 = (1 << OFFSET_BITS) - 1;
const COUNT_HEADER: &str = "topk-count";
const SOURCE_HEADER: &str = "topk-source";
/// How long metadata calls (watermarks, commits) may take before they fail.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// What the names of topk's topics and consumer groups start with, unless configured.
pub const DEFAULT_PREFIX: &str = "topk.";

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,…` of the bootstrap brokers.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when it is created (and checked when it exists).
    pub partitions: u32,
    /// Replication factor of the topic when it is created.
    pub replication: i32,
    /// Largest message (one ingest batch of a partition): the topic is created with this
    /// `max.message.bytes`, and the producer allows it.
    pub max_message_bytes: usize,
    /// Further librdkafka properties for every client (security.protocol, sasl.*, …).
    pub properties: Vec<(String, String)>,
    /// Put before the name of every consumer group this log commits for.
    pub group_prefix: String,
}

impl KafkaConfig {
    pub fn new(brokers: &str, topic: &str, partitions: u32) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            partitions,
            replication: 1,
            max_message_bytes: 64 << 20,
            properties: Vec::new(),
            group_prefix: String::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn consumer(&self, group: &str) -> Result<BaseConsumer, LogError> {
        self.client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("queued.max.messages.kbytes", "65536")
            .set("fetch.max.bytes", self.max_message_bytes.to_string())
            .set("receive.message.max.bytes", (self.max_message_bytes + (1 << 20)).to_string())
            .create()
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> LogError {
        LogError::Kafka { topic: self.topic.clone(), reason: e.to_string() }
    }

    /// A consumer (without a group of its own) assigned to `partition` at message `offset`.
    fn assigned(&self, group: &str, partition: u32, offset: i64) -> Result<BaseConsumer, LogError> {
        let consumer = self.consumer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset)).map_err(|e| self.error(e))?;
        consumer.assign(&tpl).map_err(|e| self.error(e))?;
        Ok(consumer)
    }
}

/// One message to produce.
struct Outgoing {
    /// `None`: librdkafka's partitioner (by key).
    partition: Option<u32>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

/// A rejected message for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Where it came from, e.g. `topic/partition/offset`.
    pub origin: String,
    /// Why it was rejected (the field and the reason).
    pub reason: String,
    /// The message as it was.
    pub value: &'a [u8],
}

/// Hands each delivery report to the call waiting for it.
struct Deliveries;

impl ClientContext for Deliveries {}

/// Where the report of the `usize`-th message of an append goes.
type Delivered = (usize, mpsc::Sender<(usize, Result<i64, String>)>);

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Delivered>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Box<Delivered>) {
        let (i, tx) = *to;
        let _ = tx.send((
            i,
            match result {
                Ok(m) => Ok(m.offset()),
                Err((e, _)) => Err(e.to_string()),
            },
        ));
    }
}

/// A log on one Kafka topic; clones share the producer.
#[derive(Clone)]
pub struct KafkaLog {
    cfg: Arc<KafkaConfig>,
    producer: Arc<ThreadedProducer<Deliveries>>,
    /// For watermarks and metadata.
    meta: Arc<BaseConsumer>,
    /// One committing client per consumer group.
    committers: Arc<Mutex<HashMap<String, Arc<BaseConsumer>>>>,
    /// Wakes readers waiting between polls: a count of wakes, and its condition.
    woken: Arc<(Mutex<u64>, std::sync::Condvar)>,
}

fn encode_source(s: SourcePos) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&s.source.to_be_bytes());
    b[8..16].copy_from_slice(&s.pos.to_be_bytes());
    b[16..].copy_from_slice(&s.line.to_be_bytes());
    b
}

fn decode_source(b: &[u8]) -> Option<SourcePos> {
    let n = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
    Some(SourcePos { source: n(0)?, pos: n(8)?, line: n(16)? })
}

/// How many messages lie wholly or partly below an offset: a reader that consumed
/// message `k` stands at `(k << 24) + count`, a position inside message `k + 1`'s range.
fn messages_below(offset: u64) -> u64 {
    (offset >> OFFSET_BITS) + u64::from(offset & u64::from(MAX_COUNT) != 0)
}

/// The batch one message holds.
fn batch_of(m: &BorrowedMessage<'_>) -> Batch {
    let mut count = 0;
    let mut source = SourcePos::default();
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match (h.key, h.value) {
                (COUNT_HEADER, Some(v)) => count = v.try_into().map_or(0, u32::from_be_bytes),
                (SOURCE_HEADER, Some(v)) => source = decode_source(v).unwrap_or_default(),
                _ => {}
            }
        }
    }
    Batch {
        base_offset: (m.offset().max(0) as u64) << OFFSET_BITS,
        count,
        source,
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

impl KafkaLog {
    /// Connects, creating the topic if it does not exist.
    pub fn open(cfg: KafkaConfig) -> Result<KafkaLog, LogError> {
        let meta = cfg.consumer("topk-metadata")?;
        let mut partitions = topic_partitions(&cfg, &meta)?;
        if partitions.is_none() {
            create_topic(&cfg)?;
            partitions = topic_partitions(&cfg, &meta)?;
        }
        match partitions {
            Some(n) if n == cfg.partitions => {}
            Some(n) => {
                return Err(cfg.error(format!(
                    "has {n} partitions but {} are configured; the partition count cannot change",
                    cfg.partitions
                )))
            }
            None => return Err(cfg.error("was created but does not show in the metadata")),
        }
        let producer: ThreadedProducer<Deliveries> = cfg
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.max.bytes", (cfg.max_message_bytes + (64 << 10)).to_string())
            .create_with_context(Deliveries)
            .map_err(|e| cfg.error(e))?;
        tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, brokers = %cfg.brokers, "kafka log open");
        Ok(KafkaLog {
            cfg: Arc::new(cfg),
            producer: Arc::new(producer),
            meta: Arc::new(meta),
            committers: Arc::default(),
            woken: Arc::default(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.cfg.topic
    }

    fn error(&self, e: impl std::fmt::Display) -> LogError {
        self.cfg.error(e)
    }

    /// Produces every message and waits for every delivery report: returns the message
    /// offsets, or the first failure once nothing is in flight any more.
    fn deliver(&self, messages: Vec<Outgoing>) -> Result<Vec<u64>, LogError> {
        let (tx, rx) = mpsc::channel();
        let n = messages.len();
        let mut sent = 0;
        let mut failed = None;
        'messages: for (i, m) in messages.into_iter().enumerate() {
            let mut record = BaseRecord::with_opaque_to(&self.cfg.topic, Box::new((i, tx.clone())))
                .payload(&m.payload)
                .headers(m.headers);
            if let Some(p) = m.partition {
                record = record.partition(p as i32);
            }
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            loop {
                match self.producer.send::<[u8], _>(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        failed = Some(format!("producing message {i}: {e}"));
                        break 'messages;
                    }
                }
            }
            sent += 1;
        }
        drop(tx);
        // Reports arrive in any order across partitions; every one is awaited, so no
        // message of a failed call is still in flight when this returns.
        let mut offsets = vec![0; n];
        for _ in 0..sent {
            match rx.recv() {
                Ok((i, Ok(offset))) => offsets[i] = offset.max(0) as u64,
                Ok((i, Err(e))) => failed = Some(format!("delivery of message {i} failed: {e}")),
                Err(_) => return Err(self.error("the producer stopped before reporting a delivery")),
            }
        }
        match failed {
            Some(e) => Err(self.error(e)),
            None => Ok(offsets),
        }
    }

    /// Sends messages with the reason each was rejected: a dead-letter topic. The key is
    /// the rejected message's origin, so a topic keeps each origin's letters in order.
    pub fn send_dead_letters(&self, letters: &[DeadLetter<'_>]) -> Result<(), LogError> {
        let messages = letters
            .iter()
            .map(|l| {
                let mut headers = OwnedHeaders::new();
                for (k, v) in [("topk-reason", &l.reason), ("topk-origin", &l.origin)] {
                    headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
                }
                Outgoing {
                    partition: None,
                    key: Some(l.origin.as_bytes().to_vec()),
                    payload: l.value.to_vec(),
                    headers,
                }
            })
            .collect();
        self.deliver(messages).map(drop)
    }

    fn watermarks(&self, partition: u32) -> Result<(i64, i64), LogError> {
        self.check(partition)?;
        self.meta.fetch_watermarks(&self.cfg.topic, partition as i32, METADATA_TIMEOUT).map_err(|e| self.error(e))
    }

    fn check(&self, partition: u32) -> Result<(), LogError> {
        if partition >= self.cfg.partitions {
            return Err(LogError::NoSuchPartition { partition, partitions: self.cfg.partitions });
        }
        Ok(())
    }

    /// A consumer assigned to `partition` at message `offset`.
    fn assigned(&self, partition: u32, offset: i64) -> Result<BaseConsumer, LogError> {
        self.check(partition)?;
        self.cfg.assigned("topk-reader", partition, offset)
    }

    /// Reads the messages `from .. to` of `partition` in order (blocking), handing each
    /// to `f`.
    fn scan(&self, partition: u32, from: i64, to: i64, mut f: impl FnMut(Batch)) -> Result<(), LogError> {
        if from >= to {
            return Ok(());
        }
        let consumer = self.assigned(partition, from)?;
        let deadline = Instant::now() + METADATA_TIMEOUT;
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if offset >= from && offset < to {
                        f(batch_of(&m));
                    }
                    if offset + 1 >= to {
                        return Ok(());
                    }
                }
                Some(Err(e)) => reader_error(&self.cfg.topic, partition, from as u64, e)?,
                None if Instant::now() > deadline => {
                    return Err(self.error(format!("partition {partition}: timed out reading messages {from}..{to}")))
                }
                None => {}
            }
        }
    }

    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut all = self.committers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.get(group) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.cfg.consumer(&format!("{}{group}", self.cfg.group_prefix))?);
        all.insert(group.to_owned(), c.clone());
        Ok(c)
    }
}

/// Consumer errors: a position deleted by retention is fatal, anything else (a broker
/// restarting, a network blip) is logged while librdkafka retries.
fn reader_error(topic: &str, partition: u32, offset: u64, e: KafkaError) -> Result<(), LogError> {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
        return Err(LogError::OffsetGone { partition, offset, earliest: 0 });
    }
    tracing::warn!(topic, partition, error = %e, "kafka consumer error; retrying");
    Ok(())
}

impl Log for KafkaLog {
    fn partitions(&self) -> u32 {
        self.cfg.partitions
    }

    fn append_parts(&self, batches: &[(u32, u32, &[&[u8]], SourcePos)]) -> Result<Vec<u64>, LogError> {
        let mut messages = Vec::with_capacity(batches.len());
        for &(partition, count, parts, source) in batches {
            self.check(partition)?;
            if count > MAX_COUNT {
                return Err(self.error(format!("a batch of {count} events is more than one message takes")));
            }
            let mut headers =
                OwnedHeaders::new().insert(Header { key: COUNT_HEADER, value: Some(&count.to_be_bytes()) });
            if source.source != 0 {
                headers = headers.insert(Header { key: SOURCE_HEADER, value: Some(&encode_source(source)) });
            }
            messages.push(Outgoing { partition: Some(partition), key: None, payload: parts.concat(), headers });
        }
        Ok(self.deliver(messages)?.into_iter().map(|offset| offset << OFFSET_BITS).collect())
    }

    fn end_offset(&self, partition: u32) -> Result<u64, LogError> {
        Ok((self.watermarks(partition)?.1.max(0) as u64) << OFFSET_BITS)
    }

    fn wait_for_append(&self, _seen: &mut u64, timeout: Duration) {
        // Appends by other processes are not announced: readers poll their prefetched
        // messages again after at most 20 ms, or at once when woken.
        let (m, cv) = &*self.woken;
        let held = m.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *held;
        let wait = timeout.min(Duration::from_millis(20));
        let _held = cv.wait_timeout_while(held, wait, |n| *n == seen).unwrap_or_else(|e| e.into_inner());
    }

    fn wake(&self) {
        let (m, cv) = &*self.woken;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
    }

    fn source_position(&self, partition: u32, source: u64) -> Result<Option<SourcePos>, LogError> {
        const WINDOW: i64 = 512;
        let (low, high) = self.watermarks(partition)?;
        let mut to = high;
        while to > low {
            let from = (to - WINDOW).max(low);
            let mut found = None;
            self.scan(partition, from, to, |b| {
                if b.source.source == source {
                    found = Some(b.source);
                }
            })?;
            if found.is_some() {
                return Ok(found);
            }
            to = from;
        }
        Ok(None)
    }

    fn batch_before(&self, partition: u32, offset: u64) -> Result<Option<Batch>, LogError> {
        let (low, high) = self.watermarks(partition)?;
        // Message m starts at m << OFFSET_BITS: below `offset` when m < messages_below(offset).
        let end = high.min(i64::try_from(messages_below(offset)).unwrap_or(i64::MAX));
        let mut last = None;
        self.scan(partition, (end - 1).max(low), end, |b| last = Some(b))?;
        Ok(last)
    }

    fn offset_after(&self, base: u64, _count: u32) -> u64 {
        ((base >> OFFSET_BITS) + 1) << OFFSET_BITS
    }

    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn LogReader>, LogError> {
        let consumer = self.assigned(partition, (offset >> OFFSET_BITS) as i64)?;
        Ok(Box::new(KafkaReader { consumer, topic: self.cfg.topic.clone(), partition, next: offset }))
    }

    fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        self.check(partition)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.cfg.topic, partition as i32, Offset::Offset((offset >> OFFSET_BITS) as i64))
            .map_err(|e| self.error(e))?;
        self.committer(group)?.commit(&tpl, CommitMode::Sync).map_err(|e| self.error(e))
    }

    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        self.check(partition)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topic, partition as i32);
        let got = self.committer(group)?.committed_offsets(tpl, METADATA_TIMEOUT).map_err(|e| self.error(e))?;
        Ok(match got.find_partition(&self.cfg.topic, partition as i32).map(|e| e.offset()) {
            Some(Offset::Offset(k)) if k >= 0 => Some((k as u64) << OFFSET_BITS),
            _ => None,
        })
    }

    fn distance(&self, from: u64, to: u64) -> u64 {
        messages_below(to).saturating_sub(messages_below(from))
    }
}

#[cfg(test)]
#[path = "kafka_tests.rs"]
mod tests;
