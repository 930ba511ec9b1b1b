//! The dead-letter topic: records that cannot be decoded are written there with their original
//! key and value bytes, and headers naming the error and where the record came from.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::client::KafkaOptions;
use super::producer::{send_record, DeliveryTracker, TrackingContext};
use super::source::Origin;

pub struct DeadLetters {
    topic: String,
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaOptions, topic: &str) -> anyhow::Result<Self> {
        let tracker = Arc::new(DeliveryTracker::default());
        let mut config = kafka.client_config();
        config.set("acks", "all").set("linger.ms", "5");
        let producer = config
            .create_with_context(TrackingContext::new(tracker.clone()))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the dead-letter producer for {}: {e}",
                    kafka.brokers
                )
            })?;
        Ok(DeadLetters {
            topic: topic.to_owned(),
            producer,
            tracker,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes one undecodable record with headers `denorm.error`, `denorm.topic`,
    /// `denorm.partition` and `denorm.offset`.
    pub fn send(
        &self,
        origin: &Origin,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error: &str,
    ) -> anyhow::Result<()> {
        self.tracker.check()?;
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "denorm.error",
                value: Some(error),
            })
            .insert(Header {
                key: "denorm.topic",
                value: Some(origin.topic.as_str()),
            })
            .insert(Header {
                key: "denorm.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "denorm.offset",
                value: Some(offset.as_str()),
            });
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, 0).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        send_record(&self.producer, record)
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(|e| anyhow::anyhow!("flushing dead letters to {} failed: {e}", self.topic))?;
        self.tracker.check()
    }
}
