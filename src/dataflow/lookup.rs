//! Looking keys up in a shared trace at a time: each request names a key (a 64-bit hash) and
//! carries a payload; once the trace is complete through the request's time, the operator reads
//! the values held under that key at that time and hands each, with the payload, to the
//! caller's logic, whose outputs carry the request's time.
//!
//! This is a half join (differential's `dogsdogsdogs` has one): the requests are not arranged,
//! nothing is kept once they are answered, and the trace is the only state. The operator holds
//! the trace's logical compaction at its earliest unanswered request, so that the trace keeps
//! the distinctions a request needs.

use std::collections::BTreeMap;

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{BatchCursor, BatchVal, Cursor, Navigable, TraceReader};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::Antichain;
use timely::ExchangeData;

use super::Time;

/// A request: the key to look up, and what to answer with.
pub type Request<P> = (u64, P);

/// For each request, calls `logic(payload, values, output)` with the values held under its key
/// in `arranged` at the request's time (their updates at times not after it add up to more than
/// zero), when there are any. Requests go to the worker that holds their key; equal requests of
/// one time are answered once.
pub fn lookup<'s, Tr, P, O, L>(
    requests: Stream<'s, Time, Vec<Request<P>>>,
    arranged: Arranged<'s, Tr>,
    name: &str,
    mut logic: L,
) -> Stream<'s, Time, Vec<O>>
where
    Tr: TraceReader<Time = Time, Batch: Navigable> + Clone + 'static,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a u64, Diff = isize, Time = Time>,
    P: ExchangeData + Ord,
    O: Clone + 'static,
    L: FnMut(&P, &[BatchVal<'_, Tr>], &mut Vec<O>) + 'static,
{
    let mut trace = Some(arranged.trace);
    if let Some(trace) = trace.as_mut() {
        // Merging batches loses nothing a request needs: only logical compaction does.
        trace.set_physical_compaction(Antichain::new().borrow());
    }
    requests.binary_frontier::<_, CapacityContainerBuilder<Vec<O>>, _, _, _, _>(
        arranged.stream,
        Exchange::new(|(key, _): &Request<P>| *key),
        Pipeline,
        name,
        move |_capability, _info| {
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Request<P>>)> = BTreeMap::new();
            let mut out: Vec<O> = Vec::new();
            move |(requests, requests_frontier), (batches, trace_frontier), output| {
                requests.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    pending
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                        .1
                        .append(data);
                });
                // Only the frontier of the trace's stream matters: it says what is complete.
                batches.for_each(|_, _| {});
                let Some(tr) = trace.as_mut() else { return };
                while let Some(entry) = pending.first_entry() {
                    let time = *entry.key();
                    if trace_frontier.less_equal(&time) {
                        break;
                    }
                    let (cap, mut asked) = entry.remove();
                    asked.sort_unstable();
                    asked.dedup();
                    let batches = tr
                        .batches_through(Antichain::new().borrow())
                        .expect("a trace hands out all of its batches");
                    let (mut cursor, storage) = cursor_list(batches);
                    let mut values = Vec::new();
                    for (key, payload) in &asked {
                        cursor.seek_key(&storage, key);
                        if cursor.get_key(&storage) != Some(key) {
                            continue;
                        }
                        values.clear();
                        while let Some(value) = cursor.get_val(&storage) {
                            if held_at(&mut cursor, &storage, time) {
                                values.push(value);
                            }
                            cursor.step_val(&storage);
                        }
                        cursor.rewind_vals(&storage);
                        if !values.is_empty() {
                            logic(payload, &values, &mut out);
                        }
                    }
                    if !out.is_empty() {
                        output.session(&cap).give_iterator(out.drain(..));
                    }
                }
                // The trace may forget distinctions before the earliest request still to come.
                let mut frontier: Antichain<Time> = requests_frontier.frontier().to_owned();
                if let Some(&earliest) = pending.keys().next() {
                    frontier.insert(earliest);
                }
                tr.set_logical_compaction(frontier.borrow());
                if frontier.is_empty() {
                    trace = None;
                }
            }
        },
    )
}

/// Whether the cursor's current value is held at `time`: its updates at times not after it add
/// up to more than zero.
pub fn held_at<C: Cursor<Diff = isize, Time = Time>>(
    cursor: &mut C,
    storage: &C::Storage,
    time: Time,
) -> bool {
    let mut count = 0;
    cursor.map_times(storage, |t, d| {
        if C::owned_time(t) <= time {
            count += C::owned_diff(d);
        }
    });
    count > 0
}
