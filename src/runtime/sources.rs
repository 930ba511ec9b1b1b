//! A worker's readers of the source topics: its share of each installed source's partitions,
//! polled without blocking and decoded into the sources' inputs; records that cannot be decoded
//! go where the error policy says (the dead-letter topic, the log, or an error that stops the
//! job naming topic, partition and offset).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::dataflow::catalog::Catalog;
use crate::dataflow::rows::SourceEvent;
use crate::decode::{self, Change};
use crate::kafka::client::KafkaOptions;
use crate::kafka::dlq::DeadLetters;
use crate::kafka::source::{assignment, Origin, TopicsReader};
use crate::plan::SourceId;

use super::options::ErrorPolicy;
use super::SourcePosition;

/// A source this worker reads.
struct Source {
    name: String,
    topic: String,
    /// Partitions of the topic in all.
    partition_count: i32,
    /// Decodes this source's records (keeps the schemas it has seen).
    decoder: decode::Decoder,
    /// Records read since the metrics were last told.
    unreported: u64,
}

/// What one poll read.
#[derive(Debug, Default)]
pub struct Polled {
    pub records: usize,
    /// Bytes of the decoded rows fed (what they cost in the dataflow until their time is done).
    pub bytes: usize,
    /// The Kafka timestamp of the oldest record (for the latency histogram).
    pub oldest_timestamp: Option<i64>,
    pub decode_errors: u64,
}

/// The worker's readers of its share of the sources' partitions: one consumer for all of them.
pub struct SourceReaders {
    reader: TopicsReader,
    sources: BTreeMap<SourceId, Source>,
    by_topic: HashMap<String, SourceId>,
}

/// The dataflow event of a decoded change (a truncate is addressed to each of `peers` workers).
pub fn events(change: Change, peers: usize) -> impl Iterator<Item = SourceEvent> {
    let (upsert, truncate) = match change {
        Change::Upsert { key, row } => (
            Some(SourceEvent::Upsert {
                key,
                row: Some(row),
            }),
            0,
        ),
        Change::Delete { key } => (Some(SourceEvent::Upsert { key, row: None }), 0),
        Change::Truncate => (None, peers as u64),
    };
    upsert
        .into_iter()
        .chain((0..truncate).map(|worker| SourceEvent::Truncate { worker }))
}

impl SourceReaders {
    pub fn new(kafka: &KafkaOptions, worker: usize) -> Self {
        SourceReaders {
            reader: TopicsReader::new(kafka, &format!("sources-w{worker}")),
            sources: BTreeMap::new(),
            by_topic: HashMap::new(),
        }
    }

    /// Starts reading this worker's share of the partitions of newly installed `sources`.
    pub fn open(
        &mut self,
        kafka: &KafkaOptions,
        catalog: &Catalog,
        sources: &[SourceId],
        (worker, peers): (usize, usize),
        wait: Duration,
        progress: &crate::runtime::progress::Progress,
    ) -> anyhow::Result<()> {
        let topics: Vec<&str> = sources
            .iter()
            .map(|&s| catalog.plan.sources[s].topic.as_str())
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let counts = kafka.partition_counts(&topics, wait)?;
        let shares = assignment(worker, peers, &counts);
        for ((&s, partitions), count) in sources.iter().zip(shares).zip(counts) {
            let source = &catalog.plan.sources[s];
            tracing::info!(worker, topic = %source.topic, ?partitions, "worker reading");
            let positions = self.reader.add(&source.topic, partitions)?;
            progress.watch(&source.name, positions);
            self.by_topic.insert(source.topic.clone(), s);
            self.sources.insert(
                s,
                Source {
                    name: source.name.clone(),
                    topic: source.topic.clone(),
                    partition_count: count,
                    decoder: decode::Decoder::new(),
                    unreported: 0,
                },
            );
        }
        Ok(())
    }

    /// Stops reading a source (its product was removed); its name.
    pub fn close(&mut self, source: SourceId) -> anyhow::Result<Option<String>> {
        let Some(closed) = self.sources.remove(&source) else {
            return Ok(None);
        };
        self.by_topic.remove(&closed.topic);
        self.reader.remove(&closed.topic)?;
        Ok(Some(closed.name))
    }

    /// Whether this worker has read every partition of `source` it reads to the end it had
    /// (a source it does not read counts as read).
    pub fn caught_up(&self, source: SourceId) -> bool {
        self.sources
            .get(&source)
            .is_none_or(|s| self.reader.caught_up(&s.topic))
    }

