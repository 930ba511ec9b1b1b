//! Builds one document from its parts: every row the dataflow found for it (the root row, the
//! rows of each relation under it, each hung off its parent row by id) becomes an item, the items
//! of a relation under one parent become its list (ordered by `order_by`, then by the whole
//! item) or its single value, and the root item is rendered as JSON.
//!
//! The semantics are the product file's: a relation with no matching rows is `[]` (many) or
//! `null` (one); a `through` row stands for the item of its target and is dropped when the target
//! is missing; duplicates are kept.

use serde::{Deserialize, Serialize};

use super::item::Item;
use super::tree::{NodeId, Tree};
use crate::plan::spec::Cardinality;
use crate::plan::{Node, NodeOutput, OutField};
use crate::row::{Datum, Row};
use crate::value::write_datum;

/// Which document a part belongs to: the hash that routes it to the worker writing the
/// document (the hash of its rendered key), and the id of its root row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DocId {
    pub route: u64,
    pub root: u128,
}

/// One row found for a document: of which node, its id, and the id of its parent row (its own
/// id at the root).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FoundRow {
    pub doc: DocId,
    pub node: u16,
    pub id: u128,
    pub parent: u128,
    pub row: Row,
}

/// The id of a row found under a parent row: from the parent's id, the node, and the row's
/// primary key. 128 bits, so that two rows of one document never share one.
pub fn child_id(parent: u128, node: NodeId, key: &[u8]) -> u128 {
    let mut bytes = Vec::with_capacity(18 + key.len());
    bytes.extend_from_slice(&parent.to_le_bytes());
    bytes.extend_from_slice(&(node as u16).to_le_bytes());
    bytes.extend_from_slice(key);
    xxhash_rust::xxh3::xxh3_128(&bytes)
}

/// The id of a document's root row, from its primary key.
pub fn root_id(key: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key)
}

/// The rendered key of a document (a JSON object of the root's primary key columns).
pub fn render_key<'a>(key_names: &[String], key: impl IntoIterator<Item = Datum<'a>>) -> String {
    let mut out = String::from("{");
    for (i, (name, datum)) in key_names.iter().zip(key).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_datum(Datum::Str(name), &mut out);
        out.push(':');
        write_datum(datum, &mut out);
    }
    out.push('}');
    out
}

/// The hash that routes a document (and what the output topic holds for its key) to a worker.
pub fn key_route(key: &str) -> u64 {
    crate::row::hash(key.as_bytes())
}

/// A document built: its rendered key and JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub key: String,
    pub json: String,
}

/// Orders parts so that each document's are together and, within them, the rows under each
/// parent row and relation ([`Parts::new`] needs this order).
pub fn sort_parts(parts: &mut [FoundRow]) {
    parts.sort_unstable_by_key(|p| (p.doc, p.parent, p.node));
}

/// The parts of one document, indexed once: each row's columns decoded (into one vector for
/// all of them) and its children found by its id. Products of one shape get the same parts,
/// so each of them builds its document from one index instead of indexing the parts again.
pub struct Parts<'a> {
    root: usize,
    /// The parts, ordered by parent id and node (see [`sort_parts`]).
    parts: &'a [FoundRow],
    /// Every part's datums, in the parts' order; part `i`'s are `datums[starts[i]..starts[i + 1]]`.
    datums: Vec<Datum<'a>>,
    starts: Vec<u32>,
}

impl<'a> Parts<'a> {
    /// The index of a document's parts, ordered as [`sort_parts`] orders them; `None` when they
    /// hold no root row.
    pub fn new(parts: &'a [FoundRow]) -> Option<Self> {
        let root = parts.iter().position(|p| p.node == 0)?;
        let mut datums = Vec::with_capacity(parts.len() * 8);
        let mut starts = Vec::with_capacity(parts.len() + 1);
        for part in parts {
            starts.push(datums.len() as u32);
            datums.extend(part.row.as_ref().datums());
        }
        starts.push(datums.len() as u32);
        Some(Parts {
            root,
            parts,
            datums,
            starts,
        })
    }

    fn datums(&self, part: usize) -> &[Datum<'a>] {
        &self.datums[self.starts[part] as usize..self.starts[part + 1] as usize]
    }

