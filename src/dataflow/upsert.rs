//! The upsert operator: turns a stream of primary-key upserts, deletes and truncates into a
//! differential collection of `(key, row)`, holding the current row of every key it owns.
//!
//! Events are exchanged by key (a truncate is sent to every worker). At each completed time the
//! operator applies that time's events in arrival order (which, per key, is the partition's offset
//! order) and emits only real differences: a repeated event, a replayed snapshot row equal to the
//! current row, or a delete of an unknown key emits nothing. Retractions come from the state,
//! never from Debezium's `before`.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::Hashable;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::Time;
use crate::value::Row;

/// One decoded source record, as the upsert operator receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceEvent {
    /// `Some(row)`: the key's row is now `row`; `None`: the key is deleted.
    Upsert { key: Row, row: Option<Row> },
    /// Drop every row; one copy is addressed to each worker.
    Truncate { worker: u64 },
}

impl SourceEvent {
    /// Bytes of the decoded rows the event holds (key and row, [`Row::size`]); what it costs in
    /// the dataflow until its time is computed.
    pub fn size(&self) -> usize {
        match self {
            SourceEvent::Upsert { key, row } => key.size() + row.as_ref().map_or(0, Row::size),
            SourceEvent::Truncate { .. } => 0,
        }
    }
}

/// A differential update of a `(key, row)` pair.
pub type RowUpdate = ((Row, Row), Time, isize);

/// Routes an event to the worker that owns its key (truncates to their addressee).
pub fn route(event: &SourceEvent) -> u64 {
    match event {
        SourceEvent::Upsert { key, .. } => key.hashed(),
        SourceEvent::Truncate { worker } => *worker,
    }
}

/// The collection of current `(key, row)` pairs defined by `events`.
pub fn upsert<'s>(
    events: Stream<'s, Time, Vec<SourceEvent>>,
    name: &str,
) -> Stream<'s, Time, Vec<RowUpdate>> {
    events.unary_frontier(
        Exchange::new(route),
        &format!("Upsert({name})"),
        |_cap, _info| {
            let mut state: HashMap<Row, Row> = HashMap::new();
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<SourceEvent>)> = BTreeMap::new();
            let mut updates = Vec::new();
            // This worker's share of the source's rows, in the `source_rows` gauge.
            let mut counted = Counted {
                gauge: crate::metrics::metrics()
                    .source_rows
                    .get_or_create(&crate::metrics::source(name))
                    .clone(),
                held: 0,
            };
            move |(input, frontier), output| {
                // `for_each` keeps each channel's FIFO order, which is offset order per key.
                input.for_each(|cap, data| {
                    let Some(time) = cap.least().copied() else {
                        return;
                    };
                    let entry = pending
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    entry.1.append(data);
                });
                while let Some(entry) = pending.first_entry() {
                    let time = *entry.key();
                    if frontier.less_equal(&time) {
                        break;
                    }
                    let (cap, events) = entry.remove();
                    for event in events {
                        match event {
                            SourceEvent::Upsert {
                                key,
                                row: Some(row),
                            } => match state.insert(key.clone(), row.clone()) {
                                Some(old) if old == row => {}
                                Some(old) => {
                                    updates.push(((key.clone(), old), time, -1));
                                    updates.push(((key, row), time, 1));
                                }
                                None => updates.push(((key, row), time, 1)),
                            },
                            SourceEvent::Upsert { key, row: None } => {
                                if let Some(old) = state.remove(&key) {
                                    updates.push(((key, old), time, -1));
                                }
                            }
                            SourceEvent::Truncate { .. } => {
                                updates
                                    .extend(state.drain().map(|(key, old)| ((key, old), time, -1)));
                            }
                        }
                    }
                    consolidate_updates(&mut updates);
                    if !updates.is_empty() {
                        output.session(&cap).give_iterator(updates.drain(..));
                    }
                    if state.capacity() > 4 * state.len() + 1024 {
                        state.shrink_to_fit();
                    }
                }
                let held = state.len() as i64;
                if held != counted.held {
                    counted.gauge.inc_by(held - counted.held);
                    counted.held = held;
                }
            }
        },
    )
}

/// This worker's rows in a source's gauge; taken back out when the operator is dropped (the
/// source was removed from a running job).
struct Counted {
    gauge: prometheus_client::metrics::gauge::Gauge,
    held: i64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauge.dec_by(self.held);
    }
}
