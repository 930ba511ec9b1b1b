//! Reading back what the output topics hold: one consumer per worker for every product whose
//! topic it is loading, assigned to its share of their partitions from the beginning, polled
//! without blocking beside the source readers. A product's topic is loaded once each of those
//! partitions reached the end it had (partition EOF). So a hundred products load at once, while
//! the sources are read, instead of one after another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{KafkaOptions, Reader};
use super::source::Origin;

/// One worker's reader of the output topics being loaded.
pub struct OutputReader {
    options: KafkaOptions,
    worker: usize,
    consumer: Option<Reader>,
    /// Per topic being loaded: its partitions not at their end yet, and the next offset of each
    /// partition (to keep the positions when the assignment changes).
    loading: BTreeMap<String, Loading>,
}

struct Loading {
    waiting: BTreeSet<i32>,
    next: BTreeMap<i32, i64>,
}

impl OutputReader {
    pub fn new(options: &KafkaOptions, worker: usize) -> Self {
        OutputReader {
            options: options.clone(),
            worker,
            consumer: None,
            loading: BTreeMap::new(),
        }
    }

    /// Starts loading `partitions` of `topic` from the beginning. With none, the topic is
    /// loaded at once (the next [`OutputReader::poll`] says so).
    pub fn add(&mut self, topic: &str, partitions: Vec<i32>) -> anyhow::Result<()> {
        self.loading.insert(
            topic.to_owned(),
            Loading {
                waiting: partitions.iter().copied().collect(),
                next: BTreeMap::new(),
            },
        );
        self.assign()
    }

    /// Whether a topic is still loading.
    pub fn is_loading(&self) -> bool {
        !self.loading.is_empty()
    }

    /// Assigns every partition still loading, each from where it is.
    fn assign(&mut self) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        for (topic, loading) in &self.loading {
            for &p in &loading.waiting {
                let offset = loading
                    .next
                    .get(&p)
                    .map_or(Offset::Beginning, |&o| Offset::Offset(o));
                list.add_partition_offset(topic, p, offset)
                    .map_err(|e| anyhow::anyhow!("cannot assign {topic}/{p}: {e}"))?;
            }
        }
        if list.count() == 0 {
            self.consumer = None;
            return Ok(());
        }
        if self.consumer.is_none() {
            self.consumer = Some(
                self.options
                    .consumer(&format!("outputs-w{}", self.worker))?,
            );
        }
        let consumer = self.consumer.as_ref().expect("made above");
        consumer
            .assign(&list)
            .map_err(|e| anyhow::anyhow!("cannot assign the output topics' partitions: {e}"))
    }

    /// Reads up to `max` records without blocking, calling `record(topic, key, value)` for each
    /// (`None` value: a tombstone). Returns the topics that finished loading.
    pub fn poll(
        &mut self,
        max: usize,
        mut record: impl FnMut(&str, String, Option<String>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<String>> {
        if let Some(consumer) = &self.consumer {
            let mut read = 0;
            while read < max {
                match consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(message)) => {
                        read += 1;
                        let topic = message.topic();
                        let Some(loading) = self.loading.get_mut(topic) else {
                            continue;
                        };
                        loading
                            .next
                            .insert(message.partition(), message.offset() + 1);
                        let origin = Origin {
                            topic: topic.to_owned(),
                            partition: message.partition(),
                            offset: message.offset(),
                        };
                        let key = message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .ok_or_else(|| anyhow::anyhow!("{origin}: an output record without a key (denorm writes every record with its document's key)"))?;
                        let value = message
                            .payload()
                            .filter(|v| !v.is_empty())
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        record(topic, key, value)?;
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        // librdkafka's EOF event does not name the topic: ask which topics'
                        // partitions are at their end.
                        for (topic, loading) in self.loading.iter_mut() {
                            if loading.waiting.contains(&p)
                                && at_end(consumer, topic, p, loading.next.get(&p).copied())
                            {
                                loading.waiting.remove(&p);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "consumer error while reading the output topics; the client retries");
                        break;
                    }
                }
            }
        }
        let done: Vec<String> = self
            .loading
            .iter()
            .filter(|(_, l)| l.waiting.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        if !done.is_empty() {
            for topic in &done {
                self.loading.remove(topic);
            }
            self.assign()?;
        }
        Ok(done)
    }
}

/// Whether the consumer has read partition `p` of `topic` to the end its fetches report.
fn at_end(consumer: &Reader, topic: &str, p: i32, next: Option<i64>) -> bool {
    match super::client::cached_watermarks(consumer, topic, p) {
        Some((_, high)) => next.unwrap_or(0) >= high,
        None => false,
    }
}
