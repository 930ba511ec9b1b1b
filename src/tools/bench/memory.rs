//! The in-memory limit of hydration: the product's dataflows (the same [`Catalog`] a job
//! installs) fed with the generated snapshot rows, decoded before the clock starts, grouped
//! into times as a job groups what it reads (bounded in flight), documents rendered to JSON
//! and counted by a null writer. No Kafka and no JSON parsing while timed: what is left is the
//! dataflow and the rendering of documents.
//!
//! With change events ([`GenOptions::changes`]), once every hydration document is written the
//! workers are handed the generated change stream all at once, as a caught-up job that fell
//! behind: the change phase measures the documents written per second when behind.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dataflow::catalog::Catalog;
use crate::dataflow::rows::SourceEvent;
use crate::dataflow::sink::{DocWriter, Failure, SharedWriter};
use crate::dataflow::Time;
use crate::decode::Change;
use crate::plan::{Plan, SourceId};
use crate::runtime::epoch::{EpochLimits, Epochs};
use crate::tools::gen::{EditMix, GenOptions};

/// How long a worker waiting for others may sleep (it wakes on their messages).
const PARK: Duration = Duration::from_millis(1);

/// Counts what a sink writes and drops it.
#[derive(Debug, Default)]
pub struct CountingWriter {
    pub written: Written,
}

impl DocWriter for CountingWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let w = &mut self.written;
        w.bytes += (key.len() + value.map_or(0, str::len)) as u64;
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(key, value), &mut hasher);
        w.digest = w.digest.wrapping_add(std::hash::Hasher::finish(&hasher));
        if value.is_some() {
            w.documents += 1;
        } else {
            w.tombstones += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What an in-memory hydration measured.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub products: Vec<String>,
    pub workers: usize,
    /// Rows fed per poll, rows and bytes per time at most, closed times in flight at most.
    pub batch_size: usize,
    pub max_epoch_records: usize,
    pub max_epoch_bytes: usize,
    pub max_in_flight: usize,
    /// Times the workers closed (each feeds the dataflow one group of rows).
    pub times: u64,
    /// Input rows (generated snapshot records).
    pub rows: u64,
    /// Bytes of the generated records (key and value), for reference.
    pub input_bytes: u64,
    /// Generating and decoding the records (not timed as hydration).
    pub prepare_seconds: f64,
    /// From feeding the first row until every worker's sink wrote its documents.
    pub hydration_seconds: f64,
    /// CPU time (user + system, every thread) from feeding the first row until hydrated.
    pub hydration_cpu_seconds: Option<f64>,
    pub rows_per_second: f64,
    pub documents: u64,
    pub output_bytes: u64,
    /// Order-independent digest of the records written (to check that a change keeps the output).
    pub output_digest: String,
    /// Resident memory with the decoded rows in memory, before the dataflows start.
    pub rss_before_bytes: Option<u64>,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: Option<u64>,
    /// Peak RSS / input rows: everything the process held at its peak, per input row — the
    /// decoded rows (fed into the dataflow, which keeps them in its upsert state), the
    /// dataflow's state (arrangements, the sinks), times in flight, the allocator's slack and the
    /// runtime. Comparable with a job's peak RSS per row, which holds the same plus Kafka's
    /// buffers.
    pub peak_rss_bytes_per_row: Option<f64>,
    /// (peak − before) / rows: what memory grew by while hydrating, per row. Not the state: the
    /// rows the state holds were already counted in `rss_before_bytes`.
    pub growth_bytes_per_row: Option<f64>,
    /// The change phase, when there were change events.
    pub changes: Option<ChangeReport>,
}

