//! Finding a relation's rows under parent rows, for the documents being built: each [`Want`]
//! names a parent row (by id) and the values of its link columns; the rows of the relation's
//! source whose columns equal them are looked up at the want's time (by primary key, or through
//! the source's index on those columns and then by primary key), and each becomes a [`Part`] of
//! the document, with wants of its own for the relations nested in it.

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;

use super::assemble::{child_id, DocId, FoundRow};
use super::index::Index;
use super::lookup::lookup;
use super::rows::Rows;
use super::tree::{NodeId, Tree};
use super::Time;
use crate::row::{hash, Row, RowRef};

/// A request for the rows of `node` under one parent row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Want {
    pub doc: DocId,
    pub node: u16,
    pub parent: u128,
    /// The encoded values of the parent's link columns.
    pub link: Row,
}

/// What finding rows produces: parts of documents and wants for the relations below them, and
/// what the driver tells the sinks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Found {
    Row(FoundRow),
    Want(Want),
    /// The root of the document with this key has no row any more.
    Gone {
        route: u64,
        key: String,
    },
    /// To the sink of worker `.0`: the driver started every document of the hydration.
    Hydrated(u64),
}

impl Found {
    /// Which stream it continues on: 0 for parts, 1 + the child's position for wants of a
    /// child of `node`.
    pub fn port(&self, tree: &Tree) -> u64 {
        match self {
            Found::Want(want) => 1 + tree.nodes[want.node as usize].slot as u64,
            Found::Row(_) | Found::Gone { .. } | Found::Hydrated(_) => 0,
        }
    }
}

/// The part for `row`, a row of `node` found under `parent` for `doc`, and the wants of the
/// relations nested in it.
pub fn found(
    tree: &Tree,
    node: NodeId,
    doc: DocId,
    parent: u128,
    row: RowRef<'_>,
    out: &mut Vec<Found>,
) {
    let tree_node = &tree.nodes[node];
    let mut key = Vec::new();
    row.project(&tree_node.key, &mut key);
    let id = if node == 0 {
        parent
    } else {
        child_id(parent, node, &key)
    };
    for &child in &tree_node.children {
        let link = tree.nodes[child]
            .link
            .as_ref()
            .expect("children have links");
        let mut values = Vec::new();
        if row.project(&link.parent_columns, &mut values) {
            out.push(Found::Want(Want {
                doc,
                node: child as u16,
                parent: id,
                link: Row::from(values),
            }));
        }
    }
    out.push(Found::Row(FoundRow {
        doc,
        node: node as u16,
        id,
        parent,
        row: row.to_owned(),
    }));
}

/// The rows of `node` for `wants`: looked up in the node's source by primary key, or through
/// its index on the link columns.
pub fn find<'s>(
    tree: std::rc::Rc<Tree>,
    node: NodeId,
    wants: Stream<'s, Time, Vec<Want>>,
    rows: Rows<'s>,
    index: Option<Index<'s>>,
) -> Stream<'s, Time, Vec<Found>> {
    use timely::dataflow::operators::vec::Map;
    let tree_node = &tree.nodes[node];
    let columns = tree_node
        .link
        .as_ref()
        .expect("only nested nodes are found")
        .child_columns
        .clone();
    let path = tree_node.node.path.clone();
    let keyed = wants.map(|want| (hash(want.link.bytes()), want));
    // The requests to the rows' trace: by primary key hash.
    let by_key = match index {
        None => keyed,
        Some(index) => lookup(
            keyed,
            index,
            &format!("FindKeys({path})"),
            |want: &Want, keys: &[&u64], out| {
                out.extend(keys.iter().map(|key| (**key, want.clone())))
            },
        ),
    };
    let mut scratch = Vec::new();
    lookup(
        by_key,
        rows,
        &format!("Find({path})"),
        move |want: &Want, rows: &[RowRef<'_>], out| {
            for &row in rows {
                // The index and the keys are hashes: only rows whose columns equal the link
                // belong.
                scratch.clear();
                if row.project(&columns, &mut scratch) && scratch == want.link.bytes() {
                    found(&tree, node, want.doc, want.parent, row, out);
                }
            }
        },
    )
}
