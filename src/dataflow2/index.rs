//! An index of a source's rows by some of their columns: the hash of those columns' values maps
//! to the hash of each such row's primary key. Relations find a parent's children (and a
//! child's parents) through it; the rows themselves stay in the source's trace only. A row with
//! a null in those columns is not indexed: null never joins.
//!
//! Keys are hashes, so a lookup may find a row whose columns only hash alike; whoever reads the
//! row compares the columns themselves.

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ValBatcher;
use timely::dataflow::channels::pact::Exchange;

use super::rows::Rows;
use super::Time;
use crate::row::layout::HashSpine;
use crate::row::{hash, RowRef};

/// Primary-key hashes by the hash of other columns.
pub type IndexTrace = TraceAgent<HashSpine>;
/// An index, in a dataflow.
pub type Index<'s> = Arranged<'s, IndexTrace>;

/// The hash of the values of `columns` of `row` (the key of an index on those columns, and of a
/// link from a row on them); `None` when one of them is null.
pub fn columns_hash(row: RowRef<'_>, columns: &[usize], scratch: &mut Vec<u8>) -> Option<u64> {
    scratch.clear();
    row.project(columns, scratch).then(|| hash(scratch))
}

/// Indexes `rows` by `columns`.
pub fn arrange_index<'s>(rows: Rows<'s>, columns: Vec<usize>, name: &str) -> Index<'s> {
    let mut scratch = Vec::new();
    let entries = rows.flat_map_ref(move |key: &u64, row: RowRef<'_>| {
        columns_hash(row, &columns, &mut scratch).map(|link| (link, *key))
    });
    arrange_core::<_, _, ValBatcher<u64, u64, Time, isize>, _>(
        entries.inner,
        Exchange::new(|((link, _), _, _): &((u64, u64), Time, isize)| *link),
        name,
        ValBatcher::new,
    )
}
