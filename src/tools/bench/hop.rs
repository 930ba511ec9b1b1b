//! The broker's own produce → consume hop: a probe that produces one small record every
//! `interval` to a fresh topic of one partition and consumes it, timing each from the moment it
//! is handed to the producer until the consumer receives it. Producer and consumer use the
//! engine's client settings where they matter (the consumer's `fetch.wait.max.ms`, 10 ms by
//! default; the producer sends at once, `linger.ms` 0), so the figure is the hop any record of a
//! job takes on this broker at this point of a run, without the job.
//!
//! The topic is created with `message.timestamp.type=LogAppendTime`: the report says which
//! timestamp type the records come back with, i.e. whether the broker stamps records itself
//! (Apache Kafka does; tansu 0.6.0 keeps the producer's CreateTime).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::kafka::client::KafkaOptions;

/// What the probe measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HopReport {
    pub topic: String,
    pub interval_ms: u64,
    pub sent: u64,
    pub received: u64,
    /// Hand-over to the producer → received by the consumer.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// The records' timestamp types as consumed (`create_time`, `log_append_time`).
    pub timestamp_types: BTreeMap<String, u64>,
    /// Whether the broker stamped the records itself (LogAppendTime), as the topic asks.
    pub broker_stamps_log_append_time: bool,
    pub seconds: f64,
}

/// Runs the probe on a fresh `topic` until `stop` exists (or for `duration`, whichever first),
/// then deletes the topic.
pub fn run(
    kafka: &KafkaOptions,
    topic: &str,
    interval: Duration,
    stop: Option<&Path>,
    duration: Duration,
) -> anyhow::Result<HopReport> {
    let admin = kafka.admin()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("message.timestamp.type", "LogAppendTime");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| anyhow::anyhow!("creating the probe topic {topic} failed: {e}"))?
    {
        result.map_err(|(t, code)| anyhow::anyhow!("cannot create the probe topic {t}: {code}"))?;
    }
    let result = probe(kafka, topic, interval, stop, duration);
    crate::kafka::admin::drop_topics(kafka, &[topic.to_owned()])?;
    result
}

fn probe(
    kafka: &KafkaOptions,
    topic: &str,
    interval: Duration,
    stop: Option<&Path>,
    duration: Duration,
) -> anyhow::Result<HopReport> {
    kafka.partition_counts(&[topic], Duration::from_secs(30))?;
    let consumer = kafka.consumer("hop-probe")?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| anyhow::anyhow!("cannot assign {topic}: {e}"))?;
    consumer.assign(&list)?;
    let mut config = kafka.client_config();
    config.set("linger.ms", "0");
    let producer: BaseProducer = config
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create the probe's producer: {e}"))?;

    let mut report = HopReport {
        topic: topic.to_owned(),
        interval_ms: interval.as_millis() as u64,
        ..HopReport::default()
    };
    // The consumer is positioned (its first fetch came back) before the first record is sent.
    let positioned = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(10)) {
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            _ => anyhow::ensure!(
                positioned.elapsed() < Duration::from_secs(30),
                "the probe's consumer did not reach the end of {topic} in 30 s"
            ),
        }
    }
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut hops: Vec<f64> = Vec::new();
    let started = Instant::now();
    let mut next_send = started;
    let mut stopping: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stopping.is_none() {
            if stop.is_some_and(Path::exists) || now.duration_since(started) >= duration {
                stopping = Some(now);
            } else if now >= next_send {
                let seq = report.sent;
                let payload = seq.to_string();
                match producer.send(BaseRecord::<(), _>::to(topic).payload(&payload)) {
                    Ok(()) => {
                        sent_at.insert(seq, Instant::now());
                        report.sent += 1;
                    }
                    Err((e, _)) => tracing::debug!(error = %e, "probe: send failed"),
                }
                next_send += interval;
            }
        }
        producer.poll(Duration::ZERO);
        match consumer.poll(Duration::from_millis(1)) {
            Some(Ok(m)) => {
                let at = Instant::now();
                let seq = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|p| p.parse::<u64>().ok());
                if let Some(sent) = seq.and_then(|s| sent_at.remove(&s)) {
                    hops.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                    report.received += 1;
                }
                let kind = match m.timestamp() {
                    Timestamp::CreateTime(_) => "create_time",
                    Timestamp::LogAppendTime(_) => "log_append_time",
                    Timestamp::NotAvailable => "none",
                };
                *report.timestamp_types.entry(kind.into()).or_default() += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => tracing::debug!(error = %e, "probe: consumer error (retried)"),
        }
        // Stopped: wait a little for the records in flight.
        if let Some(at) = stopping {
            if sent_at.is_empty() || at.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    hops.sort_by(f64::total_cmp);
    let at = |q: f64| super::quantile(&hops, q);
    report.p50_ms = at(0.5);
    report.p90_ms = at(0.9);
    report.p99_ms = at(0.99);
    report.max_ms = hops.last().copied();
    report.mean_ms = (!hops.is_empty()).then(|| hops.iter().sum::<f64>() / hops.len() as f64);
    report.broker_stamps_log_append_time = report.timestamp_types.contains_key("log_append_time");
    Ok(report)
}
