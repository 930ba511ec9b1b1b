//! The timely dataflows of a job: per source an input, an upsert state and an arrangement by
//! primary key; shared arrangements by link columns; per distinct nested relation its lists per
//! link key; per product the root's documents and a sink.
//! [`catalog::Catalog`] installs and drops them; the caller feeds the inputs (from Kafka or from
//! memory) and steps the worker.

pub mod catalog;
pub mod epoch;
pub mod nest;
pub mod sink;
pub mod upsert;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;

use upsert::SourceEvent;

/// A source's input handle.
pub type SourceInput = InputHandle<Time, CapacityContainerBuilder<Vec<SourceEvent>>>;
/// What a product's output topic held when it started: `Side::Held(key, document JSON)`.
pub type EmittedInput = InputHandle<Time, CapacityContainerBuilder<Vec<sink::Side>>>;
/// Held by every worker until it has caught up with its sources. Then it sends, at the time it
/// caught up, one message addressed to each worker (the value is the addressee) and drops the
/// handle. The sinks write nothing before every worker has dropped it and every time before the
/// latest of those messages is complete: that is when all of the sources' start-time contents
/// are in the documents.
pub type HoldInput = InputHandle<Time, CapacityContainerBuilder<Vec<sink::Side>>>;

/// Logical time: each worker stamps its input with a monotone millisecond counter, one time per
/// group of records ([`epoch::Epochs`]).
pub type Time = u64;
