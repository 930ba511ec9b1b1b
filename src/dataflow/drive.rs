//! The driver of a product: decides which documents to build and when. It starts each document's
//! build by finding its root row (on the worker that holds the root's source rows for that key)
//! and asking for the rows of its relations.
//!
//! - **Hydration.** Once every worker has caught up with the product's sources and loaded what
//!   the output topic held (the [`Readiness`] messages), every root row is due: the driver lists
//!   its share of the root source's rows and builds their documents, a chunk at a time. When it
//!   has started the last of them it tells every worker's sink ([`Found::Hydrated`]), which then
//!   tombstones the keys the topic held that no document has any more.
//! - **Changes.** After that, the roots whose documents a change may have changed arrive as
//!   [`Dirty`] keys (see [`super::propagate`]). A root is built at a time once every dirty key up
//!   to that time has arrived, so one build covers every change before it.
//! - **Chunks.** At most [`CHUNK`] documents start at one time, and at most [`IN_FLIGHT`] times of
//!   them are in the dataflow at once, so memory is bounded by the chunk, not by the job. The
//!   roots of a change that rewrites more documents than a chunk wait in a backlog, and the
//!   roots of later, smaller changes go first: a fan-out cannot hold back a one-document change
//!   by more than a chunk. A root waiting in the backlog is built once, however many changes
//!   made it dirty meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Cursor, TraceReader};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Stream};
use timely::progress::Antichain;

use super::assemble::{key_route, render_key, root_id, DocId};
use super::find::{found, Found};
use super::lookup::held_at;
use super::rows::Rows;
use super::tree::Tree;
use super::Time;
use crate::row::{Row, RowRef};

/// Documents started at one time at most.
pub const CHUNK: usize = 4096;
/// Times of started documents in the dataflow at once at most.
pub const IN_FLIGHT: usize = 2;
/// Documents a worker's drivers may have started and not written, all products together.
pub const WORKER_BUDGET: usize = IN_FLIGHT * CHUNK;

/// Documents a worker's drivers may still start before some of those in flight are written:
/// shared by the products of a worker, so that the memory of documents in flight is bounded
/// however many products hydrate at once.
///
/// A driver with nothing in flight may always start a small chunk ([`SMALL`] documents), even
/// with the budget spent (it goes below zero): a product's documents are written only once
/// every worker's driver of it has moved past their time, so a driver that waited for budget
/// held by other products, whose drivers on another worker wait in turn for this worker's
/// budget, would wait forever. So in flight are at most the budget and a small chunk for each
/// product.
#[derive(Clone, Debug)]
pub struct Budget(Rc<std::cell::Cell<isize>>);

impl Budget {
    pub fn new(documents: usize) -> Self {
        Budget(Rc::new(std::cell::Cell::new(documents as isize)))
    }

    /// Takes up to `want` documents of the budget; how many it got.
    fn take(&self, want: usize) -> usize {
        let got = want.min(self.0.get().max(0) as usize);
        self.0.set(self.0.get() - got as isize);
        got
    }

    /// Takes `documents` whatever is left (see above).
    fn force(&self, documents: usize) -> usize {
        self.0.set(self.0.get() - documents as isize);
        documents
    }

    fn give(&self, documents: usize) {
        self.0.set(self.0.get() + documents as isize);
    }
}

/// A root whose document may have changed: the hash of its primary key, the key itself when it
/// is known (the root's own row changed), so that a deleted root can be tombstoned, and how
/// many roots the change that dirtied it reaches (at least): a change of weight above
/// [`SMALL`] is a fan-out, whose roots wait in the backlog behind those of small changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dirty {
    pub hash: u64,
    pub key: Option<Row>,
    pub weight: u64,
}

/// The most roots a change may dirty for its documents to go ahead of fan-outs.
pub const SMALL: u64 = 64;

/// What the job tells a product's drivers, one message to each worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Readiness {
    /// A worker caught up with the product's sources, at the message's time.
    CaughtUp { to: u64 },
    /// A worker fed what the output topic held for its share of it, before the message's time.
    Loaded { to: u64 },
}

impl Readiness {
    fn to(&self) -> u64 {
        match self {
            Readiness::CaughtUp { to } | Readiness::Loaded { to } => *to,
        }
    }
}

