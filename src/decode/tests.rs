//! Debezium records, as the JSON converter writes them, to upserts, deletes and truncates.

use super::*;

use serde_json::json;

use crate::plan::{Column, ColumnType, TimeUnit};
use crate::value::Decimal;

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
    }
}

const MILLIS: ColumnType = ColumnType::Timestamp {
    unit: TimeUnit::Millis,
};

/// `github.public.users`, keyed by email (not the first column).
fn users() -> SourcePlan {
    SourcePlan {
        name: "users".into(),
        topic: "github.public.users".into(),
        columns: vec![
            col("id", ColumnType::Int),
            col("email", ColumnType::String),
            col("username", ColumnType::String),
            col("registered_at", MILLIS),
        ],
        key: vec![1],
    }
}

/// `github.public.stars`: a composite key whose order differs from the column order.
fn stars() -> SourcePlan {
    SourcePlan {
        name: "stars".into(),
        topic: "github.public.stars".into(),
        columns: vec![
            col("repo_name", ColumnType::String),
            col("username", ColumnType::String),
            col("repo_owner", ColumnType::String),
            col("created_at", MILLIS),
        ],
        // username, repo_owner, repo_name
        key: vec![1, 2, 0],
    }
}

/// `shop.public.orders`: a decimal without a declared scale and a timestamp whose unit only the
/// schema knows (declared as millis, sent as micros).
fn orders() -> SourcePlan {
    SourcePlan {
        name: "orders".into(),
        topic: "shop.public.orders".into(),
        columns: vec![
            col("order_id", ColumnType::Int),
            col("total", ColumnType::Decimal { scale: None }),
            col("placed_at", MILLIS),
        ],
        key: vec![0],
    }
}

fn bytes(json: &Json) -> Vec<u8> {
    serde_json::to_vec(json).unwrap()
}

fn decode_json(
    source: &SourcePlan,
    key: Option<&Json>,
    value: &Json,
) -> Result<Change, DecodeError> {
    let key = key.map(bytes);
    decode(source, key.as_deref(), Some(&bytes(value)))
}

fn str(s: &str) -> Value {
    Value::str(s)
}

fn row(values: Vec<Value>) -> Row {
    Row::from_values(&values)
}

/// The `source` block of a PostgreSQL connector record.
fn pg_source(table: &str, snapshot: &str) -> Json {
    json!({
        "version": "2.5.0.Final",
        "connector": "postgresql",
        "name": "github",
        "ts_ms": 1_660_553_637_000i64,
        "snapshot": snapshot,
        "db": "github",
        "sequence": "[\"24023128\",\"24023128\"]",
        "schema": "public",
        "table": table,
        "txId": 555,
        "lsn": 24_023_128,
        "xmin": null
    })
}

/// A change envelope as the JSON converter writes it with `schemas.enable=false`.
fn envelope(op: &str, before: Json, after: Json) -> Json {
    json!({
        "before": before,
        "after": after,
        "source": pg_source("users", if op == "r" { "true" } else { "false" }),
        "op": op,
        "ts_ms": 1_660_553_637_123i64,
        "transaction": null
    })
}

fn ada() -> Json {
    json!({"id": 1, "email": "ada@example.com", "username": "ada", "registered_at": 1_660_553_637_000i64})
}

fn ada_row() -> Row {
    row(vec![
        Value::Int(1),
        str("ada@example.com"),
        str("ada"),
        Value::Timestamp(1_660_553_637_000_000),
    ])
}

fn ada_key() -> Row {
    row(vec![str("ada@example.com")])
}

fn users_key() -> Json {
    json!({"email": "ada@example.com"})
}

// --- The change envelope. ---

