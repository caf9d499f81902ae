//! The plain Kafka source: ingests a topic of JSON sale events that another system
//! produces, through the same validation as the HTTP API, into the events log.
//!
//! # Exactly once
//! Each partition of the source topic is a source of its own (as a replayed file is):
//! every append records, per events-log partition, the source offset below which its
//! events are in the log, so after a crash the source restarts at the lowest of them and
//! skips what a partition already has.
//!
//! # Bad input
//! A rejected message goes to the dead-letter topic (`<prefix>dead-letter`), with the
//! reason and its origin (`topic/partition/offset`), before the batch's valid events are
//! appended, so no rejection is lost (a crash in between may send a letter twice).
//! When the share of rejected messages over the last `source_reject_window` messages
//! reaches `source_max_reject_rate` — the upstream system is likely broken (chapter
//! §17.9.2) — the source pauses: `/healthz` and `topk_source_paused` say why, and
//! `topk resume` (`POST /api/v1/sources/kafka/resume`) starts it again where it stopped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use topk_core::Shutdown;
use topk_log::{DeadLetter, KafkaConfig, KafkaLog, Log, LogError, SourcePos, TopicReader};

use crate::{Ingestor, SourceResume};

/// The source role's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceConfig {
    /// The topic of JSON sale events another system produces.
    pub topic: String,
    /// The rejected share of the last `window` messages at which the source pauses.
    pub max_reject_rate: f64,
    /// Messages the reject rate is measured over.
    pub window: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig { topic: String::new(), max_reject_rate: 0.5, window: 1000 }
    }
}

impl SourceConfig {
    /// Checks the settings, naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_reject_rate > 0.0 && self.max_reject_rate <= 1.0) {
            return Err(format!("source_max_reject_rate must lie in (0, 1], got {}", self.max_reject_rate));
        }
        if self.window < 10 {
            return Err(format!("source_reject_window must be at least 10, got {}", self.window));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("source topic {0} does not exist")]
    NoTopic(String),
    #[error("writing to the dead-letter topic: {0}")]
    DeadLetters(LogError),
}

/// Messages taken from one partition at a time: a tenth of the reject window (so a pause
/// lands within a tenth of a window of the message that caused it), at most 500.
fn batch_size(window: usize) -> usize {
    (window / 10).clamp(1, 500)
}

/// What the source is doing, shared with the HTTP API.
#[derive(Debug, Default)]
pub struct SourceState {
    /// Why the source is paused, if it is.
    paused: Mutex<Option<String>>,
    pub consumed: AtomicU64,
    pub dead_letters: AtomicU64,
}

impl SourceState {
    pub fn paused(&self) -> Option<String> {
        self.paused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets a paused source go on; `false` if it was not paused.
    pub fn resume(&self) -> bool {
        let was = self.paused.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reason) = &was {
            tracing::warn!(%reason, "source resumed by an operator");
        }
        was.is_some()
    }

    fn pause(&self, reason: String) {
        tracing::error!(%reason, "source paused: fix the producer, then run topk resume");
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
}

/// The rejected share of the last `size` messages.
struct RejectWindow {
    size: usize,
    recent: VecDeque<bool>,
    rejected: usize,
}

impl RejectWindow {
    fn new(size: usize) -> Self {
        RejectWindow { size, recent: VecDeque::with_capacity(size), rejected: 0 }
    }

    fn push(&mut self, rejected: bool) {
        if self.recent.len() == self.size && self.recent.pop_front() == Some(true) {
            self.rejected -= 1;
        }
        self.recent.push_back(rejected);
        self.rejected += usize::from(rejected);
    }

    /// The rejected share once the window is full.
    fn rate(&self) -> Option<f64> {
        (self.recent.len() == self.size).then(|| self.rejected as f64 / self.size as f64)
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.rejected = 0;
    }
}

/// Stable id of a source-topic partition (the id its positions are recorded under).
fn source_id(topic: &str, partition: u32) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("kafka:{topic}/{partition}").as_bytes()).max(1)
}

