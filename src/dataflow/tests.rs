//! The product dataflow without a broker: generated records fed to the sources' arrangements,
//! documents collected by a vector writer, and the result compared with the reference
//! evaluator's documents of the same records, on one and two workers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};

use super::drive::Control;
use super::index::{arrange_index, Index};
use super::product;
use super::propagate::Arrangements;
use super::rows::{arrange_rows, Rows, SourceEvent};
use super::sink::{DocWriter, SinkControl};
use super::tree::{Finder, Tree};
use super::Time;
use crate::decode::{Change, Decoder};
use crate::gen::GenOptions;
use crate::plan::{KeyedArrangement, Plan, SourceId};
use crate::row::Row;

/// Records every write.
#[derive(Default)]
struct VecWriter {
    written: Vec<(String, Option<String>)>,
}

impl DocWriter for VecWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        self.written
            .push((key.to_owned(), value.map(str::to_owned)));
        Ok(())
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The sources' arrangements of one dataflow.
struct Local<'s> {
    rows: BTreeMap<SourceId, Rows<'s>>,
    indexes: BTreeMap<KeyedArrangement, Index<'s>>,
}

impl<'s> Arrangements<'s> for Local<'s> {
    fn rows(&mut self, source: SourceId) -> Rows<'s> {
        self.rows[&source].clone()
    }
    fn index(&mut self, index: &KeyedArrangement) -> Index<'s> {
        self.indexes[index].clone()
    }
}

/// Decoded events, each of a source.
type Events = Vec<(SourceId, SourceEvent)>;

/// The decoded events of generated records: the snapshot, then the changes.
fn events(plan: &Plan, scale: usize, changes: usize, seed: u64) -> (Events, Events) {
    let decode = |records: Vec<crate::gen::Record>| {
        let mut decoders: Vec<Decoder> = plan.sources.iter().map(|_| Decoder::new()).collect();
        let mut out = Vec::new();
        for r in records {
            let source = &plan.sources[r.source];
            let change = decoders[r.source]
                .decode(
                    source,
                    r.key.as_deref().map(str::as_bytes),
                    r.value.as_deref().map(str::as_bytes),
                )
                .expect("generated records decode");
            let event = match change {
                Change::Upsert { key, row } => SourceEvent::Upsert {
                    key,
                    row: Some(row),
                },
                Change::Delete { key } => SourceEvent::Upsert { key, row: None },
                Change::Truncate => SourceEvent::Truncate { worker: 0 },
            };
            out.push((r.source, event));
        }
        out
    };
    let collect = |changes: usize, only_changes: bool| {
        let mut records = Vec::new();
        let options = GenOptions {
            scale,
            changes,
            seed,
        };
        let push = |r| {
            records.push(r);
            Ok(())
        };
        if only_changes {
            crate::gen::generate_changes(plan, &options, push).unwrap();
        } else {
            crate::gen::generate(plan, &options, push).unwrap();
        }
        records
    };
    (decode(collect(0, false)), decode(collect(changes, true)))
}

/// The documents the reference evaluator computes from the same events.
fn expected(plan: &Plan, events: &[(SourceId, SourceEvent)]) -> BTreeMap<String, String> {
    use crate::verify::reference::{expected_documents, Table};
    let mut tables: Vec<Table> = plan.sources.iter().map(|_| Table::new()).collect();
    let old =
        |row: &Row| -> crate::value::Row { row.as_ref().datums().map(|d| d.to_value()).collect() };
    for (source, event) in events {
        match event {
            SourceEvent::Upsert {
                key,
                row: Some(row),
            } => {
                tables[*source].insert(old(key), old(row));
            }
            SourceEvent::Upsert { key, row: None } => {
                tables[*source].remove(&old(key));
            }
            SourceEvent::Truncate { .. } => tables[*source].clear(),
        }
    }
    expected_documents(plan, &plan.products[0], &tables)
}