#[test]
fn create_read_and_update_are_upserts() {
    for op in ["c", "r"] {
        let change = decode_json(
            &users(),
            Some(&users_key()),
            &envelope(op, Json::Null, ada()),
        )
        .unwrap();
        assert_eq!(
            change,
            Change::Upsert {
                key: ada_key(),
                row: ada_row()
            },
            "op {op}"
        );
    }
    // An update: the new row; `before` (full with REPLICA IDENTITY FULL) is not needed.
    let mut after = ada();
    after["username"] = json!("ada_l");
    let change = decode_json(&users(), Some(&users_key()), &envelope("u", ada(), after)).unwrap();
    let expected = row(vec![
        Value::Int(1),
        str("ada@example.com"),
        str("ada_l"),
        Value::Timestamp(1_660_553_637_000_000),
    ]);
    assert_eq!(
        change,
        Change::Upsert {
            key: ada_key(),
            row: expected
        }
    );
}

#[test]
fn upsert_key_comes_from_the_row_without_a_message_key() {
    let change = decode_json(&users(), None, &envelope("c", Json::Null, ada())).unwrap();
    assert_eq!(
        change,
        Change::Upsert {
            key: ada_key(),
            row: ada_row()
        }
    );
}

#[test]
fn composite_keys_follow_the_declared_key_order() {
    let star = json!({"username": "ada", "repo_name": "engine", "repo_owner": "babbage", "created_at": 1_660_553_637_000i64});
    let key = json!({"username": "ada", "repo_name": "engine", "repo_owner": "babbage"});
    let change = decode_json(
        &stars(),
        Some(&key),
        &envelope("c", Json::Null, star.clone()),
    )
    .unwrap();
    assert_eq!(
        change,
        Change::Upsert {
            key: row(vec![str("ada"), str("babbage"), str("engine")]),
            row: row(vec![
                str("engine"),
                str("ada"),
                str("babbage"),
                Value::Timestamp(1_660_553_637_000_000)
            ]),
        }
    );
    // A delete keyed by the message key, and one keyed by `before`, give the same key.
    let by_key = decode_json(&stars(), Some(&key), &envelope("d", Json::Null, Json::Null)).unwrap();
    let by_before = decode_json(&stars(), None, &envelope("d", star, Json::Null)).unwrap();
    assert_eq!(
        by_key,
        Change::Delete {
            key: row(vec![str("ada"), str("babbage"), str("engine")])
        }
    );
    assert_eq!(by_before, by_key);
}

#[test]
fn delete_with_a_message_key() {
    // PostgreSQL with REPLICA IDENTITY DEFAULT: `before` holds the key columns, the rest null.
    let before =
        json!({"id": null, "email": "ada@example.com", "username": null, "registered_at": null});
    let change = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("d", before, Json::Null),
    )
    .unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
    // The message key is enough: `before` may be null.
    let change = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("d", Json::Null, Json::Null),
    )
    .unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
}

#[test]
fn delete_without_a_message_key_takes_the_key_from_before() {
    // `before` with only the key column, as PostgreSQL may send it.
    let change = decode_json(
        &users(),
        None,
        &envelope("d", json!({"email": "ada@example.com"}), Json::Null),
    )
    .unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
    // A full `before` (REPLICA IDENTITY FULL, MySQL).
    let change = decode_json(&users(), None, &envelope("d", ada(), Json::Null)).unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
    // A message key that is not JSON, or lacks the key columns, is not usable: `before` is.
    let change = decode(
        &users(),
        Some(b"ada@example.com"),
        Some(&bytes(&envelope("d", ada(), Json::Null))),
    )
    .unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
    let change = decode_json(
        &users(),
        Some(&json!({"id": 1})),
        &envelope("d", ada(), Json::Null),
    )
    .unwrap();
    assert_eq!(change, Change::Delete { key: ada_key() });
}

#[test]
fn delete_without_any_key_is_an_error() {
    let err = decode_json(&users(), None, &envelope("d", Json::Null, Json::Null)).unwrap_err();
    assert_eq!(err, DecodeError::MissingKey("email".into()));
    let err =
        decode_json(&users(), None, &envelope("d", json!({"id": 1}), Json::Null)).unwrap_err();
    assert_eq!(err, DecodeError::MissingKey("email".into()));
    let err = decode_json(
        &users(),
        None,
        &envelope("d", json!({"email": null}), Json::Null),
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::NullKey("email".into()));
}