/// What a driver reads: roots to build, and the job's messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverInput {
    Dirty(Dirty),
    Readiness(Readiness),
}

impl DriverInput {
    fn route(&self) -> u64 {
        match self {
            DriverInput::Dirty(d) => d.hash,
            DriverInput::Readiness(c) => c.to(),
        }
    }
}

/// The driver of `tree`'s product over the rows of its root source. `written` passes a time
/// once the product's sink has written the documents started at it.
pub fn drive<'s>(
    tree: Rc<Tree>,
    input: Stream<'s, Time, Vec<DriverInput>>,
    rows: Rows<'s>,
    written: ProbeHandle<Time>,
    budget: Budget,
) -> Stream<'s, Time, Vec<Found>> {
    let scope = input.scope();
    let peers = scope.peers();
    let mut trace = Some(rows.trace);
    let name = format!("Drive({})", tree.product);
    input.binary_frontier::<_, CapacityContainerBuilder<Vec<Found>>, _, _, _, _>(
        rows.stream,
        Exchange::new(DriverInput::route),
        Pipeline,
        &name,
        move |capability, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut state = Driver {
                tree,
                peers,
                held: Some(capability),
                pending: BTreeMap::new(),
                fresh: BTreeMap::new(),
                backlog: BTreeMap::new(),
                caught_up: 0,
                loaded: 0,
                release: 0,
                started: false,
                hydrating: false,
                in_flight: VecDeque::new(),
                floor: 0,
                written,
                budget,
            };
            move |(input, input_frontier), (batches, rows_frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    for message in data.drain(..) {
                        match message {
                            DriverInput::Dirty(dirty) => {
                                state.pending.entry(time).or_default().push(dirty)
                            }
                            DriverInput::Readiness(Readiness::CaughtUp { .. }) => {
                                state.caught_up += 1;
                                state.release = state.release.max(time);
                            }
                            DriverInput::Readiness(Readiness::Loaded { .. }) => {
                                state.loaded += 1;
                                state.release = state.release.max(time);
                            }
                        }
                    }
                });
                batches.for_each(|_, _| {});
                let Some(tr) = trace.as_mut() else { return };
                let input_at = input_frontier.frontier().first().copied();
                let rows_at = rows_frontier.frontier().first().copied();
                let mut out = Vec::new();
                let waiting = state.step(tr, input_at, rows_at, &mut |cap, found| {
                    out.clear();
                    out.extend(found);
                    if !out.is_empty() {
                        output.session(cap).give_iterator(out.drain(..));
                    }
                });
                if waiting {
                    activator.activate_after(std::time::Duration::from_millis(1));
                }
                match state.held.as_ref() {
                    Some(cap) => {
                        tr.set_logical_compaction(Antichain::from_elem(*cap.time()).borrow())
                    }
                    None => trace = None,
                }
            }
        },
    )
}

/// A driver's state between activations.
struct Driver {
    tree: Rc<Tree>,
    peers: usize,
    /// The capability at which the next documents start; `None` once nothing more will.
    held: Option<Capability<Time>>,
    /// Dirty roots by time, not yet known to be all of their time's.
    pending: BTreeMap<Time, Vec<Dirty>>,
    /// Dirty roots of changes since the last chunk (hash → key if known).
    fresh: BTreeMap<u64, Option<Row>>,
    /// Roots waiting: the hydration's, and those of changes too large for one chunk.
    backlog: BTreeMap<u64, Option<Row>>,
    caught_up: usize,
    loaded: usize,
    /// The latest time of a control message: hydration reads the roots as of then.
    release: Time,
    started: bool,
    /// Hydration's roots are not all started yet.
    hydrating: bool,
    /// Times of chunks started and not yet written, and their documents.
    in_flight: VecDeque<(Time, usize)>,
    /// The latest time of a dirty root taken (or of the hydration): a chunk starts no earlier,
    /// so that its documents show every change that made a root of it dirty.
    floor: Time,
    written: ProbeHandle<Time>,
    budget: Budget,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A product removed with documents in flight gives their budget back.
        for (_, documents) in self.in_flight.drain(..) {
            self.budget.give(documents);
        }
    }
}

