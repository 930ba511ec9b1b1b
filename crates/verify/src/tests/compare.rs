//! The comparison: a number that differs, fields in another order, a list in another order, and
//! output records denorm never writes.

use super::eval::{shop_inputs, ANN, BEN, SHOP};
use super::record;
use crate::{verify_records, Comparison};

/// The comparison of the shop's inputs with an output topic holding `docs` (key, value) in order.
fn compare(docs: &[(&str, Option<&str>)]) -> Comparison {
    let outputs: Vec<_> = docs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| record("shop.out", 0, i as i64, Some(k), *v))
        .collect();
    verify_records(SHOP, &shop_inputs(), &outputs)
        .unwrap()
        .comparisons
        .remove(0)
}

fn differences(c: &Comparison) -> Vec<String> {
    assert_eq!((c.missing.len(), c.unexpected.len()), (0, 0), "{c}");
    c.different.iter().flat_map(|(_, d)| d.clone()).collect()
}

#[test]
fn equal_json_written_otherwise_matches() {
    // Spaces, escapes and number forms change nothing; keys match as JSON.
    let ann = ANN
        .replace(r#""total":5"#, r#""total":5.00"#)
        .replace(r#""total":7.5}"#, r#""total":75e-1}"#)
        .replace(r#""Ann""#, r#""\u0041nn""#)
        .replace(',', ", ");
    let c = compare(&[
        (r#"{ "id" : 1.0 }"#, Some(&ann)),
        (r#"{"id":2}"#, Some(BEN)),
    ]);
    assert!(c.ok(), "{c}");
    assert_eq!(c.matching, 2);
    // A tombstone removes a document; a later record of the key brings it back.
    let c = compare(&[
        (r#"{"id":1}"#, Some(ANN)),
        (r#"{"id":2}"#, Some(BEN)),
        (r#"{"id":2}"#, None),
    ]);
    assert_eq!(c.missing, [r#"{"id":2}"#]);
    let c = compare(&[
        (r#"{"id":2}"#, None),
        (r#"{"id":1}"#, Some(ANN)),
        (r#"{"id":2}"#, Some(BEN)),
    ]);
    assert!(c.ok(), "{c}");
}

#[test]
fn a_number_that_differs() {
    // A decimal of scale 2 must have its digits right: 1.25 is not 12.5 nor 1.250001.
    for wrong in ["12.5", "1.250001", "\"1.25\""] {
        let ben = BEN.replace(r#""total":1.25"#, &format!(r#""total":{wrong}"#));
        let c = compare(&[(r#"{"id":1}"#, Some(ANN)), (r#"{"id":2}"#, Some(&ben))]);
        assert_eq!(c.matching, 1);
        assert_eq!(c.different[0].0, r#"{"id":2}"#);
        assert_eq!(
            differences(&c),
            [format!(".orders[0].total: expected 1.25, found {wrong}")]
        );
    }
    // An integer written as a fraction is a different number; a timestamp one microsecond off too.
    let ann = ANN
        .replace(r#""id":10,"#, r#""id":10.5,"#)
        .replace("00:00:01Z", "00:00:01.000001Z");
    let c = compare(&[(r#"{"id":1}"#, Some(&ann)), (r#"{"id":2}"#, Some(BEN))]);
    assert_eq!(
        differences(&c),
        [
            ".orders[0].id: expected 10, found 10.5",
            r#".orders[0].placed: expected "1970-01-01T00:00:01Z", found "1970-01-01T00:00:01.000001Z""#
        ]
    );
}

#[test]
fn fields_in_another_order() {
    let ann = ANN.replace(
        r#"{"id":1,"customer":"Ann","#,
        r#"{"customer":"Ann","id":1,"#,
    );
    let c = compare(&[(r#"{"id":1}"#, Some(&ann)), (r#"{"id":2}"#, Some(BEN))]);
    assert!(!c.ok());
    assert_eq!(
        differences(&c),
        [".: fields in another order: expected id, customer, orders, best_order, likes, found customer, id, orders, best_order, likes"]
    );
    // A missing field, an extra one, one written twice.
    let ann = ANN.replace(r#""customer":"Ann","#, r#""extra":true,"id":1,"#);
    let c = compare(&[(r#"{"id":1}"#, Some(&ann)), (r#"{"id":2}"#, Some(BEN))]);
    assert_eq!(
        differences(&c),
        [
            r#".customer: expected "Ann", field missing"#,
            ".extra: unexpected field, found true",
            ".id: the field is written twice"
        ]
    );
}

#[test]
fn a_list_in_another_order() {
    let ben = BEN.replace(r#"["Ink","Pen"]"#, r#"["Pen","Ink"]"#);
    let c = compare(&[(r#"{"id":1}"#, Some(ANN)), (r#"{"id":2}"#, Some(&ben))]);
    assert_eq!(
        differences(&c),
        [
            ".likes: the same 2 items in another order",
            r#".likes[0]: expected "Ink", found "Pen""#,
            r#".likes[1]: expected "Pen", found "Ink""#
        ]
    );
    let ann = ANN.replace(r#""likes":["Pen"]"#, r#""likes":[]"#);
    let c = compare(&[(r#"{"id":1}"#, Some(&ann)), (r#"{"id":2}"#, Some(BEN))]);
    assert_eq!(differences(&c), [".likes: expected 1 items, found 0"]);
}

#[test]
fn records_denorm_never_writes_are_bad_records() {
    let mut outputs = vec![
        record("shop.out", 0, 0, Some(r#"{"id":1}"#), Some(ANN)),
        record("shop.out", 0, 1, Some(r#"{"id":2}"#), Some(BEN)),
        // An empty value instead of a tombstone, a record without a key, a key not JSON.
        record("shop.out", 0, 2, Some(r#"{"id":2}"#), Some("")),
        record("shop.out", 0, 3, None, Some(ANN)),
        record("shop.out", 0, 4, Some("id=1"), Some(ANN)),
    ];
    let c = verify_records(SHOP, &shop_inputs(), &outputs)
        .unwrap()
        .comparisons
        .remove(0);
    assert!(!c.ok());
    assert_eq!(c.bad_records.len(), 3, "{c}");
    assert!(
        c.bad_records[0].contains("offset 2: key {\"id\":2} has an empty value"),
        "{c}"
    );
    assert!(
        c.bad_records[1].contains("offset 3: a record without a key"),
        "{c}"
    );
    assert!(c.bad_records[2].contains("the key id=1 is not JSON"), "{c}");
    let text = c.to_string();
    assert!(text.starts_with("shop: MISMATCH — expected 2, found 2, matching 1, missing 0, unexpected 0, different 1, bad records 3\n"), "{text}");
    assert!(
        text.contains("  different  {\"id\":2}\n    .: expected {\"id\":2,"),
        "{text}"
    );
    assert!(text.contains("found a value that is not JSON"), "{text}");
    // A value that is not JSON, and a document that should not be there.
    outputs.truncate(2);
    outputs[0].value = Some(b"{\"id\":1,".to_vec());
    outputs.push(record("shop.out", 0, 5, Some(r#"{"id":3}"#), Some("{}")));
    let c = verify_records(SHOP, &shop_inputs(), &outputs)
        .unwrap()
        .comparisons
        .remove(0);
    assert_eq!(c.unexpected, [r#"{"id":3}"#]);
    assert!(c.different[0].1[0].contains("not JSON"), "{c}");
}
