//! The generator's model of the data: what the plan says rows look like and how sources
//! reference each other ([`Layout`]), and the rows every source holds so far ([`World`]), with
//! the value generators.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use rand::rngs::StdRng;
use rand::Rng;

use crate::decode::Change;
use crate::plan::spec::Cardinality;
use crate::plan::{ColumnType, Node, NodeOutput, Plan, SourceId};
use crate::value::{Decimal, Row, Value, F64};

use super::encode;

// ---------------------------------------------------------------------------------------------
// What the plan says about the data.

/// Rows of `from` take the values of `from_cols` from a row of `to` (its `to_cols`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Edge {
    pub from: SourceId,
    pub from_cols: Vec<usize>,
    pub to: SourceId,
    pub to_cols: Vec<usize>,
    /// Targets drawn Zipf-skewed (the target hop of a many-to-many relation).
    pub skewed: bool,
    /// Which of `from`'s child indexes finds the rows with given `from_cols` (its place in
    /// [`SourceInfo::refs`]).
    pub from_index: usize,
}

#[derive(Debug, Default)]
pub(super) struct SourceInfo {
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
    pub key: Vec<usize>,
    pub is_key: Vec<bool>,
    /// Columns other sources take values from: kept unique (sequences).
    pub is_target: Vec<bool>,
    /// Edges whose `from` is this source, in plan order.
    pub refs: Vec<usize>,
    /// Columns filled by one of `refs`.
    pub is_ref: Vec<bool>,
    /// Columns no link and no key uses: what plain updates change.
    pub free: Vec<usize>,
    /// Rows in the snapshot.
    pub rows: usize,
}

pub(super) struct Layout {
    pub edges: Vec<Edge>,
    pub sources: Vec<SourceInfo>,
    /// Sources in the order their snapshots are built (referenced before referencing).
    pub order: Vec<SourceId>,
    /// Cumulative snapshot sizes (at least 1 each), to pick a source in proportion to its size.
    cumulative: Vec<usize>,
}

/// The order in which sources are generated: a source once the sources it references are
/// built; on a cycle, the first not built yet.
fn build_order(sources: &[SourceInfo], edges: &[Edge]) -> Vec<SourceId> {
    let mut order = Vec::new();
    let mut built = vec![false; sources.len()];
    while order.len() < sources.len() {
        let ready = (0..sources.len()).find(|&s| {
            !built[s]
                && sources[s]
                    .refs
                    .iter()
                    .all(|&e| built[edges[e].to] || edges[e].to == s)
        });
        let next = ready.unwrap_or_else(|| {
            (0..sources.len())
                .find(|&s| !built[s])
                .expect("an unbuilt source remains")
        });
        built[next] = true;
        order.push(next);
    }
    order
}

