//! Compact rows: a source row (or a key, or a link key) as one byte string, each column's value
//! encoded in turn (a tag byte, then the value), so that the arrangements hold rows flat, without
//! a heap allocation or a 24-byte [`Value`] per column. Rows are hashed from their bytes
//! ([`hash`]) and decoded column by column ([`Datum`]) only where a document is built.
//!
//! The encoding is not order-preserving: rows compare as byte strings, an order that is
//! arbitrary but the same everywhere. Documents order their lists by `order_by`, on decoded
//! values. Two rows of the same columns are equal exactly when their values are equal (decimals
//! are normalised before they are encoded), so equal link keys of two sources have equal bytes
//! and equal hashes.

pub mod layout;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::value::{Decimal, Value, F64};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const DECIMAL: u8 = 5;
const STR: u8 = 6;
const DATE: u8 = 7;
const TIME: u8 = 8;
const TIMESTAMP: u8 = 9;
const JSON: u8 = 10;

/// The 64-bit hash of a row's (or key's) bytes: it routes the row to its worker and keys the
/// arrangements. Fixed, so every process of a job computes the same.
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// An owned row: its columns' encoded values.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Row(Box<[u8]>);

impl Row {
    /// The row of `values`, in order.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Row {
        let mut writer = RowWriter::new();
        for value in values {
            writer.push(value);
        }
        writer.finish()
    }

    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef(&self.0)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The hash of the row's bytes.
    pub fn hash(&self) -> u64 {
        hash(&self.0)
    }

    /// The row's values, decoded.
    pub fn values(&self) -> Vec<Value> {
        self.as_ref().datums().map(Datum::to_value).collect()
    }

    /// Bytes the row takes, with its handle.
    pub fn size(&self) -> usize {
        16 + self.0.len()
    }
}

impl From<Vec<u8>> for Row {
    fn from(bytes: Vec<u8>) -> Row {
        Row(bytes.into_boxed_slice())
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// On the wire a row is its bytes.
impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        Ok(Row::from(serde_bytes_vec(deserializer)?))
    }
}

/// Deserializes bytes written by `serialize_bytes` (or a sequence of bytes).
fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(Bytes)
}

/// A borrowed row, as arrangements hold it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowRef<'a>(&'a [u8]);

impl<'a> RowRef<'a> {
    pub fn new(bytes: &'a [u8]) -> RowRef<'a> {
        RowRef(bytes)
    }

    pub fn bytes(self) -> &'a [u8] {
        self.0
    }

    pub fn to_owned(self) -> Row {
        Row(self.0.into())
    }

    /// The hash of the row's bytes.
    pub fn hash(self) -> u64 {
        hash(self.0)
    }

    /// The row's values, in order.
    pub fn datums(self) -> Datums<'a> {
        Datums { rest: self.0 }
    }

    /// The value of column `index` (`Null` past the end).
    pub fn datum(self, index: usize) -> Datum<'a> {
        self.datums().nth(index).unwrap_or(Datum::Null)
    }

    /// The encoded values of `columns`, in that order, appended to `out`: the bytes of a key
    /// made of those columns. `false` (and `out` as it was) when one of them is null: null never
    /// joins.
    pub fn project(self, columns: &[usize], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let spans = self.spans(columns);
        for &c in columns {
            match spans.get(c) {
                Some(&(from, to)) if self.0[from as usize] != NULL => {
                    out.extend_from_slice(&self.0[from as usize..to as usize])
                }
                _ => {
                    out.truncate(start);
                    return false;
                }
            }
        }
        true
    }

    /// The encoded values of `columns`, in that order, appended to `out`, nulls included (a
    /// column past the row's end as a null): equal exactly when those columns' values are.
    pub fn select(self, columns: &[usize], out: &mut Vec<u8>) {
        let spans = self.spans(columns);
        for &c in columns {
            match spans.get(c) {
                Some(&(from, to)) => out.extend_from_slice(&self.0[from as usize..to as usize]),
                None => out.push(NULL),
            }
        }
    }

    /// Each column's byte range, up to the last of `columns`.
    fn spans(self, columns: &[usize]) -> smallvec::SmallVec<[(u32, u32); 16]> {
        let mut spans = smallvec::SmallVec::new();
        let Some(&last) = columns.iter().max() else {
            return spans;
        };
        let mut at = 0;
        while spans.len() <= last && at < self.0.len() {
            let len = encoded_len(&self.0[at..]);
            spans.push((at as u32, (at + len) as u32));
            at += len;
        }
        spans
    }
}

impl PartialEq<&Row> for RowRef<'_> {
    fn eq(&self, other: &&Row) -> bool {
        self.0 == &*other.0
    }
}

impl std::fmt::Debug for RowRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.datums()).finish()
    }
}

/// One decoded value of a row, borrowing its strings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Datum<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Str(&'a str),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A JSON value's canonical text.
    Json(&'a str),
}

