//! The evaluator on a small product whose documents are computed by hand: a move between
//! parents, deletes, a `through` link whose target is missing, `one` cardinality, a descending
//! order with nulls and ties broken by the whole item.

use super::record;
use crate::eval::sort;
use crate::json::Dec;
use crate::value::Val;
use crate::{verify_records, Record};

pub const SHOP: &str = r#"
[product]
name = "shop"
output_topic = "shop.out"

[sources.customers]
topic = "c"
primary_key = ["id"]
columns = { id = "int", name = "string", best = "int" }

[sources.orders]
topic = "o"
primary_key = ["id"]
columns = { id = "int", customer_id = "int", placed = "timestamp", total = "decimal(2)" }

[sources.likes]
topic = "l"
primary_key = ["customer_id", "sku"]
columns = { customer_id = "int", sku = "string" }

[sources.products]
topic = "p"
primary_key = ["sku"]
columns = { sku = "string", title = "string" }

[document]
source = "customers"
fields = ["id", { name = "customer", column = "name" }]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "customer_id" }
fields = ["id", "placed", "total"]
order_by = ["placed desc"]

[[document.relations]]
name = "best_order"
cardinality = "one"
source = "orders"
on = { best = "id" }
fields = ["id", "total"]

[[document.relations]]
name = "likes"
cardinality = "many"
through = { source = "likes", on = { id = "customer_id" } }
source = "products"
on = { sku = "sku" }
value = "title"
"#;

