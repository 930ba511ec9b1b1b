//! Lowering a parsed product file to a plan: every source, column, field and relation name is
//! resolved and checked, and a mistake is a [`SpecError`] naming the file, line and column, with
//! the line shown and the names that would have been valid.

use std::collections::HashSet;

use indexmap::IndexMap;
use toml::Spanned;

use super::spec::{Cardinality, FieldSpec, NodeSpec, ProductFile, RelationSpec, SourceText};
use super::*;

/// A mistake in a product file, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {message}\n{excerpt}{hint}")]
pub struct SpecError {
    pub place: String,
    pub message: String,
    pub excerpt: String,
    pub hint: String,
}

struct Lowering<'a> {
    text: &'a SourceText,
    file: &'a ProductFile,
    sources: Vec<SourcePlan>,
}

impl<'a> Lowering<'a> {
    fn error<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Result<T, SpecError> {
        let hint = hint.into();
        Err(SpecError {
            place: self.text.locate(span.start),
            message: message.into(),
            excerpt: self.text.excerpt(span.start),
            hint: if hint.is_empty() {
                hint
            } else {
                format!("\n  = help: {hint}")
            },
        })
    }

    fn source(&self, name: &Spanned<String>) -> Result<SourceId, SpecError> {
        match self.sources.iter().position(|s| &s.name == name.get_ref()) {
            Some(id) => Ok(id),
            None => self.error(
                name.span(),
                format!("unknown source `{}`", name.get_ref()),
                format!(
                    "{}declared sources: {} (a relation's `source` names a [sources.NAME] \
                     section, not a topic)",
                    match self.sources.iter().find(|s| &s.topic == name.get_ref()) {
                        Some(s) => format!(
                            "that is the topic of source `{}`: write source = \"{}\"; ",
                            s.name, s.name
                        ),
                        None => maybe(name.get_ref(), self.file.sources.keys().map(String::as_str)),
                    },
                    self.file
                        .sources
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    fn column(&self, source: SourceId, name: &Spanned<String>) -> Result<usize, SpecError> {
        let s = &self.sources[source];
        match s.columns.iter().position(|c| &c.name == name.get_ref()) {
            Some(i) => Ok(i),
            None => self.error(
                name.span(),
                format!("source `{}` has no column `{}`", s.name, name.get_ref()),
                format!(
                    "{}its columns are: {}; add it under [sources.{}.columns] if the table has it",
                    maybe(name.get_ref(), s.column_names()),
                    s.column_names().join(", "),
                    s.name
                ),
            ),
        }
    }

    fn lower_sources(&mut self) -> Result<(), SpecError> {
        let mut topics = HashSet::new();
        for (name, spanned) in &self.file.sources {
            let spec = spanned.get_ref();
            let mut columns = Vec::new();
            for (col, ty) in spec.columns.get_ref() {
                match ColumnType::parse(ty.get_ref()) {
                    Some(t) => columns.push(Column {
                        name: col.clone(),
                        ty: t,
                    }),
                    None => {
                        return self.error(
                            ty.span(),
                            format!("unknown column type `{}` for `{name}.{col}`", ty.get_ref()),
                            format!("{}types are: {TYPE_NAMES}", type_hint(ty.get_ref())),
                        )
                    }
                }
            }
            if columns.is_empty() {
                return self.error(
                    spec.columns.span(),
                    format!("source `{name}` declares no columns"),
                    "list the columns the product uses with their types",
                );
            }
            if !topics.insert(spec.topic.get_ref().clone()) {
                return self.error(
                    spec.topic.span(),
                    format!("topic `{}` is used by two sources", spec.topic.get_ref()),
                    "",
                );
            }
            let mut key = Vec::new();
            for k in spec.primary_key.get_ref() {
                match columns.iter().position(|c| &c.name == k.get_ref()) {
                    Some(i) if key.contains(&i) => {
                        return self.error(
                            k.span(),
                            format!("`{}` appears twice in the primary key", k.get_ref()),
                            "",
                        )
                    }
                    Some(i) => key.push(i),
                    None => {
                        return self.error(
                            k.span(),
                            format!(
                            "primary key column `{}` is not a declared column of source `{name}`",
                            k.get_ref()
                        ),
                            format!(
                                "{}declare every primary key column under columns (declared: {})",
                                maybe(k.get_ref(), columns.iter().map(|c| c.name.as_str())),
                                columns
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    }
                }
            }
            if key.is_empty() {
                return self.error(
                    spec.primary_key.span(),
                    format!("source `{name}` has an empty primary key"),
                    "name the key columns, e.g. primary_key = [\"id\"]",
                );
            }
            self.sources.push(SourcePlan {
                name: name.clone(),
                topic: spec.topic.get_ref().clone(),
                columns,
                key,
            });
        }
        Ok(())
    }

    fn link(
        &self,
        parent: SourceId,
        child: SourceId,
        on: &Spanned<IndexMap<String, Spanned<String>>>,
    ) -> Result<Link, SpecError> {
        if on.get_ref().is_empty() {
            return self.error(
                on.span(),
                "`on` names no columns",
                "write on = { parent_column = \"child_column\" }",
            );
        }
        let mut link = Link {
            parent_columns: Vec::new(),
            child_columns: Vec::new(),
        };
        let (parent_source, child_source) = (&self.sources[parent], &self.sources[child]);
        for (parent_col, child_col) in on.get_ref() {
            let p = match parent_source
                .columns
                .iter()
                .position(|c| &c.name == parent_col)
            {
                Some(p) => p,
                None => {
                    // The parent column is a map key without a span of its own: find it in `on`.
                    let at = self.text.text[on.span()]
                        .find(parent_col.as_str())
                        .map(|i| on.span().start + i)
                        .unwrap_or(on.span().start);
                    let swapped = child_source.columns.iter().any(|c| &c.name == parent_col)
                        && parent_source
                            .columns
                            .iter()
                            .any(|c| &c.name == child_col.get_ref());
                    let hint = if swapped {
                        format!(
                            "`on` is {{ parent_column = \"child_column\" }} with the parent (`{}`) on the left, \
                             and `{parent_col}` is a column of `{}`: did you swap them? write on = {{ {} = \"{parent_col}\" }}",
                            parent_source.name,
                            child_source.name,
                            child_col.get_ref()
                        )
                    } else {
                        format!(
                            "{}the parent's columns are: {} (`on` is {{ parent_column = \"child_column\" }})",
                            maybe(parent_col, parent_source.column_names()),
                            parent_source.column_names().join(", ")
                        )
                    };
                    return self.error(
                        at..at,
                        format!(
                            "`on` names `{parent_col}`, which is not a column of the parent source `{}`",
                            parent_source.name
                        ),
                        hint,
                    );
                }
            };
            let c = self.column(child, child_col)?;
            let (pt, ct) = (
                self.sources[parent].columns[p].ty,
                self.sources[child].columns[c].ty,
            );
            if !pt.comparable(ct) {
                return self.error(
                    child_col.span(),
                    format!(
                        "cannot join `{}.{parent_col}` ({pt}) with `{}.{}` ({ct}): the types differ",
                        parent_source.name,
                        child_source.name,
                        child_col.get_ref()
                    ),
                    "join columns must have the same type; declare both with the type the table has \
                     (if the tables really differ, the values can never be equal)",
                );
            }
            link.parent_columns.push(p);
            link.child_columns.push(c);
        }
        Ok(link)
    }

    /// Lowers the fields and relations of a node whose rows come from `source`.
    #[allow(clippy::too_many_arguments)]
    fn lower_output(
        &self,
        path: &str,
        source: SourceId,
        fields: &[FieldSpec],
        value: Option<&Spanned<String>>,
        relations: &[RelationSpec],
        at: std::ops::Range<usize>,
        ancestors: &[SourceId],
    ) -> Result<(NodeOutput, Vec<Node>), SpecError> {
        let mut children = Vec::new();
        let mut names: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        let mut out = Vec::new();
        if let Some(value) = value {
            if let Some(f) = fields.first() {
                return self.error(
                    f.output_name().span(),
                    "a relation has either `value` or `fields`, not both",
                    "",
                );
            }
            if let Some(r) = relations.first() {
                return self.error(
                    r.name.span(),
                    "a relation with `value` nests a single column and cannot have relations",
                    "use `fields` to nest an object; or, if this block belongs to another \
                     relation: a [[...relations.relations]] block nests under the nearest \
                     [[...relations]] above it, so move it right under the relation it belongs to",
                );
            }
            return Ok((NodeOutput::Scalar(self.column(source, value)?), children));
        }
        for field in fields {
            let wanted = field.column();
            let is_column = self.sources[source]
                .columns
                .iter()
                .any(|c| &c.name == wanted.get_ref());
            if !is_column
                && relations
                    .iter()
                    .any(|r| r.name.get_ref() == wanted.get_ref())
            {
                return self.error(
                    wanted.span(),
                    format!(
                        "`{}` is a relation, not a column of `{}`",
                        wanted.get_ref(),
                        self.sources[source].name
                    ),
                    "relations come after the fields by themselves: remove it from `fields`",
                );
            }
            let column = self.column(source, wanted)?;
            let name = field.output_name();
            self.unique(&mut names, name, false)?;
            out.push(OutField::Column {
                name: name.get_ref().as_str().into(),
                column,
            });
        }
        // A deliberate bug for the tests of `denorm verify`: the first two fields' columns swapped.
        if crate::fault::on(crate::fault::Fault::FieldIndex) {
            if let [OutField::Column { column: a, .. }, OutField::Column { column: b, .. }, ..] =
                &mut out[..]
            {
                std::mem::swap(a, b);
            }
        }
        for relation in relations {
            self.unique(&mut names, &relation.name, true)?;
            let child = self.lower_relation(path, source, relation, ancestors)?;
            out.push(OutField::Child {
                name: relation.name.get_ref().as_str().into(),
                child: children.len(),
            });
            children.push(child);
        }
        if out.is_empty() {
            return self.error(
                at,
                "this node outputs nothing",
                "list `fields`, nest `relations`, or give a `value`",
            );
        }
        Ok((NodeOutput::Object(out), children))
    }

    /// Checks that `name` (a field, or a relation's name if `relation`) is new in its object.
    fn unique(
        &self,
        names: &mut Vec<(String, std::ops::Range<usize>)>,
        name: &Spanned<String>,
        relation: bool,
    ) -> Result<(), SpecError> {
        if let Some((_, first)) = names.iter().find(|(n, _)| n == name.get_ref()) {
            let first = self.text.locate(first.start);
            let n = name.get_ref();
            return if relation {
                self.error(
                    name.span(),
                    format!("relation `{n}` has the name of another field of the same object (first at {first})"),
                    "a relation's `name` is the field it becomes in its parent: give it another name",
                )
            } else {
                self.error(
                    name.span(),
                    format!("field `{n}` is output twice (first at {first})"),
                    format!(
                        "remove one, or rename it: {{ name = \"other_{n}\", column = \"...\" }}"
                    ),
                )
            };
        }
        names.push((name.get_ref().clone(), name.span()));
        Ok(())
    }

    fn lower_relation(
        &self,
        parent_path: &str,
        parent: SourceId,
        rel: &RelationSpec,
        ancestors: &[SourceId],
    ) -> Result<Node, SpecError> {
        let path = format!("{parent_path}.{}", rel.name.get_ref());
        let target = self.source(&rel.source)?;
        let cardinality = *rel.cardinality.get_ref();
        let mut chain = ancestors.to_vec();
        chain.push(parent);
        let target_node =
            |link_parent: SourceId, chain: &[SourceId], cardinality| -> Result<Node, SpecError> {
                let link = self.link(link_parent, target, &rel.on)?;
                let (output, children) = self.lower_output(
                    &path,
                    target,
                    &rel.fields,
                    rel.value.as_ref(),
                    &rel.relations,
                    rel.name.span(),
                    chain,
                )?;
                let order_by = self.order_by(&output, &children, rel)?;
                Ok(Node {
                    path: path.clone(),
                    source: target,
                    link: Some(link),
                    cardinality,
                    output,
                    children,
                    order_by,
                })
            };
        // A relation may revisit a source (users → pull_requests → users), but a path longer than
        // the number of sources times two is almost surely a runaway recursive spec.
        if chain.len() > 2 * self.sources.len() + 2 {
            return self.error(
                rel.name.span(),
                "relations nest deeper than the sources allow: is the file recursive?",
                "",
            );
        }
        match &rel.through {
            None => target_node(parent, &chain, cardinality),
            Some(through) => {
                let link_source = self.source(&through.source)?;
                let link = self.link(parent, link_source, &through.on)?;
                let mut chain2 = chain.clone();
                chain2.push(link_source);
                let child = target_node(link_source, &chain2, Cardinality::One)?;
                let order_by = child.order_by.clone();
                Ok(Node {
                    path: format!("{path}(through {})", through.source.get_ref()),
                    source: link_source,
                    link: Some(link),
                    cardinality,
                    output: NodeOutput::Through,
                    children: vec![child],
                    order_by,
                })
            }
        }
    }

    fn order_by(
        &self,
        output: &NodeOutput,
        children: &[Node],
        rel: &RelationSpec,
    ) -> Result<Vec<SortKey>, SpecError> {
        let mut order = Vec::new();
        for entry in &rel.order_by {
            let (field_name, descending) = SortKey::parse(entry.get_ref());
            let name = Spanned::new(entry.span(), field_name.to_owned());
            let NodeOutput::Object(fields) = output else {
                return self.error(
                    name.span(),
                    "`order_by` applies to object items; a list of values is sorted by value",
                    "remove order_by",
                );
            };
            let names: Vec<&str> = fields
                .iter()
                .map(|f| match f {
                    OutField::Column { name, .. } | OutField::Child { name, .. } => &**name,
                })
                .collect();
            match names.iter().position(|n| *n == name.get_ref()) {
                Some(i) if matches!(fields[i], OutField::Child { child, .. } if children[child].cardinality == Cardinality::Many) => {
                    return self.error(
                        name.span(),
                        format!("cannot order by `{}`: it is a nested list", name.get_ref()),
                        "",
                    )
                }
                Some(i) => order.push(SortKey {
                    field: i,
                    descending,
                }),
                None => {
                    let columns = self.sources[self.source(&rel.source)?].column_names();
                    let renamed = fields.iter().find_map(|f| match f {
                        OutField::Column { name: out, column }
                            if columns.get(*column) == Some(&name.get_ref().as_str()) =>
                        {
                            Some(out.clone())
                        }
                        _ => None,
                    });
                    let hint = if let Some(out) = renamed {
                        let direction = if descending { " desc" } else { "" };
                        format!(
                            "order_by sorts by output fields, and column `{}` is output as `{out}`: \
                             write order_by = [\"{out}{direction}\"]",
                            name.get_ref()
                        )
                    } else if columns.contains(&name.get_ref().as_str()) {
                        format!(
                            "`{}` is a column of `{}` but not one of the relation's fields, and order_by \
                             sorts by output fields: add it to `fields` (its fields are: {})",
                            name.get_ref(),
                            rel.source.get_ref(),
                            names.join(", ")
                        )
                    } else {
                        format!(
                            "{}its fields are: {}",
                            maybe(name.get_ref(), names.iter().copied()),
                            names.join(", ")
                        )
                    };
                    return self.error(
                        name.span(),
                        format!(
                            "`order_by` names `{}`, which is not an output field of `{}`",
                            name.get_ref(),
                            rel.name.get_ref()
                        ),
                        hint,
                    );
                }
            }
        }
        Ok(order)
    }
}

/// "did you mean `x`? " when a candidate is close to `name`, else nothing.
fn maybe<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    crate::plan::suggest::closest(name, candidates)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default()
}

/// The declared type for a SQL type name someone may write instead, as advice.
fn type_hint(written: &str) -> String {
    let lower = written.trim().to_ascii_lowercase();
    if ColumnType::parse(&lower).is_some() {
        return format!("type names are lower case: write `{lower}`; ");
    }
    let base = lower.split(['(', ' ']).next().unwrap_or_default();
    if matches!(base, "numeric" | "decimal" | "number") {
        // numeric(precision, scale): only the scale matters here.
        let args = lower
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .map(|a| a.split(',').map(str::trim).collect::<Vec<_>>());
        return match args.as_deref() {
            Some([_, scale]) if scale.parse::<u32>().is_ok() => format!(
                "`{written}` is written `decimal({scale})` here (the scale only; the precision \
                 does not matter); "
            ),
            _ => format!("`{written}` is written `decimal` or `decimal(SCALE)` here; "),
        };
    }
    let ours = match base {
        "varchar" | "char" | "character" | "uuid" | "citext" | "enum" => "string",
        "bigint" | "smallint" | "int2" | "int4" | "int8" | "serial" | "bigserial" | "tinyint" => {
            "int"
        }
        "numeric" | "number" | "money" => "decimal",
        "real" | "float4" | "float8" | "double" => "float",
        "timestamptz" | "datetime" => "timestamp",
        "jsonb" => "json",
        "bit" => "bool",
        _ => {
            let names = TYPE_NAMES.split(", ");
            return match crate::plan::suggest::closest(&lower, names) {
                Some(c) => format!("did you mean `{c}`? "),
                None => String::new(),
            };
        }
    };
    format!("`{written}` is written `{ours}` here; ")
}

/// Checks a parsed product file and lowers it to a one-product [`Plan`].
pub fn lower(text: &SourceText, file: &ProductFile) -> Result<Plan, SpecError> {
    let mut l = Lowering {
        text,
        file,
        sources: Vec::new(),
    };
    l.lower_sources()?;
    let name = &file.product.name;
    if name.get_ref().is_empty()
        || !name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return l.error(
            name.span(),
            format!(
                "product name `{}` must be non-empty letters, digits, `_`, `-` or `.`",
                name.get_ref()
            ),
            "",
        );
    }
    let topic = &file.product.output_topic;
    if l.sources.iter().any(|s| &s.topic == topic.get_ref()) {
        return l.error(
            topic.span(),
            "the output topic is also a source topic",
            "write documents to a topic of their own",
        );
    }
    let root_source = l.source(&file.document.source)?;
    let NodeSpec {
        fields,
        relations,
        source,
    } = &file.document;
    let (output, children) = l.lower_output(
        "document",
        root_source,
        fields,
        None,
        relations,
        source.span(),
        &[],
    )?;
    let root = Node {
        path: "document".into(),
        source: root_source,
        link: None,
        cardinality: Cardinality::One,
        output,
        children,
        order_by: Vec::new(),
    };
    let product = ProductPlan {
        name: name.get_ref().clone(),
        file: text.path.display().to_string(),
        output_topic: topic.get_ref().clone(),
        root,
    };
    // Keep only the sources the document uses, renumbered in first-use order.
    let mut used: Vec<SourceId> = Vec::new();
    for node in product.root.walk() {
        if !used.contains(&node.source) {
            used.push(node.source);
        }
    }
    let sources = used.iter().map(|&i| l.sources[i].clone()).collect();
    let mut plan = Plan {
        sources,
        products: Vec::new(),
    };
    let mut product = product;
    fn renumber(node: &mut Node, used: &[SourceId]) {
        node.source = used
            .iter()
            .position(|&u| u == node.source)
            .expect("walked above");
        node.children.iter_mut().for_each(|c| renumber(c, used));
    }
    renumber(&mut product.root, &used);
    plan.products.push(product);
    Ok(plan)
}
