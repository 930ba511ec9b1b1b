//! The product dataflow without a broker: generated records fed to the sources' arrangements,
//! documents collected by a vector writer, and the result judged by `denorm verify`'s evaluator
//! (the denorm-verify crate, in memory) on the same records, on one and two workers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};

use super::drive::{Budget, Readiness, WORKER_BUDGET};
use super::index::{arrange_index, Index};
use super::product;
use super::propagate::Arrangements;
use super::rows::{arrange_rows, Rows, SourceEvent};
use super::sink::{DocWriter, SinkControl, SinkMember};
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
    let text = std::fs::read_to_string(path(file)).unwrap();
    verify_product(&text, 0, plan, records, writes)
}

/// As [`verify`], for the product file `text`, the plan's product `product`.
fn verify_product(
    text: &str,
    product: usize,
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
                topic: plan.products[product].output_topic.clone(),
                partition: worker as i32,
                offset: offset as i64,
                key: Some(key.as_bytes().to_vec()),
                value: bytes(value),
            });
        }
    }
    denorm_verify::verify_records(text, &inputs, &outputs).unwrap()
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
    let mut all = run_products(plan, 1, workers, snapshot, changes, per_time, budget);
    all.swap_remove(0)
}

/// Steps every worker must have taken after its inputs closed, without the output finished,
/// before the test calls the dataflow stuck. Counted per worker and judged by the fewest: a
/// worker the OS does not schedule for a while (a loaded machine) lets the others spin through
/// many empty steps, which is no sign of a stuck dataflow; a stuck one spins on every worker.
const STEP_LIMIT: usize = 2_000_000;

/// Each worker's writes, in order.
type Writes = Vec<Vec<(String, Option<String>)>>;