impl Layout {
    pub fn new(plan: &Plan, scale: usize) -> Layout {
        let mut sources: Vec<SourceInfo> = plan
            .sources
            .iter()
            .map(|s| {
                let n = s.columns.len();
                SourceInfo {
                    names: s.columns.iter().map(|c| c.name.clone()).collect(),
                    types: s.columns.iter().map(|c| c.ty).collect(),
                    key: s.key.clone(),
                    is_key: (0..n).map(|i| s.key.contains(&i)).collect(),
                    is_target: vec![false; n],
                    is_ref: vec![false; n],
                    ..SourceInfo::default()
                }
            })
            .collect();

        // Edges and sizes, from every node of every product.
        let mut edges: Vec<Edge> = Vec::new();
        let mut factor: Vec<Option<f64>> = vec![None; plan.sources.len()];
        fn visit(
            node: &Node,
            parent: Option<&Node>,
            sources: &[SourceInfo],
            edges: &mut Vec<Edge>,
            factor: &mut [Option<f64>],
        ) {
            let one_to_one = |link: &crate::plan::Link| {
                node.cardinality == Cardinality::One
                    && parent.is_some_and(|p| !matches!(p.output, NodeOutput::Through))
                    && sources[node.source]
                        .key
                        .iter()
                        .all(|k| link.child_columns.contains(k))
            };
            let f = match &node.link {
                _ if matches!(node.output, NodeOutput::Through) => 5.0,
                Some(link) if one_to_one(link) => 0.7,
                _ => 1.0,
            };
            factor[node.source].get_or_insert(f);
            for child in &node.children {
                if let Some(link) = &child.link {
                    let edge = if matches!(node.output, NodeOutput::Through) {
                        Edge {
                            from: node.source,
                            from_cols: link.parent_columns.clone(),
                            to: child.source,
                            to_cols: link.child_columns.clone(),
                            skewed: true,
                            from_index: 0,
                        }
                    } else {
                        Edge {
                            from: child.source,
                            from_cols: link.child_columns.clone(),
                            to: node.source,
                            to_cols: link.parent_columns.clone(),
                            skewed: false,
                            from_index: 0,
                        }
                    };
                    if !edges.iter().any(|e| {
                        e.from == edge.from
                            && e.from_cols == edge.from_cols
                            && e.to == edge.to
                            && e.to_cols == edge.to_cols
                    }) {
                        edges.push(edge);
                    }
                }
                visit(child, Some(node), sources, edges, factor);
            }
        }
        for product in &plan.products {
            visit(&product.root, None, &sources, &mut edges, &mut factor);
        }

        for (e, edge) in edges.iter_mut().enumerate() {
            let to = &mut sources[edge.to];
            for &c in &edge.to_cols {
                to.is_target[c] = true;
            }
            let from = &mut sources[edge.from];
            edge.from_index = from.refs.len();
            from.refs.push(e);
            for &c in &edge.from_cols {
                from.is_ref[c] = true;
            }
        }
        for s in sources.iter_mut() {
            s.free = (0..s.names.len())
                .filter(|&c| !s.is_key[c] && !s.is_ref[c] && !s.is_target[c])
                .collect();
        }
        for (i, s) in sources.iter_mut().enumerate() {
            s.rows = (scale as f64 * factor[i].unwrap_or(1.0)).round() as usize;
        }

        let order = build_order(&sources, &edges);

        let mut cumulative = Vec::with_capacity(sources.len());
        let mut total = 0;
        for s in &sources {
            total += s.rows.max(1);
            cumulative.push(total);
        }
        Layout {
            edges,
            sources,
            order,
            cumulative,
        }
    }

    /// A source, in proportion to its snapshot size.
    pub fn pick_source(&self, rng: &mut StdRng) -> SourceId {
        let total = *self.cumulative.last().expect("a plan has sources");
        let w = rng.gen_range(0..total);
        self.cumulative.partition_point(|&c| c <= w)
    }
}

// ---------------------------------------------------------------------------------------------
// The generator's view of every source: what a consumer that applied every record would hold.

pub(super) struct Table {
    /// Rows in creation order (what Zipf ranks count); `None` once deleted.
    pub slots: Vec<Option<Row>>,
    pub by_key: FastMap<Row, usize>,
    /// For each of [`SourceInfo::refs`], by the hash of the reference values: the slots that held
    /// them at some point (checked when read, never pruned).
    children: Vec<ChildIndex>,
    key: Vec<usize>,
    pub live: usize,
    /// The next sequence number of this source (rows, fresh keys, updated strings).
    pub next_n: u64,
}

/// The columns of one reference and, by the hash of their values, the slots that held them.
type ChildIndex = (Vec<usize>, FastMap<u64, Vec<usize>>);

