//! Topic administration and raw record production: creating topics (on real brokers through
//! the admin API; the embedded mock cluster auto-creates) and producing prepared records, for
//! `gen`, the demo and tests.

use std::time::Duration;

use std::sync::Arc;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

use rdkafka::producer::{Producer, ThreadedProducer};

use super::producer::{DeliveryTracker, TrackingContext};
use rdkafka::types::RDKafkaErrorCode as Code;

use super::client::KafkaOptions;

/// Creates the topics that do not exist yet, each with `partitions` partitions.
pub fn ensure_topics(kafka: &KafkaOptions, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin = kafka.admin()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics(&new, &options))
        .map_err(|e| anyhow::anyhow!("creating topics {topics:?} failed: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, Code::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Deletes topics; one that does not exist is no error.
pub fn drop_topics(kafka: &KafkaOptions, topics: &[String]) -> anyhow::Result<()> {
    let admin = kafka.admin()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.delete_topics(&names, &options))
        .map_err(|e| anyhow::anyhow!("deleting topics {names:?} failed: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, Code::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => anyhow::bail!("cannot delete topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Produces raw records in order, with backpressure; `flush` waits for every delivery and
/// fails if any record could not be delivered.
pub struct RecordProducer {
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    pub sent: u64,
}

impl RecordProducer {
    pub fn new(kafka: &KafkaOptions) -> anyhow::Result<Self> {
        let mut config = kafka.client_config();
        config
            .set("linger.ms", "5")
            .set("max.in.flight.requests.per.connection", "1")
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in &kafka.properties {
            config.set(k, v);
        }
        let tracker = Arc::new(DeliveryTracker::default());
        let producer = config
            .create_with_context(TrackingContext::new(tracker.clone()))
            .map_err(|e| {
                anyhow::anyhow!("cannot create a Kafka producer for {}: {e}", kafka.brokers)
            })?;
        Ok(RecordProducer {
            producer,
            tracker,
            sent: 0,
        })
    }

    pub fn send(
        &mut self,
        topic: &str,
        key: Option<&str>,
        value: Option<&str>,
    ) -> anyhow::Result<()> {
        super::producer::send_blocking(&self.producer, topic, key, value, 0)?;
        self.sent += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(|e| anyhow::anyhow!("flushing produced records failed: {e}"))?;
        self.tracker.check()
    }
}
