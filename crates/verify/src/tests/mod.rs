//! Unit tests of the decoder, the evaluator and the comparison, on hand-written records and
//! hand-computed documents.

mod compare;
mod decode;
mod eval;

use crate::product::{Product, Source};
use crate::Record;

/// A product of one source `t` with these columns (TOML inline table) and primary key.
fn source(columns: &str, key: &[&str]) -> Source {
    let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
    let text = format!(
        "[product]\nname = \"p\"\noutput_topic = \"out\"\n[sources.t]\ntopic = \"t\"\nprimary_key = [{}]\ncolumns = {columns}\n[document]\nsource = \"t\"\nfields = [{}]\n",
        key.join(", "),
        key.join(", ")
    );
    Product::parse(&text, "test").unwrap().sources.remove(0)
}

/// A record of `topic` at `partition`/`offset` with text key and value.
fn record(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&str>,
    value: Option<&str>,
) -> Record {
    Record {
        topic: topic.to_owned(),
        partition,
        offset,
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}
