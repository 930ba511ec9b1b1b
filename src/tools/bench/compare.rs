//! Documents from another system (the PostgreSQL baseline) against an output topic, by content:
//! each document parsed as JSON and compared in denorm-verify's canonical form (fields in order,
//! lists in order, strings exactly, numbers by value).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use denorm_verify::json::{self, Json};

/// How the two sets of documents compare.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompareReport {
    pub topic: String,
    /// Documents in the file, and in the topic.
    pub reference: usize,
    pub found: usize,
    pub matching: usize,
    /// Keys the file has and the topic lacks, and the other way round.
    pub missing: usize,
    pub unexpected: usize,
    pub different: usize,
    /// A few differences, for the log.
    pub examples: Vec<String>,
}

impl CompareReport {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.unexpected == 0 && self.different == 0
    }
}

/// Where two texts first differ, with some context of each.
fn first_difference(a: &str, b: &str) -> String {
    let at = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let around = |s: &str| {
        let start = s.floor_char_boundary(at.saturating_sub(60));
        let end = s.ceil_char_boundary((at + 60).min(s.len()));
        s[start..end].to_owned()
    };
    format!(
        "at byte {at}: reference …{}… found …{}…",
        around(a),
        around(b)
    )
}

/// Compares the documents of `file` (JSON lines `{"key": {…}, "document": {…}}`) with the
/// output topic `topic` as read to its end (the last value of each key).
pub fn run(
    settings: &denorm_verify::Settings,
    topic: &str,
    file: &Path,
) -> anyhow::Result<CompareReport> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut reference: BTreeMap<String, String> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let place = || format!("{} line {}", file.display(), n + 1);
        let json =
            json::parse_str(line).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", place()))?;
        let (Some(key), Some(doc)) = (json.get("key"), json.get("document")) else {
            anyhow::bail!("{}: no \"key\" and \"document\"", place());
        };
        reference.insert(key.canonical(), doc.canonical());
    }
    let found = denorm_verify::kafka::read_output(settings, topic)?;
    let canonical = |text: &str| -> String {
        json::parse_str(text).map_or_else(
            |e| format!("(not JSON: {e}) {text}"),
            |j: Json| j.canonical(),
        )
    };
    let found: BTreeMap<String, String> = found
        .into_iter()
        .map(|(k, v)| (canonical(&k), canonical(&v)))
        .collect();
    let mut report = CompareReport {
        topic: topic.to_owned(),
        reference: reference.len(),
        found: found.len(),
        ..CompareReport::default()
    };
    for (key, doc) in &reference {
        match found.get(key) {
            None => {
                report.missing += 1;
                if report.examples.len() < 5 {
                    report.examples.push(format!("missing {key}"));
                }
            }
            Some(f) if f == doc => report.matching += 1,
            Some(f) => {
                report.different += 1;
                if report.examples.len() < 5 {
                    report
                        .examples
                        .push(format!("different {key}: {}", first_difference(doc, f)));
                }
            }
        }
    }
    for key in found.keys().filter(|k| !reference.contains_key(*k)) {
        report.unexpected += 1;
        if report.examples.len() < 5 {
            report.examples.push(format!("unexpected {key}"));
        }
    }
    Ok(report)
}
