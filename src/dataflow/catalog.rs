//! The dataflows one worker runs, and the arrangements they share: the catalog installs and drops
//! them as products come and go (in the manner of differential-dataflow's `interactive` server).
//!
//! - One dataflow per source: its input, the upsert state, and its rows arranged by primary key.
//! - One dataflow per shared arrangement of a source by other columns (the columns children link
//!   to their parent on), importing the source's rows.
//! - One dataflow per distinct nested relation (a child node and its subtree, identified by
//!   [`RelationId`]): its items, built from its source's rows and the values of the relations
//!   nested in it (imported), reduced to one list or item per link key. Equal relations of several
//!   parents or products are rendered once.
//! - One dataflow per product, importing the arrangements and relations its root needs, building
//!   its documents and sinking them to its output topic.
//!
//! A product added to a running job is hydrated from the arrangements and relations already in
//! memory; a source, arrangement or relation no product uses any more is dropped. Every worker
//! must install and remove the same products in the same order: the job sequences these commands.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, Scope};
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::worker::Worker;

use super::nest::{link_key, nest, Items, NestSpine, Nested, Renderer};
use super::sink::{self, Control, Failure, SharedWriter};
use super::upsert;
use super::{EmittedInput, HoldInput, SourceInput, Time};
use crate::plan::{
    KeyedArrangement, Node, Plan, ProductPlan, RelationId, SharedRelation, SourceId, SourcePlan,
};
use crate::value::Row;

/// A trace of rows: by primary key (value: the row) or by link columns (value: primary key).
pub type RowTrace = TraceAgent<ValSpine<Row, Row, Time, isize>>;

struct InstalledSource {
    dataflow: usize,
    input: SourceInput,
    trace: RowTrace,
}

struct InstalledKeyed {
    dataflow: usize,
    trace: RowTrace,
}

/// A nested relation's values per link key.
pub type NestTrace = TraceAgent<NestSpine>;

struct InstalledRelation {
    dataflow: usize,
    trace: NestTrace,
}

/// A product's dataflow and the handles the job drives it with.
pub struct InstalledProduct {
    pub plan: ProductPlan,
    dataflow: usize,
    /// Dropped (after one message to every worker) once this worker has caught up with the
    /// product's sources.
    pub hold: Option<HoldInput>,
    /// Fed with what the output topic holds once every worker has caught up, then dropped.
    pub emitted: Option<EmittedInput>,
    /// Done once every worker has dropped its hold.
    pub all_caught_up: ProbeHandle<Time>,
    /// Passes a time once the documents of earlier times are computed.
    pub computed: ProbeHandle<Time>,
    /// Passes a time once the documents of earlier times are written.
    pub written: ProbeHandle<Time>,
    pub control: Control,
    pub sources: BTreeSet<SourceId>,
    keyed: Vec<KeyedArrangement>,
    /// Every nested relation of the product's tree (also those its relations nest).
    relations: Vec<RelationId>,
}

