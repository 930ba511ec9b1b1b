//! Runs a plan as a timely job fed from Kafka: each worker builds the dataflow, reads its share
//! of the source partitions, decodes records into upserts, stamps them with a monotone
//! millisecond time, and steps the dataflow; the sinks write documents to the output topics.
//!
//! Records are grouped into times by [`Epochs`]: while the dataflow is busy (or, once caught
//! up, the producers are delivering the documents of an earlier time), what is read waits in
//! one open time, so a hydrating job feeds few large times, a busy one coalesces changes, and
//! an idle one closes each poll at once. Reading is bounded: a worker does not read while too
//! many closed times are still in the dataflow or its open time is full, so memory in flight
//! is bounded by those limits, not by the size of the topics.
//!
//! What the workers of a process share to be observed — partition positions for the progress
//! bars and lag gauges ([`crate::progress`]), source timestamps per time for the latency
//! histogram ([`crate::latency`]) — is created here and handed to each worker.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::synchronization::Sequencer;

use crate::dataflow::catalog::Catalog;
use crate::dataflow::epoch::{EpochLimits, Epochs};
use crate::dataflow::sink::{DocKey, Failure, SharedWriter, Side};
use crate::dataflow::upsert::SourceEvent;
use crate::dataflow::Time;
use crate::decode::{self, Change};
use crate::kafka::client::KafkaOptions;
use crate::kafka::dlq::DeadLetters;
use crate::kafka::producer::KafkaWriter;
use crate::kafka::source::{assignment, Origin, TopicReader};
use crate::latency::SourceTimes;
use crate::plan::{Plan, SourceId};
use crate::progress::{self, Progress};
use crate::watch::{Command, Watcher};

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ErrorPolicy {
    /// Stop the job with an error naming the record.
    Fail,
    /// Log the record's place and the error, count it, and go on.
    Skip,
    /// Write the record (original key and value, headers naming the error, topic, partition
    /// and offset) to the dead-letter topic, log and count it, and go on.
    Dlq,
}

#[derive(Debug, Clone)]
pub struct JobOptions {
    pub plan: Arc<Plan>,
    pub kafka: KafkaOptions,
    /// Stop (exit 0) once every source partition has been read to the end it had at start and
    /// all output for it is written. For batch runs, tests and benchmarks.
    pub exit_when_caught_up: bool,
    pub on_error: ErrorPolicy,
    /// Where `ErrorPolicy::Dlq` writes undecodable records.
    pub dlq_topic: String,
    /// Records read per source per step.
    pub batch_size: usize,
    /// How records are grouped into times, and how many times may be in the dataflow.
    pub epochs: EpochLimits,
    /// How long to wait for source topics to exist.
    pub topic_wait: Duration,
    /// Set to stop gracefully (Ctrl-C, SIGTERM): flush output and exit.
    pub stop: Arc<AtomicBool>,
    /// Product files and folders to watch: files added, changed or removed there install,
    /// rebuild or remove their products in the running job.
    pub watch: Option<Vec<PathBuf>>,
    pub watch_interval: Duration,
    /// Draw progress bars on stderr while catching up with the sources (process 0 only).
    pub progress_bars: bool,
}

impl JobOptions {
    pub fn new(plan: Plan, kafka: KafkaOptions) -> Self {
        let dlq_topic = format!(
            "{}.dlq",
            plan.products
                .first()
                .map(|p| p.name.as_str())
                .unwrap_or("denorm")
        );
        JobOptions {
            plan: Arc::new(plan),
            kafka,
            exit_when_caught_up: false,
            on_error: ErrorPolicy::Dlq,
            dlq_topic,
            batch_size: 4096,
            epochs: EpochLimits::default(),
            topic_wait: Duration::from_secs(30),
            stop: Arc::new(AtomicBool::new(false)),
            watch: None,
            watch_interval: Duration::from_secs(2),
            progress_bars: false,
        }
    }
}

