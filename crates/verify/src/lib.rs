//! denorm-verify: an independent judge of denorm's output. It replays a product's Debezium input
//! topics, computes the documents the product should hold, and compares them with the output
//! topic.
//!
//! **Independence.** This crate shares no code with the `denorm` engine and does not depend on
//! it: what the two have in common is the product file format and the conventions the README
//! documents (how Debezium records are read, how values are written, how lists are ordered). It
//! has its own reader of product files ([`product`]), its own Debezium decoder ([`decode`],
//! [`column`]), its own evaluation from the product file ([`eval`], [`value`]), its own JSON
//! reading and comparison of the output ([`json`], [`compare`]) and its own Kafka consumer
//! ([`kafka`]). A bug in the engine's decoder, plan, ordering, rendering, reader or writer is
//! therefore not repeated here, and shows as a difference; `tests/verify_catches.rs` breaks the
//! engine on purpose to show it.
//!
//! Simple and slow on purpose: every table is kept in memory, every document built from scratch.
//!
//! [`verify_records`] works on records in memory (no Kafka); [`verify_files`] reads the topics.

pub mod column;
pub mod compare;
pub mod decode;
pub mod eval;
pub mod json;
pub mod kafka;
pub mod product;
pub mod value;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use compare::Comparison;
pub use kafka::Settings;
pub use product::Product;

/// One Kafka record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// `topic T partition P offset O`.
    pub fn place(&self) -> String {
        format!(
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// What a verification found: the input records replayed, those that could not be decoded, and
/// one comparison per product.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// Input records read (each record of a topic once, however many products read it).
    pub replayed: u64,
    /// `place: why` of each input record that could not be decoded.
    pub undecodable: Vec<String>,
    pub comparisons: Vec<Comparison>,
}

impl Run {
    /// Every product matches, and at most `allow_undecodable` input records could not be decoded.
    pub fn ok(&self, allow_undecodable: usize) -> bool {
        self.undecodable.len() <= allow_undecodable && self.comparisons.iter().all(Comparison::ok)
    }

    /// The report `denorm verify` prints.
    pub fn report(&self, allow_undecodable: usize) -> String {
        let mut out = format!(
            "replayed {} input records ({} undecodable)\n",
            self.replayed,
            self.undecodable.len()
        );
        for e in self.undecodable.iter().take(allow_undecodable.max(5)) {
            let _ = writeln!(out, "  undecodable: {e}");
        }
        for c in &self.comparisons {
            let _ = write!(out, "{c}");
        }
        if self.undecodable.len() > allow_undecodable {
            let _ = writeln!(
                out,
                "FAILED: {} input records could not be decoded (--allow-undecodable allows {}): the documents were \
                 computed without them, so what they hold was not checked",
                self.undecodable.len(),
                allow_undecodable
            );
        }
        out
    }
}

/// Verifies one product (the text of its file) against records in memory: `inputs` of its
/// source topics and `outputs` of its output topic, each replayed in (partition, offset) order.
pub fn verify_records(
    product_file: &str,
    inputs: &[Record],
    outputs: &[Record],
) -> anyhow::Result<Run> {
    let product = Product::parse(product_file, "(given as text)")?;
    let mut replay = eval::Replay::new(&product);
    let mut run = Run::default();
    for record in in_order(inputs) {
        if replay.reads(&record.topic) {
            run.replayed += 1;
            if let Err(e) = replay.apply(
                &record.topic,
                record.key.as_deref(),
                record.value.as_deref(),
            ) {
                run.undecodable.push(format!("{}: {e}", record.place()));
            }
        }
    }
    let mut found = compare::Found::default();
    for record in in_order(outputs) {
        if record.topic == product.output_topic {
            found.apply(record);
        }
    }
    run.comparisons
        .push(compare::compare(&product.name, replay.documents(), found));
    Ok(run)
}

fn in_order(records: &[Record]) -> Vec<&Record> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    sorted
}

/// The product files of `paths`: files as given, folders as their `*.toml` files (by name),
/// each file once.
pub fn product_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read the folder {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    anyhow::ensure!(
        !files.is_empty(),
        "no product files (*.toml) in {}",
        show(paths)
    );
    Ok(files)
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a product file.
pub fn read_product(path: &Path) -> anyhow::Result<Product> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the product file {}", path.display()))?;
    Product::parse(&text, &path.display().to_string())
}

/// Verifies the products of `paths` (files and folders) against the brokers: each input topic is
/// read once for every product that reads it, then each product's output topic.
pub fn verify_files(paths: &[PathBuf], settings: &Settings) -> anyhow::Result<Run> {
    let products = product_files(paths)?
        .iter()
        .map(|path| read_product(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    kafka::wait_for_brokers(settings)?;
    let mut replays: Vec<eval::Replay> = products.iter().map(eval::Replay::new).collect();
    let mut topics: Vec<&str> = products
        .iter()
        .flat_map(|p| p.sources.iter().map(|s| s.topic.as_str()))
        .collect();
    topics.sort();
    topics.dedup();
    let mut run = Run::default();
    for topic in topics {
        // One error per record, the first product's.
        let mut undecodable: BTreeMap<(i32, i64), String> = BTreeMap::new();
        run.replayed += kafka::read_topic(settings, topic, |record| {
            for replay in replays.iter_mut().filter(|r| r.reads(topic)) {
                if let Err(e) = replay.apply(topic, record.key.as_deref(), record.value.as_deref())
                {
                    undecodable
                        .entry((record.partition, record.offset))
                        .or_insert_with(|| format!("{}: {e}", record.place()));
                }
            }
            Ok(())
        })
        .with_context(|| format!("reading the input topic {topic}"))?;
        run.undecodable.extend(undecodable.into_values());
    }
    for (product, replay) in products.iter().zip(&replays) {
        let mut found = compare::Found::default();
        kafka::read_topic(settings, &product.output_topic, |record| {
            found.apply(&record);
            Ok(())
        })
        .with_context(|| {
            format!(
                "reading the output topic {} of {}",
                product.output_topic, product.name
            )
        })?;
        run.comparisons
            .push(compare::compare(&product.name, replay.documents(), found));
    }
    Ok(run)
}

#[cfg(test)]
mod tests;
