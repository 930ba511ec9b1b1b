//! What will run: the product file checked against itself and lowered to indices. Every name is
//! resolved here (sources, columns, fields, relations), so the dataflow and the reference
//! evaluator never look anything up by string. A mistake is an error naming the file, line and
//! column, with the line shown and the names that would have been valid.
//!
//! The stages, in the order data flows: [`spec`] (the file as written) → [`lower`] (checked and
//! resolved, one file) → [`merge`] (the files of one job) → the plan's [`types`]; [`load`] reads
//! files and folders through them; [`lint`] warns of likely mistakes.

pub mod lint;
pub mod load;
pub mod lower;
pub mod merge;
pub mod spec;
pub mod suggest;
pub mod types;

pub use load::{load, load_all, load_each, parse, product_files};
pub use lower::{lower, SpecError};
pub use merge::{merge, Sharing};
pub use types::*;

#[cfg(test)]
mod tests;