type Emit<'a> = dyn FnMut(&Capability<Time>, Vec<Found>) + 'a;

impl Driver {
    /// Does what can be done now; whether it waits for a chunk to be written.
    fn step<Tr>(
        &mut self,
        trace: &mut Tr,
        input_at: Option<Time>,
        rows_at: Option<Time>,
        emit: &mut Emit<'_>,
    ) -> bool
    where
        Tr: TraceReader<Time = Time, Batch: differential_dataflow::trace::Navigable>,
        for<'a> differential_dataflow::trace::BatchCursor<Tr>:
            Cursor<Key<'a> = &'a u64, Val<'a> = RowRef<'a>, Diff = isize, Time = Time>,
    {
        let complete = |t: Time, at: Option<Time>| at.is_none_or(|at| t < at);
        // The hydration reads the roots as of the release, or later: the trace may have
        // forgotten the distinctions before the driver's capability.
        let hydrate_at = self
            .held
            .as_ref()
            .map_or(self.release, |held| self.release.max(*held.time()));
        if !self.started
            && self.caught_up == self.peers
            && self.loaded == self.peers
            && complete(hydrate_at, rows_at)
        {
            self.start(trace, hydrate_at);
        }
        if !self.started {
            match input_at {
                // Nothing more will come: this job stops before every worker caught up with
                // the product's sources, and it never starts.
                None => self.held = None,
                Some(_) => self.follow(earliest(self.pending.keys().next().copied(), input_at)),
            }
            return false;
        }
        // Dirty roots of times complete on both inputs: every one of them has arrived.
        while let Some(entry) = self.pending.first_entry() {
            let t = *entry.key();
            if !(complete(t, input_at) && complete(t, rows_at)) {
                break;
            }
            for dirty in entry.remove() {
                if dirty.weight <= SMALL || self.fresh.contains_key(&dirty.hash) {
                    // Built with the next chunk; once built, the backlog need not build it.
                    let waited = self.backlog.remove(&dirty.hash).flatten();
                    merge(&mut self.fresh, dirty.hash, dirty.key.or(waited));
                } else {
                    merge(&mut self.backlog, dirty.hash, dirty.key);
                }
            }
            self.floor = self.floor.max(t);
        }
        while let Some(&(t, documents)) = self.in_flight.front() {
            if self.written.less_equal(&t) {
                break;
            }
            self.in_flight.pop_front();
            self.budget.give(documents);
        }
        let mut waiting = false;
        while !(self.fresh.is_empty() && self.backlog.is_empty() && !self.hydrating) {
            let roots = self.fresh.len() + self.backlog.len();
            if self.in_flight.len() >= IN_FLIGHT {
                waiting = true;
                break;
            }
            let mut room = self.budget.take(roots.min(CHUNK));
            if room == 0 && roots > 0 && self.in_flight.is_empty() {
                room = self.budget.force(roots.min(SMALL as usize));
            }
            if room == 0 && roots > 0 {
                waiting = true;
                break;
            }
            let Some(held) = self.held.as_ref() else {
                self.budget.give(room);
                break;
            };
            // The latest time both inputs are complete through, and not before the capability.
            let upto = earliest(input_at, rows_at);
            let at = match upto {
                Some(upto) => (*held.time()).max(upto.saturating_sub(1)),
                None => *held.time(),
            }
            .max(self.floor);
            if !complete(at, rows_at) {
                self.budget.give(room);
                break;
            }
            let cap = held.delayed(&at);
            let chunk = self.take_chunk(room);
            let found = self.start_documents(trace, at, chunk);
            emit(&cap, found);
            if self.hydrating && self.backlog.is_empty() {
                self.hydrating = false;
                let hydrated = (0..self.peers as u64).map(Found::Hydrated).collect();
                emit(&cap, hydrated);
            }
            self.in_flight.push_back((at, room));
            self.held.as_mut().expect("held").downgrade(&(at + 1));
        }
        if self.fresh.is_empty() && self.backlog.is_empty() && !self.hydrating {
            self.follow(earliest(self.pending.keys().next().copied(), input_at));
        }
        waiting
    }