impl Datum<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The order of the values they stand for ([`Value`]'s `Ord`): by variant in declaration
    /// order, then by content, floats by their total order.
    pub fn order(&self, other: &Datum<'_>) -> std::cmp::Ordering {
        use Datum::*;
        match (self, other) {
            (Null, Null) => std::cmp::Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Decimal(a), Decimal(b)) => a.cmp(b),
            (Str(a), Str(b)) | (Json(a), Json(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b)) | (Timestamp(a), Timestamp(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// The position of the value's variant in [`Value`]'s declaration.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Datum::Null => 0,
            Datum::Bool(_) => 1,
            Datum::Int(_) => 2,
            Datum::Float(_) => 3,
            Datum::Decimal(_) => 4,
            Datum::Str(_) => 5,
            Datum::Date(_) => 6,
            Datum::Time(_) => 7,
            Datum::Timestamp(_) => 8,
            Datum::Json(_) => 9,
        }
    }

    /// The value, for documents.
    pub fn to_value(self) -> Value {
        match self {
            Datum::Null => Value::Null,
            Datum::Bool(b) => Value::Bool(b),
            Datum::Int(i) => Value::Int(i),
            Datum::Float(f) => Value::Float(F64(f)),
            Datum::Decimal(d) => Value::decimal(d),
            Datum::Str(s) => Value::Str(Arc::from(s)),
            Datum::Date(d) => Value::Date(d),
            Datum::Time(t) => Value::Time(t),
            Datum::Timestamp(t) => Value::Timestamp(t),
            Datum::Json(s) => Value::Json(Arc::from(s)),
        }
    }
}

/// The values of a row, decoded in turn.
pub struct Datums<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Datums<'a> {
    type Item = Datum<'a>;

    fn next(&mut self) -> Option<Datum<'a>> {
        let (&tag, body) = self.rest.split_first()?;
        let (datum, used) = match tag {
            NULL => (Datum::Null, 0),
            FALSE => (Datum::Bool(false), 0),
            TRUE => (Datum::Bool(true), 0),
            INT => {
                let (v, n) = read_varint(body);
                (Datum::Int(unzigzag(v)), n)
            }
            FLOAT => (Datum::Float(f64::from_le_bytes(fixed(body))), 8),
            DECIMAL => {
                let unscaled = i128::from_le_bytes(fixed(body));
                let scale = u32::from_le_bytes(fixed(&body[16.min(body.len())..]));
                (Datum::Decimal(Decimal { unscaled, scale }), 20)
            }
            STR | JSON => {
                let (len, n) = read_varint(body);
                let end = (n + len as usize).min(body.len());
                let text = text(&body[n..end]);
                let datum = if tag == STR {
                    Datum::Str(text)
                } else {
                    Datum::Json(text)
                };
                (datum, end)
            }
            DATE => (Datum::Date(i32::from_le_bytes(fixed(body))), 4),
            TIME => (Datum::Time(i64::from_le_bytes(fixed(body))), 8),
            TIMESTAMP => (Datum::Timestamp(i64::from_le_bytes(fixed(body))), 8),
            _ => {
                // Not written by this module: stop rather than misread what follows.
                self.rest = &[];
                return None;
            }
        };
        self.rest = &body[used.min(body.len())..];
        Some(datum)
    }
}

/// The length of the encoded value at the start of `bytes`, tag included.
fn encoded_len(bytes: &[u8]) -> usize {
    let body = &bytes[1..];
    1 + match bytes[0] {
        INT => read_varint(body).1,
        FLOAT | TIME | TIMESTAMP => 8,
        DECIMAL => 20,
        DATE => 4,
        STR | JSON => {
            let (len, n) = read_varint(body);
            n + len as usize
        }
        _ => 0,
    }
    .min(bytes.len())
}

/// The first `N` bytes of `bytes` (zeros past its end: only a truncated row lacks them).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

fn text(bytes: &[u8]) -> &str {
    // Strings are written from `&str`; a row from elsewhere keeps what is valid.
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint and the bytes it took.
fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (v, i + 1);
        }
    }
    (v, bytes.len().min(10))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Builds a row value by value.
#[derive(Default)]
pub struct RowWriter {
    bytes: Vec<u8>,
}

impl RowWriter {
    pub fn new() -> Self {
        RowWriter::default()
    }

    /// Appends one value (a document value is not a column: it is written as null).
    pub fn push(&mut self, value: &Value) {
        encode(value, &mut self.bytes);
    }

