//! Renders a product's document tree bottom-up, one node at a time: each node's items keyed by
//! the columns that link them to their parent ([`Renderer::items`]), each child collection
//! reduced to its ordered list (or single item) per link key ([`nest`]), joined to the parent
//! rows through an arrangement of the parent keyed by its link columns, and every parent row
//! built into its item in one reduce over its parts. The catalog renders each distinct nested
//! relation once, in its own dataflow, and parents import its lists.
//!
//! Joins are inner in differential; the left-outer semantics (no children → `[]` or `null`) come
//! from that final reduce, which sees the row and whichever child values exist.

use std::collections::HashMap;

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::Time;
use crate::plan::{KeyedArrangement, Node, NodeOutput, OutField, SourceId};
use crate::spec::Cardinality;
use crate::value::{Row, Value};

/// A collection of `(key, row)` pairs, or of keyed items.
pub type Rows<'s> = VecCollection<'s, Time, (Row, Row)>;
pub type Items<'s> = VecCollection<'s, Time, (Row, Value)>;
/// Rows of a source arranged by some of their columns, with the primary key as value (or by
/// primary key, with the row as value).
pub type KeyedRows<'s> = Arranged<'s, TraceAgent<ValSpine<Row, Row, Time, isize>>>;

/// What a parent's build reduce sees for one primary key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    Row(Row),
    Child(u32, Value),
}

/// The values of `columns` of `row`, or `None` if one is null (null never joins).
pub fn link_key(row: &Row, columns: &[usize]) -> Option<Row> {
    let key: Vec<Value> = columns.iter().map(|&c| row[c].clone()).collect();
    (!key.iter().any(Value::is_null)).then(|| key.into())
}

/// A node's item for one row, given the values of its child relations (`None`: nothing matched).
/// `None` when the node passes through a child that is missing.
pub fn build_item(node: &Node, row: &Row, children: &[Option<Value>]) -> Option<Value> {
    match &node.output {
        NodeOutput::Scalar(column) => Some(row[*column].clone()),
        NodeOutput::Through => children.first().cloned().flatten(),
        NodeOutput::Object(fields) => Some(Value::Doc(
            fields
                .iter()
                .map(|field| match field {
                    OutField::Column { column, .. } => row[*column].clone(),
                    OutField::Child { child, .. } => children[*child]
                        .clone()
                        .unwrap_or_else(|| empty_slot(&node.children[*child])),
                })
                .collect::<Vec<_>>()
                .into(),
        )),
    }
}

/// What a parent holds for a relation with no matching child: `[]` or `null`.
pub fn empty_slot(child: &Node) -> Value {
    match child.cardinality {
        Cardinality::Many => Value::Doc(Vec::new().into()),
        Cardinality::One => Value::Null,
    }
}

/// Compares two items by the node's `order_by` fields, each in its direction (equal when the
/// items are not objects).
fn compare_by_order(node: &Node, a: &Value, b: &Value) -> std::cmp::Ordering {
    let (Value::Doc(a), Value::Doc(b)) = (a, b) else {
        return std::cmp::Ordering::Equal;
    };
    node.order_by
        .iter()
        .map(|key| key.compare(&a[key.field], &b[key.field]))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// The value of a relation for one link key: the ordered list of items, or the first item.
pub fn aggregate(node: &Node, items: &[(&Value, isize)]) -> Value {
    let mut sorted: Vec<&Value> = Vec::with_capacity(items.len());
    for (item, count) in items {
        for _ in 0..(*count).max(0) {
            sorted.push(item);
        }
    }
    // Input arrives sorted by item; a stable sort by the order_by fields keeps the item as tie-break.
    if !node.order_by.is_empty() {
        sorted.sort_by(|a, b| compare_by_order(node, a, b));
    }
    match node.cardinality {
        Cardinality::Many => Value::Doc(sorted.into_iter().cloned().collect::<Vec<_>>().into()),
        Cardinality::One => sorted.first().map(|v| (*v).clone()).unwrap_or(Value::Null),
    }
}

/// A relation's value per link key: the list (or item) of a nested node, arranged (the output of
/// its `Nest` reduce), as its parent joins it.
pub type Nested<'s> = Arranged<'s, TraceAgent<NestSpine>>;
/// The spine of a relation's values per link key.
pub type NestSpine = ValSpine<Row, Value, Time, isize>;

/// Renders one node over imported arrangements: its source arranged by primary key, the shared
/// arrangements of that source by the columns its children link on, and its children's values
/// (each rendered once, in a dataflow of its own, and imported).
pub struct Renderer<'s> {
    /// Each source's rows arranged by primary key (value: the row).
    by_key: HashMap<SourceId, KeyedRows<'s>>,
    /// Sources arranged by link columns (value: the primary key).
    keyed: HashMap<KeyedArrangement, KeyedRows<'s>>,
    /// Each source's primary key columns.
    keys: Vec<Vec<usize>>,
}

