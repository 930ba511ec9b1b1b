//! Change-to-output latency and throughput of a change run, from Kafka timestamps (CreateTime:
//! set by the producer when the generator, or the engine's sink, hands it a record; one machine,
//! one clock). Reads every source topic and every output topic back after the run.
//!
//! **Throughput.** The change window is every input record with a timestamp in the window
//! (the records of one change run; outputs after the window are not read). Input rate: window records over the span of their timestamps. Sustained rate:
//! window records over the time from the first window input to the last window output (or the
//! last input, if later); when the engine keeps up the two are equal. Drain: last output minus
//! last input.
//!
//! **Latency, by tracing values.** An output document does not say which input changes made it,
//! so latency is measured on the changes whose effect can be recognised without doubt: an update
//! (same primary key) that replaces a string `u` by a string `v` such that, when it is produced,
//! `u` is in some current output document and `v` is in none. Its effect is the first output
//! record, at or after the update, that contains `v`; its latency is that record's timestamp minus
//! the update's. The generator's non-link strings are unique (`<column>_<n>`), so `v` can only
//! come from this update, and `u` being shown means the row is part of some document, so the
//! update shows up at once (rather than when a later change connects the row). Inserts, deletes
//! and key changes are not traced; updates of columns no document shows and updates superseded
//! before they were written (never seen) are counted but have no latency. For a fan-out update
//! the first document written counts (a sink writes one time's documents together).
//!
//! "Current output documents" are replayed from the output topics in timestamp order, merged
//! with the inputs (at equal milliseconds, inputs first).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use crate::decode::{self, Change, Table};
use crate::kafka::client::KafkaOptions;
use crate::kafka::source::TopicReader;
use crate::plan::Plan;
use crate::value::Value;

/// What a change run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LatencyReport {
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
    /// Updates whose latency was measured.
    pub traced: u64,
    /// Updates that qualified but whose new value never reached an output document.
    pub never_seen: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Input records that could not be decoded (skipped).
    pub undecodable: u64,
}

