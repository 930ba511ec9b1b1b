//! One Debezium record (key and value bytes) of a source topic to what it means for the source's
//! table: an upsert of a row, a delete of a primary key, or a truncate.
//!
//! The contract is the README's "Input: Debezium records":
//! - the value with or without the `{"schema":…,"payload":…}` wrapper (an object with exactly
//!   those two fields); a null value, an empty one, or a null payload is a tombstone (a delete of
//!   the record key);
//! - the change envelope (`op` with `before`/`after`, or a truncate): `c`, `r`, `u` upsert
//!   `after`; `d` deletes the record key, else the primary key of `before`; `t` truncates;
//! - otherwise the flattened row of ExtractNewRecordState: `__deleted` `"true"` (or `true`) or
//!   `__op` `d` delete (the record key, else the row's primary key); `__op` `t` truncates; `c`,
//!   `r`, `u` or no `__op` upsert the row;
//! - the key comes from the record key (a JSON object with every primary key column, wrapped
//!   in a schema or not, or a bare value for a one-column key), else from the row's primary key
//!   columns; a null key column is an error;
//! - every declared column must be in the row (null is a value); other columns are ignored.

use crate::column::{self, FieldSchema};
use crate::json::{self, Json};
use crate::product::Source;
use crate::value::Val;

/// What one record means for its source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The row of this primary key is now `row` (one value per declared column).
    Upsert { key: Vec<Val>, row: Vec<Val> },
    /// No row has this primary key any more.
    Delete { key: Vec<Val> },
    /// Every row is gone.
    Truncate,
}

/// Field schemas by name; empty without a schema.
type Schemas = Vec<(String, FieldSchema)>;

fn lookup<'s>(schemas: &'s Schemas, name: &str) -> Option<&'s FieldSchema> {
    schemas.iter().find(|(n, _)| n == name).map(|(_, s)| s)
}

/// `(schema, payload)` of a schema-wrapped value; `(None, value)` otherwise.
fn unwrap(value: Json) -> (Option<Json>, Json) {
    match value {
        Json::Object(fields)
            if fields.len() == 2
                && fields.iter().any(|(n, _)| n == "schema")
                && fields.iter().any(|(n, _)| n == "payload") =>
        {
            let mut schema = None;
            let mut payload = Json::Null;
            for (name, value) in fields {
                if name == "schema" {
                    schema = Some(value);
                } else {
                    payload = value;
                }
            }
            (schema, payload)
        }
        other => (None, other),
    }
}

