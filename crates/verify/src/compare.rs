//! The output topic as found, and its comparison with the expected documents, as parsed JSON.
//!
//! Rules: a record's key and value are JSON; the last value of a key (in offset order) is its
//! document, and a null value (a tombstone) removes it. Keys match when they are the same JSON
//! (numbers by value, fields in order). A record without a key, with a key that is not JSON, or
//! with an empty value (denorm writes a null tombstone, never an empty value) is a bad record.
//! A document matches when it has the expected fields in the expected order, lists have the
//! expected items in the expected order, strings are equal, and numbers are equal by the rule of
//! their column's type: integers and decimals exactly (so a decimal of scale 2 must have its
//! digits right), floats as the same `f64`, numbers inside a `json` column exactly or, when not
//! whole, as the same `f64`.

use std::collections::BTreeMap;
use std::fmt;

use crate::json::{self, Dec, Json};
use crate::value::Val;
use crate::Record;

/// The documents of an output topic, by canonical key.
#[derive(Debug, Default)]
pub struct Found {
    /// Canonical key → (key as written, last value as written).
    docs: BTreeMap<String, (String, Vec<u8>)>,
    /// Records denorm never writes.
    pub bad_records: Vec<String>,
}

impl Found {
    /// Takes one output record (records of a partition in offset order).
    pub fn apply(&mut self, record: &Record) {
        let place = record.place();
        let Some(key_bytes) = &record.key else {
            self.bad_records
                .push(format!("{place}: a record without a key"));
            return;
        };
        let key_text = String::from_utf8_lossy(key_bytes).into_owned();
        let key = match json::parse(key_bytes) {
            Ok(key) => key,
            Err(e) => {
                self.bad_records
                    .push(format!("{place}: the key {key_text} is not JSON ({e})"));
                return;
            }
        };
        match &record.value {
            None => {
                self.docs.remove(&key.canonical());
            }
            Some(value) => {
                if value.is_empty() {
                    self.bad_records.push(format!(
                        "{place}: key {key_text} has an empty value (denorm writes null tombstones, not empty values)"
                    ));
                }
                self.docs.insert(key.canonical(), (key_text, value.clone()));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// How an output topic compares with the expected documents.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub product: String,
    pub expected: usize,
    pub found: usize,
    pub matching: usize,
    /// Keys of expected documents the topic lacks.
    pub missing: Vec<String>,
    /// Keys of documents the topic holds and should not.
    pub unexpected: Vec<String>,
    /// Key and the field-by-field differences.
    pub different: Vec<(String, Vec<String>)>,
    /// Output records denorm never writes (no key, a key that is not JSON, an empty value).
    pub bad_records: Vec<String>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.different.is_empty()
            && self.bad_records.is_empty()
    }
}

/// Compares the expected documents (key columns and document) with those found.
pub fn compare(
    product: &str,
    expected: Vec<(Vec<(String, Val)>, Val)>,
    found: Found,
) -> Comparison {
    let mut c = Comparison {
        product: product.to_owned(),
        expected: expected.len(),
        found: found.docs.len(),
        bad_records: found.bad_records,
        ..Default::default()
    };
    let mut docs = found.docs;
    for (key, document) in expected {
        let key = Json::Object(key.into_iter().map(|(n, v)| (n, v.to_json())).collect());
        match docs.remove(&key.canonical()) {
            None => c.missing.push(key.to_string()),
            Some((key_text, value)) => {
                let differences = match json::parse(&value) {
                    Ok(found) => {
                        let mut out = Vec::new();
                        diff(&document, &found, "", &mut out);
                        out
                    }
                    Err(e) => vec![format!(
                        ".: expected {}, found a value that is not JSON ({e}): {}",
                        shorten(&document.to_json().to_string()),
                        shorten(&String::from_utf8_lossy(&value))
                    )],
                };
                if differences.is_empty() {
                    c.matching += 1;
                } else {
                    c.different.push((key_text, differences));
                }
            }
        }
    }
    c.unexpected = docs.into_values().map(|(key_text, _)| key_text).collect();
    c
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn place(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// Appends where `found` differs from `expected`, e.g. `.orders[2].total: expected 12.5, found 1.25`.
fn diff(expected: &Val, found: &Json, path: &str, out: &mut Vec<String>) {
    match (expected, found) {
        (Val::Object(fields), Json::Object(found_fields)) => {
            for (name, value) in fields {
                match found.get(name) {
                    Some(f) => diff(value, f, &format!("{path}.{name}"), out),
                    None => out.push(format!(
                        "{path}.{name}: expected {}, field missing",
                        value.to_json()
                    )),
                }
            }
            for (i, (name, value)) in found_fields.iter().enumerate() {
                if found_fields[..i].iter().any(|(n, _)| n == name) {
                    out.push(format!("{path}.{name}: the field is written twice"));
                } else if !fields.iter().any(|(n, _)| n == name) {
                    out.push(format!("{path}.{name}: unexpected field, found {value}"));
                }
            }
            let expected_order: Vec<&str> = fields
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| found.get(n).is_some())
                .collect();
            let mut found_order: Vec<&str> = Vec::new();
            for (name, _) in found_fields {
                if fields.iter().any(|(n, _)| n == name) && !found_order.contains(&name.as_str()) {
                    found_order.push(name);
                }
            }
            if expected_order != found_order {
                out.push(format!(
                    "{}: fields in another order: expected {}, found {}",
                    place(path),
                    expected_order.join(", "),
                    found_order.join(", ")
                ));
            }
        }
        (Val::List(items), Json::Array(found_items)) => {
            if items.len() != found_items.len() {
                out.push(format!(
                    "{path}: expected {} items, found {}",
                    items.len(),
                    found_items.len()
                ));
            } else if !items.iter().zip(found_items).all(|(e, f)| matches(e, f))
                && permutation(items, found_items)
            {
                out.push(format!(
                    "{path}: the same {} items in another order",
                    items.len()
                ));
            }
            for (i, (e, f)) in items.iter().zip(found_items).enumerate() {
                diff(e, f, &format!("{path}[{i}]"), out);
            }
        }
        (e, f) if !scalar_equal(e, f) => {
            out.push(format!(
                "{}: expected {}, found {f}",
                place(path),
                e.to_json()
            ));
        }
        _ => {}
    }
}

/// Whether `found` is `expected`.
pub fn matches(expected: &Val, found: &Json) -> bool {
    let mut out = Vec::new();
    diff(expected, found, "", &mut out);
    out.is_empty()
}

/// Whether the found items are the expected ones in some order.
fn permutation(expected: &[Val], found: &[Json]) -> bool {
    let mut used = vec![false; found.len()];
    expected.iter().all(|e| {
        let at = (0..found.len()).find(|&i| !used[i] && matches(e, &found[i]));
        at.inspect(|&i| used[i] = true).is_some()
    })
}

/// A scalar (or a `json` column's value, or a kind mismatch) by its type's rule.
fn scalar_equal(expected: &Val, found: &Json) -> bool {
    match (expected, found) {
        (Val::Null, Json::Null) => true,
        (Val::Bool(a), Json::Bool(b)) => a == b,
        (Val::Int(i), Json::Number(n)) => Dec::parse(n) == Dec::parse(&i.to_string()),
        (Val::Float(f), Json::Number(n)) => n.parse::<f64>().is_ok_and(|g| g == *f),
        (Val::Float(f), Json::Null) => !f.is_finite(),
        (Val::Decimal(d), Json::Number(n)) => Dec::parse(n).as_ref() == Some(d),
        (Val::Str(s), Json::String(t)) => s == t,
        (Val::Date(_) | Val::Time(_) | Val::Timestamp(_), Json::String(_)) => {
            expected.to_json() == *found
        }
        (Val::Json(value, _), found) => json_equal(value, found),
        _ => false,
    }
}

/// Two JSON values of a `json` column: the same structure, fields in the same order, numbers
/// equal exactly or, when either is not whole, as `f64`.
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (Dec::parse(x), Dec::parse(y)) {
            (Some(dx), Some(dy)) if dx == dy => true,
            (Some(dx), Some(dy)) if dx.is_integer() && dy.is_integer() => false,
            _ => matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(fx), Ok(fy)) if fx == fy),
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((n, p), (m, q))| n == m && json_equal(p, q))
        }
        (x, y) => x == y,
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
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
        if !self.bad_records.is_empty() {
            write!(f, ", bad records {}", self.bad_records.len())?;
        }
        writeln!(f)?;
        for record in self.bad_records.iter().take(5) {
            writeln!(f, "  bad record {record}")?;
        }
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
