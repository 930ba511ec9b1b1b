//! Builds the timely dataflow of a [`Plan`] in one worker: an input and an upsert state per
//! source, the document tree of each product over shared arrangements, and a sink per product.
//! The caller feeds the inputs (from Kafka or from memory) and steps the worker.

pub mod nest;
pub mod sink;
pub mod upsert;

use differential_dataflow::AsCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle, Scope};

use crate::plan::Plan;
use nest::Renderer;
use sink::{Failure, SharedWriter};
use upsert::SourceEvent;

/// A source's input handle.
pub type SourceInput = InputHandle<Time, CapacityContainerBuilder<Vec<SourceEvent>>>;
/// What a product's output topic held at start: `((key JSON, document JSON), 0, -1)` updates.
pub type EmittedInput = InputHandle<Time, CapacityContainerBuilder<Vec<sink::TextUpdate>>>;
/// Held by every worker until it has caught up with its sources. Then it sends, at the time it
/// caught up, one message addressed to each worker (the value is the addressee) and drops the
/// handle. The sinks write nothing before every worker has dropped it and every time before the
/// latest of those messages is complete: that is when all of the sources' start-time contents
/// are in the documents.
pub type HoldInput = InputHandle<Time, CapacityContainerBuilder<Vec<u64>>>;

/// Logical time: each worker stamps its input batches with a monotone millisecond counter.
pub type Time = u64;

/// The handles a worker drives its dataflow with.
pub struct Handles {
    /// One input per source of the plan, in plan order.
    pub inputs: Vec<SourceInput>,
    /// One input per product: the documents its output topic already holds.
    pub emitted: Vec<EmittedInput>,
    pub hold: HoldInput,
    /// Done once every worker of every process has dropped its hold: all caught up.
    pub all_caught_up: ProbeHandle<Time>,
    /// Passed a time once the documents of every product are computed for earlier times
    /// (upstream of the sinks; for backpressure).
    pub computed: ProbeHandle<Time>,
    /// Passed a time once every product has written all output for earlier times.
    pub written: ProbeHandle<Time>,
}

/// Builds the dataflow for `plan` in `scope`; `writer(i)` gives the writer of product `i`.
pub fn build(
    scope: Scope<'_, Time>,
    plan: &Plan,
    mut writer: impl FnMut(usize) -> SharedWriter,
    failure: Failure,
) -> Handles {
    let mut inputs = Vec::new();
    let mut collections = Vec::new();
    for source in &plan.sources {
        let mut input = InputHandle::new();
        let events = input.to_stream(scope);
        collections.push(upsert::upsert(events, &source.name).as_collection());
        inputs.push(input);
    }
    let mut renderer = Renderer::new(
        collections,
        plan.sources.iter().map(|s| s.name.clone()).collect(),
    );
    let mut hold = HoldInput::new();
    let hold_stream = hold.to_stream(scope);
    let (all_caught_up, hold_stream) = hold_stream.probe();
    let computed = ProbeHandle::new();
    let written = ProbeHandle::new();
    let mut emitted = Vec::new();
    for (i, product) in plan.products.iter().enumerate() {
        let docs = renderer.render(&product.root).probe_with(&computed);
        let source = &plan.sources[product.root.source];
        let key_names = source
            .key
            .iter()
            .map(|&k| source.columns[k].name.clone())
            .collect();
        let mut input = EmittedInput::new();
        let already = input.to_stream(scope).as_collection();
        emitted.push(input);
        sink::sink(
            docs,
            already,
            hold_stream.clone(),
            &product.name,
            key_names,
            product.shape(),
            writer(i),
            failure.clone(),
        )
        .probe_with(&written);
    }
    Handles {
        inputs,
        emitted,
        hold,
        all_caught_up,
        computed,
        written,
    }
}
