//! The product file as the user wrote it: TOML deserialized into typed sections, each name kept
//! with its place in the file so that [`crate::plan`] can point at the exact spot of a mistake.
//!
//! A product file declares its sources (topic, primary key, typed columns), the document root and
//! a tree of relations under it, and the output topic. See `dataflows/` and the README.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A product file, parsed but not yet checked against itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductFile {
    pub product: ProductSection,
    pub sources: IndexMap<String, Spanned<SourceSpec>>,
    pub document: NodeSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSection {
    pub name: Spanned<String>,
    pub output_topic: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub topic: Spanned<String>,
    pub primary_key: Spanned<Vec<Spanned<String>>>,
    /// Column name → type (`string`, `int`, `float`, `bool`, `decimal`, `decimal(S)`, `date`,
    /// `time`, `timestamp`, `timestamp(ms|us|ns)`, `json`), in the order they are declared.
    pub columns: Spanned<IndexMap<String, Spanned<String>>>,
}

/// The document root: a source, its projected fields and its relations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub source: Spanned<String>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub relations: Vec<RelationSpec>,
}

/// A field of an object: a column, kept under its own name or renamed.
#[derive(Debug)]
pub enum FieldSpec {
    Column(Spanned<String>),
    Renamed {
        name: Spanned<String>,
        column: Spanned<String>,
    },
}

// Not `#[serde(untagged)]`: serde buffers untagged content, which loses toml's spans (every
// `Spanned` inside fails to deserialize). The visitor reads the string or table directly.
impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        enum Raw {
            Column(String),
            Renamed {
                name: Spanned<String>,
                column: Spanned<String>,
            },
        }
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column name or { name = \"...\", column = \"...\" }")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Column(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let (mut name, mut column) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" if name.is_none() => name = Some(map.next_value()?),
                        "column" if column.is_none() => column = Some(map.next_value()?),
                        "name" | "column" => {
                            return Err(A::Error::custom(format!("duplicate key `{key}`")))
                        }
                        other => return Err(A::Error::unknown_field(other, &["name", "column"])),
                    }
                }
                Ok(Raw::Renamed {
                    name: name.ok_or_else(|| A::Error::missing_field("name"))?,
                    column: column.ok_or_else(|| A::Error::missing_field("column"))?,
                })
            }
        }
        struct RawField(Raw);
        impl<'de> Deserialize<'de> for RawField {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(RawVisitor).map(RawField)
            }
        }
        // The outer `Spanned` gives the place of a bare column name.
        let spanned = Spanned::<RawField>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(match spanned.into_inner().0 {
            Raw::Column(column) => FieldSpec::Column(Spanned::new(span, column)),
            Raw::Renamed { name, column } => FieldSpec::Renamed { name, column },
        })
    }
}