/// What one worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub records_read: u64,
    pub decode_errors: u64,
    pub documents_written: u64,
    pub caught_up_after: Option<Duration>,
    /// Where this worker stopped reading its source partitions.
    pub positions: Vec<SourcePosition>,
    /// When every worker of the job had caught up and the output was written.
    pub job_caught_up_after: Option<Duration>,
}

/// Where a worker stopped reading one source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    /// The offset after the last record read (the next to read); `None` if none was read.
    pub next_offset: Option<i64>,
}

impl std::fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.next_offset {
            Some(o) => write!(f, "{}/{}={o}", self.topic, self.partition),
            None => write!(f, "{}/{}=beginning", self.topic, self.partition),
        }
    }
}

/// `topic/partition=next_offset` for each position, space-separated, sorted.
pub fn format_positions<'a>(positions: impl IntoIterator<Item = &'a SourcePosition>) -> String {
    let mut all: Vec<&SourcePosition> = positions.into_iter().collect();
    all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    all.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the job did, summed over this process's workers.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    pub workers: Vec<WorkerReport>,
    pub elapsed: Duration,
}

impl JobReport {
    pub fn records_read(&self) -> u64 {
        self.workers.iter().map(|w| w.records_read).sum()
    }
    pub fn documents_written(&self) -> u64 {
        self.workers.iter().map(|w| w.documents_written).sum()
    }
    pub fn decode_errors(&self) -> u64 {
        self.workers.iter().map(|w| w.decode_errors).sum()
    }
    /// Where this process's workers stopped reading, every source partition they read.
    pub fn positions(&self) -> Vec<SourcePosition> {
        self.workers
            .iter()
            .flat_map(|w| w.positions.iter().cloned())
            .collect()
    }
    /// Whether every worker of the job caught up with its sources (and so the output was
    /// written); false when the job was stopped before.
    pub fn job_caught_up(&self) -> bool {
        self.workers.iter().all(|w| w.job_caught_up_after.is_some())
    }
    /// When the slowest worker caught up.
    pub fn caught_up_after(&self) -> Option<Duration> {
        self.workers
            .iter()
            .map(|w| w.caught_up_after)
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max())
    }
}

