//! One column value of a Debezium row to a [`Value`] of its declared type, using the Kafka
//! Connect schema when the record carries one: decimals (base64 `precise`, `string`, `double`,
//! VariableScaleDecimal), `io.debezium.time.*` and Connect's logical date/time types.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value as Json;

use crate::plan::{ColumnType, TimeUnit};
use crate::value::temporal;
use crate::value::{Decimal, Value, F64};

/// What a Connect schema says about one field: its semantic type name and decimal scale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSchema {
    pub name: Option<String>,
    pub scale: Option<u32>,
}

/// The field schemas of one row, by column name. Empty without a schema.
#[derive(Debug, Default)]
pub struct FieldSchemas(HashMap<String, FieldSchema>);

impl FieldSchemas {
    pub fn get(&self, column: &str) -> Option<&FieldSchema> {
        self.0.get(column)
    }

    /// The schema of a flat row (an unwrapped value, or a key): `fields` at the top.
    pub fn of_flat(schema: Option<&Json>) -> FieldSchemas {
        FieldSchemas(
            schema
                .and_then(|s| s.get("fields"))
                .and_then(Json::as_array)
                .map(|fields| collect(fields))
                .unwrap_or_default(),
        )
    }

    /// The schema of the `after` or `before` struct of a change envelope.
    pub fn of_envelope(schema: Option<&Json>, part: &str) -> FieldSchemas {
        let fields = schema
            .and_then(|s| s.get("fields"))
            .and_then(Json::as_array)
            .and_then(|fields| {
                fields
                    .iter()
                    .find(|f| f.get("field").and_then(Json::as_str) == Some(part))
            })
            .and_then(|f| f.get("fields"))
            .and_then(Json::as_array);
        FieldSchemas(fields.map(|f| collect(f)).unwrap_or_default())
    }
}

impl FieldSchema {
    /// What one Connect schema (a struct's field, or a whole scalar key) says.
    pub fn of(schema: &Json) -> FieldSchema {
        let name = schema.get("name").and_then(Json::as_str).map(str::to_owned);
        let scale = schema
            .get("parameters")
            .and_then(|p| p.get("scale"))
            .and_then(|s| match s {
                Json::String(s) => s.parse().ok(),
                Json::Number(n) => n.as_u64().map(|n| n as u32),
                _ => None,
            });
        FieldSchema { name, scale }
    }
}

fn collect(fields: &[Json]) -> HashMap<String, FieldSchema> {
    fields
        .iter()
        .filter_map(|f| Some((f.get("field")?.as_str()?.to_owned(), FieldSchema::of(f))))
        .collect()
}

fn wrong(expected: &str, found: &Json) -> String {
    let text = found.to_string();
    let shown = if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary(60)])
    } else {
        text
    };
    format!("expected {expected}, found {shown}")
}

