//! The decoder on hand-written Debezium records: both forms, schemas on and off, keys in every
//! shape, and Debezium's time and decimal encodings.

use super::source;
use crate::column::{decode as column, ColumnType, FieldSchema, Unit};
use crate::decode::{decode, Change};
use crate::json::{parse_str, Dec, Json};
use crate::value::Val;

fn dec(text: &str) -> Val {
    Val::Decimal(Dec::parse(text).unwrap())
}

fn s(text: &str) -> Val {
    Val::Str(text.to_owned())
}

fn upsert(change: Change) -> (Vec<Val>, Vec<Val>) {
    match change {
        Change::Upsert { key, row } => (key, row),
        other => panic!("expected an upsert, got {other:?}"),
    }
}

/// An update of PostgreSQL's `inventory.orders` as Debezium's JSON converter writes it with
/// schemas on: `numeric(10,2)` as Connect Decimal bytes, `timestamptz` as ZonedTimestamp, `date`
/// as days, `timestamp` as MicroTimestamp; `before` null (default replica identity).
const POSTGRES_UPDATE: &str = r#"{"schema":{"type":"struct","fields":[
 {"type":"struct","fields":[
  {"type":"int32","optional":false,"default":0,"field":"id"},
  {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"total"},
  {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"placed_at"},
  {"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"ship_on"},
  {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"updated"},
  {"type":"string","optional":true,"field":"note"}],"optional":true,"name":"dbserver1.inventory.orders.Value","field":"before"},
 {"type":"struct","fields":[
  {"type":"int32","optional":false,"default":0,"field":"id"},
  {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"total"},
  {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"placed_at"},
  {"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"ship_on"},
  {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"updated"},
  {"type":"string","optional":true,"field":"note"}],"optional":true,"name":"dbserver1.inventory.orders.Value","field":"after"},
 {"type":"struct","fields":[{"type":"string","optional":false,"field":"connector"},{"type":"int64","optional":false,"field":"lsn"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"},
 {"type":"string","optional":false,"field":"op"},
 {"type":"int64","optional":true,"field":"ts_ms"}],"optional":false,"name":"dbserver1.inventory.orders.Envelope","version":1},
"payload":{"before":null,
 "after":{"id":1001,"total":"AeI6","placed_at":"2024-03-01T10:15:30.250+01:00","ship_on":19783,"updated":1709288130000001,"note":"say \"hi\"\n"},
 "source":{"connector":"postgresql","lsn":24023128},"op":"u","ts_ms":1709288131000}}"#;

const POSTGRES_KEY: &str = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"default":0,"field":"id"}],"optional":false,"name":"dbserver1.inventory.orders.Key"},"payload":{"id":1001}}"#;

const ORDERS: &str = r#"{ id = "int", total = "decimal", placed_at = "timestamp", ship_on = "date", updated = "timestamp", note = "text" }"#;

