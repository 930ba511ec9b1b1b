//! Topics of one test: unique names, deleted when the test is done; producing records and
//! reading topics back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use denorm::kafka::admin::{drop_topics, ensure_topics, RecordProducer};
use denorm::kafka::client::KafkaOptions;
use denorm::plan::Plan;

use super::kafka;

/// A record to produce: (topic, key, value; `None` is a tombstone).
pub type Rec = (String, Option<String>, Option<String>);

/// A unique prefix for this test's topics.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

/// The topics of one test on the shared broker: every topic named `<prefix>.…` or `<prefix>_…`
/// is deleted when this drops (the test passed or failed), so the broker does not grow with
/// every run.
pub struct Scratch {
    pub prefix: String,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch {
            prefix: unique(name),
        }
    }

    /// This test's topics that exist on the broker now.
    pub fn topics(&self) -> Vec<String> {
        let names = kafka().topic_names().unwrap_or_default();
        names
            .into_iter()
            .filter(|t| {
                t.strip_prefix(&self.prefix)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('_'))
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let topics = self.topics();
        if topics.is_empty() {
            return;
        }
        if let Err(e) = drop_topics(&kafka(), &topics) {
            eprintln!("could not delete the test's topics {topics:?}: {e:#}");
        }
    }
}

/// Writes a copy of a product file of `dataflows/` whose topics `github.` become `<prefix>.`.
pub fn product_file(dir: &Path, name: &str, prefix: &str) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dataflows")
            .join(name),
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("\"github.", &format!("\"{prefix}."))).unwrap();
    path
}

/// Creates the plan's topics (sources and outputs) with `partitions` partitions.
pub fn create_topics(plan: &Plan, partitions: i32) {
    create_topics_on(&kafka(), plan, partitions);
}

/// Creates the plan's topics (sources and outputs) on `kafka`.
pub fn create_topics_on(kafka: &KafkaOptions, plan: &Plan, partitions: i32) {
    let mut topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    topics.extend(plan.products.iter().map(|p| p.output_topic.as_str()));
    ensure_topics(kafka, &topics, partitions).expect("create topics");
}

/// Produces `(topic, key, value)` records in order and waits for delivery.
pub fn produce(records: &[Rec]) {
    produce_to(&kafka(), records);
}

/// Produces records to the brokers of `kafka`, in order, and waits for delivery.
pub fn produce_to(kafka: &KafkaOptions, records: &[Rec]) {
    let mut p = RecordProducer::new(kafka).unwrap();
    for (t, k, v) in records {
        p.send(t, k.as_deref(), v.as_deref()).unwrap();
    }
    p.flush().unwrap();
}

/// Produces `records` from a thread, 100 at a time with short pauses: a live stream of changes.
pub fn stream_in(records: &[Rec]) -> std::thread::JoinHandle<()> {
    let records = records.to_vec();
    std::thread::spawn(move || {
        for chunk in records.chunks(100) {
            produce(chunk);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// The settings `denorm verify` reads topics with, for the test broker.
pub fn verify_settings() -> denorm_verify::Settings {
    denorm_verify::Settings::new(&super::brokers())
}

/// The documents of an output topic as written: last value (text) per key, tombstones removing.
pub fn read_output(topic: &str) -> BTreeMap<String, String> {
    denorm_verify::kafka::read_output(&verify_settings(), topic).unwrap()
}

/// Every record of a topic, in partition then offset order: (key, value or None for tombstone),
/// read with `denorm verify`'s own reader.
pub fn read_all(topic: &str) -> Vec<(String, Option<String>)> {
    let mut records = Vec::new();
    denorm_verify::kafka::read_topic(&verify_settings(), topic, |r| {
        records.push(r);
        Ok(())
    })
    .unwrap();
    records.sort_by_key(|r| (r.partition, r.offset));
    records
        .into_iter()
        .map(|r| {
            (
                String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            )
        })
        .collect()
}

/// A record of a topic with its place and its Kafka timestamp.
#[derive(Clone, Debug)]
pub struct Placed {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms; the producer's create time).
    pub timestamp: i64,
    pub key: String,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// Every record of a topic on the test broker, in partition and offset order, with timestamps
/// and headers (read with a plain consumer).
pub fn read_placed(topic: &str) -> Vec<Placed> {
    read_placed_on(&kafka(), topic)
}

/// Every record of a topic, in partition and offset order, with timestamps and headers.
pub fn read_placed_on(kafka: &KafkaOptions, topic: &str) -> Vec<Placed> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let counts = kafka
        .partition_counts(&[topic], Duration::from_secs(10))
        .unwrap();
    let consumer = kafka.consumer("denorm-test-reader").unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..counts[0] {
        // Offset 0, not `Beginning`, which tansu resolves to the batch stored first (see
        // `denorm_verify::kafka::read_topic`); the consumer resets to the earliest below it.
        list.add_partition_offset(topic, p, rdkafka::Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let mut ended = 0;
    while ended < counts[0] {
        match consumer.poll(Duration::from_secs(20)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), text(h.value).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Placed {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                    key: text(m.key()).unwrap_or_default(),
                    value: text(m.payload()),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: no end after 20 s"),
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// What records leave: the last value per key, a tombstone removing it.
pub fn final_docs(records: &[(String, Option<String>)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in records {
        match v {
            Some(v) => out.insert(k.clone(), v.clone()),
            None => out.remove(k),
        };
    }
    out
}
