//! Writing documents to a product's output topic: one ordered producer per worker. Records the
//! broker did not take for a reason that may pass (it went down, answered an error while
//! stopping, a delivery timed out) are sent again; a permanent failure (a record too large, no
//! permission) becomes a job error. Nothing is dropped silently. Each delivered document's
//! end-to-end latency is observed (see [`crate::latency`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::client::KafkaOptions;
use crate::dataflow::sink::DocWriter;
use crate::dataflow::Time;
use crate::runtime::latency::SourceTimes;

/// A record the broker did not take for a reason that may pass (a broker going down, an error
/// it answered while stopping, a delivery timeout): it is sent again.
pub struct Undelivered {
    /// The sequence number it was sent with (its delivery opaque).
    pub seq: usize,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
    pub error: String,
    pub at: Instant,
    /// The source timestamp its latency counts from (0: not measured).
    pub source_ms: i64,
}

/// Counts deliveries, keeps the first permanent failure, and collects the records to send again.
#[derive(Default)]
pub struct DeliveryTracker {
    pub delivered: AtomicU64,
    /// Records handed to the client, and those whose delivery failed (each failure is either
    /// sent again as a new record or a job error): `sent - delivered - failed` are in flight.
    /// (The client's own queue length would count its queued log events too.)
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub failure: Mutex<Option<String>>,
    /// Send records again on failures that may pass (else every failure is permanent).
    pub resend: bool,
    /// With `resend`: only the latest record of a key is sent again (a later one supersedes
    /// it): (topic, key) → sequence number of its latest record not yet delivered.
    pub supersede: bool,
    pub latest: Mutex<HashMap<Vec<u8>, usize>>,
    pub undelivered: Mutex<Vec<Undelivered>>,
    /// Records sent again (each time one is).
    pub resent: AtomicU64,
    /// Sequence number → source timestamp (ms) of the records in flight whose latency is
    /// measured.
    pub source_ms: Mutex<HashMap<usize, i64>>,
}

/// A key as the tracker remembers it: the topic's too, as one producer writes several topics.
fn topic_key(topic: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(topic.len() + 1 + key.len());
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Delivery failures that sending again cannot fix: the record or the settings are wrong.
fn permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidRecord
                | InvalidTopic
                | InvalidRequiredAcks
                | TopicAuthorizationFailed
                | ClusterAuthorizationFailed
                | PolicyViolation
                | Authentication
                | SaslAuthenticationFailed
        )
    )
}

impl DeliveryTracker {
    /// A tracker that sends records again on failures that may pass; `supersede`: only the
    /// latest record of each key.
    pub fn resending(supersede: bool) -> Self {
        DeliveryTracker {
            resend: true,
            supersede,
            ..Default::default()
        }
    }

    /// The first permanent delivery failure, as an error.
    pub fn check(&self) -> anyhow::Result<()> {
        match lock(&self.failure).as_ref() {
            Some(f) => anyhow::bail!("{f}"),
            None => Ok(()),
        }
    }

    /// Notes that record `seq` with `key` is being sent to `topic`; its latency counts from
    /// `source_ms` (0: not measured).
    pub(super) fn sending(&self, seq: usize, topic: &str, key: Option<&[u8]>, source_ms: i64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self.supersede {
            if let Some(key) = key {
                lock(&self.latest).insert(topic_key(topic, key), seq);
            }
        }
        if source_ms > 0 {
            lock(&self.source_ms).insert(seq, source_ms);
        }
    }

    /// Sends again the failed records whose failure is older than `backoff` (and that no later
    /// record of their key supersedes); `next_seq` numbers them. Returns how many were sent.
    pub fn resend_undelivered<C: ProducerContext<DeliveryOpaque = usize> + 'static>(
        &self,
        producer: &ThreadedProducer<C>,
        next_seq: &mut usize,
        backoff: Duration,
    ) -> anyhow::Result<usize> {
        let due: Vec<Undelivered> = {
            let mut undelivered = lock(&self.undelivered);
            if undelivered.is_empty() {
                return Ok(0);
            }
            let (due, later) = undelivered
                .drain(..)
                .partition(|u| u.at.elapsed() >= backoff);
            *undelivered = later;
            due
        };
        let mut sent = 0;
        for u in due {
            if self.supersede {
                let latest = u
                    .key
                    .as_ref()
                    .and_then(|k| lock(&self.latest).get(&topic_key(&u.topic, k)).copied());
                if latest != Some(u.seq) {
                    continue; // a later record of the key was sent after it
                }
            }
            *next_seq += 1;
            let seq = *next_seq;
            self.sending(seq, &u.topic, u.key.as_deref(), u.source_ms);
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&u.topic, seq);
            if let Some(k) = &u.key {
                record = record.key(k);
            }
            if let Some(p) = &u.payload {
                record = record.payload(p);
            }
            if let Some(h) = u.headers.clone() {
                record = record.headers(h);
            }
            send_record(producer, record)?;
            sent += 1;
            self.resent.fetch_add(1, Ordering::Relaxed);
            warn_sometimes(&format!(
                "the broker did not take records for {} ({}); sending them again",
                u.topic, u.error
            ));
        }
        Ok(sent)
    }

    /// Records sent whose delivery has not been reported yet.
    pub fn in_flight(&self) -> usize {
        let done = self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(done) as usize
    }

    /// Records failed and waiting to be sent again.
    pub fn waiting(&self) -> usize {
        lock(&self.undelivered).len()
    }
}

