//! A deterministic, schema-driven generator of Debezium change records for the sources of a
//! [`Plan`]: a snapshot of every source, then a stream of mixed changes, as Kafka records (key
//! and value text) in the order they must be produced. Nothing is specific to one product: the
//! plan's source columns, types and primary keys say what a row looks like, and the links of its
//! nodes say which columns must join.
//!
//! **References.** Every link of every node becomes a reference: the rows of one source take the
//! values of some columns from a row of another source, so joins actually match.
//! - A node's link makes the child node's source reference the parent node's source (stars take
//!   `username` from users, pull requests take `author` from users' `username`).
//! - The hop from a many-to-many link node (`NodeOutput::Through`) to its target goes the other
//!   way: the link rows reference the target (stars take `(repo_owner, repo_name)` from repos),
//!   and the targets are drawn Zipf-skewed (s = 1 over creation order), so a few popular targets
//!   carry many links and updating one fans out to many documents.
//!
//! About 2% of references dangle (fresh values no row has), 1% are null where the column is not
//! part of the primary key; the rest hit a live row. Sources are built after the sources they
//! reference (a cycle is broken at the earliest source in plan order, whose references then
//! dangle in the snapshot). Primary keys are unique: a row whose key is taken is drawn again,
//! and after 20 tries its references dangle.
//!
//! **Row counts.** The root source of the first product gets `scale` rows; each other source gets
//! `scale` times a factor fixed by the first node that reads it: 5 for the link source of a
//! many-to-many relation, 0.7 for the child of a one-to-one relation whose link columns are its
//! whole primary key (payment-like: not every parent has one), 1 otherwise.
//!
//! **Values.** Non-referencing key columns and columns other sources reference are sequences
//! (`<column>_<n>`, `n + 1`, ...; with several such key columns only the last is unique, the
//! others repeat every four rows); other columns are random: strings `<column>_<n>`, ints below
//! 100 000, floats and decimals with 2 fraction digits, timestamps (whole milliseconds) and dates
//! within 2020–2025, times of day, bools, small JSON objects; 1% of them are null.
//!
//! **Changes.** After the snapshot (op `r`), `changes` events, drawn with fixed weights
//! (`KIND_WEIGHTS`): inserts (c); updates of one or two columns no link and no key uses (u);
//! deletes (d, then a tombstone), preferring a row nothing references, else the row and its
//! descendants; primary-key changes (d and tombstone of the old key, c of the new), whose
//! children follow the new key as `ON UPDATE CASCADE` would; moves of a child to another parent
//! (u, or a key change when the link columns are key columns); updates of a popular many-to-many
//! target, Zipf-drawn (fan-out; drawn uniformly instead with [`EditMix::Uniform`]); deletes of a
//! parent before its descendants and of the descendants before their parent; and exact duplicates (an insert or update whose records are
//! emitted twice). Once, two thirds of the way, the last `max(1, changes / 100)` change records
//! are replayed verbatim, as after a consumer rewind; the generator's own state follows the
//! replay, so later changes build on what a consumer sees. Inserts and deletes pick the source
//! furthest below (above) its snapshot size of two drawn in proportion to size, and a delete
//! becomes an insert when the total is below the snapshot's (an insert a delete when above), so
//! sizes stay near the snapshot's however many changes there are. An event that cannot happen
//! (no links, nothing to delete) falls back to a simpler one and is counted as what it became.
//! Orphans come from dangling references, moves and the replay, and transiently from the
//! parent-first deletes; most children keep a live parent.
//!
//! **Encodings.** Values cycle per source through the three encodings of the `encode` module (plain
//! envelope, schema envelope, flattened), so every source exercises every decoder path. Keys are
//! plain JSON objects for even source indices and schema-wrapped for odd ones: fixed per source so
//! that a row's key bytes (and so its partition) never change.

mod change;
mod encode;
mod model;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::decode::Change;
use crate::plan::{Plan, SourceId};
use crate::value::{Row, Value};
use encode::{Codec, Encoding, Op, ENCODINGS};
use model::{Layout, Table, World, CLOCK0};

/// At most this many children of one link are deleted or re-pointed with their parent.
const MAX_CASCADE: usize = 100;
/// At most this many rows are deleted with a parent, over every level.
const MAX_DESCENDANTS: usize = 500;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Rows of the first product's root source; other sources scale with it.
    pub scale: usize,
    /// Change events after the snapshot.
    pub changes: usize,
    /// The same seed gives the same records, byte for byte.
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            scale: 1000,
            changes: 10_000,
            seed: 0,
        }
    }
}

