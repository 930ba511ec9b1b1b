//! A source's rows, held once: the upsert operator turns the source's decoded events (a row for
//! a primary key, a primary key deleted, the whole source truncated) into the trace of the
//! current rows, keyed by the hash of their primary key. It finds the row an event replaces in
//! that same trace (as differential's `arrange_from_upsert` does), so the state is not kept a
//! second time, and it emits only real differences: a repeated event, a replayed snapshot row
//! equal to the current one, or a delete of an unknown key changes nothing.
//!
//! Events are exchanged by key (a truncate goes to every worker). At each completed time the
//! events of that time apply in arrival order, which per key is the partition's offset order.

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Builder, Cursor, Description, Span, TraceReader};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::{Antichain, Timestamp};

use super::Time;
use crate::row::layout::{RowBuilder, RowSpine};
use crate::row::{Row, RowRef};

/// One decoded source record, as the upsert operator receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceEvent {
    /// The row whose primary key has the encoded values `key` is now `row` (`None`: deleted).
    Upsert { key: Row, row: Option<Row> },
    /// Drop every row; one copy is addressed to each worker.
    Truncate { worker: u64 },
}

impl SourceEvent {
    /// Bytes the event holds; what it costs in the dataflow until its time is computed.
    pub fn size(&self) -> usize {
        match self {
            SourceEvent::Upsert { key, row } => key.size() + row.as_ref().map_or(0, Row::size),
            SourceEvent::Truncate { .. } => 0,
        }
    }

    /// The worker-routing hash: the hash of the primary key (the addressee of a truncate).
    pub fn route(&self) -> u64 {
        match self {
            SourceEvent::Upsert { key, .. } => key.hash(),
            SourceEvent::Truncate { worker } => *worker,
        }
    }
}

/// A source's rows by the hash of their primary key.
pub type RowTrace = TraceAgent<RowSpine>;
/// The arrangement of a source's rows, in a dataflow.
pub type Rows<'s> = Arranged<'s, RowTrace>;

/// Counts the rows a worker holds, into a gauge.
pub trait RowCount: 'static {
    fn changed(&mut self, by: i64);
}

impl RowCount for () {
    fn changed(&mut self, _by: i64) {}
}

/// The arrangement of the current rows defined by `events`: `key_columns` are the primary key's
/// columns in a row (the key an event carries is their encoded values, in that order).
pub fn arrange_rows<'s>(
    events: Stream<'s, Time, Vec<SourceEvent>>,
    name: &str,
    key_columns: Vec<usize>,
    mut count: impl RowCount,
) -> Rows<'s> {
    let scope = events.scope();
    let mut reader: Option<RowTrace> = None;
    let stream = {
        let reader = &mut reader;
        events.unary_frontier(
            Exchange::new(SourceEvent::route),
            &format!("Rows({name})"),
            move |_capability, info| {
                let logger = scope
                    .worker()
                    .logger_for::<differential_dataflow::logging::DifferentialEventBuilder>(
                        "differential/arrange",
                    )
                    .map(Into::into);
                let activator = Some(scope.activator_for(std::rc::Rc::clone(&info.address)));
                let trace = differential_dataflow::trace::Trace::new(
                    info.clone(),
                    logger.clone(),
                    activator,
                );
                let (mut local, mut writer) = TraceAgent::new(trace, info, logger);
                *reader = Some(local.clone());
                // Events of times not yet complete, in arrival order, each time with a capability.
                let mut pending: std::collections::BTreeMap<
                    Time,
                    (Capability<Time>, Vec<SourceEvent>),
                > = Default::default();
                let mut lower = Antichain::from_elem(Time::minimum());
                let mut updates: Vec<((u64, Row), Time, isize)> = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        let Some(&time) = cap.least() else { return };
                        pending
                            .entry(time)
                            .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                            .1
                            .append(data);
                    });
                    if lower.borrow() == frontier.frontier() {
                        writer.exert();
                        return;
                    }
                    // Each completed time in turn: its batch goes into the trace before the next
                    // time reads the rows it replaces.
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if frontier.less_equal(&time) {
                            break;
                        }
                        let (cap, events) = entry.remove();
                        if lower.less_than(&time) {
                            writer.seal(Antichain::from_elem(time));
                            lower = Antichain::from_elem(time);
                        }
                        apply(
                            &mut local,
                            &key_columns,
                            time,
                            events,
                            &mut updates,
                            &mut count,
                        );
                        let upper = Antichain::from_elem(time + 1);
                        let mut builder = RowBuilder::default();
                        updates.sort_unstable();
                        builder.push(&mut updates);
                        let description = Description::new(
                            lower.clone(),
                            upper.clone(),
                            Antichain::from_elem(Time::minimum()),
                        );
                        let span = Span::new(description, builder.done().map(Into::into));
                        writer.insert(span.clone(), timely::progress::Stamp::from_elem(time));
                        output.session(&cap).give(span);
                        lower = upper;
                    }
                    writer.seal(frontier.frontier().to_owned());
                    lower = frontier.frontier().to_owned();
                    // Only this operator reads its own trace, and only the current rows.
                    local.set_logical_compaction(lower.borrow());
                    local.set_physical_compaction(lower.borrow());
                    writer.exert();
                }
            },
        )
    };
    Arranged {
        stream,
        trace: reader.expect("the operator was built"),
    }
}