#[test]
fn truncate() {
    let change = decode_json(&users(), None, &envelope("t", Json::Null, Json::Null)).unwrap();
    assert_eq!(change, Change::Truncate);
}

#[test]
fn unknown_op() {
    let err = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("x", Json::Null, ada()),
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::UnknownOp("x".into()));
    assert!(err.to_string().contains("unknown Debezium op `x`"), "{err}");
}

#[test]
fn upsert_without_after_is_an_error() {
    let err = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("u", ada(), Json::Null),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DecodeError::MissingRow {
            op: "u".into(),
            field: "after"
        }
    );
}

// --- Tombstones and keys. ---

#[test]
fn tombstone_with_a_key_is_a_delete() {
    let key = bytes(&users_key());
    assert_eq!(
        decode(&users(), Some(&key), None).unwrap(),
        Change::Delete { key: ada_key() }
    );
    // Empty value bytes are a tombstone too.
    assert_eq!(
        decode(&users(), Some(&key), Some(b"")).unwrap(),
        Change::Delete { key: ada_key() }
    );
}

#[test]
fn tombstone_without_a_key_is_an_error() {
    assert_eq!(
        decode(&users(), None, None).unwrap_err(),
        DecodeError::MissingKey("email".into())
    );
    assert_eq!(
        decode(&users(), Some(b""), None).unwrap_err(),
        DecodeError::MissingKey("email".into())
    );
    // A key object without the key columns is no key.
    let key = bytes(&json!({"id": 1}));
    assert_eq!(
        decode(&users(), Some(&key), None).unwrap_err(),
        DecodeError::MissingKey("email".into())
    );
    // A JSON null key is no key.
    assert_eq!(
        decode(&users(), Some(b"null"), None).unwrap_err(),
        DecodeError::MissingKey("email".into())
    );
}