    /// Appends a string value.
    pub fn push_str(&mut self, s: &str) {
        self.bytes.push(STR);
        write_varint(s.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    /// Appends an integer value.
    pub fn push_int(&mut self, i: i64) {
        self.bytes.push(INT);
        write_varint(zigzag(i), &mut self.bytes);
    }

    /// Appends the encoded values of another row.
    pub fn extend(&mut self, row: RowRef<'_>) {
        self.bytes.extend_from_slice(row.bytes());
    }

    pub fn finish(self) -> Row {
        Row::from(self.bytes)
    }

    /// The bytes written so far, and the writer emptied for the next row.
    pub fn take(&mut self) -> Row {
        let row = Row(self.bytes.as_slice().into());
        self.bytes.clear();
        row
    }
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null | Value::Doc(_) => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Int(i) => {
            out.push(INT);
            write_varint(zigzag(*i), out);
        }
        Value::Float(F64(f)) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Decimal(d) => {
            out.push(DECIMAL);
            out.extend_from_slice(&d.unscaled.to_le_bytes());
            out.extend_from_slice(&d.scale.to_le_bytes());
        }
        Value::Str(s) | Value::Json(s) => {
            out.push(if matches!(value, Value::Str(_)) {
                STR
            } else {
                JSON
            });
            write_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Date(d) => {
            out.push(DATE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Time(t) => {
            out.push(TIME);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Timestamp(t) => {
            out.push(TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i64::MAX),
            Value::Int(i64::MIN),
            Value::Float(F64(-0.5)),
            Value::decimal(Decimal::new(-123_456, 3)),
            Value::decimal(Decimal::new(i128::MAX, 38)),
            Value::str(""),
            Value::str("héllo \"world\""),
            Value::str(&"x".repeat(300)),
            Value::Date(-719_528),
            Value::Time(86_399_999_999),
            Value::Timestamp(-1),
            Value::Json(Arc::from(r#"{"a":[1,2]}"#)),
        ]
    }

    #[test]
    fn every_value_survives_a_row() {
        let values = values();
        let row = Row::from_values(&values);
        let back: Vec<Value> = row.as_ref().datums().map(Datum::to_value).collect();
        assert_eq!(back, values);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(row.as_ref().datum(i).to_value(), *v, "column {i}");
        }
        assert_eq!(row.as_ref().datum(values.len()), Datum::Null);
    }

    #[test]
    fn projections_are_the_rows_of_those_columns_and_null_never_joins() {
        let values = values();
        let row = Row::from_values(&values);
        let mut key = Vec::new();
        assert!(row.as_ref().project(&[11, 3, 8], &mut key));
        let expected = Row::from_values([&values[11], &values[3], &values[8]]);
        assert_eq!(key, expected.bytes());
        // Equal values of another source's columns make the same key and hash.
        let other = Row::from_values([&Value::Int(7), &values[11], &values[3], &values[8]]);
        let mut other_key = Vec::new();
        assert!(other.as_ref().project(&[1, 2, 3], &mut other_key));
        assert_eq!(hash(&key), hash(&other_key));
        // A null column: no key, and the buffer is left as it was.
        let mut key = vec![42];
        assert!(!row.as_ref().project(&[3, 0], &mut key));
        assert_eq!(key, vec![42]);
        assert!(!row.as_ref().project(&[99], &mut key));
    }

    #[test]
    fn a_selection_keeps_nulls_and_is_equal_exactly_when_its_columns_are() {
        let values = values();
        let row = Row::from_values(&values);
        let mut all = Vec::new();
        row.as_ref().select(&[0, 3, 99], &mut all);
        let expected = Row::from_values([&Value::Null, &values[3], &Value::Null]);
        assert_eq!(all, expected.bytes());
        // Another column changed: the selection without it is equal, with it is not.
        let mut changed = values.clone();
        changed[11] = Value::str("hello");
        let changed = Row::from_values(&changed);
        let select = |row: &Row, columns: &[usize]| {
            let mut out = Vec::new();
            row.as_ref().select(columns, &mut out);
            out
        };
        assert_eq!(select(&row, &[3, 12]), select(&changed, &[3, 12]));
        assert_ne!(select(&row, &[3, 11]), select(&changed, &[3, 11]));
        // Values are self-delimiting: shifting bytes between columns is a different selection.
        let a = Row::from_values([&Value::str("ab"), &Value::str("c")]);
        let b = Row::from_values([&Value::str("a"), &Value::str("bc")]);
        assert_ne!(select(&a, &[0, 1]), select(&b, &[0, 1]));
    }

    #[test]
    fn rows_travel_as_their_bytes() {
        let row = Row::from_values(&values());
        let bytes = serde_json::to_vec(&row).unwrap();
        let back: Row = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.hash(), row.hash());
    }

    #[test]
    fn a_truncated_row_reads_without_panicking() {
        let row = Row::from_values(&values());
        for cut in 0..row.bytes().len() {
            let part = RowRef::new(&row.bytes()[..cut]);
            let _ = part.datums().count();
            let mut key = Vec::new();
            let _ = part.project(&[0, 5, 12], &mut key);
        }
    }
}