/// What the change phase measured: the change events handed to the hydrated job, all at once or
/// at a rate.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    /// How the changes picked the rows they edit.
    pub mix: String,
    /// Change events per second fed at most (`None`: all at once).
    pub rate: Option<f64>,
    /// Change events fed (decoded records; a tombstone after a delete is one too).
    pub events: u64,
    /// From the first worker feeding its first change until the last one wrote its last document.
    pub seconds: f64,
    /// CPU time (user + system, every thread) of the phase.
    pub cpu_seconds: Option<f64>,
    /// Documents and tombstones written in the phase.
    pub documents: u64,
    pub tombstones: u64,
    pub documents_per_second: f64,
    pub output_bytes: u64,
    /// Order-independent digest of the phase's records.
    pub output_digest: String,
}

/// What one worker did.
struct WorkerResult {
    hydrated_after: f64,
    times: u64,
    hydration: Written,
    changes: Option<ChangePhase>,
}

/// What sinks wrote: records, bytes and a digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub documents: u64,
    pub tombstones: u64,
    pub bytes: u64,
    /// Sum of the records' hashes: equal outputs (in any order) have equal digests.
    pub digest: u64,
}

impl Written {
    /// What `writers` wrote, all together.
    fn of(writers: &[Rc<RefCell<CountingWriter>>]) -> Self {
        writers.iter().fold(Written::default(), |w, writer| {
            w.plus(writer.borrow().written)
        })
    }

    fn plus(self, other: Written) -> Self {
        Written {
            documents: self.documents + other.documents,
            tombstones: self.tombstones + other.tombstones,
            bytes: self.bytes + other.bytes,
            digest: self.digest.wrapping_add(other.digest),
        }
    }

    /// What was written since `before`.
    fn since(self, before: Written) -> Self {
        Written {
            documents: self.documents - before.documents,
            tombstones: self.tombstones - before.tombstones,
            bytes: self.bytes - before.bytes,
            digest: self.digest.wrapping_sub(before.digest),
        }
    }
}

/// A worker's change phase: when it started feeding and when its last document was written
/// (seconds since the start), and what it wrote.
struct ChangePhase {
    started: f64,
    ended: f64,
    written: Written,
}

