//! Runs a plan as a timely job fed from Kafka: each worker ([`worker::JobWorker`]) builds the
//! dataflows of its catalog, reads its share of the source partitions, decodes the records into
//! the sources' inputs, stamps them with a monotone millisecond time ([`epoch::Epochs`]) and
//! steps the dataflows; the products' sinks write their documents to the output topics.
//!
//! What the workers of a process share to be observed — partition positions for the progress
//! bars and lag gauges ([`crate::progress`]), source timestamps per time for the latency
//! histogram ([`crate::latency`]) — is created here and handed to each worker.

pub mod epoch;
pub mod latency;
pub mod metrics;
pub mod options;
pub mod progress;
pub mod sources;
pub mod watch;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latency::SourceTimes;
pub use options::{ErrorPolicy, JobOptions};
use progress::Progress;

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
            worker::JobWorker::new(worker, &options, &observed, start)
                .and_then(|job| job.run(worker, &abort))
        }));
        if !matches!(result, Ok(Ok(_))) {
            abort.store(true, Ordering::SeqCst);
            // Timely steps a worker until its dataflows complete: a failed one need not.
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
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
pub struct Observed {
    pub progress: Arc<Progress>,
    pub source_times: Arc<SourceTimes>,
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

/// The index of this process in a timely configuration.
fn timely_process_index(config: &timely::Config) -> usize {
    match &config.communication {
        timely::CommunicationConfig::Cluster { process, .. } => *process,
        _ => 0,
    }
}
