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

/// Logical time: each worker stamps its input batches with a monotone millisecond counter.
pub type Time = u64;

/// The handles a worker drives its dataflow with.
pub struct Handles {
    /// One input per source of the plan, in plan order.
    pub inputs: Vec<SourceInput>,
    /// Passed a time once every product has written all output for earlier times.
    pub probe: ProbeHandle<Time>,
    /// Shared arrangements (source, key columns) the products use.
    pub arrangements: Vec<(usize, Vec<usize>)>,
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
    let probe = ProbeHandle::new();
    for (i, product) in plan.products.iter().enumerate() {
        let docs = renderer.render(&product.root);
        let source = &plan.sources[product.root.source];
        let key_names = source
            .key
            .iter()
            .map(|&k| source.columns[k].name.clone())
            .collect();
        sink::sink(
            docs,
            &product.name,
            key_names,
            product.shape(),
            writer(i),
            failure.clone(),
        )
        .probe_with(&probe);
    }
    Handles {
        inputs,
        probe,
        arrangements: renderer.arrangements(),
    }
}