/// Generates the snapshot of `gen`, decodes it, and hydrates the plan's products in memory on
/// `workers` threads; then, if `gen` has changes (picked by `mix`), hands them to the workers.
pub fn run(
    plan: Plan,
    gen: &GenOptions,
    mix: EditMix,
    change_rate: Option<f64>,
    workers: usize,
    batch_size: usize,
    epochs: EpochLimits,
) -> anyhow::Result<MemoryReport> {
    anyhow::ensure!(
        workers > 0 && batch_size > 0,
        "workers and batch size must be positive"
    );
    let prepare = Instant::now();
    let mut shares: Vec<Vec<(SourceId, SourceEvent)>> = vec![Vec::new(); workers];
    let (mut rows, mut input_bytes) = (0u64, 0u64);
    let snapshot = GenOptions {
        changes: 0,
        ..gen.clone()
    };
    // Snapshot rows go to any worker (each key has one); round robin.
    crate::tools::gen::generate(&plan, &snapshot, |r| {
        input_bytes += (r.key.as_ref().map_or(0, String::len)
            + r.value.as_ref().map_or(0, String::len)) as u64;
        for event in decoded_events(&plan, &r, workers)? {
            shares[rows as usize % workers].push((r.source, event));
        }
        rows += 1;
        Ok(())
    })?;
    // A key's changes apply in the order fed: all of them from one worker, the one it routes to.
    let mut change_shares: Vec<Vec<(SourceId, SourceEvent)>> = vec![Vec::new(); workers];
    let mut change_events = 0u64;
    if gen.changes > 0 {
        crate::tools::gen::generate_with(&plan, gen, mix, false, |r| {
            for event in decoded_events(&plan, &r, workers)? {
                change_shares[(event.route() % workers as u64) as usize].push((r.source, event));
                change_events += 1;
            }
            Ok(())
        })?;
    }
    let prepare_seconds = prepare.elapsed().as_secs_f64();
    let products = plan.products.iter().map(|p| p.name.clone()).collect();
    let rss_before = super::proc_status_bytes("VmRSS");

    let shares = Arc::new(Mutex::new((shares, change_shares)));
    let gen_changes = gen.changes;
    let plan = Arc::new(plan);
    let cpu_before = super::proc_cpu_seconds();
    // The CPU time when the first worker starts its change phase.
    let cpu_at_changes: Arc<Mutex<Option<Option<f64>>>> = Arc::new(Mutex::new(None));
    let cpu_mark = cpu_at_changes.clone();
    let start = Instant::now();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (events, changes) = {
            let mut shares = shares.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut shares.0[worker.index()]),
                // Every worker has a change phase when there are changes, even with none of them
                // its own: it writes documents of the others' changes meanwhile.
                (gen_changes > 0).then(|| std::mem::take(&mut shares.1[worker.index()])),
            )
        };
        let mark_cpu = || {
            cpu_mark
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(super::proc_cpu_seconds);
        };
        hydrate(
            worker,
            &plan,
            events,
            changes,
            batch_size,
            epochs,
            start,
            change_rate,
            mark_cpu,
        )
        .map_err(|e| format!("{e:#}"))
    })
    .map_err(|e| anyhow::anyhow!("cannot start the timely workers: {e}"))?;
    let mut results = Vec::new();
    for (i, result) in guards.join().into_iter().enumerate() {
        match result {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => anyhow::bail!("worker {i}: {e}"),
            Err(panic) => anyhow::bail!("worker {i} panicked: {panic}"),
        }
    }
    let hydration_seconds = results.iter().map(|r| r.hydrated_after).fold(0.0, f64::max);
    let peak = super::proc_status_bytes("VmHWM");
    let cpu_after = super::proc_cpu_seconds();
    let cpu_at_changes = cpu_at_changes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .flatten();
    let hydration_cpu_end = if gen.changes > 0 {
        cpu_at_changes
    } else {
        cpu_after
    };
    let changes = change_report(
        &results,
        mix,
        change_rate,
        change_events,
        cpu_at_changes,
        cpu_after,
    );
    let hydration = results
        .iter()
        .fold(Written::default(), |w, r| w.plus(r.hydration));
    Ok(MemoryReport {
        products,
        workers,
        batch_size,
        max_epoch_records: epochs.max_records,
        max_epoch_bytes: epochs.max_bytes,
        max_in_flight: epochs.max_in_flight,
        times: results.iter().map(|r| r.times).sum(),
        rows,
        input_bytes,
        prepare_seconds,
        hydration_seconds,
        hydration_cpu_seconds: hydration_cpu_end.zip(cpu_before).map(|(a, b)| a - b),
        rows_per_second: rows as f64 / hydration_seconds.max(1e-9),
        documents: hydration.documents,
        output_bytes: hydration.bytes,
        output_digest: format!("{:016x}", hydration.digest),
        rss_before_bytes: rss_before,
        peak_rss_bytes: peak,
        peak_rss_bytes_per_row: peak.filter(|_| rows > 0).map(|p| p as f64 / rows as f64),
        growth_bytes_per_row: match (peak, rss_before) {
            (Some(p), Some(b)) if rows > 0 => Some(p.saturating_sub(b) as f64 / rows as f64),
            _ => None,
        },
        changes,
    })
}

/// The dataflow events of generated record `r`, decoded as a job decodes it.
fn decoded_events(
    plan: &Plan,
    r: &crate::tools::gen::Record,
    workers: usize,
) -> anyhow::Result<impl Iterator<Item = SourceEvent>> {
    let change = super::decode_record(plan, r)?;
    anyhow::ensure!(
        !matches!(change, Change::Truncate),
        "the generator wrote a truncate to {}",
        plan.sources[r.source].topic
    );
    Ok(crate::runtime::sources::events(change, workers))
}

