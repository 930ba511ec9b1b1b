//! One timely worker of a job, as a struct with one method per phase of its loop:
//!
//! 1. [`JobWorker::check`]: stop on a failure; send again what the broker did not take.
//! 2. [`JobWorker::apply_commands`]: install and remove products, in the order the job's
//!    sequencer gives every worker.
//! 3. [`JobWorker::ingest`]: read and decode the sources into the dataflow while the epochs
//!    allow it, and read back what the output topics held.
//! 4. [`JobWorker::advance`]: close the open time when it is due and move the inputs on.
//! 5. [`JobWorker::catch_up`]: tell each product's drivers when this worker has caught up with
//!    its sources and when it has loaded its share of the output topic; stop reading on request.
//! 6. step the dataflow.
//!
//! Nothing is written before every worker has done both for a product; then its documents are
//! built from the shared traces and only those that differ from the topic are written.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use timely::synchronization::Sequencer;
use timely::worker::Worker;

use super::epoch::Epochs;
use super::options::{ErrorPolicy, JobOptions};
use super::sources::{BadRecords, SourceReaders};
use super::{format_positions, Observed, WorkerReport, ABORTED};
use crate::dataflow::catalog::Catalog;
use crate::dataflow::sink::{DocWriter, Failure, SharedWriter};
use crate::dataflow::Time;
use crate::kafka::dlq::DeadLetters;
use crate::kafka::output::OutputReader;
use crate::kafka::producer::{KafkaWriter, TopicWriter};
use crate::kafka::source::assignment;
use crate::plan::{Plan, SourceId};
use crate::runtime::watch::{Command, Watcher};

/// One worker's job.
pub struct JobWorker<'a> {
    options: &'a JobOptions,
    observed: &'a Observed,
    index: usize,
    peers: usize,
    start: Instant,
    failure: Failure,
    catalog: Catalog,
    sources: SourceReaders,
    outputs: OutputReader,
    /// The worker's producer of documents, shared by its products' writers.
    producer: Rc<RefCell<KafkaWriter>>,
    writers: HashMap<String, Rc<RefCell<TopicWriter>>>,
    dead_letters: Option<DeadLetters>,
    sequencer: Sequencer<Command>,
    watcher: Option<Watcher>,
    epochs: Epochs,
    behind: Behind,
    /// The time at which this worker had read every source to the end it had at start.
    caught_up_at: Option<Time>,
    job_caught_up: bool,
    inputs_open: bool,
    report: WorkerReport,
    last_log: Instant,
}

