//! Writing documents to a product's output topic: one idempotent-ordered producer per worker,
//! delivery failures collected and turned into a job error (nothing is dropped silently).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::client::KafkaOptions;
use crate::dataflow::sink::DocWriter;

/// Counts deliveries and keeps the first failure.
#[derive(Default)]
pub struct DeliveryTracker {
    pub delivered: AtomicU64,
    pub failure: Mutex<Option<String>>,
}

impl DeliveryTracker {
    /// The first delivery failure, as an error.
    pub fn check(&self) -> anyhow::Result<()> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(f) => anyhow::bail!("{f}"),
            None => Ok(()),
        }
    }
}

pub struct TrackingContext(pub Arc<DeliveryTracker>);

impl ClientContext for TrackingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        super::client::log_client_error(error, reason);
    }
}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => {
                use rdkafka::message::Message;
                let mut failure = self.0.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| {
                    format!(
                        "could not deliver a document to {} partition {}: {e}",
                        message.topic(),
                        message.partition()
                    )
                });
            }
        }
    }
}

/// Enqueues one record (`value` `None`: a tombstone), waiting while the client's queue is full:
/// that wait is the backpressure from a slow broker.
pub fn send_blocking<C: ProducerContext<DeliveryOpaque = ()> + 'static>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    key: Option<&str>,
    value: Option<&str>,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<str, str>::to(topic);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    send_record(producer, record)
}

/// Enqueues a prepared record, waiting while the client's queue is full.
pub fn send_record<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P>,
) -> anyhow::Result<()>
where
    C: ProducerContext<DeliveryOpaque = ()> + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, back)) => anyhow::bail!("cannot produce to {}: {e}", back.topic),
        }
    }
}

/// Writes upsert records (JSON key, JSON document or tombstone) to one topic.
pub struct KafkaWriter {
    topic: String,
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    pub written: u64,
}

impl KafkaWriter {
    pub fn new(options: &KafkaOptions, topic: &str) -> anyhow::Result<Self> {
        let tracker = Arc::new(DeliveryTracker::default());
        let mut config = options.client_config();
        // Keep per-key order across retries; acks from all in-sync replicas.
        config
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000");
        for (k, v) in &options.properties {
            config.set(k, v);
        }
        let producer = config
            .create_with_context(TrackingContext(tracker.clone()))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create a Kafka producer for {}: {e}",
                    options.brokers
                )
            })?;
        Ok(KafkaWriter {
            topic: topic.to_owned(),
            producer,
            tracker,
            written: 0,
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        self.tracker.check()
    }
}

impl DocWriter for KafkaWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        self.check()?;
        send_blocking(&self.producer, &self.topic, Some(key), value)?;
        self.written += 1;
        crate::metrics::metrics()
            .documents_written
            .get_or_create(&crate::metrics::topic(&self.topic))
            .inc();
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(300))
            .map_err(|e| anyhow::anyhow!("flushing documents to {} failed: {e}", self.topic))?;
        self.check()
    }
}
