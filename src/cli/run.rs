//! `denorm run`: the job's options from the command line, and the job run until it stops.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::Args;
use denorm::plan;
use denorm::runtime::epoch::EpochLimits;
use denorm::runtime::{self as job, ErrorPolicy, JobOptions};

use super::args::{KafkaArgs, ReadingArgs};

/// What to do with a record that cannot be decoded (see [`ErrorPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnError {
    /// Stop the job with an error naming the record.
    Fail,
    /// Log the record's place and the error, count it, and go on.
    Skip,
    /// Write the record (original key and value, headers naming the error, topic, partition
    /// and offset) to the dead-letter topic, log and count it, and go on.
    Dlq,
}

impl From<OnError> for ErrorPolicy {
    fn from(on_error: OnError) -> ErrorPolicy {
        match on_error {
            OnError::Fail => ErrorPolicy::Fail,
            OnError::Skip => ErrorPolicy::Skip,
            OnError::Dlq => ErrorPolicy::Dlq,
        }
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Product files, or folders of them (every *.toml); products share the sources they have in
    /// common.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    reading: ReadingArgs,
    /// Exit once all sources are read to the end they had at start and the output is written
    /// (for batch runs and tests).
    #[arg(long, env = "DENORM_EXIT_WHEN_CAUGHT_UP")]
    exit_when_caught_up: bool,
    /// What to do with a record that cannot be decoded (bad JSON, a declared column missing or
    /// of another type): write it to the dead-letter topic and go on (dlq), log it and go on
    /// (skip), or stop the job (fail).
    #[arg(long, value_enum, env = "DENORM_ON_ERROR", default_value = "dlq")]
    on_error: OnError,
    /// The dead-letter topic of `--on-error dlq` [default: <first product>.dlq].
    #[arg(long, env = "DENORM_DLQ_TOPIC", value_name = "TOPIC")]
    dlq_topic: Option<String>,
    /// Records a worker reads per poll, from all of its source partitions (several polls may go
    /// into one time: see
    /// --max-epoch-records).
    #[arg(
        long,
        env = "DENORM_BATCH_SIZE",
        default_value_t = 4096,
        value_name = "N"
    )]
    batch_size: usize,
    /// Seconds between scans of the product files and folders: a file added, changed or
    /// removed installs, rebuilds or removes its products in the running job (0: never).
    #[arg(
        long,
        env = "DENORM_WATCH_INTERVAL",
        default_value_t = 2.0,
        value_name = "SECONDS"
    )]
    watch_interval: f64,
    /// Records a worker stamps with one time at most. While the dataflow computes earlier
    /// times, the records read wait in the open time, up to this many; an idle job closes each
    /// poll's records at once. Larger: faster hydration and catch-up (each document is rebuilt
    /// once per time), more memory in flight.
    #[arg(
        long,
        env = "DENORM_MAX_EPOCH_RECORDS",
        default_value_t = EpochLimits::default().max_records as u64,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_epoch_records: u64,
    /// MiB of decoded rows a worker stamps with one time at most (see --max-epoch-records).
    #[arg(
        long,
        env = "DENORM_MAX_EPOCH_MIB",
        default_value_t = (EpochLimits::default().max_bytes >> 20) as u64,
        value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_epoch_mib: u64,
    /// Closed times a worker may have in the dataflow before it stops reading (with
    /// --max-epoch-records, bounds the records in flight while hydrating).
    #[arg(
        long,
        env = "DENORM_MAX_IN_FLIGHT",
        default_value_t = EpochLimits::default().max_in_flight as u64,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_in_flight: u64,
    /// Serve Prometheus metrics on this address (e.g. 0.0.0.0:9464), at any path.
    #[arg(long, env = "DENORM_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// No progress bars while catching up (they are drawn only when stderr is a terminal).
    #[arg(short, long, env = "DENORM_QUIET")]
    quiet: bool,
    /// Worker threads in this process. Source partitions and join keys are spread over all
    /// workers of all processes.
    #[arg(
        short = 'w',
        long,
        env = "DENORM_WORKERS",
        default_value_t = 1,
        value_name = "N",
        help_heading = "Scale"
    )]
    workers: usize,
    /// Processes of the job (each started with the same files, hostfile and -w).
    #[arg(
        short = 'n',
        long,
        env = "DENORM_PROCESSES",
        default_value_t = 1,
        value_name = "P",
        help_heading = "Scale"
    )]
    processes: usize,
    /// Index of this process, 0 to P-1.
    #[arg(
        short = 'p',
        long,
        env = "DENORM_PROCESS",
        default_value_t = 0,
        value_name = "I",
        help_heading = "Scale"
    )]
    process: usize,
    /// File with one host:port per process, the same for every process (needed with -n > 1).
    #[arg(
        short = 'h',
        long,
        env = "DENORM_HOSTFILE",
        value_name = "FILE",
        help_heading = "Scale"
    )]
    hostfile: Option<PathBuf>,
    /// Print help (-h is --hostfile).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl RunArgs {
    fn timely(&self) -> anyhow::Result<timely::Config> {
        let mut args = vec![
            "-w".to_string(),
            self.workers.to_string(),
            "-n".into(),
            self.processes.to_string(),
            "-p".into(),
            self.process.to_string(),
        ];
        if let Some(h) = &self.hostfile {
            args.push("-h".into());
            args.push(h.display().to_string());
        }
        timely::Config::from_args(args.into_iter())
            .map_err(|e| anyhow::anyhow!("bad timely settings: {e}"))
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load_all(&args.files)?;
    for warning in plan::lint::lint(&plan) {
        tracing::warn!("{warning}");
    }
    let kafka = args.kafka.options(Some(&args.reading))?;
    tracing::info!(brokers = %kafka.brokers, settings = ?kafka.redacted(), products = plan.products.len(), sources = plan.sources.len(), "starting");
    if let Some(addr) = &args.metrics_addr {
        denorm::runtime::metrics::serve(addr)?;
    }
    let mut options = JobOptions::new(plan, kafka);
    options.exit_when_caught_up = args.exit_when_caught_up;
    options.on_error = args.on_error.into();
    if let Some(topic) = args.dlq_topic.clone() {
        options.dlq_topic = topic;
    }
    options.batch_size = args.batch_size;
    if args.watch_interval > 0.0 {
        options.watch = Some(args.files.clone());
        options.watch_interval = std::time::Duration::from_secs_f64(args.watch_interval);
    }
    options.epochs = EpochLimits {
        max_records: args.max_epoch_records as usize,
        max_bytes: (args.max_epoch_mib as usize).saturating_mul(1 << 20),
        max_in_flight: args.max_in_flight as usize,
    };
    options.progress_bars = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stop = options.stop.clone();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C/SIGTERM handler")?;
    let stopped = options.stop.clone();
    let report = job::run(options, args.timely()?)?;
    let how = if stopped.load(Ordering::SeqCst) {
        " on request (Ctrl-C/SIGTERM)"
    } else {
        ""
    };
    let what = if report.job_caught_up() {
        "the output of every record read is written"
    } else {
        "before the job caught up with its sources: nothing of this run is written, the output topic is as it was"
    };
    tracing::info!(
        records_read = report.records_read(),
        documents_written = report.documents_written(),
        decode_errors = report.decode_errors(),
        caught_up_seconds = report.caught_up_after().map(|d| d.as_secs_f64()),
        seconds = report.elapsed.as_secs_f64(),
        positions = %job::format_positions(&report.positions()),
        "stopped{how}, {what}; positions: the next offset to read per source topic/partition"
    );
    Ok(ExitCode::SUCCESS)
}
