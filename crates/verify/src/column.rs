//! Declared column types, and one column value of a Debezium row decoded to its type: with the
//! Kafka Connect schema of the field when the record carries one (its semantic type `name` and
//! the `scale` parameter of decimals), else by what the declared type says a schema-less value
//! means.
//!
//! The contract is the README's "Product files" (types and aliases, `decimal(S)`,
//! `timestamp(ms|us|ns)`) and "Input: Debezium records" (Debezium's encodings):
//!
//! | type | JSON value |
//! |---|---|
//! | `string` | a string |
//! | `int` | an integer |
//! | `float` | a number, or `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `bool` | `true`/`false`, or `0`/`1` |
//! | `decimal` | a number (`decimal.handling.mode=double`); decimal text (`string` mode); base64 of the big-endian two's complement unscaled value with the schema's `scale` parameter, or the declared `decimal(S)` without a schema (`precise`); `{"scale":S,"value":base64}` (`VariableScaleDecimal`) |
//! | `date` | days since 1970-01-01 (`io.debezium.time.Date`, Connect `Date`), or milliseconds with a `Timestamp` schema; `YYYY-MM-DD` text |
//! | `time` | micros since midnight (`MicroTime`, and without a schema), millis (`Time`, Connect `Time`), nanos (`NanoTime`); `HH:MM:SS[.f]` text (`Z` allowed) |
//! | `timestamp` | millis (`Timestamp`, Connect `Timestamp`), micros (`MicroTimestamp`), nanos (`NanoTimestamp`), days (`Date`); without a schema the declared unit (`timestamp` = ms); RFC 3339 text (`ZonedTimestamp`), or `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC |
//! | `json` | any JSON; a string with the `io.debezium.data.Json` schema holds JSON text |
//!
//! `null` is null for every type. Fractions finer than a microsecond are cut (towards the past).

use base64::Engine as _;

use crate::json::{Dec, Json};
use crate::value::{self, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Float,
    Bool,
    /// With the scale of schema-less base64 values, when declared.
    Decimal(Option<u32>),
    Date,
    Time,
    /// With the unit of schema-less integers.
    Timestamp(Unit),
    Json,
}

impl ColumnType {
    /// A declared type: `string`, `int`, `float`, `bool`, `decimal`, `decimal(S)`, `date`,
    /// `time`, `timestamp`, `timestamp(ms|us|ns)`, `json`, or an alias (`text`, `integer`, `long`,
    /// `double`, `boolean`).
    pub fn parse(text: &str) -> Option<ColumnType> {
        Some(match text.trim() {
            "string" | "text" => ColumnType::String,
            "int" | "integer" | "long" => ColumnType::Int,
            "float" | "double" => ColumnType::Float,
            "bool" | "boolean" => ColumnType::Bool,
            "decimal" => ColumnType::Decimal(None),
            "date" => ColumnType::Date,
            "time" => ColumnType::Time,
            "timestamp" | "timestamp(ms)" => ColumnType::Timestamp(Unit::Millis),
            "timestamp(us)" => ColumnType::Timestamp(Unit::Micros),
            "timestamp(ns)" => ColumnType::Timestamp(Unit::Nanos),
            "json" => ColumnType::Json,
            other => {
                let scale = other.strip_prefix("decimal(")?.strip_suffix(')')?;
                ColumnType::Decimal(Some(scale.trim().parse().ok()?))
            }
        })
    }
}

/// What a Connect schema says about one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSchema {
    /// The semantic type, e.g. `io.debezium.time.MicroTimestamp`.
    pub name: Option<String>,
    /// `parameters.scale` (a decimal's).
    pub scale: Option<u32>,
}

impl FieldSchema {
    pub fn of(schema: &Json) -> FieldSchema {
        let scale = schema
            .get("parameters")
            .and_then(|p| p.get("scale"))
            .and_then(|s| match s {
                Json::String(s) | Json::Number(s) => s.parse().ok(),
                _ => None,
            });
        FieldSchema {
            name: schema.get("name").and_then(Json::as_str).map(str::to_owned),
            scale,
        }
    }
}

