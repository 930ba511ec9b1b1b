//! The in-memory limit of hydration: the product's dataflows (the same [`Catalog`] a job
//! installs) fed with the generated snapshot rows, decoded before the clock starts, grouped
//! into times as a job groups what it reads (bounded in flight), documents rendered to JSON
//! and counted by a null writer. No Kafka and no JSON parsing while timed: what is left is the
//! dataflow and the rendering of documents.

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
use crate::tools::gen::GenOptions;

/// How long a worker waiting for others may sleep (it wakes on their messages).
const PARK: Duration = Duration::from_millis(1);

/// Counts what a sink writes and drops it.
#[derive(Debug, Default)]
pub struct CountingWriter {
    pub documents: u64,
    pub tombstones: u64,
    pub bytes: u64,
    /// Sum of the records' hashes: equal outputs (in any order) have equal digests.
    pub digest: u64,
}

impl DocWriter for CountingWriter {
    fn write(&mut self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        self.bytes += (key.len() + value.map_or(0, str::len)) as u64;
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(key, value), &mut hasher);
        self.digest = self.digest.wrapping_add(std::hash::Hasher::finish(&hasher));
        if value.is_some() {
            self.documents += 1;
        } else {
            self.tombstones += 1;
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
}

/// What one worker did.
struct WorkerResult {
    hydrated_after: f64,
    times: u64,
    documents: u64,
    bytes: u64,
    digest: u64,
}

/// Generates the snapshot of `gen`, decodes it, and hydrates the plan's products in memory on
/// `workers` threads.
pub fn run(
    plan: Plan,
    gen: &GenOptions,
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
    crate::tools::gen::generate(&plan, gen, |r| {
        let source = &plan.sources[r.source];
        input_bytes += (r.key.as_ref().map_or(0, String::len)
            + r.value.as_ref().map_or(0, String::len)) as u64;
        let change = super::decode_record(&plan, &r)?;
        anyhow::ensure!(
            !matches!(change, Change::Truncate),
            "the generator wrote a truncate to {}",
            source.topic
        );
        for event in crate::runtime::sources::events(change, workers) {
            shares[rows as usize % workers].push((r.source, event));
        }
        rows += 1;
        Ok(())
    })?;
    let prepare_seconds = prepare.elapsed().as_secs_f64();
    let products = plan.products.iter().map(|p| p.name.clone()).collect();
    let rss_before = super::proc_status_bytes("VmRSS");

    let shares = Arc::new(Mutex::new(shares));
    let plan = Arc::new(plan);
    let cpu_before = super::proc_cpu_seconds();
    let start = Instant::now();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let events =
            std::mem::take(&mut shares.lock().unwrap_or_else(|p| p.into_inner())[worker.index()]);
        hydrate(worker, &plan, events, batch_size, epochs, start).map_err(|e| format!("{e:#}"))
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
        hydration_cpu_seconds: cpu_after.zip(cpu_before).map(|(a, b)| a - b),
        rows_per_second: rows as f64 / hydration_seconds.max(1e-9),
        documents: results.iter().map(|r| r.documents).sum(),
        output_bytes: results.iter().map(|r| r.bytes).sum(),
        output_digest: format!(
            "{:016x}",
            results.iter().fold(0u64, |d, r| d.wrapping_add(r.digest))
        ),
        rss_before_bytes: rss_before,
        peak_rss_bytes: peak,
        peak_rss_bytes_per_row: peak.filter(|_| rows > 0).map(|p| p as f64 / rows as f64),
        growth_bytes_per_row: match (peak, rss_before) {
            (Some(p), Some(b)) if rows > 0 => Some(p.saturating_sub(b) as f64 / rows as f64),
            _ => None,
        },
    })
}

/// One worker: installs the products, feeds its rows time by time, then releases the sinks
/// (as a caught-up job does) and steps until its documents are written.
fn hydrate(
    worker: &mut timely::worker::Worker,
    plan: &Plan,
    events: Vec<(SourceId, SourceEvent)>,
    batch_size: usize,
    limits: EpochLimits,
    start: Instant,
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
    let check = |failure: &Failure| match failure.borrow_mut().take() {
        Some(e) => Err(e),
        None => Ok(()),
    };

    // Grouped into times as a job groups what it reads; time follows the clock (in ms).
    let clock = || start.elapsed().as_millis() as Time;
    let mut epochs = Epochs::new(limits);
    let mut times = 0u64;
    let mut events = events.into_iter().peekable();
    loop {
        let may_read = epochs.may_read(|t| catalog.computed_past(t));
        let (mut fed, mut bytes) = (0, 0);
        if may_read {
            for (s, event) in events.by_ref().take(batch_size.min(epochs.room())) {
                let (_, input) = catalog
                    .source(s)
                    .ok_or_else(|| anyhow::anyhow!("source {s} is not installed"))?;
                bytes += event.size();
                input.send(event);
                fed += 1;
            }
        }
        epochs.fed(fed, bytes);
        let done = events.peek().is_none();
        times += u64::from(epochs.tick(clock(), done, 0).is_some());
        catalog.advance_to(epochs.time());
        if done {
            break;
        }
        if may_read {
            worker.step();
        } else {
            worker.step_or_park(Some(PARK));
        }
        check(&failure)?;
    }
    // Caught up, with an empty output topic: the products' drivers are told so, as a job tells
    // them; the clock moves on until every worker did.
    let (time, peers) = (epochs.time(), worker.peers());
    for product in catalog.products.iter_mut() {
        product.caught_up(time, peers);
        product.loaded(peers);
    }
    catalog.advance_to(time + 1);
    while !catalog.products.iter().all(|p| p.hydrated()) {
        catalog.advance_to(clock());
        worker.step_or_park(Some(PARK));
        check(&failure)?;
    }
    let hydrated_after = start.elapsed().as_secs_f64();
    catalog.close_inputs();
    while !catalog.all_written() {
        worker.step_or_park(Some(PARK));
        check(&failure)?;
    }
    check(&failure)?;
    Ok(WorkerResult {
        hydrated_after,
        times,
        documents: writers.iter().map(|w| w.borrow().documents).sum(),
        bytes: writers.iter().map(|w| w.borrow().bytes).sum(),
        digest: writers
            .iter()
            .fold(0u64, |d, w| d.wrapping_add(w.borrow().digest)),
    })
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
            let report = run(github(), &gen, workers, 100, limits).unwrap();
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