/// Runs the plan's first product on `workers` workers: the snapshot at one time, the release,
/// then the changes in times of `per_time` events. Returns every write, in order per worker.
fn run(
    plan: &Plan,
    workers: usize,
    snapshot: Vec<(SourceId, SourceEvent)>,
    changes: Vec<(SourceId, SourceEvent)>,
    per_time: usize,
) -> Vec<Vec<(String, Option<String>)>> {
    let plan = Arc::new(plan.clone());
    let (snapshot, changes) = (Arc::new(snapshot), Arc::new(changes));
    let results = Arc::new(Mutex::new(Vec::new()));
    let out = results.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let tree = Rc::new(Tree::of(&plan, &plan.products[0]));
        let writer = Rc::new(RefCell::new(VecWriter::default()));
        let mut inputs: BTreeMap<
            SourceId,
            InputHandle<Time, CapacityContainerBuilder<Vec<SourceEvent>>>,
        > = BTreeMap::new();
        let sources_probe = ProbeHandle::new();
        let mut handles = worker.dataflow::<Time, _, _>(|scope| {
            let mut local = Local {
                rows: BTreeMap::new(),
                indexes: BTreeMap::new(),
            };
            for source in tree.sources() {
                let mut input = InputHandle::new();
                let rows = arrange_rows(
                    input.to_stream(scope),
                    &plan.sources[source].name,
                    plan.sources[source].key.clone(),
                    (),
                );
                rows.stream.clone().probe_with(&sources_probe);
                local.rows.insert(source, rows);
                inputs.insert(source, input);
            }
            for finder in tree.finders() {
                if let Finder::ByIndex(index) = finder {
                    if !local.indexes.contains_key(index) {
                        let arranged = arrange_index(
                            local.rows[&index.source].clone(),
                            index.columns.clone(),
                            "Index",
                        );
                        local.indexes.insert(index.clone(), arranged);
                    }
                }
            }
            product::build(
                scope,
                tree.clone(),
                &mut local,
                writer.clone(),
                Rc::new(RefCell::new(None)),
                Rc::new(SinkControl::default()),
            )
        });
        let peers = worker.peers() as u64;
        let feed = |events: &[(SourceId, SourceEvent)],
                    inputs: &mut BTreeMap<
            SourceId,
            InputHandle<Time, CapacityContainerBuilder<Vec<SourceEvent>>>,
        >| {
            for (source, event) in events {
                let input = inputs.get_mut(source).expect("an input per source");
                match event {
                    SourceEvent::Truncate { .. } => {
                        for w in 0..peers {
                            input.send(SourceEvent::Truncate { worker: w });
                        }
                    }
                    e => input.send(e.clone()),
                }
            }
        };
        let mut time: Time = 1;
        let advance = |time: Time,
                       inputs: &mut BTreeMap<SourceId, InputHandle<_, _>>,
                       handles: &mut product::ProductDataflow| {
            for input in inputs.values_mut() {
                input.advance_to(time);
            }
            handles.control.advance_to(time);
            handles.held.advance_to(time);
        };
        advance(time, &mut inputs, &mut handles);
        if worker.index() == 0 {
            feed(&snapshot, &mut inputs);
        }
        time += 1;
        advance(time, &mut inputs, &mut handles);
        for to in 0..peers {
            handles.control.send(Control::CaughtUp { to });
            handles.control.send(Control::Loaded { to });
        }
        let product::ProductDataflow {
            control,
            held,
            written,
        } = handles;
        drop(control);
        drop(held);
        for chunk in changes.chunks(per_time.max(1)) {
            time += 1;
            for input in inputs.values_mut() {
                input.advance_to(time);
            }
            if worker.index() == 0 {
                feed(chunk, &mut inputs);
            }
            worker.step();
        }
        drop(inputs);
        while !written.done() || !sources_probe.done() {
            worker.step();
        }
        out.lock()
            .unwrap()
            .push(std::mem::take(&mut writer.borrow_mut().written));
    })
    .unwrap();
    let results = results.lock().unwrap().clone();
    results
}

/// The documents a sequence of writes leaves (the last record per key; a tombstone removes).
fn final_documents(writes: &[Vec<(String, Option<String>)>]) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    for worker in writes {
        for (key, value) in worker {
            match value {
                Some(v) => docs.insert(key.clone(), v.clone()),
                None => docs.remove(key),
            };
        }
    }
    docs
}

fn plan_of(file: &str) -> Plan {
    crate::plan::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

#[test]
fn the_user_profile_of_generated_changes_is_the_reference_documents() {
    let plan = plan_of("dataflows/github_user_profile.toml");
    let (snapshot, changes) = events(&plan, 300, 2000, 7);
    let all: Vec<_> = snapshot.iter().chain(changes.iter()).cloned().collect();
    let expected = expected(&plan, &all);
    assert!(expected.len() > 250, "{} documents", expected.len());
    for workers in [1, 2] {
        let writes = run(&plan, workers, snapshot.clone(), changes.clone(), 37);
        let found = final_documents(&writes);
        for key in found.keys().filter(|k| !expected.contains_key(*k)).take(3) {
            let history: Vec<_> = writes.iter().flatten().filter(|(k, _)| k == key).collect();
            eprintln!("unexpected {key}: {history:?}");
        }
        assert_eq!(found.len(), expected.len(), "{workers} workers");
        for (key, doc) in &expected {
            assert_eq!(found.get(key), Some(doc), "{workers} workers, {key}");
        }
    }
}

#[test]
fn the_hydration_alone_is_the_reference_documents() {
    for file in [
        "dataflows/github_user_profile.toml",
        "dataflows/github_repo_card.toml",
        "tests/data/github_repo_feed.toml",
        "tests/data/shop_orders.toml",
    ] {
        let plan = plan_of(file);
        let (snapshot, _) = events(&plan, 200, 0, 3);
        let expected = expected(&plan, &snapshot);
        for workers in [1, 2] {
            let writes = run(&plan, workers, snapshot.clone(), Vec::new(), 1);
            assert_eq!(
                final_documents(&writes),
                expected,
                "{file}, {workers} workers"
            );
            let records: usize = writes.iter().map(Vec::len).sum();
            assert_eq!(records, expected.len(), "one record per document: {file}");
        }
    }
}

/// A rough timing of the in-memory hydration (`cargo test --release -- --ignored --nocapture
/// hydration_timing`); `DENORM_SCALE` sets the scale.
#[test]
#[ignore]
fn hydration_timing() {
    let plan = plan_of("dataflows/github_user_profile.toml");
    let scale: usize = std::env::var("DENORM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let started = std::time::Instant::now();
    let (snapshot, _) = events(&plan, scale, 0, 1);
    eprintln!(
        "prepared {} events in {:.1}s",
        snapshot.len(),
        started.elapsed().as_secs_f64()
    );
    for workers in [1, 2] {
        let started = std::time::Instant::now();
        let writes = run(&plan, workers, snapshot.clone(), Vec::new(), 1);
        let records: usize = writes.iter().map(Vec::len).sum();
        eprintln!(
            "{workers} workers: {records} documents in {:.2}s",
            started.elapsed().as_secs_f64()
        );
    }
}