/// A fast, deterministic hasher (FxHash's mixing) for the generator's own maps.
#[derive(Default, Clone, Copy)]
pub(super) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }
    fn write_u8(&mut self, v: u8) {
        self.add(v as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.add(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The hash of a sequence of values (the children index's key).
fn hash_values<'a>(values: impl Iterator<Item = &'a Value>) -> u64 {
    let mut h = FastHasher::default();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

/// The values of `cols` in `row`, or `None` if one is null.
pub(super) fn project(row: &[Value], cols: &[usize]) -> Option<Row> {
    if cols.iter().any(|&c| row[c].is_null()) {
        return None;
    }
    Some(cols.iter().map(|&c| row[c].clone()).collect())
}

impl Table {
    pub fn new(layout: &Layout, s: SourceId) -> Table {
        let info = &layout.sources[s];
        let capacity = info.rows + info.rows / 2;
        Table {
            slots: Vec::with_capacity(capacity),
            by_key: FastMap::with_capacity_and_hasher(capacity, Default::default()),
            children: info
                .refs
                .iter()
                .map(|&e| {
                    (
                        layout.edges[e].from_cols.clone(),
                        FastMap::with_capacity_and_hasher(
                            layout.sources[layout.edges[e].to].rows,
                            Default::default(),
                        ),
                    )
                })
                .collect(),
            key: info.key.clone(),
            live: 0,
            next_n: 0,
        }
    }

    pub fn key_of(&self, row: &[Value]) -> Row {
        self.key.iter().map(|&i| row[i].clone()).collect()
    }

    pub fn row(&self, slot: usize) -> Option<&Row> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The live rows whose reference `index` (of [`SourceInfo::refs`]) holds `values`, in slot order.
    pub fn children(&self, index: usize, values: &Row) -> Vec<usize> {
        let (cols, map) = &self.children[index];
        let mut slots: Vec<usize> = map
            .get(&hash_values(values.iter()))
            .map(|slots| {
                slots
                    .iter()
                    .copied()
                    .filter(|&s| {
                        self.row(s).is_some_and(|r| {
                            cols.iter().zip(values.iter()).all(|(&c, v)| &r[c] == v)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Indexes the row now in `slot`, which held `old` before.
    fn index(&mut self, slot: usize, old: Option<&Row>) {
        let Some(row) = self.slots[slot].as_ref() else {
            return;
        };
        for (cols, map) in &mut self.children {
            if old.is_some_and(|old| cols.iter().all(|&c| old[c] == row[c]))
                || cols.iter().any(|&c| row[c].is_null())
            {
                continue;
            }
            map.entry(hash_values(cols.iter().map(|&c| &row[c])))
                .or_default()
                .push(slot);
        }
    }

    pub fn upsert(&mut self, key: Row, row: Row) {
        match self.by_key.get(&key) {
            Some(&slot) => {
                let old = self.slots[slot].replace(row);
                self.index(slot, old.as_ref());
            }
            None => {
                let slot = self.slots.len();
                self.slots.push(Some(row));
                self.by_key.insert(key, slot);
                self.live += 1;
                self.index(slot, None);
            }
        }
    }

    pub fn delete(&mut self, key: &Row) -> Option<Row> {
        let slot = self.by_key.remove(key)?;
        self.live -= 1;
        self.slots[slot].take()
    }

    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Upsert { key, row } => self.upsert(key.values().into(), row.values().into()),
            Change::Delete { key } => {
                self.delete(&key.values().into());
            }
            Change::Truncate => {}
        }
    }
}

pub(super) const DAY0: i32 = 18_262; // 2020-01-01
pub(super) const DAYS: i32 = 2_192; // 2020-01-01 ..= 2025-12-31
pub(super) const MS0: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z
pub(super) const MS_SPAN: i64 = DAYS as i64 * 86_400_000;
pub(super) const CLOCK0: i64 = 1_748_736_000_000; // 2025-06-01T00:00:00Z: when the snapshot is taken

/// Fraction digits of generated decimals: 2, or fewer if the column declares fewer.
fn gen_scale(ty: ColumnType) -> u32 {
    encode::decimal_scale(ty).min(2)
}

/// `<name>_<n>`.
fn numbered(name: &str, n: u64) -> Value {
    let mut text = String::with_capacity(name.len() + 12);
    text.push_str(name);
    text.push('_');
    encode::push_int(&mut text, n as i64);
    Value::Str(text.into())
}

/// The `n`th value of a sequence: unique per `n` for strings and numbers.
pub(super) fn seq_value(ty: ColumnType, name: &str, n: u64) -> Value {
    match ty {
        ColumnType::String => numbered(name, n),
        ColumnType::Int => Value::Int(n as i64 + 1),
        ColumnType::Float => Value::Float(F64(n as f64 + 0.5)),
        ColumnType::Bool => Value::Bool(n % 2 == 1),
        ColumnType::Decimal { .. } => Value::decimal(Decimal::new(n as i128 + 1, 0)),
        ColumnType::Date => Value::Date(DAY0 + (n % 100_000) as i32),
        ColumnType::Time => Value::Time((n % 86_400) as i64 * 1_000_000),
        ColumnType::Timestamp { .. } => {
            Value::Timestamp((MS0 + (n % 1_000_000_000) as i64 * 1000) * 1000)
        }
        ColumnType::Json => Value::Json(format!("{{{}:{n}}}", encode::json_string(name)).into()),
    }
}

/// A random value of a plain column; strings are `<column>_<n>`.
pub(super) fn random_value(ty: ColumnType, name: &str, n: u64, rng: &mut StdRng) -> Value {
    match ty {
        ColumnType::String => numbered(name, n),
        ColumnType::Int => Value::Int(rng.gen_range(0..100_000)),
        ColumnType::Float => Value::Float(F64(rng.gen_range(0..10_000_000) as f64 / 100.0)),
        ColumnType::Bool => Value::Bool(rng.gen()),
        ColumnType::Decimal { .. } => {
            let scale = gen_scale(ty);
            Value::decimal(Decimal::new(rng.gen_range(0..10i128.pow(5 + scale)), scale))
        }
        ColumnType::Date => Value::Date(DAY0 + rng.gen_range(0..DAYS)),
        ColumnType::Time => Value::Time(rng.gen_range(0..86_400_000i64) * 1000),
        ColumnType::Timestamp { .. } => Value::Timestamp((MS0 + rng.gen_range(0..MS_SPAN)) * 1000),
        ColumnType::Json => Value::Json(
            format!(
                "{{{}:{n},\"score\":{}}}",
                encode::json_string(name),
                rng.gen_range(0..1000)
            )
            .into(),
        ),
    }
}

/// A rank in `0..len`, Zipf-distributed with s = 1: rank 0 is drawn with chance ln 2 / ln(len+1).
fn zipf(rng: &mut StdRng, len: usize) -> usize {
    let u: f64 = rng.gen();
    let rank = ((len as f64 + 1.0).powf(u).floor() as usize).saturating_sub(1);
    rank.min(len - 1)
}

pub(super) struct World {
    pub tables: Vec<Table>,
    pub rng: StdRng,
    /// Sources whose references can be drawn (all of them after the snapshot).
    pub built: Vec<bool>,
    /// Counter making dangling references unique.
    pub dangling: u64,
}

impl World {
    /// A live slot of `s`: uniform, or Zipf over creation order.
    pub fn pick_live(&mut self, s: SourceId, skewed: bool) -> Option<usize> {
        let t = &self.tables[s];
        let len = t.slots.len();
        if t.live == 0 {
            return None;
        }
        for _ in 0..16 {
            let slot = if skewed {
                zipf(&mut self.rng, len)
            } else {
                self.rng.gen_range(0..len)
            };
            if self.tables[s].slots[slot].is_some() {
                return Some(slot);
            }
        }
        None
    }

    /// A value no row of the referenced source has.
    fn dangling_value(&mut self, ty: ColumnType, to_name: &str) -> Value {
        self.dangling += 1;
        match ty {
            ColumnType::String => Value::Str(format!("{to_name}_x{}", self.dangling).into()),
            _ => seq_value(ty, to_name, 900_000_000 + self.dangling),
        }
    }

    /// Fills the not yet `filled` columns of edge `e` in `vals`: from a parent row, or null, or
    /// dangling.
    fn fill_edge(
        &mut self,
        layout: &Layout,
        e: usize,
        vals: &mut [Value],
        filled: &mut [bool],
        force_dangling: bool,
    ) {
        let edge = &layout.edges[e];
        if edge.from_cols.iter().all(|&c| filled[c]) || !self.built[edge.to] {
            return;
        }
        let info = &layout.sources[edge.from];
        let to_info = &layout.sources[edge.to];
        let in_key = edge.from_cols.iter().any(|&c| info.is_key[c]);
        let roll: f64 = self.rng.gen();
        let parent = if force_dangling || roll < 0.02 {
            None
        } else if roll < 0.03 && !in_key {
            for &c in &edge.from_cols {
                if !filled[c] {
                    vals[c] = Value::Null;
                    filled[c] = true;
                }
            }
            return;
        } else {
            self.pick_live(edge.to, edge.skewed)
        };
        for (&c, &p) in edge.from_cols.iter().zip(&edge.to_cols) {
            if filled[c] {
                continue;
            }
            let value = parent
                .and_then(|slot| self.tables[edge.to].row(slot))
                .map(|row| row[p].clone())
                .unwrap_or(Value::Null);
            vals[c] = if parent.is_none() || (value.is_null() && info.is_key[c]) {
                self.dangling_value(info.types[c], &to_info.names[p])
            } else {
                value
            };
            filled[c] = true;
        }
    }

    /// A new row of `s` with a primary key no live row has, or `None` if none was found.
    pub fn make_row(&mut self, layout: &Layout, s: SourceId) -> Option<Row> {
        let info = &layout.sources[s];
        let ncols = info.names.len();
        let n = self.tables[s].next_n;
        self.tables[s].next_n += 1;
        for attempt in 0..20 {
            let mut vals = vec![Value::Null; ncols];
            let mut filled = vec![false; ncols];
            for &e in &info.refs {
                self.fill_edge(layout, e, &mut vals, &mut filled, attempt == 19);
            }
            // The last key column no reference filled is the unique one.
            let unique = info.key.iter().rev().find(|&&k| !filled[k]).copied();
            for c in 0..ncols {
                if filled[c] {
                    continue;
                }
                let (ty, name) = (info.types[c], info.names[c].as_str());
                vals[c] = if Some(c) == unique {
                    seq_value(ty, name, n)
                } else if info.is_key[c] {
                    seq_value(ty, name, n / 4)
                } else if info.is_target[c] {
                    seq_value(ty, name, n)
                } else if self.rng.gen_ratio(1, 100) {
                    Value::Null
                } else {
                    random_value(ty, name, n, &mut self.rng)
                };
            }
            let key = self.tables[s].key_of(&vals);
            if !key.iter().any(Value::is_null) && !self.tables[s].by_key.contains_key(&key) {
                return Some(vals.into());
            }
        }
        None
    }

    /// `old` with a different, unused primary key: a fresh sequence value in a key column no
    /// reference fills, else one key reference drawn again. `None` if none was found.
    pub fn rekey(&mut self, layout: &Layout, s: SourceId, old: &Row) -> Option<Row> {
        let info = &layout.sources[s];
        // Prefer a key column no other source references, so that children keep their parent.
        let mut own: Vec<usize> = info
            .key
            .iter()
            .copied()
            .filter(|&k| !info.is_ref[k] && !info.is_target[k])
            .collect();
        if own.is_empty() {
            own = info
                .key
                .iter()
                .copied()
                .filter(|&k| !info.is_ref[k])
                .collect();
        }
        let key_refs: Vec<usize> = info
            .refs
            .iter()
            .copied()
            .filter(|&e| layout.edges[e].from_cols.iter().any(|&c| info.is_key[c]))
            .collect();
        for _ in 0..12 {
            let mut vals = old.to_vec();
            if !own.is_empty() {
                let c = own[self.rng.gen_range(0..own.len())];
                let n = self.tables[s].next_n;
                self.tables[s].next_n += 1;
                vals[c] = seq_value(info.types[c], &info.names[c], n);
            } else if !key_refs.is_empty() {
                let e = key_refs[self.rng.gen_range(0..key_refs.len())];
                self.redraw(layout, e, &mut vals);
            } else {
                return None;
            }
            let key = self.tables[s].key_of(&vals);
            if !key.iter().any(Value::is_null) && !self.tables[s].by_key.contains_key(&key) {
                return Some(vals.into());
            }
        }
        None
    }

    /// Draws the columns of edge `e` in `vals` again (another parent, usually).
    pub fn redraw(&mut self, layout: &Layout, e: usize, vals: &mut [Value]) {
        let mut filled = vec![true; vals.len()];
        for &c in &layout.edges[e].from_cols {
            filled[c] = false;
        }
        self.fill_edge(layout, e, vals, &mut filled, false);
    }
}