/// Logs `message` as a warning at most once per 10 seconds (per message).
fn warn_sometimes(message: &str) {
    static LAST: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);
    let mut last = lock(&LAST);
    let map = last.get_or_insert_with(HashMap::new);
    let entry = map
        .entry(message.to_owned())
        .or_insert((Instant::now() - Duration::from_secs(3600), 0));
    entry.1 += 1;
    if entry.0.elapsed() >= Duration::from_secs(10) {
        tracing::warn!(times = entry.1, "{message}");
        *entry = (Instant::now(), 0);
    }
}

/// Counts deliveries, keeps the first failure and collects records to send again (see
/// [`DeliveryTracker`]); for document writers, observes the end-to-end latency of each delivered
/// record whose source timestamp was noted.
pub struct TrackingContext {
    tracker: Arc<DeliveryTracker>,
    /// Observe each delivered record's latency, in the histogram of its topic.
    latency: bool,
}

impl TrackingContext {
    pub fn new(tracker: Arc<DeliveryTracker>) -> Self {
        TrackingContext {
            tracker,
            latency: false,
        }
    }
}

impl ClientContext for TrackingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, line: &str) {
        super::client::log_client_line(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client::log_client_error(error, reason);
    }
}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let tracker = &self.tracker;
        let source_ms = lock(&tracker.source_ms).remove(&seq).unwrap_or(0);
        match result {
            Ok(message) => {
                tracker.delivered.fetch_add(1, Ordering::Relaxed);
                if self.latency && source_ms > 0 {
                    crate::runtime::metrics::metrics()
                        .latency
                        .get_or_create(&crate::runtime::metrics::topic(message.topic()))
                        .observe(crate::runtime::latency::seconds_since(source_ms));
                }
                if tracker.supersede {
                    if let Some(key) = message.key() {
                        let key = topic_key(message.topic(), key);
                        let mut latest = lock(&tracker.latest);
                        if latest.get(&key) == Some(&seq) {
                            latest.remove(&key);
                        }
                    }
                }
            }
            Err((e, message)) if tracker.resend && !permanent(e) => {
                tracker.failed.fetch_add(1, Ordering::Relaxed);
                lock(&tracker.undelivered).push(Undelivered {
                    seq,
                    topic: message.topic().to_owned(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers: message.headers().map(|h| h.detach()),
                    error: e.to_string(),
                    at: Instant::now(),
                    source_ms,
                });
            }
            Err((e, message)) => {
                tracker.failed.fetch_add(1, Ordering::Relaxed);
                let mut failure = lock(&tracker.failure);
                failure.get_or_insert_with(|| {
                    format!(
                        "could not deliver a record to {} partition {}: {e}",
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
pub fn send_blocking<C: ProducerContext<DeliveryOpaque = usize> + 'static>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    key: Option<&str>,
    value: Option<&str>,
    seq: usize,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<str, str, usize>::with_opaque_to(topic, seq);
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
    mut record: BaseRecord<'_, K, P, usize>,
) -> anyhow::Result<()>
where
    C: ProducerContext<DeliveryOpaque = usize> + 'static,
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

/// How long a record that failed waits before it is sent again.
pub const RESEND_BACKOFF: Duration = Duration::from_millis(500);

/// Waits until every record sent is delivered (sending again those that failed for a reason
/// that may pass), or a permanent failure, or `timeout`.
pub fn flush_all<C: ProducerContext<DeliveryOpaque = usize> + 'static>(
    producer: &ThreadedProducer<C>,
    tracker: &DeliveryTracker,
    next_seq: &mut usize,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        tracker.check()?;
        tracker.resend_undelivered(producer, next_seq, RESEND_BACKOFF)?;
        let pending = tracker.in_flight() + tracker.waiting();
        if pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{pending} records to {topic} were not delivered within {timeout:?}"
        );
        let _ = producer.flush(Duration::from_millis(200));
    }
}

/// Writes upsert records (JSON key, JSON document or tombstone) for a worker's products: one
/// producer per worker, whichever topics it writes. A record the broker did not take for a
/// reason that may pass (an outage) is sent again unless a later record of its key was sent
/// since: the job waits out outages without losing or reordering documents.
pub struct KafkaWriter {
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    seq: usize,
    /// Where the oldest source timestamp of each time is noted, when latency is measured.
    source_times: Option<Arc<SourceTimes>>,
    /// Records sent again that a flush has logged.
    resent_logged: u64,
}

impl KafkaWriter {
    pub fn new(options: &KafkaOptions) -> anyhow::Result<Self> {
        let tracker = Arc::new(DeliveryTracker::resending(true));
        let mut config = options.client_config();
        // Keep per-key order across retries; acks from all in-sync replicas.
        config
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Documents are JSON that repeats its field names: lz4 batches are a fraction of
            // the bytes for the network and the broker, for little CPU here (a hundred products
            // of scripts/bench-products.sh: tansu's CPU 2.8 -> 1.5 s, the job's about the same).
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "300000");
        for (k, v) in &options.properties {
            config.set(k, v);
        }
        let context = TrackingContext {
            tracker: tracker.clone(),
            latency: true,
        };
        let producer = config.create_with_context(context).map_err(|e| {
            anyhow::anyhow!(
                "cannot create a Kafka producer for {}: {e}",
                options.brokers
            )
        })?;
        Ok(KafkaWriter {
            producer,
            tracker,
            seq: 0,
            source_times: None,
            resent_logged: 0,
        })
    }

    /// Measures the end-to-end latency of the records written, from the source timestamps
    /// noted in `times`.
    pub fn measure_latency(&mut self, times: Arc<SourceTimes>) {
        self.source_times = Some(times);
    }

    /// Records written whose delivery the broker has not confirmed yet (in flight, or failed
    /// and waiting to be sent again).
    pub fn undelivered(&self) -> usize {
        self.tracker.in_flight() + self.tracker.waiting()
    }

    /// Fails on a permanent delivery failure; sends again what failed for a passing reason.
    pub fn check(&mut self) -> anyhow::Result<()> {
        self.tracker.check()?;
        self.tracker
            .resend_undelivered(&self.producer, &mut self.seq, RESEND_BACKOFF)?;
        Ok(())
    }

    fn send(
        &mut self,
        topic: &str,
        key: &str,
        value: Option<&str>,
        source_ms: i64,
    ) -> anyhow::Result<()> {
        self.check()?;
        self.seq += 1;
        self.tracker
            .sending(self.seq, topic, Some(key.as_bytes()), source_ms);
        send_blocking(&self.producer, topic, Some(key), value, self.seq)
    }

    /// Waits until everything written is delivered, then logs how many records were sent
    /// again since the last flush that had any (the warning while it happens is rate-limited,
    /// so it cannot be counted).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        flush_all(
            &self.producer,
            &self.tracker,
            &mut self.seq,
            "the output topics",
            Duration::from_secs(300),
        )
        .map_err(|e| anyhow::anyhow!("flushing documents failed: {e:#}"))?;
        let resent = self.tracker.resent.load(Ordering::Relaxed);
        if resent > self.resent_logged {
            tracing::info!(
                resent = resent - self.resent_logged,
                "records the broker had not taken were sent again"
            );
            self.resent_logged = resent;
        }
        Ok(())
    }
}