#[test]
fn a_postgres_update_with_schemas() {
    let orders = source(ORDERS, &["id"]);
    let (key, row) = upsert(
        decode(
            &orders,
            Some(POSTGRES_KEY.as_bytes()),
            Some(POSTGRES_UPDATE.as_bytes()),
        )
        .unwrap(),
    );
    assert_eq!(key, [Val::Int(1001)]);
    assert_eq!(row[1], dec("1234.50"));
    assert_eq!(row[1].to_json().to_string(), "1234.5");
    // 10:15:30.250 at +01:00 is 09:15:30.250 UTC.
    assert_eq!(
        row[2].to_json().to_string(),
        r#""2024-03-01T09:15:30.250Z""#
    );
    assert_eq!(row[3].to_json().to_string(), r#""2024-03-01""#);
    assert_eq!(
        row[4].to_json().to_string(),
        r#""2024-03-01T10:15:30.000001Z""#
    );
    assert_eq!(row[5], s("say \"hi\"\n"));
    // The delete that follows: before holds the key only, the record key decides.
    let delete = r#"{"before":{"id":1001,"total":null,"placed_at":null,"ship_on":null,"updated":null,"note":null},"after":null,"source":{"connector":"postgresql"},"op":"d","ts_ms":1}"#;
    assert_eq!(
        decode(
            &orders,
            Some(POSTGRES_KEY.as_bytes()),
            Some(delete.as_bytes())
        )
        .unwrap(),
        Change::Delete {
            key: vec![Val::Int(1001)]
        }
    );
    // Without a record key, `before` gives it; the tombstone after it needs the record key.
    assert_eq!(
        decode(&orders, None, Some(delete.as_bytes())).unwrap(),
        Change::Delete {
            key: vec![Val::Int(1001)]
        }
    );
    assert_eq!(
        decode(&orders, Some(POSTGRES_KEY.as_bytes()), None).unwrap(),
        Change::Delete {
            key: vec![Val::Int(1001)]
        }
    );
    assert!(decode(&orders, None, None)
        .unwrap_err()
        .contains("no usable key"));
    // A truncate carries no rows.
    let truncate = r#"{"schema":{"type":"struct","fields":[]},"payload":{"before":null,"after":null,"source":{"connector":"postgresql"},"op":"t","ts_ms":1}}"#;
    assert_eq!(
        decode(&orders, None, Some(truncate.as_bytes())).unwrap(),
        Change::Truncate
    );
}

/// A MySQL insert with schemas on: `DECIMAL(8,2)` as Connect Decimal, `DATETIME` as
/// io.debezium.time.Timestamp (ms), `TIMESTAMP` as ZonedTimestamp, a negative price.
const MYSQL_INSERT: &str = r#"{"schema":{"type":"struct","fields":[
 {"type":"struct","fields":[
  {"type":"int64","optional":false,"field":"sku_id"},
  {"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"8"},"field":"price"},
  {"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","version":1,"field":"listed"},
  {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"changed"},
  {"type":"int16","optional":true,"field":"active"}],"optional":true,"name":"mysql1.shop.skus.Value","field":"after"}],
 "optional":false,"name":"mysql1.shop.skus.Envelope"},
"payload":{"before":null,"after":{"sku_id":7,"price":"+y4=","listed":1709288130123,"changed":"2024-03-01T10:15:30Z","active":1},
 "source":{"version":"2.7.0.Final","connector":"mysql","name":"mysql1","db":"shop","table":"skus","file":"mysql-bin.000003","pos":154},"op":"c","ts_ms":1709288131000}}"#;

const SKUS: &str = r#"{ sku_id = "long", price = "decimal", listed = "timestamp(us)", changed = "timestamp", active = "boolean" }"#;