    /// The positions of the rows of `node` under the row `parent`.
    fn children(&self, parent: u128, node: u16) -> std::ops::Range<usize> {
        let from = self
            .parts
            .partition_point(|p| (p.parent, p.node) < (parent, node));
        let to = from
            + self.parts[from..]
                .iter()
                .take_while(|p| p.parent == parent && p.node == node)
                .count();
        from..to
    }

    /// The document `tree` makes of these parts; `None` when its root passes through a
    /// missing child.
    pub fn assemble(&self, tree: &Tree) -> Option<Document> {
        let root_datums = self.datums(self.root);
        let key = tree.nodes[0]
            .key
            .iter()
            .map(|&k| root_datums.get(k).copied().unwrap_or(Datum::Null));
        let key = render_key(&tree.key_names, key);
        let item = self.build(tree, 0, self.parts[self.root].id, root_datums)?;
        let mut json = String::new();
        item.write_json(&tree.shape, &mut json);
        Some(Document { key, json })
    }

    /// The item of the row `id` of `node`, with the values of its relations.
    fn build(&self, tree: &Tree, node: NodeId, id: u128, datums: &[Datum<'a>]) -> Option<Item<'a>> {
        let tree_node = &tree.nodes[node];
        let slots: Vec<Option<Item<'a>>> = tree_node
            .children
            .iter()
            .map(|&child| {
                let items: Vec<Item<'a>> = self
                    .children(id, child as u16)
                    .filter_map(|i| self.build(tree, child, self.parts[i].id, self.datums(i)))
                    .collect();
                (!items.is_empty()).then(|| aggregate(&tree.nodes[child].node, items))
            })
            .collect();
        build_item(&tree_node.node, datums, slots)
    }
}

/// A node's item for one row (its columns' datums), given the items of its relations
/// (`None`: nothing matched). `None` when the node passes through a child that is missing.
/// Only the columns the item shows are taken.
pub fn build_item<'a>(
    node: &Node,
    row: &[Datum<'a>],
    mut children: Vec<Option<Item<'a>>>,
) -> Option<Item<'a>> {
    let column = |c: usize| Item::Datum(row.get(c).copied().unwrap_or(Datum::Null));
    match &node.output {
        NodeOutput::Scalar(c) => Some(column(*c)),
        NodeOutput::Through => children.first_mut().and_then(Option::take),
        NodeOutput::Object(fields) => Some(Item::Doc(
            fields
                .iter()
                .map(|field| match field {
                    OutField::Column { column: c, .. } => column(*c),
                    OutField::Child { child, .. } => children[*child]
                        .take()
                        .unwrap_or_else(|| empty_slot(&node.children[*child])),
                })
                .collect(),
        )),
    }
}

/// What a parent holds for a relation with no matching child: `[]` or `null`.
pub fn empty_slot<'a>(child: &Node) -> Item<'a> {
    match child.cardinality {
        Cardinality::Many => Item::empty(),
        Cardinality::One => Item::Datum(Datum::Null),
    }
}

/// The value of a relation under one parent: its items ordered by the whole item, then (a
/// stable sort, so the item breaks ties) by the `order_by` fields, each in its direction; the
/// list of them, or the first.
pub fn aggregate<'a>(node: &Node, mut items: Vec<Item<'a>>) -> Item<'a> {
    items.sort();
    if !node.order_by.is_empty() {
        items.sort_by(|a, b| compare_by_order(node, a, b));
    }
    match node.cardinality {
        Cardinality::Many => Item::Doc(items),
        Cardinality::One => items.into_iter().next().unwrap_or(Item::Datum(Datum::Null)),
    }
}

/// Compares two items by the node's `order_by` fields, each in its direction (equal when the
/// items are not objects).
fn compare_by_order(node: &Node, a: &Item<'_>, b: &Item<'_>) -> std::cmp::Ordering {
    node.order_by
        .iter()
        .map(|key| match (a.field(key.field), b.field(key.field)) {
            (Some(x), Some(y)) => key.directed(x.cmp(y)),
            _ => std::cmp::Ordering::Equal,
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}