fn hash_str(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Every record of `topic` (all partitions, from the beginning to the current end), as
/// `(timestamp ms, key, value)` in per-partition offset order.
fn read_records(
    kafka: &KafkaOptions,
    topic: &str,
    mut record: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> anyhow::Result<()> {
    let counts = kafka.partition_counts(&[topic], Duration::from_secs(10))?;
    let mut reader = TopicReader::open(kafka, topic, (0..counts[0]).collect(), 0)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(1800);
    while !reader.caught_up() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic} to its end took more than 30 minutes"
        );
        reader.poll(
            10_000,
            Duration::from_millis(100),
            |origin, key, value, ts| {
                let ts =
                    ts.ok_or_else(|| anyhow::anyhow!("{origin}: a record without a timestamp"))?;
                record(ts, key, value);
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// One window input: `(timestamp, source, change)`.
type Input = (i64, usize, Change);
/// One output record: `(timestamp, topic index, key, string hashes of the document)`.
type Output = (i64, usize, String, Option<Vec<u64>>);

fn strings(json: &Json, out: &mut Vec<u64>) {
    match json {
        Json::String(s) => out.push(hash_str(s)),
        Json::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Json::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Measures the change window `window` (milliseconds since the epoch) of the plan's topics.
/// With `samples`, also returns every traced update as `(update timestamp, latency ms)`.
pub fn run(
    kafka: &KafkaOptions,
    plan: &Plan,
    window: Range<i64>,
    samples: Option<&mut Vec<(i64, i64)>>,
) -> anyhow::Result<LatencyReport> {
    let since_ms = window.start;
    let mut report = LatencyReport::default();
    // Sources: the state before the window, and the window's changes.
    let mut state: Vec<Table> = vec![Table::new(); plan.sources.len()];
    let mut inputs: Vec<Input> = Vec::new();
    for (s, source) in plan.sources.iter().enumerate() {
        let table = &mut state[s];
        let mut decoder = decode::Decoder::new();
        read_records(kafka, &source.topic, |ts, key, value| {
            let Ok(change) = decoder.decode(source, key, value) else {
                report.undecodable += 1;
                return;
            };
            if ts >= window.end {
                return;
            }
            if ts >= since_ms {
                inputs.push((ts, s, change));
                return;
            }
            table.apply(change);
        })?;
    }
    inputs.sort_by_key(|(ts, _, _)| *ts);
    let mut outputs: Vec<Output> = Vec::new();
    let mut bad_outputs = 0u64;
    for (t, product) in plan.products.iter().enumerate() {
        read_records(kafka, &product.output_topic, |ts, key, value| {
            let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            let doc = match value {
                Some(v) if !v.is_empty() => match serde_json::from_slice::<Json>(v) {
                    Ok(json) => {
                        let mut hashes = Vec::new();
                        strings(&json, &mut hashes);
                        Some(hashes)
                    }
                    Err(_) => {
                        bad_outputs += 1;
                        return;
                    }
                },
                _ => None,
            };
            if ts < window.end {
                outputs.push((ts, t, key, doc));
            }
        })?;
    }
    anyhow::ensure!(
        bad_outputs == 0,
        "{bad_outputs} output records are not JSON documents"
    );
    outputs.sort_by_key(|(ts, _, _, _)| *ts);

    report.window_input_records = inputs.len() as u64;
    report.input_first_ms = inputs.first().map(|i| i.0);
    report.input_last_ms = inputs.last().map(|i| i.0);

    // Replay both in timestamp order (inputs first at equal times).
    let mut current: HashMap<(usize, String), Vec<u64>> = HashMap::new();
    let mut shown: HashMap<u64, u32> = HashMap::new();
    let mut pending: HashMap<u64, i64> = HashMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut traced: Vec<(i64, i64)> = Vec::new();
    let mut outputs = outputs.into_iter().peekable();
    let mut inputs = inputs.into_iter().peekable();
    loop {
        let input_next = match (inputs.peek(), outputs.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(i), Some(o)) => i.0 <= o.0,
        };
        if input_next {
            let (ts, s, change) = inputs.next().expect("peeked");
            let new = match &change {
                Change::Upsert { row, .. } => Some(row.clone()),
                _ => None,
            };
            if let (Some(old), Some(new)) = (state[s].apply(change), new) {
                if let Some(v) = traceable(&old.values(), &new.values(), &shown, &pending) {
                    pending.insert(v, ts);
                }
            }
        } else {
            let (ts, t, key, doc) = outputs.next().expect("peeked");
            if ts >= since_ms {
                report.window_output_records += 1;
                report.output_last_ms = Some(ts);
            }
            if let Some(old) = current.remove(&(t, key.clone())) {
                for h in old {
                    if let Some(n) = shown.get_mut(&h) {
                        *n -= 1;
                        if *n == 0 {
                            shown.remove(&h);
                        }
                    }
                }
            }
            if let Some(doc) = doc {
                for &h in &doc {
                    *shown.entry(h).or_default() += 1;
                    if let Some(at) = pending.remove(&h) {
                        latencies.push((ts - at) as f64);
                        traced.push((at, ts - at));
                    }
                }
                current.insert((t, key), doc);
            }
        }
    }
    report.traced = latencies.len() as u64;
    report.never_seen = pending.len() as u64;
    if let (Some(first), Some(last)) = (report.input_first_ms, report.input_last_ms) {
        let n = report.window_input_records as f64;
        report.input_rate = n / ((last - first).max(1) as f64 / 1000.0);
        let end = report.output_last_ms.unwrap_or(last).max(last);
        report.sustained_rate = n / ((end - first).max(1) as f64 / 1000.0);
        report.drain_ms = report.output_last_ms.map(|o| o - last);
    }
    if let Some(samples) = samples {
        traced.sort_unstable();
        *samples = traced;
    }
    latencies.sort_by(f64::total_cmp);
    report.p50_ms = super::quantile(&latencies, 0.5);
    report.p90_ms = super::quantile(&latencies, 0.9);
    report.p99_ms = super::quantile(&latencies, 0.99);
    report.max_ms = latencies.last().copied();
    report.mean_ms =
        (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
    Ok(report)
}

/// The new string of an update that can be traced (see the module doc): the first column whose
/// string changes from one some document shows to one no document shows or awaits.
fn traceable(
    old: &[Value],
    new: &[Value],
    shown: &HashMap<u64, u32>,
    pending: &HashMap<u64, i64>,
) -> Option<u64> {
    old.iter().zip(new.iter()).find_map(|(a, b)| match (a, b) {
        (Value::Str(a), Value::Str(b)) if a != b => {
            let (u, v) = (hash_str(a), hash_str(b));
            (shown.contains_key(&u) && !shown.contains_key(&v) && !pending.contains_key(&v))
                .then_some(v)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_only_a_shown_string_replaced_by_a_new_one() {
        let row = |a: &str, b: i64| vec![Value::str(a), Value::Int(b)];
        let mut shown = HashMap::new();
        shown.insert(hash_str("title_1"), 1);
        shown.insert(hash_str("title_3"), 1);
        let pending = HashMap::new();
        // A shown value replaced by a new one: traced.
        assert_eq!(
            traceable(&row("title_1", 1), &row("title_2", 1), &shown, &pending),
            Some(hash_str("title_2"))
        );
        // Not shown before: the row may be in no document.
        assert_eq!(
            traceable(&row("title_9", 1), &row("title_2", 1), &shown, &pending),
            None
        );
        // The new value is shown already: its appearance would prove nothing.
        assert_eq!(
            traceable(&row("title_1", 1), &row("title_3", 1), &shown, &pending),
            None
        );
        // Only other columns changed.
        assert_eq!(
            traceable(&row("title_1", 1), &row("title_1", 2), &shown, &pending),
            None
        );
    }
}
