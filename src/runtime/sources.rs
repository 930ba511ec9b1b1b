//! A worker's readers of the source topics: its share of each installed source's partitions,
//! polled without blocking and decoded into the sources' inputs; records that cannot be decoded
//! go where the error policy says (the dead-letter topic, the log, or an error that stops the
//! job naming topic, partition and offset).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dataflow::catalog::Catalog;
use crate::dataflow::rows::SourceEvent;
use crate::decode::{self, Change};
use crate::kafka::client::KafkaOptions;
use crate::kafka::dlq::DeadLetters;
use crate::kafka::source::{assignment, Origin, TopicReader};
use crate::plan::SourceId;

use super::options::ErrorPolicy;
use super::SourcePosition;

/// One source's partitions this worker reads.
pub struct SourceReader {
    /// The source's name in the plan.
    pub name: String,
    pub reader: TopicReader,
    /// Partitions of the topic in all.
    partition_count: i32,
    /// Decodes this reader's records (keeps the schemas it has seen).
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

/// The worker's source readers.
#[derive(Default)]
pub struct SourceReaders {
    readers: BTreeMap<SourceId, SourceReader>,
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
            let reader = TopicReader::open(kafka, &source.topic, partitions, worker)?;
            tracing::info!(worker, topic = %reader.topic, partitions = ?reader.partitions(), "worker reading");
            progress.watch(&source.name, reader.positions());
            self.readers.insert(
                s,
                SourceReader {
                    name: source.name.clone(),
                    reader,
                    partition_count: count,
                    decoder: decode::Decoder::new(),
                    unreported: 0,
                },
            );
        }
        Ok(())
    }

    /// Stops reading a source (its product was removed); its name.
    pub fn close(&mut self, source: SourceId) -> Option<String> {
        self.readers.remove(&source).map(|r| r.name)
    }

    /// Whether this worker has read every partition of `source` it reads to the end it had
    /// (a source it does not read counts as read).
    pub fn caught_up(&self, source: SourceId) -> bool {
        self.readers
            .get(&source)
            .is_none_or(|r| r.reader.caught_up())
    }

    /// Whether every source is caught up.
    pub fn all_caught_up(&self) -> bool {
        self.readers.values().all(|r| r.reader.caught_up())
    }

    /// Reads up to `room` records (at most `batch_size` per source, the sources in turn),
    /// decodes them and feeds them to the catalog's inputs.
    pub fn poll(
        &mut self,
        catalog: &mut Catalog,
        peers: usize,
        batch_size: usize,
        mut room: usize,
        bad: &mut BadRecords<'_>,
    ) -> anyhow::Result<Polled> {
        let mut polled = Polled::default();
        for (&s, reader) in self.readers.iter_mut() {
            if room == 0 {
                break;
            }
            let Some((source, input)) = catalog.source(s) else {
                continue;
            };
            let partitions = reader.partition_count;
            let decoder = &mut reader.decoder;
            let got = reader.reader.poll(
                batch_size.min(room),
                Duration::ZERO,
                |origin, key, value, timestamp| {
                    if let Some(ts) = timestamp.filter(|t| *t > 0) {
                        polled.oldest_timestamp =
                            Some(polled.oldest_timestamp.map_or(ts, |o| o.min(ts)));
                    }
                    match decoder.decode(source, key, value) {
                        Ok(change) => {
                            if matches!(change, Change::Truncate) {
                                if partitions > 1 {
                                    tracing::warn!(%origin, source = %source.name, partitions,
                                        "truncate on a topic with several partitions: it is ordered only against the rows of its own partition");
                                }
                                tracing::info!(%origin, source = %source.name, "truncate: every row of the source is deleted");
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
            reader.unreported += got as u64;
            polled.records += got;
            room = room.saturating_sub(got);
        }
        Ok(polled)
    }

    /// Adds the records read since the last call to the `records_read` counters.
    pub fn report_metrics(&mut self) {
        for reader in self.readers.values_mut() {
            if reader.unreported > 0 {
                crate::runtime::metrics::metrics()
                    .records_read
                    .get_or_create(&crate::runtime::metrics::topic(&reader.reader.topic))
                    .inc_by(reader.unreported);
                reader.unreported = 0;
            }
        }
    }

    /// Where this worker stands in every partition it reads.
    pub fn positions(&self) -> Vec<SourcePosition> {
        self.readers
            .values()
            .flat_map(|r| {
                r.reader
                    .next_offsets()
                    .into_iter()
                    .map(|(partition, next_offset)| SourcePosition {
                        topic: r.reader.topic.clone(),
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
