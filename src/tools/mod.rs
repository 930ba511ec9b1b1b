//! The tools around the engine, each a `denorm` subcommand: [`check`] product files (and their
//! topics), [`explain`] a plan, [`gen`]erate Debezium test data, run the [`demo`], and [`bench`]
//! (the measurements of `scripts/bench.sh`). The engine does not depend on them.

pub mod bench;
pub mod check;
pub mod demo;
pub mod explain;
pub mod gen;