/// Runs the plan's first `products` products, of one shape, in one dataflow (as the catalog
/// installs them). Returns each product's writes, in order per worker.
fn run_products(
    plan: &Plan,
    products: usize,
    workers: usize,
    snapshot: Vec<(SourceId, SourceEvent)>,
    changes: Vec<(SourceId, SourceEvent)>,
    per_time: usize,
    budget: fn(usize) -> usize,
) -> Vec<Writes> {
    let plan = Arc::new(plan.clone());
    let (snapshot, changes) = (Arc::new(snapshot), Arc::new(changes));
    let results = Arc::new(Mutex::new(Vec::new()));
    let out = results.clone();
    let steps_by_worker: Arc<Vec<AtomicUsize>> =
        Arc::new((0..workers).map(|_| AtomicUsize::new(0)).collect());
    timely::execute(timely::Config::process(workers), move |worker| {
        let trees: Vec<Rc<Tree>> = (0..products)
            .map(|p| Rc::new(Tree::of(&plan, &plan.products[p])))
            .collect();
        let tree = trees[0].clone();
        let writers: Vec<Rc<RefCell<VecWriter>>> = (0..products)
            .map(|_| Rc::new(RefCell::new(VecWriter::default())))
            .collect();
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
            let members = trees
                .iter()
                .zip(&writers)
                .map(|(tree, writer)| SinkMember {
                    tree: tree.clone(),
                    writer: writer.clone(),
                    control: Rc::new(SinkControl::default()),
                })
                .collect();
            product::build(
                scope,
                members,
                &mut local,
                Rc::new(RefCell::new(None)),
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
            for held in handles.held.iter_mut() {
                held.advance_to(time);
            }
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
        let mine = &steps_by_worker[worker.index()];
        while !written.done() || !sources_probe.done() {
            worker.step();
            mine.fetch_add(1, Ordering::Relaxed);
            let fewest = steps_by_worker
                .iter()
                .map(|s| s.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0);
            assert!(
                fewest < STEP_LIMIT,
                "the dataflow is stuck: every worker took {fewest} steps and the output is not finished"
            );
        }
        let written: Vec<_> = writers
            .iter()
            .map(|w| std::mem::take(&mut w.borrow_mut().written))
            .collect();
        out.lock().unwrap().push(written);
    })
    .unwrap();
    // Per worker, per product → per product, per worker.
    let per_worker = results.lock().unwrap().clone();
    (0..products)
        .map(|p| per_worker.iter().map(|w| w[p].clone()).collect())
        .collect()
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

/// Two products of one shape (the same sources and links; other root fields, in another
/// order) share one dataflow: one driver and one finding of rows, a sink that writes each its
/// own documents. Each product's documents are the reference's, through hydration and changes.
#[test]
fn products_of_one_shape_share_a_dataflow_and_each_writes_its_own_documents() {
    let base = std::fs::read_to_string(path("dataflows/github_user_profile.toml")).unwrap();
    let variant = base
        .replace(
            r#"name = "github_user_profile""#,
            r#"name = "profile_variant""#,
        )
        .replace(
            r#"output_topic = "github.user_profile""#,
            r#"output_topic = "github.profile_variant""#,
        )
        .replace(
            r#"fields = ["email", "username"]"#,
            r#"fields = ["username", "id", "registered_at"]"#,
        );
    assert_ne!(variant, base);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), &base).unwrap();
    std::fs::write(dir.path().join("b.toml"), &variant).unwrap();
    let plan = crate::plan::load_all(&[dir.path().to_owned()]).unwrap();
    let names: Vec<&str> = plan.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["github_user_profile", "profile_variant"]);
    let shape = |p: usize| Tree::of(&plan, &plan.products[p]).shape_key();
    assert_eq!(shape(0), shape(1));
    let (snapshot, changes) = generated(&plan, 300, 1500, 11);
    let all: Vec<_> = snapshot.iter().chain(&changes).cloned().collect();
    let (snapshot, changes) = (decoded(&plan, &snapshot), decoded(&plan, &changes));
    for workers in [1, 2] {
        let writes = run_products(
            &plan,
            2,
            workers,
            snapshot.clone(),
            changes.clone(),
            29,
            |_| WORKER_BUDGET,
        );
        for (product, text) in [&base, &variant].into_iter().enumerate() {
            let verdict = verify_product(text, product, &plan, &all, &writes[product]);
            assert!(
                verdict.ok(0),
                "{} on {workers} workers:\n{}",
                names[product],
                verdict.report(0)
            );
            assert!(verdict.comparisons[0].expected > 250);
        }
        assert_ne!(writes[0], writes[1], "each writes its own documents");
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

// ---------------------------------------------------------------------------------------------
// Hand-computed documents (tests-honest): a small product written here, Debezium records written
// by hand, and every document of each stage written out by hand, compared one by one (not with
// an evaluator, not by counts or digests).
mod hand_computed {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::{decoded, run};
    use crate::plan::Plan;
    use crate::tools::gen::Record;

    /// Customers with their country (`one`), their orders newest-total first (`order_by` desc),
    /// and each order's SKUs (a value list): three levels.
    const PRODUCT: &str = r#"
[product]
name = "hand"
output_topic = "hand.out"

[sources.customers]
topic = "hand.customers"
primary_key = ["id"]
columns = { id = "int", name = "string", country = "string" }

[sources.countries]
topic = "hand.countries"
primary_key = ["code"]
columns = { code = "string", label = "string" }

[sources.orders]
topic = "hand.orders"
primary_key = ["id"]
columns = { id = "int", customer_id = "int", total = "int" }

[sources.lines]
topic = "hand.lines"
primary_key = ["order_id", "no"]
columns = { order_id = "int", no = "int", sku = "string" }

[document]
source = "customers"
fields = ["id", "name"]

[[document.relations]]
name = "country"
cardinality = "one"
source = "countries"
on = { country = "code" }
fields = ["label"]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "customer_id" }
fields = ["id", "total"]
order_by = ["total desc"]

[[document.relations.relations]]
name = "skus"
cardinality = "many"
source = "lines"
on = { id = "order_id" }
value = "sku"
"#;

    /// Writes Debezium records (schema-less envelopes; deletes as PostgreSQL sends them, then
    /// their tombstone) for the sources of the plan.
    struct Db<'p> {
        plan: &'p Plan,
    }

    impl Db<'_> {
        fn source(&self, name: &str) -> usize {
            self.plan
                .sources
                .iter()
                .position(|s| s.name == name)
                .unwrap()
        }
        fn key(&self, source: &str, row: &Value) -> String {
            let key: serde_json::Map<String, Value> = self.plan.sources[self.source(source)]
                .key
                .iter()
                .map(|&c| {
                    let name = &self.plan.sources[self.source(source)].columns[c].name;
                    (name.clone(), row[name].clone())
                })
                .collect();
            Value::Object(key).to_string()
        }
        fn envelope(&self, source: &str, op: &str, before: &Value, after: &Value) -> Record {
            let row = if after.is_null() { before } else { after };
            Record {
                source: self.source(source),
                key: Some(self.key(source, row)),
                value: Some(
                    json!({"before": before, "after": after, "op": op, "source": {"table": source}})
                        .to_string(),
                ),
            }
        }
        fn snapshot(&self, source: &str, row: Value) -> Record {
            self.envelope(source, "r", &Value::Null, &row)
        }
        fn insert(&self, source: &str, row: Value) -> Record {
            self.envelope(source, "c", &Value::Null, &row)
        }
        fn update(&self, source: &str, before: Value, after: Value) -> Record {
            self.envelope(source, "u", &before, &after)
        }
        fn delete(&self, source: &str, before: Value) -> Vec<Record> {
            let mut tombstone = self.envelope(source, "d", &before, &Value::Null);
            let delete = tombstone.clone();
            tombstone.value = None;
            vec![delete, tombstone]
        }
        /// A primary-key change as Debezium writes it: a delete of the old key (and its
        /// tombstone), then a create of the new one.
        fn rekey(&self, source: &str, before: Value, after: Value) -> Vec<Record> {
            let mut out = self.delete(source, before);
            out.push(self.insert(source, after));
            out
        }
    }

    fn customer(id: i64, name: &str, country: Option<&str>) -> Value {
        json!({"id": id, "name": name, "country": country})
    }
    fn order(id: i64, customer_id: i64, total: i64) -> Value {
        json!({"id": id, "customer_id": customer_id, "total": total})
    }
    fn line(order_id: i64, no: i64, sku: &str) -> Value {
        json!({"order_id": order_id, "no": no, "sku": sku})
    }
    fn country(code: &str, label: &str) -> Value {
        json!({"code": code, "label": label})
    }

    /// The documents of one stage: root id → document (as JSON, compared as JSON text).
    type Docs = BTreeMap<String, String>;

    fn docs(list: &[(i64, Value)]) -> Docs {
        list.iter()
            .map(|(id, doc)| (json!({ "id": id }).to_string(), doc.to_string()))
            .collect()
    }

    /// What the writes leave: the last value per key, a tombstone removing it.
    fn left(writes: &[Vec<(String, Option<String>)>]) -> Docs {
        let mut out = Docs::new();
        for written in writes {
            for (key, value) in written {
                match value {
                    Some(v) => out.insert(key.clone(), v.clone()),
                    None => out.remove(key),
                };
            }
        }
        out
    }

    /// Checks the documents the writes leave against `expected`, document by document.
    fn check(
        stage: &str,
        workers: usize,
        writes: &[Vec<(String, Option<String>)>],
        expected: &Docs,
    ) {
        let got = left(writes);
        for (key, doc) in expected {
            assert_eq!(
                got.get(key),
                Some(doc),
                "stage {stage}, {workers} workers: document {key}"
            );
        }
        for key in got.keys() {
            assert!(
                expected.contains_key(key),
                "stage {stage}, {workers} workers: unexpected document {key}: {}",
                got[key]
            );
        }
    }

    #[test]
    fn moves_deletes_key_changes_one_relations_and_descending_order_give_the_hand_computed_documents(
    ) {
        let plan = crate::plan::parse(std::path::Path::new("hand.toml"), PRODUCT).unwrap();
        let db = Db { plan: &plan };
        let snapshot = vec![
            db.snapshot("countries", country("fr", "France")),
            db.snapshot("countries", country("de", "Germany")),
            db.snapshot("customers", customer(1, "Ann", Some("fr"))),
            db.snapshot("customers", customer(2, "Bob", Some("de"))),
            db.snapshot("customers", customer(3, "Cid", Some("fr"))),
            db.snapshot("customers", customer(4, "Dee", None)),
            db.snapshot("customers", customer(5, "Eve", Some("it"))), // no such country
            db.snapshot("orders", order(10, 1, 50)),
            db.snapshot("orders", order(11, 1, 70)),
            db.snapshot("orders", order(12, 2, 20)),
            db.snapshot("orders", order(13, 3, 5)),
            db.snapshot("orders", order(14, 3, 30)),
            db.snapshot("lines", line(10, 1, "a")),
            db.snapshot("lines", line(10, 2, "b")),
            db.snapshot("lines", line(11, 1, "c")),
            db.snapshot("lines", line(12, 1, "d")),
            db.snapshot("lines", line(13, 1, "e")),
            db.snapshot("lines", line(14, 1, "f")),
            db.snapshot("lines", line(14, 2, "a")),
        ];
        let eve = json!({"id": 5, "name": "Eve", "country": null, "orders": []});
        let hydrated = docs(&[
            (
                1,
                json!({"id": 1, "name": "Ann", "country": {"label": "France"}, "orders": [
                    {"id": 11, "total": 70, "skus": ["c"]},
                    {"id": 10, "total": 50, "skus": ["a", "b"]}]}),
            ),
            (
                2,
                json!({"id": 2, "name": "Bob", "country": {"label": "Germany"}, "orders": [
                    {"id": 12, "total": 20, "skus": ["d"]}]}),
            ),
            (
                3,
                json!({"id": 3, "name": "Cid", "country": {"label": "France"}, "orders": [
                    {"id": 14, "total": 30, "skus": ["a", "f"]},
                    {"id": 13, "total": 5, "skus": ["e"]}]}),
            ),
            (
                4,
                json!({"id": 4, "name": "Dee", "country": null, "orders": []}),
            ),
            (5, eve.clone()),
        ]);

        // Each stage: its changes (after those of the stages before) and the documents then.
        let mut stages: Vec<(&str, Vec<Record>, Docs)> = vec![("hydration", Vec::new(), hydrated)];

        // A child moves between parents: order 10 (with its lines) from Ann to Bob.
        let moved = docs(&[
            (
                1,
                json!({"id": 1, "name": "Ann", "country": {"label": "France"}, "orders": [
                    {"id": 11, "total": 70, "skus": ["c"]}]}),
            ),
            (
                2,
                json!({"id": 2, "name": "Bob", "country": {"label": "Germany"}, "orders": [
                    {"id": 10, "total": 50, "skus": ["a", "b"]},
                    {"id": 12, "total": 20, "skus": ["d"]}]}),
            ),
            (
                3,
                json!({"id": 3, "name": "Cid", "country": {"label": "France"}, "orders": [
                    {"id": 14, "total": 30, "skus": ["a", "f"]},
                    {"id": 13, "total": 5, "skus": ["e"]}]}),
            ),
            (
                4,
                json!({"id": 4, "name": "Dee", "country": null, "orders": []}),
            ),
            (5, eve.clone()),
        ]);
        stages.push((
            "move",
            vec![db.update("orders", order(10, 1, 50), order(10, 2, 50))],
            moved.clone(),
        ));

        // A parent is deleted before its children: Cid goes, then one of his orders (and its
        // line). His document is gone and stays gone.
        let mut parent_gone = moved.clone();
        parent_gone.remove(&json!({"id": 3}).to_string());
        let mut changes = db.delete("customers", customer(3, "Cid", Some("fr")));
        changes.extend(db.delete("orders", order(13, 3, 5)));
        changes.extend(db.delete("lines", line(13, 1, "e")));
        stages.push(("parent deleted first", changes, parent_gone.clone()));

        // The parent comes back (another name and country): the order it kept is nested again.
        let mut returned = parent_gone.clone();
        returned.insert(
            json!({"id": 3}).to_string(),
            json!({"id": 3, "name": "Cid2", "country": {"label": "Germany"}, "orders": [
                {"id": 14, "total": 30, "skus": ["a", "f"]}]})
            .to_string(),
        );
        stages.push((
            "parent back",
            vec![db.insert("customers", customer(3, "Cid2", Some("de")))],
            returned.clone(),
        ));

        // Primary-key changes: a root (Dee 4 → 40: a tombstone and a new document) and a child
        // with its line (order 12 → 15).
        let mut rekeyed = returned.clone();
        rekeyed.remove(&json!({"id": 4}).to_string());
        rekeyed.insert(
            json!({"id": 40}).to_string(),
            json!({"id": 40, "name": "Dee", "country": null, "orders": []}).to_string(),
        );
        rekeyed.insert(
            json!({"id": 2}).to_string(),
            json!({"id": 2, "name": "Bob", "country": {"label": "Germany"}, "orders": [
                {"id": 10, "total": 50, "skus": ["a", "b"]},
                {"id": 15, "total": 20, "skus": ["d"]}]})
            .to_string(),
        );
        let mut changes = db.rekey(
            "customers",
            customer(4, "Dee", None),
            customer(40, "Dee", None),
        );
        changes.extend(db.rekey("orders", order(12, 2, 20), order(15, 2, 20)));
        changes.extend(db.rekey("lines", line(12, 1, "d"), line(15, 1, "d")));
        stages.push(("key changes", changes, rekeyed.clone()));

        // The `one` relation: a country's label changes (every customer of it), a customer
        // changes country; the descending order: an order's total passes another's; a SKU
        // changes in a nested list.
        let last = docs(&[
            (
                1,
                json!({"id": 1, "name": "Ann", "country": {"label": "Deutschland"}, "orders": [
                    {"id": 11, "total": 70, "skus": ["c"]}]}),
            ),
            (
                2,
                json!({"id": 2, "name": "Bob", "country": {"label": "Deutschland"}, "orders": [
                    {"id": 15, "total": 60, "skus": ["d"]},
                    {"id": 10, "total": 50, "skus": ["a", "z"]}]}),
            ),
            (
                3,
                json!({"id": 3, "name": "Cid2", "country": {"label": "Deutschland"}, "orders": [
                    {"id": 14, "total": 30, "skus": ["a", "f"]}]}),
            ),
            (
                40,
                json!({"id": 40, "name": "Dee", "country": null, "orders": []}),
            ),
            (5, eve.clone()),
        ]);
        stages.push((
            "one, order and values",
            vec![
                db.update(
                    "countries",
                    country("de", "Germany"),
                    country("de", "Deutschland"),
                ),
                db.update(
                    "customers",
                    customer(1, "Ann", Some("fr")),
                    customer(1, "Ann", Some("de")),
                ),
                db.update("orders", order(15, 2, 20), order(15, 2, 60)),
                db.update("lines", line(10, 2, "b"), line(10, 2, "z")),
            ],
            last,
        ));

        // Each stage runs from the start: the snapshot hydrates, then the changes of every stage
        // up to it come one per time.
        let events = decoded(&plan, &snapshot);
        for workers in [1, 2] {
            let mut changes = Vec::new();
            for (stage, more, expected) in &stages {
                changes.extend(more.iter().cloned());
                let writes = run(&plan, workers, events.clone(), decoded(&plan, &changes), 1);
                check(stage, workers, &writes, expected);
                // Eve never changes: her document is written once, at hydration.
                let eve_key = json!({"id": 5}).to_string();
                let eve_writes = writes
                    .iter()
                    .flatten()
                    .filter(|(k, _)| k == &eve_key)
                    .count();
                assert_eq!(
                    eve_writes, 1,
                    "stage {stage}, {workers} workers: Eve written {eve_writes} times"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Which roots a change dirties.
mod dirtied {
    use std::collections::{BTreeMap, BTreeSet};
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::{Inspect, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    use super::super::drive::{Dirty, Readiness};
    use super::super::propagate::propagate;
    use super::super::rows::{arrange_rows, SourceEvent};
    use super::super::tree::tests::plan as users_and_orders;
    use super::super::tree::Tree;
    use super::super::Time;
    use super::Local;
    use crate::row::Row;
    use crate::value::Value;

    /// A row of `source` from its columns by name (the others null).
    fn row(plan: &crate::plan::Plan, source: usize, values: &[(&str, Value)]) -> Row {
        let columns = &plan.sources[source].columns;
        let mut row = vec![Value::Null; columns.len()];
        for (name, value) in values {
            let c = columns.iter().position(|c| c.name == *name).unwrap();
            row[c] = value.clone();
        }
        Row::from_values(&row)
    }

    /// The key hashes of the roots dirtied at each time, for the events of `stages` at times 0,
    /// 1, ...; `plan`'s product is released at 0 (the hydration builds what is there then).
    fn dirtied(
        plan: &crate::plan::Plan,
        stages: Vec<Vec<(usize, Row, Row)>>,
    ) -> BTreeMap<Time, BTreeSet<u64>> {
        let plan = plan.clone();
        let seen = Arc::new(Mutex::new(BTreeMap::<Time, BTreeSet<u64>>::new()));
        let out = seen.clone();
        timely::execute_directly(move |worker| {
            let tree = Rc::new(Tree::of(&plan, &plan.products[0]));
            let used = Tree::used_columns(&[&tree]);
            let mut inputs = BTreeMap::new();
            let mut control = InputHandle::<Time, CapacityContainerBuilder<Vec<Readiness>>>::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<Time, _, _>(|scope| {
                let mut local = Local {
                    rows: BTreeMap::new(),
                    indexes: BTreeMap::new(),
                };
                for source in tree.sources() {
                    let mut input = InputHandle::new();
                    let s = &plan.sources[source];
                    let rows = arrange_rows(input.to_stream(scope), &s.name, s.key.clone(), ());
                    local.rows.insert(source, rows);
                    inputs.insert(source, input);
                }
                let seen = out.clone();
                propagate(&tree, &used, &control.to_stream(scope), &mut local)
                    .inspect_core(move |event| {
                        if let Ok((stamp, dirty)) = event {
                            let time = *stamp.least().expect("a time");
                            let mut seen = seen.lock().unwrap();
                            seen.entry(time)
                                .or_default()
                                .extend(dirty.iter().map(|d: &Dirty| d.hash));
                        }
                    })
                    .probe_with(&probe);
            });
            control.send(Readiness::CaughtUp { to: 0 });
            control.send(Readiness::Loaded { to: 0 });
            for (time, events) in stages.iter().enumerate() {
                for (source, key, row) in events {
                    inputs.get_mut(source).unwrap().send(SourceEvent::Upsert {
                        key: key.clone(),
                        row: Some(row.clone()),
                    });
                }
                let next = time as Time + 1;
                for input in inputs.values_mut() {
                    input.advance_to(next);
                }
                control.advance_to(next);
                while probe.less_than(&next) {
                    worker.step();
                }
            }
        });
        let dirtied = seen.lock().unwrap().clone();
        dirtied
    }

    #[test]
    fn only_changes_of_columns_a_document_reads_dirty_roots() {
        let plan = users_and_orders(r#"["name"]"#);
        let source = |name: &str| plan.sources.iter().position(|s| s.name == name).unwrap();
        let (users, orders) = (source("users"), source("orders"));
        let key = |id: i64| Row::from_values([&Value::Int(id)]);
        let user = |id: i64, name: &str, seen: i64| {
            (
                users,
                key(id),
                row(
                    &plan,
                    users,
                    &[
                        ("id", Value::Int(id)),
                        ("name", Value::str(name)),
                        ("seen", Value::Int(seen)),
                    ],
                ),
            )
        };
        let order = |id: i64, user: i64, total: i64, note: &str| {
            (
                orders,
                key(id),
                row(
                    &plan,
                    orders,
                    &[
                        ("id", Value::Int(id)),
                        ("user", Value::Int(user)),
                        ("total", Value::Int(total)),
                        ("note", Value::str(note)),
                    ],
                ),
            )
        };
        let dirty = dirtied(
            &plan,
            vec![
                // Time 0: the snapshot, released at 0 (the hydration builds it).
                vec![
                    user(1, "a", 0),
                    user(2, "b", 0),
                    order(10, 1, 5, "x"),
                    order(11, 2, 7, "y"),
                ],
                // Time 1: columns no document reads.
                vec![user(1, "a", 99), order(10, 1, 5, "changed")],
                // Time 2: a shown user column, a shown order column (user 2's order).
                vec![user(1, "A", 99), order(11, 2, 8, "y")],
                // Time 3: an order moves from user 1 to user 2: both documents change.
                vec![order(10, 2, 5, "changed")],
            ],
        );
        let hash = |id: i64| key(id).hash();
        let both: BTreeSet<u64> = [hash(1), hash(2)].into();
        let expected: BTreeMap<Time, BTreeSet<u64>> = [(2, both.clone()), (3, both)].into();
        assert_eq!(dirty, expected);
    }
}
