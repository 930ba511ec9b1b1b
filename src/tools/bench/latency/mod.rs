//! Change-to-output latency of a change stretch, for every change: each input record of the
//! window (inserts, updates, deletes, moves between parents, key changes as the delete and the
//! insert they are written as) is replayed in memory ([`impact`]: denorm-verify's decoder and
//! evaluation, independent of the engine) to find the documents it must change — the root keys
//! whose document differs after it from before it — and the document each is left as. Its
//! latency is the time from its input record's Kafka timestamp (the generator's producer's
//! CreateTime) until the last of those documents shows up in the output topic with content
//! reflecting it or a later change ([`timeline`]); a change whose documents never all show up is
//! counted as never seen.
//!
//! **When an output record shows up.** With [`Timing::Tail`], a consumer tails the output topic
//! while the stretch runs and notes when each record reaches it ([`tail`]): the time a reader of
//! the topic sees the document, so delivery to the broker, the broker, and the consumer's fetch
//! are in it. (The broker of the benchmarks, tansu 0.6.0, does not stamp LogAppendTime — its
//! records keep the producer's CreateTime whatever the topic's `message.timestamp.type` — so the
//! record's own timestamp cannot time it at the broker.) With [`Timing::RecordTimestamp`] the
//! record's timestamp is used (CreateTime: when the engine's sink handed it to its producer).
//!
//! **Throughput.** Input rate: window input records over the span of their timestamps.
//! Sustained rate: window input records over the time from the first window input to the last
//! window output (or the last input, if later). Drain: last output minus last input.

pub mod impact;
pub mod tail;
pub mod timeline;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::kafka::client::KafkaOptions;
use crate::kafka::source::TopicReader;
use denorm_verify::product::Product;
use impact::{json_digest, Impact, ABSENT};
use timeline::{by_kind, Percentiles, Timeline};

/// Changes that must change more documents than this are fan-out changes.
pub const SMALL_CHANGE_DOCUMENTS: u32 = 10;

/// How output records are timed.
pub enum Timing<'a> {
    /// Tail the output topic while the stretch runs: `ready` is created once the tail has read
    /// what was there before; the stretch ends when `stop` exists. The window's inputs are those
    /// with a timestamp from `ready` to `stop`.
    Tail { ready: &'a Path, stop: &'a Path },
    /// The output records' own timestamps; the window is `window` (ms since the epoch) for
    /// inputs and outputs alike.
    RecordTimestamp { window: Range<i64> },
}

/// What a change stretch measured.
///
/// `outputs_matching_no_state` counts output records whose document is no state the inputs,
/// replayed in timestamp order, give their key: a job reads each topic on its own and groups
/// what it read into times, so a document it writes can show the changes of one topic up to some
/// point and those of another up to another (a cut across topics that the timestamp order does
/// not pass through); such a record shows no change, and the change is seen when a later record
/// shows its state or a later one.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LatencyReport {
    /// How output records were timed.
    pub output_time: String,
    /// The window's output records by Kafka timestamp type (`create_time`, `log_append_time`).
    pub output_timestamp_types: BTreeMap<String, u64>,
    pub window_input_records: u64,
    pub window_output_records: u64,
    pub input_first_ms: Option<i64>,
    pub input_last_ms: Option<i64>,
    pub output_last_ms: Option<i64>,
    /// Window input records per second of producing.
    pub input_rate: f64,
    /// Window input records per second from the first input to the last output.
    pub sustained_rate: f64,
    pub drain_ms: Option<i64>,
    /// Input records by what they did to their table (`insert`, `update`, `move`, `delete`,
    /// `truncate`, `no_op`).
    pub records_by_kind: BTreeMap<String, u64>,
    /// Changes that must change at least one document (the others change none: a duplicate, a
    /// tombstone after its delete, a column no document shows, a row no document nests).
    pub changes_with_documents: u64,
    /// Documents written (output records of the window) per window input record.
    pub documents_written_per_change: f64,
    /// Documents a change must change: mean and most over the changes with documents.
    pub documents_per_change_mean: f64,
    pub documents_per_change_max: u64,
    /// Every change with documents; those of at most [`SMALL_CHANGE_DOCUMENTS`] documents; the
    /// others (fan-out).
    pub all: Percentiles,
    pub small: Percentiles,
    pub fan_out: Percentiles,
    pub by_kind: BTreeMap<String, Percentiles>,
    /// The change with the most documents: how many, and its latency (None: never seen).
    pub largest_change_documents: u64,
    pub largest_change_ms: Option<f64>,
    /// Changes with documents never all seen (the same as `all.never_seen`).
    pub never_seen: u64,
    /// `all`'s percentiles, for the report's tables and plots.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Window output records whose content is no state the inputs give their key, and records
    /// of keys no change of the window touched.
    pub outputs_matching_no_state: u64,
    pub outputs_of_unchanged_keys: u64,
    /// Window output records followed by another record of the same key seen at the same
    /// millisecond (the engine wrote several versions of the document at once).
    pub outputs_superseded_at_once: u64,
    /// With the tail: arrival at the tail minus the record's timestamp (the engine's hand-over
    /// to its producer), over the window's outputs.
    pub output_hop: Option<Percentiles>,
    /// Input records that could not be decoded (skipped).
    pub undecodable: u64,
    /// With the tail: output records of the stretch the tail never received (a later offset of
    /// their partition reached it, this one did not), timed by the arrival of the next record of
    /// their partition the tail did see: the broker had a later record then.
    pub tail_missed: u64,
    /// Seconds the analysis took after the stretch.
    pub analysis_seconds: f64,
}

