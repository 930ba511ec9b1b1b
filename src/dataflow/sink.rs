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
//! written in order by one producer. A job stopped before every worker caught up writes nothing:
//! its documents would reflect only part of the sources.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::Hashable;
use serde::{Deserialize, Serialize};
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
    /// The records written next are the changes of the input batches read at `times`.
    fn begin_window(&mut self, _times: &[Time]) {}
    /// Writes one record: `value` `None` is a tombstone.
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()>;
    /// Blocks until everything written so far is delivered.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// While hydrating, held documents are consolidated once their bytes pass twice this (or
/// twice what the last consolidation left).
const MIN_COMPACT_BYTES: usize = 4 << 20;

/// What a sink compares, per rendered key: a computed document, or the JSON text of a document
/// the output topic held at start. Documents are rendered only when written, or to compare them
/// with a held text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Out {
    Doc(Value),
    Text(String),
}

/// A rendered root key (a JSON object) with a hash of its text. Keys order by the hash first, so
/// consolidating the held documents tells keys apart by one integer comparison (their texts
/// share a long prefix such as `{"email":"`); the hash also routes the key to its worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocKey {
    hash: u64,
    json: String,
}

impl DocKey {
    pub fn new(json: String) -> DocKey {
        DocKey {
            hash: json.hashed(),
            json,
        }
    }

    /// The worker-routing hash (the same for a computed key and one read back from the topic).
    pub fn route(&self) -> u64 {
        self.hash
    }
}

/// A `(key, document)` update with its time and multiplicity.
pub type OutUpdate = ((DocKey, Out), Time, isize);
/// A document update with its multiplicity, waiting for its time to complete.
type Pending = ((DocKey, Out), isize);

pub type SharedWriter = Rc<RefCell<dyn DocWriter>>;
/// The first error a worker met; the job loop stops on it.
pub type Failure = Rc<RefCell<Option<anyhow::Error>>>;
/// Shared between a sink and the job loop.
#[derive(Debug, Default)]
pub struct SinkControl {
    /// Set by the job when it stops before the product has caught up: the sink then drops what
    /// it holds and writes nothing, as the documents would be incomplete.
    pub discard: Cell<bool>,
    /// Set by the sink once it has written the documents of every worker's start-time contents.
    pub caught_up: Cell<bool>,
}
pub type Control = Rc<SinkControl>;

/// About how many bytes a held update takes (a document shared with the arrangements counts
/// in full: the estimate errs towards consolidating more often).
fn held_size((key, out): &(DocKey, Out)) -> usize {
    key.json.len()
        + match out {
            Out::Text(text) => text.len(),
            Out::Doc(doc) => doc.size(),
        }
}

/// The held bytes once `before` updates became `after`, at the same average size per update.
fn scale_bytes(bytes: usize, before: usize, after: usize) -> usize {
    (bytes as u128 * after as u128 / before.max(1) as u128) as usize
}

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

/// What reaches a sink besides the documents: that a worker caught up with the product's
/// sources, or a document the output topic held when the product started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// Sent by every worker to every worker (the value is the addressee) at the time it caught up.
    CaughtUp(u64),
    /// `(key, document JSON)` as the output topic holds it.
    Held(DocKey, String),
}

