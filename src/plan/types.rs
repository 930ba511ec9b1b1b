//! The plan's types: what will run, every name resolved to an index. Sources and their typed
//! columns, the document tree of each product (nodes, links, outputs, order), and the shared
//! arrangements products look rows up through.

use std::fmt;
use std::sync::Arc;

use super::spec::Cardinality;
use crate::value::Shape;

/// The declared type of a source column: what a record's value is decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    String,
    Int,
    Float,
    Bool,
    /// `decimal(S)` gives the scale of schema-less base64 (`precise`) encodings.
    Decimal {
        scale: Option<u32>,
    },
    Date,
    Time,
    /// The unit of schema-less integer timestamps (a schema's semantic type overrides it).
    Timestamp {
        unit: TimeUnit,
    },
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

impl ColumnType {
    pub fn parse(text: &str) -> Option<ColumnType> {
        let text = text.trim();
        Some(match text {
            "string" | "text" => ColumnType::String,
            "int" | "integer" | "long" => ColumnType::Int,
            "float" | "double" => ColumnType::Float,
            "bool" | "boolean" => ColumnType::Bool,
            "decimal" => ColumnType::Decimal { scale: None },
            "date" => ColumnType::Date,
            "time" => ColumnType::Time,
            "timestamp" | "timestamp(ms)" => ColumnType::Timestamp {
                unit: TimeUnit::Millis,
            },
            "timestamp(us)" => ColumnType::Timestamp {
                unit: TimeUnit::Micros,
            },
            "timestamp(ns)" => ColumnType::Timestamp {
                unit: TimeUnit::Nanos,
            },
            "json" => ColumnType::Json,
            other => {
                let scale = other.strip_prefix("decimal(")?.strip_suffix(')')?;
                ColumnType::Decimal {
                    scale: Some(scale.trim().parse().ok()?),
                }
            }
        })
    }

    /// Whether values of the two types can ever be equal (join columns must be comparable).
    pub(super) fn comparable(self, other: ColumnType) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

pub(super) const TYPE_NAMES: &str = "string, int, float, bool, decimal, decimal(S), date, time, timestamp, timestamp(ms|us|ns), json";

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => write!(f, "string"),
            ColumnType::Int => write!(f, "int"),
            ColumnType::Float => write!(f, "float"),
            ColumnType::Bool => write!(f, "bool"),
            ColumnType::Decimal { scale: None } => write!(f, "decimal"),
            ColumnType::Decimal { scale: Some(s) } => write!(f, "decimal({s})"),
            ColumnType::Date => write!(f, "date"),
            ColumnType::Time => write!(f, "time"),
            ColumnType::Timestamp {
                unit: TimeUnit::Millis,
            } => write!(f, "timestamp"),
            ColumnType::Timestamp {
                unit: TimeUnit::Micros,
            } => write!(f, "timestamp(us)"),
            ColumnType::Timestamp {
                unit: TimeUnit::Nanos,
            } => write!(f, "timestamp(ns)"),
            ColumnType::Json => write!(f, "json"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// A source collection: one Debezium topic, upserted by its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePlan {
    pub name: String,
    pub topic: String,
    /// The row layout: every declared column, in declaration order.
    pub columns: Vec<Column>,
    /// Indices into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
}

impl SourcePlan {
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Index of a source in [`Plan::sources`].
pub type SourceId = usize;

/// A node of the document tree: rows of one source, shaped into one object (or scalar) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where this node sits, e.g. `document.starred_repos`: names operators and errors.
    pub path: String,
    pub source: SourceId,
    /// How the rows attach to their parent (none at the root).
    pub link: Option<Link>,
    pub cardinality: Cardinality,
    /// Drop this node's item when the child it passes through is missing (many-to-many links).
    pub output: NodeOutput,
    pub children: Vec<Node>,
    /// The item's object fields to sort a list by, in turn; the whole item (ascending) breaks
    /// ties.
    pub order_by: Vec<SortKey>,
}

/// One `order_by` entry: an index into the item's object fields, and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SortKey {
    pub field: usize,
    /// Largest first (`"name desc"` or `"-name"`); nulls then come last.
    pub descending: bool,
}

