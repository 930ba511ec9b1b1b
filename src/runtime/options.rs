//! What a job is asked to do: the products, how to reach Kafka, how to group what it reads into
//! times, what to do with bad records, and when to stop. The command line fills these in; so can
//! any other caller.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::epoch::EpochLimits;
use crate::kafka::client::KafkaOptions;
use crate::plan::Plan;

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