/// Runs the job on this process's workers until it stops, and reports.
pub fn run(options: JobOptions, timely: timely::Config) -> anyhow::Result<JobReport> {
    let start = Instant::now();
    options.kafka.wait_for_brokers()?;
    let first_process = timely_process_index(&timely) == 0;
    if first_process {
        create_outputs(&options)?;
    }
    let abort = Arc::new(AtomicBool::new(false));
    let observed = Observed {
        progress: Progress::new(options.plan.sources.iter().map(|s| s.name.clone())),
        source_times: Arc::new(SourceTimes::default()),
    };
    // One process draws (the others may share its terminal), showing its own partitions.
    let bars = options.progress_bars && first_process;
    let _monitor = progress::monitor(observed.progress.clone(), bars)?;
    let guards = timely::execute(timely, move |worker| {
        // A panicking worker must stop the others too, or they would wait for it for ever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_worker(worker, &options, &abort, start, &observed)
        }));
        if !matches!(result, Ok(Ok(_))) {
            abort.store(true, Ordering::SeqCst);
        }
        match result {
            Ok(result) => result.map_err(|e| format!("{e:#}")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot start the timely workers: {e}"))?;
    let mut report = JobReport::default();
    let mut errors = Vec::new();
    for (i, result) in guards.join().into_iter().enumerate() {
        match result {
            Ok(Ok(worker)) => report.workers.push(worker),
            Ok(Err(e)) => errors.push(e),
            Err(panic) => errors.push(format!("worker {i} panicked: {panic}")),
        }
    }
    // A worker that stopped because another failed reports ABORTED; show the cause first.
    errors.sort_by_key(|e| e.starts_with(ABORTED));
    if let Some(first) = errors.into_iter().next() {
        anyhow::bail!(first);
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

const ABORTED: &str = "stopped: another worker failed";

/// What the workers of a process share to be observed.
struct Observed {
    progress: Arc<Progress>,
    source_times: Arc<SourceTimes>,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    options: &JobOptions,
    abort: &AtomicBool,
    start: Instant,
    observed: &Observed,
) -> anyhow::Result<WorkerReport> {
    let (index, peers) = (worker.index(), worker.peers());
    let failure: Failure = Rc::new(RefCell::new(None));
    crate::metrics::track_arrangements(worker);
    // Created first by every worker: it orders product changes the same way for all of them.
    let mut sequencer: Sequencer<Command> = Sequencer::new(worker, start);
    let mut catalog = Catalog::new();
    let mut job = WorkerJob {
        options,
        observed,
        index,
        peers,
        readers: BTreeMap::new(),
        writers: HashMap::new(),
        report: WorkerReport::default(),
    };
    let sources = job.install(worker, &mut catalog, (*options.plan).clone(), &failure)?;
    job.open_readers(&catalog, &sources, options.topic_wait)?;
    let mut watcher = match &options.watch {
        Some(paths) if index == 0 => Some(Watcher::new(
            paths.clone(),
            options.watch_interval,
            &options.plan,
        )?),
        _ => None,
    };
    let dead_letters = match options.on_error {
        ErrorPolicy::Dlq => Some(DeadLetters::new(&options.kafka, &options.dlq_topic)?),
        _ => None,
    };

    let mut inputs_open = true;
    let mut epochs = Epochs::new(options.epochs);
    let mut behind = Behind::new();
    let mut caught_up_at: Option<Time> = None;
    let mut job_caught_up = false;
    let mut read_since: BTreeMap<SourceId, u64> = BTreeMap::new();
    let mut last_log = Instant::now();
    let mut iterations = 0u64;
    loop {
        iterations += 1;
        if last_log.elapsed() > Duration::from_secs(1) {
            last_log = Instant::now();
            // Every sink has written the output of the times before this.
            observed
                .source_times
                .forget_before(catalog.written_frontier());
            tracing::debug!(
                worker = index,
                iterations,
                time = epochs.time(),
                open_records = epochs.open_records(),
                in_flight = epochs.in_flight(),
                records_read = job.report.records_read,
                "loop"
            );
        }
        if abort.load(Ordering::SeqCst) {
            anyhow::bail!(ABORTED);
        }
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
        // Send again what the broker did not take (an outage); stop on a permanent failure.
        for writer in job.writers.values() {
            writer.borrow_mut().check()?;
        }
        if let Some(dead_letters) = &dead_letters {
            dead_letters.check()?;
        }
        // Product changes: proposed by the watching worker, applied by all in one order.
        if inputs_open {
            if let Some(watcher) = watcher.as_mut() {
                for command in watcher.poll(&catalog.plan, &options.kafka) {
                    sequencer.push(command);
                }
            }
            for command in sequencer.by_ref() {
                job.apply(worker, &mut catalog, command, &failure)?;
                catalog.advance_to(epochs.time());
            }
        }
        // Documents handed to the producers and not yet delivered.
        let output_busy = job.writers.values().any(|w| w.borrow().undelivered() > 0);
        let mut read = 0;
        let mut read_bytes = 0;
        // The Kafka timestamp of the oldest record of this batch, for the latency histogram.
        let mut oldest: Option<i64> = None;
        if inputs_open {
            // Backpressure: let the dataflow catch up before reading more.
            let may_read = epochs.may_read(|t| catalog.computed_past(t));
            if may_read {
                // Records the open time can still take, shared by the sources in turn.
                let mut room = epochs.room();
                for (&s, reader) in job.readers.iter_mut() {
                    let partitions = reader.partition_count;
                    let Some((source, input)) = catalog.source(s) else {
                        continue;
                    };
                    let report = &mut job.report;
                    let decoder = &mut reader.decoder;
                    if room == 0 {
                        break;
                    }
                    let got = reader.reader.poll(options.batch_size.min(room), Duration::ZERO, |origin, key, value, timestamp| {
                        if let Some(ts) = timestamp.filter(|t| *t > 0) {
                            oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
                        }
                        match decoder.decode(source, key, value) {
                            Ok(Change::Upsert { key, row }) => {
                                let event = SourceEvent::Upsert { key, row: Some(row) };
                                read_bytes += event.size();
                                input.send(event)
                            }
                            Ok(Change::Delete { key }) => {
                                let event = SourceEvent::Upsert { key, row: None };
                                read_bytes += event.size();
                                input.send(event)
                            }
                            Ok(Change::Truncate) => {
                                if partitions > 1 {
                                    tracing::warn!(%origin, source = %source.name, partitions,
                                        "truncate on a topic with several partitions: it is ordered only against the rows of its own partition");
                                }
                                tracing::info!(%origin, source = %source.name, "truncate: every row of the source is deleted");
                                for w in 0..peers {
                                    input.send(SourceEvent::Truncate { worker: w as u64 });
                                }
                            }
                            Err(e) => return bad_record(options.on_error, dead_letters.as_ref(), &origin, key, value, e, report),
                        }
                        Ok(())
                    })?;
                    *read_since.entry(s).or_default() += got as u64;
                    read += got;
                    room = room.saturating_sub(got);
                }
            }
            job.report.records_read += read as u64;
            for (s, count) in read_since.iter_mut() {
                if *count > 0 {
                    if let Some(reader) = job.readers.get(s) {
                        crate::metrics::metrics()
                            .records_read
                            .get_or_create(&crate::metrics::topic(&reader.reader.topic))
                            .inc_by(*count);
                    }
                    *count = 0;
                }
            }
            epochs.fed(read, read_bytes);
            // Latency counts from records read after this worker caught up.
            if let (Some(ts), Some(_)) = (oldest, caught_up_at) {
                observed.source_times.note(epochs.time(), ts);
            }
            // Caught up with some sources: what was read from them must be in a closed time,
            // before the time at which the sinks are told so.
            let catching_up =
                caught_up_at.is_none() && job.readers.values().all(|r| r.reader.caught_up());
            let releasing = catalog.products.iter().any(|p| {
                p.hold.is_some()
                    && p.sources
                        .iter()
                        .all(|s| job.readers.get(s).is_none_or(|r| r.reader.caught_up()))
            });
            // An empty open time follows the wall clock (in ms); one holding records stays until
            // it closes. Time never runs ahead while idle: the global frontier is the slowest
            // worker's clock.
            let clock = start.elapsed().as_millis() as Time;
            if catching_up || releasing {
                epochs.close(clock);
            } else {
                // The next time waits for the documents not yet delivered, gathering what is
                // read meanwhile.
                epochs.tick(clock, may_read && read == 0, output_busy);
            }
            catalog.advance_to(epochs.time());
            let time = epochs.time();
            if catching_up {
                caught_up_at = Some(time);
                epochs.caught_up();
                let after = start.elapsed();
                job.report.caught_up_after = Some(after);
                tracing::info!(
                    worker = index,
                    seconds = after.as_secs_f64(),
                    records_read = job.report.records_read,
                    "caught up with the sources"
                );
            }
            // A worker caught up with a product's sources tells every worker's sink of it.
            for product in catalog.products.iter_mut() {
                if product.hold.is_some()
                    && product
                        .sources
                        .iter()
                        .all(|s| job.readers.get(s).is_none_or(|r| r.reader.caught_up()))
                {
                    let mut hold = product.hold.take().expect("checked");
                    hold.advance_to(time);
                    for w in 0..peers {
                        hold.send(Side::CaughtUp(w as u64));
                    }
                }
            }
            let stop = options.stop.load(Ordering::SeqCst);
            if stop || (options.exit_when_caught_up && caught_up_at.is_some()) {
                if stop {
                    tracing::info!(
                        worker = index,
                        records_read = job.report.records_read,
                        positions = %format_positions(&positions(job.readers.values().map(|r| &r.reader))),
                        "stopping: read no more; flushing the output of what was read (next offset per source topic/partition)"
                    );
                }
                // Closing the inputs lets the dataflows drain and complete. A product that has
                // not caught up writes nothing: its documents would be incomplete.
                for product in catalog.products.iter_mut() {
                    if product.hold.is_some() {
                        tracing::warn!(worker = index, product = %product.plan.name,
                            "stopped before the product caught up with its sources: it writes nothing");
                        product.control.discard.set(true);
                        product.hold = None;
                        product.emitted = None;
                    }
                }
                catalog.close_inputs();
                inputs_open = false;
            }
        }
        // Once every worker caught up with a product's sources: what its output topic holds
        // (the sink writes only what differs from it).
        for product in catalog.products.iter_mut() {
            if product.emitted.is_some() && product.all_caught_up.done() {
                let mut input = product.emitted.take().expect("checked");
                let held = read_output(options, &product.plan.output_topic, index, peers)?;
                tracing::info!(worker = index, topic = %product.plan.output_topic, documents = held.len(), "read the output topic");
                for (key, doc) in held {
                    input.send(Side::Held(DocKey::new(key), doc));
                }
            }
        }
        if !job_caught_up
            && caught_up_at.is_some()
            && catalog.products.iter().all(|p| p.control.caught_up.get())
        {
            job_caught_up = true;
            let after = start.elapsed();
            job.report.job_caught_up_after = Some(after);
            crate::metrics::metrics().caught_up.set(1);
            observed.progress.caught_up(after);
            crate::metrics::metrics()
                .hydration_seconds
                .set(after.as_secs_f64());
            if index == 0 {
                tracing::info!(
                    seconds = after.as_secs_f64(),
                    workers = peers,
                    "job caught up: every worker read its partitions to the end they had at start, and the output is written"
                );
            }
        }
        // Everything read is in documents written and delivered (a replay or a benchmark
        // waits for every worker to be so).
        behind.set(
            caught_up_at.is_none()
                || epochs.open_records() > 0
                || epochs
                    .last_closed()
                    .is_some_and(|t| catalog.written_frontier() <= t)
                || output_busy,
        );
        if !inputs_open && catalog.all_written() {
            break;
        }
        if read == 0 {
            worker.step_or_park(Some(Duration::from_millis(1)));
        } else {
            worker.step();
        }
    }
    if let Some(dead_letters) = &dead_letters {
        dead_letters.flush()?;
    }
    for name in job.writers.keys().cloned().collect::<Vec<_>>() {
        job.close_writer(&name)?;
    }
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    job.report.positions = positions(job.readers.values().map(|r| &r.reader));
    Ok(job.report)
}

/// Whether a worker has read records whose documents are not yet written and delivered, in
/// the `workers_behind` gauge (taken back out when the worker stops).
struct Behind {
    behind: bool,
}

impl Behind {
    fn new() -> Self {
        crate::metrics::metrics().workers_behind.inc();
        Behind { behind: true }
    }

    fn set(&mut self, behind: bool) {
        if behind != self.behind {
            let gauge = &crate::metrics::metrics().workers_behind;
            if behind {
                gauge.inc();
            } else {
                gauge.dec();
            }
            self.behind = behind;
        }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// A source partition share this worker reads.
struct SourceReader {
    /// The source's name in the plan.
    name: String,
    reader: TopicReader,
    /// Partitions of the topic in all.
    partition_count: i32,
    /// Decodes this reader's records (keeps the schemas it has seen).
    decoder: decode::Decoder,
}

/// One worker's Kafka side: readers of the installed sources and writers of the products.
struct WorkerJob<'a> {
    options: &'a JobOptions,
    observed: &'a Observed,
    index: usize,
    peers: usize,
    readers: BTreeMap<SourceId, SourceReader>,
    writers: HashMap<String, Rc<RefCell<KafkaWriter>>>,
    report: WorkerReport,
}

impl WorkerJob<'_> {
    /// Installs the products of `plan`, with a writer each; returns the sources installed.
    fn install(
        &mut self,
        worker: &mut timely::worker::Worker,
        catalog: &mut Catalog,
        plan: Plan,
        failure: &Failure,
    ) -> anyhow::Result<Vec<SourceId>> {
        let mut made = Vec::new();
        let installed = catalog.install(
            worker,
            plan,
            |product| {
                let mut writer = KafkaWriter::new(&self.options.kafka, &product.output_topic)?;
                writer.measure_latency(self.observed.source_times.clone());
                let writer = Rc::new(RefCell::new(writer));
                made.push((product.name.clone(), writer.clone()));
                Ok(writer as SharedWriter)
            },
            failure,
        )?;
        self.writers.extend(made);
        Ok(installed)
    }

    /// Starts reading newly installed sources.
    fn open_readers(
        &mut self,
        catalog: &Catalog,
        sources: &[SourceId],
        wait: Duration,
    ) -> anyhow::Result<()> {
        let topics: Vec<&str> = sources
            .iter()
            .map(|&s| catalog.plan.sources[s].topic.as_str())
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let counts = self.options.kafka.partition_counts(&topics, wait)?;
        let shares = assignment(self.index, self.peers, &counts);
        for ((&s, partitions), count) in sources.iter().zip(shares).zip(counts) {
            let reader = TopicReader::open(
                &self.options.kafka,
                &catalog.plan.sources[s].topic,
                partitions,
                self.index,
            )?;
            tracing::info!(worker = self.index, topic = %reader.topic, partitions = ?reader.partitions(), "worker reading");
            self.observed
                .progress
                .watch(&catalog.plan.sources[s].name, reader.positions());
            self.readers.insert(
                s,
                SourceReader {
                    name: catalog.plan.sources[s].name.clone(),
                    reader,
                    partition_count: count,
                    decoder: decode::Decoder::new(),
                },
            );
        }
        Ok(())
    }

    /// Applies a sequenced product change. A product file that does not fit the running
    /// products is logged and left out (every worker decides the same); Kafka failures stop
    /// the job.
    fn apply(
        &mut self,
        worker: &mut timely::worker::Worker,
        catalog: &mut Catalog,
        command: Command,
        failure: &Failure,
    ) -> anyhow::Result<()> {
        match command {
            Command::Remove { name } => {
                let dropped = match catalog.remove(worker, &name) {
                    Ok(dropped) => dropped,
                    Err(e) => {
                        tracing::warn!(worker = self.index, error = %e, "cannot remove a product");
                        return Ok(());
                    }
                };
                for s in dropped {
                    if let Some(reader) = self.readers.remove(&s) {
                        self.observed.progress.forget(&reader.name);
                    }
                }
                self.close_writer(&name)?;
                if self.index == 0 {
                    tracing::info!(product = %name, "removed a product");
                }
            }
            Command::Install { path, text } => {
                let plan = match crate::plan::parse(&path, &text) {
                    Ok(plan) => plan,
                    Err(e) => {
                        tracing::warn!(worker = self.index, file = %path.display(), error = %format!("{e:#}"), "cannot install a product file");
                        return Ok(());
                    }
                };
                let names: Vec<String> = plan.products.iter().map(|p| p.name.clone()).collect();
                let sources = match self.install(worker, catalog, plan, failure) {
                    Ok(sources) => sources,
                    Err(e) => {
                        tracing::warn!(worker = self.index, file = %path.display(), error = %format!("{e:#}"), "cannot install a product file");
                        return Ok(());
                    }
                };
                self.open_readers(catalog, &sources, self.options.topic_wait)?;
                if self.index == 0 {
                    tracing::info!(products = ?names, new_sources = sources.len(), "installed a product file: hydrating from the arrangements in memory");
                }
            }
        }
        Ok(())
    }

    /// Flushes and drops a product's writer.
    fn close_writer(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(writer) = self.writers.remove(name) {
            let mut writer = writer.borrow_mut();
            crate::dataflow::sink::DocWriter::flush(&mut *writer)?;
            self.report.documents_written += writer.written;
        }
        Ok(())
    }
}

fn positions<'a>(readers: impl Iterator<Item = &'a TopicReader>) -> Vec<SourcePosition> {
    readers
        .flat_map(|r| {
            r.next_offsets()
                .into_iter()
                .map(|(partition, next_offset)| SourcePosition {
                    topic: r.topic.clone(),
                    partition,
                    next_offset,
                })
        })
        .collect()
}

/// Creates missing output topics with as many partitions as the root source has, and the
/// dead-letter topic: one metadata request to see which exist, one admin request per partition
/// count for those that do not (a hundred products start in one round trip, not a hundred). A
/// broker that refuses (no permission, no admin API) is logged: the producer then reports its
/// own error.
fn create_outputs(options: &JobOptions) -> anyhow::Result<()> {
    let topics: Vec<&str> = options
        .plan
        .sources
        .iter()
        .map(|s| s.topic.as_str())
        .collect();
    let counts = options
        .kafka
        .partition_counts(&topics, options.topic_wait)?;
    let existing: std::collections::HashSet<String> =
        options.kafka.topic_names()?.into_iter().collect();
    let mut missing: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for product in &options.plan.products {
        if !existing.contains(&product.output_topic) {
            missing
                .entry(counts[product.root.source])
                .or_default()
                .push(&product.output_topic);
        }
    }
    if options.on_error == ErrorPolicy::Dlq && !existing.contains(&options.dlq_topic) {
        missing.entry(1).or_default().push(&options.dlq_topic);
    }
    for (partitions, topics) in missing {
        match crate::kafka::admin::ensure_topics(&options.kafka, &topics, partitions) {
            Ok(()) => {
                tracing::info!(?topics, partitions, "created the output topics")
            }
            Err(e) => {
                tracing::warn!(?topics, error = %e, "could not create the output topics; they must exist or be auto-created")
            }
        }
    }
    Ok(())
}

/// The last document per key of this worker's share of an output topic's partitions (none if
/// the topic does not exist yet).
fn read_output(
    options: &JobOptions,
    topic: &str,
    worker: usize,
    peers: usize,
) -> anyhow::Result<HashMap<String, String>> {
    let mut docs = HashMap::new();
    let Ok(counts) = options.kafka.partition_counts(&[topic], Duration::ZERO) else {
        return Ok(docs);
    };
    let partitions = assignment(worker, peers, &counts).remove(0);
    let mut reader = TopicReader::open(&options.kafka, topic, partitions, worker)?;
    while !reader.caught_up() {
        if options.stop.load(Ordering::SeqCst) {
            // Stopped before catching up: the sinks will write nothing, what was read is moot.
            break;
        }
        reader.poll(
            10_000,
            Duration::from_millis(100),
            |origin, key, value, _| {
                let key = key
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .ok_or_else(|| anyhow::anyhow!("{origin}: an output record without a key"))?;
                match value {
                    Some(v) if !v.is_empty() => {
                        docs.insert(key, String::from_utf8_lossy(v).into_owned())
                    }
                    _ => docs.remove(&key),
                };
                Ok(())
            },
        )?;
    }
    Ok(docs)
}

/// The index of this process in a timely configuration.
fn timely_process_index(config: &timely::Config) -> usize {
    match &config.communication {
        timely::CommunicationConfig::Cluster { process, .. } => *process,
        _ => 0,
    }
}

fn bad_record(
    policy: ErrorPolicy,
    dead_letters: Option<&DeadLetters>,
    origin: &Origin,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    error: decode::DecodeError,
    report: &mut WorkerReport,
) -> anyhow::Result<()> {
    report.decode_errors += 1;
    crate::metrics::metrics()
        .decode_errors
        .get_or_create(&crate::metrics::topic(&origin.topic))
        .inc();
    match policy {
        ErrorPolicy::Fail => anyhow::bail!("cannot decode the record at {origin}: {error} (run with --on-error dlq to write such records to a dead-letter topic, or skip to log and skip them)"),
        ErrorPolicy::Skip => {
            tracing::warn!(%origin, %error, "skipped a record that cannot be decoded");
            Ok(())
        }
        ErrorPolicy::Dlq => {
            let dead_letters = dead_letters.expect("a dead-letter writer exists under the dlq policy");
            dead_letters.send(origin, key, value, &error.to_string())?;
            crate::metrics::metrics()
                .dead_letters
                .get_or_create(&crate::metrics::topic(&origin.topic))
                .inc();
            tracing::warn!(%origin, %error, dlq = dead_letters.topic(), "wrote a record that cannot be decoded to the dead-letter topic");
            Ok(())
        }
    }
}
