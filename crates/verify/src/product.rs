//! The product file as verify reads it: the TOML deserialized into small structs of its own
//! ([`ProductFile`]), then resolved into a [`Product`] whose columns, links and sort keys are
//! indices. The format is the README's ("Product files"); the engine's `denorm check` validates a
//! file in depth, and this reader assumes a valid one, but anything it cannot make sense of is an
//! error naming the place, never a panic. Unknown keys are refused: a product file using a feature
//! verify does not know would otherwise be judged by the wrong rules.

use anyhow::{anyhow, bail, Context as _};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::column::ColumnType;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductFile {
    product: ProductSection,
    sources: IndexMap<String, SourceSection>,
    document: DocumentSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductSection {
    name: String,
    output_topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    topic: String,
    primary_key: Vec<String>,
    columns: IndexMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentSection {
    source: String,
    #[serde(default)]
    fields: Vec<FieldEntry>,
    #[serde(default)]
    relations: Vec<RelationSection>,
}

/// `"column"` or `{ name = "output", column = "column" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FieldEntry {
    Column(String),
    Renamed { name: String, column: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelationSection {
    name: String,
    source: String,
    cardinality: Cardinality,
    on: IndexMap<String, String>,
    through: Option<ThroughSection>,
    #[serde(default)]
    fields: Vec<FieldEntry>,
    value: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    #[serde(default)]
    relations: Vec<RelationSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThroughSection {
    source: String,
    on: IndexMap<String, String>,
}

/// `one`: the first item or null; `many`: the list of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cardinality {
    One,
    Many,
}

/// A resolved product.
#[derive(Debug, Clone)]
pub struct Product {
    pub name: String,
    pub output_topic: String,
    pub sources: Vec<Source>,
    /// The document: one per row of its source.
    pub root: Object,
}

/// One source table: a topic upserted by its primary key.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub topic: String,
    /// In declaration order: a row holds one value per column, in this order.
    pub columns: Vec<Column>,
    /// Indices into `columns`, in key order.
    pub key: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// An object made of one row of `source`: its column fields, then its relations.
#[derive(Debug, Clone)]
pub struct Object {
    pub source: usize,
    /// Output name and column index, in declared order.
    pub fields: Vec<(String, usize)>,
    pub relations: Vec<Relation>,
}

/// A nested field: the items of the rows of `source` linked to the parent row.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub cardinality: Cardinality,
    /// With `through`, the parent links to rows of the link source, and `on` links those to
    /// rows of `source`.
    pub through: Option<Link>,
    pub source: usize,
    /// (column of the parent, or of the link source with `through`; column of `source`).
    pub on: Vec<(usize, usize)>,
    pub item: Item,
    /// Output field name of the item and whether it sorts largest first.
    pub order_by: Vec<(String, bool)>,
}

/// How the rows of a link source attach to the parent: (parent column, link column) pairs.
#[derive(Debug, Clone)]
pub struct Link {
    pub source: usize,
    pub on: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub enum Item {
    /// `value = "column"`: the column's value.
    Value(usize),
    Object(Object),
}

impl Product {
    /// Reads a product file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Product> {
        let file: ProductFile = toml::from_str(text)
            .map_err(|e| anyhow!("{}", e.to_string().trim_end()))
            .with_context(|| format!("verify cannot read the product file {origin}"))?;
        resolve(file).with_context(|| format!("verify cannot use the product file {origin}"))
    }

    /// The index of the source named `name`.
    fn source(&self, name: &str) -> anyhow::Result<usize> {
        self.sources
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow!("no source `{name}` (declared: {})", self.source_names()))
    }

    fn source_names(&self) -> String {
        let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        names.join(", ")
    }

    fn column(&self, source: usize, name: &str) -> anyhow::Result<usize> {
        let s = &self.sources[source];
        s.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| anyhow!("source `{}` declares no column `{name}`", s.name))
    }
}