/// How the changes pick the rows they edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EditMix {
    /// Fan-out updates edit many-to-many targets by popularity (Zipf over creation order, as
    /// their links were drawn), so the rows with the most children are edited most often.
    #[default]
    Popular,
    /// Fan-out updates edit many-to-many targets uniformly: a popular row is edited no more
    /// often than any other. Everything else is as in [`EditMix::Popular`] (the snapshot is the
    /// same; the changes differ from the first fan-out update on).
    Uniform,
}

/// One Kafka record to produce to `plan.sources[source].topic`; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub source: usize,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Records by Debezium operation (every emitted record counts, duplicates and replays included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Snapshot reads (`op = r`).
    pub r: usize,
    pub c: usize,
    pub u: usize,
    pub d: usize,
    /// Records without a value, one after each `d`.
    pub tombstones: usize,
}

/// Change events by kind; they add up to [`GenOptions::changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub inserts: usize,
    pub updates: usize,
    /// Deletes of a row (with its descendants when every candidate had some).
    pub deletes: usize,
    /// Primary-key changes: delete and tombstone of the old key, create of the new one.
    pub key_changes: usize,
    /// Link columns changed so that a child belongs to another parent.
    pub moves: usize,
    /// Updates of a popular many-to-many target (many documents change).
    pub fan_out_updates: usize,
    /// A referenced row deleted, then the rows referencing it (and theirs).
    pub parent_first_deletes: usize,
    /// The rows referencing a row (and theirs) deleted, then the row.
    pub child_first_deletes: usize,
    /// An insert or update whose records were emitted twice in a row.
    pub duplicates: usize,
    /// Replays of a stretch of earlier records (at most one).
    pub replays: usize,
}

/// What [`generate`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Every record emitted.
    pub records: usize,
    /// Records per source (index into `plan.sources`).
    pub per_source: Vec<usize>,
    /// Snapshot rows per source.
    pub snapshot_rows: Vec<usize>,
    /// Rows per source once every record is applied.
    pub live_rows: Vec<usize>,
    pub ops: OpCounts,
    pub kinds: KindCounts,
    /// Records emitted again by the replay.
    pub replayed_records: usize,
}