/// The change phase over every worker, if there was one.
fn change_report(
    results: &[WorkerResult],
    mix: EditMix,
    rate: Option<f64>,
    events: u64,
    cpu_before: Option<f64>,
    cpu_after: Option<f64>,
) -> Option<ChangeReport> {
    let phases: Vec<&ChangePhase> = results.iter().filter_map(|r| r.changes.as_ref()).collect();
    if phases.is_empty() {
        return None;
    }
    let started = phases.iter().map(|p| p.started).fold(f64::MAX, f64::min);
    let ended = phases.iter().map(|p| p.ended).fold(0.0, f64::max);
    let seconds = (ended - started).max(1e-9);
    let written = phases
        .iter()
        .fold(Written::default(), |w, p| w.plus(p.written));
    Some(ChangeReport {
        mix: format!("{mix:?}").to_lowercase(),
        rate,
        events,
        seconds,
        cpu_seconds: cpu_after.zip(cpu_before).map(|(a, b)| a - b),
        documents: written.documents,
        tombstones: written.tombstones,
        documents_per_second: written.documents as f64 / seconds,
        output_bytes: written.bytes,
        output_digest: format!("{:016x}", written.digest),
    })
}

/// One worker: installs the products, feeds its rows time by time, then releases the sinks
/// (as a caught-up job does) and steps until its documents are written. Then, with `changes`
/// (its share of them, perhaps none), feeds them as fast as its epochs take them (at most at
/// `change_rate` for all workers), and steps until every document they change is written.
#[allow(clippy::too_many_arguments)]
fn hydrate(
    worker: &mut timely::worker::Worker,
    plan: &Plan,
    events: Vec<(SourceId, SourceEvent)>,
    changes: Option<Vec<(SourceId, SourceEvent)>>,
    batch_size: usize,
    limits: EpochLimits,
    start: Instant,
    change_rate: Option<f64>,
    mark_cpu: impl Fn(),
) -> anyhow::Result<WorkerResult> {
    let failure: Failure = Rc::new(RefCell::new(None));
    let mut catalog = Catalog::new();
    let mut writers = Vec::new();
    catalog.install(
        worker,
        plan.clone(),
        |_| {
            let writer = Rc::new(RefCell::new(CountingWriter::default()));
            writers.push(writer.clone());
            Ok(writer as SharedWriter)
        },
        &failure,
    )?;
    let mut feeder = Feeder {
        epochs: Epochs::new(limits),
        batch_size,
        start,
        times: 0,
        failure: &failure,
        rate: None,
        fed: 0,
    };
    feeder.feed(worker, &mut catalog, events)?;
    // Caught up, with an empty output topic: the products' drivers are told so, as a job tells
    // them; the clock moves on until every worker did.
    let (time, peers) = (feeder.epochs.time(), worker.peers());
    for product in catalog.products.iter_mut() {
        product.caught_up(time, peers);
        product.loaded(peers);
    }
    catalog.advance_to(time + 1);
    while !catalog.products.iter().all(|p| p.hydrated()) {
        catalog.advance_to(feeder.clock());
        worker.step_or_park(Some(PARK));
        feeder.check()?;
    }
    let hydrated_after = start.elapsed().as_secs_f64();
    let mut phase = None;
    if let Some(changes) = changes {
        // Every hydration document written, the job is caught up: output closes times from now.
        let hydrated = feeder.clock();
        while catalog.written_frontier() <= hydrated {
            catalog.advance_to(feeder.clock());
            worker.step_or_park(Some(PARK));
            feeder.check()?;
        }
        let before = Written::of(&writers);
        mark_cpu();
        let started = start.elapsed().as_secs_f64();
        feeder.epochs.caught_up();
        feeder.rate = change_rate.map(|r| (r / worker.peers() as f64, Instant::now()));
        feeder.fed = 0;
        feeder.feed(worker, &mut catalog, changes)?;
        feeder.drain(worker, &mut catalog)?;
        phase = Some(ChangePhase {
            started,
            ended: start.elapsed().as_secs_f64(),
            written: Written::of(&writers).since(before),
        });
    } else {
        feeder.drain(worker, &mut catalog)?;
    }
    let hydration = match &phase {
        Some(p) => Written::of(&writers).since(p.written),
        None => Written::of(&writers),
    };
    Ok(WorkerResult {
        hydrated_after,
        times: feeder.times,
        hydration,
        changes: phase,
    })
}

