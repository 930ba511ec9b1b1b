//! The dataflows one worker runs and the traces they share: the catalog installs and drops them
//! as products come and go, in the manner of differential-dataflow's `interactive` server.
//!
//! - One dataflow per source: its input and the trace of its current rows ([`arrange_rows`]),
//!   the only copy of them.
//! - One dataflow per index of a source on other columns ([`arrange_index`]), importing the
//!   source's rows; products that look rows up by the same columns share it.
//! - One dataflow per product ([`product::build`]), importing the rows and indexes it reads.
//!   It holds no rows of its own: documents are built from the shared traces when they are due.
//!
//! A product added to a running job imports the traces as they are and builds its documents
//! from them; a source or index no product uses any more is dropped. Every worker must install
//! and remove the same products in the same order: the job sequences these commands.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use differential_dataflow::trace::TraceReader;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle, Scope};
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::worker::Worker;

use super::drive::{Budget, Readiness, WORKER_BUDGET};
use super::index::{arrange_index, Index, IndexTrace};
use super::product::{self, HeldInput, ReadinessInput};
use super::propagate::Arrangements;
use super::rows::{arrange_rows, RowCount, RowTrace, Rows, SourceEvent};
use super::sink::Held;
use super::sink::{Failure, SharedWriter, SinkControl, SinkMember};
use super::tree::{Finder, Tree};
use super::Time;
use crate::plan::{KeyedArrangement, Plan, ProductPlan, SourceId, SourcePlan};

/// A source's input handle.
pub type SourceInput = InputHandle<Time, CapacityContainerBuilder<Vec<SourceEvent>>>;

struct InstalledSource {
    dataflow: usize,
    input: SourceInput,
    trace: RowTrace,
    /// Passes a time once the source's rows of earlier times are in its trace.
    computed: ProbeHandle<Time>,
}

struct InstalledIndex {
    dataflow: usize,
    trace: IndexTrace,
    computed: ProbeHandle<Time>,
}

/// A dataflow of products of one shape on a worker (see [`Tree::shape_key`]): its readiness
/// input, shared by its members.
struct SharedDataflow {
    dataflow: usize,
    /// Open until this worker has sent both of its messages.
    control: Option<ReadinessInput>,
    caught_up_sent: bool,
    /// Members installed, members that fed their share of their output topic (or were removed
    /// before), and members not removed.
    members: usize,
    loaded: usize,
    live: usize,
}

impl SharedDataflow {
    fn send(&mut self, message: impl Fn(u64) -> Readiness, peers: usize) {
        if let Some(control) = self.control.as_mut() {
            for to in 0..peers as u64 {
                control.send(message(to));
            }
        }
    }

    /// One more member fed its share of its output topic: when all have, the drivers hear it.
    fn member_loaded(&mut self, peers: usize) {
        self.loaded += 1;
        if self.loaded == self.members {
            self.send(|to| Readiness::Loaded { to }, peers);
        }
        self.close_when_done();
    }

    fn close_when_done(&mut self) {
        if self.caught_up_sent && self.loaded == self.members {
            self.control = None;
        }
    }
}

/// A product, and the protocol by which a worker starts it: each worker says when it has caught
/// up with the product's sources and when it has fed its share of what the output topic held;
/// once every worker has said both (for every product sharing its dataflow), the product's
/// documents are built.
pub struct InstalledProduct {
    pub plan: ProductPlan,
    shared: Rc<RefCell<SharedDataflow>>,
    sources: BTreeSet<SourceId>,
    indexes: Vec<KeyedArrangement>,
    /// Open until this worker has fed its share of the output topic.
    held: Option<HeldInput>,
    caught_up: bool,
    loaded: bool,
    written: ProbeHandle<Time>,
    sink: Rc<SinkControl>,
}

impl InstalledProduct {
    /// The sources the product reads.
    pub fn sources(&self) -> &BTreeSet<SourceId> {
        &self.sources
    }

    /// Whether this worker has said it caught up with the product's sources.
    pub fn caught_up_sent(&self) -> bool {
        self.caught_up
    }

