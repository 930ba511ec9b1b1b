//! What will run: the product file checked against itself and lowered to indices. Every name is
//! resolved here (sources, columns, fields, relations), so the dataflow and the reference
//! evaluator never look anything up by string. A mistake is an error naming the file, line and
//! column, with the line shown and the names that would have been valid.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use toml::Spanned;

mod relation;

pub use relation::{ItemField, ItemLayout, JoinedRelation, RelationId, SharedRelation};

use crate::spec::{self, Cardinality, FieldSpec, NodeSpec, ProductFile, RelationSpec, SourceText};
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
    fn comparable(self, other: ColumnType) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

const TYPE_NAMES: &str = "string, int, float, bool, decimal, decimal(S), date, time, timestamp, timestamp(ms|us|ns), json";

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

    /// Compares two items' values of this key.
    pub fn compare(&self, a: &crate::value::Value, b: &crate::value::Value) -> std::cmp::Ordering {
        let ordering = a.cmp(b);
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

/// A mistake in a product file, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {message}\n{excerpt}{hint}")]
pub struct SpecError {
    pub place: String,
    pub message: String,
    pub excerpt: String,
    pub hint: String,
}

/// Reads, parses and checks one product file.
pub fn load(path: &Path) -> anyhow::Result<Plan> {
    let text = SourceText::read(path)?;
    let file = spec::parse(&text)?;
    Ok(lower(&text, &file)?)
}

/// Parses and checks the text of a product file read earlier from `path`.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Plan> {
    let text = SourceText {
        path: path.to_owned(),
        text: text.to_owned(),
    };
    let file = spec::parse(&text)?;
    Ok(lower(&text, &file)?)
}

/// The `*.toml` files of the given folders (sorted by name) and the given files, in order; a
/// file named twice (`dataflows/ dataflows/a.toml`, `./a.toml a.toml`) counts once.
pub fn product_files(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("cannot read folder {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// Reads every `*.toml` product file of a folder (sorted by name), or the given files, into one
/// plan; fails with every file's error.
pub fn load_all(paths: &[std::path::PathBuf]) -> anyhow::Result<Plan> {
    let (plan, errors) = load_each(paths)?;
    match errors.len() {
        0 => Ok(plan),
        1 => Err(errors.into_iter().next().expect("one error")),
        n => anyhow::bail!(
            "{n} product files have errors:\n{}",
            errors
                .iter()
                .map(|e| format!("{e:#}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Reads every product file of `paths` (see [`product_files`]): the plan of the files that load
/// and fit together, and the error of each file that does not.
pub fn load_each(paths: &[std::path::PathBuf]) -> anyhow::Result<(Plan, Vec<anyhow::Error>)> {
    let files = product_files(paths)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no product files (*.toml) in {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    let mut errors = Vec::new();
    for file in files {
        if let Err(e) = load(&file).and_then(|other| merge(&mut plan, other, Sharing::Union)) {
            errors.push(e);
        }
    }
    Ok((plan, errors))
}

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
    crate::suggest::closest(name, candidates)
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
            return match crate::suggest::closest(&lower, names) {
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

pub mod lint;

#[cfg(test)]
mod tests;
