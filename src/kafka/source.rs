//! Reading source topics: which worker reads which partition, and a reader per (worker, topic)
//! that polls records without blocking and knows when each of its partitions reached the end it
//! had when the job started (partition EOF), so the job can say it has caught up. Each partition's
//! position is shared ([`PartitionPosition`]) for the progress bars and the lag metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{cached_watermarks, KafkaOptions, Reader};
use super::position::PartitionPosition;

/// How often a reader copies the watermarks its consumer saw into the positions.
const WATERMARK_REFRESH: Duration = Duration::from_millis(500);

/// Spreads the partitions of all sources over all workers: partition `p` of source `s` goes to
/// worker `(s + p) % peers`, so single-partition topics land on different workers.
pub fn assignment(worker: usize, peers: usize, partition_counts: &[i32]) -> Vec<Vec<i32>> {
    partition_counts
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            (0..n)
                .filter(|&p| (s + p as usize) % peers == worker)
                .collect()
        })
        .collect()
}

/// Where a record came from, for errors and dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// One reader of some partitions of several topics, with one consumer: a worker reads its
/// share of every source this way, so its fetches carry all of its partitions and its prefetch
/// buffer is one, not one per source. It polls without blocking and knows when each partition
/// reached the end it had when reading began (partition EOF, or the end its fetches reported).
pub struct TopicsReader {
    options: KafkaOptions,
    name: String,
    consumer: Option<Reader>,
    topics: BTreeMap<String, Partitions>,
    watermarks_at: Option<Instant>,
    /// The topics changed since the consumer was last assigned: it is assigned again, once, at
    /// the next poll (assigning again and again while partitions start trips librdkafka).
    reassign: bool,
    /// Transport errors seen (the client retries them itself); logged, not fatal.
    pub transient_errors: u64,
}

/// A topic's partitions a reader reads.
struct Partitions {
    partitions: Vec<i32>,
    /// One per partition, in `partitions` order.
    positions: Vec<Arc<PartitionPosition>>,
    reached_end: BTreeSet<i32>,
    /// The offset after the last record read, per partition (absent: nothing read yet).
    next_offsets: BTreeMap<i32, i64>,
}

impl Partitions {
    fn position(&self, partition: i32) -> Option<&PartitionPosition> {
        self.partitions
            .iter()
            .position(|&p| p == partition)
            .map(|i| &*self.positions[i])
    }
}

impl TopicsReader {
    /// A reader of nothing yet; `name` names its consumer (with the worker).
    pub fn new(options: &KafkaOptions, name: &str) -> Self {
        TopicsReader {
            options: options.clone(),
            name: name.to_owned(),
            consumer: None,
            topics: BTreeMap::new(),
            watermarks_at: None,
            reassign: false,
            transient_errors: 0,
        }
    }

    /// Starts reading `partitions` of `topic` from the beginning (the partitions already read
    /// go on from where they are). Returns their positions.
    pub fn add(
        &mut self,
        topic: &str,
        partitions: Vec<i32>,
    ) -> anyhow::Result<&[Arc<PartitionPosition>]> {
        let positions = partitions
            .iter()
            .map(|&p| Arc::new(PartitionPosition::new(topic, p)))
            .collect();
        self.topics.insert(
            topic.to_owned(),
            Partitions {
                partitions,
                positions,
                reached_end: BTreeSet::new(),
                next_offsets: BTreeMap::new(),
            },
        );
        self.reassign = true;
        Ok(&self.topics[topic].positions)
    }

    /// Stops reading `topic`, from the next poll on.
    pub fn remove(&mut self, topic: &str) -> anyhow::Result<()> {
        if self.topics.remove(topic).is_some() {
            self.reassign = true;
        }
        Ok(())
    }

