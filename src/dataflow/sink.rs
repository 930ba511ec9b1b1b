//! The output side of a product: turns the root collection's changes into upsert records.
//!
//! Updates are held per time until every worker has passed that time, then all completed times
//! are taken together, key by key (see [`changes`]): a key whose document was replaced emits the
//! new document, a key without a document at the end emits a tombstone, and a key whose changes
//! cancel (changed and changed back) emits nothing. Each root key is owned by one worker, so
//! records of one key are written in order by one producer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::Hashable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::nest::Items;
use super::Time;
use crate::value::{write_json, write_scalar, Row, Shape, Value};

/// Where a product's upsert records go (Kafka in a job, a vector in tests).
pub trait DocWriter {
    /// Writes one record: `value` `None` is a tombstone.
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()>;
    /// Blocks until everything written so far is delivered.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// A keyed document with its multiplicity, waiting for its time to complete.
type Pending = ((Row, Value), isize);
/// A differential update of a keyed document.
type ItemUpdate = ((Row, Value), Time, isize);

pub type SharedWriter = Rc<RefCell<dyn DocWriter>>;
/// The first error a worker met; the job loop stops on it.
pub type Failure = Rc<RefCell<Option<anyhow::Error>>>;

/// Renders a root key as a JSON object of the primary key columns.
pub fn render_key(key_names: &[String], key: &Row) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in key_names.iter().zip(key.iter()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).expect("strings serialize"));
        out.push(':');
        write_scalar(value, &mut out);
    }
    out.push('}');
    out
}

/// Emits the changes of `docs` (root key → document) to `writer`, once per completed time.
/// The returned stream carries nothing; probe it to know which times have been written.
pub fn sink<'s>(
    docs: Items<'s>,
    name: &str,
    key_names: Vec<String>,
    shape: Shape,
    writer: SharedWriter,
    failure: Failure,
) -> Stream<'s, Time, Vec<()>> {
    docs.inner
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Exchange::new(|((key, _), _, _): &ItemUpdate| key.hashed()),
            &format!("Sink({name})"),
            move |_cap, _info| {
                // Updates of times not yet complete, with a capability so that the probe does
                // not pass a time before its documents are written.
                let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Pending>)> = BTreeMap::new();
                let mut ready: Vec<ItemUpdate> = Vec::new();
                let mut text = String::new();
                move |(input, frontier), _output| {
                    input.for_each(|cap, data| {
                        for (kv, time, diff) in data.drain(..) {
                            pending
                                .entry(time)
                                .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                                .1
                                .push((kv, diff));
                        }
                    });
                    let mut held = Vec::new();
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let time = *entry.key();
                        let (cap, batch) = entry.remove();
                        ready.extend(batch.into_iter().map(|(kv, diff)| (kv, time, diff)));
                        held.push(cap);
                    }
                    if ready.is_empty() {
                        return;
                    }
                    let mut writer = writer.borrow_mut();
                    for (key, write) in changes(&mut ready) {
                        let key_text = render_key(&key_names, &key);
                        let result = match write {
                            Some(doc) => {
                                text.clear();
                                write_json(&doc, &shape, &mut text);
                                writer.write(&key_text, Some(&text))
                            }
                            None => writer.write(&key_text, None),
                        };
                        if let Err(e) = result {
                            failure.borrow_mut().get_or_insert(e);
                        }
                    }
                    ready.clear();
                    drop(held);
                }
            },
        )
}

/// What to write for the updates of several completed times, key by key: `Some(doc)` when the
/// key's document at the last time differs from the one before the first, `None` (a tombstone)
/// when the key has no document at the last time, nothing when the changes cancel out and the
/// key still has its document. A key whose document appeared and disappeared within the
/// window gets a tombstone too (harmless for a key never written): after a restart, whose
/// replay rebuilds the state in large batches, a document of the previous run may be in the
/// output topic. (A root row inserted and deleted within one input batch never reaches the sink
/// at all; reconciling with the output topic at start-up is what will cover that case.)
pub fn changes(updates: &mut [ItemUpdate]) -> Vec<(Row, Option<Value>)> {
    updates.sort_by(|a, b| (&a.0 .0, a.1, &a.0 .1).cmp(&(&b.0 .0, b.1, &b.0 .1)));
    let mut out = Vec::new();
    let mut i = 0;
    while i < updates.len() {
        let key = updates[i].0 .0.clone();
        let mut j = i;
        while j < updates.len() && updates[j].0 .0 == key {
            j += 1;
        }
        let group = &updates[i..j];
        let last_time = group[j - i - 1].1;
        // The document at the last time: its positive update, once that time is consolidated.
        let mut at_last: Vec<(&Value, isize)> = group
            .iter()
            .filter(|u| u.1 == last_time)
            .map(|u| (&u.0 .1, u.2))
            .collect();
        consolidate(&mut at_last);
        let current = at_last
            .iter()
            .find(|(_, d)| *d > 0)
            .map(|(v, _)| (*v).clone());
        // The net change over the whole window.
        let mut net: Vec<(&Value, isize)> = group.iter().map(|u| (&u.0 .1, u.2)).collect();
        consolidate(&mut net);
        match current {
            Some(doc) if !net.is_empty() => out.push((key, Some(doc))),
            Some(_) => {}
            None => out.push((key, None)),
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::row;

    fn update(key: i64, doc: &str, time: Time, diff: isize) -> ItemUpdate {
        ((row([Value::Int(key)]), Value::str(doc)), time, diff)
    }

    #[test]
    fn writes_only_real_changes_and_tombstones_what_is_gone() {
        let mut updates = vec![
            update(1, "a", 1, 1),  // 1: inserted
            update(2, "b", 1, -1), // 2: replaced
            update(2, "c", 1, 1),
            update(3, "d", 1, -1), // 3: deleted
            update(4, "e", 1, -1), // 4: changed and changed back: nothing
            update(4, "f", 1, 1),
            update(4, "f", 2, -1),
            update(4, "e", 2, 1),
            update(5, "g", 1, 1), // 5: inserted then deleted: tombstone (a previous run may have written it)
            update(5, "g", 3, -1),
            update(6, "h", 2, -1), // 6: deleted then inserted again with another document
            update(6, "i", 3, 1),
        ];
        let out = changes(&mut updates);
        let expect = |k: i64, d: Option<&str>| (row([Value::Int(k)]), d.map(Value::str));
        assert_eq!(
            out,
            vec![
                expect(1, Some("a")),
                expect(2, Some("c")),
                expect(3, None),
                expect(5, None),
                expect(6, Some("i"))
            ]
        );
    }
}

/// A writer that keeps records in memory: for tests and the embedded evaluator.
#[derive(Default)]
pub struct VecWriter {
    pub records: Vec<(String, Option<String>)>,
}

impl DocWriter for VecWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        self.records
            .push((key.to_owned(), value.map(str::to_owned)));
        Ok(())
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