/// Decodes one column. `Err` says what was expected and what came.
pub fn decode(json: &Json, ty: ColumnType, schema: Option<&FieldSchema>) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let semantic = schema.and_then(|s| s.name.as_deref());
    match ty {
        ColumnType::String => match json {
            Json::String(s) => Ok(Value::str(s)),
            other => Err(wrong("a string", other)),
        },
        ColumnType::Int => match json {
            Json::Number(n) if n.as_i64().is_some() => {
                Ok(Value::Int(n.as_i64().unwrap_or_default()))
            }
            other => Err(wrong("an integer", other)),
        },
        ColumnType::Float => match json {
            Json::Number(n) => Ok(Value::Float(F64(n.as_f64().unwrap_or(f64::NAN)))),
            Json::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
                Ok(Value::Float(F64(s.parse().unwrap_or(f64::NAN))))
            }
            other => Err(wrong("a number", other)),
        },
        ColumnType::Bool => match json {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            other => Err(wrong("a boolean", other)),
        },
        ColumnType::Decimal { scale } => {
            decimal(json, schema.and_then(|s| s.scale).or(scale), semantic).map(Value::decimal)
        }
        ColumnType::Date => match json {
            Json::Number(n) => match semantic {
                // Debezium and Connect `Date` count days; a timestamp-typed date column counts ms.
                Some("io.debezium.time.Timestamp")
                | Some("org.apache.kafka.connect.data.Timestamp") => Ok(Value::Date(
                    n.as_i64()
                        .ok_or_else(|| wrong("an integer", json))?
                        .div_euclid(86_400_000) as i32,
                )),
                _ => n
                    .as_i64()
                    .and_then(|d| i32::try_from(d).ok())
                    .map(Value::Date)
                    .ok_or_else(|| wrong("days since 1970-01-01", json)),
            },
            Json::String(s) => temporal::parse_date(s)
                .map(Value::Date)
                .ok_or_else(|| wrong("a date YYYY-MM-DD", json)),
            other => Err(wrong("a date", other)),
        },
        ColumnType::Time => match json {
            Json::Number(n) => {
                let v = n.as_i64().ok_or_else(|| wrong("an integer time", json))?;
                Ok(Value::Time(match semantic {
                    Some("io.debezium.time.Time") | Some("org.apache.kafka.connect.data.Time") => v
                        .checked_mul(1000)
                        .ok_or_else(|| wrong("a time in range", json))?,
                    Some("io.debezium.time.NanoTime") => v / 1000,
                    _ => v, // io.debezium.time.MicroTime, and schema-less integers
                }))
            }
            Json::String(s) => temporal::parse_time(s)
                .map(Value::Time)
                .ok_or_else(|| wrong("a time HH:MM:SS[.f]", json)),
            other => Err(wrong("a time", other)),
        },
        ColumnType::Timestamp { unit } => match json {
            Json::Number(n) => {
                let v = n
                    .as_i64()
                    .ok_or_else(|| wrong("an integer timestamp", json))?;
                let unit = match semantic {
                    Some("io.debezium.time.Timestamp")
                    | Some("org.apache.kafka.connect.data.Timestamp") => TimeUnit::Millis,
                    Some("io.debezium.time.MicroTimestamp") => TimeUnit::Micros,
                    Some("io.debezium.time.NanoTimestamp") => TimeUnit::Nanos,
                    Some("io.debezium.time.Date") | Some("org.apache.kafka.connect.data.Date") => {
                        return v
                            .checked_mul(86_400_000_000)
                            .map(Value::Timestamp)
                            .ok_or_else(|| wrong("a date in range", json));
                    }
                    _ => unit,
                };
                Ok(Value::Timestamp(match unit {
                    TimeUnit::Millis => v
                        .checked_mul(1000)
                        .ok_or_else(|| wrong("a timestamp in range", json))?,
                    // A deliberate bug for the tests of `denorm verify`: micros read as millis.
                    TimeUnit::Micros if crate::fault::on(crate::fault::Fault::TimestampUnit) => v
                        .checked_mul(1000)
                        .ok_or_else(|| wrong("a timestamp in range", json))?,
                    TimeUnit::Micros => v,
                    TimeUnit::Nanos => v.div_euclid(1000),
                }))
            }
            Json::String(s) => temporal::parse_timestamp(s)
                .map(Value::Timestamp)
                .ok_or_else(|| wrong("an ISO-8601 timestamp", json)),
            other => Err(wrong("a timestamp", other)),
        },
        ColumnType::Json => match (json, semantic) {
            (Json::String(s), Some("io.debezium.data.Json")) => {
                let parsed: Json = serde_json::from_str(s)
                    .map_err(|e| format!("io.debezium.data.Json holds invalid JSON: {e}"))?;
                Ok(Value::Json(parsed.to_string().into()))
            }
            (other, _) => Ok(Value::Json(other.to_string().into())),
        },
    }
}

fn decimal(json: &Json, scale: Option<u32>, semantic: Option<&str>) -> Result<Decimal, String> {
    match json {
        // decimal.handling.mode=double, or a plain JSON number: keep the exact text.
        Json::Number(n) => Decimal::parse(&n.to_string())
            .or_else(|| n.as_f64().and_then(Decimal::from_f64))
            .ok_or_else(|| wrong("a decimal", json)),
        Json::String(s) => {
            let base64_expected = semantic == Some("org.apache.kafka.connect.data.Decimal");
            if !base64_expected {
                // decimal.handling.mode=string
                if let Some(d) = Decimal::parse(s) {
                    return Ok(d);
                }
            }
            match scale {
                Some(scale) => unscaled_base64(s)
                    .map(|u| Decimal::new(u, scale))
                    .ok_or_else(|| wrong("base64 of a decimal's unscaled bytes", json)),
                None => Err(wrong(
                    "decimal text (base64 needs a scale: declare decimal(S) or enable schemas)",
                    json,
                )),
            }
        }
        // io.debezium.data.VariableScaleDecimal: {"scale": 2, "value": "<base64>"}
        Json::Object(map) => {
            let scale = map
                .get("scale")
                .and_then(Json::as_u64)
                .ok_or_else(|| wrong("{scale, value}", json))? as u32;
            let value = map
                .get("value")
                .and_then(Json::as_str)
                .ok_or_else(|| wrong("{scale, value}", json))?;
            unscaled_base64(value)
                .map(|u| Decimal::new(u, scale))
                .ok_or_else(|| wrong("base64 of a decimal's unscaled bytes", json))
        }
        other => Err(wrong("a decimal", other)),
    }
}