impl<'a> JobWorker<'a> {
    /// Installs the job's products and starts reading their sources.
    pub fn new(
        worker: &mut Worker,
        options: &'a JobOptions,
        observed: &'a Observed,
        start: Instant,
    ) -> anyhow::Result<Self> {
        crate::runtime::metrics::track_arrangements(worker);
        // Created first by every worker: it orders product changes the same way for all.
        let sequencer = Sequencer::new(worker, start);
        let watcher = match &options.watch {
            Some(paths) if worker.index() == 0 => Some(Watcher::new(
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
        let mut producer = KafkaWriter::new(&options.kafka)?;
        producer.measure_latency(observed.source_times.clone());
        let mut job = JobWorker {
            options,
            observed,
            index: worker.index(),
            peers: worker.peers(),
            start,
            failure: Rc::new(RefCell::new(None)),
            catalog: Catalog::new(),
            sources: SourceReaders::new(&options.kafka, worker.index()),
            outputs: OutputReader::new(&options.kafka, worker.index()),
            producer: Rc::new(RefCell::new(producer)),
            writers: HashMap::new(),
            dead_letters,
            sequencer,
            watcher,
            epochs: Epochs::new(options.epochs),
            behind: Behind::new(),
            caught_up_at: None,
            job_caught_up: false,
            inputs_open: true,
            report: WorkerReport::default(),
            last_log: Instant::now(),
        };
        job.install(worker, (*options.plan).clone())?;
        Ok(job)
    }

    /// Runs the loop until the job stops; what this worker did.
    pub fn run(mut self, worker: &mut Worker, abort: &AtomicBool) -> anyhow::Result<WorkerReport> {
        loop {
            if abort.load(Ordering::SeqCst) {
                anyhow::bail!(ABORTED);
            }
            self.check()?;
            if self.inputs_open {
                self.apply_commands(worker)?;
            }
            // Documents handed to the producer and not yet delivered.
            let undelivered = self.producer.borrow().undelivered();
            let read = if self.inputs_open {
                self.ingest(undelivered)?
            } else {
                0
            };
            self.load_outputs()?;
            self.catch_up();
            self.note_job_caught_up();
            self.note_behind(undelivered > 0);
            if !self.inputs_open && !self.outputs.is_loading() && self.catalog.all_written() {
                break;
            }
            if read == 0 {
                worker.step_or_park(Some(Duration::from_millis(1)));
            } else {
                worker.step();
            }
        }
        self.finish()
    }

    /// Stops on a failure; sends again what the broker did not take (an outage).
    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.failure.borrow_mut().take() {
            return Err(e);
        }
        self.producer.borrow_mut().check()?;
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.check()?;
        }
        if self.last_log.elapsed() > Duration::from_secs(1) {
            self.last_log = Instant::now();
            // Every sink has written the output of the times before this.
            self.observed
                .source_times
                .forget_before(self.catalog.written_frontier());
            tracing::debug!(
                worker = self.index,
                time = self.epochs.time(),
                open_records = self.epochs.open_records(),
                in_flight = self.epochs.in_flight(),
                records_read = self.report.records_read,
                "loop"
            );
        }
        Ok(())
    }

    /// Product changes: proposed by the watching worker, applied by all in one order.
    fn apply_commands(&mut self, worker: &mut Worker) -> anyhow::Result<()> {
        if let Some(watcher) = self.watcher.as_mut() {
            for command in watcher.poll(&self.catalog.plan, &self.options.kafka) {
                self.sequencer.push(command);
            }
        }
        while let Some(command) = self.sequencer.next() {
            self.apply(worker, command)?;
            self.catalog.advance_to(self.epochs.time());
        }
        Ok(())
    }

    /// Applies a sequenced product change. A product file that does not fit the running
    /// products is logged and left out (every worker decides the same); Kafka failures stop
    /// the job.
    fn apply(&mut self, worker: &mut Worker, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Remove { name } => {
                let dropped = match self.catalog.remove(worker, &name) {
                    Ok(dropped) => dropped,
                    Err(e) => {
                        tracing::warn!(worker = self.index, error = %e, "cannot remove a product");
                        return Ok(());
                    }
                };
                for s in dropped {
                    if let Some(name) = self.sources.close(s)? {
                        self.observed.progress.forget(&name);
                    }
                }
                self.close_writer(&name)?;
                if self.index == 0 {
                    tracing::info!(product = %name, "removed a product");
                }
            }
            Command::Install { path, text } => {
                let installed = crate::plan::parse(&path, &text).and_then(|plan| {
                    let names: Vec<String> = plan.products.iter().map(|p| p.name.clone()).collect();
                    self.install(worker, plan).map(|sources| (names, sources))
                });
                match installed {
                    Ok((names, sources)) => {
                        if self.index == 0 {
                            tracing::info!(products = ?names, new_sources = sources.len(), "installed a product file: building its documents from the rows in memory");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = self.index, file = %path.display(), error = %format!("{e:#}"), "cannot install a product file");
                    }
                }
            }
        }
        Ok(())
    }

