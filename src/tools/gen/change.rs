//! The changes the generator makes to its model of the tables: which kind of change comes next,
//! and inserts, updates, deletes, moves between parents, key changes (cascading to the children
//! that refer to the key) and fan-out updates of rows with many descendants.

use rand::Rng;

use super::encode::Op;
use super::model::{project, random_value};
use super::*;

impl Gen<'_> {
    /// Performs one change of `kind` (or of a simpler kind when it cannot be), queueing its
    /// records; returns the kind performed.
    pub(super) fn event(&mut self, kind: Kind) -> Kind {
        match kind {
            Kind::Insert => {
                let s = self.pick_balanced(true);
                if self.insert(s) {
                    return Kind::Insert;
                }
                self.update_any()
            }
            Kind::Update => self.update_any(),
            Kind::Delete => self.delete_any(),
            Kind::KeyChange => {
                let s = self.layout.pick_source(&mut self.world.rng);
                if let Some(slot) = self.world.pick_live(s, false) {
                    let old = self.world.tables[s].slots[slot].clone().expect("live");
                    if let Some(new) = self.world.rekey(&self.layout, s, &old) {
                        self.replace(s, &old, new.clone());
                        self.cascade_key_change(s, &old, &new, 0);
                        return Kind::KeyChange;
                    }
                }
                self.update_any()
            }
            Kind::Move => {
                if !self.layout.edges.is_empty() {
                    let e = self.world.rng.gen_range(0..self.layout.edges.len());
                    let s = self.layout.edges[e].from;
                    if let Some(slot) = self.world.pick_live(s, false) {
                        let old = self.world.tables[s].slots[slot].clone().expect("live");
                        let mut vals = old.to_vec();
                        self.world.redraw(&self.layout, e, &mut vals);
                        let new: Row = vals.into();
                        let (old_key, new_key) = (
                            self.world.tables[s].key_of(&old),
                            self.world.tables[s].key_of(&new),
                        );
                        if old_key == new_key {
                            self.world.tables[s].upsert(new_key, new.clone());
                            self.push(s, Op::Update, Some(&old), Some(&new));
                        } else if !new_key.iter().any(Value::is_null)
                            && !self.world.tables[s].by_key.contains_key(&new_key)
                        {
                            self.replace(s, &old, new.clone());
                        } else {
                            return self.update_any();
                        }
                        // Rows referencing the moved columns follow them.
                        self.cascade_key_change(s, &old, &new, 0);
                        return Kind::Move;
                    }
                }
                self.update_any()
            }
            Kind::FanOut => {
                let skewed: Vec<SourceId> = self
                    .layout
                    .edges
                    .iter()
                    .filter(|e| e.skewed)
                    .map(|e| e.to)
                    .collect();
                let targets = if skewed.is_empty() {
                    self.layout.edges.iter().map(|e| e.to).collect()
                } else {
                    skewed
                };
                if !targets.is_empty() {
                    let s = targets[self.world.rng.gen_range(0..targets.len())];
                    let popular = self.mix == EditMix::Popular;
                    if let Some(slot) = self.world.pick_live(s, popular) {
                        self.update(s, slot);
                        return Kind::FanOut;
                    }
                }
                self.update_any()
            }
            Kind::ParentFirst | Kind::ChildFirst => {
                if let Some((parent, mut descendants)) = self.family() {
                    // Descendants come parents first; children first is the reverse.
                    if kind == Kind::ParentFirst {
                        self.delete(parent.0, parent.1);
                    } else {
                        descendants.reverse();
                    }
                    for (s, slot) in descendants {
                        self.delete(s, slot);
                    }
                    if kind == Kind::ChildFirst {
                        self.delete(parent.0, parent.1);
                    }
                    return kind;
                }
                self.delete_any()
            }
            Kind::Duplicate => {
                if self.world.rng.gen_bool(0.5) {
                    let s = self.pick_balanced(true);
                    if self.insert(s) {
                        return Kind::Duplicate;
                    }
                }
                match self.update_any() {
                    Kind::Update => Kind::Duplicate,
                    other => other,
                }
            }
        }
    }

    /// A source in proportion to its snapshot size; of two such draws, the one furthest below
    /// (`grow`) or above its snapshot size, so that inserts, deletes and cascades keep the
    /// sources near their planned proportions.
    fn pick_balanced(&mut self, grow: bool) -> SourceId {
        let a = self.layout.pick_source(&mut self.world.rng);
        let b = self.layout.pick_source(&mut self.world.rng);
        let fill = |s: SourceId| {
            self.world.tables[s].live as f64 / self.layout.sources[s].rows.max(1) as f64
        };
        if (fill(b) < fill(a)) == grow {
            b
        } else {
            a
        }
    }

    fn insert(&mut self, s: SourceId) -> bool {
        let Some(row) = self.world.make_row(&self.layout, s) else {
            return false;
        };
        let key = self.world.tables[s].key_of(&row);
        self.world.tables[s].upsert(key, row.clone());
        self.push(s, Op::Create, None, Some(&row));
        true
    }

    /// Updates a live row of a random source; inserts when there is none.
    fn update_any(&mut self) -> Kind {
        for _ in 0..4 {
            let s = self.layout.pick_source(&mut self.world.rng);
            if let Some(slot) = self.world.pick_live(s, false) {
                self.update(s, slot);
                return Kind::Update;
            }
        }
        for s in 0..self.plan.sources.len() {
            if self.insert(s) {
                return Kind::Insert;
            }
        }
        Kind::Update
    }

    /// Changes one or two columns no link uses (none: the row is written again unchanged).
    fn update(&mut self, s: SourceId, slot: usize) {
        let info = &self.layout.sources[s];
        let old = self.world.tables[s].slots[slot].clone().expect("live");
        let mut vals = old.to_vec();
        if !info.free.is_empty() {
            let count = if info.free.len() > 1 && self.world.rng.gen_bool(0.3) {
                2
            } else {
                1
            };
            for _ in 0..count {
                let c = info.free[self.world.rng.gen_range(0..info.free.len())];
                let n = self.world.tables[s].next_n;
                self.world.tables[s].next_n += 1;
                vals[c] = if self.world.rng.gen_ratio(1, 100) {
                    Value::Null
                } else {
                    random_value(info.types[c], &info.names[c], n, &mut self.world.rng)
                };
            }
        }
        let new: Row = vals.into();
        let key = self.world.tables[s].key_of(&new);
        self.world.tables[s].upsert(key, new.clone());
        self.push(s, Op::Update, Some(&old), Some(&new));
    }

    /// Deletes a live row of a random source, preferring one no other row references; failing
    /// that, the row and its descendants (parents first, as `ON DELETE CASCADE` would), so that
    /// orphans stay rare and transient.
    fn delete_any(&mut self) -> Kind {
        for _ in 0..4 {
            let s = self.pick_balanced(false);
            let mut found = None;
            for _ in 0..8 {
                let Some(slot) = self.world.pick_live(s, false) else {
                    break;
                };
                let descendants = self.descendants(s, slot);
                let leaf = descendants.is_empty();
                found = Some((slot, descendants));
                if leaf {
                    break;
                }
            }
            if let Some((slot, descendants)) = found {
                self.delete(s, slot);
                for (ds, dslot) in descendants {
                    self.delete(ds, dslot);
                }
                return Kind::Delete;
            }
        }
        self.update_any()
    }

    fn delete(&mut self, s: SourceId, slot: usize) {
        let Some(old) = self.world.tables[s].slots[slot].clone() else {
            return;
        };
        let key = self.world.tables[s].key_of(&old);
        self.world.tables[s].delete(&key);
        self.push(s, Op::Delete, Some(&old), None);
    }

    /// Replaces `old` by `new`, whose key differs: delete and tombstone, then create.
    fn replace(&mut self, s: SourceId, old: &Row, new: Row) {
        let old_key = self.world.tables[s].key_of(old);
        self.world.tables[s].delete(&old_key);
        self.push(s, Op::Delete, Some(old), None);
        let key = self.world.tables[s].key_of(&new);
        self.world.tables[s].upsert(key, new.clone());
        self.push(s, Op::Create, None, Some(&new));
    }

    /// The live rows that reference the row in `slot` of `s` (at most [`MAX_CASCADE`] per link).
    fn children_of(&self, s: SourceId, slot: usize) -> Vec<RowAt> {
        let Some(row) = self.world.tables[s].row(slot) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for edge in self
            .layout
            .edges
            .iter()
            .filter(|e| e.to == s && e.from != s)
        {
            let Some(values) = project(row, &edge.to_cols) else {
                continue;
            };
            let mut children = self.world.tables[edge.from].children(edge.from_index, &values);
            children.truncate(MAX_CASCADE);
            for child in children.into_iter().map(|c| (edge.from, c)) {
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
        out
    }

    /// The rows referencing the row in `slot` of `s`, and theirs, recursively (a few levels, at
    /// most [`MAX_DESCENDANTS`]), each after the row it references.
    fn descendants(&self, s: SourceId, slot: usize) -> Vec<RowAt> {
        let mut out = Vec::new();
        let mut next = 0;
        let mut level_end = 0;
        let mut depth = 0;
        let mut queue = vec![(s, slot)];
        // Breadth first: every row comes after its parent.
        while next < queue.len() && depth < 5 {
            if next == level_end {
                level_end = queue.len();
                depth += 1;
            }
            let (ps, pslot) = queue[next];
            next += 1;
            for child in self.children_of(ps, pslot) {
                if out.len() < MAX_DESCENDANTS && child != (s, slot) && !out.contains(&child) {
                    out.push(child);
                    queue.push(child);
                }
            }
        }
        out
    }

    /// A live row that other rows reference, and its descendants: `((source, slot), rows)`.
    fn family(&mut self) -> Option<(RowAt, Vec<RowAt>)> {
        if self.layout.edges.is_empty() {
            return None;
        }
        for _ in 0..16 {
            let e = self.world.rng.gen_range(0..self.layout.edges.len());
            let s = self.layout.edges[e].to;
            let Some(parent) = self.world.pick_live(s, false) else {
                continue;
            };
            let descendants = self.descendants(s, parent);
            if !descendants.is_empty() {
                return Some(((s, parent), descendants));
            }
        }
        None
    }

    /// After `old` (of source `s`) became `new` with other values in columns that rows of other
    /// sources reference (a key change, or a move): the children that referenced the old values
    /// follow (as `ON UPDATE CASCADE` would), at most [`MAX_CASCADE`]
    /// per link.
    fn cascade_key_change(&mut self, s: SourceId, old: &Row, new: &Row, depth: usize) {
        if depth > 4 {
            return;
        }
        for e in 0..self.layout.edges.len() {
            let edge = &self.layout.edges[e];
            if edge.to != s || edge.from == s {
                continue;
            }
            let (Some(old_values), Some(new_values)) =
                (project(old, &edge.to_cols), project(new, &edge.to_cols))
            else {
                continue;
            };
            if old_values == new_values {
                continue;
            }
            let (from, from_cols) = (edge.from, edge.from_cols.clone());
            let mut children = self.world.tables[from].children(edge.from_index, &old_values);
            children.truncate(MAX_CASCADE);
            for child in children {
                let child_old = self.world.tables[from].slots[child].clone().expect("live");
                let mut vals = child_old.to_vec();
                for (&c, v) in from_cols.iter().zip(new_values.iter()) {
                    vals[c] = v.clone();
                }
                let child_new: Row = vals.into();
                let (old_key, new_key) = (
                    self.world.tables[from].key_of(&child_old),
                    self.world.tables[from].key_of(&child_new),
                );
                if old_key == new_key {
                    self.world.tables[from].upsert(new_key, child_new.clone());
                    self.push(from, Op::Update, Some(&child_old), Some(&child_new));
                } else if !self.world.tables[from].by_key.contains_key(&new_key) {
                    self.replace(from, &child_old, child_new.clone());
                } else {
                    continue;
                }
                self.cascade_key_change(from, &child_old, &child_new, depth + 1);
            }
        }
    }
}
