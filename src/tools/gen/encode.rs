//! Debezium JSON text for generated rows, written directly (no `serde_json::Value` per record).
//!
//! Three value encodings, all understood by [`crate::decode`]:
//! - [`Encoding::Plain`]: the change envelope without a schema; timestamps are integers in the
//!   column's declared unit, dates days, times micros, decimals decimal strings, `json` inline.
//!   `before` of an update is the whole old row (REPLICA IDENTITY FULL), of a delete only the key.
//! - [`Encoding::Schema`]: `{"schema":..,"payload":..}` with a Kafka Connect schema:
//!   `MicroTimestamp`, `Decimal` (base64 bytes, `parameters.scale`), `io.debezium.time.Date`,
//!   `MicroTime`, `io.debezium.data.Json`. `before` of an update is null and of a delete the key
//!   columns with the others null (PostgreSQL's default replica identity).
//! - [`Encoding::Flat`]: ExtractNewRecordState's row with `__op` and `__deleted` (deletes rewrite
//!   the last row with `"__deleted":"true"`); timestamps, dates and times as ISO text, decimals
//!   as JSON numbers.
//!
//! Keys are JSON objects of the key columns, schema-wrapped or plain (fixed per source so that a
//! row's key bytes never change and a partitioner keeps its records in order).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::plan::{ColumnType, SourcePlan, TimeUnit};
use crate::value::temporal;
use crate::value::{Decimal, Value, F64};

/// How a record's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Plain,
    Schema,
    Flat,
}

/// The encodings in the order records of one source cycle through them.
pub const ENCODINGS: [Encoding; 3] = [Encoding::Plain, Encoding::Schema, Encoding::Flat];

/// A Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// The scale decimals of a column are written with: the declared one, else 2.
pub fn decimal_scale(ty: ColumnType) -> u32 {
    match ty {
        ColumnType::Decimal { scale } => scale.unwrap_or(2),
        _ => 0,
    }
}

struct ColCodec {
    /// The column name as a JSON string, quotes included.
    name: String,
    ty: ColumnType,
    scale: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    /// Only the key columns (in key order).
    Key,
    /// Every column, the non-key ones null.
    KeyNulls,
}

/// Everything fixed about one source's records: quoted names, schemas and the `source` block.
pub struct Codec {
    cols: Vec<ColCodec>,
    key: Vec<usize>,
    is_key: Vec<bool>,
    /// `{"schema":<key schema>,"payload":` when the source's keys carry a schema.
    key_prefix: Option<String>,
    /// `{"schema":<envelope schema>,"payload":`.
    value_prefix: String,
    /// `"source":{...,"ts_ms":`, then the tail for snapshot and streamed records.
    source_head: String,
    source_tail_snapshot: String,
    source_tail: String,
}