#[test]
fn a_bare_scalar_key_for_a_one_column_key() {
    assert_eq!(
        decode(&users(), Some(br#""ada@example.com""#), None).unwrap(),
        Change::Delete { key: ada_key() }
    );
    assert_eq!(
        decode(&orders(), Some(b"7"), None).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
    // A scalar of the wrong type names the key column.
    let err = decode(&orders(), Some(br#""seven""#), None).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Column { column, .. } if column == "order_id"),
        "{err:?}"
    );
    // A composite key cannot be a scalar.
    assert_eq!(
        decode(&stars(), Some(br#""ada""#), None).unwrap_err(),
        DecodeError::MissingKey("username".into())
    );
}

#[test]
fn a_schema_wrapped_key() {
    let key = json!({
        "schema": {
            "type": "struct",
            "fields": [{"type": "int64", "optional": false, "field": "order_id"}],
            "optional": false,
            "name": "shop.public.orders.Key"
        },
        "payload": {"order_id": 7}
    });
    assert_eq!(
        decode(&orders(), Some(&bytes(&key)), None).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
    assert_eq!(
        message_key(&orders(), Some(&bytes(&key))).unwrap(),
        Some(row(vec![Value::Int(7)]))
    );

    // The key's schema is used to decode its columns: a MicroTimestamp key column.
    let events = SourcePlan {
        name: "events".into(),
        topic: "shop.public.events".into(),
        columns: vec![col("device", ColumnType::String), col("at", MILLIS)],
        key: vec![0, 1],
    };
    let key = json!({
        "schema": {
            "type": "struct",
            "fields": [
                {"type": "string", "optional": false, "field": "device"},
                {"type": "int64", "optional": false, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "at"}
            ],
            "optional": false,
            "name": "shop.public.events.Key"
        },
        "payload": {"device": "d1", "at": 1_660_553_637_123_456i64}
    });
    assert_eq!(
        decode(&events, Some(&bytes(&key)), None).unwrap(),
        Change::Delete {
            key: row(vec![str("d1"), Value::Timestamp(1_660_553_637_123_456)])
        }
    );
}

// --- The schema/payload wrapper. ---

/// The Connect schema of an orders row: a Decimal(scale 2) and a MicroTimestamp.
fn orders_row_schema(field: Option<&str>) -> Json {
    let mut schema = json!({
        "type": "struct",
        "fields": [
            {"type": "int64", "optional": false, "field": "order_id"},
            {
                "type": "bytes",
                "optional": false,
                "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1,
                "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                "field": "total"
            },
            {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "placed_at"}
        ],
        "optional": true,
        "name": "shop.public.orders.Value"
    });
    if let Some(field) = field {
        schema["field"] = json!(field);
    }
    schema
}

fn orders_envelope_schema() -> Json {
    json!({
        "type": "struct",
        "fields": [
            orders_row_schema(Some("before")),
            orders_row_schema(Some("after")),
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": false, "field": "version"},
                    {"type": "string", "optional": false, "field": "connector"},
                    {"type": "string", "optional": false, "field": "name"},
                    {"type": "int64", "optional": false, "field": "ts_ms"},
                    {"type": "string", "optional": false, "field": "schema"},
                    {"type": "string", "optional": false, "field": "table"}
                ],
                "optional": false,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source"
            },
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"}
        ],
        "optional": false,
        "name": "shop.public.orders.Envelope",
        "version": 1
    })
}

/// 123.45: unscaled 12345 = 0x3039, base64 of the big-endian bytes.
const TOTAL_B64: &str = "MDk=";

fn order_7() -> Json {
    json!({"order_id": 7, "total": TOTAL_B64, "placed_at": 1_660_553_637_123_456i64})
}

fn order_7_row() -> Row {
    row(vec![
        Value::Int(7),
        Value::decimal(Decimal::parse("123.45").unwrap()),
        Value::Timestamp(1_660_553_637_123_456),
    ])
}

#[test]
fn schema_wrapped_envelope_uses_the_after_schema() {
    let value = json!({
        "schema": orders_envelope_schema(),
        "payload": {
            "before": null,
            "after": order_7(),
            "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "shop", "ts_ms": 1_660_553_637_000i64, "schema": "public", "table": "orders"},
            "op": "c",
            "ts_ms": 1_660_553_637_200i64
        }
    });
    let change = decode_json(&orders(), None, &value).unwrap();
    assert_eq!(
        change,
        Change::Upsert {
            key: row(vec![Value::Int(7)]),
            row: order_7_row()
        }
    );
}

#[test]
fn schema_wrapped_envelope_delete_uses_the_before_schema() {
    let value = json!({
        "schema": orders_envelope_schema(),
        "payload": {"before": order_7(), "after": null, "source": {}, "op": "d", "ts_ms": 1}
    });
    assert_eq!(
        decode_json(&orders(), None, &value).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
}

#[test]
fn schema_wrapped_flattened_row() {
    let mut schema = orders_row_schema(None);
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "string", "optional": true, "field": "__deleted"}));
    let mut payload = order_7();
    payload["__deleted"] = json!("false");
    let value = json!({"schema": schema, "payload": payload});
    assert_eq!(
        decode_json(&orders(), None, &value).unwrap(),
        Change::Upsert {
            key: row(vec![Value::Int(7)]),
            row: order_7_row()
        }
    );
}

#[test]
fn without_the_schema_the_same_record_decodes_differently_or_not_at_all() {
    // The decimal's scale is only in the schema: without it, base64 is an error naming the column.
    let err = decode_json(&orders(), None, &order_7()).unwrap_err();
    match &err {
        DecodeError::Column { column, problem } => {
            assert_eq!(column, "total");
            assert!(problem.contains("needs a scale"), "{problem}");
        }
        other => panic!("expected a column error, got {other:?}"),
    }
}

#[test]
fn payload_null_is_a_delete_by_key() {
    let value = json!({"schema": orders_envelope_schema(), "payload": null});
    let key = json!({"order_id": 7});
    assert_eq!(
        decode_json(&orders(), Some(&key), &value).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
    assert_eq!(
        decode_json(&orders(), None, &value).unwrap_err(),
        DecodeError::MissingKey("order_id".into())
    );
    // A bare JSON null value, too.
    assert_eq!(
        decode_json(&orders(), Some(&key), &Json::Null).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
}

// --- The flattened form (ExtractNewRecordState). ---

#[test]
fn flattened_rows_are_upserts() {
    let change = decode_json(&users(), Some(&users_key()), &ada()).unwrap();
    assert_eq!(
        change,
        Change::Upsert {
            key: ada_key(),
            row: ada_row()
        }
    );
    // With add.fields=op,table,source.ts_ms and delete.handling.mode=rewrite.
    let mut value = ada();
    value["__op"] = json!("u");
    value["__table"] = json!("users");
    value["__source_ts_ms"] = json!(1_660_553_637_000i64);
    value["__deleted"] = json!("false");
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Upsert {
            key: ada_key(),
            row: ada_row()
        }
    );
}

#[test]
fn flattened_deleted_true_is_a_delete() {
    let mut value = ada();
    value["__deleted"] = json!("true");
    assert_eq!(
        decode_json(&users(), Some(&users_key()), &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
    // Without a message key, the key comes from the row.
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
    // A boolean `__deleted` works as well.
    value["__deleted"] = json!(true);
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
    // The deleted row may hold only its key (PostgreSQL's `before`).
    let value = json!({"id": null, "email": "ada@example.com", "username": null, "registered_at": null, "__deleted": "true"});
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
}

#[test]
fn flattened_op_d_is_a_delete() {
    let mut value = ada();
    value["__op"] = json!("d");
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
    assert_eq!(
        decode_json(&users(), Some(&users_key()), &value).unwrap(),
        Change::Delete { key: ada_key() }
    );
}

#[test]
fn flattened_ops_t_and_unknown() {
    let mut value = ada();
    value["__op"] = json!("t");
    assert_eq!(
        decode_json(&users(), None, &value).unwrap(),
        Change::Truncate
    );
    value["__op"] = json!("z");
    assert_eq!(
        decode_json(&users(), None, &value).unwrap_err(),
        DecodeError::UnknownOp("z".into())
    );
}

// --- Malformed records. ---

#[test]
fn malformed_json() {
    let err = decode(&users(), None, Some(br#"{"before": null, "after": {"#)).unwrap_err();
    assert!(matches!(err, DecodeError::ValueJson(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("value is not valid JSON"),
        "{err}"
    );
}

#[test]
fn not_an_object() {
    assert_eq!(
        decode_json(&users(), None, &json!([ada()])).unwrap_err(),
        DecodeError::NotAnObject("an array")
    );
    assert_eq!(
        decode_json(&users(), None, &json!("ada")).unwrap_err(),
        DecodeError::NotAnObject("a string")
    );
    let wrapped = json!({"schema": {"type": "string"}, "payload": 12});
    assert_eq!(
        decode_json(&users(), None, &wrapped).unwrap_err(),
        DecodeError::NotAnObject("a number")
    );
}

#[test]
fn a_missing_declared_column() {
    let mut after = ada();
    after.as_object_mut().unwrap().remove("registered_at");
    let err = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("c", Json::Null, after.clone()),
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::MissingColumn("registered_at".into()));
    assert!(
        err.to_string().contains("lacks column `registered_at`"),
        "{err}"
    );
    // Flattened too.
    assert_eq!(
        decode_json(&users(), None, &after).unwrap_err(),
        DecodeError::MissingColumn("registered_at".into())
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_column() {
    let mut after = ada();
    after["id"] = json!("1");
    let err = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("c", Json::Null, after),
    )
    .unwrap_err();
    match &err {
        DecodeError::Column { column, problem } => {
            assert_eq!(column, "id");
            assert!(
                problem.contains("expected an integer") && problem.contains("\"1\""),
                "{problem}"
            );
        }
        other => panic!("expected a column error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("column `id`: expected an integer"),
        "{err}"
    );

    let mut after = ada();
    after["registered_at"] = json!("last tuesday");
    let err = decode_json(&users(), None, &envelope("u", Json::Null, after)).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Column { column, .. } if column == "registered_at"),
        "{err:?}"
    );
}

#[test]
fn a_null_primary_key_column() {
    let mut after = ada();
    after["email"] = Json::Null;
    let err = decode_json(&users(), None, &envelope("c", Json::Null, after.clone())).unwrap_err();
    assert_eq!(err, DecodeError::NullKey("email".into()));
    assert_eq!(err.to_string(), "primary key column `email` is null");
    // One null column of a composite key is enough.
    let star =
        json!({"username": "ada", "repo_name": null, "repo_owner": "babbage", "created_at": 1});
    assert_eq!(
        decode_json(&stars(), None, &envelope("c", Json::Null, star)).unwrap_err(),
        DecodeError::NullKey("repo_name".into())
    );
    // Null non-key columns are fine.
    let mut after = ada();
    after["username"] = Json::Null;
    let Change::Upsert { row, .. } =
        decode_json(&users(), None, &envelope("c", Json::Null, after)).unwrap()
    else {
        panic!("an upsert")
    };
    assert_eq!(row.values()[2], Value::Null);
}

#[test]
fn extra_columns_are_ignored() {
    let mut after = ada();
    after["bio"] = json!("Analyst");
    after["avatar_url"] = json!({"nested": [1, 2]});
    let change = decode_json(
        &users(),
        Some(&users_key()),
        &envelope("c", Json::Null, after.clone()),
    )
    .unwrap();
    assert_eq!(
        change,
        Change::Upsert {
            key: ada_key(),
            row: ada_row()
        }
    );
    assert_eq!(
        decode_json(&users(), None, &after).unwrap(),
        Change::Upsert {
            key: ada_key(),
            row: ada_row()
        }
    );
}

#[test]
fn a_schema_wrapped_scalar_key_uses_its_schema() {
    // A key reduced to one field by ExtractField$Key keeps a primitive schema with its semantic
    // type: here a Decimal of scale 2 that the product declares as plain `decimal`.
    let prices = SourcePlan {
        name: "prices".into(),
        topic: "shop.public.prices".into(),
        columns: vec![
            col("price", ColumnType::Decimal { scale: None }),
            col("label", ColumnType::String),
        ],
        key: vec![0],
    };
    let key = json!({
        "schema": {
            "type": "bytes",
            "optional": false,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "10"}
        },
        "payload": TOTAL_B64
    });
    let price = Value::decimal(Decimal::parse("123.45").unwrap());
    assert_eq!(
        decode(&prices, Some(&bytes(&key)), None).unwrap(),
        Change::Delete {
            key: row(vec![price])
        }
    );
    // A schema-wrapped plain scalar.
    let key = json!({"schema": {"type": "int64", "optional": false}, "payload": 7});
    assert_eq!(
        decode(&orders(), Some(&bytes(&key)), None).unwrap(),
        Change::Delete {
            key: row(vec![Value::Int(7)])
        }
    );
}

#[test]
fn record_row_and_key_columns_show_what_the_record_carries() {
    let columns = |value: &Json| {
        record_row(Some(&bytes(value))).map(|r| r.keys().cloned().collect::<Vec<String>>())
    };
    let envelope = json!({"before": null, "after": {"id": 1, "email": "a", "extra": 2}, "op": "c", "source": {}});
    assert_eq!(
        columns(&envelope),
        Some(vec!["id".into(), "email".into(), "extra".into()])
    );
    assert_eq!(
        record_row(Some(&bytes(&envelope))).unwrap()["extra"],
        json!(2)
    );
    let flat = json!({"schema": {"type": "struct", "fields": []}, "payload": {"id": 1, "__deleted": "false", "__op": "c"}});
    assert_eq!(columns(&flat), Some(vec!["id".into()]));
    let delete = json!({"before": {"id": 1}, "after": null, "op": "d", "source": {}});
    assert_eq!(columns(&delete), None);
    assert_eq!(record_row(None), None);
    assert_eq!(record_row(Some(b"[1]")), None);
    assert_eq!(
        key_columns(Some(
            br#"{"schema": {}, "payload": {"order_id": 1, "line_no": 2}}"#
        )),
        Some(vec!["order_id".into(), "line_no".into()])
    );
    assert_eq!(key_columns(Some(b"7")), None);
    assert_eq!(key_columns(None), None);
}

// --- One decoder for a stream: the schema cache. ---

/// An orders row schema with another decimal scale and another timestamp unit.
fn orders_row_schema_with(scale: &str, time: &str) -> Json {
    let mut schema = orders_row_schema(None);
    schema["fields"][1]["parameters"]["scale"] = json!(scale);
    schema["fields"][2]["name"] = json!(time);
    schema
}

fn wrapped(schema: &Json, payload: Json) -> Vec<u8> {
    bytes(&json!({"schema": schema, "payload": payload}))
}

#[test]
fn one_decoder_alternating_two_schemas_decodes_each_record_by_its_own() {
    let micros = orders_row_schema(None);
    let millis = orders_row_schema_with("3", "io.debezium.time.Timestamp");
    let by_micros = Change::Upsert {
        key: row(vec![Value::Int(7)]),
        row: order_7_row(),
    };
    let by_millis = Change::Upsert {
        key: row(vec![Value::Int(7)]),
        row: row(vec![
            Value::Int(7),
            Value::decimal(Decimal::parse("12.345").unwrap()),
            Value::Timestamp(1_660_553_637_123_456_000),
        ]),
    };
    let mut decoder = Decoder::new();
    for _ in 0..3 {
        for (schema, expected) in [(&micros, &by_micros), (&millis, &by_millis)] {
            let value = wrapped(schema, order_7());
            assert_eq!(
                &decoder.decode(&orders(), None, Some(&value)).unwrap(),
                expected
            );
            // The same as a decoder that never saw another schema.
            assert_eq!(&decode(&orders(), None, Some(&value)).unwrap(), expected);
        }
    }
}

#[test]
fn a_schema_change_mid_stream_gives_the_new_types() {
    let mut decoder = Decoder::new();
    let old = wrapped(&orders_row_schema(None), order_7());
    assert_eq!(
        decoder.decode(&orders(), None, Some(&old)).unwrap(),
        Change::Upsert {
            key: row(vec![Value::Int(7)]),
            row: order_7_row()
        }
    );
    // More distinct schemas than the cache holds, then the first one again: each is right.
    for scale in 0..(SCHEMA_CACHE_SIZE as u32 + 2) {
        let schema = orders_row_schema_with(&scale.to_string(), "io.debezium.time.Timestamp");
        let value = wrapped(&schema, order_7());
        let Change::Upsert { row: got, .. } =
            decoder.decode(&orders(), None, Some(&value)).unwrap()
        else {
            panic!("not an upsert");
        };
        let expected = Decimal::new(12345, scale);
        let got = got.values();
        assert_eq!(got.get(1), Some(&Value::decimal(expected)), "scale {scale}");
        assert_eq!(
            got.get(2),
            Some(&Value::Timestamp(1_660_553_637_123_456_000))
        );
    }
    assert_eq!(
        decoder.decode(&orders(), None, Some(&old)).unwrap(),
        Change::Upsert {
            key: row(vec![Value::Int(7)]),
            row: order_7_row()
        }
    );
    // Schemas switched off: the record decodes as without any schema.
    assert!(matches!(
        decoder.decode(&orders(), None, Some(&bytes(&order_7()))),
        Err(DecodeError::Column { .. })
    ));
}

#[test]
fn a_repeated_key_keeps_its_last_value_and_escapes_are_read() {
    let value = br#"{"id": 1, "email": "a\u0064a@example.com", "username": "ada\"l", "registered_at": 0, "id": 2}"#;
    let Change::Upsert { key, row: got } = decode(&users(), None, Some(value)).unwrap() else {
        panic!("not an upsert");
    };
    assert_eq!(key, row(vec![str("ada@example.com")]));
    let got = got.values();
    assert_eq!(got.first(), Some(&Value::Int(2)));
    assert_eq!(got.get(2), Some(&str("ada\"l")));
    // A wrapper whose `payload` repeats: the last one.
    let value = br#"{"payload": null, "schema": null, "payload": {"id": 1, "email": "e", "username": "u", "registered_at": 0}}"#;
    assert!(matches!(
        decode(&users(), None, Some(value)),
        Ok(Change::Upsert { .. })
    ));
}

#[test]
fn integers_that_are_not_plain_digits_decode_as_before() {
    let record =
        |id: &str| format!(r#"{{"id": {id}, "email": "e", "username": "u", "registered_at": 0}}"#);
    let id = |text: &str| match decode(&users(), None, Some(record(text).as_bytes())) {
        Ok(Change::Upsert { row, .. }) => Ok(row.values().first().cloned()),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(id("-12").unwrap(), Some(Value::Int(-12)));
    assert_eq!(
        id("9223372036854775807").unwrap(),
        Some(Value::Int(i64::MAX))
    );
    assert!(id("-0").is_err());
    assert!(id("1.0").is_err());
    assert!(id("1e2").is_err());
    assert!(id("9223372036854775808").is_err());
}

#[test]
fn a_seen_schema_is_not_read_again_but_the_record_still_is() {
    let schema = orders_row_schema(None);
    let text = serde_json::to_string(&schema).unwrap();
    let payload = serde_json::to_string(&order_7()).unwrap();
    let upsert_7 = Change::Upsert {
        key: row(vec![Value::Int(7)]),
        row: order_7_row(),
    };
    let mut decoder = Decoder::new();
    let record = format!(r#"{{"schema":{text},"payload":{payload}}}"#);
    for _ in 0..2 {
        assert_eq!(
            decoder
                .decode(&orders(), None, Some(record.as_bytes()))
                .unwrap(),
            upsert_7
        );
    }
    // Each like a decoder that never saw the schema.
    let same = |decoder: &mut Decoder, record: &str| {
        assert_eq!(
            decoder.decode(&orders(), None, Some(record.as_bytes())),
            decode(&orders(), None, Some(record.as_bytes())),
            "{record}"
        );
    };
    same(&mut decoder, &format!("{record} \n"));
    same(&mut decoder, &format!("{record} x"));
    same(
        &mut decoder,
        &format!(r#"{{"schema":{text},"payload":null}}"#),
    );
    same(
        &mut decoder,
        &format!(r#"{{"schema":{text},"payload":[1]}}"#),
    );
    same(
        &mut decoder,
        &format!(r#"{{"schema":{text},"payload":{{"order_id": }}}}"#),
    );
    same(
        &mut decoder,
        &format!(r#"{{"schema":{text},"payload":{payload},"extra":1}}"#),
    );
    // The last `schema` wins: here one without the decimal's scale.
    let other = serde_json::to_string(&json!({"type": "struct", "fields": []})).unwrap();
    let last = format!(r#"{{"schema":{text},"payload":{payload},"schema":{other}}}"#);
    same(&mut decoder, &last);
    assert!(matches!(
        decoder.decode(&orders(), None, Some(last.as_bytes())),
        Err(DecodeError::Column { .. })
    ));
}
