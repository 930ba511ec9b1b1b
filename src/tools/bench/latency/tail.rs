//! A consumer tailing an output topic while a change stretch runs, noting when each record
//! reaches it: the time a reader of the topic sees a document. It reads the topic to its end
//! first (what was there before the stretch), says it is ready, then notes the arrival time of
//! every record (and its Kafka timestamp) until told to stop, and reads on to the end once more.
//! Only (partition, offset) → times are kept while the stretch runs, so it costs little CPU
//! beside the job; the documents are read again afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client::KafkaOptions;

/// The milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the tail saw.
#[derive(Debug, Default)]
pub struct Receipts {
    /// Per partition: the first offset of the stretch (the end before it) and the end after it.
    pub start: BTreeMap<i32, i64>,
    pub end: BTreeMap<i32, i64>,
    /// (partition, offset) → (arrival ms, the record's timestamp ms if it has one).
    pub times: HashMap<(i32, i64), (i64, Option<i64>)>,
    /// Records by timestamp type: `create_time`, `log_append_time`, `none`.
    pub timestamp_types: BTreeMap<String, u64>,
    /// When it was ready (everything before read) and when it was told to stop.
    pub ready_ms: i64,
    pub stop_ms: i64,
}

impl Receipts {
    /// Arrival times by (partition, offset), in order.
    pub fn arrivals_by_offset(&self) -> BTreeMap<(i32, i64), i64> {
        self.times.iter().map(|(&k, &(t, _))| (k, t)).collect()
    }
}

/// Tails `topic`: reads it to its end, creates `ready`, notes arrivals until `stop` exists, then
/// reads on to the end.
pub fn follow(
    kafka: &KafkaOptions,
    topic: &str,
    ready: &Path,
    stop: &Path,
) -> anyhow::Result<Receipts> {
    let count = kafka.partition_counts(&[topic], Duration::from_secs(60))?[0];
    let consumer = kafka.consumer("latency-tail")?;
    let mut list = TopicPartitionList::new();
    for p in 0..count {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| anyhow::anyhow!("cannot assign {topic}/{p}: {e}"))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| anyhow::anyhow!("cannot assign the partitions of {topic}: {e}"))?;
    let mut receipts = Receipts::default();
    let mut next: BTreeMap<i32, i64> = (0..count).map(|p| (p, 0)).collect();
    // Partitions at their end (since their last record).
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut following = false;
    let mut stopping: Option<Instant> = None;
    let mut checked = Instant::now();
    let started = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(2)) {
            Some(Ok(m)) => {
                let (p, offset) = (m.partition(), m.offset());
                next.insert(p, offset + 1);
                at_end.remove(&p);
                if following {
                    let (kind, ts) = match m.timestamp() {
                        Timestamp::CreateTime(t) => ("create_time", Some(t)),
                        Timestamp::LogAppendTime(t) => ("log_append_time", Some(t)),
                        Timestamp::NotAvailable => ("none", None),
                    };
                    receipts.times.insert((p, offset), (now_ms(), ts));
                    *receipts.timestamp_types.entry(kind.into()).or_default() += 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => tracing::debug!(error = %e, "tail: consumer error (retried)"),
            None => {}
        }
        let all_at_end = at_end.len() == count as usize;
        if !following {
            if all_at_end {
                following = true;
                receipts.start = next.clone();
                receipts.ready_ms = now_ms();
                std::fs::write(ready, receipts.ready_ms.to_string())
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", ready.display()))?;
            } else {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(3600),
                    "the tail did not reach the end of {topic} in an hour"
                );
            }
            continue;
        }
        if stopping.is_none() && checked.elapsed() >= Duration::from_millis(20) {
            checked = Instant::now();
            if stop.exists() {
                receipts.stop_ms = now_ms();
                stopping = Some(Instant::now());
            }
        }
        // Told to stop: read on until every partition is at its end, and long enough for the
        // fetches in flight to come back.
        if let Some(at) = stopping {
            if all_at_end && at.elapsed() >= Duration::from_millis(500) {
                break;
            }
            anyhow::ensure!(
                at.elapsed() < Duration::from_secs(1800),
                "the tail did not reach the end of {topic} in 30 minutes after the stretch"
            );
        }
    }
    receipts.end = next;
    Ok(receipts)
}