    /// Whether every source is caught up.
    pub fn all_caught_up(&self) -> bool {
        self.reader.all_caught_up()
    }

    /// Reads up to `room` records (at most `batch_size`), decodes them and feeds them to the
    /// catalog's inputs.
    pub fn poll(
        &mut self,
        catalog: &mut Catalog,
        peers: usize,
        batch_size: usize,
        room: usize,
        bad: &mut BadRecords<'_>,
    ) -> anyhow::Result<Polled> {
        let mut polled = Polled::default();
        let (sources, by_topic) = (&mut self.sources, &self.by_topic);
        polled.records = self.reader.poll(
            batch_size.min(room),
            Duration::ZERO,
            |origin, key, value, timestamp| {
                let Some(&s) = by_topic.get(&origin.topic) else {
                    return Ok(());
                };
                let source = sources.get_mut(&s).expect("a source per topic");
                let Some((plan, input)) = catalog.source(s) else {
                    return Ok(());
                };
                source.unreported += 1;
                if let Some(ts) = timestamp.filter(|t| *t > 0) {
                    polled.oldest_timestamp =
                        Some(polled.oldest_timestamp.map_or(ts, |o| o.min(ts)));
                }
                match source.decoder.decode(plan, key, value) {
                    Ok(change) => {
                        if matches!(change, Change::Truncate) {
                            if source.partition_count > 1 {
                                tracing::warn!(%origin, source = %plan.name, partitions = source.partition_count,
                                    "truncate on a topic with several partitions: it is ordered only against the rows of its own partition");
                            }
                            tracing::info!(%origin, source = %plan.name, "truncate: every row of the source is deleted");
                        }
                        for event in events(change, peers) {
                            polled.bytes += event.size();
                            input.send(event);
                        }
                        Ok(())
                    }
                    Err(error) => {
                        polled.decode_errors += 1;
                        bad.record(&origin, key, value, error)
                    }
                }
            },
        )?;
        Ok(polled)
    }

    /// Adds the records read since the last call to the `records_read` counters.
    pub fn report_metrics(&mut self) {
        for source in self.sources.values_mut() {
            if source.unreported > 0 {
                crate::runtime::metrics::metrics()
                    .records_read
                    .get_or_create(&crate::runtime::metrics::topic(&source.topic))
                    .inc_by(source.unreported);
                source.unreported = 0;
            }
        }
    }

    /// Where this worker stands in every partition it reads.
    pub fn positions(&self) -> Vec<SourcePosition> {
        self.sources
            .values()
            .flat_map(|s| {
                self.reader
                    .next_offsets(&s.topic)
                    .into_iter()
                    .map(|(partition, next_offset)| SourcePosition {
                        topic: s.topic.clone(),
                        partition,
                        next_offset,
                    })
            })
            .collect()
    }
}

/// Where records that cannot be decoded go.
pub struct BadRecords<'a> {
    pub policy: ErrorPolicy,
    pub dead_letters: Option<&'a DeadLetters>,
}

impl BadRecords<'_> {
    /// Counts a record that cannot be decoded and deals with it by the policy.
    pub fn record(
        &mut self,
        origin: &Origin,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error: decode::DecodeError,
    ) -> anyhow::Result<()> {
        crate::runtime::metrics::metrics()
            .decode_errors
            .get_or_create(&crate::runtime::metrics::topic(&origin.topic))
            .inc();
        match self.policy {
            ErrorPolicy::Fail => anyhow::bail!("cannot decode the record at {origin}: {error} (run with --on-error dlq to write such records to a dead-letter topic, or skip to log and skip them)"),
            ErrorPolicy::Skip => {
                tracing::warn!(%origin, %error, "skipped a record that cannot be decoded");
                Ok(())
            }
            ErrorPolicy::Dlq => {
                let dead_letters = self
                    .dead_letters
                    .expect("a dead-letter writer exists under the dlq policy");
                dead_letters.send(origin, key, value, &error.to_string())?;
                crate::runtime::metrics::metrics()
                    .dead_letters
                    .get_or_create(&crate::runtime::metrics::topic(&origin.topic))
                    .inc();
                tracing::warn!(%origin, %error, dlq = dead_letters.topic(), "wrote a record that cannot be decoded to the dead-letter topic");
                Ok(())
            }
        }
    }
}
