//! `denorm explain --dot`: the plan as a Graphviz graph, drawn the way the dataflow is built —
//! each source topic upserted by its primary key, the shared indexes of rows by link columns,
//! and per product the nesting tree (each relation's rows found under their parent rows, from
//! the source's rows by primary key or through an index, and assembled into the parent's
//! item), ending in the output topic. Render with `denorm explain --dot FILE | dot -Tsvg > plan.svg`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::plan::spec::Cardinality;
use crate::plan::{Node, NodeOutput, OutField, Plan, SourceId};

/// Escapes text for a double-quoted DOT string; `\n` in `text` becomes a line break.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn column_list(plan: &Plan, source: SourceId, columns: &[usize]) -> String {
    let s = &plan.sources[source];
    columns
        .iter()
        .map(|&c| s.columns[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The id of the arrangement of `source` rows by `columns`.
fn arrangement_id(source: SourceId, columns: &[usize]) -> String {
    let mut id = format!("arrange_{source}");
    for c in columns {
        let _ = write!(id, "_{c}");
    }
    id
}

/// The plan as a `digraph`.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("digraph denorm {\n");
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");

    out.push_str("  subgraph cluster_sources {\n    label=\"sources (each read once, upserted by primary key)\";\n");
    for (i, s) in plan.sources.iter().enumerate() {
        let label = format!(
            "{}\ntopic {}\nkey ({})",
            s.name,
            s.topic,
            column_list(plan, i, &s.key)
        );
        let _ = writeln!(
            out,
            "    source_{i} [shape=cylinder, label={}];",
            quote(&label)
        );
    }
    out.push_str("  }\n");

    // Indexes of rows by link columns, shared by every relation that links on them.
    let indexes: BTreeSet<(SourceId, Vec<usize>)> = super::indexes(plan).into_keys().collect();
    for (source, columns) in &indexes {
        let id = arrangement_id(*source, columns);
        let label = format!(
            "index\n{} by ({})",
            plan.sources[*source].name,
            column_list(plan, *source, columns)
        );
        let _ = writeln!(
            out,
            "  {id} [shape=box3d, label={}];\n  source_{source} -> {id};",
            quote(&label)
        );
    }

    for (p, product) in plan.products.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_product_{p} {{\n    label={};",
            quote(&format!("product {} ({})", product.name, product.file))
        );
        let mut counter = 0;
        let root = node(
            plan,
            &indexes,
            p,
            &product.root,
            None,
            "document",
            &mut counter,
            &mut out,
        );
        let root_source = &plan.sources[product.root.source];
        let _ = writeln!(
            out,
            "    output_{p} [shape=cylinder, label={}];\n    {root} -> output_{p} [label={}];",
            quote(&format!(
                "output topic {}\nkey ({})",
                product.output_topic,
                column_list(plan, product.root.source, &root_source.key)
            )),
            quote("changed documents,\ntombstones")
        );
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// Writes the nodes and edges of one tree node (and its subtree); returns the id of its build
/// node, whose output is the node's items.
#[allow(clippy::too_many_arguments)]
fn node(
    plan: &Plan,
    indexes: &BTreeSet<(SourceId, Vec<usize>)>,
    product: usize,
    node_plan: &Node,
    parent: Option<SourceId>,
    name: &str,
    counter: &mut usize,
    out: &mut String,
) -> String {
    let id = format!("p{product}_n{}", *counter);
    *counter += 1;
    let source = &plan.sources[node_plan.source];
    let kind = match (parent, node_plan.cardinality) {
        (None, _) => "document".to_owned(),
        (Some(_), Cardinality::Many) => format!("{name}: many"),
        (Some(_), Cardinality::One) => format!("{name}: one"),
    };
    let what = match &node_plan.output {
        NodeOutput::Scalar(c) => format!("value {}", source.columns[*c].name),
        NodeOutput::Through => "the item of its target (through)".to_owned(),
        NodeOutput::Object(fields) => {
            let names: Vec<String> = fields
                .iter()
                .map(|f| match f {
                    OutField::Column { name, column }
                        if **name == *source.columns[*column].name =>
                    {
                        name.to_string()
                    }
                    OutField::Column { name, column } => {
                        format!("{name} ← {}", source.columns[*column].name)
                    }
                    OutField::Child { name, .. } => format!("{name} (nested)"),
                })
                .collect();
            format!("{{ {} }}", names.join(", "))
        }
    };
    let build = format!("{id}_build");
    let verb = if node_plan.children.is_empty() {
        "rows"
    } else {
        "rows, assembled with their children,"
    };
    let _ = writeln!(
        out,
        "    {build} [label={}];\n    source_{} -> {build};",
        quote(&format!("{kind}\n{verb} of {}\n{what}", source.name)),
        node_plan.source
    );
    for (i, child) in node_plan.children.iter().enumerate() {
        let child_name = match &node_plan.output {
            NodeOutput::Object(fields) => fields
                .iter()
                .find_map(|f| match f {
                    OutField::Child { name, child } if *child == i => Some(name.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| child.path.clone()),
            _ => "(through to)".to_owned(),
        };
        let child_build = self::node(
            plan,
            indexes,
            product,
            child,
            Some(node_plan.source),
            &child_name,
            counter,
            out,
        );
        let link = child.link.as_ref().expect("children have links");
        let nest = format!("{child_build}_nest");
        let join = format!("{child_build}_join");
        let order = if child.order_by.is_empty() {
            String::new()
        } else {
            format!("\norder by {}", super::order_names(child))
        };
        let shape = match child.cardinality {
            Cardinality::Many => "a list",
            Cardinality::One => "one item",
        };
        let _ = writeln!(
            out,
            "    {nest} [shape=ellipse, label={}];\n    {child_build} -> {nest};",
            quote(&format!(
                "{} under each parent row\ninto {shape}{order}",
                plan.sources[child.source].name
            ))
        );
        let _ = writeln!(
            out,
            "    {join} [shape=diamond, label={}];\n    {nest} -> {join};\n    {} -> {join};\n    {join} -> {build};",
            quote(&format!(
                "find\n{}({}) = {}({})",
                source.name,
                column_list(plan, node_plan.source, &link.parent_columns),
                plan.sources[child.source].name,
                column_list(plan, child.source, &link.child_columns)
            )),
            if indexes.contains(&(child.source, link.child_columns.clone())) {
                arrangement_id(child.source, &link.child_columns)
            } else {
                format!("source_{}", child.source)
            }
        );
    }
    build
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(quote("a \"b\" \\ c\nd"), r#""a \"b\" \\ c\nd""#);
    }
}
