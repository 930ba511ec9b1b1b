//! Writing documents to a product's output topic: one idempotent-ordered producer per worker,
//! delivery failures collected and turned into a job error (nothing is dropped silently), and
//! each delivery's end-to-end latency observed (see [`crate::latency`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use prometheus_client::metrics::histogram::Histogram;

use super::client::KafkaOptions;
use crate::dataflow::sink::DocWriter;
use crate::dataflow::Time;
use crate::latency::SourceTimes;

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

/// Counts deliveries, keeps the first failure, and (for document writers) observes the
/// end-to-end latency of each delivered record tagged with its source timestamp.
pub struct TrackingContext {
    tracker: Arc<DeliveryTracker>,
    latency: Option<Histogram>,
}

impl TrackingContext {
    pub fn new(tracker: Arc<DeliveryTracker>) -> Self {
        TrackingContext {
            tracker,
            latency: None,
        }
    }
}

impl ClientContext for TrackingContext {}

impl ProducerContext for TrackingContext {
    /// The source timestamp (ms since the epoch) a record's latency counts from; 0: none.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, source_ms: usize) {
        match result {
            Ok(_) => {
                self.tracker.delivered.fetch_add(1, Ordering::Relaxed);
                if let (Some(latency), true) = (&self.latency, source_ms > 0) {
                    latency.observe(crate::latency::seconds_since(source_ms as i64));
                }
            }
            Err((e, message)) => {
                use rdkafka::message::Message;
                let mut failure = self
                    .tracker
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
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
/// that wait is the backpressure from a slow broker. `source_ms` tags the record for the
/// latency histogram (0: not measured).
pub fn send_blocking(
    producer: &ThreadedProducer<TrackingContext>,
    topic: &str,
    key: Option<&str>,
    value: Option<&str>,
    source_ms: usize,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<str, str, usize>::with_opaque_to(topic, source_ms);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    send_record(producer, record)
}

/// Enqueues a prepared record, waiting while the client's queue is full.
pub fn send_record<K, P>(
    producer: &ThreadedProducer<TrackingContext>,
    mut record: BaseRecord<'_, K, P, usize>,
) -> anyhow::Result<()>
where
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
    /// Where the oldest source timestamp of each time is noted, when latency is measured.
    source_times: Option<Arc<SourceTimes>>,
    /// The oldest source timestamp of the window being written (0: unknown).
    window_source_ms: usize,
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
        let context = TrackingContext {
            tracker: tracker.clone(),
            latency: Some(
                crate::metrics::metrics()
                    .latency
                    .get_or_create(&crate::metrics::topic(topic))
                    .clone(),
            ),
        };
        let producer = config.create_with_context(context).map_err(|e| {
            anyhow::anyhow!(
                "cannot create a Kafka producer for {}: {e}",
                options.brokers
            )
        })?;
        Ok(KafkaWriter {
            topic: topic.to_owned(),
            producer,
            tracker,
            source_times: None,
            window_source_ms: 0,
            written: 0,
        })
    }

    /// Measures the end-to-end latency of the records written, from the source timestamps
    /// noted in `times`.
    pub fn measure_latency(&mut self, times: Arc<SourceTimes>) {
        self.source_times = Some(times);
    }

    fn check(&self) -> anyhow::Result<()> {
        self.tracker.check()
    }
}

impl DocWriter for KafkaWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        self.check()?;
        send_blocking(
            &self.producer,
            &self.topic,
            Some(key),
            value,
            self.window_source_ms,
        )?;
        self.written += 1;
        crate::metrics::metrics()
            .documents_written
            .get_or_create(&crate::metrics::topic(&self.topic))
            .inc();
        Ok(())
    }

    fn begin_window(&mut self, times: &[Time]) {
        self.window_source_ms = self
            .source_times
            .as_ref()
            .and_then(|noted| noted.oldest(times))
            .map_or(0, |ms| ms.max(1) as usize);
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(300))
            .map_err(|e| anyhow::anyhow!("flushing documents to {} failed: {e}", self.topic))?;
        self.check()
    }
}
