//! The judges: `denorm verify` (an independent evaluator of the product files), and the
//! comparison of an output topic with a prefix of its inputs.

use std::collections::HashMap;

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
/// whole source would otherwise pass where the engine dead-letters the same records). Returns
/// the report.
pub fn verify_clean(file: &str, brokers: &str) -> String {
    let (ok, report) = verify_with(file, brokers, &[]);
    assert!(ok, "verify {file} failed:\n{report}");
    assert!(
        report.contains("(0 undecodable)"),
        "undecodable input records:\n{report}"
    );
    assert!(
        report.contains("missing 0, unexpected 0, different 0"),
        "{report}"
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
    let settings = verify_settings();
    let mut inputs = Vec::new();
    for source in &p.plan.sources {
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
    denorm_verify::kafka::read_topic(&settings, &p.output(), |record| {
        outputs.push(record);
        Ok(())
    })
    .unwrap();
    let text = std::fs::read_to_string(p.path()).unwrap();
    denorm_verify::verify_records(&text, &inputs, &outputs).unwrap()
}