/// Every record of `topics` (all partitions, from the beginning to the current end), as
/// `(topic index, partition, offset, timestamp ms, key, value)`, each partition in offset order
/// (the topics are read at once, their records interleaved).
fn read_records(
    kafka: &KafkaOptions,
    topics: &[&str],
    mut record: impl FnMut(
        usize,
        i32,
        i64,
        Option<i64>,
        Option<&[u8]>,
        Option<&[u8]>,
    ) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let counts = kafka.partition_counts(topics, Duration::from_secs(10))?;
    let mut readers = topics
        .iter()
        .zip(&counts)
        .map(|(topic, &n)| TopicReader::open(kafka, topic, (0..n).collect(), 0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while readers.iter().any(|r| !r.caught_up()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topics:?} to their end took more than an hour"
        );
        let mut read = 0;
        for (t, reader) in readers.iter_mut().enumerate() {
            if !reader.caught_up() {
                read += reader.poll(10_000, Duration::ZERO, |origin, key, value, ts| {
                    record(t, origin.partition, origin.offset, ts, key, value)
                })?;
            }
        }
        if read == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

/// The canonical JSON of an output key, or None if it is not JSON.
fn output_key(key: Option<&[u8]>) -> Option<String> {
    denorm_verify::json::parse(key?).ok().map(|k| k.canonical())
}

/// The digest of an output value ([`ABSENT`] for a tombstone); Err if it is not JSON.
fn output_digest(value: Option<&[u8]>) -> anyhow::Result<u64> {
    match value {
        None => Ok(ABSENT),
        Some(v) => denorm_verify::json::parse(v)
            .map(|json| json_digest(&json))
            .map_err(|e| anyhow::anyhow!("an output record is not JSON: {e}")),
    }
}

/// One measured change: its input timestamp, kind, documents and latency (None: never seen).
pub type Sample = (i64, String, u32, Option<i64>);

/// Measures a change stretch of the product in `product_file` (one product).
pub fn run(
    kafka: &KafkaOptions,
    product_file: &Path,
    timing: Timing,
    samples: Option<&mut Vec<Sample>>,
) -> anyhow::Result<LatencyReport> {
    let product = denorm_verify::read_product(product_file)?;
    let mut report = LatencyReport::default();
    // The tail runs during the stretch; everything else after it.
    let (window, receipts) = match timing {
        Timing::Tail { ready, stop } => {
            let receipts = tail::follow(kafka, &product.output_topic, ready, stop)?;
            report.output_time = "arrival at a consumer tailing the output topic".into();
            (receipts.ready_ms..receipts.stop_ms, Some(receipts))
        }
        Timing::RecordTimestamp { window } => {
            report.output_time = "the output record's Kafka timestamp".into();
            (window, None)
        }
    };
    let started = Instant::now();
    let mut impact = Impact::new(&product);
    let mut timeline = Timeline::default();
    measure_inputs(
        kafka,
        &product,
        &mut impact,
        &window,
        &mut timeline,
        &mut report,
    )?;

    measure_outputs(
        kafka,
        &product,
        receipts.as_ref(),
        &window,
        &mut timeline,
        &mut report,
    )?;
    timeline.settle();
    summarize(&timeline, &mut report);
    if let Some(samples) = samples {
        *samples = timeline
            .changes
            .iter()
            .map(|c| {
                let kind = serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (c.ts, kind, c.documents, c.latency_ms())
            })
            .collect();
    }
    report.analysis_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads the output topic: records before the window are the documents as the topic held them,
/// the window's records are timed (by the tail's receipts, or their own timestamps) and put on
/// the timeline.
fn measure_outputs(
    kafka: &KafkaOptions,
    product: &Product,
    receipts: Option<&tail::Receipts>,
    window: &Range<i64>,
    timeline: &mut Timeline,
    report: &mut LatencyReport,
) -> anyhow::Result<()> {
    let mut hops = Vec::new();
    // Built at the first output record the tail missed: (partition, offset) → arrival.
    let mut seen: Option<std::collections::BTreeMap<(i32, i64), i64>> = None;
    read_records(
        kafka,
        &[product.output_topic.as_str()],
        |_, partition, offset, ts, key, value| {
            let place = match receipts {
                Some(r) => {
                    let start = r.start.get(&partition).copied().unwrap_or(0);
                    let end = r.end.get(&partition).copied().unwrap_or(0);
                    if offset < start {
                        None
                    } else if offset < end {
                        match r.times.get(&(partition, offset)).copied() {
                            Some((arrived, stamped)) => {
                                if let Some(stamped) = stamped {
                                    hops.push(arrived - stamped);
                                }
                                Some(arrived)
                            }
                            None => {
                                report.tail_missed += 1;
                                let seen = seen.get_or_insert_with(|| r.arrivals_by_offset());
                                let next = seen
                                    .range((partition, offset)..(partition, i64::MAX))
                                    .next();
                                let arrived = next.map(|(_, &t)| t).ok_or_else(|| {
                                    anyhow::anyhow!("the tail did not see partition {partition} offset {offset} of the output, nor any later one")
                                })?;
                                Some(arrived)
                            }
                        }
                    } else {
                        return Ok(());
                    }
                }
                None => match ts {
                    Some(t) if t < window.start => None,
                    Some(t) if t < window.end => Some(t),
                    Some(_) => return Ok(()),
                    None => anyhow::bail!("an output record without a timestamp"),
                },
            };
            let key =
                output_key(key).ok_or_else(|| anyhow::anyhow!("an output key is not JSON"))?;
            match place {
                None => {
                    if timeline.tracks(&key) {
                        timeline.before_window(&key, output_digest(value)?);
                    }
                }
                Some(time) => {
                    report.output_last_ms = report.output_last_ms.max(Some(time));
                    let digest = if timeline.tracks(&key) {
                        output_digest(value)?
                    } else {
                        ABSENT
                    };
                    timeline.output(&key, time, digest);
                }
            }
            Ok(())
        },
    )?;
    if let Some(r) = receipts {
        report.output_timestamp_types = r.timestamp_types.clone();
        report.output_hop = Some(hop_percentiles(&mut hops));
        if report.tail_missed > 0 {
            tracing::warn!(
                records = report.tail_missed,
                "the tail did not receive some output records of the stretch (later offsets of their partitions it did): timed by the next record it saw"
            );
        }
    }
    Ok(())
}

/// Reads the source topics: records before the window build the tables, the window's records
/// are the changes, replayed in timestamp order (records of one partition in offset order).
fn measure_inputs(
    kafka: &KafkaOptions,
    product: &Product,
    impact: &mut Impact,
    window: &Range<i64>,
    timeline: &mut Timeline,
    report: &mut LatencyReport,
) -> anyhow::Result<()> {
    let mut topics: Vec<&str> = product.sources.iter().map(|s| s.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    type Raw = (i64, usize, Option<Vec<u8>>, Option<Vec<u8>>);
    let mut inputs: Vec<Raw> = Vec::new();
    read_records(kafka, &topics, |t, _, _, ts, key, value| {
        let topic = topics[t];
        let ts = ts.ok_or_else(|| anyhow::anyhow!("{topic}: a record without a timestamp"))?;
        if ts >= window.end {
            return Ok(());
        }
        if ts >= window.start {
            inputs.push((ts, t, key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec)));
            return Ok(());
        }
        // Before the window: the tables as they stood (each key's records in order; the topics'
        // interleaving does not change where they end).
        match impact.decode(topic, key, value) {
            Ok(changes) => changes.into_iter().for_each(|(s, c)| impact.apply(s, c)),
            Err(_) => report.undecodable += 1,
        }
        Ok(())
    })?;
    // Stable: records of one partition keep their order at equal timestamps.
    inputs.sort_by_key(|r| r.0);
    report.window_input_records = inputs.len() as u64;
    report.input_first_ms = inputs.first().map(|r| r.0);
    report.input_last_ms = inputs.last().map(|r| r.0);
    for (ts, t, key, value) in inputs {
        let changes = match impact.decode(topics[t], key.as_deref(), value.as_deref()) {
            Ok(changes) => changes,
            Err(_) => {
                report.undecodable += 1;
                continue;
            }
        };
        for (s, change) in changes {
            let effect = impact.change(s, change);
            *report
                .records_by_kind
                .entry(kind_name(effect.kind))
                .or_default() += 1;
            timeline.change(ts, &effect);
        }
    }
    Ok(())
}

fn kind_name(kind: impact::Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn hop_percentiles(hops: &mut [i64]) -> Percentiles {
    hops.sort_unstable();
    let n = hops.len();
    let at = |q: f64| -> Option<f64> {
        (n > 0).then(|| hops[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64)
    };
    Percentiles {
        changes: n as u64,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        max_seen_ms: at(1.0),
        mean_seen_ms: (n > 0).then(|| hops.iter().sum::<i64>() as f64 / n as f64),
        ..Percentiles::default()
    }
}

fn summarize(timeline: &Timeline, report: &mut LatencyReport) {
    let with: Vec<&timeline::ChangeRecord> = timeline
        .changes
        .iter()
        .filter(|c| c.documents > 0)
        .collect();
    report.window_output_records = timeline.window_outputs;
    report.changes_with_documents = with.len() as u64;
    report.all = Percentiles::of(with.iter().copied());
    report.small = Percentiles::of(
        with.iter()
            .copied()
            .filter(|c| c.documents <= SMALL_CHANGE_DOCUMENTS),
    );
    report.fan_out = Percentiles::of(
        with.iter()
            .copied()
            .filter(|c| c.documents > SMALL_CHANGE_DOCUMENTS),
    );
    report.by_kind = by_kind(&timeline.changes);
    report.never_seen = report.all.never_seen;
    report.p50_ms = report.all.p50_ms;
    report.p90_ms = report.all.p90_ms;
    report.p99_ms = report.all.p99_ms;
    report.max_ms = report.all.max_ms;
    report.documents_per_change_mean = if with.is_empty() {
        0.0
    } else {
        report.all.documents as f64 / with.len() as f64
    };
    if let Some(largest) = with
        .iter()
        .max_by_key(|c| (c.documents, std::cmp::Reverse(c.ts)))
    {
        report.documents_per_change_max = u64::from(largest.documents);
        report.largest_change_documents = u64::from(largest.documents);
        report.largest_change_ms = largest.latency_ms().map(|ms| ms as f64);
    }
    report.documents_written_per_change =
        timeline.window_outputs as f64 / (report.window_input_records.max(1)) as f64;
    report.outputs_matching_no_state = timeline.outputs_matching_no_state;
    report.outputs_of_unchanged_keys = timeline.outputs_of_unchanged_keys;
    report.outputs_superseded_at_once = timeline.outputs_superseded_at_once;
    if let (Some(first), Some(last)) = (report.input_first_ms, report.input_last_ms) {
        let n = report.window_input_records as f64;
        report.input_rate = n / ((last - first).max(1) as f64 / 1000.0);
        let end = report.output_last_ms.unwrap_or(last).max(last);
        report.sustained_rate = n / ((end - first).max(1) as f64 / 1000.0);
        report.drain_ms = report.output_last_ms.map(|o| o - last);
    }
}
