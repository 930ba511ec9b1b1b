//! `denorm explain`: the plan as text — sources, the arrangements the dataflow builds (and which
//! relations share them), the nested relations rendered once (and which products and parents
//! nest each), the nesting tree and the outputs; [`dot`] draws the plan as a graph.

pub mod dot;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::plan::spec::Cardinality;
use crate::plan::{Node, NodeOutput, OutField, Plan, RelationId};

fn columns(plan: &Plan, source: usize, cols: &[usize]) -> String {
    let s = &plan.sources[source];
    cols.iter()
        .map(|&c| s.columns[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The arrangements of parent rows by link columns, with the relations that use each.
pub fn arrangements(plan: &Plan) -> BTreeMap<(usize, Vec<usize>), Vec<String>> {
    let mut out: BTreeMap<(usize, Vec<usize>), Vec<String>> = BTreeMap::new();
    for product in &plan.products {
        for node in product.root.walk() {
            for child in &node.children {
                if let Some(link) = &child.link {
                    out.entry((node.source, link.parent_columns.clone()))
                        .or_default()
                        .push(format!("{}:{}", product.name, child.path));
                }
            }
        }
    }
    out
}

/// The distinct nested relations (each rendered once), with the places that nest each
/// (`product:path`), in the order of their first use.
pub fn relations(plan: &Plan) -> Vec<(RelationId, Vec<String>)> {
    let mut out: Vec<(RelationId, Vec<String>)> = Vec::new();
    for product in &plan.products {
        for node in product.root.walk() {
            let Some(id) = RelationId::of(node) else {
                continue;
            };
            let place = format!("{}:{}", product.name, node.path);
            match out.iter_mut().find(|(r, _)| *r == id) {
                Some((_, users)) => users.push(place),
                None => out.push((id, vec![place])),
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
        "arrangements of parent rows by join columns (shared when equal):"
    );
    for ((source, cols), users) in arrangements(plan) {
        let _ = writeln!(
            out,
            "  {}({}) used by {}",
            plan.sources[source].name,
            columns(plan, source, &cols),
            if std::env::var_os("BREAK_EXPLAIN").is_some() { users[..1].join(", ") } else { users.join(", ") }
        );
    }
    let _ = writeln!(
        out,
        "nested relations, each rendered once (shared when the subtrees are equal):"
    );
    for (id, users) in relations(plan) {
        let shared = if users.len() > 1 {
            format!("shared by {}", users.len())
        } else {
            "own".to_string()
        };
        let _ = writeln!(
            out,
            "  {}({}) [{shared}] nested as {}",
            plan.sources[id.source].name,
            columns(plan, id.source, &id.key),
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