impl SortKey {
    /// Splits an `order_by` entry into the field name and whether it sorts largest first:
    /// `name`, `name asc`, `name desc` (any case) or `-name`.
    pub fn parse(entry: &str) -> (&str, bool) {
        let entry = entry.trim();
        if let Some(name) = entry.strip_prefix('-') {
            return (name.trim(), true);
        }
        match entry.rsplit_once(char::is_whitespace) {
            Some((name, dir)) if dir.eq_ignore_ascii_case("desc") => (name.trim(), true),
            Some((name, dir)) if dir.eq_ignore_ascii_case("asc") => (name.trim(), false),
            _ => (entry, false),
        }
    }

    /// The order of two items, given the ascending order of their values of this key.
    pub fn directed(&self, ordering: std::cmp::Ordering) -> std::cmp::Ordering {
        // A deliberate bug for the tests of `denorm verify`: every direction reversed.
        let reversed = crate::fault::on(crate::fault::Fault::OrderDirection);
        if self.descending != reversed {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

/// Parent columns equal child columns, pairwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub parent_columns: Vec<usize>,
    pub child_columns: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// An object with these fields, in order.
    Object(Vec<OutField>),
    /// The value of one column.
    Scalar(usize),
    /// The item of the only child (a many-to-many link row stands for its target); no item when
    /// the child is missing.
    Through,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutField {
    Column { name: Arc<str>, column: usize },
    Child { name: Arc<str>, child: usize },
}

impl Node {
    /// How this node's item renders as JSON.
    pub fn shape(&self) -> Shape {
        match &self.output {
            NodeOutput::Scalar(_) => Shape::Scalar,
            NodeOutput::Through => self.children[0].shape(),
            NodeOutput::Object(fields) => Shape::Object(
                fields
                    .iter()
                    .map(|f| match f {
                        OutField::Column { name, .. } => (name.clone(), Shape::Scalar),
                        OutField::Child { name, child } => {
                            (name.clone(), self.children[*child].slot_shape())
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// How this node renders in its parent's field: a list of items, or one item or null.
    pub fn slot_shape(&self) -> Shape {
        match self.cardinality {
            Cardinality::Many => Shape::List(Box::new(self.shape())),
            Cardinality::One => self.shape(),
        }
    }

    /// Every node of the tree, depth first, parents before children.
    pub fn walk(&self) -> Vec<&Node> {
        let mut out = vec![self];
        for child in &self.children {
            out.extend(child.walk());
        }
        out
    }
}

/// One data product: a document tree over sources, written to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPlan {
    pub name: String,
    pub file: String,
    pub output_topic: String,
    pub root: Node,
}

impl ProductPlan {
    pub fn shape(&self) -> Shape {
        self.root.shape()
    }
}

/// Everything a job runs: its products and the sources they read, each source once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sources: Vec<SourcePlan>,
    pub products: Vec<ProductPlan>,
}

impl Plan {
    /// The sources some product reads.
    pub fn used_sources(&self) -> std::collections::BTreeSet<SourceId> {
        self.products
            .iter()
            .flat_map(|p| p.root.walk().into_iter().map(|n| n.source))
            .collect()
    }

    /// The arrangements of source rows by link columns that `product` joins its parents
    /// through, besides the arrangement of each source by its primary key. Products and
    /// relations that join the same source on the same columns share one.
    pub fn keyed_arrangements(&self, product: &ProductPlan) -> Vec<KeyedArrangement> {
        let mut out = Vec::new();
        for node in product.root.walk() {
            for child in &node.children {
                let Some(link) = &child.link else { continue };
                let keyed = KeyedArrangement {
                    source: node.source,
                    columns: link.parent_columns.clone(),
                };
                if link.parent_columns != self.sources[node.source].key && !out.contains(&keyed) {
                    out.push(keyed);
                }
            }
        }
        out
    }
}

/// The rows of a source arranged by some of their columns (the value is the primary key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyedArrangement {
    pub source: SourceId,
    pub columns: Vec<usize>,
}
