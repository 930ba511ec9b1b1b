//! An item of a document being assembled: the datums of its rows, borrowed from them, nested in
//! lists and objects. It orders and renders exactly as the [`crate::value::Value`] it stands for
//! would (the tests below hold it to that), without a string or a list allocated per value.

use std::cmp::Ordering;

use crate::row::Datum;
#[cfg(test)]
use crate::value::Value;
use crate::value::{write_datum, Shape};

/// A scalar, or an object's fields or a list's items (which, the shape says).
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Datum(Datum<'a>),
    Doc(Vec<Item<'a>>),
}

impl Item<'_> {
    /// The empty list.
    pub fn empty() -> Self {
        Item::Doc(Vec::new())
    }

    /// An object's field (positional); `None` when the item is not an object.
    pub fn field(&self, index: usize) -> Option<&Self> {
        match self {
            Item::Doc(fields) => fields.get(index),
            Item::Datum(_) => None,
        }
    }

    /// Renders the item as compact JSON into `out`, field names and order from `shape` (as
    /// [`crate::value::write_json`]).
    pub fn write_json(&self, shape: &Shape, out: &mut String) {
        match (self, shape) {
            (Item::Doc(items), Shape::Object(fields)) => {
                out.push('{');
                for (i, ((name, field_shape), item)) in fields.iter().zip(items).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_datum(Datum::Str(name), out);
                    out.push(':');
                    item.write_json(field_shape, out);
                }
                out.push('}');
            }
            // A list; a document without a shape is a list of what it holds.
            (Item::Doc(items), list) => {
                let item_shape = match list {
                    Shape::List(item_shape) => item_shape,
                    _ => &Shape::Scalar,
                };
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(item_shape, out);
                }
                out.push(']');
            }
            (Item::Datum(d), _) => write_datum(*d, out),
        }
    }

    /// The value it stands for.
    #[cfg(test)]
    pub fn to_value(&self) -> Value {
        match self {
            Item::Datum(d) => d.to_value(),
            Item::Doc(items) => Value::Doc(items.iter().map(Item::to_value).collect()),
        }
    }
}

impl Ord for Item<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Item::Datum(a), Item::Datum(b)) => a.order(b),
            (Item::Doc(a), Item::Doc(b)) => a.cmp(b),
            // Documents order after every scalar, as `Value::Doc` is declared last.
            (Item::Datum(_), Item::Doc(_)) => Ordering::Less,
            (Item::Doc(_), Item::Datum(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Item<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Item<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Item<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{write_json, Decimal};
    use std::sync::Arc;

    fn samples() -> Vec<Item<'static>> {
        let datums = [
            Datum::Null,
            Datum::Bool(false),
            Datum::Bool(true),
            Datum::Int(-3),
            Datum::Int(7),
            Datum::Float(-0.0),
            Datum::Float(0.0),
            Datum::Float(2.5),
            Datum::Float(f64::NAN),
            Datum::Decimal(Decimal {
                unscaled: 125,
                scale: 2,
            }),
            Datum::Decimal(Decimal {
                unscaled: -5,
                scale: 0,
            }),
            Datum::Str(""),
            Datum::Str("a\"b"),
            Datum::Str("ab"),
            Datum::Str("é"),
            Datum::Date(-1),
            Datum::Date(19000),
            Datum::Time(1),
            Datum::Timestamp(1_700_000_000_000_000),
            Datum::Json("{\"x\":1}"),
            Datum::Json("[]"),
        ];
        let mut items: Vec<Item<'static>> = datums.into_iter().map(Item::Datum).collect();
        let scalars = items.clone();
        items.push(Item::empty());
        for pair in scalars.windows(2) {
            items.push(Item::Doc(pair.to_vec()));
        }
        items.push(Item::Doc(vec![
            Item::Doc(vec![scalars[3].clone()]),
            scalars[12].clone(),
        ]));
        items
    }

    #[test]
    fn items_order_as_the_values_they_stand_for() {
        let items = samples();
        for a in &items {
            for b in &items {
                assert_eq!(
                    a.cmp(b),
                    a.to_value().cmp(&b.to_value()),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn items_render_as_the_values_they_stand_for() {
        let object = Shape::Object(vec![
            (Arc::from("a"), Shape::Scalar),
            (
                Arc::from("list \"q\""),
                Shape::List(Box::new(Shape::Scalar)),
            ),
        ]);
        for item in samples() {
            for shape in [&Shape::Scalar, &Shape::List(Box::new(Shape::Scalar))] {
                let (mut mine, mut theirs) = (String::new(), String::new());
                item.write_json(shape, &mut mine);
                write_json(&item.to_value(), shape, &mut theirs);
                assert_eq!(mine, theirs, "{item:?}");
            }
            let doc = Item::Doc(vec![
                item.clone(),
                Item::Doc(vec![item.clone(), item.clone()]),
            ]);
            let (mut mine, mut theirs) = (String::new(), String::new());
            doc.write_json(&object, &mut mine);
            write_json(&doc.to_value(), &object, &mut theirs);
            assert_eq!(mine, theirs, "{doc:?}");
        }
    }
}
