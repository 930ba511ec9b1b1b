//! Debezium records to upserts: one Kafka record (key and value bytes) of a source topic becomes
//! an upsert of a row, a delete of a primary key, or a truncate of the whole source.
//!
//! Handles the `schema`/`payload` wrapper and plain JSON, the change envelope (`op` c, r, u, d, t)
//! and the flattened form of ExtractNewRecordState (`__deleted`, `__op`), and tombstones. `before`
//! is only read for the key of a delete: the upsert state derives retractions itself.
//! Column values are decoded by [`column`] to the declared types.

pub mod column;

use serde_json::{Map, Value as Json};

use crate::plan::SourcePlan;
use crate::value::{Row, Value};
use column::FieldSchemas;

/// What one record means for its source collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The row with this primary key is now `row` (insert, update, snapshot read).
    Upsert { key: Row, row: Row },
    /// No row has this primary key any more (delete, tombstone).
    Delete { key: Row },
    /// Every row of the source is gone (`op = t`).
    Truncate,
}

/// Why a record could not be decoded. The caller adds topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not valid JSON: {0}")]
    ValueJson(String),
    #[error("value is JSON but not an object (found {0})")]
    NotAnObject(&'static str),
    #[error("unknown Debezium op `{0}` (expected c, r, u, d or t)")]
    UnknownOp(String),
    #[error("op `{op}` without an `{field}` row")]
    MissingRow { op: String, field: &'static str },
    #[error(
        "no primary key: the record has no usable key and the row lacks primary key column `{0}`"
    )]
    MissingKey(String),
    #[error("primary key column `{0}` is null")]
    NullKey(String),
    #[error(
        "the row lacks column `{0}` (was it dropped from the table? the product file uses it)"
    )]
    MissingColumn(String),
    #[error("column `{column}`: {problem}")]
    Column { column: String, problem: String },
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Splits `{"schema": ..., "payload": ...}` into its parts; plain JSON has no schema.
fn unwrap_schema(json: Json) -> (Option<Json>, Json) {
    if let Json::Object(mut map) = json {
        if map.len() == 2 && map.contains_key("schema") && map.contains_key("payload") {
            let payload = map.remove("payload").unwrap_or(Json::Null);
            return (map.remove("schema"), payload);
        }
        return (None, Json::Object(map));
    }
    (None, json)
}

