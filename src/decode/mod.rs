//! Debezium records to upserts: one Kafka record (key and value bytes) of a source topic becomes
//! an upsert of a row, a delete of a primary key, or a truncate of the whole source.
//!
//! Handles the `schema`/`payload` wrapper and plain JSON, the change envelope (`op` c, r, u, d, t)
//! and the flattened form of ExtractNewRecordState (`__deleted`, `__op`), and tombstones. `before`
//! is only read for the key of a delete: the upsert state derives retractions itself.
//! Column values are decoded by [`column`] to the declared types.

pub mod column;
mod raw;
pub mod table;

pub use table::Table;

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use crate::plan::{Column, ColumnType, SourcePlan};
use crate::row::{Row, RowWriter};
use crate::value::Value;
use column::FieldSchemas;
use raw::{Doc, Object};

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
    #[error(
        "the record key ({key}) names another row than the row's primary key columns ({row}); Debezium keys a record by its row's primary key: is `primary_key` the table's?"
    )]
    KeyMismatch { key: String, row: String },
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

/// Decodes one record of `source`. `None` value bytes (or empty) are a tombstone. For a handful
/// of records; a stream of them goes through one [`Decoder`], which parses each schema once.
pub fn decode(
    source: &SourcePlan,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Change, DecodeError> {
    Decoder::new().decode(source, key, value)
}

/// How many distinct schemas a [`Decoder`] keeps, for values and for keys each. Debezium
/// schemas change rarely (a DDL); a few entries cover a change in flight between partitions.
const SCHEMA_CACHE_SIZE: usize = 4;

/// What one Connect schema says about the rows it describes, parsed once per distinct schema.
#[derive(Debug, Default)]
struct Schemas {
    /// A flat row (an unwrapped value, or a key): `fields` at the top.
    flat: FieldSchemas,
    /// The `after` struct of a change envelope.
    after: FieldSchemas,
    /// The `before` struct of a change envelope.
    before: FieldSchemas,
    /// The whole schema as one field (a scalar key); `None` without a schema.
    whole: Option<column::FieldSchema>,
}

impl Schemas {
    fn of(schema: &Json) -> Schemas {
        Schemas {
            flat: FieldSchemas::of_flat(Some(schema)),
            after: FieldSchemas::of_envelope(Some(schema), "after"),
            before: FieldSchemas::of_envelope(Some(schema), "before"),
            whole: Some(column::FieldSchema::of(schema)),
        }
    }
}

/// The last few distinct schemas, by their exact JSON text.
#[derive(Debug, Default)]
struct SchemaCache {
    /// Oldest first.
    entries: Vec<(Box<str>, Arc<Schemas>)>,
    /// For records without a schema.
    none: Arc<Schemas>,
}

impl SchemaCache {
    fn get(&mut self, schema: Option<&RawValue>) -> Result<Arc<Schemas>, serde_json::Error> {
        let Some(schema) = schema else {
            return Ok(self.none.clone());
        };
        let text = schema.get();
        if let Some((_, schemas)) = self.entries.iter().find(|(t, _)| **t == *text) {
            return Ok(schemas.clone());
        }
        let schemas = Arc::new(Schemas::of(&serde_json::from_str::<Json>(text)?));
        if self.entries.len() >= SCHEMA_CACHE_SIZE {
            self.entries.remove(0);
        }
        self.entries.push((text.into(), schemas.clone()));
        Ok(schemas)
    }

    /// A record as the JSON converter writes it, `{"schema":S,"payload":P}` without spaces, whose
    /// schema text S is one already seen: its schemas and the payload, without scanning S again.
    /// `None` for anything else (the caller then parses the whole record): a seen S was valid
    /// JSON, and a JSON value ends where it ends, so the record reads exactly as when parsed whole.
    fn known_wrapper<'a>(&self, bytes: &'a [u8]) -> Option<(Arc<Schemas>, Doc<'a>)> {
        let after_head = bytes.strip_prefix(br#"{"schema":"#)?;
        let (text, schemas) = self
            .entries
            .iter()
            .rev()
            .find(|(text, _)| after_head.starts_with(text.as_bytes()))?;
        let rest = after_head[text.len()..].strip_prefix(br#","payload":"#)?;
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Doc<'a>>();
        let payload = stream.next()?.ok()?;
        let tail = rest.get(stream.byte_offset()..)?.strip_prefix(b"}")?;
        tail.iter()
            .all(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
            .then(|| (schemas.clone(), payload))
    }
}

/// Decodes the records of a stream: one per reader (a source, a worker). Parses each record one
/// level deep at a time and only the declared columns' values; keeps the field schemas of the
/// last few distinct Connect schemas, so a schema is parsed once, not once per record. Holds no
/// plan: the same decoder serves a source whose plan changes (a product added or removed).
#[derive(Debug, Default)]
pub struct Decoder {
    values: SchemaCache,
    keys: SchemaCache,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one record of `source`. `None` value bytes (or empty) are a tombstone.
    pub fn decode(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Change, DecodeError> {
        let bytes = match value {
            Some(bytes) if !bytes.is_empty() => bytes,
            _ => return self.tombstone(source, key),
        };
        let (known, schema, payload) = match self.values.known_wrapper(bytes) {
            Some((schemas, payload)) => (Some(schemas), None, payload),
            None => match raw::parse(bytes).map_err(invalid)? {
                Doc::Object(object) if object.is_schema_wrapper() => {
                    let payload = object.get("payload").map(raw::parse_raw).transpose();
                    let payload = payload.map_err(invalid)?.unwrap_or(Doc::Null);
                    (None, object.get("schema"), payload)
                }
                doc => (None, None, doc),
            },
        };
        let payload = match payload {
            Doc::Null => return self.tombstone(source, key),
            Doc::Object(object) => object,
            Doc::Other(kind) => return Err(DecodeError::NotAnObject(kind)),
        };
        let schemas = match known {
            Some(schemas) => schemas,
            None => self.values.get(schema).map_err(invalid)?,
        };
        if is_envelope(&payload) {
            self.decode_envelope(source, key, &schemas, &payload)
        } else {
            self.decode_flat(source, key, &schemas, &payload)
        }
    }

    fn tombstone(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
    ) -> Result<Change, DecodeError> {
        Ok(Change::Delete {
            key: self
                .message_key(source, key)?
                .ok_or_else(|| missing_key(source))?,
        })
    }

    fn decode_envelope(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
        schemas: &Schemas,
        payload: &Object,
    ) -> Result<Change, DecodeError> {
        let op = payload.get("op").and_then(raw::as_str).unwrap_or_default();
        match &*op {
            "c" | "r" | "u" => match row_object(payload.get("after"))? {
                Some(after) => self.upsert(source, key, &schemas.after, &after),
                None => Err(DecodeError::MissingRow {
                    op: op.into_owned(),
                    field: "after",
                }),
            },
            "d" => {
                if let Some(key) = self.message_key(source, key)? {
                    return Ok(Change::Delete { key });
                }
                match row_object(payload.get("before"))? {
                    Some(before) => Ok(Change::Delete {
                        key: row_key(source, &schemas.before, &before)?,
                    }),
                    None => Err(missing_key(source)),
                }
            }
            "t" => Ok(Change::Truncate),
            _ => Err(DecodeError::UnknownOp(op.into_owned())),
        }
    }

    fn decode_flat(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
        schemas: &Schemas,
        payload: &Object,
    ) -> Result<Change, DecodeError> {
        let flat_op = payload.get("__op").and_then(raw::as_str);
        let deleted = match payload.get("__deleted") {
            Some(raw) => match raw::as_str(raw) {
                Some(s) => s == "true",
                None => raw::as_bool(raw).unwrap_or(false),
            },
            None => false,
        } || flat_op.as_deref() == Some("d");
        if deleted {
            if let Some(key) = self.message_key(source, key)? {
                return Ok(Change::Delete { key });
            }
            return Ok(Change::Delete {
                key: row_key(source, &schemas.flat, payload)?,
            });
        }
        if let Some(op) = flat_op {
            if op == "t" {
                return Ok(Change::Truncate);
            }
            if !matches!(&*op, "c" | "r" | "u") {
                return Err(DecodeError::UnknownOp(op.into_owned()));
            }
        }
        self.upsert(source, key, &schemas.flat, payload)
    }

    fn upsert(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
        schemas: &FieldSchemas,
        row: &Object,
    ) -> Result<Change, DecodeError> {
        let mut writer = RowWriter::new();
        for column in &source.columns {
            let raw = row
                .get(&column.name)
                .ok_or_else(|| DecodeError::MissingColumn(column.name.clone()))?;
            decode_column_into(raw, column, schemas.get(&column.name), &mut writer)?;
        }
        let row = writer.finish();
        // The row's primary-key columns are its key. The record key, when it has them, must
        // name the same row: a later delete names its row by the record key.
        let mut key_bytes = Vec::new();
        if !row.as_ref().project(&source.key, &mut key_bytes) {
            let null = source
                .key
                .iter()
                .find(|&&i| row.as_ref().datum(i).is_null())
                .unwrap_or(&source.key[0]);
            return Err(DecodeError::NullKey(source.columns[*null].name.clone()));
        }
        let row_key = Row::from(key_bytes);
        if let Some(record_key) = self.message_key(source, key)? {
            if record_key != row_key {
                return Err(DecodeError::KeyMismatch {
                    key: shown(&record_key),
                    row: shown(&row_key),
                });
            }
        }
        Ok(Change::Upsert { key: row_key, row })
    }

    /// The primary key from the record key: a JSON object with the key columns (schema-wrapped
    /// or not), or a bare scalar for a one-column key. `None` when there is no usable key.
    pub fn message_key(
        &mut self,
        source: &SourcePlan,
        key: Option<&[u8]>,
    ) -> Result<Option<Row>, DecodeError> {
        let Some(bytes) = key.filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let Ok(whole) = serde_json::from_slice::<&RawValue>(bytes) else {
            return Ok(None);
        };
        let (schema, payload) = match raw::parse_raw(whole) {
            Ok(Doc::Object(object)) if object.is_schema_wrapper() => {
                match (object.get("schema"), object.get("payload")) {
                    (Some(schema), Some(payload)) => (Some(schema), payload),
                    _ => return Ok(None),
                }
            }
            Ok(_) => (None, whole),
            Err(_) => return Ok(None),
        };
        let Ok(schemas) = self.keys.get(schema) else {
            return Ok(None);
        };
        match raw::parse_raw(payload) {
            Ok(Doc::Object(map)) => {
                if source
                    .key
                    .iter()
                    .all(|&i| map.contains_key(&source.columns[i].name))
                {
                    row_key(source, &schemas.flat, &map).map(Some)
                } else {
                    Ok(None)
                }
            }
            Ok(Doc::Null) | Err(_) => Ok(None),
            Ok(Doc::Other(_)) if source.key.len() == 1 => {
                let column = &source.columns[source.key[0]];
                // A schema-wrapped scalar key (e.g. after ExtractField$Key) carries its own
                // semantic type.
                let value = decode_column(payload, column, schemas.whole.as_ref())?;
                Ok((!value.is_null()).then(|| Row::from_values([&value])))
            }
            Ok(Doc::Other(_)) => Ok(None),
        }
    }
}

/// Key values as a message shows them: JSON scalars, comma-separated.
fn shown(key: &Row) -> String {
    let mut out = String::new();
    for (i, datum) in key.as_ref().datums().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        crate::value::write_scalar(&datum.to_value(), &mut out);
    }
    out
}

fn invalid(e: serde_json::Error) -> DecodeError {
    DecodeError::ValueJson(e.to_string())
}

/// The row object a change envelope's `after` or `before` holds; `None` when it is missing or
/// not an object.
fn row_object(raw: Option<&RawValue>) -> Result<Option<Object<'_>>, DecodeError> {
    match raw.filter(|r| raw::is_object(r)).map(raw::parse_raw) {
        Some(Ok(Doc::Object(object))) => Ok(Some(object)),
        Some(Err(e)) => Err(invalid(e)),
        _ => Ok(None),
    }
}

/// One declared column's value from its raw JSON, written to a row. Plain strings and integers
/// are written without a value in between.
fn decode_column_into(
    raw: &RawValue,
    column: &Column,
    schema: Option<&column::FieldSchema>,
    row: &mut RowWriter,
) -> Result<(), DecodeError> {
    let text = raw.get();
    match column.ty {
        ColumnType::String => {
            if let Some(plain) = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|t| !t.contains('\\'))
            {
                row.push_str(plain);
                return Ok(());
            }
        }
        ColumnType::Int => {
            if let Some(i) = plain_int(text) {
                row.push_int(i);
                return Ok(());
            }
        }
        _ => {}
    }
    row.push(&decode_column(raw, column, schema)?);
    Ok(())
}

/// A JSON integer written as plain digits (`-0` is a float to serde_json, not an integer).
fn plain_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    (text != "-0" && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<i64>().ok())
        .flatten()
}