#[test]
fn a_mysql_insert_with_schemas_and_without() {
    let skus = source(SKUS, &["sku_id"]);
    // A bare key (ExtractField$Key) for a one-column primary key.
    let (key, row) = upsert(decode(&skus, Some(b"7"), Some(MYSQL_INSERT.as_bytes())).unwrap());
    assert_eq!(key, [Val::Int(7)]);
    assert_eq!(row[1], dec("-12.34"));
    // The schema's unit (ms) wins over the declared `timestamp(us)`.
    assert_eq!(
        row[2].to_json().to_string(),
        r#""2024-03-01T10:15:30.123Z""#
    );
    assert_eq!(row[3].to_json().to_string(), r#""2024-03-01T10:15:30Z""#);
    assert_eq!(row[4], Val::Bool(true));
    // The same row with schemas off and decimal.handling.mode=string: the declared unit counts.
    let plain = r#"{"before":null,"after":{"sku_id":7,"price":"-12.340","listed":1709288130123000,"changed":"2024-03-01T10:15:30Z","active":0,"extra":"ignored"},"source":{"connector":"mysql"},"op":"r","ts_ms":1}"#;
    let (key, plain_row) =
        upsert(decode(&skus, Some(br#"{"sku_id":7}"#), Some(plain.as_bytes())).unwrap());
    assert_eq!(key, [Val::Int(7)]);
    assert_eq!(plain_row[..4], row[..4]);
    assert_eq!(plain_row[4], Val::Bool(false));
    // decimal.handling.mode=double.
    let double = plain.replace(r#""-12.340""#, "-12.34");
    assert_eq!(
        upsert(decode(&skus, None, Some(double.as_bytes())).unwrap()).1[1],
        dec("-12.34")
    );
}

#[test]
fn the_flattened_form_with_and_without_schema() {
    let t = source(
        r#"{ id = "int", name = "string", at = "timestamp(ns)" }"#,
        &["id"],
    );
    let row = r#"{"id":3,"name":"x","at":1709288130000000999,"__op":"c","__deleted":"false"}"#;
    let (key, values) = upsert(decode(&t, None, Some(row.as_bytes())).unwrap());
    assert_eq!(key, [Val::Int(3)]);
    assert_eq!(values[2].to_json().to_string(), r#""2024-03-01T10:15:30Z""#);
    let deleted = row.replace(r#""__deleted":"false""#, r#""__deleted":"true""#);
    assert_eq!(
        decode(&t, None, Some(deleted.as_bytes())).unwrap(),
        Change::Delete {
            key: vec![Val::Int(3)]
        }
    );
    let by_op = row.replace(r#""__op":"c""#, r#""__op":"d""#);
    assert_eq!(
        decode(&t, None, Some(by_op.as_bytes())).unwrap(),
        Change::Delete {
            key: vec![Val::Int(3)]
        }
    );
    let truncate = row.replace(r#""__op":"c""#, r#""__op":"t""#);
    assert_eq!(
        decode(&t, None, Some(truncate.as_bytes())).unwrap(),
        Change::Truncate
    );
    // Schema-wrapped, with ISO text for the timestamp and a schema-wrapped key object.
    let wrapped = r#"{"schema":{"type":"struct","fields":[{"type":"int64","field":"id"},{"type":"string","field":"name"},{"type":"string","name":"io.debezium.time.ZonedTimestamp","field":"at"}]},"payload":{"id":4,"name":null,"at":"2024-03-01 10:15:30.5","__deleted":"false"}}"#;
    let key = r#"{"schema":{"type":"struct","fields":[{"type":"int64","field":"id"}]},"payload":{"id":4}}"#;
    let (key, values) = upsert(decode(&t, Some(key.as_bytes()), Some(wrapped.as_bytes())).unwrap());
    assert_eq!(key, [Val::Int(4)]);
    assert_eq!(values[1], Val::Null);
    assert_eq!(
        values[2].to_json().to_string(),
        r#""2024-03-01T10:15:30.500Z""#
    );
    // A null payload is a tombstone.
    let null = r#"{"schema":{"type":"struct"},"payload":null}"#;
    assert_eq!(
        decode(&t, Some(b"{\"id\":4}"), Some(null.as_bytes())).unwrap(),
        Change::Delete {
            key: vec![Val::Int(4)]
        }
    );
}

#[test]
fn records_that_cannot_be_decoded_say_why() {
    let t = source(r#"{ id = "int", name = "string" }"#, &["id"]);
    for (value, says) in [
        ("{nope", "not valid JSON"),
        ("[1]", "not an object"),
        (
            r#"{"before":null,"after":{"id":1,"name":"a"},"op":"x"}"#,
            "unknown Debezium op `x`",
        ),
        (
            r#"{"before":null,"after":null,"op":"c"}"#,
            "without an `after` row",
        ),
        (r#"{"id":1}"#, "lacks column `name`"),
        (
            r#"{"id":"1","name":"a"}"#,
            "column `id`: expected an integer",
        ),
        (r#"{"id":1.5,"name":"a"}"#, "expected an integer"),
        (
            r#"{"id":null,"name":"a"}"#,
            "primary key column `id` is null",
        ),
        (
            r#"{"id":1,"name":"a","__op":"z"}"#,
            "unknown Debezium op `z`",
        ),
    ] {
        let e = decode(&t, None, Some(value.as_bytes())).unwrap_err();
        assert!(e.contains(says), "{value}: {e}");
    }
    // A usable record key wins over the row's columns; an unusable one falls back to them.
    let (key, _) =
        upsert(decode(&t, Some(br#"{"id":9}"#), Some(br#"{"id":1,"name":"a"}"#)).unwrap());
    assert_eq!(key, [Val::Int(9)]);
    for unusable in [&b"not json"[..], b"{\"other\":1}", b"null", b""] {
        let (key, _) = upsert(decode(&t, Some(unusable), Some(br#"{"id":1,"name":"a"}"#)).unwrap());
        assert_eq!(key, [Val::Int(1)]);
    }
    assert!(decode(&t, Some(br#"{"id":"x"}"#), None)
        .unwrap_err()
        .contains("key column `id`"));
}

fn schema(name: &str, scale: Option<u32>) -> FieldSchema {
    FieldSchema {
        name: Some(name.to_owned()),
        scale,
    }
}

fn value(json: &str, ty: &str, schema: Option<&FieldSchema>) -> Result<String, String> {
    column(
        &parse_str(json).unwrap(),
        ColumnType::parse(ty).unwrap(),
        schema,
    )
    .map(|v| v.to_json().to_string())
}

#[test]
fn debeziums_encodings_of_times() {
    let ts = |j: &str, name: &str| value(j, "timestamp", Some(&schema(name, None))).unwrap();
    let t0 = r#""2024-03-01T10:15:30Z""#;
    assert_eq!(ts("1709288130000", "io.debezium.time.Timestamp"), t0);
    assert_eq!(
        ts("1709288130000", "org.apache.kafka.connect.data.Timestamp"),
        t0
    );
    assert_eq!(
        ts("1709288130000000", "io.debezium.time.MicroTimestamp"),
        t0
    );
    assert_eq!(
        ts("1709288130000000000", "io.debezium.time.NanoTimestamp"),
        t0
    );
    assert_eq!(
        ts(
            r#""2024-03-01T10:15:30Z""#,
            "io.debezium.time.ZonedTimestamp"
        ),
        t0
    );
    assert_eq!(
        ts("19783", "io.debezium.time.Date"),
        r#""2024-03-01T00:00:00Z""#
    );
    // Without a schema: the declared unit.
    assert_eq!(value("1709288130000", "timestamp", None).unwrap(), t0);
    assert_eq!(value("1709288130000", "timestamp(ms)", None).unwrap(), t0);
    assert_eq!(
        value("1709288130000000", "timestamp(us)", None).unwrap(),
        t0
    );
    assert_eq!(
        value("-1", "timestamp(ns)", None).unwrap(),
        r#""1969-12-31T23:59:59.999999Z""#
    );
    let time = |j: &str, name: Option<&str>| {
        value(j, "time", name.map(|n| schema(n, None)).as_ref()).unwrap()
    };
    assert_eq!(
        time("3723000", Some("io.debezium.time.Time")),
        r#""01:02:03""#
    );
    assert_eq!(
        time("3723000", Some("org.apache.kafka.connect.data.Time")),
        r#""01:02:03""#
    );
    assert_eq!(
        time("3723500000", Some("io.debezium.time.MicroTime")),
        r#""01:02:03.500000""#
    );
    assert_eq!(
        time("3723500000000", Some("io.debezium.time.NanoTime")),
        r#""01:02:03.500000""#
    );
    assert_eq!(time("3723500000", None), r#""01:02:03.500000""#);
    assert_eq!(time(r#""01:02:03.5Z""#, None), r#""01:02:03.500000""#);
    let date = |j: &str, name: Option<&str>| {
        value(j, "date", name.map(|n| schema(n, None)).as_ref()).unwrap()
    };
    assert_eq!(
        date("19783", Some("io.debezium.time.Date")),
        r#""2024-03-01""#
    );
    assert_eq!(date("19783", None), r#""2024-03-01""#);
    assert_eq!(
        date(
            "1709288130000",
            Some("org.apache.kafka.connect.data.Timestamp")
        ),
        r#""2024-03-01""#
    );
    assert_eq!(date(r#""2024-03-01""#, None), r#""2024-03-01""#);
    assert!(value(r#""yesterday""#, "timestamp", None).is_err());
    assert!(value("9223372036854775807", "timestamp", None)
        .unwrap_err()
        .contains("in range"));
}

#[test]
fn debeziums_encodings_of_decimals_and_other_types() {
    let precise = schema("org.apache.kafka.connect.data.Decimal", Some(2));
    assert_eq!(
        value(r#""AeI6""#, "decimal", Some(&precise)).unwrap(),
        "1234.5"
    );
    assert_eq!(
        value(
            r#""/w==""#,
            "decimal",
            Some(&schema("org.apache.kafka.connect.data.Decimal", Some(0)))
        )
        .unwrap(),
        "-1"
    );
    assert_eq!(value(r#""AA==""#, "decimal", Some(&precise)).unwrap(), "0");
    // Longer than 128 bits.
    assert_eq!(
        value(r#""DJ8snNBGdO3qQAAABw==""#, "decimal(3)", None).unwrap(),
        "1000000000000000000000000000.007"
    );
    // Schema-less base64 takes the declared scale; the schema's wins over it.
    assert_eq!(value(r#""JiWg""#, "decimal(4)", None).unwrap(), "250");
    assert_eq!(
        value(r#""JiWg""#, "decimal(4)", Some(&precise)).unwrap(),
        "25000"
    );
    assert!(value(r#""JiWg""#, "decimal", None)
        .unwrap_err()
        .contains("needs a scale"));
    // string and double modes, and VariableScaleDecimal.
    assert_eq!(value(r#""25000.00""#, "decimal(2)", None).unwrap(), "25000");
    assert_eq!(value("1.50e2", "decimal", None).unwrap(), "150");
    assert_eq!(
        value(r#"{"scale":3,"value":"B88="}"#, "decimal", None).unwrap(),
        "1.999"
    );
    assert!(value("true", "decimal", None).is_err());
    // Others.
    assert_eq!(value("1", "bool", None).unwrap(), "true");
    assert!(value("2", "bool", None).is_err());
    assert_eq!(value(r#""NaN""#, "double", None).unwrap(), "null");
    assert_eq!(value("0.5", "float", None).unwrap(), "0.5");
    let json = schema("io.debezium.data.Json", None);
    assert_eq!(
        value(r#""{\"b\":1,\"a\":[1.50]}""#, "json", Some(&json)).unwrap(),
        r#"{"b":1,"a":[1.50]}"#
    );
    assert_eq!(value(r#"{"b":1}"#, "json", None).unwrap(), r#"{"b":1}"#);
    assert_eq!(value(r#""text""#, "json", None).unwrap(), r#""text""#);
    assert!(value(r#""{oops""#, "json", Some(&json)).is_err());
    for ty in [
        "string",
        "int",
        "float",
        "bool",
        "decimal",
        "date",
        "time",
        "timestamp",
        "json",
    ] {
        assert_eq!(value("null", ty, None).unwrap(), "null");
    }
    assert!(ColumnType::parse("timestamp(s)").is_none());
    assert_eq!(
        ColumnType::parse("decimal( 3 )"),
        Some(ColumnType::Decimal(Some(3)))
    );
    assert_eq!(
        ColumnType::parse("timestamp(ns)"),
        Some(ColumnType::Timestamp(Unit::Nanos))
    );
    let _ = Json::Null;
}
