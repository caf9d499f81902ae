//! Reading topics: a log partition's batches, or another team's plain messages.

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;

use super::{batch_of, reader_error, KafkaConfig};
use crate::{Batch, LogError, LogReader};

/// Reads another team's topic as plain messages: one partition, from an offset.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    partition: u32,
}

impl TopicReader {
    /// `cfg.topic` at `partition`, from message `offset`.
    pub fn open(cfg: &KafkaConfig, partition: u32, offset: u64) -> Result<TopicReader, LogError> {
        let consumer = cfg.assigned("topk-source", partition, offset as i64)?;
        Ok(TopicReader { consumer, topic: cfg.topic.clone(), partition })
    }

    /// Up to `max` messages as (offset, value), waiting at most `wait` for the first.
    pub fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let mut out = Vec::new();
        let mut timeout = wait;
        while out.len() < max {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    reader_error(&self.topic, self.partition, 0, e)?;
                    break;
                }
                Some(Ok(m)) => out.push((m.offset().max(0) as u64, m.payload().unwrap_or_default().to_vec())),
            }
            timeout = Duration::ZERO;
        }
        Ok(out)
    }
}

/// Reads one partition from its prefetched messages.
pub struct KafkaReader {
    pub(super) consumer: BaseConsumer,
    pub(super) topic: String,
    pub(super) partition: u32,
    pub(super) next: u64,
}

impl LogReader for KafkaReader {
    fn position(&self) -> u64 {
        self.next
    }

    fn next_batch(&mut self) -> Result<Option<Batch>, LogError> {
        loop {
            match self.consumer.poll(Duration::ZERO) {
                None => return Ok(None),
                Some(Err(e)) => {
                    reader_error(&self.topic, self.partition, self.next, e)?;
                    return Ok(None);
                }
                Some(Ok(m)) => {
                    let batch = batch_of(&m);
                    if batch.count == 0 || batch.end_offset() <= self.next {
                        continue;
                    }
                    self.next = batch.end_offset();
                    return Ok(Some(batch));
                }
            }
        }
    }
}
