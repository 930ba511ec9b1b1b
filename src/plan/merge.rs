//! Merging the plans of several product files into one: products that read one topic share
//! its source, whose columns are the union of theirs (or, in a running job, those it holds),
//! with every file's column numbers renumbered to the shared source's.

use super::{Node, NodeOutput, OutField, Plan, SourceId, SourcePlan};

/// How [`merge`] may treat a source that products of the plan already read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Before the job runs: a shared source holds the union of the columns its products
    /// declare.
    Union,
    /// In a running job: the rows of a source in use are held already, so a new product may
    /// declare some of its columns, not more.
    Running,
}

/// Adds `other`'s products to `plan`, sharing sources that read the same topic.
///
/// Product files that read one topic may declare different columns of it (each the ones it
/// uses) but must agree on the types of the columns they both declare and on the primary key;
/// the shared source holds the union of the columns (in a running job: the columns it has).
/// Column numbers in `other`'s products are renumbered to the shared source's. A source no
/// product uses any more (its product was removed from a running job) takes the new
/// declaration. Nothing changes when the products do not fit.
pub fn merge(plan: &mut Plan, other: Plan, sharing: Sharing) -> anyhow::Result<()> {
    check_merge(plan, &other, sharing)?;
    let used = plan.used_sources();
    let mut remap = Vec::new();
    // Per source of `other`: its column numbers in the shared source.
    let mut columns: Vec<Vec<usize>> = Vec::new();
    for source in other.sources {
        let id = match plan.sources.iter().position(|s| s.topic == source.topic) {
            Some(id) if !used.contains(&id) => {
                plan.sources[id] = source.clone();
                id
            }
            Some(id) => id,
            None => {
                plan.sources.push(source.clone());
                plan.sources.len() - 1
            }
        };
        let shared = &mut plan.sources[id];
        let mut numbers = Vec::new();
        for column in &source.columns {
            let n = match shared.columns.iter().position(|c| c.name == column.name) {
                Some(n) => n,
                None => {
                    // Union (checked above): the new column goes at the end, so the numbers
                    // of the products already merged stay valid.
                    shared.columns.push(column.clone());
                    shared.columns.len() - 1
                }
            };
            numbers.push(n);
        }
        remap.push(id);
        columns.push(numbers);
    }
    for mut product in other.products {
        renumber(&mut product.root, None, &remap, &columns);
        plan.products.push(product);
    }
    Ok(())
}

/// Renumbers a node of a merged file: its source to the shared source, its columns (and its
/// link's, whose parent columns belong to `parent`, the parent's source in the file) to the
/// shared source's columns.
fn renumber(node: &mut Node, parent: Option<SourceId>, remap: &[SourceId], columns: &[Vec<usize>]) {
    let own = &columns[node.source];
    if let (Some(link), Some(parent)) = (node.link.as_mut(), parent) {
        for c in link.parent_columns.iter_mut() {
            *c = columns[parent][*c];
        }
        for c in link.child_columns.iter_mut() {
            *c = own[*c];
        }
    }
    match &mut node.output {
        NodeOutput::Scalar(c) => *c = own[*c],
        NodeOutput::Object(fields) => {
            for field in fields.iter_mut() {
                if let OutField::Column { column, .. } = field {
                    *column = own[*column];
                }
            }
        }
        NodeOutput::Through => {}
    }
    let source = node.source;
    for child in node.children.iter_mut() {
        renumber(child, Some(source), remap, columns);
    }
    node.source = remap[source];
}

/// Whether `other` fits the products of `plan`: every topic they share is declared compatibly
/// (all differences are listed), and no product name or output topic is taken.
fn check_merge(plan: &Plan, other: &Plan, sharing: Sharing) -> anyhow::Result<()> {
    let used = plan.used_sources();
    let new_file = other
        .products
        .first()
        .map(|p| p.file.clone())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for source in &other.sources {
        let Some(id) = plan.sources.iter().position(|s| s.topic == source.topic) else {
            continue;
        };
        if !used.contains(&id) {
            continue;
        }
        let existing = &plan.sources[id];
        let differences = declaration_differences(existing, source, sharing);
        if differences.is_empty() {
            continue;
        }
        let readers: Vec<&str> = plan
            .products
            .iter()
            .filter(|p| p.root.walk().iter().any(|n| n.source == id))
            .map(|p| p.file.as_str())
            .collect();
        problems.push(format!(
            "topic {} is declared differently in {new_file} (source `{}`) than in {} (source `{}`): {}",
            source.topic,
            source.name,
            readers.join(", "),
            existing.name,
            differences.join("; ")
        ));
    }
    for product in &other.products {
        for p in &plan.products {
            if p.name == product.name {
                problems.push(format!(
                    "product name `{}` of {} is taken by {}: product names must differ",
                    product.name, product.file, p.file
                ));
            } else if p.output_topic == product.output_topic {
                problems.push(format!(
                    "output topic {} of product `{}` ({}) is the output topic of product `{}` ({}): \
                     every product writes a topic of its own",
                    product.output_topic, product.name, product.file, p.name, p.file
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let help = if problems.iter().any(|p| p.starts_with("topic ")) {
        "\n  = help: the products of one job read a topic once, so the files that read it must \
         agree on its primary key and on the type of every column they both declare"
    } else {
        ""
    };
    anyhow::bail!("{}{help}", problems.join("\n"))
}

/// How the declaration `new` of a topic conflicts with `old`, one line per conflict: a column
/// both declare with other types, another primary key, and (in a running job) columns the
/// running source does not hold.
fn declaration_differences(old: &SourcePlan, new: &SourcePlan, sharing: Sharing) -> Vec<String> {
    let mut out = Vec::new();
    let find = |s: &SourcePlan, name: &str| s.columns.iter().find(|c| c.name == name).cloned();
    if sharing == Sharing::Running {
        let extra: Vec<&str> = new
            .columns
            .iter()
            .filter(|c| find(old, &c.name).is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !extra.is_empty() {
            out.push(format!(
                "the running job holds its rows without {} (restart the job to add columns to a \
                 topic it reads)",
                extra.join(", ")
            ));
        }
    }
    for c in &new.columns {
        if let Some(o) = find(old, &c.name) {
            if o.ty != c.ty {
                out.push(format!("`{}` is {} there, {} here", c.name, o.ty, c.ty));
            }
        }
    }
    let key = |s: &SourcePlan| {
        s.key
            .iter()
            .map(|&k| s.columns[k].name.clone())
            .collect::<Vec<_>>()
    };
    if key(old) != key(new) {
        out.push(format!(
            "the primary key is ({}) there, ({}) here",
            key(old).join(", "),
            key(new).join(", ")
        ));
    }
    out
}