/// The field schemas of a struct schema (`{"type":"struct","fields":[...]}`), by field name.
pub fn struct_fields(schema: Option<&Json>) -> Vec<(String, FieldSchema)> {
    match schema.and_then(|s| s.get("fields")) {
        Some(Json::Array(fields)) => fields
            .iter()
            .filter_map(|f| Some((f.get("field")?.as_str()?.to_owned(), FieldSchema::of(f))))
            .collect(),
        _ => Vec::new(),
    }
}

const MILLIS_PER_DAY: i64 = 86_400_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Decodes one value of a column of type `ty`. The error says what was expected and found.
pub fn decode(json: &Json, ty: ColumnType, schema: Option<&FieldSchema>) -> Result<Val, String> {
    if *json == Json::Null {
        return Ok(Val::Null);
    }
    let semantic = schema.and_then(|s| s.name.as_deref()).unwrap_or("");
    let wrong = |expected: &str| format!("expected {expected}, found {}", shorten(json));
    match ty {
        ColumnType::String => json
            .as_str()
            .map(|s| Val::Str(s.to_owned()))
            .ok_or_else(|| wrong("a string")),
        ColumnType::Int => integer(json)
            .map(Val::Int)
            .ok_or_else(|| wrong("an integer")),
        ColumnType::Float => match json {
            Json::Number(n) => n.parse().map(Val::Float).map_err(|_| wrong("a number")),
            Json::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
                Ok(Val::Float(match s.as_str() {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    _ => f64::NEG_INFINITY,
                }))
            }
            _ => Err(wrong("a number")),
        },
        ColumnType::Bool => match json {
            Json::Bool(b) => Ok(Val::Bool(*b)),
            Json::Number(n) if n == "0" || n == "1" => Ok(Val::Bool(n == "1")),
            _ => Err(wrong("a boolean")),
        },
        ColumnType::Decimal(declared) => {
            decimal(json, schema.and_then(|s| s.scale).or(declared), semantic).map(Val::Decimal)
        }
        ColumnType::Date => match json {
            Json::Number(_) => {
                let n = integer(json).ok_or_else(|| wrong("an integer date"))?;
                let days = match semantic {
                    "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                        n.div_euclid(MILLIS_PER_DAY)
                    }
                    "io.debezium.time.MicroTimestamp" => n.div_euclid(MICROS_PER_DAY),
                    "io.debezium.time.NanoTimestamp" => n.div_euclid(MICROS_PER_DAY * 1000),
                    _ => n,
                };
                i32::try_from(days)
                    .ok()
                    .filter(|d| value::date(*d).is_some())
                    .map(Val::Date)
                    .ok_or_else(|| wrong("a date in range"))
            }
            Json::String(s) => parse_date(s)
                .map(Val::Date)
                .ok_or_else(|| wrong("a date YYYY-MM-DD")),
            _ => Err(wrong("a date")),
        },
        ColumnType::Time => match json {
            Json::Number(_) => {
                let n = integer(json).ok_or_else(|| wrong("an integer time"))?;
                match semantic {
                    "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
                        n.checked_mul(1000)
                    }
                    "io.debezium.time.NanoTime" => Some(n.div_euclid(1000)),
                    _ => Some(n),
                }
                .map(Val::Time)
                .ok_or_else(|| wrong("a time in range"))
            }
            Json::String(s) => parse_time(s)
                .map(Val::Time)
                .ok_or_else(|| wrong("a time HH:MM:SS[.f]")),
            _ => Err(wrong("a time")),
        },
        ColumnType::Timestamp(declared) => {
            let micros = match json {
                Json::Number(_) => {
                    let n = integer(json).ok_or_else(|| wrong("an integer timestamp"))?;
                    let unit = match semantic {
                        "io.debezium.time.Timestamp"
                        | "org.apache.kafka.connect.data.Timestamp" => Unit::Millis,
                        "io.debezium.time.MicroTimestamp" => Unit::Micros,
                        "io.debezium.time.NanoTimestamp" => Unit::Nanos,
                        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
                            return n
                                .checked_mul(MICROS_PER_DAY)
                                .filter(|m| value::timestamp(*m).is_some())
                                .map(Val::Timestamp)
                                .ok_or_else(|| wrong("a date in range"));
                        }
                        _ => declared,
                    };
                    match unit {
                        Unit::Millis => n.checked_mul(1000),
                        Unit::Micros => Some(n),
                        Unit::Nanos => Some(n.div_euclid(1000)),
                    }
                }
                Json::String(s) => {
                    Some(parse_timestamp(s).ok_or_else(|| wrong("an RFC 3339 timestamp"))?)
                }
                _ => return Err(wrong("a timestamp")),
            };
            micros
                .filter(|m| value::timestamp(*m).is_some())
                .map(Val::Timestamp)
                .ok_or_else(|| wrong("a timestamp in range"))
        }
        ColumnType::Json => match (json, semantic) {
            (Json::String(text), "io.debezium.data.Json") => crate::json::parse_str(text)
                .map(Val::json)
                .map_err(|e| format!("io.debezium.data.Json holds invalid JSON: {e}")),
            (other, _) => Ok(Val::json(other.clone())),
        },
    }
}

