//! The Kafka ceiling: reading the product's source topics from the beginning to their end and
//! decoding every record (JSON parse and column decoding, as a job does), and nothing else. The
//! partitions are spread over the reader threads as over a job's workers.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::decode;
use crate::kafka::client::KafkaOptions;
use crate::kafka::source::{assignment, TopicsReader};
use crate::plan::Plan;

/// What a consume run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    pub workers: usize,
    pub records: u64,
    /// Key and value bytes read.
    pub bytes: u64,
    pub decode_errors: u64,
    /// From opening the readers until every thread reached the end of its partitions.
    pub seconds: f64,
    pub records_per_second: f64,
    pub megabytes_per_second: f64,
}

#[derive(Default)]
struct Share {
    records: u64,
    bytes: u64,
    errors: u64,
}

/// Reads and decodes every source topic of `plan` on `workers` threads.
pub fn run(kafka: &KafkaOptions, plan: &Plan, workers: usize) -> anyhow::Result<ConsumeReport> {
    anyhow::ensure!(workers > 0, "at least one worker");
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    let counts = kafka.partition_counts(&topics, Duration::from_secs(10))?;
    let start = Instant::now();
    let shares = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let counts = &counts;
                scope.spawn(move || read_share(kafka, plan, counts, w, workers))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<Share>>>()
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let records = shares.iter().map(|s| s.records).sum::<u64>();
    let bytes = shares.iter().map(|s| s.bytes).sum::<u64>();
    Ok(ConsumeReport {
        workers,
        records,
        bytes,
        decode_errors: shares.iter().map(|s| s.errors).sum(),
        seconds,
        records_per_second: records as f64 / seconds.max(1e-9),
        megabytes_per_second: bytes as f64 / 1e6 / seconds.max(1e-9),
    })
}

fn read_share(
    kafka: &KafkaOptions,
    plan: &Plan,
    counts: &[i32],
    worker: usize,
    workers: usize,
) -> anyhow::Result<Share> {
    // One reader for all of the worker's partitions, as a job's worker reads them.
    let mut reader = TopicsReader::new(kafka, &format!("consume-w{worker}"));
    let mut sources = std::collections::HashMap::new();
    for (s, partitions) in assignment(worker, workers, counts).into_iter().enumerate() {
        let topic = &plan.sources[s].topic;
        reader.add(topic, partitions)?;
        sources.insert(topic.clone(), (s, decode::Decoder::new()));
    }
    let mut share = Share::default();
    while !reader.all_caught_up() {
        let read = reader.poll(4096, Duration::ZERO, |origin, key, value, _| {
            share.bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
            let (s, decoder) = sources.get_mut(&origin.topic).expect("a source per topic");
            match decoder.decode(&plan.sources[*s], key, value) {
                Ok(change) => {
                    std::hint::black_box(change);
                }
                Err(_) => share.errors += 1,
            }
            share.records += 1;
            Ok(())
        })?;
        if read == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(share)
}
