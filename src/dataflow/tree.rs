//! A product's document tree as the dataflow walks it: the plan's nodes in preorder (the root
//! first), each with its parent, its children, and how its rows are found from a parent row
//! (by primary key, or through an index of its source) and its parents from one of its rows.

use std::collections::BTreeSet;

use crate::plan::{
    KeyedArrangement, Link, Node, NodeOutput, OutField, Plan, ProductPlan, SourceId,
};
use crate::value::Shape;

/// Index of a node in [`Tree::nodes`]; the root is 0.
pub type NodeId = usize;

/// How rows of a source are found by the values of some of their columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Finder {
    /// The columns are the primary key (in key order): the rows' trace itself.
    ByKey(SourceId),
    /// Through the index of the source on those columns.
    ByIndex(KeyedArrangement),
}

impl Finder {
    fn of(plan: &Plan, source: SourceId, columns: &[usize]) -> Finder {
        if plan.sources[source].key == columns {
            Finder::ByKey(source)
        } else {
            Finder::ByIndex(KeyedArrangement {
                source,
                columns: columns.to_vec(),
            })
        }
    }

    pub fn source(&self) -> SourceId {
        match self {
            Finder::ByKey(source) => *source,
            Finder::ByIndex(index) => index.source,
        }
    }
}

/// What the rows found for one node depend on: its source, its parent, and its link columns
/// (the parent's, the node's).
pub type ShapeNode = (SourceId, Option<NodeId>, Option<(Vec<usize>, Vec<usize>)>);

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct TreeNode {
    /// The plan's node, with its subtree (its output, order, cardinality and shape).
    pub node: Node,
    pub parent: Option<NodeId>,
    /// Position among the parent's children (the index of its slot).
    pub slot: usize,
    pub children: Vec<NodeId>,
    /// The primary key columns of the node's source.
    pub key: Vec<usize>,
    /// How the node hangs off its parent (none at the root).
    pub link: Option<Link>,
    /// How this node's rows are found from the values of a parent row's link columns.
    pub find: Option<Finder>,
    /// How the parent rows of one of this node's rows are found, from its link columns.
    pub find_parents: Option<Finder>,
}

/// A product's tree, and how its documents render.
#[derive(Debug, Clone)]
pub struct Tree {
    pub product: String,
    pub nodes: Vec<TreeNode>,
    /// The root key's column names, in key order (the output record's key object).
    pub key_names: Vec<String>,
    pub shape: Shape,
}

impl Tree {
    pub fn of(plan: &Plan, product: &ProductPlan) -> Tree {
        let mut nodes = Vec::new();
        add(plan, &product.root, None, 0, &mut nodes);
        let root = &plan.sources[product.root.source];
        Tree {
            product: product.name.clone(),
            nodes,
            key_names: root
                .key
                .iter()
                .map(|&k| root.columns[k].name.clone())
                .collect(),
            shape: product.shape(),
        }
    }

    pub fn root(&self) -> &TreeNode {
        &self.nodes[0]
    }

    /// What the rows found for a document depend on: each node's source, parent and link
    /// columns (not the fields, order or cardinality, which only assembly reads). Products of
    /// equal shapes find the same rows for the same roots, so they share one dataflow.
    pub fn shape_key(&self) -> Vec<ShapeNode> {
        self.nodes
            .iter()
            .map(|n| {
                let link = n
                    .link
                    .as_ref()
                    .map(|l| (l.parent_columns.clone(), l.child_columns.clone()));
                (n.node.source, n.parent, link)
            })
            .collect()
    }

    /// The ways of finding rows this product needs: its children's and its parents' lookups.
    pub fn finders(&self) -> impl Iterator<Item = &Finder> {
        self.nodes
            .iter()
            .flat_map(|n| n.find.iter().chain(n.find_parents.iter()))
    }

    /// The sources the product reads.
    pub fn sources(&self) -> BTreeSet<SourceId> {
        self.nodes.iter().map(|n| n.node.source).collect()
    }