    /// Applies the topics added and removed now rather than at the next poll.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        if self.reassign {
            self.assign()?;
        }
        Ok(())
    }

    /// Assigns every partition, each from where it is.
    fn assign(&mut self) -> anyhow::Result<()> {
        self.reassign = false;
        let mut list = TopicPartitionList::new();
        for (topic, t) in &self.topics {
            for &p in &t.partitions {
                let offset = t
                    .next_offsets
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
            self.consumer = Some(self.options.consumer(&self.name)?);
        }
        self.consumer
            .as_ref()
            .expect("made above")
            .assign(&list)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot assign the partitions of {:?}: {e}",
                    self.topics.keys().collect::<Vec<_>>()
                )
            })
    }

    /// The partitions of `topic` this reader reads.
    pub fn partitions(&self, topic: &str) -> &[i32] {
        self.topics.get(topic).map_or(&[], |t| &t.partitions)
    }

    /// Where the reader is in each of `topic`'s partitions.
    pub fn positions(&self, topic: &str) -> &[Arc<PartitionPosition>] {
        self.topics.get(topic).map_or(&[], |t| &t.positions)
    }

    /// Per partition of `topic`, the offset after the last record read (the next to read), or
    /// `None` when nothing has been read from it.
    pub fn next_offsets(&self, topic: &str) -> Vec<(i32, Option<i64>)> {
        self.topics.get(topic).map_or(Vec::new(), |t| {
            t.partitions
                .iter()
                .map(|p| (*p, t.next_offsets.get(p).copied()))
                .collect()
        })
    }

    /// True once every partition of `topic` has reached its end at least once (a topic it does
    /// not read counts as read).
    pub fn caught_up(&self, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_none_or(|t| t.reached_end.len() == t.partitions.len())
    }

    /// Whether every partition of every topic has reached its end.
    pub fn all_caught_up(&self) -> bool {
        self.topics.keys().all(|t| self.caught_up(t))
    }

    /// The topics it reads.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Reads up to `max` records without blocking (waiting at most `wait` for the first),
    /// calling `record(origin, key, value, timestamp_ms)` for each, in offset order per
    /// partition. Returns how many were read.
    pub fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        mut record: impl FnMut(Origin, Option<&[u8]>, Option<&[u8]>, Option<i64>) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        if self.reassign {
            self.assign()?;
        }
        let Some(consumer) = &self.consumer else {
            return Ok(0);
        };
        if self
            .watermarks_at
            .is_none_or(|at| at.elapsed() >= WATERMARK_REFRESH)
        {
            self.watermarks_at = Some(Instant::now());
            for (topic, t) in &self.topics {
                for (&p, position) in t.partitions.iter().zip(&t.positions) {
                    if let Some((low, high)) = cached_watermarks(consumer, topic, p) {
                        position.watermarks(low, high);
                    }
                }
            }
        }
        let mut read = 0;
        let mut timeout = wait;
        while read < max {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => {
                    let Some(t) = self.topics.get_mut(message.topic()) else {
                        continue;
                    };
                    let origin = Origin {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    if let Some(position) = t.position(origin.partition) {
                        position.read(origin.offset);
                    }
                    t.next_offsets.insert(origin.partition, origin.offset + 1);
                    record(
                        origin,
                        message.key(),
                        message.payload(),
                        message.timestamp().to_millis(),
                    )?;
                    read += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The event names the partition, not its topic: when several topics have
                    // that partition, each is at its end if everything its fetches reported
                    // was read.
                    let sharing = self
                        .topics
                        .values()
                        .filter(|t| t.partitions.contains(&p))
                        .count();
                    for (topic, t) in self.topics.iter_mut() {
                        if !t.partitions.contains(&p) || t.reached_end.contains(&p) {
                            continue;
                        }
                        let high = cached_watermarks(consumer, topic, p).map(|(_, h)| h);
                        let read_all = match high {
                            Some(high) => t.next_offsets.get(&p).copied().unwrap_or(0) >= high,
                            None => false,
                        };
                        if sharing == 1 || read_all {
                            if let Some(position) = t.position(p) {
                                position.reached_end(high);
                            }
                            t.reached_end.insert(p);
                            tracing::debug!(%topic, partition = p, "reached the end of the partition");
                        }
                    }
                }
                Some(Err(e)) => {
                    self.transient_errors += 1;
                    if self.transient_errors.is_power_of_two() {
                        tracing::warn!(topics = ?self.topics.keys().collect::<Vec<_>>(), error = %e, count = self.transient_errors, "Kafka consumer error; the client retries");
                    }
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(read)
    }
}

/// A reader of some partitions of one topic.
pub struct TopicReader {
    pub topic: String,
    reader: TopicsReader,
}

impl TopicReader {
    pub fn open(
        options: &KafkaOptions,
        topic: &str,
        partitions: Vec<i32>,
        worker: usize,
    ) -> anyhow::Result<Self> {
        let mut reader = TopicsReader::new(options, &format!("{topic}-w{worker}"));
        reader.add(topic, partitions)?;
        Ok(TopicReader {
            topic: topic.to_owned(),
            reader,
        })
    }

    pub fn partitions(&self) -> &[i32] {
        self.reader.partitions(&self.topic)
    }

    /// Where reading stands: per assigned partition, the offset after the last record read
    /// (the next one to read), or `None` when nothing has been read from it.
    pub fn next_offsets(&self) -> Vec<(i32, Option<i64>)> {
        self.reader.next_offsets(&self.topic)
    }

    /// Where the reader is in each of its partitions.
    pub fn positions(&self) -> &[Arc<PartitionPosition>] {
        self.reader.positions(&self.topic)
    }

    /// True once every assigned partition has reached its end at least once.
    pub fn caught_up(&self) -> bool {
        self.reader.caught_up(&self.topic)
    }

    /// Reads up to `max` records (see [`TopicsReader::poll`]).
    pub fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        record: impl FnMut(Origin, Option<&[u8]>, Option<&[u8]>, Option<i64>) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        self.reader.poll(max, wait, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_reader() {
        for peers in 1..6 {
            let counts = [1, 3, 4, 1, 2];
            let mut seen = vec![Vec::new(); counts.len()];
            for w in 0..peers {
                for (s, parts) in assignment(w, peers, &counts).into_iter().enumerate() {
                    seen[s].extend(parts);
                }
            }
            for (s, parts) in seen.iter_mut().enumerate() {
                parts.sort();
                assert_eq!(*parts, (0..counts[s]).collect::<Vec<_>>());
            }
        }
        // Single-partition topics spread over workers.
        let spread: Vec<usize> = (0..4)
            .map(|w| {
                assignment(w, 4, &[1, 1, 1, 1])
                    .iter()
                    .filter(|p| !p.is_empty())
                    .count()
            })
            .collect();
        assert_eq!(spread, vec![1, 1, 1, 1]);
    }
}