impl<'s> Renderer<'s> {
    pub fn new(
        by_key: HashMap<SourceId, KeyedRows<'s>>,
        keyed: HashMap<KeyedArrangement, KeyedRows<'s>>,
        keys: Vec<Vec<usize>>,
    ) -> Self {
        Renderer {
            by_key,
            keyed,
            keys,
        }
    }

    /// The rows of `source` arranged by `columns`, and whether that arrangement is the one by
    /// primary key (whose values are rows, not primary keys).
    fn keyed(&self, source: SourceId, columns: &[usize]) -> (KeyedRows<'s>, bool) {
        if columns == self.keys[source] {
            return (self.by_key[&source].clone(), true);
        }
        let id = KeyedArrangement {
            source,
            columns: columns.to_vec(),
        };
        let arranged = self
            .keyed
            .get(&id)
            .expect("the catalog imports every keyed arrangement a node needs");
        (arranged.clone(), false)
    }

    /// The items of `node`, keyed by its link's child columns (by primary key at the root),
    /// given the values of its child relations, in child order.
    pub fn items(&mut self, node: &Node, children: Vec<Nested<'s>>) -> Items<'s> {
        let rows = self.by_key[&node.source].clone().as_vecs();
        let key_columns = node.link.as_ref().map(|l| l.child_columns.clone());
        if node.children.is_empty() {
            let node = node.clone();
            return rows.flat_map(move |(pk, row)| {
                let key = match &key_columns {
                    Some(cols) => link_key(&row, cols),
                    None => Some(pk),
                };
                key.and_then(|k| build_item(&node, &row, &[]).map(|item| (k, item)))
            });
        }
        assert_eq!(
            children.len(),
            node.children.len(),
            "a value for every child relation"
        );
        let scope = rows.scope();
        let mut parts = vec![rows.map(|(pk, row)| (pk, Part::Row(row)))];
        for (i, (child, values)) in node.children.iter().zip(children).enumerate() {
            let link = child.link.as_ref().expect("children have links");
            let (parents, by_primary_key) = self.keyed(node.source, &link.parent_columns);
            let index = i as u32;
            parts.push(
                parents.join_core(values, move |key: &Row, val: &Row, value: &Value| {
                    let pk = if by_primary_key { key } else { val };
                    Some((pk.clone(), Part::Child(index, value.clone())))
                }),
            );
        }
        let built = node.clone();
        differential_dataflow::collection::concatenate(scope, parts)
            .reduce_named(
                &format!("Build({})", node.path),
                move |pk, input, output| {
                    let mut row = None;
                    let mut children: Vec<Option<Value>> = vec![None; built.children.len()];
                    for (part, count) in input {
                        if *count <= 0 {
                            continue;
                        }
                        match part {
                            Part::Row(r) => row = Some(r),
                            Part::Child(i, v) => children[*i as usize] = Some(v.clone()),
                        }
                    }
                    let Some(row) = row else { return };
                    let key = match &key_columns {
                        Some(cols) => link_key(row, cols),
                        None => Some(pk.clone()),
                    };
                    if let (Some(key), Some(item)) = (key, build_item(&built, row, &children)) {
                        output.push(((key, item), 1));
                    }
                },
            )
            .map(|(_pk, keyed_item)| keyed_item)
    }
}

/// The value of a nested relation per link key: its items reduced to their ordered list (or
/// first item). The reduce's own output arrangement is what parents join with.
pub fn nest<'s>(node: &Node, items: Items<'s>) -> Nested<'s> {
    let relation = node.clone();
    items
        .arrange_by_key_named(&format!("Items({})", node.path))
        .reduce_abelian::<_, ValBuilder<_, _, _, _>, NestSpine, _, _>(
            &format!("Nest({})", node.path),
            move |_key, input, output| output.push((aggregate(&relation, input), 1)),
            |vec, key, updates| {
                vec.clear();
                vec.extend(updates.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
            },
        )
}