/// Big-endian two's complement bytes, base64 encoded, to an integer (up to 16 bytes).
fn unscaled_base64(text: &str) -> Option<i128> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 16];
    buf[16 - bytes.len()..].copy_from_slice(&bytes);
    Some(i128::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(name: &str, scale: Option<u32>) -> FieldSchema {
        FieldSchema {
            name: Some(name.into()),
            scale,
        }
    }

    #[test]
    fn decimals_in_every_mode() {
        let d =
            |j: Json, s: Option<&FieldSchema>| decode(&j, ColumnType::Decimal { scale: None }, s);
        let precise = schema("org.apache.kafka.connect.data.Decimal", Some(4));
        assert_eq!(
            d(json!("dzWUAA=="), Some(&precise)).unwrap(),
            Value::decimal(Decimal::parse("200000.0000").unwrap())
        );
        assert_eq!(
            d(
                json!("/w=="),
                Some(&schema("org.apache.kafka.connect.data.Decimal", Some(0)))
            )
            .unwrap(),
            Value::decimal(Decimal::new(-1, 0))
        );
        assert_eq!(
            d(json!("12.50"), None).unwrap(),
            Value::decimal(Decimal::parse("12.5").unwrap())
        );
        assert_eq!(
            d(json!(12.5), None).unwrap(),
            Value::decimal(Decimal::parse("12.5").unwrap())
        );
        assert_eq!(
            d(json!({"scale": 2, "value": "AQ=="}), None).unwrap(),
            Value::decimal(Decimal::parse("0.01").unwrap())
        );
        assert!(d(json!("dzWUAA=="), None)
            .unwrap_err()
            .contains("needs a scale"));
        assert_eq!(
            decode(
                &json!("dzWUAA=="),
                ColumnType::Decimal { scale: Some(4) },
                None
            )
            .unwrap(),
            Value::decimal(Decimal::parse("200000").unwrap())
        );
        assert!(d(json!(true), None).is_err());
    }

    #[test]
    fn times_by_semantic_type() {
        let ts = ColumnType::Timestamp {
            unit: TimeUnit::Millis,
        };
        assert_eq!(
            decode(
                &json!(1_660_553_637_000i64),
                ts,
                Some(&schema("io.debezium.time.Timestamp", None))
            )
            .unwrap(),
            Value::Timestamp(1_660_553_637_000_000)
        );
        assert_eq!(
            decode(
                &json!(1_660_553_637_000_000i64),
                ts,
                Some(&schema("io.debezium.time.MicroTimestamp", None))
            )
            .unwrap(),
            Value::Timestamp(1_660_553_637_000_000)
        );
        assert_eq!(
            decode(
                &json!(1_660_553_637_000_000_000i64),
                ts,
                Some(&schema("io.debezium.time.NanoTimestamp", None))
            )
            .unwrap(),
            Value::Timestamp(1_660_553_637_000_000)
        );
        assert_eq!(
            decode(
                &json!("2022-08-15T08:53:57Z"),
                ts,
                Some(&schema("io.debezium.time.ZonedTimestamp", None))
            )
            .unwrap(),
            Value::Timestamp(1_660_553_637_000_000)
        );
        assert_eq!(
            decode(&json!(1_660_553_637_000i64), ts, None).unwrap(),
            Value::Timestamp(1_660_553_637_000_000)
        );
        assert_eq!(
            decode(
                &json!(19_219),
                ColumnType::Date,
                Some(&schema("io.debezium.time.Date", None))
            )
            .unwrap(),
            Value::Date(19_219)
        );
        assert_eq!(
            decode(
                &json!(3_723_000),
                ColumnType::Time,
                Some(&schema("io.debezium.time.Time", None))
            )
            .unwrap(),
            Value::Time(3_723_000_000)
        );
        assert_eq!(
            decode(
                &json!(3_723_000_000i64),
                ColumnType::Time,
                Some(&schema("io.debezium.time.MicroTime", None))
            )
            .unwrap(),
            Value::Time(3_723_000_000)
        );
        assert!(decode(&json!("yesterday"), ts, None).is_err());
    }

    #[test]
    fn wrong_types_are_errors_and_null_is_null() {
        assert!(decode(&json!("12"), ColumnType::Int, None)
            .unwrap_err()
            .contains("expected an integer"));
        assert!(decode(&json!(1.5), ColumnType::Int, None).is_err());
        assert!(decode(&json!(12), ColumnType::String, None).is_err());
        assert_eq!(
            decode(&Json::Null, ColumnType::Int, None).unwrap(),
            Value::Null
        );
        assert_eq!(
            decode(&json!(1), ColumnType::Bool, None).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(&json!({"a": [1]}), ColumnType::Json, None).unwrap(),
            Value::Json(r#"{"a":[1]}"#.into())
        );
        assert_eq!(
            decode(
                &json!("{\"a\":1}"),
                ColumnType::Json,
                Some(&schema("io.debezium.data.Json", None))
            )
            .unwrap(),
            Value::Json(r#"{"a":1}"#.into())
        );
    }
}
