//! Runs a plan as a timely job fed from Kafka: each worker builds the dataflow, reads its share
//! of the source partitions, decodes records into upserts, stamps each batch with a monotone
//! millisecond time, and steps the dataflow; the sinks write documents to the output topics.
//!
//! Reading is bounded: a worker does not read a new batch while too many earlier ones are still
//! in the dataflow, so memory in flight is bounded by the batch size, not by the topics.
//!
//! What the workers of a process share to be observed — partition positions for the progress
//! bars and lag gauges ([`crate::progress`]), source timestamps per time for the latency
//! histogram ([`crate::latency`]) — is created here and handed to each worker.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dataflow::sink::{Failure, SharedWriter};
use crate::dataflow::upsert::SourceEvent;
use crate::dataflow::{self, SourceInput, Time};
use crate::decode::{self, Change};
use crate::kafka::client::KafkaOptions;
use crate::kafka::dlq::DeadLetters;
use crate::kafka::producer::KafkaWriter;
use crate::kafka::source::{assignment, Origin, TopicReader};
use crate::latency::SourceTimes;
use crate::plan::Plan;
use crate::progress::{self, Progress};

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
    /// Batches a worker may have in the dataflow before it stops reading.
    pub max_in_flight: usize,
    /// How long to wait for source topics to exist.
    pub topic_wait: Duration,
    /// Set to stop gracefully (Ctrl-C, SIGTERM): flush output and exit.
    pub stop: Arc<AtomicBool>,
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
            on_error: ErrorPolicy::Fail,
            dlq_topic,
            batch_size: 4096,
            max_in_flight: 8,
            topic_wait: Duration::from_secs(30),
            stop: Arc::new(AtomicBool::new(false)),
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
    /// When every worker of the job had caught up and the output was written.
    pub job_caught_up_after: Option<Duration>,
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
    let plan = &options.plan;
    let (index, peers) = (worker.index(), worker.peers());
    let failure: Failure = Rc::new(RefCell::new(None));
    let mut writers = Vec::new();
    for product in &plan.products {
        let mut writer = KafkaWriter::new(&options.kafka, &product.output_topic)?;
        writer.measure_latency(observed.source_times.clone());
        writers.push(Rc::new(RefCell::new(writer)));
    }
    let sinks: Vec<SharedWriter> = writers.iter().map(|w| w.clone() as SharedWriter).collect();
    let dead_letters = match options.on_error {
        ErrorPolicy::Dlq => Some(DeadLetters::new(&options.kafka, &options.dlq_topic)?),
        _ => None,
    };
    crate::metrics::track_arrangements(worker);
    let handles = worker.dataflow::<Time, _, _>(|scope| {
        dataflow::build(scope, plan, |i| sinks[i].clone(), failure.clone())
    });
    let (computed, written, all_caught_up) =
        (handles.computed, handles.written, handles.all_caught_up);
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    let counts = options
        .kafka
        .partition_counts(&topics, options.topic_wait)?;
    let mut readers = Vec::new();
    for (s, partitions) in assignment(index, peers, &counts).into_iter().enumerate() {
        readers.push(TopicReader::open(
            &options.kafka,
            &plan.sources[s].topic,
            partitions,
            index,
        )?);
    }
    for (s, reader) in readers.iter().enumerate() {
        observed.progress.watch(s, reader.positions());
    }
    tracing::info!(
        worker = index,
        peers,
        partitions = ?readers.iter().map(|r| format!("{}{:?}", r.topic, r.partitions())).collect::<Vec<_>>(),
        "worker reading"
    );

    // What the output topics hold now: the sinks write only what differs from it.
    for (product, mut input) in plan.products.iter().zip(handles.emitted) {
        let held = read_output(options, &product.output_topic, index, peers)?;
        tracing::info!(worker = index, topic = %product.output_topic, documents = held.len(), "read the output topic");
        for (key, doc) in held {
            input.send(((key, doc), 0, -1));
        }
    }
    let mut hold = Some(handles.hold);

    let mut report = WorkerReport::default();
    let mut inputs: Option<Vec<SourceInput>> = Some(handles.inputs);
    let mut time: Time = 0;
    let mut in_flight: VecDeque<Time> = VecDeque::new();
    let mut caught_up_at: Option<Time> = None;
    let mut job_caught_up_at: Option<Time> = None;
    let mut read_since = vec![0u64; readers.len()];
    let mut last_log = Instant::now();
    let mut iterations = 0u64;
    loop {
        iterations += 1;
        if last_log.elapsed() > Duration::from_secs(1) {
            last_log = Instant::now();
            let frontier = written.with_frontier(|f| f.to_vec());
            // Every sink has written the output of the times before the frontier.
            observed
                .source_times
                .forget_before(frontier.first().copied().unwrap_or(Time::MAX));
            tracing::debug!(
                worker = index,
                iterations,
                time,
                ?frontier,
                in_flight = in_flight.len(),
                records_read = report.records_read,
                "loop"
            );
        }
        if abort.load(Ordering::SeqCst) {
            anyhow::bail!(ABORTED);
        }
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
        let mut read = 0;
        // The Kafka timestamp of the oldest record of this batch, for the latency histogram.
        let mut oldest: Option<i64> = None;
        if let Some(handles) = inputs.as_mut() {
            // Backpressure: let the dataflow catch up before reading more.
            while in_flight.front().is_some_and(|t| !computed.less_equal(t)) {
                in_flight.pop_front();
            }
            if in_flight.len() < options.max_in_flight {
                for (s, reader) in readers.iter_mut().enumerate() {
                    let source = &plan.sources[s];
                    let input = &mut handles[s];
                    let before = read;
                    read += reader.poll(options.batch_size, Duration::ZERO, |origin, key, value, timestamp| {
                        if let Some(ts) = timestamp.filter(|t| *t > 0) {
                            oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
                        }
                        match decode::decode(source, key, value) {
                            Ok(Change::Upsert { key, row }) => input.send(SourceEvent::Upsert { key, row: Some(row) }),
                            Ok(Change::Delete { key }) => input.send(SourceEvent::Upsert { key, row: None }),
                            Ok(Change::Truncate) => {
                                if counts[s] > 1 {
                                    tracing::warn!(%origin, source = %source.name, partitions = counts[s],
                                        "truncate on a topic with several partitions: it is ordered only against the rows of its own partition");
                                }
                                tracing::info!(%origin, source = %source.name, "truncate: every row of the source is deleted");
                                for w in 0..peers {
                                    input.send(SourceEvent::Truncate { worker: w as u64 });
                                }
                            }
                            Err(e) => return bad_record(options.on_error, dead_letters.as_ref(), &origin, key, value, e, &mut report),
                        }
                        Ok(())
                    })?;
                    read_since[s] += (read - before) as u64;
                }
            }
            report.records_read += read as u64;
            for (reader, count) in readers.iter().zip(&mut read_since) {
                if *count > 0 {
                    crate::metrics::metrics()
                        .records_read
                        .get_or_create(&crate::metrics::topic(&reader.topic))
                        .inc_by(*count);
                    *count = 0;
                }
            }
            // Time follows the wall clock (in ms), and moves on by one past a batch of data. It
            // never runs ahead while idle: the global frontier is the slowest worker's clock.
            let clock = start.elapsed().as_millis() as Time;
            let next = if read > 0 {
                (time + 1).max(clock)
            } else {
                time.max(clock)
            };
            if next > time {
                for input in handles.iter_mut() {
                    input.advance_to(next);
                }
            }
            if read > 0 {
                in_flight.push_back(time);
                // Latency counts from batches read after this worker caught up.
                if let (Some(ts), Some(_)) = (oldest, caught_up_at) {
                    observed.source_times.note(time, ts);
                }
            }
            time = next;
            if caught_up_at.is_none() && readers.iter().all(TopicReader::caught_up) {
                caught_up_at = Some(time);
                // Tell every worker's sinks at which time this worker caught up, and stop
                // holding the output back.
                if let Some(mut h) = hold.take() {
                    h.advance_to(time);
                    for w in 0..peers {
                        h.send(w as u64);
                    }
                }
            }
            let stop = options.stop.load(Ordering::SeqCst);
            if stop || (options.exit_when_caught_up && caught_up_at.is_some()) {
                if stop {
                    tracing::info!(
                        worker = index,
                        records_read = report.records_read,
                        "stopping: flushing output"
                    );
                }
                inputs = None; // closing the inputs lets the dataflow drain and complete
                drop(hold.take());
            }
        }
        if let Some(t) = caught_up_at {
            if report.caught_up_after.is_none() && !written.less_equal(&t) {
                let after = start.elapsed();
                report.caught_up_after = Some(after);
                tracing::info!(
                    worker = index,
                    seconds = after.as_secs_f64(),
                    records_read = report.records_read,
                    "caught up with the sources"
                );
            }
        }
        if job_caught_up_at.is_none() && all_caught_up.done() {
            job_caught_up_at = Some(time);
        }
        if let Some(t) = job_caught_up_at {
            if report.job_caught_up_after.is_none() && !written.less_equal(&t) {
                let after = start.elapsed();
                report.job_caught_up_after = Some(after);
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
        }
        if inputs.is_none() && written.done() {
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
    for writer in &writers {
        let mut writer = writer.borrow_mut();
        crate::dataflow::sink::DocWriter::flush(&mut *writer)?;
        report.documents_written += writer.written;
    }
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    if report.caught_up_after.is_none() && caught_up_at.is_some() {
        report.caught_up_after = Some(start.elapsed());
    }
    Ok(report)
}

/// Creates missing output topics with as many partitions as the root source has. A broker that
/// refuses (no permission, no admin API) is logged: the producer then reports its own error.
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
    for product in &options.plan.products {
        if options
            .kafka
            .partition_counts(&[&product.output_topic], Duration::ZERO)
            .is_ok()
        {
            continue;
        }
        let partitions = counts[product.root.source];
        match crate::kafka::admin::ensure_topics(
            &options.kafka,
            &[&product.output_topic],
            partitions,
        ) {
            Ok(()) => {
                tracing::info!(topic = %product.output_topic, partitions, "created the output topic")
            }
            Err(e) => {
                tracing::warn!(topic = %product.output_topic, error = %e, "could not create the output topic; it must exist or be auto-created")
            }
        }
    }
    if options.on_error == ErrorPolicy::Dlq
        && options
            .kafka
            .partition_counts(&[&options.dlq_topic], Duration::ZERO)
            .is_err()
    {
        if let Err(e) = crate::kafka::admin::ensure_topics(&options.kafka, &[&options.dlq_topic], 1)
        {
            tracing::warn!(topic = %options.dlq_topic, error = %e, "could not create the dead-letter topic; it must exist or be auto-created");
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
            anyhow::bail!("stopped while reading the output topic {topic}");
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
        ErrorPolicy::Fail => anyhow::bail!("cannot decode the record at {origin}: {error} (run with --on-error skip to log and skip such records)"),
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
