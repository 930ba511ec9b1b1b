//! The identity of a nested relation's rendered value, so that equal relations are rendered once
//! and shared by every product (and every parent) that nests them.
//!
//! A relation (a child node and its whole subtree) renders to one list (or one item) per link key.
//! [`RelationId`] is a canonical, structural description of everything that value depends on:
//! the source, the columns the list is keyed by, the cardinality, the order, the item's layout by
//! column index, and each child relation with the columns it joins on. It leaves out what does
//! not change the value: names (the relation's field name in its parent, its own field names, its
//! path), which only matter where a product renders its documents as JSON, and the parent's side
//! of its own link, which only matters to the parent's build.
//!
//! Source ids are the job's ([`super::Plan::sources`]): one per topic, and every product's column
//! numbers are renumbered to that source's when its file is merged ([`super::merge`]), so an id
//! with its column indices stands for the same columns in every product.

use crate::plan::spec::Cardinality;

use super::{Node, NodeOutput, OutField, Plan, ProductPlan, SortKey, SourceId};

/// What a nested relation renders: its `Nest` arrangement (link key → list or item).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationId {
    pub source: SourceId,
    /// The child columns of the link: the key of the rendered lists.
    pub key: Vec<usize>,
    pub cardinality: Cardinality,
    /// The item's fields to sort a list by, each with its direction.
    pub order_by: Vec<SortKey>,
    pub item: ItemLayout,
    /// The relations nested in each item, in child order.
    pub children: Vec<JoinedRelation>,
}

/// How one row becomes an item, by position (field names are not part of the value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemLayout {
    Object(Vec<ItemField>),
    Scalar(usize),
    Through,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemField {
    Column(usize),
    Child(usize),
}

/// A child relation and the columns of its parent's rows it joins on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinedRelation {
    pub parent_columns: Vec<usize>,
    pub relation: RelationId,
}

impl RelationId {
    /// The identity of a nested node's relation; `None` for a root (it has no link).
    pub fn of(node: &Node) -> Option<RelationId> {
        let link = node.link.as_ref()?;
        let item = match &node.output {
            NodeOutput::Scalar(column) => ItemLayout::Scalar(*column),
            NodeOutput::Through => ItemLayout::Through,
            NodeOutput::Object(fields) => ItemLayout::Object(
                fields
                    .iter()
                    .map(|f| match f {
                        OutField::Column { column, .. } => ItemField::Column(*column),
                        OutField::Child { child, .. } => ItemField::Child(*child),
                    })
                    .collect(),
            ),
        };
        let children = node
            .children
            .iter()
            .map(|child| {
                let link = child.link.as_ref()?;
                Some(JoinedRelation {
                    parent_columns: link.parent_columns.clone(),
                    relation: RelationId::of(child)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(RelationId {
            source: node.source,
            key: link.child_columns.clone(),
            cardinality: node.cardinality,
            order_by: node.order_by.clone(),
            item,
            children,
        })
    }
}

/// A relation to render once, with one of the nodes it stands for (for operator names).
#[derive(Debug, Clone)]
pub struct SharedRelation {
    pub id: RelationId,
    pub node: Node,
}

impl Plan {
    /// The nested relations of `product`, each once, every relation after the relations nested
    /// in it (the order to install them in).
    pub fn relations(&self, product: &ProductPlan) -> Vec<SharedRelation> {
        fn visit(node: &Node, out: &mut Vec<SharedRelation>) {
            for child in &node.children {
                visit(child, out);
            }
            if let Some(id) = RelationId::of(node) {
                if !out.iter().any(|r| r.id == id) {
                    out.push(SharedRelation {
                        id,
                        node: node.clone(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        visit(&product.root, &mut out);
        out
    }
}
