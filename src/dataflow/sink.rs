//! The output side of a product: builds each document from its parts once every part has
//! arrived (the time they were found at is complete), and writes it when it differs from what
//! the output topic holds for its key.
//!
//! What the topic holds is known by hashes: for each key, a 128-bit hash of its document text,
//! loaded from the topic at start ([`Held`]) and updated with every record written. So a restart
//! writes only documents that differ from the topic, and a document rebuilt unchanged (a change
//! that did not reach it, or a rewrite to equal values) writes nothing. At the end of the
//! hydration, the keys the topic held that no document has any more get their tombstones; after
//! it, a root whose row is gone gets its tombstone. Each key is written by one worker (the one
//! its rendered key routes to), in time order, so its records stay in order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::assemble::{key_route, sort_parts, Document, FoundRow, Parts};
use super::find::Found;
use super::tree::Tree;
use super::Time;

/// Where a product's records go (Kafka in a job, a vector in tests).
pub trait DocWriter {
    /// The records written next are the changes of the input read at `times`.
    fn begin_window(&mut self, _times: &[Time]) {}
    /// Writes one record: `value` `None` is a tombstone.
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()>;
    /// Blocks until everything written so far is delivered.
    fn flush(&mut self) -> anyhow::Result<()>;
}

pub type SharedWriter = Rc<RefCell<dyn DocWriter>>;
/// The first error a worker met; the job loop stops on it.
pub type Failure = Rc<RefCell<Option<anyhow::Error>>>;

/// What a sink tells the job, and the job the sink.
#[derive(Debug, Default)]
pub struct SinkControl {
    /// Set once the sink has written the hydration's documents (and its tombstones).
    pub caught_up: Cell<bool>,
    /// Set by the job when the product is removed while the products it shares its dataflow
    /// with go on: the sink writes nothing more for it and forgets its topic.
    pub removed: Cell<bool>,
}

/// One product written by a sink: products of one shape (the same sources and links, see
/// [`Tree::shape_key`]) share the rows found for their documents, and each assembles and
/// writes its own.
pub struct SinkMember {
    pub tree: Rc<Tree>,
    pub writer: SharedWriter,
    pub control: Rc<SinkControl>,
}

/// A record of the output topic as it was when the product started, in the topic's order: a
/// key and its document's JSON text (`None`: a tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub key: String,
    pub json: Option<String>,
}

/// The hash of a key's or a document's text by which the sink remembers it.
fn text_hash(text: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes())
}

/// What the sink knows of one key in the output topic.
struct Entry {
    /// The hash of the document last written (or held at start).
    doc: u128,
    /// Built during the hydration (a key held at start and not built is tombstoned at its end).
    seen: bool,
    /// The key's text while the hydration may still tombstone it.
    key: Option<Box<str>>,
}

/// What the output topic holds, by hashes, and what to write to it.
#[derive(Default)]
struct Topic {
    /// By the hash of the key's text (a hash already: no need to hash it again well).
    entries: HashMap<u128, Entry, foldhash::fast::FixedState>,
    hydrated: bool,
}

impl Topic {
    /// A record the topic held at start, in the topic's order.
    fn held(&mut self, Held { key, json }: Held) {
        let hash = text_hash(&key);
        match json {
            Some(json) => {
                let entry = Entry {
                    doc: text_hash(&json),
                    seen: false,
                    key: Some(key.into_boxed_str()),
                };
                self.entries.insert(hash, entry);
            }
            None => {
                self.entries.remove(&hash);
            }
        }
    }

    /// A document built: written unless the topic holds it already.
    fn document(&mut self, doc: Document, write: &mut impl FnMut(&str, Option<&str>)) {
        let (key, hash) = (text_hash(&doc.key), text_hash(&doc.json));
        match self.entries.get_mut(&key) {
            Some(entry) if entry.doc == hash => entry.seen = true,
            _ => {
                write(&doc.key, Some(&doc.json));
                let entry = Entry {
                    doc: hash,
                    seen: true,
                    key: None,
                };
                self.entries.insert(key, entry);
            }
        }
    }

    /// A root gone: its document's tombstone, if the topic holds one.
    fn gone(&mut self, key: &str, write: &mut impl FnMut(&str, Option<&str>)) {
        if self.entries.remove(&text_hash(key)).is_some() {
            write(key, None);
        }
    }

