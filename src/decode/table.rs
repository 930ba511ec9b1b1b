//! A source's current rows after a sequence of decoded changes, in memory: what the upsert
//! operator computes in the dataflow, for the tools and tests that replay a topic (the
//! benchmarks' replays and exports, the broker-free tests). One place says what a change does.

use std::collections::BTreeMap;

use super::Change;
use crate::row::Row;

/// Rows by primary key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    rows: BTreeMap<Row, Row>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Applies a change: the key's row replaced, the key deleted, or every row gone. Returns
    /// the row the key had (of an upsert or a delete).
    pub fn apply(&mut self, change: Change) -> Option<Row> {
        match change {
            Change::Upsert { key, row } => self.rows.insert(key, row),
            Change::Delete { key } => self.rows.remove(&key),
            Change::Truncate => {
                self.rows.clear();
                None
            }
        }
    }

    pub fn get(&self, key: &Row) -> Option<&Row> {
        self.rows.get(key)
    }

    /// The rows, by key.
    pub fn rows(&self) -> impl Iterator<Item = (&Row, &Row)> {
        self.rows.iter()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
