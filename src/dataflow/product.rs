//! The dataflow of one product, or of several of one shape, wired from its tree: which roots
//! are dirty ([`propagate`]), the driver that starts their documents ([`drive`]), a finding
//! stage per nested node ([`find`]) whose parts and wants fan out by port, and the sink that
//! builds and writes each product's documents ([`sink`]). It reads the sources' rows and indexes through [`Arrangements`]; it keeps no state
//! of its own but the sink's hashes and what is in flight.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::vec::Partition;
use timely::dataflow::operators::{Concat, Concatenate, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Scope};

use super::drive::{drive, Budget, DriverInput, Readiness};
use super::find::{find, Found, Want};
use super::propagate::{propagate, Arrangements};
use super::sink::{sink, Failure, Held, SinkMember};
use super::tree::Finder;
use super::Time;

/// The job's messages to a product's drivers.
pub type ReadinessInput = InputHandle<Time, CapacityContainerBuilder<Vec<Readiness>>>;
/// What the output topic held, to a product's sinks.
pub type HeldInput = InputHandle<Time, CapacityContainerBuilder<Vec<Held>>>;

/// The handles a dataflow of products of one shape is driven and watched with.
pub struct ProductDataflow {
    pub control: ReadinessInput,
    /// Each member's input of what its output topic held.
    pub held: Vec<HeldInput>,
    /// Passes a time once the documents started at it are written.
    pub written: ProbeHandle<Time>,
}

/// Builds the dataflow of `members`, products of one shape (equal [`Tree::shape_key`]s): one
/// propagation, driver and finding of rows for all of them, and a sink that assembles and
/// writes each member's documents.
pub fn build<'s>(
    scope: Scope<'s, Time>,
    members: Vec<SinkMember>,
    arrangements: &mut impl Arrangements<'s>,
    failure: Failure,
    budget: Budget,
) -> ProductDataflow {
    let tree = members[0].tree.clone();
    debug_assert!(members
        .iter()
        .all(|m| m.tree.shape_key() == tree.shape_key()));
    let mut control = ReadinessInput::new();
    let control_stream = control.to_stream(scope);
    let mut held = Vec::new();
    let mut held_streams = Vec::new();
    for member in 0..members.len() {
        let mut input = HeldInput::new();
        held_streams.push(input.to_stream(scope).map(move |h| (member, h)));
        held.push(input);
    }
    let held_stream = scope.concatenate(held_streams);
    let trees: Vec<&super::tree::Tree> = members.iter().map(|m| &*m.tree).collect();
    let used = super::tree::Tree::used_columns(&trees);
    let dirty = propagate(&tree, &used, &control_stream, arrangements);
    let driver_input = control_stream
        .map(DriverInput::Readiness)
        .concat(dirty.map(DriverInput::Dirty));
    let written = ProbeHandle::new();
    let root_rows = arrangements.rows(tree.root().node.source);
    let started = drive(
        tree.clone(),
        driver_input,
        root_rows,
        written.clone(),
        budget,
    );
    // Each node's found rows: its parts go to the sink, its wants to its children's stages.
    let mut to_sink = Vec::new();
    let mut stages = vec![(0, started)];
    while let Some((node, found)) = stages.pop() {
        let children = tree.nodes[node].children.clone();
        let ports_tree = tree.clone();
        let mut ports = found
            .partition(1 + children.len() as u64, move |f: Found| {
                (f.port(&ports_tree), f)
            })
            .into_iter();
        to_sink.push(ports.next().expect("the sink's port"));
        for (child, wants) in children.into_iter().zip(ports) {
            let wants = wants.flat_map(|f| match f {
                Found::Want(want) => Some::<Want>(want),
                _ => None,
            });
            let tree_node = &tree.nodes[child];
            let rows = arrangements.rows(tree_node.node.source);
            let index = match tree_node.find.as_ref().expect("nested nodes have links") {
                Finder::ByKey(_) => None,
                Finder::ByIndex(index) => Some(arrangements.index(index)),
            };
            stages.push((child, find(tree.clone(), child, wants, rows, index)));
        }
    }
    let parts = scope.concatenate(to_sink);
    sink(members, parts, held_stream, failure).probe_with(&written);
    ProductDataflow {
        control,
        held,
        written,
    }
}
