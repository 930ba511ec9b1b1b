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

    /// The line holding a byte offset, with a caret under the spot.
    pub fn excerpt(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let end = self.text[offset..]
            .find('\n')
            .map(|i| offset + i)
            .unwrap_or(self.text.len());
        let line = &self.text[start..end];
        format!(
            "  | {line}\n  | {}^",
            " ".repeat(self.text[start..offset].chars().count())
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
        anyhow::anyhow!("{place}: {}{excerpt}", e.message().trim_end())
    })
}