/// The updates of one time's `events` against the rows in `trace`, into `updates` (emptied
/// first): for each key, its current row retracted and the row of its last event inserted, when
/// they differ; a truncate retracts every row first.
fn apply(
    trace: &mut RowTrace,
    key_columns: &[usize],
    time: Time,
    mut events: Vec<SourceEvent>,
    updates: &mut Vec<((u64, Row), Time, isize)>,
    count: &mut impl RowCount,
) {
    updates.clear();
    let batches = trace
        .batches_through(Antichain::new().borrow())
        .expect("the upsert operator's own trace is complete");
    let (mut cursor, storage) = cursor_list(batches);
    // A truncate wipes what came before it: every row held, and the earlier events of this time.
    let truncated = match events
        .iter()
        .rposition(|e| matches!(e, SourceEvent::Truncate { .. }))
    {
        Some(last) => {
            events.drain(..=last);
            while let Some(hash) = cursor.get_key(&storage) {
                while let Some(row) = cursor.get_val(&storage) {
                    if held(&mut cursor, &storage) {
                        updates.push(((*hash, row.to_owned()), time, -1));
                    }
                    cursor.step_val(&storage);
                }
                cursor.step_key(&storage);
            }
            cursor.rewind_keys(&storage);
            true
        }
        None => false,
    };
    // The last event of each key, in key-hash order for the cursor.
    let mut latest: Vec<(u64, usize)> = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if let SourceEvent::Upsert { key, .. } = event {
            latest.push((key.hash(), i));
        }
    }
    latest.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| key_of(&events[a.1]).cmp(key_of(&events[b.1])))
            .then(b.1.cmp(&a.1))
    });
    latest.dedup_by(|later, first| {
        later.0 == first.0 && key_of(&events[later.1]) == key_of(&events[first.1])
    });
    let mut projected = Vec::new();
    for (hash, i) in latest {
        let SourceEvent::Upsert { key, row } =
            std::mem::replace(&mut events[i], SourceEvent::Truncate { worker: 0 })
        else {
            continue;
        };
        let mut old: Option<Row> = None;
        if !truncated {
            cursor.seek_key(&storage, &hash);
            if cursor.get_key(&storage) == Some(&hash) {
                while let Some(held_row) = cursor.get_val(&storage) {
                    projected.clear();
                    if held(&mut cursor, &storage)
                        && held_row.project(key_columns, &mut projected)
                        && projected == key.bytes()
                    {
                        old = Some(held_row.to_owned());
                    }
                    cursor.step_val(&storage);
                }
                cursor.rewind_vals(&storage);
            }
        }
        if old == row {
            continue;
        }
        if let Some(old) = old {
            updates.push(((hash, old), time, -1));
        }
        if let Some(row) = row {
            updates.push(((hash, row), time, 1));
        }
    }
    let delta: isize = updates.iter().map(|(_, _, d)| d).sum();
    count.changed(delta as i64);
}

