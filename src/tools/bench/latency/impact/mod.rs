//! Which documents each input change must change: the product replayed in memory, change by
//! change, with denorm-verify's product reader, Debezium decoder, values, sort order and JSON
//! form (so independent of the engine's decoder, plan and rendering, as `denorm verify` is).
//!
//! For a change to a row of source `s` (old row `o` before it, new row `n` after it), the
//! documents that can differ are those whose tree holds `o` before the change or `n` after it:
//! found by walking up the product's links from `o` in the tables before the change and from `n`
//! in the tables after it (every place where `s` is nested: as a relation's rows, as the link
//! rows of a `through`, as the root). Each such root's document is built before and after the
//! change (by plain lookups, as denorm-verify's evaluator builds it) and compared by the digest of
//! its canonical JSON; the roots whose document differs are the change's documents, with the
//! digest of the document after the change (or [`ABSENT`] when the root row is gone).
//!
//! The tables keep their rows in slots and index them by the hash of their key and of every
//! column set a link uses ([`val_hash`], checked for equality on lookup), so a change costs its
//! walk and the documents it touches, not the size of the data.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher as _, Hasher};

use denorm_verify::decode::{self, Change};
use denorm_verify::json::Json;
use denorm_verify::product::{Cardinality, Item, Object, Product, Relation};
use denorm_verify::value::Val;

/// The digest of "no document" (the root row does not exist).
pub const ABSENT: u64 = 0;

type Row = Vec<Val>;
type Slot = u32;

/// Feeds a value into a hasher so that equal values (by [`Val`]'s order) hash equally.
fn feed(v: &Val, h: &mut impl Hasher) {
    match v {
        Val::Null => h.write_u8(0),
        Val::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Val::Int(i) => {
            h.write_u8(2);
            h.write_i64(*i);
        }
        Val::Float(f) => {
            h.write_u8(3);
            h.write_u64(f.to_bits());
        }
        Val::Decimal(d) => {
            h.write_u8(4);
            h.write(d.to_plain().as_bytes());
        }
        Val::Str(s) => {
            h.write_u8(5);
            h.write(s.as_bytes());
            h.write_u8(0xff);
        }
        Val::Date(d) => {
            h.write_u8(6);
            h.write_i32(*d);
        }
        Val::Time(t) => {
            h.write_u8(7);
            h.write_i64(*t);
        }
        Val::Timestamp(t) => {
            h.write_u8(8);
            h.write_i64(*t);
        }
        Val::Json(_, text) => {
            h.write_u8(9);
            h.write(text.as_bytes());
            h.write_u8(0xff);
        }
        Val::List(items) => {
            h.write_u8(10);
            h.write_usize(items.len());
            items.iter().for_each(|i| feed(i, h));
        }
        Val::Object(fields) => {
            h.write_u8(11);
            h.write_usize(fields.len());
            for (name, value) in fields {
                h.write(name.as_bytes());
                h.write_u8(0xff);
                feed(value, h);
            }
        }
    }
}

/// The hash of a sequence of values.
pub fn val_hash<'a>(values: impl IntoIterator<Item = &'a Val>) -> u64 {
    let mut h = foldhash::quality::FixedState::with_seed(7).build_hasher();
    for v in values {
        feed(v, &mut h);
    }
    h.finish()
}

/// The digest of a JSON text's canonical form (numbers by value, fields in order): equal
/// documents by denorm-verify's reading have equal digests. Never [`ABSENT`].
pub fn json_digest(json: &Json) -> u64 {
    match xxhash_rust::xxh3::xxh3_64(json.canonical().as_bytes()) {
        ABSENT => 1,
        d => d,
    }
}

/// The rows of one source, in slots, by the hash of their primary key.
struct Table {
    key: Vec<usize>,
    rows: Vec<Option<Row>>,
    free: Vec<Slot>,
    by_key: HashMap<u64, Vec<Slot>>,
    /// The indexes of this source (into [`Impact::indexes`]).
    indexes: Vec<usize>,
}

impl Table {
    fn find(&self, key: &[Val]) -> Option<Slot> {
        self.by_key.get(&val_hash(key))?.iter().copied().find(|&s| {
            let row = self.row(s);
            self.key.iter().zip(key).all(|(&c, v)| row[c] == *v)
        })
    }

    fn row(&self, slot: Slot) -> &Row {
        self.rows[slot as usize]
            .as_ref()
            .expect("indexed slots hold rows")
    }
}

/// The rows of a source by the values of some columns (rows with a null there left out).
struct Index {
    source: usize,
    columns: Vec<usize>,
    map: HashMap<u64, Vec<Slot>>,
}