/// Runs the source until `shutdown`: reads `topic` (its client settings; the partition
/// count is the topic's own), appends its valid events to `events` and its rejects to
/// `dead`.
pub fn run(
    settings: &SourceConfig,
    mut topic: KafkaConfig,
    dead: &KafkaLog,
    events: &dyn Log,
    mut ingestor: Ingestor,
    state: &SourceState,
    shutdown: &Shutdown,
) -> Result<(), SourceError> {
    let partitions =
        topk_log::kafka::partition_count(&topic)?.ok_or_else(|| SourceError::NoTopic(settings.topic.clone()))?;
    topic.partitions = partitions;
    let mut sources = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let (resume, start) = SourceResume::load(events, source_id(&settings.topic, p))?;
        tracing::info!(topic = %settings.topic, partition = p, from = start.pos, done = ?resume.done, "source partition starts");
        sources.push((p, resume, TopicReader::open(&topic, p, start.pos)?));
    }
    let mut window = RejectWindow::new(settings.window);
    while !shutdown.is_triggered() {
        if state.paused().is_some() {
            window.clear();
            shutdown.wait(Duration::from_millis(100));
            continue;
        }
        let mut taken = 0;
        for (p, resume, reader) in &mut sources {
            let wait = Duration::from_millis(if taken == 0 { 20 } else { 0 });
            let records = reader.poll(batch_size(settings.window), wait)?;
            let Some(&(last, _)) = records.last() else { continue };
            taken += records.len();
            let report = ingestor.route_records(&records, resume);
            letters(dead, &settings.topic, *p, &records, &report.rejected, state)?;
            let pos = SourcePos { source: resume.source, pos: last + 1, line: last + 1 };
            ingestor.commit(Some((resume, pos)))?;
            ingestor.record(&report);
            state.consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
            let bad: std::collections::HashSet<u64> = report.rejected.iter().map(|r| r.line - 1).collect();
            for (offset, _) in &records {
                window.push(bad.contains(offset));
                let Some(rate) = window.rate() else { continue };
                if rate >= settings.max_reject_rate {
                    state.pause(format!(
                        "{:.0}% of the last {} messages of {} were rejected (limit {:.0}%); the last at partition {p} offset {last}",
                        rate * 100.0,
                        settings.window,
                        settings.topic,
                        settings.max_reject_rate * 100.0
                    ));
                    break;
                }
            }
            if state.paused().is_some() {
                break;
            }
        }
        if taken == 0 {
            shutdown.wait(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Sends every rejected message of a batch to the dead-letter topic.
fn letters(
    dead: &KafkaLog,
    topic: &str,
    partition: u32,
    records: &[(u64, Vec<u8>)],
    rejected: &[topk_core::event::Rejection],
    state: &SourceState,
) -> Result<(), SourceError> {
    if rejected.is_empty() {
        return Ok(());
    }
    let letters: Vec<DeadLetter<'_>> = rejected
        .iter()
        .filter_map(|r| {
            let offset = r.line - 1;
            let value = records.iter().find(|(o, _)| *o == offset).map(|(_, v)| v.as_slice())?;
            let reason = match &r.field {
                Some(f) => format!("{f}: {}", r.reason),
                None => r.reason.clone(),
            };
            Some(DeadLetter { origin: format!("{topic}/{partition}/{offset}"), reason, value })
        })
        .collect();
    dead.send_dead_letters(&letters).map_err(SourceError::DeadLetters)?;
    state.dead_letters.fetch_add(letters.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_measures_the_last_messages_only() {
        let mut w = RejectWindow::new(10);
        for _ in 0..9 {
            w.push(true);
        }
        assert_eq!(w.rate(), None, "not full yet");
        w.push(false);
        assert_eq!(w.rate(), Some(0.9));
        for _ in 0..10 {
            w.push(false);
        }
        assert_eq!(w.rate(), Some(0.0), "the bad burst has left the window");
        w.push(true);
        assert_eq!(w.rate(), Some(0.1));
    }

    #[test]
    fn each_source_partition_is_its_own_source() {
        assert_ne!(source_id("sales", 0), source_id("sales", 1));
        assert_ne!(source_id("sales", 0), source_id("sale", 0));
        assert_eq!(source_id("sales", 3), source_id("sales", 3));
    }
}
