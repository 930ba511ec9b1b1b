//! The judges: `denorm verify` (an independent evaluator of the product files), and the
//! comparison of an output topic with a prefix of its inputs.

use std::collections::HashMap;
use std::path::Path;

use super::process::output;
use super::product::Product;
use super::topics::verify_settings;

/// Runs `denorm verify FILE --brokers B EXTRA…`; returns whether it passed and its report.
pub fn verify_with(file: &str, brokers: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["verify", file, "--brokers", brokers];
    args.extend(extra);
    output(&args)
}

/// Runs `denorm verify` and asserts a full match with every input record decoded (verify
/// fails on undecodable input anyway; the report must say so too, as a decoder that rejected a
/// whole source would otherwise pass where the engine dead-letters the same records). A failure
/// shows the report and `job_log`, the log of the job (or jobs) whose output is judged, so that
/// a failure seen once in CI can be diagnosed. Returns the report.
pub fn verify_clean(file: &str, brokers: &str, job_log: &str) -> String {
    let (ok, report) = verify_with(file, brokers, &[]);
    let clean = ok
        && report.contains("(0 undecodable)")
        && report.contains("missing 0, unexpected 0, different 0");
    assert!(
        clean,
        "verify {file} failed:\n{report}\n--- the job's log:\n{job_log}"
    );
    report
}

/// The `replayed N input records` of a verify report.
pub fn replayed(report: &str) -> u64 {
    let at = report
        .find("replayed ")
        .unwrap_or_else(|| panic!("no `replayed` in:\n{report}"))
        + "replayed ".len();
    report[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The `expected N` documents of product `name` in a verify report.
pub fn expected_documents(report: &str, name: &str) -> usize {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no line of {name} in:\n{report}"));
    let at = line.find("expected ").unwrap() + "expected ".len();
    line[at..].split(',').next().unwrap().parse().unwrap()
}

/// The `missing`, `unexpected` and `different` counts of product `name` in a verify report.
pub fn differences(report: &str, name: &str) -> [usize; 3] {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no line of {name} in:\n{report}"));
    ["missing ", "unexpected ", "different "].map(|what| {
        let at = line.find(what).unwrap() + what.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}

/// Runs `denorm verify` on a test product (with the broker of the test).
pub fn verify(product: &Product, brokers: &str) -> (bool, String) {
    verify_with(product.path(), brokers, &[])
}

/// Runs `denorm verify --allow-undecodable N`: the bad records a test wrote on purpose.
pub fn verify_allowing(product: &Product, brokers: &str, undecodable: usize) -> (bool, String) {
    let allowed = undecodable.to_string();
    verify_with(product.path(), brokers, &["--allow-undecodable", &allowed])
}

/// How the output topic compares with the documents the product should hold after the records
/// of each source partition before `positions` (verify's evaluator over a prefix of every
/// partition, given as records in memory).
pub fn compare_at(p: &Product, positions: &HashMap<(String, i32), i64>) -> denorm_verify::Run {
    compare_file_at(Path::new(p.path()), positions)
}

/// [`compare_at`] for any product file: its output topic against the records of its sources
/// before `positions`.
pub fn compare_file_at(file: &Path, positions: &HashMap<(String, i32), i64>) -> denorm_verify::Run {
    let plan = denorm::plan::load(file).unwrap();
    let settings = verify_settings();
    let mut inputs = Vec::new();
    for source in &plan.sources {
        denorm_verify::kafka::read_topic(&settings, &source.topic, |record| {
            let end = positions
                .get(&(record.topic.clone(), record.partition))
                .copied()
                .unwrap_or_else(|| panic!("no position for {}", record.place()));
            if record.offset < end {
                inputs.push(record);
            }
            Ok(())
        })
        .unwrap();
    }
    let mut outputs = Vec::new();
    denorm_verify::kafka::read_topic(&settings, &plan.products[0].output_topic, |record| {
        outputs.push(record);
        Ok(())
    })
    .unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    denorm_verify::verify_records(&text, &inputs, &outputs).unwrap()
}

/// The end (next offset) of every partition of `topics` that holds records.
pub fn ends(topics: &[&str]) -> HashMap<(String, i32), i64> {
    let settings = verify_settings();
    let mut ends = HashMap::new();
    for topic in topics {
        denorm_verify::kafka::read_topic(&settings, topic, |record| {
            let end = ends
                .entry((record.topic.clone(), record.partition))
                .or_insert(0);
            *end = (*end).max(record.offset + 1);
            Ok(())
        })
        .unwrap();
    }
    ends
}