/// The installed dataflows of one worker.
pub struct Catalog {
    /// Every source declared so far (ids are stable) and the installed products.
    pub plan: Plan,
    sources: HashMap<SourceId, InstalledSource>,
    keyed: HashMap<KeyedArrangement, InstalledKeyed>,
    relations: HashMap<RelationId, InstalledRelation>,
    pub products: Vec<InstalledProduct>,
    /// The time the inputs are at; new inputs start there.
    time: Time,
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
            keyed: HashMap::new(),
            relations: HashMap::new(),
            products: Vec::new(),
            time: 0,
        }
    }

    /// The sources with an installed dataflow.
    pub fn installed_sources(&self) -> BTreeSet<SourceId> {
        self.sources.keys().copied().collect()
    }

    /// The shared arrangements installed, with the products that use each.
    pub fn arrangements(&self) -> Vec<(KeyedArrangement, Vec<String>)> {
        let mut out: Vec<_> = self
            .keyed
            .keys()
            .map(|k| {
                let users = self
                    .products
                    .iter()
                    .filter(|p| p.keyed.contains(k))
                    .map(|p| p.plan.name.clone())
                    .collect();
                (k.clone(), users)
            })
            .collect();
        out.sort();
        out
    }

    /// The nested relations installed (each rendered once), with the products that use each.
    pub fn relations(&self) -> Vec<(RelationId, Vec<String>)> {
        let mut out: Vec<_> = self
            .relations
            .keys()
            .map(|r| {
                let users = self
                    .products
                    .iter()
                    .filter(|p| p.relations.contains(r))
                    .map(|p| p.plan.name.clone())
                    .collect();
                (r.clone(), users)
            })
            .collect();
        out.sort();
        out
    }

    /// Adds the products of `plan` (one product file, or several merged), installing the
    /// sources, shared arrangements and nested relations they need that are not installed yet. `writer` gives
    /// each product's writer. Returns the sources installed now (the job starts reading them).
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
        for (i, writer) in (first..self.plan.products.len()).zip(writers) {
            let product = self.plan.products[i].clone();
            let sources: BTreeSet<SourceId> =
                product.root.walk().iter().map(|n| n.source).collect();
            for &s in &sources {
                if !self.sources.contains_key(&s) {
                    self.install_source(worker, s);
                    new_sources.push(s);
                }
            }
            let keyed = self.plan.keyed_arrangements(&product);
            for k in &keyed {
                if !self.keyed.contains_key(k) {
                    self.install_keyed(worker, k.clone());
                }
            }
            let relations = self.plan.relations(&product);
            let mut shared = 0;
            for relation in &relations {
                if self.relations.contains_key(&relation.id) {
                    shared += 1;
                } else {
                    self.install_relation(worker, relation);
                }
            }
            if worker.index() == 0 {
                tracing::info!(
                    product = %product.name,
                    relations = relations.len(),
                    shared_relations = shared,
                    "rendering a product: nested relations already rendered are imported"
                );
            }
            let relations = relations.into_iter().map(|r| r.id).collect();
            self.install_product(
                worker,
                product,
                sources,
                keyed,
                relations,
                writer,
                failure.clone(),
            );
        }
        Ok(new_sources)
    }

    /// Drops a product's dataflow, and the relations, arrangements and sources only it used.
    /// Returns the sources dropped (the job stops reading them).
    pub fn remove(&mut self, worker: &mut Worker, name: &str) -> anyhow::Result<Vec<SourceId>> {
        let at = self
            .products
            .iter()
            .position(|p| p.plan.name == name)
            .ok_or_else(|| anyhow::anyhow!("no product {name} runs"))?;
        let product = self.products.remove(at);
        worker.drop_dataflow(product.dataflow);
        self.plan.products.retain(|p| p.name != name);
        let used_relations: BTreeSet<&RelationId> =
            self.products.iter().flat_map(|p| &p.relations).collect();
        let mut unused: Vec<RelationId> = self
            .relations
            .keys()
            .filter(|r| !used_relations.contains(r))
            .cloned()
            .collect();
        unused.sort();
        for r in unused {
            if let Some(relation) = self.relations.remove(&r) {
                worker.drop_dataflow(relation.dataflow);
            }
        }
        let used_keyed: BTreeSet<&KeyedArrangement> =
            self.products.iter().flat_map(|p| &p.keyed).collect();
        let unused: Vec<KeyedArrangement> = self
            .keyed
            .keys()
            .filter(|k| !used_keyed.contains(k))
            .cloned()
            .collect();
        for k in unused {
            if let Some(keyed) = self.keyed.remove(&k) {
                worker.drop_dataflow(keyed.dataflow);
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

    /// Moves every input to `time`, and lets the shared traces forget distinctions before it
    /// (a product installed later starts from their state at `time`).
    pub fn advance_to(&mut self, time: Time) {
        if time <= self.time {
            return;
        }
        self.time = time;
        for source in self.sources.values_mut() {
            source.input.advance_to(time);
            compact(&mut source.trace, time);
        }
        for keyed in self.keyed.values_mut() {
            compact(&mut keyed.trace, time);
        }
        for relation in self.relations.values_mut() {
            compact(&mut relation.trace, time);
        }
    }

    /// Closes every source input (the job stops reading): the dataflows drain and complete.
    pub fn close_inputs(&mut self) {
        // The dataflows stay installed (they drain and complete); only the inputs and the
        // catalog's trace handles go.
        self.sources.clear();
        self.keyed.clear();
        self.relations.clear();
    }

    /// Whether every product has computed its documents for times before `time`.
    pub fn computed_past(&self, time: &Time) -> bool {
        self.products.iter().all(|p| !p.computed.less_equal(time))
    }

    /// The earliest time whose documents some product may still write (every product has
    /// written the output of the times before it).
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
        let name = self.plan.sources[id].name.clone();
        let dataflow = worker.next_dataflow_index();
        let (mut input, trace) = worker.dataflow_named(&format!("Source({name})"), |scope| {
            let mut input = SourceInput::new();
            let rows = upsert::upsert(input.to_stream(scope), &name).as_collection();
            let arranged = rows.arrange_by_key_named(&format!("Rows({name})"));
            (input, arranged.trace)
        });
        input.advance_to(self.time);
        self.sources.insert(
            id,
            InstalledSource {
                dataflow,
                input,
                trace,
            },
        );
    }

    fn install_keyed(&mut self, worker: &mut Worker, id: KeyedArrangement) {
        let source = &self.plan.sources[id.source];
        let name = format!("{}{:?}", source.name, id.columns);
        let base = &mut self
            .sources
            .get_mut(&id.source)
            .expect("a source is installed before its arrangements")
            .trace;
        let columns = id.columns.clone();
        let dataflow = worker.next_dataflow_index();
        let trace = worker.dataflow_named(&format!("Keyed({name})"), |scope| {
            base.import_named(scope, &format!("Rows({name})"))
                .flat_map_ref(move |pk: &Row, row: &Row| {
                    link_key(row, &columns).map(|k| (k, pk.clone()))
                })
                .arrange_by_key_named(&format!("Keyed({name})"))
                .trace
        });
        self.keyed.insert(id, InstalledKeyed { dataflow, trace });
    }

    /// Renders a nested relation once, in a dataflow of its own that keeps its values' trace;
    /// the relations nested in it are installed before it.
    fn install_relation(&mut self, worker: &mut Worker, relation: &SharedRelation) {
        let node = &relation.node;
        let dataflow = worker.next_dataflow_index();
        let mut imports = self.imports();
        let trace = worker.dataflow_named(&format!("Relation({})", node.path), |scope| {
            let items = imports.items(scope, node);
            nest(node, items).trace
        });
        self.relations
            .insert(relation.id.clone(), InstalledRelation { dataflow, trace });
    }

    /// What a node's dataflow imports its arrangements and relations from.
    fn imports(&mut self) -> Imports<'_> {
        Imports {
            keys: self.plan.sources.iter().map(|s| s.key.clone()).collect(),
            sources: &mut self.sources,
            keyed: &mut self.keyed,
            relations: &mut self.relations,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install_product(
        &mut self,
        worker: &mut Worker,
        product: ProductPlan,
        sources: BTreeSet<SourceId>,
        keyed: Vec<KeyedArrangement>,
        relations: Vec<RelationId>,
        writer: SharedWriter,
        failure: Failure,
    ) {
        let dataflow = worker.next_dataflow_index();
        let computed = ProbeHandle::new();
        let written = ProbeHandle::new();
        let control: Control = Rc::default();
        let root = &self.plan.sources[product.root.source];
        let key_names: Vec<String> = root
            .key
            .iter()
            .map(|&k| root.columns[k].name.clone())
            .collect();
        let mut imports = self.imports();
        let (hold, emitted, all_caught_up) =
            worker.dataflow_named(&format!("Product({})", product.name), |scope| {
                let docs = imports.items(scope, &product.root).probe_with(&computed);
                let mut hold = HoldInput::new();
                let (all_caught_up, hold_stream) = hold.to_stream(scope).probe();
                let mut emitted = EmittedInput::new();
                let side = hold_stream.concat(emitted.to_stream(scope));
                sink::sink(
                    docs,
                    side,
                    &product.name,
                    key_names,
                    product.shape(),
                    writer,
                    failure,
                    control.clone(),
                )
                .probe_with(&written);
                (hold, emitted, all_caught_up)
            });
        self.products.push(InstalledProduct {
            plan: product,
            dataflow,
            hold: Some(hold),
            emitted: Some(emitted),
            all_caught_up,
            computed,
            written,
            control,
            sources,
            keyed,
            relations,
        });
    }
}

/// The installed traces a node's dataflow imports.
struct Imports<'a> {
    sources: &'a mut HashMap<SourceId, InstalledSource>,
    keyed: &'a mut HashMap<KeyedArrangement, InstalledKeyed>,
    relations: &'a mut HashMap<RelationId, InstalledRelation>,
    /// Each source's primary key columns.
    keys: Vec<Vec<usize>>,
}

impl Imports<'_> {
    /// Imports into `scope` what `node` is built from (its source's rows, its source arranged by
    /// the columns its children link on, its children's values) and renders its items.
    fn items<'s>(&mut self, scope: Scope<'s, Time>, node: &Node) -> Items<'s> {
        let rows = &mut self
            .sources
            .get_mut(&node.source)
            .expect("a source is installed before the nodes that read it")
            .trace;
        let by_key = HashMap::from([(node.source, rows.import_named(scope, "ImportRows"))]);
        let mut keyed = HashMap::new();
        let mut children: Vec<Nested<'s>> = Vec::new();
        for child in &node.children {
            let link = child.link.as_ref().expect("children have links");
            let id = KeyedArrangement {
                source: node.source,
                columns: link.parent_columns.clone(),
            };
            if link.parent_columns != self.keys[node.source] && !keyed.contains_key(&id) {
                let trace = &mut self
                    .keyed
                    .get_mut(&id)
                    .expect("an arrangement is installed before the nodes that join on it")
                    .trace;
                let imported = trace.import_named(scope, "ImportKeyed");
                keyed.insert(id, imported);
            }
            let id = RelationId::of(child).expect("children have links");
            let trace = &mut self
                .relations
                .get_mut(&id)
                .expect("a relation is installed before the nodes that nest it")
                .trace;
            children.push(trace.import_named(scope, &format!("ImportRelation({})", child.path)));
        }
        Renderer::new(by_key, keyed, self.keys.clone()).items(node, children)
    }
}

/// Lets a shared trace compact up to `time`, but never past what it has completed: a product
/// that imports it later joins against it, and a join needs the trace's compaction frontier not
/// to be ahead of its upper frontier.
fn compact<Tr: TraceReader<Time = Time>>(trace: &mut Tr, time: Time) {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let frontier: Vec<Time> = upper.elements().iter().map(|t| (*t).min(time)).collect();
    trace.set_logical_compaction(AntichainRef::new(&frontier));
    trace.set_physical_compaction(AntichainRef::new(&frontier));
}