    /// Whether this worker has fed its share of the output topic.
    pub fn loaded_sent(&self) -> bool {
        self.loaded
    }

    /// This worker has read the product's sources to the end they had when it started reading
    /// them: tells every worker's driver, at `time`.
    pub fn caught_up(&mut self, time: Time, peers: usize) {
        if self.caught_up {
            return;
        }
        self.caught_up = true;
        let mut shared = self.shared.borrow_mut();
        if !shared.caught_up_sent {
            shared.caught_up_sent = true;
            if let Some(control) = shared.control.as_mut() {
                control.advance_to(time.max(*control.time()));
            }
            shared.send(|to| Readiness::CaughtUp { to }, peers);
            shared.close_when_done();
        }
    }

    /// A document (`None`: a tombstone) of this worker's share of the output topic, in the
    /// topic's order.
    pub fn held(&mut self, key: String, json: Option<String>) {
        if let Some(held) = self.held.as_mut() {
            held.send(Held { key, json });
        }
    }

    /// This worker has fed its share of the output topic: tells every worker's driver (once
    /// every product sharing the dataflow has).
    pub fn loaded(&mut self, peers: usize) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        self.held = None;
        self.shared.borrow_mut().member_loaded(peers);
    }

    /// The job stops before this worker caught up: the product will not be built (its
    /// documents would reflect part of the sources); its inputs close.
    pub fn abandon(&mut self) {
        self.shared.borrow_mut().control = None;
        self.held = None;
    }

    /// Whether every worker's sink has written the hydration's documents.
    pub fn hydrated(&self) -> bool {
        self.sink.caught_up.get()
    }

    fn advance_to(&mut self, time: Time) {
        if let Some(control) = self.shared.borrow_mut().control.as_mut() {
            control.advance_to(time.max(*control.time()));
        }
        if let Some(held) = self.held.as_mut() {
            held.advance_to(time.max(*held.time()));
        }
    }
}

/// The installed dataflows of one worker.
pub struct Catalog {
    /// Every source declared so far (ids are stable) and the installed products.
    pub plan: Plan,
    sources: HashMap<SourceId, InstalledSource>,
    indexes: HashMap<KeyedArrangement, InstalledIndex>,
    pub products: Vec<InstalledProduct>,
    /// The time the inputs are at; new inputs start there.
    time: Time,
    /// The time the shared traces were last compacted to.
    compacted: Time,
    /// Documents the products' drivers may start before some in flight are written.
    budget: Budget,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    pub fn new() -> Self {
        Catalog {
            plan: Plan {
                sources: Vec::new(),
                products: Vec::new(),
            },
            sources: HashMap::new(),
            indexes: HashMap::new(),
            products: Vec::new(),
            time: 0,
            compacted: 0,
            budget: Budget::new(WORKER_BUDGET),
        }
    }

    /// The sources with an installed dataflow.
    pub fn installed_sources(&self) -> BTreeSet<SourceId> {
        self.sources.keys().copied().collect()
    }

    /// The indexes installed, with the products that use each.
    pub fn indexes(&self) -> Vec<(KeyedArrangement, Vec<String>)> {
        let mut out: Vec<_> = self
            .indexes
            .keys()
            .map(|k| {
                let users = self
                    .products
                    .iter()
                    .filter(|p| p.indexes.contains(k))
                    .map(|p| p.plan.name.clone())
                    .collect();
                (k.clone(), users)
            })
            .collect();
        out.sort();
        out
    }