impl Codec {
    pub fn new(source: &SourcePlan, schema_key: bool) -> Codec {
        let cols: Vec<ColCodec> = source
            .columns
            .iter()
            .map(|c| ColCodec {
                name: json_string(&c.name),
                ty: c.ty,
                scale: decimal_scale(c.ty),
            })
            .collect();
        let is_key: Vec<bool> = (0..cols.len()).map(|i| source.key.contains(&i)).collect();
        let parts: Vec<&str> = source.topic.split('.').collect();
        let (server, schema, table) = match parts.as_slice() {
            [table] => ("dbserver", "public", *table),
            [server, table] => (*server, "public", *table),
            [server, .., schema, table] => (*server, *schema, *table),
            [] => ("dbserver", "public", "table"),
        };
        let key_prefix = schema_key.then(|| {
            let fields: Vec<String> = source.key.iter().map(|&i| field_schema(&cols[i], false)).collect();
            let name = json_string(&format!("{}.Key", source.topic));
            format!(r#"{{"schema":{{"type":"struct","fields":[{}],"optional":false,"name":{name}}},"payload":"#, fields.join(","))
        });
        let row_fields: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| field_schema(c, !is_key[i]))
            .collect();
        let row_fields = row_fields.join(",");
        let row_name = json_string(&format!("{}.Value", source.topic));
        let envelope_name = json_string(&format!("{}.Envelope", source.topic));
        let source_fields = [
            r#"{"type":"string","optional":false,"field":"version"}"#,
            r#"{"type":"string","optional":false,"field":"connector"}"#,
            r#"{"type":"string","optional":false,"field":"name"}"#,
            r#"{"type":"int64","optional":false,"field":"ts_ms"}"#,
            r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,last,false,incremental"},"default":"false","field":"snapshot"}"#,
            r#"{"type":"string","optional":false,"field":"db"}"#,
            r#"{"type":"string","optional":false,"field":"schema"}"#,
            r#"{"type":"string","optional":false,"field":"table"}"#,
        ]
        .join(",");
        let value_prefix = format!(
            concat!(
                r#"{{"schema":{{"type":"struct","fields":["#,
                r#"{{"type":"struct","fields":[{rf}],"optional":true,"name":{rn},"field":"before"}},"#,
                r#"{{"type":"struct","fields":[{rf}],"optional":true,"name":{rn},"field":"after"}},"#,
                r#"{{"type":"struct","fields":[{sf}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}},"#,
                r#"{{"type":"string","optional":false,"field":"op"}},"#,
                r#"{{"type":"int64","optional":true,"field":"ts_ms"}}"#,
                r#"],"optional":false,"name":{en},"version":1}},"payload":"#
            ),
            rf = row_fields,
            rn = row_name,
            sf = source_fields,
            en = envelope_name,
        );
        let (server, schema, table) =
            (json_string(server), json_string(schema), json_string(table));
        let source_head = format!(
            r#""source":{{"version":"2.7.3.Final","connector":"postgresql","name":{server},"ts_ms":"#
        );
        let tail = |snapshot: &str| {
            format!(r#","snapshot":"{snapshot}","db":{server},"schema":{schema},"table":{table}}}"#)
        };
        Codec {
            cols,
            key: source.key.clone(),
            is_key,
            key_prefix,
            value_prefix,
            source_head,
            source_tail_snapshot: tail("true"),
            source_tail: tail("false"),
        }
    }

    /// The record key of a row (only its key columns are read).
    pub fn key(&self, row: &[Value]) -> String {
        let mut out = String::with_capacity(
            self.key_prefix.as_ref().map_or(0, String::len) + 16 * self.key.len() + 8,
        );
        match &self.key_prefix {
            Some(prefix) => {
                out.push_str(prefix);
                self.write_object(&mut out, Encoding::Schema, row, Which::Key);
                out.push('}');
            }
            None => self.write_object(&mut out, Encoding::Plain, row, Which::Key),
        }
        out
    }

    /// The record value of a change: `after` for r/c/u, `before` (the old row) for u and d.
    pub fn value(
        &self,
        enc: Encoding,
        op: Op,
        before: Option<&[Value]>,
        after: Option<&[Value]>,
        ts_ms: i64,
        snapshot: bool,
    ) -> String {
        let mut out = String::with_capacity(match enc {
            Encoding::Schema => self.value_prefix.len() + 400,
            _ => 400,
        });
        if enc == Encoding::Flat {
            let row = after.or(before).expect("a change has a row");
            out.push('{');
            self.write_fields(&mut out, enc, row, Which::All);
            out.push_str(r#","__op":""#);
            out.push_str(op.code());
            out.push_str(if op == Op::Delete {
                r#"","__deleted":"true"}"#
            } else {
                r#"","__deleted":"false"}"#
            });
            return out;
        }
        if enc == Encoding::Schema {
            out.push_str(&self.value_prefix);
        }
        out.push_str(r#"{"before":"#);
        match (op, enc, before) {
            (Op::Update, Encoding::Plain, Some(row)) => {
                self.write_object(&mut out, enc, row, Which::All)
            }
            (Op::Delete, Encoding::Plain, Some(row)) => {
                self.write_object(&mut out, enc, row, Which::Key)
            }
            (Op::Delete, _, Some(row)) => self.write_object(&mut out, enc, row, Which::KeyNulls),
            _ => out.push_str("null"),
        }
        out.push_str(r#","after":"#);
        match after {
            Some(row) => self.write_object(&mut out, enc, row, Which::All),
            None => out.push_str("null"),
        }
        out.push(',');
        out.push_str(&self.source_head);
        push_int(&mut out, ts_ms - 7);
        out.push_str(if snapshot {
            &self.source_tail_snapshot
        } else {
            &self.source_tail
        });
        let _ = write!(out, r#","op":"{}","ts_ms":{ts_ms}}}"#, op.code());
        if enc == Encoding::Schema {
            out.push('}');
        }
        out
    }

    fn write_object(&self, out: &mut String, enc: Encoding, row: &[Value], which: Which) {
        out.push('{');
        self.write_fields(out, enc, row, which);
        out.push('}');
    }

    fn write_fields(&self, out: &mut String, enc: Encoding, row: &[Value], which: Which) {
        let field = |out: &mut String, i: usize, first: bool| {
            if !first {
                out.push(',');
            }
            let c = &self.cols[i];
            out.push_str(&c.name);
            out.push(':');
            if which == Which::KeyNulls && !self.is_key[i] {
                out.push_str("null");
            } else {
                write_value(out, enc, c, &row[i]);
            }
        };
        if which == Which::Key {
            for (n, &i) in self.key.iter().enumerate() {
                field(out, i, n == 0);
            }
        } else {
            for i in 0..self.cols.len() {
                field(out, i, i == 0);
            }
        }
    }
}

/// The Connect schema of one column.
fn field_schema(c: &ColCodec, optional: bool) -> String {
    let (ty, extra) = match c.ty {
        ColumnType::String => ("string", String::new()),
        ColumnType::Int => ("int64", String::new()),
        ColumnType::Float => ("double", String::new()),
        ColumnType::Bool => ("boolean", String::new()),
        ColumnType::Decimal { .. } => (
            "bytes",
            format!(
                r#","name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"{}","connect.decimal.precision":"38"}}"#,
                c.scale
            ),
        ),
        ColumnType::Date => (
            "int32",
            r#","name":"io.debezium.time.Date","version":1"#.to_owned(),
        ),
        ColumnType::Time => (
            "int64",
            r#","name":"io.debezium.time.MicroTime","version":1"#.to_owned(),
        ),
        ColumnType::Timestamp { .. } => (
            "int64",
            r#","name":"io.debezium.time.MicroTimestamp","version":1"#.to_owned(),
        ),
        ColumnType::Json => (
            "string",
            r#","name":"io.debezium.data.Json","version":1"#.to_owned(),
        ),
    };
    format!(
        r#"{{"type":"{ty}","optional":{optional}{extra},"field":{}}}"#,
        c.name
    )
}

fn write_value(out: &mut String, enc: Encoding, c: &ColCodec, value: &Value) {
    match value {
        Value::Null | Value::Doc(_) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => push_int(out, *i),
        // Rust prints the shortest text that parses back to the same f64, without exponent.
        Value::Float(F64(f)) => {
            let _ = write!(out, "{f}");
        }
        Value::Decimal(d) => {
            let unscaled = rescale(**d, c.scale);
            let at_scale = Decimal {
                unscaled,
                scale: c.scale,
            };
            match enc {
                Encoding::Plain => {
                    let _ = write!(out, "\"{at_scale}\"");
                }
                Encoding::Schema => {
                    out.push('"');
                    base64::engine::general_purpose::STANDARD
                        .encode_string(twos_complement(unscaled), out);
                    out.push('"');
                }
                Encoding::Flat => {
                    let _ = write!(out, "{at_scale}");
                }
            }
        }
        Value::Str(s) => push_json_string(out, s),
        Value::Date(days) => match enc {
            Encoding::Flat => {
                out.push('"');
                push_date(out, *days as i64);
                out.push('"');
            }
            _ => push_int(out, *days as i64),
        },
        Value::Time(micros) => match enc {
            Encoding::Flat => {
                let _ = write!(out, "\"{}\"", temporal::format_time(*micros));
            }
            _ => push_int(out, *micros),
        },
        Value::Timestamp(micros) => {
            let micros = *micros;
            match enc {
                Encoding::Flat => {
                    out.push('"');
                    push_timestamp(out, micros);
                    out.push('"');
                }
                Encoding::Schema => push_int(out, micros),
                Encoding::Plain => {
                    let v = match c.ty {
                        ColumnType::Timestamp {
                            unit: TimeUnit::Micros,
                        } => micros,
                        ColumnType::Timestamp {
                            unit: TimeUnit::Nanos,
                        } => micros * 1000,
                        _ => micros / 1000,
                    };
                    push_int(out, v);
                }
            }
        }
        Value::Json(text) => match enc {
            Encoding::Schema => push_json_string(out, text),
            _ => out.push_str(text),
        },
    }
}

/// Appends an integer in decimal.
pub fn push_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Appends `n` with at least `width` digits (zero padded; `n` is not negative).
fn push_padded(out: &mut String, n: i64, width: usize) {
    let mut digits = 1;
    let mut m = n / 10;
    while m > 0 {
        digits += 1;
        m /= 10;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_int(out, n);
}

/// Appends the date `days` after 1970-01-01 as `YYYY-MM-DD` (civil calendar, years 0..=9999).
fn push_date(out: &mut String, days: i64) {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    push_padded(out, y, 4);
    out.push('-');
    push_padded(out, m, 2);
    out.push('-');
    push_padded(out, d, 2);
}

/// Appends RFC 3339 UTC text of `micros` since the epoch: `YYYY-MM-DDTHH:MM:SS[.fff[fff]]Z`.
fn push_timestamp(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    push_date(out, days);
    out.push('T');
    push_padded(out, day_secs / 3600, 2);
    out.push(':');
    push_padded(out, day_secs / 60 % 60, 2);
    out.push(':');
    push_padded(out, day_secs % 60, 2);
    if frac % 1000 != 0 {
        out.push('.');
        push_padded(out, frac, 6);
    } else if frac != 0 {
        out.push('.');
        push_padded(out, frac / 1000, 3);
    }
    out.push('Z');
}

/// The unscaled integer of `d` at `scale` (generated decimals never have a larger scale).
fn rescale(d: Decimal, scale: u32) -> i128 {
    debug_assert!(
        d.scale <= scale,
        "generated decimal {d} has more than {scale} fraction digits"
    );
    10i128
        .checked_pow(scale.saturating_sub(d.scale))
        .and_then(|p| d.unscaled.checked_mul(p))
        .unwrap_or(0)
}

/// Minimal big-endian two's complement bytes, as Kafka Connect's `Decimal` holds them.
fn twos_complement(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_numbers_dates_and_timestamps() {
        let text = |f: &dyn Fn(&mut String)| {
            let mut out = String::new();
            f(&mut out);
            out
        };
        for v in [0, 7, -7, 10, 1_234_567_890, i64::MIN, i64::MAX] {
            assert_eq!(text(&|o| push_int(o, v)), v.to_string());
        }
        for days in [-719_468, -1, 0, 18_262, 19_219, 20_453, 2_932_896] {
            assert_eq!(
                text(&|o| push_date(o, days)),
                temporal::format_date(days as i32),
                "{days}"
            );
        }
        for micros in [
            0,
            1_660_553_637_000_000,
            1_660_553_637_123_000,
            1_660_553_637_123_456,
            -1,
        ] {
            let t = text(&|o| push_timestamp(o, micros));
            assert_eq!(temporal::parse_timestamp(&t), Some(micros), "{t}");
        }
        assert_eq!(
            text(&|o| push_timestamp(o, 1_660_553_637_000_000)),
            "2022-08-15T08:53:57Z"
        );
        assert_eq!(
            text(&|o| push_timestamp(o, 1_660_553_637_120_000)),
            "2022-08-15T08:53:57.120Z"
        );
        assert_eq!(
            text(&|o| push_timestamp(o, 1_660_553_637_000_007)),
            "2022-08-15T08:53:57.000007Z"
        );
    }

    #[test]
    fn twos_complement_is_minimal() {
        assert_eq!(twos_complement(0), vec![0]);
        assert_eq!(twos_complement(127), vec![0x7f]);
        assert_eq!(twos_complement(128), vec![0x00, 0x80]);
        assert_eq!(twos_complement(-1), vec![0xff]);
        assert_eq!(twos_complement(-129), vec![0xff, 0x7f]);
        assert_eq!(twos_complement(2_000_000_000), vec![0x77, 0x35, 0x94, 0x00]);
    }
}
