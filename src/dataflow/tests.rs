//! The product dataflow without a broker: generated records fed to the sources' arrangements,
//! documents collected by a vector writer, and the result judged by `denorm verify`'s evaluator
//! (the denorm-verify crate, in memory) on the same records, on one and two workers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};

use super::drive::{Budget, Readiness, WORKER_BUDGET};
use super::index::{arrange_index, Index};
use super::product;
use super::propagate::Arrangements;
use super::rows::{arrange_rows, Rows, SourceEvent};
use super::sink::{DocWriter, SinkControl};
use super::tree::{Finder, Tree};
use super::Time;
use crate::decode::{Change, Decoder};
use crate::plan::{KeyedArrangement, Plan, SourceId};
use crate::tools::gen::GenOptions;

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

/// Generated records of the plan's sources: the snapshot, then the changes.
fn generated(
    plan: &Plan,
    scale: usize,
    changes: usize,
    seed: u64,
) -> (
    Vec<crate::tools::gen::Record>,
    Vec<crate::tools::gen::Record>,
) {
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
            crate::tools::gen::generate_changes(plan, &options, push).unwrap();
        } else {
            crate::tools::gen::generate(plan, &options, push).unwrap();
        }
        records
    };
    (collect(0, false), collect(changes, true))
}

/// The engine's decoded events of generated records.
fn decoded(plan: &Plan, records: &[crate::tools::gen::Record]) -> Events {
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
}

/// How the documents the writes leave compare with those `denorm verify`'s evaluator (the
/// denorm-verify crate: its own decoder and evaluation of the product file) computes from the
/// same records, without a broker. The records are one partition in generation order; each
/// worker's writes are one partition of the output (a key is written by one worker).
fn verify(
    file: &str,
    plan: &Plan,
    records: &[crate::tools::gen::Record],
    writes: &[Vec<(String, Option<String>)>],
) -> denorm_verify::Run {
    let bytes = |text: &Option<String>| text.as_ref().map(|t| t.as_bytes().to_vec());
    let inputs: Vec<denorm_verify::Record> = records
        .iter()
        .enumerate()
        .map(|(offset, r)| denorm_verify::Record {
            topic: plan.sources[r.source].topic.clone(),
            partition: 0,
            offset: offset as i64,
            key: bytes(&r.key),
            value: bytes(&r.value),
        })
        .collect();
    let mut outputs = Vec::new();
    for (worker, written) in writes.iter().enumerate() {
        for (offset, (key, value)) in written.iter().enumerate() {
            outputs.push(denorm_verify::Record {
                topic: plan.products[0].output_topic.clone(),
                partition: worker as i32,
                offset: offset as i64,
                key: Some(key.as_bytes().to_vec()),
                value: bytes(value),
            });
        }
    }
    let text = std::fs::read_to_string(path(file)).unwrap();
    denorm_verify::verify_records(&text, &inputs, &outputs).unwrap()
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
    run_with_budget(plan, workers, snapshot, changes, per_time, |_| {
        WORKER_BUDGET
    })
}

/// Steps a worker may take after its inputs closed before the test calls the dataflow stuck.
const STEP_LIMIT: usize = 2_000_000;

/// As [`run`], with the documents a worker's drivers may have in flight (`budget` of the
/// worker's index).
fn run_with_budget(
    plan: &Plan,
    workers: usize,
    snapshot: Vec<(SourceId, SourceEvent)>,
    changes: Vec<(SourceId, SourceEvent)>,
    per_time: usize,
    budget: fn(usize) -> usize,
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
        let index = worker.index();
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
                Budget::new(budget(index)),
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
            handles.control.send(Readiness::CaughtUp { to });
            handles.control.send(Readiness::Loaded { to });
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
        let mut steps = 0;
        while !written.done() || !sources_probe.done() {
            worker.step();
            steps += 1;
            assert!(
                steps < STEP_LIMIT,
                "the dataflow is stuck: nothing written for {steps} steps"
            );
        }
        out.lock()
            .unwrap()
            .push(std::mem::take(&mut writer.borrow_mut().written));
    })
    .unwrap();
    let results = results.lock().unwrap().clone();
    results
}

fn path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn plan_of(file: &str) -> Plan {
    crate::plan::load(&path(file)).unwrap()
}

#[test]
fn the_user_profile_of_generated_changes_is_the_reference_documents() {
    let file = "dataflows/github_user_profile.toml";
    let plan = plan_of(file);
    let (snapshot, changes) = generated(&plan, 300, 2000, 7);
    let all: Vec<_> = snapshot.iter().chain(&changes).cloned().collect();
    let (snapshot, changes) = (decoded(&plan, &snapshot), decoded(&plan, &changes));
    for workers in [1, 2] {
        let writes = run(&plan, workers, snapshot.clone(), changes.clone(), 37);
        let verdict = verify(file, &plan, &all, &writes);
        assert!(verdict.ok(0), "{workers} workers:\n{}", verdict.report(0));
        let expected = verdict.comparisons[0].expected;
        assert!(expected > 250, "{expected} documents");
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
        let (snapshot, _) = generated(&plan, 200, 0, 3);
        let events = decoded(&plan, &snapshot);
        for workers in [1, 2] {
            let writes = run(&plan, workers, events.clone(), Vec::new(), 1);
            let verdict = verify(file, &plan, &snapshot, &writes);
            assert!(
                verdict.ok(0),
                "{file}, {workers} workers:\n{}",
                verdict.report(0)
            );
            let records: usize = writes.iter().map(Vec::len).sum();
            assert_eq!(
                records, verdict.comparisons[0].expected,
                "one record per document: {file}"
            );
        }
    }
}

/// A worker whose budget of documents in flight is spent (here: none at all) still starts its
/// documents, a small chunk at a time: the other worker's documents of the product are written
/// only once this worker's driver has moved past their time, so waiting for budget there could
/// wait forever (two products, each holding one worker's budget, waiting for each other).
#[test]
fn a_driver_without_budget_still_makes_progress() {
    let file = "dataflows/github_user_profile.toml";
    let plan = plan_of(file);
    let (snapshot, _) = generated(&plan, 300, 0, 5);
    let events = decoded(&plan, &snapshot);
    let writes = run_with_budget(&plan, 2, events, Vec::new(), 1, |worker| {
        if worker == 1 {
            0
        } else {
            WORKER_BUDGET
        }
    });
    let verdict = verify(file, &plan, &snapshot, &writes);
    assert!(verdict.ok(0), "{}", verdict.report(0));
    assert!(verdict.comparisons[0].expected > 250);
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
    let snapshot = decoded(&plan, &generated(&plan, scale, 0, 1).0);
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