/// Decodes one record of `source`. `None` value bytes (or empty) are a tombstone.
pub fn decode(
    source: &SourcePlan,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Change, DecodeError> {
    let value = match value {
        Some(bytes) if !bytes.is_empty() => serde_json::from_slice::<Json>(bytes)
            .map_err(|e| DecodeError::ValueJson(e.to_string()))?,
        _ => {
            return Ok(Change::Delete {
                key: message_key(source, key)?.ok_or_else(|| missing_key(source))?,
            })
        }
    };
    let (schema, payload) = unwrap_schema(value);
    let payload = match payload {
        Json::Null => {
            return Ok(Change::Delete {
                key: message_key(source, key)?.ok_or_else(|| missing_key(source))?,
            })
        }
        Json::Object(map) => map,
        other => return Err(DecodeError::NotAnObject(json_kind(&other))),
    };
    if is_envelope(&payload) {
        decode_envelope(source, key, schema.as_ref(), payload)
    } else {
        decode_flat(source, key, schema.as_ref(), payload)
    }
}

/// A change envelope has `op` and `before`/`after`; a truncate may carry neither row, but has
/// its `source` block. (A flattened row only has `__op`.)
fn is_envelope(payload: &Map<String, Json>) -> bool {
    let op = payload.get("op").and_then(Json::as_str);
    op.is_some()
        && (payload.contains_key("after")
            || payload.contains_key("before")
            || op == Some("t")
            || payload.get("source").is_some_and(Json::is_object))
}

/// The row a record's value carries, as JSON: the `after` row of a change envelope, or a
/// flattened row without its `__` fields. `None` when there is no row (a tombstone, a delete, a
/// truncate) or the value is not a JSON object. For `denorm check`, which reports the columns
/// and values of the records next to the declared ones.
pub fn record_row(value: Option<&[u8]>) -> Option<Map<String, Json>> {
    let json = serde_json::from_slice::<Json>(value.filter(|v| !v.is_empty())?).ok()?;
    let Json::Object(mut payload) = unwrap_schema(json).1 else {
        return None;
    };
    let mut row = if is_envelope(&payload) {
        match payload.remove("after")? {
            Json::Object(after) => after,
            _ => return None,
        }
    } else {
        payload
    };
    row.retain(|k, _| !k.starts_with("__"));
    Some(row)
}

/// The field names of a record key that is a JSON object (schema-wrapped or not); `None` for a
/// missing, non-JSON or scalar key.
pub fn key_columns(key: Option<&[u8]>) -> Option<Vec<String>> {
    let json = serde_json::from_slice::<Json>(key.filter(|k| !k.is_empty())?).ok()?;
    match unwrap_schema(json).1 {
        Json::Object(map) => Some(map.keys().cloned().collect()),
        _ => None,
    }
}

fn missing_key(source: &SourcePlan) -> DecodeError {
    DecodeError::MissingKey(source.columns[source.key[0]].name.clone())
}

fn decode_envelope(
    source: &SourcePlan,
    key: Option<&[u8]>,
    schema: Option<&Json>,
    mut payload: Map<String, Json>,
) -> Result<Change, DecodeError> {
    let op = payload
        .get("op")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    match op.as_str() {
        "c" | "r" | "u" => {
            let schemas = FieldSchemas::of_envelope(schema, "after");
            match payload.remove("after") {
                Some(Json::Object(after)) => upsert(source, key, &schemas, &after),
                _ => Err(DecodeError::MissingRow { op, field: "after" }),
            }
        }
        "d" => {
            if let Some(key) = message_key(source, key)? {
                return Ok(Change::Delete { key });
            }
            let schemas = FieldSchemas::of_envelope(schema, "before");
            match payload.remove("before") {
                Some(Json::Object(before)) => Ok(Change::Delete {
                    key: row_key(source, &schemas, &before)?,
                }),
                _ => Err(DecodeError::MissingKey(
                    source.columns[source.key[0]].name.clone(),
                )),
            }
        }
        "t" => Ok(Change::Truncate),
        _ => Err(DecodeError::UnknownOp(op)),
    }
}

fn decode_flat(
    source: &SourcePlan,
    key: Option<&[u8]>,
    schema: Option<&Json>,
    payload: Map<String, Json>,
) -> Result<Change, DecodeError> {
    let deleted = match payload.get("__deleted") {
        Some(Json::String(s)) => s == "true",
        Some(Json::Bool(b)) => *b,
        _ => false,
    } || payload.get("__op").and_then(Json::as_str) == Some("d");
    let schemas = FieldSchemas::of_flat(schema);
    if deleted {
        if let Some(key) = message_key(source, key)? {
            return Ok(Change::Delete { key });
        }
        return Ok(Change::Delete {
            key: row_key(source, &schemas, &payload)?,
        });
    }
    if let Some(op) = payload.get("__op").and_then(Json::as_str) {
        if op == "t" {
            return Ok(Change::Truncate);
        }
        if !matches!(op, "c" | "r" | "u") {
            return Err(DecodeError::UnknownOp(op.to_owned()));
        }
    }
    upsert(source, key, &schemas, &payload)
}

fn upsert(
    source: &SourcePlan,
    key: Option<&[u8]>,
    schemas: &FieldSchemas,
    row: &Map<String, Json>,
) -> Result<Change, DecodeError> {
    let mut values = Vec::with_capacity(source.columns.len());
    for column in &source.columns {
        let json = row
            .get(&column.name)
            .ok_or_else(|| DecodeError::MissingColumn(column.name.clone()))?;
        values.push(
            column::decode(json, column.ty, schemas.get(&column.name)).map_err(|problem| {
                DecodeError::Column {
                    column: column.name.clone(),
                    problem,
                }
            })?,
        );
    }
    // The record key first, as for deletes, so that an upsert and a later delete of the same row
    // always name the same key; the row's primary-key columns when there is no usable key.
    let key = match message_key(source, key)? {
        Some(key) => key,
        None => {
            let key_values: Vec<Value> = source.key.iter().map(|&i| values[i].clone()).collect();
            if let Some(i) = key_values.iter().position(Value::is_null) {
                return Err(DecodeError::NullKey(
                    source.columns[source.key[i]].name.clone(),
                ));
            }
            Row::from(key_values)
        }
    };
    Ok(Change::Upsert {
        key,
        row: values.into(),
    })
}

/// The primary key from a row object (`before` of a delete, or a flattened row).
fn row_key(
    source: &SourcePlan,
    schemas: &FieldSchemas,
    row: &Map<String, Json>,
) -> Result<Row, DecodeError> {
    let mut key = Vec::with_capacity(source.key.len());
    for &i in &source.key {
        let column = &source.columns[i];
        let json = row
            .get(&column.name)
            .ok_or_else(|| DecodeError::MissingKey(column.name.clone()))?;
        let value =
            column::decode(json, column.ty, schemas.get(&column.name)).map_err(|problem| {
                DecodeError::Column {
                    column: column.name.clone(),
                    problem,
                }
            })?;
        if value.is_null() {
            return Err(DecodeError::NullKey(column.name.clone()));
        }
        key.push(value);
    }
    Ok(key.into())
}

/// The primary key from the record key: a JSON object with the key columns (schema-wrapped or
/// not), or a bare scalar for a one-column key. `None` when there is no usable key.
pub fn message_key(source: &SourcePlan, key: Option<&[u8]>) -> Result<Option<Row>, DecodeError> {
    let Some(bytes) = key.filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    let Ok(json) = serde_json::from_slice::<Json>(bytes) else {
        return Ok(None);
    };
    let (schema, payload) = unwrap_schema(json);
    match payload {
        Json::Object(map) => {
            let schemas = FieldSchemas::of_flat(schema.as_ref());
            if source
                .key
                .iter()
                .all(|&i| map.contains_key(&source.columns[i].name))
            {
                row_key(source, &schemas, &map).map(Some)
            } else {
                Ok(None)
            }
        }
        Json::Null => Ok(None),
        scalar if source.key.len() == 1 => {
            let column = &source.columns[source.key[0]];
            // A schema-wrapped scalar key (e.g. after ExtractField$Key) carries its own semantic type.
            let field = schema.as_ref().map(column::FieldSchema::of);
            let value = column::decode(&scalar, column.ty, field.as_ref()).map_err(|problem| {
                DecodeError::Column {
                    column: column.name.clone(),
                    problem,
                }
            })?;
            Ok((!value.is_null()).then(|| Row::from(vec![value])))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