/// Decodes one record of `source`. The error says why, without the record's place.
pub fn decode(source: &Source, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Change, String> {
    let Some(bytes) = value.filter(|v| !v.is_empty()) else {
        return tombstone(source, key);
    };
    let (schema, payload) =
        unwrap(json::parse(bytes).map_err(|e| format!("value is not valid JSON: {e}"))?);
    if payload == Json::Null {
        return tombstone(source, key);
    }
    if !matches!(payload, Json::Object(_)) {
        return Err(format!(
            "value is JSON but not an object (found {})",
            payload.kind()
        ));
    }
    let op = payload.get("op").and_then(Json::as_str);
    let envelope = op.is_some()
        && (payload.get("after").is_some()
            || payload.get("before").is_some()
            || op == Some("t")
            || matches!(payload.get("source"), Some(Json::Object(_))));
    if envelope {
        let part = |name: &str| -> Schemas {
            match schema.as_ref().and_then(|s| s.get("fields")) {
                Some(Json::Array(parts)) => parts
                    .iter()
                    .find(|p| p.get("field").and_then(Json::as_str) == Some(name))
                    .map(|p| column::struct_fields(Some(p)))
                    .unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        let op = op.unwrap_or_default();
        match op {
            "c" | "r" | "u" => match payload.get("after") {
                Some(after @ Json::Object(_)) => upsert(source, key, &part("after"), after),
                _ => Err(format!("op `{op}` without an `after` row")),
            },
            "d" => {
                if let Some(key) = record_key(source, key)? {
                    return Ok(Change::Delete { key });
                }
                match payload.get("before") {
                    Some(before @ Json::Object(_)) => Ok(Change::Delete {
                        key: row_key(source, &part("before"), before)?,
                    }),
                    _ => Err(no_key(source)),
                }
            }
            "t" => Ok(Change::Truncate),
            other => Err(format!(
                "unknown Debezium op `{other}` (expected c, r, u, d or t)"
            )),
        }
    } else {
        let schemas = column::struct_fields(schema.as_ref());
        let flat_op = payload.get("__op").and_then(Json::as_str);
        let deleted = match payload.get("__deleted") {
            Some(Json::String(s)) => s == "true",
            Some(Json::Bool(b)) => *b,
            _ => false,
        } || flat_op == Some("d");
        if deleted {
            return Ok(Change::Delete {
                key: match record_key(source, key)? {
                    Some(key) => key,
                    None => row_key(source, &schemas, &payload)?,
                },
            });
        }
        match flat_op {
            Some("t") => Ok(Change::Truncate),
            None | Some("c" | "r" | "u") => upsert(source, key, &schemas, &payload),
            Some(other) => Err(format!(
                "unknown Debezium op `{other}` (expected c, r, u, d or t)"
            )),
        }
    }
}

fn tombstone(source: &Source, key: Option<&[u8]>) -> Result<Change, String> {
    match record_key(source, key)? {
        Some(key) => Ok(Change::Delete { key }),
        None => Err(format!(
            "a tombstone without a usable key: {}",
            no_key(source)
        )),
    }
}

fn no_key(source: &Source) -> String {
    let names: Vec<&str> = source
        .key
        .iter()
        .map(|&k| source.columns[k].name.as_str())
        .collect();
    format!(
        "no primary key: the record has no usable key and no row with {}",
        names.join(", ")
    )
}

fn upsert(
    source: &Source,
    key: Option<&[u8]>,
    schemas: &Schemas,
    row: &Json,
) -> Result<Change, String> {
    let mut values = Vec::with_capacity(source.columns.len());
    for column in &source.columns {
        let raw = row.get(&column.name).ok_or_else(|| {
            format!(
                "the row lacks column `{}` (was it dropped from the table?)",
                column.name
            )
        })?;
        values.push(
            column::decode(raw, column.ty, lookup(schemas, &column.name))
                .map_err(|e| format!("column `{}`: {e}", column.name))?,
        );
    }
    let key = match record_key(source, key)? {
        Some(key) => key,
        None => {
            let key: Vec<Val> = source.key.iter().map(|&k| values[k].clone()).collect();
            if let Some(null) = key.iter().position(Val::is_null) {
                return Err(format!(
                    "primary key column `{}` is null",
                    source.columns[source.key[null]].name
                ));
            }
            key
        }
    };
    Ok(Change::Upsert { key, row: values })
}

/// The primary key columns of a row object.
fn row_key(source: &Source, schemas: &Schemas, row: &Json) -> Result<Vec<Val>, String> {
    source
        .key
        .iter()
        .map(|&k| {
            let column = &source.columns[k];
            let raw = row.get(&column.name).ok_or_else(|| no_key(source))?;
            let value = column::decode(raw, column.ty, lookup(schemas, &column.name))
                .map_err(|e| format!("key column `{}`: {e}", column.name))?;
            if value.is_null() {
                return Err(format!("primary key column `{}` is null", column.name));
            }
            Ok(value)
        })
        .collect()
}

/// The primary key from the record key, or `None` when the key is missing, not JSON, null, or
/// lacks a primary key column. A key column of the wrong type, or null, is an error.
pub fn record_key(source: &Source, key: Option<&[u8]>) -> Result<Option<Vec<Val>>, String> {
    let Some(bytes) = key.filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let Ok(parsed) = json::parse(bytes) else {
        return Ok(None);
    };
    let (schema, payload) = unwrap(parsed);
    match &payload {
        Json::Object(_) => {
            let all = source
                .key
                .iter()
                .all(|&k| payload.get(&source.columns[k].name).is_some());
            if !all {
                return Ok(None);
            }
            row_key(source, &column::struct_fields(schema.as_ref()), &payload).map(Some)
        }
        Json::Null => Ok(None),
        _ if source.key.len() == 1 => {
            let column = &source.columns[source.key[0]];
            let whole = schema.as_ref().map(FieldSchema::of);
            let value = column::decode(&payload, column.ty, whole.as_ref())
                .map_err(|e| format!("key column `{}`: {e}", column.name))?;
            Ok((!value.is_null()).then(|| vec![value]))
        }
        _ => Ok(None),
    }
}
