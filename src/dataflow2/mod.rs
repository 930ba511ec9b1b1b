//! The engine's dataflows (being built; replaces `crate::dataflow` when complete).

pub mod assemble;
pub mod drive;
pub mod find;
pub mod index;
pub mod lookup;
pub mod product;
pub mod propagate;
pub mod rows;
pub mod sink;
pub mod tree;

/// Logical time: each worker stamps its input with a monotone millisecond counter.
pub type Time = u64;

#[cfg(test)]
mod tests;