/// A JSON integer (no fraction, no exponent) that fits 64 bits.
fn integer(json: &Json) -> Option<i64> {
    match json {
        Json::Number(n) if n.bytes().all(|b| b.is_ascii_digit() || b == b'-') => n.parse().ok(),
        _ => None,
    }
}

fn shorten(json: &Json) -> String {
    let text = json.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

fn decimal(json: &Json, scale: Option<u32>, semantic: &str) -> Result<Dec, String> {
    let wrong = |expected: &str| format!("expected {expected}, found {}", shorten(json));
    match json {
        Json::Number(n) => Dec::parse(n).ok_or_else(|| wrong("a decimal")),
        Json::String(s) => {
            // Decimal text (`decimal.handling.mode=string`) unless the schema says base64.
            if semantic != "org.apache.kafka.connect.data.Decimal" && is_plain_decimal(s) {
                if let Some(d) = Dec::parse(s) {
                    return Ok(d);
                }
            }
            let scale = scale.ok_or_else(|| {
                wrong("decimal text (base64 needs a scale: declare decimal(S) or enable schemas)")
            })?;
            unscaled_base64(s, scale).ok_or_else(|| wrong("base64 of a decimal's unscaled bytes"))
        }
        // io.debezium.data.VariableScaleDecimal
        Json::Object(_) => {
            let scale = json.get("scale").and_then(|s| match s {
                Json::Number(n) => n.parse::<u32>().ok(),
                _ => None,
            });
            match (scale, json.get("value").and_then(Json::as_str)) {
                (Some(scale), Some(value)) => unscaled_base64(value, scale)
                    .ok_or_else(|| wrong("base64 of a decimal's unscaled bytes")),
                _ => Err(wrong("{scale, value}")),
            }
        }
        _ => Err(wrong("a decimal")),
    }
}

/// `[+-]digits[.digits]`: the text of `decimal.handling.mode=string` (never exponents, so that
/// base64 such as `1e10` is not read as a number).
fn is_plain_decimal(text: &str) -> bool {
    let text = text.trim();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty()
        && digits != "."
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Base64 of a big-endian two's complement integer (any length), scaled down by `scale`.
fn unscaled_base64(text: &str, scale: u32) -> Option<Dec> {
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let negative = *bytes.first()? & 0x80 != 0;
    if negative {
        // The magnitude of a negative two's complement number: invert, add one.
        for b in bytes.iter_mut() {
            *b = !*b;
        }
        for b in bytes.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    // Base 256 to base 10 by repeated division.
    let mut digits = Vec::new();
    while bytes.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for b in bytes.iter_mut() {
            let current = remainder * 256 + *b as u32;
            *b = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    digits.reverse();
    let digits = String::from_utf8(digits).ok()?;
    Some(Dec::from_digits(negative, &digits, scale.into()))
}

/// `YYYY-MM-DD` (the first ten characters; a time after them is ignored).
fn parse_date(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    i32::try_from(days).ok()
}

/// `HH:MM:SS[.f]`, with or without a trailing `Z`, to micros since midnight.
fn parse_time(text: &str) -> Option<i64> {
    use chrono::Timelike;
    let t =
        chrono::NaiveTime::parse_from_str(text.strip_suffix('Z').unwrap_or(text), "%H:%M:%S%.f")
            .ok()?;
    Some(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000))
}

/// RFC 3339 with an offset, or `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC, to micros.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc().timestamp_micros())
}
