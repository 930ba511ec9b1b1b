//! `denorm explain`: the plan as text — sources, the indexes the dataflow builds (and which
//! relations share them), the nesting tree and the outputs; [`dot`] draws the plan as a graph.

pub mod dot;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::dataflow::tree::{Finder, Tree};
use crate::plan::spec::Cardinality;
use crate::plan::{Node, NodeOutput, OutField, Plan};

fn columns(plan: &Plan, source: usize, cols: &[usize]) -> String {
    let s = &plan.sources[source];
    cols.iter()
        .map(|&c| s.columns[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The indexes the dataflow builds (a source by link columns that are not its primary key:
/// link columns → primary keys), with the places that use each: to find a relation's rows
/// under their parents, or to follow a changed row up to its parents.
pub fn indexes(plan: &Plan) -> BTreeMap<(usize, Vec<usize>), BTreeSet<String>> {
    let mut out: BTreeMap<(usize, Vec<usize>), BTreeSet<String>> = BTreeMap::new();
    for product in &plan.products {
        let tree = Tree::of(plan, product);
        for node in &tree.nodes {
            for finder in node.find.iter().chain(&node.find_parents) {
                if let Finder::ByIndex(index) = finder {
                    out.entry((index.source, index.columns.clone()))
                        .or_default()
                        .insert(format!("{}:{}", product.name, node.node.path));
                }
            }
        }
    }
    out
}

pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "sources (each read once, upserted by primary key):");
    for (i, s) in plan.sources.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<16} topic {:<36} key ({}) columns: {}",
            s.name,
            s.topic,
            columns(plan, i, &s.key),
            s.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "indexes of rows by link columns (link columns → primary keys; shared when equal):"
    );
    for ((source, cols), users) in indexes(plan) {
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "  {}({}) used by {}",
            plan.sources[source].name,
            columns(plan, source, &cols),
            users.join(", ")
        );
    }
    for product in &plan.products {
        let _ = writeln!(
            out,
            "product {} ({}) → topic {}",
            product.name, product.file, product.output_topic
        );
        let _ = writeln!(
            out,
            "  key: {} primary key",
            plan.sources[product.root.source].name
        );
        tree(plan, &product.root, None, "document", 1, &mut out);
    }
    out
}

fn tree(
    plan: &Plan,
    node: &Node,
    parent: Option<usize>,
    name: &str,
    depth: usize,
    out: &mut String,
) {
    let pad = "  ".repeat(depth);
    let source = &plan.sources[node.source];
    let join = match &node.link {
        Some(link) => {
            let p = parent.expect("a linked node has a parent");
            format!(
                " on {}({}) = {}({})",
                plan.sources[p].name,
                columns(plan, p, &link.parent_columns),
                source.name,
                columns(plan, node.source, &link.child_columns)
            )
        }
        None => String::new(),
    };
    let card = match (node.link.is_some(), node.cardinality) {
        (false, _) => "root",
        (true, Cardinality::Many) => "many",
        (true, Cardinality::One) => "one",
    };
    let _ = writeln!(out, "{pad}{name}: {card} {}{join}", source.name);
    match &node.output {
        NodeOutput::Scalar(c) => {
            let _ = writeln!(out, "{pad}  value {}", source.columns[*c].name);
        }
        NodeOutput::Through => tree(
            plan,
            &node.children[0],
            Some(node.source),
            "(through to)",
            depth + 1,
            out,
        ),
        NodeOutput::Object(fields) => {
            for f in fields {
                match f {
                    OutField::Column { name, column } => {
                        let _ = writeln!(out, "{pad}  {name} ← {}", source.columns[*column].name);
                    }
                    OutField::Child { name, child } => tree(
                        plan,
                        &node.children[*child],
                        Some(node.source),
                        name,
                        depth + 1,
                        out,
                    ),
                }
            }
        }
    }
    if !node.order_by.is_empty() && !matches!(node.output, NodeOutput::Through) {
        let _ = writeln!(
            out,
            "{pad}  order by {}, then the whole item",
            order_names(node)
        );
    }
}

/// A node's `order_by` as field names with their direction, e.g. `created_at desc, repo`.
pub fn order_names(node: &Node) -> String {
    let NodeOutput::Object(fields) = item_output(node) else {
        return String::new();
    };
    node.order_by
        .iter()
        .map(|key| {
            let name = match &fields[key.field] {
                OutField::Column { name, .. } | OutField::Child { name, .. } => name.to_string(),
            };
            if key.descending {
                format!("{name} desc")
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The output whose fields `order_by` indexes: a through node sorts by its target's fields.
pub fn item_output(node: &Node) -> &NodeOutput {
    match &node.output {
        NodeOutput::Through => item_output(&node.children[0]),
        other => other,
    }
}
