//! The dead-letter topic: records that cannot be decoded are written there with their original
//! key and value bytes, and headers naming the error and where the record came from.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::client::KafkaOptions;
use super::producer::{flush_all, send_record, DeliveryTracker, TrackingContext, RESEND_BACKOFF};
use super::source::Origin;

pub struct DeadLetters {
    topic: String,
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    seq: std::cell::Cell<usize>,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaOptions, topic: &str) -> anyhow::Result<Self> {
        // Every dead letter is sent again until delivered (none supersedes another).
        let tracker = Arc::new(DeliveryTracker::resending(false));
        let mut config = kafka.client_config();
        config.set("acks", "all").set("linger.ms", "5");
        for (k, v) in &kafka.properties {
            config.set(k, v);
        }
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
            seq: std::cell::Cell::new(0),
        })
    }

    /// Fails on a permanent delivery failure; sends again what failed for a passing reason.
    pub fn check(&self) -> anyhow::Result<()> {
        self.tracker.check()?;
        let mut seq = self.seq.get();
        self.tracker
            .resend_undelivered(&self.producer, &mut seq, RESEND_BACKOFF)?;
        self.seq.set(seq);
        Ok(())
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
        self.check()?;
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        self.tracker.sending(seq, &self.topic, None, 0);
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
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, seq).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        send_record(&self.producer, record)
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        let mut seq = self.seq.get();
        let result = flush_all(
            &self.producer,
            &self.tracker,
            &mut seq,
            &self.topic,
            Duration::from_secs(300),
        );
        self.seq.set(seq);
        result.map_err(|e| anyhow::anyhow!("flushing dead letters to {} failed: {e:#}", self.topic))
    }
}