/// Emits the changes of `docs` (root key → document) against what the output topic held when
/// the product started (`Side::Held`) to `writer`. `side` also brings one `CaughtUp` from every
/// worker; nothing is written before all of them and every held document arrived (the side
/// stream is complete) and the documents of every time up to the latest `CaughtUp` are
/// computed. The side stream's frontier does not hold back the documents: while hydrating, the
/// sink consolidates the completed times of the documents as they come. The returned stream
/// carries nothing; probe it to know which times have been written.
#[allow(clippy::too_many_arguments)]
pub fn sink<'s>(
    docs: Items<'s>,
    side: Stream<'s, Time, Vec<Side>>,
    name: &str,
    key_names: Vec<String>,
    shape: Shape,
    writer: SharedWriter,
    failure: Failure,
    control: Control,
) -> Stream<'s, Time, Vec<()>> {
    let peers = docs.scope().peers();
    let rendered =
        docs.map(move |(key, doc)| (DocKey::new(render_key(&key_names, &key)), Out::Doc(doc)));
    rendered
        .inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
            side,
            Exchange::new(|((key, _), _, _): &OutUpdate| key.route()),
            Exchange::new(|side: &Side| match side {
                Side::CaughtUp(worker) => *worker,
                Side::Held(key, _) => key.route(),
            }),
            &format!("Sink({name})"),
            move |_cap, _info| {
                // Updates of times not yet written, each with a capability so that the probe after
                // the sink does not pass a time before its documents are written.
                let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Pending>)> = BTreeMap::new();
                // Updates held, and their bytes: while hydrating, they are consolidated whenever
                // either doubled since the last consolidation (so memory stays about twice
                // the documents, however large they are).
                let mut held = 0usize;
                let mut held_bytes = 0usize;
                let mut compacted_at = 1024usize;
                let mut compacted_bytes = MIN_COMPACT_BYTES;
                let mut ready: Vec<Pending> = Vec::new();
                // The latest time at which a worker said it caught up, and how many said so.
                let mut release_at: Option<Time> = None;
                let mut caught_up_workers = 0usize;
                // What the output topic held, added to the first window written.
                let mut held_texts: Vec<Pending> = Vec::new();
                let mut discarded = false;
                move |(input, frontier), (side, side_frontier), _output| {
                    input.for_each(|cap, data| {
                        for (kv, time, diff) in data.drain(..) {
                            held_bytes += held_size(&kv);
                            pending
                                .entry(time)
                                .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                                .1
                                .push((kv, diff));
                            held += 1;
                        }
                    });
                    side.for_each(|cap, data| {
                        for message in data.drain(..) {
                            match message {
                                Side::CaughtUp(_) => {
                                    caught_up_workers += 1;
                                    if let Some(&t) = cap.least() {
                                        release_at = release_at.max(Some(t));
                                    }
                                }
                                Side::Held(key, doc) => {
                                    held_texts.push(((key, Out::Text(doc)), -1));
                                }
                            }
                        }
                    });
                    if side_frontier.is_empty() && caught_up_workers < peers {
                        // The job was stopped before every worker caught up: what was computed
                        // reflects only part of the sources (writing it would tombstone the
                        // documents of roots not read yet). Write nothing; the topic keeps
                        // the documents of the last complete run.
                        control.discard.set(true);
                    }
                    if control.discard.get() {
                        if !discarded && !pending.is_empty() {
                            discarded = true;
                            tracing::info!(updates = held, "stopped before every worker caught up with its sources: nothing computed in this run is written, the output topic is left as it was");
                        }
                        pending.clear();
                        held_texts.clear();
                        held = 0;
                        held_bytes = 0;
                        return;
                    }
                    let hydrating = caught_up_workers < peers
                        || !side_frontier.is_empty()
                        || release_at.is_some_and(|t| frontier.less_equal(&t));
                    if hydrating {
                        // Hydrating: merge the completed times into the earliest one and consolidate,
                        // so the buffer holds about one document per key.
                        if held > 2 * compacted_at || held_bytes > 2 * compacted_bytes {
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
                            // Bytes scale with the updates left (the average update keeps its
                            // size): walking every held document again cost more than the rest
                            // of the sink.
                            let before = held;
                            held = pending.values().map(|(_, b)| b.len()).sum();
                            held_bytes = scale_bytes(held_bytes, before, held);
                            compacted_at = held.max(1024);
                            compacted_bytes = held_bytes.max(MIN_COMPACT_BYTES);
                        }
                        return;
                    }
                    let mut caps = Vec::new();
                    ready.append(&mut held_texts);
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (cap, mut batch) = entry.remove();
                        let before = held;
                        held -= batch.len();
                        held_bytes = scale_bytes(held_bytes, before, held);
                        ready.append(&mut batch);
                        caps.push(cap);
                    }
                    control.caught_up.set(true);
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
                    for (key, doc) in changes(&mut ready, &shape) {
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
/// nothing for a key whose updates cancel. Records come in key order.
pub fn changes(updates: &mut Vec<Pending>, shape: &Shape) -> Vec<(String, Option<String>)> {
    // Documents cancel as values first. A key left with computed documents only differs from
    // what was written: just its new document is rendered (a retracted one never is). A key
    // with a text the output topic held compares texts, so its documents are rendered.
    consolidate(updates);
    let render = |doc: &Value| {
        let mut text = String::new();
        write_json(doc, shape, &mut text);
        text
    };
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut group: Vec<(Out, isize)> = Vec::new();
    let mut updates = updates.drain(..).peekable();
    while let Some(((key, first), diff)) = updates.next() {
        group.clear();
        group.push((first, diff));
        while let Some(((_, part), diff)) = updates.next_if(|((next, _), _)| *next == key) {
            group.push((part, diff));
        }
        if !group.iter().any(|(part, _)| matches!(part, Out::Text(_))) {
            let new = group.iter().rev().find_map(|(part, diff)| match part {
                Out::Doc(doc) if *diff > 0 => Some(render(doc)),
                _ => None,
            });
            out.push((key.json, new));
            continue;
        }
        let mut texts: Vec<(String, isize)> = group
            .drain(..)
            .map(|(part, diff)| match part {
                Out::Text(text) => (text, diff),
                Out::Doc(doc) => (render(&doc), diff),
            })
            .collect();
        consolidate(&mut texts);
        if !texts.is_empty() {
            let new = texts.into_iter().rev().find(|(_, diff)| *diff > 0);
            out.push((key.json, new.map(|(text, _)| text)));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: &str, doc: &str, diff: isize) -> Pending {
        (
            (DocKey::new(key.to_owned()), Out::Text(doc.to_owned())),
            diff,
        )
    }

    fn doc(key: &str, value: i64, diff: isize) -> Pending {
        (
            (DocKey::new(key.to_owned()), Out::Doc(Value::Int(value))),
            diff,
        )
    }

    #[test]
    fn renders_computed_documents_only_when_written_or_compared_with_held_texts() {
        let mut updates = vec![
            doc("1", 1, -1), // changed: only the new document is written
            doc("1", 2, 1),
            doc("2", 3, -1),      // gone: tombstone
            update("3", "4", -1), // held text equal to the computed document: nothing
            doc("3", 4, 1),
            update("4", "5", -1), // held text replaced by a different document
            doc("4", 6, 1),
            doc("5", 7, 1), // changed and changed back within the window: nothing
            doc("5", 7, -1),
        ];
        let out = changes(&mut updates, &Shape::Scalar);
        let expect = |k: &str, d: Option<&str>| (k.to_owned(), d.map(str::to_owned));
        assert_eq!(
            out,
            vec![
                expect("1", Some("2")),
                expect("2", None),
                expect("4", Some("6"))
            ]
        );
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
        let out = changes(&mut updates, &Shape::Scalar);
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
