//! How arrangements hold rows: a batch keeps all of its rows' bytes in one buffer, with an
//! offset per row (32-bit while they fit), instead of a heap allocation per row. The traces of
//! the engine key rows by a 64-bit hash ([`super::hash`]), so keys are plain integers.

use std::rc::Rc;

use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, OrdValBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{BatchContainer, OffsetList, ValSpine};
use timely::container::PushInto;

use super::{Row, RowRef};

/// Rows, their bytes one after another.
pub struct RowContainer {
    bytes: Vec<u8>,
    /// Where each row ends (the first starts at 0).
    ends: OffsetList,
}

impl RowContainer {
    fn push_bytes(&mut self, row: &[u8]) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
    }

    /// Bytes the container holds (rows and offsets), for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.bytes.capacity() + 4 * self.ends.smol.capacity() + 8 * self.ends.chonk.capacity()
    }
}

impl PushInto<Row> for RowContainer {
    fn push_into(&mut self, row: Row) {
        self.push_bytes(row.bytes());
    }
}

impl PushInto<&Row> for RowContainer {
    fn push_into(&mut self, row: &Row) {
        self.push_bytes(row.bytes());
    }
}

impl<'a> PushInto<RowRef<'a>> for RowContainer {
    fn push_into(&mut self, row: RowRef<'a>) {
        self.push_bytes(row.bytes());
    }
}

impl BatchContainer for RowContainer {
    type Owned = Row;
    type ReadItem<'a> = RowRef<'a>;

    fn into_owned<'a>(item: RowRef<'a>) -> Row {
        item.to_owned()
    }

    fn push_ref(&mut self, item: RowRef<'_>) {
        self.push_bytes(item.bytes());
    }

    fn push_own(&mut self, item: &Row) {
        self.push_bytes(item.bytes());
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn with_capacity(size: usize) -> Self {
        RowContainer {
            // About 64 bytes a row; the buffer grows if they are longer.
            bytes: Vec::with_capacity(size * 64),
            ends: OffsetList::with_capacity(size),
        }
    }

    fn merge_capacity(a: &Self, b: &Self) -> Self {
        RowContainer {
            bytes: Vec::with_capacity(a.bytes.len() + b.bytes.len()),
            ends: OffsetList::with_capacity(a.ends.len() + b.ends.len()),
        }
    }

    fn reborrow<'b, 'a: 'b>(item: RowRef<'a>) -> RowRef<'b> {
        item
    }

    fn index(&self, index: usize) -> RowRef<'_> {
        let start = if index == 0 {
            0
        } else {
            self.ends.index(index - 1)
        };
        RowRef::new(&self.bytes[start..self.ends.index(index)])
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Logical time of the engine's dataflows (see [`crate::dataflow::Time`]).
pub type Time = u64;

/// The layout of a trace of rows keyed by a hash: `(hash, row)` updates.
pub type RowLayout = (Vec<u64>, RowContainer, Vec<Time>, Vec<isize>, OffsetList);
/// A batch of rows keyed by a hash.
pub type RowBatch = OrdValBatch<RowLayout>;
/// Builds a [`RowBatch`] from `(hash, row)` updates sorted by hash, then row, then time.
pub type RowBuilder = OrdValBuilder<RowLayout, Vec<((u64, Row), Time, isize)>>;
/// A trace of rows keyed by a hash (a source's rows by the hash of their primary key).
pub type RowSpine = Spine<Rc<RowBatch>>;
/// A trace of hashes keyed by hashes (a source's primary-key hashes by the hash of other
/// columns: an index).
pub type HashSpine = ValSpine<u64, u64, Time, isize>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use differential_dataflow::trace::{Builder, Cursor, Navigable};

    #[test]
    fn a_batch_of_rows_reads_back_in_order() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| Row::from_values(&[Value::Int(i), Value::str(&"s".repeat(i as usize % 7))]))
            .collect();
        let mut updates: Vec<((u64, Row), Time, isize)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((i as u64 / 3, r.clone()), 0, 1))
            .collect();
        updates.sort();
        let mut builder = RowBuilder::default();
        builder.push(&mut updates.clone());
        let batch = builder.done().expect("updates");
        let mut cursor = batch.cursor();
        let mut read = Vec::new();
        while let Some(key) = cursor.get_key(&batch) {
            while let Some(val) = cursor.get_val(&batch) {
                let mut count = 0;
                cursor.map_times(&batch, |_, d| count += *d);
                read.push(((*key, val.to_owned()), 0, count));
                cursor.step_val(&batch);
            }
            cursor.step_key(&batch);
        }
        assert_eq!(read, updates);
    }
}
