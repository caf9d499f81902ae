//! Where the logs live when they are Kafka topics: the brokers, names and the
//! librdkafka properties of every client.

use std::collections::BTreeMap;

use topk_log::KafkaConfig;

/// The `kafka_properties` of the file, overridden by `TOPK_KAFKA_PROPERTY_*` variables.
pub(super) fn kafka_properties(
    mut file: BTreeMap<String, String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    for (var, value) in env {
        if let Some(name) = var.strip_prefix("TOPK_KAFKA_PROPERTY_").filter(|n| !n.is_empty()) {
            file.insert(name.to_ascii_lowercase().replace('_', "."), value);
        }
    }
    file.into_iter().collect()
}

/// Where the logs live when they are Kafka topics.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub prefix: String,
    pub replication: i32,
    /// librdkafka properties for every client (may hold secrets: not in `Debug`).
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("prefix", &self.prefix)
            .field("replication", &self.replication)
            .field("properties", &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaSettings {
    /// The client settings for `topic` with `partitions` partitions.
    pub fn topic(&self, topic: &str, partitions: u32) -> KafkaConfig {
        let mut cfg = KafkaConfig::new(&self.brokers, topic, partitions);
        cfg.replication = self.replication;
        cfg.group_prefix = self.prefix.clone();
        cfg.properties = self.properties.clone();
        cfg
    }
}