/// One declared column's value from its raw JSON. Plain strings and integers skip the JSON tree.
fn decode_column(
    raw: &RawValue,
    column: &Column,
    schema: Option<&column::FieldSchema>,
) -> Result<Value, DecodeError> {
    let text = raw.get();
    let fast = match column.ty {
        ColumnType::String => text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .filter(|t| !t.contains('\\'))
            .map(Value::str),
        ColumnType::Int => plain_int(text).map(Value::Int),
        _ => None,
    };
    if let Some(value) = fast {
        return Ok(value);
    }
    let json = serde_json::from_str::<Json>(text).map_err(invalid)?;
    column::decode(&json, column.ty, schema).map_err(|problem| DecodeError::Column {
        column: column.name.clone(),
        problem,
    })
}

/// A change envelope has `op` and `before`/`after`; a truncate may carry neither row, but has
/// its `source` block. (A flattened row only has `__op`.)
fn is_envelope(payload: &Object) -> bool {
    let op = payload.get("op").and_then(raw::as_str);
    op.is_some()
        && (payload.contains_key("after")
            || payload.contains_key("before")
            || op.as_deref() == Some("t")
            || payload.get("source").is_some_and(raw::is_object))
}

/// The same test on a parsed object, for [`record_row`].
fn is_envelope_json(payload: &Map<String, Json>) -> bool {
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
    let mut row = if is_envelope_json(&payload) {
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

/// The primary key from a row object (`before` of a delete, a flattened row, a record key).
fn row_key(source: &SourcePlan, schemas: &FieldSchemas, row: &Object) -> Result<Row, DecodeError> {
    let mut key = Vec::with_capacity(source.key.len());
    for &i in &source.key {
        let column = &source.columns[i];
        let raw = row
            .get(&column.name)
            .ok_or_else(|| DecodeError::MissingKey(column.name.clone()))?;
        let value = decode_column(raw, column, schemas.get(&column.name))?;
        if value.is_null() {
            return Err(DecodeError::NullKey(column.name.clone()));
        }
        key.push(value);
    }
    Ok(Row::from_values(&key))
}

/// The primary key from the record key: a JSON object with the key columns (schema-wrapped or
/// not), or a bare scalar for a one-column key. `None` when there is no usable key.
pub fn message_key(source: &SourcePlan, key: Option<&[u8]>) -> Result<Option<Row>, DecodeError> {
    Decoder::new().message_key(source, key)
}

#[cfg(test)]
mod tests;
