//! The engine's timely dataflows, one operator per file. Per source, the trace of its current
//! rows ([`rows`]); per index of a source, the hashes of its rows' primary keys by other columns
//! ([`index`]); per product, a dataflow that holds no rows of its own ([`product`]): which roots
//! a change dirtied ([`propagate`]), when to build their documents ([`drive`]), their rows looked
//! up level by level ([`find`], [`lookup`]), and the sink that assembles ([`assemble`]) and writes
//! what changed ([`sink`]). [`catalog::Catalog`] installs and drops them; the caller feeds the
//! inputs (from Kafka or from memory) and steps the worker.

pub mod assemble;
pub mod catalog;
pub mod drive;
pub mod find;
pub mod index;
pub mod item;
pub mod lookup;
pub mod product;
pub mod propagate;
pub mod rows;
pub mod sink;
pub mod tree;

/// Logical time: each worker stamps its input with a monotone millisecond counter, one time per
/// group of records ([`crate::runtime::epoch::Epochs`]).
pub type Time = u64;

#[cfg(test)]
mod tests;