/// Calls `emit` for every record, in the order they must be produced (per topic order matters).
pub fn generate(
    plan: &Plan,
    opts: &GenOptions,
    mut emit: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<GenSummary> {
    run(
        plan,
        opts,
        EditMix::Popular,
        false,
        true,
        &mut |record, _| emit(record),
    )
}

/// [`generate`] without the snapshot records: the snapshot is built (so the changes are the
/// same, byte for byte) but only the change records are passed to `emit`. These are the records
/// that follow a snapshot written earlier with the same scale and seed (and `changes: 0`).
pub fn generate_changes(
    plan: &Plan,
    opts: &GenOptions,
    emit: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<GenSummary> {
    generate_with(plan, opts, EditMix::Popular, false, emit)
}

/// [`generate`] (`snapshot` true) or [`generate_changes`] (false) with the rows to edit picked
/// by `mix`.
pub fn generate_with(
    plan: &Plan,
    opts: &GenOptions,
    mix: EditMix,
    snapshot: bool,
    mut emit: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<GenSummary> {
    run(plan, opts, mix, false, snapshot, &mut |record, _| {
        emit(record)
    })
}

/// [`generate`], also passing what each record means to its source (as the decoder should read it).
#[cfg(test)]
pub(crate) fn generate_traced(
    plan: &Plan,
    opts: &GenOptions,
    mut emit: impl FnMut(Record, &Change) -> anyhow::Result<()>,
) -> anyhow::Result<GenSummary> {
    run(
        plan,
        opts,
        EditMix::Popular,
        true,
        true,
        &mut |record, change| emit(record, change.expect("traced records carry their change")),
    )
}

fn run(
    plan: &Plan,
    opts: &GenOptions,
    mix: EditMix,
    trace: bool,
    emit_snapshot: bool,
    emit: Emit,
) -> anyhow::Result<GenSummary> {
    let mut g = Gen::new(plan, opts, trace);
    g.mix = mix;
    if emit_snapshot {
        g.snapshot(emit)?;
    } else {
        g.snapshot(&mut |_, _| Ok(()))?;
    }
    g.stream(emit)?;
    g.summary.live_rows = g.world.tables.iter().map(|t| t.live).collect();
    Ok(g.summary)
}

// ---------------------------------------------------------------------------------------------
// Events to records.

#[derive(Debug, Clone)]
struct Pending {
    record: Record,
    /// What the record means, when someone needs it (tracing, or the replay).
    change: Option<Change>,
    /// `None` for a tombstone.
    op: Option<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
    KeyChange,
    Move,
    FanOut,
    ParentFirst,
    ChildFirst,
    Duplicate,
}

/// How often each kind of change is drawn (out of 100).
const KIND_WEIGHTS: [(Kind, u32); 9] = [
    (Kind::Insert, 25),
    (Kind::Update, 37),
    (Kind::Delete, 8),
    (Kind::KeyChange, 5),
    (Kind::Move, 8),
    (Kind::FanOut, 6),
    (Kind::ParentFirst, 3),
    (Kind::ChildFirst, 3),
    (Kind::Duplicate, 5),
];

/// A row of a source: `(source, slot)`.
type RowAt = (SourceId, usize);

type Emit<'a> = &'a mut dyn FnMut(Record, Option<&Change>) -> anyhow::Result<()>;

struct Gen<'p> {
    plan: &'p Plan,
    layout: Layout,
    world: World,
    codecs: Vec<Codec>,
    /// Records written per source, to cycle through the encodings.
    written: Vec<usize>,
    /// The Debezium `ts_ms` of the current event.
    clock: i64,
    snapshot: bool,
    pending: Vec<Pending>,
    /// The latest change records, kept for the replay while `buffering`.
    ring: VecDeque<Pending>,
    ring_cap: usize,
    buffering: bool,
    summary: GenSummary,
    opts: GenOptions,
    /// Whether every record's [`Change`] is wanted (else only the replayed ones are made).
    trace: bool,
    /// How fan-out updates pick their row.
    mix: EditMix,
}

impl<'p> Gen<'p> {
    fn new(plan: &'p Plan, opts: &GenOptions, trace: bool) -> Gen<'p> {
        let layout = Layout::new(plan, opts.scale);
        let world = World {
            tables: (0..plan.sources.len())
                .map(|s| Table::new(&layout, s))
                .collect(),
            rng: StdRng::seed_from_u64(opts.seed),
            built: vec![false; plan.sources.len()],
            dangling: 0,
        };
        let codecs = plan
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| Codec::new(s, i % 2 == 1))
            .collect();
        let n = plan.sources.len();
        Gen {
            plan,
            layout,
            world,
            codecs,
            written: vec![0; n],
            clock: CLOCK0,
            snapshot: true,
            pending: Vec::new(),
            ring: VecDeque::new(),
            ring_cap: (opts.changes / 100).max(1),
            buffering: false,
            summary: GenSummary {
                per_source: vec![0; n],
                snapshot_rows: vec![0; n],
                ..GenSummary::default()
            },
            opts: opts.clone(),
            trace,
            mix: EditMix::Popular,
        }
    }

    /// Queues the record of one change of `s` (and the tombstone after a delete).
    fn push(&mut self, s: SourceId, op: Op, before: Option<&Row>, after: Option<&Row>) {
        let codec = &self.codecs[s];
        let row = after.or(before).expect("a change has a row");
        let key = codec.key(row);
        let enc: Encoding = ENCODINGS[(s + self.written[s]) % ENCODINGS.len()];
        self.written[s] += 1;
        let value = codec.value(
            enc,
            op,
            before.map(|r| &r[..]),
            after.map(|r| &r[..]),
            self.clock,
            self.snapshot,
        );
        let key_row = (self.trace || self.buffering).then(|| self.world.tables[s].key_of(row));
        let encoded = |values: &Row| crate::row::Row::from_values(values.iter());
        let change = key_row.as_ref().map(|key| match after {
            Some(row) => Change::Upsert {
                key: encoded(key),
                row: encoded(row),
            },
            None => Change::Delete { key: encoded(key) },
        });
        if op == Op::Delete {
            self.pending.push(Pending {
                record: Record {
                    source: s,
                    key: Some(key.clone()),
                    value: Some(value),
                },
                change,
                op: Some(op),
            });
            self.pending.push(Pending {
                record: Record {
                    source: s,
                    key: Some(key),
                    value: None,
                },
                change: key_row.map(|key| Change::Delete { key: encoded(&key) }),
                op: None,
            });
        } else {
            self.pending.push(Pending {
                record: Record {
                    source: s,
                    key: Some(key),
                    value: Some(value),
                },
                change,
                op: Some(op),
            });
        }
    }

    /// Emits the queued records, twice over when `twice`.
    fn flush(&mut self, emit: Emit, twice: bool) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if twice {
            for p in &pending {
                self.emit_one(emit, p.clone())?;
            }
        }
        for p in pending {
            self.emit_one(emit, p)?;
        }
        Ok(())
    }

    fn emit_one(&mut self, emit: Emit, p: Pending) -> anyhow::Result<()> {
        let s = &mut self.summary;
        s.records += 1;
        s.per_source[p.record.source] += 1;
        match p.op {
            None => s.ops.tombstones += 1,
            Some(Op::Read) => s.ops.r += 1,
            Some(Op::Create) => s.ops.c += 1,
            Some(Op::Update) => s.ops.u += 1,
            Some(Op::Delete) => s.ops.d += 1,
        }
        if self.buffering {
            if self.ring.len() == self.ring_cap {
                self.ring.pop_front();
            }
            self.ring.push_back(p.clone());
        }
        emit(p.record, p.change.as_ref())
    }

    fn snapshot(&mut self, emit: Emit) -> anyhow::Result<()> {
        let order = self.layout.order.clone();
        for s in order {
            self.world.built[s] = true;
            for _ in 0..self.layout.sources[s].rows {
                let Some(row) = self.world.make_row(&self.layout, s) else {
                    continue;
                };
                let key = self.world.tables[s].key_of(&row);
                self.world.tables[s].upsert(key, row.clone());
                self.push(s, Op::Read, None, Some(&row));
                self.summary.snapshot_rows[s] += 1;
                if self.written[s].is_multiple_of(16) {
                    self.clock += 1;
                }
                self.flush(emit, false)?;
            }
        }
        self.snapshot = false;
        Ok(())
    }

    fn stream(&mut self, emit: Emit) -> anyhow::Result<()> {
        let changes = self.opts.changes;
        let replay_at = if changes >= 3 {
            changes * 2 / 3
        } else {
            usize::MAX
        };
        let total: u32 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
        for i in 0..changes {
            self.clock += self.world.rng.gen_range(1..2000);
            self.buffering = i < replay_at && i + self.ring_cap >= replay_at;
            if i == replay_at && !self.ring.is_empty() {
                self.replay(emit)?;
                continue;
            }
            let mut w = self.world.rng.gen_range(0..total);
            let mut kind = Kind::Update;
            for (k, weight) in KIND_WEIGHTS {
                if w < weight {
                    kind = k;
                    break;
                }
                w -= weight;
            }
            let kind = self.steady(kind);
            let done = self.event(kind);
            let k = &mut self.summary.kinds;
            match done {
                Kind::Insert => k.inserts += 1,
                Kind::Update => k.updates += 1,
                Kind::Delete => k.deletes += 1,
                Kind::KeyChange => k.key_changes += 1,
                Kind::Move => k.moves += 1,
                Kind::FanOut => k.fan_out_updates += 1,
                Kind::ParentFirst => k.parent_first_deletes += 1,
                Kind::ChildFirst => k.child_first_deletes += 1,
                Kind::Duplicate => k.duplicates += 1,
            }
            self.flush(emit, done == Kind::Duplicate)?;
        }
        Ok(())
    }

    /// Keeps the total number of rows near the snapshot's: cascading deletes remove many rows and
    /// an insert adds one, so below the snapshot's total a delete becomes an insert, and above it
    /// an insert a delete, the more likely the further off (certainly at 10%).
    fn steady(&mut self, kind: Kind) -> Kind {
        let planned = self
            .layout
            .sources
            .iter()
            .map(|s| s.rows)
            .sum::<usize>()
            .max(1) as f64;
        let live = self.world.tables.iter().map(|t| t.live).sum::<usize>() as f64;
        let off = ((live - planned).abs() / planned * 10.0).min(1.0);
        match kind {
            Kind::Delete | Kind::ParentFirst | Kind::ChildFirst
                if live < planned && self.world.rng.gen_bool(off) =>
            {
                Kind::Insert
            }
            Kind::Insert if live > planned && self.world.rng.gen_bool(off) => Kind::Delete,
            kind => kind,
        }
    }

    /// Re-emits the buffered records verbatim, applying them to the generator's state as a
    /// consumer would.
    fn replay(&mut self, emit: Emit) -> anyhow::Result<()> {
        self.buffering = false;
        let records: Vec<Pending> = self.ring.drain(..).collect();
        self.summary.kinds.replays += 1;
        self.summary.replayed_records += records.len();
        for p in records {
            if let Some(change) = &p.change {
                self.world.tables[p.record.source].apply(change);
            }
            self.emit_one(emit, p)?;
        }
        Ok(())
    }
}