impl FieldSpec {
    pub fn output_name(&self) -> &Spanned<String> {
        match self {
            FieldSpec::Column(c) => c,
            FieldSpec::Renamed { name, .. } => name,
        }
    }
    pub fn column(&self) -> &Spanned<String> {
        match self {
            FieldSpec::Column(c) => c,
            FieldSpec::Renamed { column, .. } => column,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cardinality {
    /// A single nested object (or scalar), `null` when nothing matches.
    One,
    /// A list of nested objects (or scalars), `[]` when nothing matches.
    Many,
}

/// A nested field: the child rows of `source` whose `on` columns equal the parent's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationSpec {
    pub name: Spanned<String>,
    pub source: Spanned<String>,
    pub cardinality: Spanned<Cardinality>,
    /// Parent column → child column (with `through`: link column → child column).
    pub on: Spanned<IndexMap<String, Spanned<String>>>,
    /// Many-to-many: the link collection between parent and child.
    pub through: Option<ThroughSpec>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    /// Instead of an object, nest the value of this one column.
    pub value: Option<Spanned<String>>,
    /// Output fields of the nested item to sort a list by (ascending), then the whole item.
    #[serde(default)]
    pub order_by: Vec<Spanned<String>>,
    #[serde(default)]
    pub relations: Vec<RelationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughSpec {
    pub source: Spanned<String>,
    /// Parent column → link column.
    pub on: Spanned<IndexMap<String, Spanned<String>>>,
}

/// A product file's text with its path, for error messages that point at a line.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    pub fn read(path: &Path) -> anyhow::Result<SourceText> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read product file {}: {e}", path.display()))?;
        Ok(SourceText {
            path: path.to_owned(),
            text,
        })
    }

    /// `path:line:column` of a byte offset.
    pub fn locate(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        // In characters, as editors count them (and as `excerpt` places its caret).
        let column = before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
            .chars()
            .count()
            + 1;
        format!("{}:{line}:{column}", self.path.display())
    }

    /// The byte range of the line holding a byte offset (without its newline).
    fn line_range(&self, offset: usize) -> std::ops::Range<usize> {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let end = self.text[offset..]
            .find('\n')
            .map(|i| offset + i)
            .unwrap_or(self.text.len());
        start..end
    }

    /// The text of the line holding a byte offset.
    pub fn line_at(&self, offset: usize) -> &str {
        &self.text[self.line_range(offset)]
    }

    /// The line holding a byte offset, with a caret under the spot.
    pub fn excerpt(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let range = self.line_range(offset);
        format!(
            "  | {}\n  | {}^",
            &self.text[range.clone()],
            " ".repeat(self.text[range.start..offset].chars().count())
        )
    }
}

/// Parses a product file's TOML into a [`ProductFile`]; syntax and shape errors carry their place.
pub fn parse(source: &SourceText) -> anyhow::Result<ProductFile> {
    toml::from_str(&source.text).map_err(|e| {
        let place = e
            .span()
            .map(|s| source.locate(s.start))
            .unwrap_or_else(|| source.path.display().to_string());
        let excerpt = e
            .span()
            .map(|s| format!("\n{}", source.excerpt(s.start)))
            .unwrap_or_default();
        let message = readable(e.message().trim_end());
        let line = e
            .span()
            .map(|s| source.line_at(s.start))
            .unwrap_or_default();
        let hint = hint(&message, line)
            .map(|h| format!("\n  = help: {h}"))
            .unwrap_or_default();
        anyhow::anyhow!("{place}: {message}{excerpt}{hint}")
    })
}

/// The TOML reader's message without the names of this crate's types.
fn readable(message: &str) -> String {
    message
        .replace(
            "struct ThroughSpec",
            "a table { source = \"...\", on = { ... } }",
        )
        .replace("struct RelationSpec", "a relation table")
        .replace("struct SourceSpec", "a source table")
}

/// How to fix the mistakes the TOML reader reports without advice of its own; `line` is the
/// text of the line the error points at.
fn hint(message: &str, line: &str) -> Option<String> {
    let line = line.trim();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("missing field `") {
        return Some(match field.as_str() {
            "primary_key" => {
                "add primary_key = [\"id\"]: the columns of the table's primary key, the \
                              ones Debezium puts in each record's key"
                    .into()
            }
            "topic" => {
                "add topic = \"<topic.prefix>.<schema>.<table>\": the Debezium topic of the table"
                    .into()
            }
            "columns" => {
                "add columns = { id = \"int\", name = \"string\" }: the columns the product uses, \
                          with their types"
                    .into()
            }
            "name" => {
                "add name = \"...\": the field this relation becomes in its parent (or, under \
                       [product], the product's name)"
                    .into()
            }
            "source" => "add source = \"...\": the [sources.NAME] whose rows this nests".into(),
            "cardinality" => {
                "add cardinality = \"many\" (a list of items) or \"one\" (an item or null)".into()
            }
            "on" => {
                "add on = { parent_column = \"child_column\" }: how child rows find their parent"
                    .into()
            }
            "output_topic" => {
                "add output_topic = \"...\": the topic the documents are written to".into()
            }
            "product" | "document" | "sources" => {
                "a product file has a [product] section (name, output_topic), a [sources.NAME] \
                 section per table and a [document] section; see \"Product files\" in the README"
                    .into()
            }
            _ => return None,
        });
    }
    if let Some(field) = quoted("unknown field `") {
        let expected: Vec<&str> = message
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return crate::plan::suggest::closest(&field, expected)
            .map(|c| format!("did you mean `{c}`?"));
    }
    if message.contains("a table { source") {
        return Some(
            "through is written through = { source = \"LINK_SOURCE\", on = { parent_column = \
             \"link_column\" } }, and the relation's own `on` joins the link source to its \
             `source`"
                .into(),
        );
    }
    if message.contains("expected a sequence") {
        if let Some(table) = line
            .strip_prefix('[')
            .map(|rest| rest.trim_end_matches(']').trim())
        {
            return Some(format!(
                "relations are a list of tables: write [[{table}]] (double brackets) for each one"
            ));
        }
        return Some(match line.split_once('=') {
            Some((key, value)) if !value.trim().starts_with('[') => format!(
                "a list is written in brackets: {} = [{}]",
                key.trim(),
                value.trim()
            ),
            _ => "a list is written in brackets, e.g. fields = [\"name\"]".into(),
        });
    }
    if message.contains("duplicate key") {
        if line.starts_with("[[") {
            return Some(
                "this table was opened before as a single table ([...], one bracket): write \
                 every relation as [[...]] (double brackets)"
                    .into(),
            );
        }
        if let Some(name) = line.strip_prefix("[sources.") {
            return Some(format!(
                "source `{}` is declared twice: keep one [sources.{}] section",
                name.trim_end_matches(']'),
                name.trim_end_matches(']')
            ));
        }
        return Some("a key may appear once per table: remove one of them".into());
    }
    None
}
