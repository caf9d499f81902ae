//! Consumer-group membership: Kafka spreads a topic's partitions over the members, and
//! each member hears of every change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientContext, TopicPartitionList};

use super::KafkaLog;
use crate::LogError;

/// What a consumer-group member does when partitions are given to it or taken away.
/// Both are called on the membership's thread; `revoked` must have stopped all work on
/// the partitions when it returns (the group hands them on afterwards).
pub trait Assignments: Send + Sync + 'static {
    fn assigned(&self, partitions: &[u32]);
    fn revoked(&self, partitions: &[u32]);
}

struct GroupContext {
    topic: String,
    handler: Arc<dyn Assignments>,
    /// What this member holds now.
    held: Mutex<Vec<u32>>,
}

impl ClientContext for GroupContext {}

fn partitions_of(topic: &str, tpl: &TopicPartitionList) -> Vec<u32> {
    tpl.elements_for_topic(topic).iter().map(|e| e.partition() as u32).collect()
}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(&self.topic, tpl);
            tracing::info!(topic = %self.topic, partitions = ?parts, "partitions revoked");
            self.handler.revoked(&parts);
            self.held.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| !parts.contains(p));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        match rebalance {
            rdkafka::consumer::Rebalance::Assign(tpl) => {
                // The member only coordinates: each partition's reader fetches on its own.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(topic = %self.topic, error = %e, "pausing the group member's own fetches");
                }
                let parts = partitions_of(&self.topic, tpl);
                tracing::info!(topic = %self.topic, partitions = ?parts, "partitions assigned");
                self.held.lock().unwrap_or_else(|e| e.into_inner()).extend(&parts);
                self.handler.assigned(&parts);
            }
            rdkafka::consumer::Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "rebalance error")
            }
            rdkafka::consumer::Rebalance::Revoke(_) => {}
        }
    }
}

/// Membership of a consumer group on a log's topic: the group spreads the partitions
/// over its members, and [`Assignments`] hears of every change. Leaving (or dropping)
/// revokes everything held first.
pub struct Membership {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaLog {
    /// Joins `group` with the librdkafka `properties` given (e.g. session.timeout.ms) as
    /// defaults: the log's configured properties win over them.
    pub fn join_group(
        &self,
        group: &str,
        properties: &[(&str, &str)],
        handler: Arc<dyn Assignments>,
    ) -> Result<Membership, LogError> {
        let mut config = self.cfg.client();
        config.set("group.id", group).set("enable.auto.commit", "false").set("enable.partition.eof", "false");
        for (k, v) in properties {
            if !self.cfg.properties.iter().any(|(set, _)| set == k) {
                config.set(*k, *v);
            }
        }
        let context = GroupContext { topic: self.cfg.topic.clone(), handler: handler.clone(), held: Mutex::default() };
        let consumer: BaseConsumer<GroupContext> = config.create_with_context(context).map_err(|e| self.error(e))?;
        consumer.subscribe(&[&self.cfg.topic]).map_err(|e| self.error(e))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (stop, topic, group) = (stop.clone(), self.cfg.topic.clone(), group.to_owned());
            std::thread::Builder::new()
                .name("group-member".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        // Serves heartbeats and rebalances; fetches are paused.
                        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                            tracing::warn!(%topic, %group, error = %e, "group member");
                        }
                    }
                    let held = std::mem::take(&mut *consumer.context().held.lock().unwrap_or_else(|e| e.into_inner()));
                    if !held.is_empty() {
                        consumer.context().handler.revoked(&held);
                    }
                    consumer.unsubscribe();
                    tracing::info!(%topic, %group, "left the consumer group");
                })
                .map_err(|e| self.error(format!("starting the group member: {e}")))?
        };
        Ok(Membership { stop, thread: Some(thread) })
    }
}

impl Membership {
    pub fn leave(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_now();
    }
}