    /// For each node, the columns of its rows that the documents of `trees` (of one shape)
    /// read: its primary key, the columns it links on (to its parent and to its children), and
    /// the columns any of the trees shows (which `order_by` sorts by). A row changed in other
    /// columns only changes none of their documents.
    pub fn used_columns(trees: &[&Tree]) -> Vec<Vec<usize>> {
        let Some(first) = trees.first() else {
            return Vec::new();
        };
        (0..first.nodes.len())
            .map(|n| {
                let node = &first.nodes[n];
                let mut used: BTreeSet<usize> = node.key.iter().copied().collect();
                if let Some(link) = &node.link {
                    used.extend(&link.child_columns);
                }
                for &child in &node.children {
                    if let Some(link) = &first.nodes[child].link {
                        used.extend(&link.parent_columns);
                    }
                }
                for tree in trees {
                    used.extend(tree.nodes[n].shown_columns());
                }
                used.into_iter().collect()
            })
            .collect()
    }
}

impl TreeNode {
    /// The columns of this node's rows that its item shows.
    fn shown_columns(&self) -> Vec<usize> {
        match &self.node.output {
            NodeOutput::Scalar(c) => vec![*c],
            NodeOutput::Through => Vec::new(),
            NodeOutput::Object(fields) => fields
                .iter()
                .filter_map(|f| match f {
                    OutField::Column { column, .. } => Some(*column),
                    OutField::Child { .. } => None,
                })
                .collect(),
        }
    }
}

fn add(
    plan: &Plan,
    node: &Node,
    parent: Option<NodeId>,
    slot: usize,
    nodes: &mut Vec<TreeNode>,
) -> NodeId {
    let id = nodes.len();
    let (find, find_parents) = match (&node.link, parent) {
        (Some(link), Some(parent)) => (
            Some(Finder::of(plan, node.source, &link.child_columns)),
            Some(Finder::of(
                plan,
                nodes[parent].node.source,
                &link.parent_columns,
            )),
        ),
        _ => (None, None),
    };
    nodes.push(TreeNode {
        node: node.clone(),
        parent,
        slot,
        children: Vec::new(),
        key: plan.sources[node.source].key.clone(),
        link: node.link.clone(),
        find,
        find_parents,
    });
    for (slot, child) in node.children.iter().enumerate() {
        let child_id = add(plan, child, Some(id), slot, nodes);
        nodes[id].children.push(child_id);
    }
    id
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Tree;

    /// Users (showing `fields`) with their orders (showing `total`); a user's `seen` and an
    /// order's `note` are shown by no document.
    pub(crate) fn plan(fields: &str) -> crate::plan::Plan {
        let text = format!(
            r#"
[product]
name = "p"
output_topic = "out"

[sources.users]
topic = "users"
primary_key = ["id"]
columns = {{ id = "int", name = "string", pay = "int", seen = "timestamp" }}

[sources.orders]
topic = "orders"
primary_key = ["id"]
columns = {{ id = "int", user = "int", total = "int", note = "string" }}

[document]
source = "users"
fields = {fields}

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = {{ id = "user" }}
fields = ["total"]
"#
        );
        crate::plan::load::parse(std::path::Path::new("p.toml"), &text).expect("the product loads")
    }

    #[test]
    fn the_used_columns_are_keys_links_and_what_any_product_of_the_shape_shows() {
        let (a, b) = (plan(r#"["name"]"#), plan(r#"["pay"]"#));
        let columns = |source: usize, names: &[&str]| -> Vec<usize> {
            let columns = &a.sources[source].columns;
            let mut found: Vec<usize> = names
                .iter()
                .map(|n| columns.iter().position(|c| c.name == *n).expect("a column"))
                .collect();
            found.sort();
            found
        };
        let (users, orders) = (
            a.products[0].root.source,
            a.products[0].root.children[0].source,
        );
        let (ta, tb) = (Tree::of(&a, &a.products[0]), Tree::of(&b, &b.products[0]));
        // users: id (key, and the orders' link), and name or pay as shown; `seen` never.
        // orders: id (key), user (link), total (shown); `note` never.
        let orders_used = columns(orders, &["id", "user", "total"]);
        assert_eq!(
            Tree::used_columns(&[&ta]),
            vec![columns(users, &["id", "name"]), orders_used.clone()]
        );
        assert_eq!(
            Tree::used_columns(&[&ta, &tb]),
            vec![columns(users, &["id", "name", "pay"]), orders_used]
        );
    }
}