    /// Adds the products of `plan` (one product file, or several merged), installing the
    /// sources and indexes they need that are not installed yet. `writer` gives each product's
    /// writer. Returns the sources installed now (the job starts reading them).
    pub fn install(
        &mut self,
        worker: &mut Worker,
        plan: Plan,
        mut writer: impl FnMut(&ProductPlan) -> anyhow::Result<SharedWriter>,
        failure: &Failure,
    ) -> anyhow::Result<Vec<SourceId>> {
        // Everything that can fail comes first, so that a failed install changes nothing.
        let writers = plan
            .products
            .iter()
            .map(&mut writer)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let first = self.plan.products.len();
        crate::plan::merge(&mut self.plan, plan, crate::plan::Sharing::Running)?;
        let mut new_sources = Vec::new();
        // Products of one shape installed together share one dataflow.
        let mut groups: Vec<Vec<Member>> = Vec::new();
        for (i, writer) in (first..self.plan.products.len()).zip(writers) {
            let product = self.plan.products[i].clone();
            let tree = Rc::new(Tree::of(&self.plan, &product));
            let sources = tree.sources();
            for &s in &sources {
                if !self.sources.contains_key(&s) {
                    self.install_source(worker, s);
                    new_sources.push(s);
                }
            }
            let mut indexes: Vec<KeyedArrangement> = Vec::new();
            for finder in tree.finders() {
                if let Finder::ByIndex(index) = finder {
                    if !indexes.contains(index) {
                        indexes.push(index.clone());
                    }
                }
            }
            let shared = indexes
                .iter()
                .filter(|i| self.indexes.contains_key(i))
                .count();
            for index in &indexes {
                if !self.indexes.contains_key(index) {
                    self.install_index(worker, index.clone());
                }
            }
            if worker.index() == 0 {
                tracing::info!(
                    product = %product.name,
                    indexes = indexes.len(),
                    shared_indexes = shared,
                    "building a product over the shared rows and indexes"
                );
            }
            let member = Member {
                plan: product,
                tree,
                sources,
                indexes,
                writer,
            };
            match groups
                .iter_mut()
                .find(|g| g[0].tree.shape_key() == member.tree.shape_key())
            {
                Some(group) => group.push(member),
                None => groups.push(vec![member]),
            }
        }
        for group in groups {
            self.install_products(worker, group, failure.clone());
        }
        Ok(new_sources)
    }

    /// Drops a product's dataflow, and the indexes and sources only it used. Returns the
    /// sources dropped (the job stops reading them).
    pub fn remove(&mut self, worker: &mut Worker, name: &str) -> anyhow::Result<Vec<SourceId>> {
        let at = self
            .products
            .iter()
            .position(|p| p.plan.name == name)
            .ok_or_else(|| anyhow::anyhow!("no product {name} runs"))?;
        let mut product = self.products.remove(at);
        // Its sink writes nothing more; the dataflow goes with the last product sharing it.
        product.sink.removed.set(true);
        product.held = None;
        let mut shared = product.shared.borrow_mut();
        if !product.loaded {
            shared.member_loaded(worker.peers());
        }
        shared.live -= 1;
        if shared.live == 0 {
            worker.drop_dataflow(shared.dataflow);
        }
        drop(shared);
        self.plan.products.retain(|p| p.name != name);
        let used: BTreeSet<&KeyedArrangement> =
            self.products.iter().flat_map(|p| &p.indexes).collect();
        let unused: Vec<KeyedArrangement> = self
            .indexes
            .keys()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect();
        for k in unused {
            if let Some(index) = self.indexes.remove(&k) {
                worker.drop_dataflow(index.dataflow);
            }
        }
        let used = self.plan.used_sources();
        let unused: Vec<SourceId> = self
            .sources
            .keys()
            .filter(|s| !used.contains(s))
            .copied()
            .collect();
        for s in &unused {
            if let Some(source) = self.sources.remove(s) {
                worker.drop_dataflow(source.dataflow);
            }
        }
        Ok(unused)
    }

    /// The declaration and the input of an installed source.
    pub fn source(&mut self, source: SourceId) -> Option<(&SourcePlan, &mut SourceInput)> {
        let input = &mut self.sources.get_mut(&source)?.input;
        Some((&self.plan.sources[source], input))
    }