/// An envelope record of `topic` (op c, u or d) in partition 0 at `offset`.
fn change(topic: &str, offset: i64, key: &str, op: &str, row: &str) -> Record {
    let value = match op {
        "d" => format!(r#"{{"before":{row},"after":null,"source":{{}},"op":"d"}}"#),
        _ => format!(r#"{{"before":null,"after":{row},"source":{{}},"op":"{op}"}}"#),
    };
    record(topic, 0, offset, Some(key), Some(&value))
}

/// The input of [`SHOP`], and the two documents it leaves.
pub fn shop_inputs() -> Vec<Record> {
    let order = |offset, id: i64, customer: i64, placed: &str, total: &str| {
        let row = format!(
            r#"{{"id":{id},"customer_id":{customer},"placed":{placed},"total":"{total}"}}"#
        );
        change("o", offset, &format!(r#"{{"id":{id}}}"#), "c", &row)
    };
    vec![
        // Customers, in two partitions (each in offset order); 3 is deleted by a tombstone.
        record(
            "c",
            0,
            0,
            Some(r#"{"id":1}"#),
            Some(r#"{"id":1,"name":"Ann","best":11}"#),
        ),
        record(
            "c",
            1,
            0,
            Some(r#"{"id":2}"#),
            Some(r#"{"id":2,"name":"Bob","best":null,"__op":"c"}"#),
        ),
        record(
            "c",
            1,
            1,
            Some(r#"{"id":3}"#),
            Some(r#"{"id":3,"name":"Cy","best":12}"#),
        ),
        record(
            "c",
            1,
            2,
            Some(r#"{"id":2}"#),
            Some(r#"{"id":2,"name":"Ben","best":null,"__op":"u"}"#),
        ),
        record("c", 1, 3, Some(r#"{"id":3}"#), None),
        order(0, 10, 1, "1000", "5.00"),
        order(1, 11, 1, "null", "7.50"),
        order(2, 12, 1, "3000", "1.25"),
        order(3, 13, 2, "2000", "3.00"),
        order(4, 17, 2, "2000", "1.00"),
        order(5, 14, 1, "500", "9.99"),
        // Order 12 moves to customer 2; order 14 is deleted.
        change(
            "o",
            6,
            r#"{"id":12}"#,
            "u",
            r#"{"id":12,"customer_id":2,"placed":3000,"total":"1.25"}"#,
        ),
        change(
            "o",
            7,
            r#"{"id":14}"#,
            "d",
            r#"{"id":14,"customer_id":null,"placed":null,"total":null}"#,
        ),
        record(
            "l",
            0,
            0,
            Some(r#"{"customer_id":1,"sku":"pen"}"#),
            Some(r#"{"customer_id":1,"sku":"pen"}"#),
        ),
        // No such product: the link stands for nothing.
        record(
            "l",
            0,
            1,
            Some(r#"{"customer_id":1,"sku":"gone"}"#),
            Some(r#"{"customer_id":1,"sku":"gone"}"#),
        ),
        record(
            "l",
            0,
            2,
            Some(r#"{"customer_id":2,"sku":"pen"}"#),
            Some(r#"{"customer_id":2,"sku":"pen"}"#),
        ),
        record(
            "l",
            0,
            3,
            Some(r#"{"customer_id":2,"sku":"ink"}"#),
            Some(r#"{"customer_id":2,"sku":"ink"}"#),
        ),
        record(
            "p",
            0,
            0,
            Some(r#""pen""#),
            Some(r#"{"sku":"pen","title":"Pen"}"#),
        ),
        record(
            "p",
            0,
            1,
            Some(r#""ink""#),
            Some(r#"{"sku":"ink","title":"Ink"}"#),
        ),
        // A topic the product does not read is not replayed.
        record("other", 0, 0, None, Some("not even JSON")),
    ]
}

pub const ANN: &str = r#"{"id":1,"customer":"Ann","orders":[{"id":10,"placed":"1970-01-01T00:00:01Z","total":5},{"id":11,"placed":null,"total":7.5}],"best_order":{"id":11,"total":7.5},"likes":["Pen"]}"#;
pub const BEN: &str = r#"{"id":2,"customer":"Ben","orders":[{"id":12,"placed":"1970-01-01T00:00:03Z","total":1.25},{"id":13,"placed":"1970-01-01T00:00:02Z","total":3},{"id":17,"placed":"1970-01-01T00:00:02Z","total":1}],"best_order":null,"likes":["Ink","Pen"]}"#;

#[test]
fn the_shop_documents_are_the_hand_computed_ones() {
    let product = crate::Product::parse(SHOP, "shop").unwrap();
    let mut replay = crate::eval::Replay::new(&product);
    let mut inputs = shop_inputs();
    // Given in any order, applied in offset order per partition.
    inputs.reverse();
    let run = verify_records(SHOP, &inputs, &[]).unwrap();
    assert_eq!(run.replayed, 19);
    assert!(run.undecodable.is_empty(), "{:?}", run.undecodable);
    inputs.reverse();
    for r in inputs.iter().filter(|r| r.topic != "other") {
        replay
            .apply(&r.topic, r.key.as_deref(), r.value.as_deref())
            .unwrap();
    }
    let docs: Vec<(String, String)> = replay
        .documents()
        .into_iter()
        .map(|(key, doc)| {
            let key =
                crate::json::Json::Object(key.into_iter().map(|(n, v)| (n, v.to_json())).collect());
            (key.to_string(), doc.to_json().to_string())
        })
        .collect();
    assert_eq!(
        docs,
        [
            (r#"{"id":1}"#.to_owned(), ANN.to_owned()),
            (r#"{"id":2}"#.to_owned(), BEN.to_owned())
        ]
    );
    // The output topic holding exactly these documents verifies.
    let outputs = [
        record("shop.out", 0, 0, Some(r#"{"id":1}"#), Some(ANN)),
        record("shop.out", 1, 0, Some(r#"{"id":2}"#), Some(BEN)),
    ];
    let run = verify_records(SHOP, &shop_inputs(), &outputs).unwrap();
    assert!(run.ok(0), "{}", run.report(0));
    assert!(
        run.report(0)
            .contains("shop: OK — expected 2, found 2, matching 2"),
        "{}",
        run.report(0)
    );
}

#[test]
fn a_truncate_empties_the_source_and_undecodable_records_fail_unless_allowed() {
    let mut inputs = shop_inputs();
    inputs.push(record("o", 0, 8, None, Some(r#"{"op":"t","source":{}}"#)));
    inputs.push(record("p", 0, 2, None, Some(r#"{"sku":"x"}"#)));
    let outputs = [
        record(
            "shop.out",
            0,
            0,
            Some(r#"{"id":1}"#),
            Some(r#"{"id":1,"customer":"Ann","orders":[],"best_order":null,"likes":["Pen"]}"#),
        ),
        record(
            "shop.out",
            0,
            1,
            Some(r#"{"id":2}"#),
            Some(
                r#"{"id":2,"customer":"Ben","orders":[],"best_order":null,"likes":["Ink","Pen"]}"#,
            ),
        ),
    ];
    let run = verify_records(SHOP, &inputs, &outputs).unwrap();
    assert!(run.comparisons[0].ok(), "{}", run.report(1));
    assert_eq!(run.undecodable.len(), 1);
    assert!(
        run.undecodable[0].contains("topic p partition 0 offset 2: the row lacks column `title`")
    );
    assert!(!run.ok(0));
    assert!(
        run.report(0)
            .contains("FAILED: 1 input records could not be decoded"),
        "{}",
        run.report(0)
    );
    assert!(run.ok(1));
    assert!(run
        .report(1)
        .contains("(1 undecodable)\n  undecodable: topic p partition 0 offset 2"));
}

#[test]
fn descending_puts_nulls_last_and_the_whole_item_breaks_ties() {
    let item = |placed: Option<i64>, id: i64| {
        Val::Object(vec![
            ("placed".into(), placed.map_or(Val::Null, Val::Int)),
            ("id".into(), Val::Int(id)),
        ])
    };
    let mut items = vec![
        item(Some(1), 5),
        item(None, 1),
        item(Some(3), 9),
        item(Some(3), 2),
        item(None, 0),
    ];
    sort(&mut items, &[("placed".into(), true)]);
    assert_eq!(
        items,
        [
            item(Some(3), 2),
            item(Some(3), 9),
            item(Some(1), 5),
            item(None, 0),
            item(None, 1)
        ]
    );
    sort(&mut items, &[("placed".into(), false)]);
    assert_eq!(
        items,
        [
            item(None, 0),
            item(None, 1),
            item(Some(1), 5),
            item(Some(3), 2),
            item(Some(3), 9)
        ]
    );
    // Values sort by value: decimals numerically, whatever their scale.
    let d = |t: &str| Val::Decimal(Dec::parse(t).unwrap());
    let mut values = vec![d("10"), d("9.50"), Val::Null, d("-1")];
    sort(&mut values, &[]);
    assert_eq!(values, [Val::Null, d("-1"), d("9.5"), d("10")]);
}