    /// Installs the products of `plan` with a writer each, starts reading their new sources
    /// and loading their output topics; returns the sources installed.
    fn install(&mut self, worker: &mut Worker, plan: Plan) -> anyhow::Result<Vec<SourceId>> {
        let first = self.catalog.products.len();
        let mut made = Vec::new();
        let producer = &self.producer;
        let installed = self.catalog.install(
            worker,
            plan,
            |product| {
                let writer = TopicWriter::new(producer.clone(), &product.output_topic);
                let writer = Rc::new(RefCell::new(writer));
                made.push((product.name.clone(), writer.clone()));
                Ok(writer as SharedWriter)
            },
            &self.failure,
        )?;
        self.writers.extend(made);
        self.sources.open(
            &self.options.kafka,
            &self.catalog,
            &installed,
            (self.index, self.peers),
            self.options.topic_wait,
            &self.observed.progress,
        )?;
        // This worker's share of each new product's output topic.
        let topics: Vec<String> = self.catalog.products[first..]
            .iter()
            .map(|p| p.plan.output_topic.clone())
            .collect();
        let counts = self.options.kafka.existing_partition_counts(&topics)?;
        for topic in &topics {
            let partitions = counts
                .get(topic)
                .map(|&n| assignment(self.index, self.peers, &[n]).remove(0))
                .unwrap_or_default();
            self.outputs.add(topic, partitions)?;
        }
        Ok(installed)
    }

    /// Reads what the epochs allow from the sources into the dataflow; closes the open time
    /// when it is due.
    fn ingest(&mut self, undelivered: usize) -> anyhow::Result<usize> {
        let catalog = &self.catalog;
        let may_read = self.epochs.may_read(|t| catalog.computed_past(t));
        let mut polled = Default::default();
        if may_read {
            let mut bad = BadRecords {
                policy: self.options.on_error,
                dead_letters: self.dead_letters.as_ref(),
            };
            polled = self.sources.poll(
                &mut self.catalog,
                self.peers,
                self.options.batch_size,
                self.epochs.room(),
                &mut bad,
            )?;
        }
        let polled: super::sources::Polled = polled;
        self.report.records_read += polled.records as u64;
        self.report.decode_errors += polled.decode_errors;
        self.sources.report_metrics();
        self.epochs.fed(polled.records, polled.bytes);
        // Latency counts from records read after this worker caught up.
        if let (Some(ts), Some(_)) = (polled.oldest_timestamp, self.caught_up_at) {
            self.observed.source_times.note(self.epochs.time(), ts);
        }
        self.advance(may_read && polled.records == 0, undelivered);
        self.stop_when_asked();
        Ok(polled.records)
    }

    /// Closes the open time when it is due and moves the inputs to the next.
    fn advance(&mut self, idle: bool, undelivered: usize) {
        // Caught up with some sources: what was read from them must be in a closed time,
        // before the time at which the drivers are told so.
        let catching_up = self.caught_up_at.is_none() && self.sources.all_caught_up();
        let releasing =
            self.catalog.products.iter().any(|p| {
                !p.caught_up_sent() && p.sources().iter().all(|&s| self.sources.caught_up(s))
            });
        // An empty open time follows the wall clock (in ms); one holding records stays until it
        // closes. Time never runs ahead while idle: the global frontier is the slowest worker's.
        let clock = self.start.elapsed().as_millis() as Time;
        if catching_up || releasing {
            self.epochs.close(clock);
        } else {
            // The next time waits for the documents not yet delivered, gathering what is read
            // meanwhile.
            self.epochs.tick(clock, idle, undelivered);
        }
        self.catalog.advance_to(self.epochs.time());
        if catching_up {
            self.caught_up_at = Some(self.epochs.time());
            self.epochs.caught_up();
            let after = self.start.elapsed();
            self.report.caught_up_after = Some(after);
            tracing::info!(
                worker = self.index,
                seconds = after.as_secs_f64(),
                records_read = self.report.records_read,
                "caught up with the sources"
            );
        }
    }

    /// Tells each product's drivers when this worker has read its sources to the end they had.
    fn catch_up(&mut self) {
        if !self.inputs_open {
            return;
        }
        let time = self.catalog.time();
        for product in self.catalog.products.iter_mut() {
            if !product.caught_up_sent()
                && product.sources().iter().all(|&s| self.sources.caught_up(s))
            {
                product.caught_up(time, self.peers);
            }
        }
    }