    /// The time the inputs are at.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Moves every input to `time`, and lets the shared traces forget distinctions before it
    /// (a product installed later starts from their state then), at most once every
    /// [`COMPACT_EVERY`] units of time.
    pub fn advance_to(&mut self, time: Time) {
        if time <= self.time {
            return;
        }
        self.time = time;
        for source in self.sources.values_mut() {
            source.input.advance_to(time);
        }
        if time >= self.compacted + COMPACT_EVERY {
            self.compacted = time;
            for source in self.sources.values_mut() {
                compact(&mut source.trace, time);
            }
            for index in self.indexes.values_mut() {
                compact(&mut index.trace, time);
            }
        }
        for product in self.products.iter_mut() {
            product.advance_to(time);
        }
    }

    /// Closes every source input (the job stops reading): the dataflows drain and complete.
    /// A product this worker has not caught up with is abandoned.
    pub fn close_inputs(&mut self) {
        self.sources.clear();
        self.indexes.clear();
        for product in self.products.iter_mut() {
            if !product.caught_up {
                product.abandon();
            }
        }
    }

    /// Whether every source's (and index's) arrangement has taken the updates of times before
    /// `time`: what the epochs' backpressure waits for.
    pub fn computed_past(&self, time: &Time) -> bool {
        self.sources.values().all(|s| !s.computed.less_equal(time))
            && self.indexes.values().all(|i| !i.computed.less_equal(time))
    }

    /// The earliest time whose documents some product may still write (every product has
    /// written the output of the times before it, and started no document it has not written).
    pub fn written_frontier(&self) -> Time {
        self.products
            .iter()
            .filter_map(|p| p.written.with_frontier(|f| f.first().copied()))
            .min()
            .unwrap_or(Time::MAX)
    }

    /// Whether every product has written everything (after the inputs closed).
    pub fn all_written(&self) -> bool {
        self.products.iter().all(|p| p.written.done())
    }

    fn install_source(&mut self, worker: &mut Worker, id: SourceId) {
        let source = &self.plan.sources[id];
        let (name, key) = (source.name.clone(), source.key.clone());
        let dataflow = worker.next_dataflow_index();
        let computed = ProbeHandle::new();
        let (mut input, trace) = worker.dataflow_named(&format!("Source({name})"), |scope| {
            let mut input = SourceInput::new();
            let rows = arrange_rows(input.to_stream(scope), &name, key, RowGauge::new(&name));
            rows.stream.clone().probe_with(&computed);
            (input, rows.trace)
        });
        input.advance_to(self.time);
        self.sources.insert(
            id,
            InstalledSource {
                dataflow,
                input,
                trace,
                computed,
            },
        );
    }

