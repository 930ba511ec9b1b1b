//! The output side of a product: turns the root collection's changes into upsert records.
//!
//! The sink compares the computed documents with what the output topic already held when the
//! job started (read back at start-up): updates are the computed documents minus the held ones.
//! Nothing is written until every worker has caught up with its sources (the hold input), so a
//! restart writes only documents that differ from the topic, and tombstones for keys whose root
//! row went away while the job was down. After that, updates are written once every worker has
//! passed their time, all completed times together, key by key: a key whose document changed
//! emits the new one, a key left with only a retraction emits a tombstone, and a key whose
//! changes cancel emits nothing. Each root key is owned by one worker, so records of one key are
//! written in order by one producer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::Hashable;
use differential_dataflow::VecCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::nest::Items;
use super::Time;
use crate::value::{write_json, write_scalar, Row, Shape};

/// Where a product's upsert records go (Kafka in a job, a vector in tests).
pub trait DocWriter {
    /// The records written next are the changes of the input batches read at `times`.
    fn begin_window(&mut self, _times: &[Time]) {}
    /// Writes one record: `value` `None` is a tombstone.
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()>;
    /// Blocks until everything written so far is delivered.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// A rendered `(key JSON, document JSON)` with its time and multiplicity.
pub type TextUpdate = ((String, String), Time, isize);
/// A rendered document with its multiplicity, waiting for its time to complete.
type Pending = ((String, String), isize);

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

/// Emits the changes of `docs` (root key → document) against `already` (what the output topic
/// held at start, as retractions) to `writer`. The returned stream carries nothing; probe it to
/// know which times have been written.
#[allow(clippy::too_many_arguments)]
pub fn sink<'s>(
    docs: Items<'s>,
    already: VecCollection<'s, Time, (String, String)>,
    hold: Stream<'s, Time, Vec<u64>>,
    name: &str,
    key_names: Vec<String>,
    shape: Shape,
    writer: SharedWriter,
    failure: Failure,
) -> Stream<'s, Time, Vec<()>> {
    let rendered = docs.map(move |(key, doc)| {
        let mut text = String::new();
        write_json(&doc, &shape, &mut text);
        (render_key(&key_names, &key), text)
    });
    rendered
        .concat(already)
        .inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
            hold,
            Exchange::new(|((key, _), _, _): &TextUpdate| key.hashed()),
            Exchange::new(|worker: &u64| *worker),
            &format!("Sink({name})"),
            move |_cap, _info| {
                // Updates of times not yet written, each with a capability so that the probe after
                // the sink does not pass a time before its documents are written.
                let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Pending>)> = BTreeMap::new();
                let mut held = 0usize;
                let mut compacted_at = 1024usize;
                let mut ready: Vec<Pending> = Vec::new();
                // The latest time at which a worker said it caught up.
                let mut release_at: Option<Time> = None;
                move |(input, frontier), (hold, hold_frontier), _output| {
                    input.for_each(|cap, data| {
                        for (kv, time, diff) in data.drain(..) {
                            pending
                                .entry(time)
                                .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                                .1
                                .push((kv, diff));
                            held += 1;
                        }
                    });
                    hold.for_each(|cap, _| {
                        if let Some(&t) = cap.least() {
                            release_at = release_at.max(Some(t));
                        }
                    });
                    let hydrating = !hold_frontier.is_empty()
                        || release_at.is_some_and(|t| frontier.less_equal(&t));
                    if hydrating {
                        // Hydrating: merge the completed times into the earliest one and consolidate,
                        // so the buffer holds about one document per key.
                        if held > 2 * compacted_at {
                            let complete: Vec<Time> = pending
                                .keys()
                                .copied()
                                .take_while(|t| !frontier.less_equal(t))
                                .collect();
                            if let Some((&first, rest)) = complete.split_first() {
                                let mut merged = Vec::new();
                                for t in rest {
                                    if let Some((_, mut batch)) = pending.remove(t) {
                                        merged.append(&mut batch);
                                    }
                                }
                                if let Some((_, batch)) = pending.get_mut(&first) {
                                    batch.append(&mut merged);
                                    consolidate(batch);
                                }
                            }
                            held = pending.values().map(|(_, b)| b.len()).sum();
                            compacted_at = held.max(1024);
                        }
                        return;
                    }
                    let mut caps = Vec::new();
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (cap, mut batch) = entry.remove();
                        held -= batch.len();
                        ready.append(&mut batch);
                        caps.push(cap);
                    }
                    if ready.is_empty() {
                        return;
                    }
                    let mut writer = writer.borrow_mut();
                    tracing::debug!(updates = ready.len(), ?release_at, "sink writes a window");
                    // The window that ends hydration is not measured for latency: its documents
                    // come from the topics' contents at start, however old.
                    let ends_hydration =
                        release_at.is_some_and(|r| caps.first().is_some_and(|c| *c.time() <= r));
                    let times: Vec<Time> = if ends_hydration {
                        Vec::new()
                    } else {
                        caps.iter().map(|c| *c.time()).collect()
                    };
                    writer.begin_window(&times);
                    for (key, doc) in changes(&mut ready) {
                        if let Err(e) = writer.write(&key, doc.as_deref()) {
                            failure.borrow_mut().get_or_insert(e);
                        }
                    }
                    ready.clear();
                    drop(caps);
                }
            },
        )
}

/// The records to write for the updates of completed times, key by key: the new document of a
/// key whose document changed, a tombstone (`None`) for a key left with only a retraction, and
/// nothing for a key whose updates cancel.
pub fn changes(updates: &mut Vec<Pending>) -> Vec<(String, Option<String>)> {
    consolidate(updates);
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for ((key, doc), diff) in updates.drain(..) {
        match out.last_mut() {
            Some((last, current)) if *last == key => {
                if diff > 0 {
                    *current = Some(doc);
                }
            }
            _ => out.push((key, (diff > 0).then_some(doc))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: &str, doc: &str, diff: isize) -> Pending {
        ((key.to_owned(), doc.to_owned()), diff)
    }

    #[test]
    fn writes_only_real_changes_and_tombstones_what_is_gone() {
        let mut updates = vec![
            update("1", "a", 1),  // inserted
            update("2", "b", -1), // replaced (b was in the topic)
            update("2", "c", 1),
            update("3", "d", -1), // deleted (or gone while the job was down)
            update("4", "e", -1), // changed and changed back, or computed equal to the topic
            update("4", "f", 1),
            update("4", "f", -1),
            update("4", "e", 1),
            update("5", "g", 1), // inserted then deleted: nothing
            update("5", "g", -1),
        ];
        let out = changes(&mut updates);
        let expect = |k: &str, d: Option<&str>| (k.to_owned(), d.map(str::to_owned));
        assert_eq!(
            out,
            vec![
                expect("1", Some("a")),
                expect("2", Some("c")),
                expect("3", None)
            ]
        );
    }
}
