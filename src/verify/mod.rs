//! `denorm verify`: replays a product's input topics from the beginning, computes the expected
//! documents with the independent [`reference`] evaluator, reads the output topic to its end
//! (last value per key, tombstones as absent) and reports what matches and what does not.

pub mod reference;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde_json::Value as Json;

use crate::decode::{self, Change};
use crate::kafka::client::KafkaOptions;
use crate::kafka::source::{Origin, TopicReader};
use crate::plan::{Plan, ProductPlan};
use reference::Table;

/// Reads every partition of `topic` from the beginning to its current end.
pub fn read_topic(
    kafka: &KafkaOptions,
    topic: &str,
    mut record: impl FnMut(Origin, Option<&[u8]>, Option<&[u8]>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let counts = kafka.partition_counts(&[topic], Duration::from_secs(10))?;
    let partitions: Vec<i32> = (0..counts[0]).collect();
    let mut reader = TopicReader::open(kafka, topic, partitions, 0)?;
    let mut read = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !reader.caught_up() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic} to its end took more than 10 minutes"
        );
        read += reader.poll(
            10_000,
            Duration::from_millis(100),
            |origin, key, value, _| record(origin, key, value),
        )? as u64;
    }
    Ok(read)
}

/// The final state of every source of the plan, replayed from its topic with upsert semantics.
pub fn replay_sources(
    kafka: &KafkaOptions,
    plan: &Plan,
) -> anyhow::Result<(Vec<Table>, u64, Vec<String>)> {
    let mut tables = Vec::new();
    let mut records = 0;
    let mut errors = Vec::new();
    for source in &plan.sources {
        let mut table = Table::new();
        let mut decoder = decode::Decoder::new();
        records += read_topic(kafka, &source.topic, |origin, key, value| {
            match decoder.decode(source, key, value) {
                Ok(Change::Upsert { key, row }) => {
                    table.insert(key.values().into(), row.values().into());
                }
                Ok(Change::Delete { key }) => {
                    table.remove(&key.values().into());
                }
                Ok(Change::Truncate) => table.clear(),
                Err(e) => errors.push(format!("{origin}: {e}")),
            }
            Ok(())
        })?;
        tables.push(table);
    }
    Ok((tables, records, errors))
}

/// The documents of an output topic: last value per key, tombstones removing the key.
pub fn read_output(kafka: &KafkaOptions, topic: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut docs = BTreeMap::new();
    let mut problems = Vec::new();
    read_topic(kafka, topic, |origin, key, value| {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            problems.push(format!("{origin}: record without a UTF-8 key"));
            return Ok(());
        };
        match value {
            Some(v) if !v.is_empty() => {
                docs.insert(key.to_owned(), String::from_utf8_lossy(v).into_owned());
            }
            _ => {
                docs.remove(key);
            }
        }
        Ok(())
    })?;
    anyhow::ensure!(
        problems.is_empty(),
        "the output topic {topic} holds records denorm never writes: {}",
        problems.join("; ")
    );
    Ok(docs)
}

/// How an output topic compares with the expected documents.
#[derive(Debug, Default)]
pub struct Comparison {
    pub product: String,
    pub expected: usize,
    pub found: usize,
    pub matching: usize,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// Key and the field-by-field differences.
    pub different: Vec<(String, Vec<String>)>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.different.is_empty()
    }
}

/// Compares expected and found documents (exact bytes; differences explained field by field).
pub fn compare(
    product: &str,
    expected: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> Comparison {
    let mut c = Comparison {
        product: product.to_owned(),
        expected: expected.len(),
        found: found.len(),
        ..Default::default()
    };
    let keys: BTreeSet<&String> = expected.keys().chain(found.keys()).collect();
    for key in keys {
        match (expected.get(key), found.get(key)) {
            (Some(e), Some(f)) if e == f => c.matching += 1,
            (Some(e), Some(f)) => c.different.push((key.clone(), diff_json(e, f))),
            (Some(_), None) => c.missing.push(key.clone()),
            (None, Some(_)) => c.unexpected.push(key.clone()),
            (None, None) => {}
        }
    }
    c
}

/// Field paths where two JSON documents differ, e.g. `.pull_requests[2].status: expected "open", found "merged"`.
pub fn diff_json(expected: &str, found: &str) -> Vec<String> {
    let (Ok(e), Ok(f)) = (
        serde_json::from_str::<Json>(expected),
        serde_json::from_str::<Json>(found),
    ) else {
        return vec![format!("expected {expected}, found {found}")];
    };
    let mut out = Vec::new();
    diff_values("", &e, &f, &mut out);
    if out.is_empty() {
        out.push("same JSON value, different bytes (field order or number format)".into());
    }
    out
}

fn diff_values(path: &str, e: &Json, f: &Json, out: &mut Vec<String>) {
    match (e, f) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff_values(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: expected {va}, field missing")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: unexpected field, found {}", b[k]));
            }
        }
        (Json::Array(a), Json::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: expected {} items, found {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (a, b) if a != b => out.push(format!(
            "{}: expected {a}, found {b}",
            if path.is_empty() { "." } else { path }
        )),
        _ => {}
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} — expected {}, found {}, matching {}, missing {}, unexpected {}, different {}",
            self.product,
            if self.ok() { "OK" } else { "MISMATCH" },
            self.expected,
            self.found,
            self.matching,
            self.missing.len(),
            self.unexpected.len(),
            self.different.len()
        )?;
        for key in self.missing.iter().take(5) {
            writeln!(f, "  missing    {key}")?;
        }
        for key in self.unexpected.iter().take(5) {
            writeln!(f, "  unexpected {key}")?;
        }
        for (key, diffs) in self.different.iter().take(5) {
            writeln!(f, "  different  {key}")?;
            for d in diffs.iter().take(8) {
                writeln!(f, "    {d}")?;
            }
        }
        Ok(())
    }
}

/// Verifies every product of `plan` against its output topic.
pub fn verify(
    kafka: &KafkaOptions,
    plan: &Plan,
) -> anyhow::Result<(Vec<Comparison>, u64, Vec<String>)> {
    let (tables, records, decode_errors) = replay_sources(kafka, plan)?;
    let mut results = Vec::new();
    for product in &plan.products {
        results.push(verify_product(kafka, plan, product, &tables)?);
    }
    Ok((results, records, decode_errors))
}

fn verify_product(
    kafka: &KafkaOptions,
    plan: &Plan,
    product: &ProductPlan,
    tables: &[Table],
) -> anyhow::Result<Comparison> {
    let expected = reference::expected_documents(plan, product, tables);
    let found = read_output(kafka, &product.output_topic)?;
    Ok(compare(&product.name, &expected, &found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_name_the_field() {
        let d = diff_json(
            r#"{"a":1,"l":[{"s":"open"}]}"#,
            r#"{"a":1,"l":[{"s":"merged"}],"x":2}"#,
        );
        assert_eq!(
            d,
            vec![
                r#".l[0].s: expected "open", found "merged""#.to_string(),
                ".x: unexpected field, found 2".to_string()
            ]
        );
        let e: BTreeMap<String, String> =
            [("k1".into(), "{}".into()), ("k2".into(), "1".into())].into();
        let f: BTreeMap<String, String> =
            [("k2".into(), "2".into()), ("k3".into(), "{}".into())].into();
        let c = compare("p", &e, &f);
        assert!(!c.ok());
        assert_eq!(
            (
                c.missing.len(),
                c.unexpected.len(),
                c.different.len(),
                c.matching
            ),
            (1, 1, 1, 0)
        );
        assert!(compare("p", &e, &e).ok());
    }
}