    fn install_index(&mut self, worker: &mut Worker, id: KeyedArrangement) {
        let name = format!("{}{:?}", self.plan.sources[id.source].name, id.columns);
        let rows = &mut self
            .sources
            .get_mut(&id.source)
            .expect("a source is installed before its indexes")
            .trace;
        let columns = id.columns.clone();
        let dataflow = worker.next_dataflow_index();
        let computed = ProbeHandle::new();
        let trace = worker.dataflow_named(&format!("Index({name})"), |scope| {
            let rows = rows.import_named(scope, &format!("Rows({name})"));
            let index = arrange_index(rows, columns, &format!("Index({name})"));
            index.stream.clone().probe_with(&computed);
            index.trace
        });
        self.indexes.insert(
            id,
            InstalledIndex {
                dataflow,
                trace,
                computed,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    /// Installs one dataflow for `group`, products of one shape.
    fn install_products(&mut self, worker: &mut Worker, group: Vec<Member>, failure: Failure) {
        let dataflow = worker.next_dataflow_index();
        let controls: Vec<Rc<SinkControl>> = group.iter().map(|_| Rc::default()).collect();
        let members = group
            .iter()
            .zip(&controls)
            .map(|(m, control)| SinkMember {
                tree: m.tree.clone(),
                writer: m.writer.clone(),
                control: control.clone(),
            })
            .collect();
        let name = match group.len() {
            1 => format!("Product({})", group[0].plan.name),
            n => format!("Products({} and {} more)", group[0].plan.name, n - 1),
        };
        let budget = self.budget.clone();
        let handles = worker.dataflow_named(&name, |scope| {
            let mut imports = Imports {
                scope,
                sources: &mut self.sources,
                indexes: &mut self.indexes,
                rows: HashMap::new(),
                imported: HashMap::new(),
            };
            product::build(scope, members, &mut imports, failure, budget)
        });
        let product::ProductDataflow {
            mut control,
            held,
            written,
        } = handles;
        control.advance_to(self.time);
        let shared = Rc::new(RefCell::new(SharedDataflow {
            dataflow,
            control: Some(control),
            caught_up_sent: false,
            members: group.len(),
            loaded: 0,
            live: group.len(),
        }));
        for ((member, mut held), sink) in group.into_iter().zip(held).zip(controls) {
            held.advance_to(self.time);
            self.products.push(InstalledProduct {
                plan: member.plan,
                shared: shared.clone(),
                sources: member.sources,
                indexes: member.indexes,
                held: Some(held),
                caught_up: false,
                loaded: false,
                written: written.clone(),
                sink,
            });
        }
    }
}

/// A product about to be installed.
struct Member {
    plan: ProductPlan,
    tree: Rc<Tree>,
    sources: BTreeSet<SourceId>,
    indexes: Vec<KeyedArrangement>,
    writer: SharedWriter,
}

/// The shared traces a product's dataflow imports, each once.
struct Imports<'a, 's> {
    scope: Scope<'s, Time>,
    sources: &'a mut HashMap<SourceId, InstalledSource>,
    indexes: &'a mut HashMap<KeyedArrangement, InstalledIndex>,
    rows: HashMap<SourceId, Rows<'s>>,
    imported: HashMap<KeyedArrangement, Index<'s>>,
}

impl<'s> Arrangements<'s> for Imports<'_, 's> {
    fn rows(&mut self, source: SourceId) -> Rows<'s> {
        let (scope, sources) = (self.scope, &mut self.sources);
        self.rows
            .entry(source)
            .or_insert_with(|| {
                sources
                    .get_mut(&source)
                    .expect("a source is installed before the products that read it")
                    .trace
                    .import_named(scope, "ImportRows")
            })
            .clone()
    }

    fn index(&mut self, index: &KeyedArrangement) -> Index<'s> {
        let (scope, indexes) = (self.scope, &mut self.indexes);
        self.imported
            .entry(index.clone())
            .or_insert_with(|| {
                indexes
                    .get_mut(index)
                    .expect("an index is installed before the products that use it")
                    .trace
                    .import_named(scope, "ImportIndex")
            })
            .clone()
    }
}

/// Lets a shared trace compact up to `time`, but never past what it has completed: a product
/// that imports it later reads it at times from its upper on.
/// Times (milliseconds of the worker's clock, once it runs) between two compactions of the
/// shared traces. An idle worker's time follows the clock, and each compaction reads every
/// batch's upper: done at every millisecond it took 40% of a waiting worker's CPU at L.
const COMPACT_EVERY: Time = 100;

fn compact<Tr: TraceReader<Time = Time>>(trace: &mut Tr, time: Time) {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let frontier: Vec<Time> = upper.elements().iter().map(|t| (*t).min(time)).collect();
    trace.set_logical_compaction(AntichainRef::new(&frontier));
    trace.set_physical_compaction(AntichainRef::new(&frontier));
}

/// This worker's rows of a source, in the `source_rows` gauge; taken back out when the source
/// is dropped.
struct RowGauge {
    gauge: prometheus_client::metrics::gauge::Gauge,
    held: i64,
}

impl RowGauge {
    fn new(source: &str) -> Self {
        RowGauge {
            gauge: crate::runtime::metrics::metrics()
                .source_rows
                .get_or_create(&crate::runtime::metrics::source(source))
                .clone(),
            held: 0,
        }
    }
}

impl RowCount for RowGauge {
    fn changed(&mut self, by: i64) {
        self.gauge.inc_by(by);
        self.held += by;
    }
}

impl Drop for RowGauge {
    fn drop(&mut self) {
        self.gauge.dec_by(self.held);
    }
}
