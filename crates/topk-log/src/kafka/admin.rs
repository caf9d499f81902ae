//! Topic administration: its partition count, and creating it.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, METADATA_TIMEOUT};
use crate::LogError;

/// The topic's partition count, or `None` if it does not exist.
pub(super) fn topic_partitions(cfg: &KafkaConfig, meta: &BaseConsumer) -> Result<Option<u32>, LogError> {
    let md = meta.fetch_metadata(Some(&cfg.topic), METADATA_TIMEOUT).map_err(|e| cfg.error(e))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == cfg.topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as u32))
}

pub(super) fn create_topic(cfg: &KafkaConfig) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = cfg.client().create().map_err(|e| cfg.error(e))?;
    let max = cfg.max_message_bytes.to_string();
    let topic = NewTopic::new(&cfg.topic, cfg.partitions as i32, TopicReplication::Fixed(cfg.replication))
        .set("max.message.bytes", &max);
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&topic], &opts)).map_err(|e| cfg.error(e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(cfg.error(format!("creating the topic: {code}"))),
        }
    }
    tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, replication = cfg.replication, "created kafka topic");
    Ok(())
}

/// The partition count of an existing topic (`None` if there is no such topic).
pub fn partition_count(cfg: &KafkaConfig) -> Result<Option<u32>, LogError> {
    topic_partitions(cfg, &cfg.consumer("topk-metadata")?)
}