    /// Every document of the hydration is written: a key the topic held that none of them has
    /// belongs to a root that is gone.
    fn end_hydration(&mut self, write: &mut impl FnMut(&str, Option<&str>)) {
        self.entries.retain(|_, entry| {
            if !entry.seen {
                if let Some(key) = entry.key.as_deref() {
                    write(key, None);
                }
                return false;
            }
            entry.key = None;
            true
        });
        self.entries.shrink_to_fit();
        self.hydrated = true;
    }
}

/// Writes each member's documents from the parts in `found` to its writer, against what its
/// output topic held (`held`: the member's index and a record). The returned stream carries
/// nothing; probe it to know which times have been written.
pub fn sink<'s>(
    members: Vec<SinkMember>,
    found: Stream<'s, Time, Vec<Found>>,
    held: Stream<'s, Time, Vec<(usize, Held)>>,
    failure: Failure,
) -> Stream<'s, Time, Vec<()>> {
    let peers = found.scope().peers();
    let names: Vec<&str> = members.iter().map(|m| m.tree.product.as_str()).collect();
    let name = format!("Sink({})", names.join(", "));
    found.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
        held,
        Exchange::new(|f: &Found| match f {
            Found::Row(part) => part.doc.route,
            Found::Gone { route, .. } => *route,
            Found::Hydrated(to) => *to,
            Found::Want(_) => 0,
        }),
        Exchange::new(|(_, h): &(usize, Held)| key_route(&h.key)),
        &name,
        move |_capability, _info| {
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Found>)> = BTreeMap::new();
            let mut topics: Vec<Topic> = members.iter().map(|_| Topic::default()).collect();
            // Drivers that started every document of the hydration.
            let mut hydrated = 0usize;
            let mut last_written: Option<Time> = None;
            move |(found, found_frontier), (held, held_frontier), _output| {
                held.for_each(|_cap, data| {
                    data.drain(..).for_each(|(member, h)| topics[member].held(h))
                });
                found.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    pending
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                        .1
                        .append(data);
                });
                let complete =
                    |t: &Time| !found_frontier.less_equal(t) && !held_frontier.less_equal(t);
                while let Some(entry) = pending.first_entry() {
                    if !complete(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let (_cap, messages) = entry.remove();
                    let mut parts: Vec<FoundRow> = Vec::new();
                    let mut gone = Vec::new();
                    for message in messages {
                        match message {
                            Found::Row(part) => parts.push(part),
                            Found::Gone { key, .. } => gone.push(key),
                            Found::Hydrated(_) => hydrated += 1,
                            Found::Want(_) => {}
                        }
                    }
                    // The parts of each document together, indexed once for every member.
                    sort_parts(&mut parts);
                    let documents: Vec<Parts<'_>> = parts
                        .chunk_by(|a, b| a.doc == b.doc)
                        .filter_map(Parts::new)
                        .collect();
                    for (member, topic) in members.iter().zip(topics.iter_mut()) {
                        if member.control.removed.get() {
                            *topic = Topic::default();
                            continue;
                        }
                        let mut writer = member.writer.borrow_mut();
                        // The records of this time are measured against the inputs read since
                        // the last time written (none while hydrating: those are the topics'
                        // contents).
                        let window: Vec<Time> = match (topic.hydrated, last_written) {
                            (true, Some(last)) => (last + 1..=time).collect(),
                            _ => Vec::new(),
                        };
                        writer.begin_window(&window);
                        let mut write = |key: &str, json: Option<&str>| {
                            if let Err(e) = writer.write(key, json) {
                                failure.borrow_mut().get_or_insert(e);
                            }
                        };
                        for key in &gone {
                            topic.gone(key, &mut write);
                        }
                        for document in &documents {
                            if let Some(doc) = document.assemble(&member.tree) {
                                topic.document(doc, &mut write);
                            }
                        }
                        if !topic.hydrated && hydrated == peers {
                            topic.end_hydration(&mut write);
                            member.control.caught_up.set(true);
                            tracing::debug!(product = %member.tree.product, documents = topic.entries.len(), at = time, "hydrated");
                        }
                    }
                    last_written = Some(time);
                }
            }
        },
    )
}