/// One product's writer: its topic, on its worker's [`KafkaWriter`].
pub struct TopicWriter {
    topic: String,
    writer: std::rc::Rc<std::cell::RefCell<KafkaWriter>>,
    /// The oldest source timestamp of the window being written (0: unknown).
    window_source_ms: i64,
    pub written: u64,
}

impl TopicWriter {
    pub fn new(writer: std::rc::Rc<std::cell::RefCell<KafkaWriter>>, topic: &str) -> Self {
        TopicWriter {
            topic: topic.to_owned(),
            writer,
            window_source_ms: 0,
            written: 0,
        }
    }
}

impl DocWriter for TopicWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        // A deliberate bug for the tests of `denorm verify`: an empty value for a tombstone.
        let value = match value {
            None if crate::fault::on(crate::fault::Fault::EmptyTombstone) => Some(""),
            value => value,
        };
        self.writer
            .borrow_mut()
            .send(&self.topic, key, value, self.window_source_ms)?;
        self.written += 1;
        crate::runtime::metrics::metrics()
            .documents_written
            .get_or_create(&crate::runtime::metrics::topic(&self.topic))
            .inc();
        Ok(())
    }

    fn begin_window(&mut self, times: &[Time]) {
        self.window_source_ms = self
            .writer
            .borrow()
            .source_times
            .as_ref()
            .and_then(|noted| noted.oldest(times))
            .map_or(0, |ms| ms.max(1));
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.borrow_mut().flush()
    }
}