impl Index {
    fn hash_of(&self, row: &Row) -> Option<u64> {
        if self.columns.iter().any(|&c| row[c].is_null()) {
            return None;
        }
        Some(val_hash(self.columns.iter().map(|&c| &row[c])))
    }
}

/// An object of the document tree (node 0 is the root).
struct Node<'p> {
    object: &'p Object,
    /// The nest that holds this object's rows (None for the root).
    up: Option<usize>,
    /// The nests of this object's relations, in declared order.
    nests: Vec<usize>,
}

/// One relation: where the rows of its source are nested in the rows of its parent object.
struct Nest<'p> {
    relation: &'p Relation,
    /// The parent object's node.
    parent: usize,
    through: Option<Through>,
    /// Columns of the parent row (or of the link row, with `through`) and of the relation's
    /// source, pairwise equal.
    on_parent: Vec<usize>,
    on_child: Vec<usize>,
    /// Index of the relation's source by `on_child` (downwards).
    down: usize,
    /// Index of the parent source (or of the link source) by `on_parent` (upwards).
    up: usize,
    /// The node of the item's object (None: a `value` item).
    node: Option<usize>,
}

/// The link rows of a `through` relation.
struct Through {
    source: usize,
    /// The parent's columns and the link source's, pairwise equal.
    parent_cols: Vec<usize>,
    link_cols: Vec<usize>,
    /// Index of the link source by `link_cols` (downwards).
    down: usize,
    /// Index of the parent source by `parent_cols` (upwards).
    up: usize,
}

/// What one input record did to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A row with a new primary key.
    Insert,
    /// A row changed, its link columns unchanged.
    Update,
    /// A row changed columns a relation links on: it moved to other parents (or children).
    Move,
    Delete,
    Truncate,
    /// Nothing changed in the tables: a duplicate, or a tombstone after its delete.
    NoOp,
}

/// The documents a change must change: the canonical JSON of each root key, and the digests of
/// its document before and after the change ([`ABSENT`]: no root row).
#[derive(Debug, Clone)]
pub struct Effect {
    pub source: usize,
    pub kind: Kind,
    pub documents: Vec<(String, u64, u64)>,
}

/// The product's tables as the changes replayed so far leave them.
pub struct Impact<'p> {
    product: &'p Product,
    tables: Vec<Table>,
    indexes: Vec<Index>,
    nodes: Vec<Node<'p>>,
    nests: Vec<Nest<'p>>,
    /// Per source: the columns any relation links on.
    link_columns: Vec<HashSet<usize>>,
    /// Canonical root key → slot of its row in the root source.
    roots: HashMap<String, Slot>,
    /// The digest of each root's document as last computed (kept current for every root a
    /// change touched).
    known: HashMap<String, u64>,
}