    /// Hydration: every root row held at `at` is due.
    fn start<Tr>(&mut self, trace: &mut Tr, at: Time)
    where
        Tr: TraceReader<Time = Time, Batch: differential_dataflow::trace::Navigable>,
        for<'a> differential_dataflow::trace::BatchCursor<Tr>:
            Cursor<Key<'a> = &'a u64, Val<'a> = RowRef<'a>, Diff = isize, Time = Time>,
    {
        let batches = trace
            .batches_through(Antichain::new().borrow())
            .expect("a trace hands out all of its batches");
        let (mut cursor, storage) = cursor_list(batches);
        while let Some(&hash) = cursor.get_key(&storage) {
            while cursor.get_val(&storage).is_some() {
                if held_at(&mut cursor, &storage, at) {
                    self.backlog.insert(hash, None);
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        // What changed until then is in the hydration's documents.
        self.pending = self.pending.split_off(&(at + 1));
        self.floor = at;
        self.started = true;
        self.hydrating = true;
    }

    /// The roots of the next chunk, `size` of them at most: the fresh ones first, then from
    /// the backlog.
    fn take_chunk(&mut self, size: usize) -> Vec<(u64, Option<Row>)> {
        let mut chunk = Vec::with_capacity(size);
        while chunk.len() < size {
            let Some(entry) = self.fresh.pop_first().or_else(|| self.backlog.pop_first()) else {
                break;
            };
            chunk.push(entry);
        }
        chunk.sort_unstable_by_key(|(hash, _)| *hash);
        chunk
    }

    /// Finds the root rows of `chunk` as of `at` and starts their documents; a root known by its
    /// key that has no row any more is gone.
    fn start_documents<Tr>(
        &self,
        trace: &mut Tr,
        at: Time,
        chunk: Vec<(u64, Option<Row>)>,
    ) -> Vec<Found>
    where
        Tr: TraceReader<Time = Time, Batch: differential_dataflow::trace::Navigable>,
        for<'a> differential_dataflow::trace::BatchCursor<Tr>:
            Cursor<Key<'a> = &'a u64, Val<'a> = RowRef<'a>, Diff = isize, Time = Time>,
    {
        let tree = &self.tree;
        let key_columns = &tree.root().key;
        let batches = trace
            .batches_through(Antichain::new().borrow())
            .expect("a trace hands out all of its batches");
        let (mut cursor, storage) = cursor_list(batches);
        let mut out = Vec::new();
        let mut key = Vec::new();
        for (hash, wanted) in chunk {
            let mut wanted_found = false;
            cursor.seek_key(&storage, &hash);
            if cursor.get_key(&storage) == Some(&hash) {
                while let Some(row) = cursor.get_val(&storage) {
                    key.clear();
                    if held_at(&mut cursor, &storage, at) && row.project(key_columns, &mut key) {
                        wanted_found |= wanted.as_ref().is_some_and(|w| w.bytes() == key);
                        let doc = DocId {
                            route: key_route(&render_key(&tree.key_names, values(&key))),
                            root: root_id(&key),
                        };
                        found(tree, 0, doc, doc.root, row, &mut out);
                    }
                    cursor.step_val(&storage);
                }
            }
            if let (Some(gone), false) = (wanted, wanted_found) {
                let key = render_key(&tree.key_names, values(gone.bytes()));
                out.push(Found::Gone {
                    route: key_route(&key),
                    key,
                });
            }
        }
        out
    }

    /// With nothing to start, the capability follows the input: documents start no earlier.
    fn follow(&mut self, input_at: Option<Time>) {
        match input_at {
            Some(t) => {
                if let Some(held) = self.held.as_mut() {
                    if *held.time() < t {
                        held.downgrade(&t);
                    }
                }
            }
            None => self.held = None,
        }
    }
}

/// The earlier of two frontiers (`None`: nothing more will come).
fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Adds a dirty root to a set, keeping its key if either knows it.
fn merge(set: &mut BTreeMap<u64, Option<Row>>, hash: u64, key: Option<Row>) {
    let entry = set.entry(hash).or_insert(None);
    if entry.is_none() {
        *entry = key;
    }
}

/// The datums of an encoded key.
fn values(key: &[u8]) -> crate::row::Datums<'_> {
    RowRef::new(key).datums()
}