fn resolve(file: ProductFile) -> anyhow::Result<Product> {
    let mut product = Product {
        name: file.product.name,
        output_topic: file.product.output_topic,
        sources: Vec::new(),
        root: Object {
            source: 0,
            fields: Vec::new(),
            relations: Vec::new(),
        },
    };
    for (name, section) in file.sources {
        let columns = section
            .columns
            .into_iter()
            .map(|(column, ty)| {
                let parsed = ColumnType::parse(&ty).ok_or_else(|| {
                    anyhow!("source `{name}`: column `{column}` has type `{ty}`, which verify does not know")
                })?;
                Ok(Column {
                    name: column,
                    ty: parsed,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut source = Source {
            name: name.clone(),
            topic: section.topic,
            columns,
            key: Vec::new(),
        };
        if section.primary_key.is_empty() {
            bail!("source `{name}` has an empty primary_key");
        }
        for key in &section.primary_key {
            let at = source
                .columns
                .iter()
                .position(|c| &c.name == key)
                .ok_or_else(|| {
                    anyhow!("source `{name}`: primary key column `{key}` is not declared")
                })?;
            source.key.push(at);
        }
        product.sources.push(source);
    }
    let root_source = product
        .source(&file.document.source)
        .context("[document]")?;
    product.root = object(
        &product,
        root_source,
        &file.document.fields,
        &file.document.relations,
        "document",
    )?;
    Ok(product)
}

fn object(
    product: &Product,
    source: usize,
    fields: &[FieldEntry],
    relations: &[RelationSection],
    path: &str,
) -> anyhow::Result<Object> {
    let mut out = Object {
        source,
        fields: Vec::new(),
        relations: Vec::new(),
    };
    let mut names: Vec<&str> = Vec::new();
    for field in fields {
        let (name, column) = match field {
            FieldEntry::Column(c) => (c, c),
            FieldEntry::Renamed { name, column } => (name, column),
        };
        let index = product
            .column(source, column)
            .with_context(|| format!("{path}: fields"))?;
        names.push(name);
        out.fields.push((name.clone(), index));
    }
    for section in relations {
        names.push(&section.name);
        out.relations
            .push(relation(product, source, section, path)?);
    }
    if names.is_empty() {
        bail!("{path}: outputs nothing (no fields, relations or value)");
    }
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].contains(n).then_some(n))
    {
        bail!("{path}: the field `{twice}` is output twice");
    }
    Ok(out)
}

fn relation(
    product: &Product,
    parent: usize,
    section: &RelationSection,
    parent_path: &str,
) -> anyhow::Result<Relation> {
    let path = format!("{parent_path}.{}", section.name);
    let source = product
        .source(&section.source)
        .with_context(|| format!("{path}: source"))?;
    let pairs = |from: usize, to: usize, on: &IndexMap<String, String>, what: &str| {
        if on.is_empty() {
            bail!("{path}: `{what}` is empty");
        }
        on.iter()
            .map(|(a, b)| Ok((product.column(from, a)?, product.column(to, b)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("{path}: {what}"))
    };
    let (through, on) = match &section.through {
        Some(t) => {
            let link = product
                .source(&t.source)
                .with_context(|| format!("{path}: through.source"))?;
            let through = Link {
                source: link,
                on: pairs(parent, link, &t.on, "through.on")?,
            };
            (Some(through), pairs(link, source, &section.on, "on")?)
        }
        None => (None, pairs(parent, source, &section.on, "on")?),
    };
    let item = match &section.value {
        Some(column) => {
            if !section.fields.is_empty() || !section.relations.is_empty() {
                bail!(
                    "{path}: a relation has either `value` or `fields` and `relations`, not both"
                );
            }
            if !section.order_by.is_empty() {
                bail!("{path}: a list of values is sorted by value and takes no `order_by`");
            }
            Item::Value(
                product
                    .column(source, column)
                    .with_context(|| format!("{path}: value"))?,
            )
        }
        None => Item::Object(object(
            product,
            source,
            &section.fields,
            &section.relations,
            &path,
        )?),
    };
    let mut order_by = Vec::new();
    for entry in &section.order_by {
        let (name, descending) = sort_key(entry);
        let known = match &item {
            Item::Object(object) => {
                object.fields.iter().any(|(n, _)| n == name)
                    || object
                        .relations
                        .iter()
                        .any(|r| r.name == name && r.cardinality == Cardinality::One)
            }
            Item::Value(_) => false,
        };
        if !known {
            bail!(
                "{path}: order_by `{entry}` names no output field (or `one` relation) of the item"
            );
        }
        order_by.push((name.to_owned(), descending));
    }
    Ok(Relation {
        name: section.name.clone(),
        cardinality: section.cardinality,
        through,
        source,
        on,
        item,
        order_by,
    })
}

/// An `order_by` entry: `name`, `name asc`, `name desc` (any case) or `-name`; whether it sorts
/// largest first.
fn sort_key(entry: &str) -> (&str, bool) {
    let entry = entry.trim();
    if let Some(name) = entry.strip_prefix('-') {
        return (name.trim(), true);
    }
    if let Some((name, direction)) = entry.rsplit_once(char::is_whitespace) {
        if direction.eq_ignore_ascii_case("desc") {
            return (name.trim(), true);
        }
        if direction.eq_ignore_ascii_case("asc") {
            return (name.trim(), false);
        }
    }
    (entry, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_in_every_form() {
        assert_eq!(sort_key("a"), ("a", false));
        assert_eq!(sort_key(" a  DESC "), ("a", true));
        assert_eq!(sort_key("a asc"), ("a", false));
        assert_eq!(sort_key("-a"), ("a", true));
    }

    #[test]
    fn mistakes_are_errors_not_panics() {
        let base = r#"
[product]
name = "p"
output_topic = "out"
[sources.a]
topic = "t.a"
primary_key = ["id"]
columns = { id = "int", v = "decimal(2)" }
[document]
source = "a"
fields = ["id", { name = "value", column = "v" }]
"#;
        let p = Product::parse(base, "p.toml").unwrap();
        assert_eq!(
            p.root.fields,
            vec![("id".to_owned(), 0), ("value".to_owned(), 1)]
        );
        for (from, to, says) in [
            ("\"int\"", "\"integer(3)\"", "type `integer(3)`"),
            ("[\"id\"]", "[\"nope\"]", "primary key column `nope`"),
            ("source = \"a\"", "source = \"b\"", "no source `b`"),
            (
                "fields = [",
                "filters = 1\nfields = [",
                "unknown field `filters`",
            ),
            ("\"id\", {", "\"id\", \"id\", {", "`id` is output twice"),
            ("[product]", "[product", "cannot read"),
        ] {
            let text = base.replacen(from, to, 1);
            let e = format!("{:#}", Product::parse(&text, "p.toml").unwrap_err());
            assert!(e.contains(says), "{from} -> {to}: {e}");
            assert!(e.contains("p.toml"), "{e}");
        }
    }
}