impl<'p> Impact<'p> {
    pub fn new(product: &'p Product) -> Impact<'p> {
        let mut impact = Impact {
            product,
            tables: product
                .sources
                .iter()
                .map(|s| Table {
                    key: s.key.clone(),
                    rows: Vec::new(),
                    free: Vec::new(),
                    by_key: HashMap::new(),
                    indexes: Vec::new(),
                })
                .collect(),
            indexes: Vec::new(),
            nodes: vec![Node {
                object: &product.root,
                up: None,
                nests: Vec::new(),
            }],
            nests: Vec::new(),
            link_columns: vec![HashSet::new(); product.sources.len()],
            roots: HashMap::new(),
            known: HashMap::new(),
        };
        impact.add_object(&product.root, 0);
        impact
    }

    fn index(&mut self, source: usize, columns: Vec<usize>) -> usize {
        self.link_columns[source].extend(columns.iter().copied());
        if let Some(i) = self
            .indexes
            .iter()
            .position(|x| x.source == source && x.columns == columns)
        {
            return i;
        }
        self.indexes.push(Index {
            source,
            columns,
            map: HashMap::new(),
        });
        let i = self.indexes.len() - 1;
        self.tables[source].indexes.push(i);
        i
    }

    fn add_object(&mut self, object: &'p Object, node: usize) {
        for relation in &object.relations {
            let through = relation.through.as_ref().map(|link| {
                let parent_cols: Vec<usize> = link.on.iter().map(|p| p.0).collect();
                let link_cols: Vec<usize> = link.on.iter().map(|p| p.1).collect();
                Through {
                    source: link.source,
                    down: self.index(link.source, link_cols.clone()),
                    up: self.index(object.source, parent_cols.clone()),
                    parent_cols,
                    link_cols,
                }
            });
            let on_parent: Vec<usize> = relation.on.iter().map(|p| p.0).collect();
            let on_child: Vec<usize> = relation.on.iter().map(|p| p.1).collect();
            let upper = through.as_ref().map_or(object.source, |t| t.source);
            let nest = Nest {
                relation,
                parent: node,
                through,
                down: self.index(relation.source, on_child.clone()),
                up: self.index(upper, on_parent.clone()),
                on_parent,
                on_child,
                node: None,
            };
            self.nests.push(nest);
            let n = self.nests.len() - 1;
            self.nodes[node].nests.push(n);
            if let Item::Object(child) = &relation.item {
                self.nodes.push(Node {
                    object: child,
                    up: Some(n),
                    nests: Vec::new(),
                });
                let child_node = self.nodes.len() - 1;
                self.nests[n].node = Some(child_node);
                self.add_object(child, child_node);
            }
        }
    }

    /// Whether the product reads `topic`.
    pub fn reads(&self, topic: &str) -> bool {
        self.product.sources.iter().any(|s| s.topic == topic)
    }

    /// Decodes a record of `topic` for every source of the product reading it. Err: why it does
    /// not decode.
    pub fn decode(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Vec<(usize, Change)>, String> {
        let mut out = Vec::new();
        for (s, source) in self.product.sources.iter().enumerate() {
            if source.topic == topic {
                out.push((s, decode::decode(source, key, value)?));
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // The tables.

    fn insert_row(&mut self, s: usize, row: Row) -> Slot {
        let root_key = (s == self.product.root.source).then(|| self.root_key(&row));
        let table = &mut self.tables[s];
        let slot = match table.free.pop() {
            Some(slot) => {
                table.rows[slot as usize] = Some(row);
                slot
            }
            None => {
                table.rows.push(Some(row));
                (table.rows.len() - 1) as Slot
            }
        };
        let row = table.rows[slot as usize].as_ref().expect("just stored");
        table
            .by_key
            .entry(val_hash(table.key.iter().map(|&c| &row[c])))
            .or_default()
            .push(slot);
        for &i in &table.indexes {
            if let Some(h) = self.indexes[i].hash_of(row) {
                self.indexes[i].map.entry(h).or_default().push(slot);
            }
        }
        if let Some(key) = root_key {
            self.roots.insert(key, slot);
        }
        slot
    }

    fn remove_row(&mut self, s: usize, slot: Slot) -> Row {
        let table = &mut self.tables[s];
        let row = table.rows[slot as usize].take().expect("a live slot");
        table.free.push(slot);
        fn unlink(map: &mut HashMap<u64, Vec<Slot>>, h: u64, slot: Slot) {
            if let Some(slots) = map.get_mut(&h) {
                if let Some(at) = slots.iter().position(|&x| x == slot) {
                    slots.swap_remove(at);
                }
                if slots.is_empty() {
                    map.remove(&h);
                }
            }
        }
        unlink(
            &mut table.by_key,
            val_hash(table.key.iter().map(|&c| &row[c])),
            slot,
        );
        for &i in &table.indexes {
            if let Some(h) = self.indexes[i].hash_of(&row) {
                unlink(&mut self.indexes[i].map, h, slot);
            }
        }
        if s == self.product.root.source {
            self.roots.remove(&self.root_key(&row));
        }
        row
    }

    /// The rows of index `i`'s source whose index columns equal `values` (none if one is null).
    fn lookup(&self, i: usize, values: &[&Val]) -> Vec<Slot> {
        if values.iter().any(|v| v.is_null()) {
            return Vec::new();
        }
        let index = &self.indexes[i];
        let table = &self.tables[index.source];
        let Some(slots) = index.map.get(&val_hash(values.iter().copied())) else {
            return Vec::new();
        };
        slots
            .iter()
            .copied()
            .filter(|&s| {
                let row = table.row(s);
                index
                    .columns
                    .iter()
                    .zip(values)
                    .all(|(&c, v)| row[c] == **v)
            })
            .collect()
    }

    fn live_slots(&self, s: usize) -> Vec<Slot> {
        (0..self.tables[s].rows.len() as Slot)
            .filter(|&x| self.tables[s].rows[x as usize].is_some())
            .collect()
    }

    /// Applies a decoded change to the tables without looking at documents (the state before
    /// the measured window).
    pub fn apply(&mut self, s: usize, change: Change) {
        match change {
            Change::Upsert { key, row } => {
                if let Some(slot) = self.tables[s].find(&key) {
                    self.remove_row(s, slot);
                }
                self.insert_row(s, row);
            }
            Change::Delete { key } => {
                if let Some(slot) = self.tables[s].find(&key) {
                    self.remove_row(s, slot);
                }
            }
            Change::Truncate => {
                for slot in self.live_slots(s) {
                    self.remove_row(s, slot);
                }
            }
        }
        // What the documents were is no longer known.
        self.known.clear();
    }

    /// Applies a decoded change and says which documents it changed.
    pub fn change(&mut self, s: usize, change: Change) -> Effect {
        let mut effect = Effect {
            source: s,
            kind: Kind::NoOp,
            documents: Vec::new(),
        };
        let (key, new) = match change {
            Change::Upsert { key, row } => (key, Some(row)),
            Change::Delete { key } => (key, None),
            Change::Truncate => {
                effect.kind = Kind::Truncate;
                let mut candidates = HashSet::new();
                for slot in self.live_slots(s) {
                    let row = self.tables[s].row(slot).clone();
                    self.roots_of(s, &row, &mut candidates);
                }
                let before = self.digests(&candidates);
                self.apply(s, Change::Truncate);
                effect.documents = self.changed(before);
                return effect;
            }
        };
        let old_slot = self.tables[s].find(&key);
        let old = old_slot.map(|slot| self.tables[s].row(slot).clone());
        effect.kind = match (&old, &new) {
            (None, None) => return effect,
            (Some(o), Some(n)) if o == n => return effect,
            (None, Some(_)) => Kind::Insert,
            (Some(_), None) => Kind::Delete,
            (Some(o), Some(n)) => {
                if self.link_columns[s].iter().any(|&c| o[c] != n[c]) {
                    Kind::Move
                } else {
                    Kind::Update
                }
            }
        };
        // Before: the documents holding the old row, and those the new row will join (found in
        // the tables as they are, the new row not in them yet).
        let mut candidates = HashSet::new();
        if let Some(o) = &old {
            self.roots_of(s, o, &mut candidates);
        }
        if let Some(n) = &new {
            self.roots_of(s, n, &mut candidates);
        }
        let mut before = self.digests(&candidates);
        if let Some(slot) = old_slot {
            self.remove_row(s, slot);
        }
        let new_slot = new.map(|n| self.insert_row(s, n));
        // After: a document that reaches the new row only through the changed row itself (a
        // source nested in itself) was not found before; its document before is computed with
        // the change undone.
        if let Some(slot) = new_slot {
            let row = self.tables[s].row(slot).clone();
            let mut after = HashSet::new();
            self.roots_of(s, &row, &mut after);
            let extra: HashSet<String> = after.difference(&candidates).cloned().collect();
            if !extra.is_empty() {
                let inserted = self.remove_row(s, slot);
                let restored = old.clone().map(|o| self.insert_row(s, o));
                before.extend(self.digests(&extra));
                if let Some(slot) = restored {
                    self.remove_row(s, slot);
                }
                self.insert_row(s, inserted);
            }
        }
        effect.documents = self.changed(before);
        effect
    }

    /// The current digests of these roots' documents.
    fn digests(&self, roots: &HashSet<String>) -> Vec<(String, u64)> {
        roots
            .iter()
            .map(|k| {
                let d = match self.known.get(k) {
                    Some(&d) => d,
                    None => self.digest(k),
                };
                (k.clone(), d)
            })
            .collect()
    }

    /// The roots whose document now differs from `before`, with both digests (sorted by key).
    fn changed(&mut self, before: Vec<(String, u64)>) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for (key, old) in before {
            let new = self.digest(&key);
            if new != old {
                out.push((key.clone(), old, new));
            }
            self.known.insert(key, new);
        }
        out.sort();
        out
    }

    // -----------------------------------------------------------------------------------------
    // Walking up: the roots whose document holds a row.

    /// Adds the root keys of the documents that hold `row` of source `s` (anywhere it is nested)
    /// in the current tables.
    fn roots_of(&self, s: usize, row: &Row, out: &mut HashSet<String>) {
        let mut seen: HashSet<(usize, Slot)> = HashSet::new();
        for node in 0..self.nodes.len() {
            if self.nodes[node].object.source == s {
                self.up(node, row, out, &mut seen);
            }
        }
        for nest in &self.nests {
            if nest.node.is_none() && nest.relation.source == s {
                // A `value` item: the row sits in its parent's list.
                for p in self.parents(nest, row) {
                    self.up_slot(nest.parent, p, out, &mut seen);
                }
            }
            if let Some(t) = nest.through.as_ref().filter(|t| t.source == s) {
                let values: Vec<&Val> = t.link_cols.iter().map(|&c| &row[c]).collect();
                for p in self.lookup(t.up, &values) {
                    self.up_slot(nest.parent, p, out, &mut seen);
                }
            }
        }
    }

    /// The rows of the parent object's source that nest `row` through `nest`.
    fn parents(&self, nest: &Nest, row: &Row) -> Vec<Slot> {
        let values: Vec<&Val> = nest.on_child.iter().map(|&c| &row[c]).collect();
        let upper = self.lookup(nest.up, &values);
        let Some(t) = &nest.through else {
            return upper;
        };
        let mut parents = Vec::new();
        for l in upper {
            let link = self.tables[t.source].row(l);
            let values: Vec<&Val> = t.link_cols.iter().map(|&c| &link[c]).collect();
            parents.extend(self.lookup(t.up, &values));
        }
        parents.sort_unstable();
        parents.dedup();
        parents
    }

    fn up_slot(
        &self,
        node: usize,
        slot: Slot,
        out: &mut HashSet<String>,
        seen: &mut HashSet<(usize, Slot)>,
    ) {
        if seen.insert((node, slot)) {
            let source = self.nodes[node].object.source;
            let row = self.tables[source].row(slot);
            self.up(node, row, out, seen);
        }
    }

    fn up(
        &self,
        node: usize,
        row: &Row,
        out: &mut HashSet<String>,
        seen: &mut HashSet<(usize, Slot)>,
    ) {
        match self.nodes[node].up {
            None => {
                out.insert(self.root_key(row));
            }
            Some(n) => {
                let nest = &self.nests[n];
                for p in self.parents(nest, row) {
                    self.up_slot(nest.parent, p, out, seen);
                }
            }
        }
    }

    /// The canonical JSON of a root row's key: the output record's key, canonically.
    fn root_key(&self, row: &Row) -> String {
        let source = &self.product.sources[self.product.root.source];
        Json::Object(
            source
                .key
                .iter()
                .map(|&k| (source.columns[k].name.clone(), row[k].to_json()))
                .collect(),
        )
        .canonical()
    }

    // -----------------------------------------------------------------------------------------
    // Documents, built as denorm-verify's evaluator builds them (`denorm_verify::eval`).

    /// The document of root `key` (canonical JSON), if its row exists.
    pub fn document(&self, key: &str) -> Option<Val> {
        let slot = *self.roots.get(key)?;
        let row = self.tables[self.product.root.source].row(slot);
        Some(self.object(0, row))
    }

    /// The digest of the document of root `key` (canonical JSON), or [`ABSENT`].
    pub fn digest(&self, key: &str) -> u64 {
        self.document(key)
            .map_or(ABSENT, |doc| json_digest(&doc.to_json()))
    }

    /// Every root key (canonical JSON).
    pub fn root_keys(&self) -> impl Iterator<Item = &String> {
        self.roots.keys()
    }

    fn object(&self, node: usize, row: &Row) -> Val {
        let n = &self.nodes[node];
        let mut fields: Vec<(String, Val)> = n
            .object
            .fields
            .iter()
            .map(|(name, column)| (name.clone(), row[*column].clone()))
            .collect();
        for &i in &n.nests {
            let nest = &self.nests[i];
            let relation = nest.relation;
            let items_of = |parent: &Row| -> Vec<Val> {
                let values: Vec<&Val> = nest.on_parent.iter().map(|&c| &parent[c]).collect();
                self.lookup(nest.down, &values)
                    .into_iter()
                    .map(|s| self.item(nest, self.tables[relation.source].row(s)))
                    .collect()
            };
            let mut items = match &nest.through {
                None => items_of(row),
                Some(t) => {
                    let values: Vec<&Val> = t.parent_cols.iter().map(|&c| &row[c]).collect();
                    self.lookup(t.down, &values)
                        .into_iter()
                        .filter_map(|l| {
                            let mut targets = items_of(self.tables[t.source].row(l));
                            denorm_verify::eval::sort(&mut targets, &relation.order_by);
                            targets.into_iter().next()
                        })
                        .collect()
                }
            };
            denorm_verify::eval::sort(&mut items, &relation.order_by);
            let value = match relation.cardinality {
                Cardinality::Many => Val::List(items),
                Cardinality::One => items.into_iter().next().unwrap_or(Val::Null),
            };
            fields.push((relation.name.clone(), value));
        }
        Val::Object(fields)
    }

    fn item(&self, nest: &Nest, row: &Row) -> Val {
        match (nest.node, &nest.relation.item) {
            (Some(node), _) => self.object(node, row),
            (None, Item::Value(column)) => row[*column].clone(),
            (None, Item::Object(_)) => unreachable!("object items have a node"),
        }
    }
}

#[cfg(test)]
mod tests;