/// Feeds a worker's events into its catalog's sources, grouped into times as a job groups what
/// it reads; time follows the clock (in ms).
struct Feeder<'f> {
    epochs: Epochs,
    batch_size: usize,
    start: Instant,
    /// Times closed.
    times: u64,
    failure: &'f Failure,
    /// Events per second at most, since the instant: a change stream arriving at a rate.
    rate: Option<(f64, Instant)>,
    /// Events fed since the rate was set.
    fed: u64,
}

impl Feeder<'_> {
    fn clock(&self) -> Time {
        self.start.elapsed().as_millis() as Time
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.failure.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Feeds `events` as fast as the epochs take them; returns once the last is fed and its
    /// time closed.
    fn feed(
        &mut self,
        worker: &mut timely::worker::Worker,
        catalog: &mut Catalog,
        events: Vec<(SourceId, SourceEvent)>,
    ) -> anyhow::Result<()> {
        let mut events = events.into_iter().peekable();
        loop {
            let may_read = self.epochs.may_read(|t| catalog.computed_past(t));
            let (mut fed, mut bytes) = (0, 0);
            let due = match self.rate {
                Some((rate, since)) => {
                    let due = (since.elapsed().as_secs_f64() * rate) as u64;
                    due.saturating_sub(self.fed) as usize
                }
                None => usize::MAX,
            };
            if may_read {
                let take = self.batch_size.min(self.epochs.room()).min(due);
                for (s, event) in events.by_ref().take(take) {
                    let (_, input) = catalog
                        .source(s)
                        .ok_or_else(|| anyhow::anyhow!("source {s} is not installed"))?;
                    bytes += event.size();
                    input.send(event);
                    fed += 1;
                }
            }
            self.epochs.fed(fed, bytes);
            self.fed += fed as u64;
            let done = events.peek().is_none();
            let closed = if done {
                self.epochs.close(self.clock())
            } else {
                self.epochs.tick(self.clock(), false, 0)
            };
            self.times += u64::from(closed.is_some());
            catalog.advance_to(self.epochs.time());
            if done {
                return Ok(());
            }
            if may_read && fed > 0 {
                worker.step();
            } else {
                worker.step_or_park(Some(PARK));
            }
            self.check()?;
        }
    }

    /// Closes the inputs and steps until every document is written.
    fn drain(
        &mut self,
        worker: &mut timely::worker::Worker,
        catalog: &mut Catalog,
    ) -> anyhow::Result<()> {
        catalog.close_inputs();
        while !catalog.all_written() {
            worker.step_or_park(Some(PARK));
            self.check()?;
        }
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> Plan {
        crate::plan::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dataflows/github_user_profile.toml"
        )))
        .expect("the example loads")
    }

    #[test]
    fn hydrates_every_document_on_one_and_two_workers() {
        let gen = GenOptions {
            scale: 200,
            changes: 0,
            seed: 3,
        };
        let mut digests = Vec::new();
        // Many small times, and one per worker: the same documents.
        for (workers, max_records) in [(1, 150), (2, 150), (2, 1 << 20)] {
            let limits = EpochLimits {
                max_records,
                max_bytes: usize::MAX,
                max_in_flight: 2,
            };
            let report = run(github(), &gen, EditMix::Popular, None, workers, 100, limits).unwrap();
            // One document per user (the root), every user written once.
            assert_eq!(report.documents, 200, "{report:?}");
            assert!(report.rows > 200 && report.output_bytes > 0, "{report:?}");
            if max_records == 150 {
                assert!(
                    report.times as usize >= report.rows as usize / 150,
                    "{report:?}"
                );
            }
            digests.push(report.output_digest);
        }
        assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    }
}