    /// Feeds what the output topics held to their products; a product whose topic this worker
    /// has read to its end is loaded.
    fn load_outputs(&mut self) -> anyhow::Result<()> {
        if !self.outputs.is_loading() {
            return Ok(());
        }
        let products = &mut self.catalog.products;
        let done = self.outputs.poll(10_000, |topic, key, json| {
            if let Some(product) = products.iter_mut().find(|p| p.plan.output_topic == topic) {
                product.held(key, json);
            }
            Ok(())
        })?;
        for topic in done {
            if let Some(product) = products.iter_mut().find(|p| p.plan.output_topic == topic) {
                tracing::info!(worker = self.index, %topic, "read the output topic");
                product.loaded(self.peers);
            }
        }
        Ok(())
    }

    /// Stops reading on Ctrl-C/SIGTERM, or once caught up when asked to exit then: the
    /// dataflows drain and write what was read.
    fn stop_when_asked(&mut self) {
        let stop = self.options.stop.load(Ordering::SeqCst);
        if !(stop || (self.options.exit_when_caught_up && self.caught_up_at.is_some())) {
            return;
        }
        if stop {
            tracing::info!(
                worker = self.index,
                records_read = self.report.records_read,
                positions = %format_positions(&self.sources.positions()),
                "stopping: read no more; flushing the output of what was read (next offset per source topic/partition)"
            );
        }
        self.catch_up();
        for product in &self.catalog.products {
            if !product.caught_up_sent() {
                tracing::warn!(worker = self.index, product = %product.plan.name,
                    "stopped before the product caught up with its sources: it writes nothing");
            }
        }
        self.catalog.close_inputs();
        self.inputs_open = false;
    }

    fn note_job_caught_up(&mut self) {
        if self.job_caught_up
            || self.caught_up_at.is_none()
            || !self.catalog.products.iter().all(|p| p.hydrated())
        {
            return;
        }
        self.job_caught_up = true;
        let after = self.start.elapsed();
        self.report.job_caught_up_after = Some(after);
        let metrics = crate::runtime::metrics::metrics();
        metrics.caught_up.set(1);
        metrics.hydration_seconds.set(after.as_secs_f64());
        self.observed.progress.caught_up(after);
        if self.index == 0 {
            tracing::info!(
                seconds = after.as_secs_f64(),
                workers = self.peers,
                "job caught up: every worker read its partitions to the end they had at start, and their documents are handed to the producer (denorm_workers_behind is 0 once they are delivered)"
            );
        }
    }

    /// Whether this worker has read records whose documents are not yet written and delivered
    /// (a replay or a benchmark waits for every worker to be so).
    fn note_behind(&mut self, output_busy: bool) {
        self.behind.set(
            self.caught_up_at.is_none()
                || !self.job_caught_up
                || self.epochs.open_records() > 0
                || self
                    .epochs
                    .last_closed()
                    .is_some_and(|t| self.catalog.written_frontier() <= t)
                || output_busy,
        );
    }

    /// Flushes what was written and reports.
    fn finish(mut self) -> anyhow::Result<WorkerReport> {
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.flush()?;
        }
        self.producer.borrow_mut().flush()?;
        for name in self.writers.keys().cloned().collect::<Vec<_>>() {
            self.close_writer(&name)?;
        }
        if let Some(e) = self.failure.borrow_mut().take() {
            return Err(e);
        }
        self.report.positions = self.sources.positions();
        Ok(self.report)
    }

    /// Flushes and drops a product's writer.
    fn close_writer(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(writer) = self.writers.remove(name) {
            let mut writer = writer.borrow_mut();
            DocWriter::flush(&mut *writer)?;
            self.report.documents_written += writer.written;
        }
        Ok(())
    }
}

/// Whether a worker has read records whose documents are not yet written and delivered, in
/// the `workers_behind` gauge (taken back out when the worker stops).
struct Behind {
    behind: bool,
}

impl Behind {
    fn new() -> Self {
        crate::runtime::metrics::metrics().workers_behind.inc();
        Behind { behind: true }
    }

    fn set(&mut self, behind: bool) {
        if behind != self.behind {
            let gauge = &crate::runtime::metrics::metrics().workers_behind;
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
