//! The output side of a product: turns the root collection's changes into upsert records.
//!
//! Updates are held per time until every worker has passed that time, then all completed times
//! are consolidated together, key by key: a key whose document was replaced emits the new
//! document, a key left with only a retraction emits a tombstone, and a key whose changes cancel
//! (changed and changed back, inserted and deleted) emits nothing. Each root key is owned by one
//! worker, so records of one key are written in order by one producer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::Hashable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
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
                let mut pending: BTreeMap<Time, Vec<Pending>> = BTreeMap::new();
                let mut ready: Vec<((Row, Value), isize)> = Vec::new();
                let mut text = String::new();
                move |(input, frontier), _output| {
                    input.for_each(|_cap, data| {
                        for (kv, time, diff) in data.drain(..) {
                            pending.entry(time).or_default().push((kv, diff));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        ready.append(&mut entry.remove());
                    }
                    if ready.is_empty() {
                        return;
                    }
                    consolidate(&mut ready);
                    let mut writer = writer.borrow_mut();
                    let mut i = 0;
                    while i < ready.len() {
                        let key = ready[i].0 .0.clone();
                        let mut j = i;
                        let mut latest: Option<&Value> = None;
                        while j < ready.len() && ready[j].0 .0 == key {
                            if ready[j].1 > 0 {
                                latest = Some(&ready[j].0 .1);
                            }
                            j += 1;
                        }
                        let key_text = render_key(&key_names, &key);
                        let result = match latest {
                            Some(doc) => {
                                text.clear();
                                write_json(doc, &shape, &mut text);
                                writer.write(&key_text, Some(&text))
                            }
                            None => writer.write(&key_text, None),
                        };
                        if let Err(e) = result {
                            failure.borrow_mut().get_or_insert(e);
                        }
                        i = j;
                    }
                    ready.clear();
                }
            },
        )
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