/// Whether the cursor's current row is held (its updates add up to one).
fn held<C: Cursor<Diff = isize>>(cursor: &mut C, storage: &C::Storage) -> bool {
    let mut total = 0;
    cursor.map_times(storage, |_, d| total += C::owned_diff(d));
    total > 0
}

fn key_of(event: &SourceEvent) -> &[u8] {
    match event {
        SourceEvent::Upsert { key, .. } => key.bytes(),
        SourceEvent::Truncate { .. } => &[],
    }
}

/// The encoded primary key of `row` (the bytes an event for it carries); `None` when a key
/// column is null.
pub fn primary_key(row: RowRef<'_>, key_columns: &[usize]) -> Option<Row> {
    let mut key = Vec::new();
    row.project(key_columns, &mut key).then(|| Row::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::dataflow::InputHandle;

    fn row(id: i64, name: &str) -> Row {
        Row::from_values(&[Value::Int(id), Value::str(name)])
    }

    fn key(id: i64) -> Row {
        Row::from_values(&[Value::Int(id)])
    }

    fn upsert(id: i64, name: Option<&str>) -> SourceEvent {
        SourceEvent::Upsert {
            key: key(id),
            row: name.map(|n| row(id, n)),
        }
    }

    /// The updates the operator emits for `times` of events, on `workers` workers.
    fn run(workers: usize, times: Vec<Vec<SourceEvent>>) -> Vec<((u64, Row), Time, isize)> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let sender = std::sync::Mutex::new(sender);
        timely::execute(timely::Config::process(workers), move |worker| {
            let sender = sender.lock().unwrap().clone();
            let mut input = InputHandle::<Time, CapacityContainerBuilder<Vec<SourceEvent>>>::new();
            let probe = worker.dataflow(|scope| {
                let rows = arrange_rows(input.to_stream(scope), "test", vec![0], ());
                rows.clone()
                    .as_collection(|k: &u64, v: RowRef<'_>| (*k, v.to_owned()))
                    .inner
                    .capture_into(sender);
                rows.stream.probe().0
            });
            for (t, events) in times.iter().enumerate() {
                input.advance_to(t as Time);
                if worker.index() == 0 {
                    for e in events {
                        match e {
                            SourceEvent::Truncate { .. } => {
                                for w in 0..worker.peers() {
                                    input.send(SourceEvent::Truncate { worker: w as u64 });
                                }
                            }
                            e => input.send(e.clone()),
                        }
                    }
                }
            }
            input.close();
            while !probe.done() {
                worker.step();
            }
        })
        .unwrap();
        let mut out: Vec<_> = receiver
            .extract()
            .into_iter()
            .flat_map(|(_, data)| data)
            .collect();
        out.sort();
        out
    }

    use timely::dataflow::operators::Probe;

    #[test]
    fn only_real_differences_are_emitted_last_event_wins() {
        for workers in [1, 2] {
            let updates = run(
                workers,
                vec![
                    vec![
                        upsert(1, Some("a")),
                        upsert(2, Some("b")),
                        upsert(2, Some("b2")),
                    ],
                    vec![
                        upsert(1, Some("a")), // the same row again: nothing
                        upsert(2, Some("c")), // replaced
                        upsert(3, None),      // unknown: nothing
                        upsert(4, Some("d")), // inserted and deleted in one time: nothing
                        upsert(4, None),
                    ],
                    vec![SourceEvent::Truncate { worker: 0 }, upsert(1, Some("e"))],
                ],
            );
            let h = |id: i64| key(id).hash();
            let mut expected = vec![
                ((h(1), row(1, "a")), 0, 1),
                ((h(2), row(2, "b2")), 0, 1),
                ((h(2), row(2, "b2")), 1, -1),
                ((h(2), row(2, "c")), 1, 1),
                ((h(1), row(1, "a")), 2, -1),
                ((h(2), row(2, "c")), 2, -1),
                ((h(1), row(1, "e")), 2, 1),
            ];
            expected.sort();
            assert_eq!(updates, expected, "{workers} workers");
        }
    }
}
