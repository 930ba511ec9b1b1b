//! The `denorm` command line: run products, try the demo, check and explain product files,
//! generate test data and verify output topics.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use denorm::kafka::client::KafkaOptions;
use denorm::plan;
use denorm::runtime::epoch::EpochLimits;
use denorm::runtime::{self as job, ErrorPolicy, JobOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns Debezium change topics into denormalized, nested JSON documents, continuously.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Every flag with an [env: …] can be set by that environment variable instead; librdkafka \
settings by DENORM_KAFKA_<NAME> (DENORM_KAFKA_SASL_PASSWORD → sasl.password).\n\
Start with `denorm demo`, write a product file (see README.md), `denorm check` it, then `denorm run` it."
)]
struct Cli {
    /// What to log: a level (error, warn, info, debug, trace) or directives such as
    /// `info,denorm=debug`. Without it: DENORM_LOG, then RUST_LOG, then `info`.
    #[arg(
        long = "log-level",
        visible_alias = "log",
        global = true,
        env = "DENORM_LOG",
        value_name = "FILTER",
        help_heading = "Logging"
    )]
    log_level: Option<String>,
    /// Log lines as text for people, or as one JSON object per line for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DENORM_LOG_FORMAT",
        default_value = "text",
        help_heading = "Logging"
    )]
    log_format: LogFormat,
    /// The same as --log-format json.
    #[arg(long, global = true, hide = true, env = "DENORM_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run data products against Kafka until stopped (Ctrl-C or SIGTERM flush and exit 0).
    #[command(after_help = "Examples:
  denorm run dataflows/ --brokers kafka:9092 -w 4 --metrics-addr 0.0.0.0:9464
  denorm run product.toml --exit-when-caught-up --on-error dlq
  denorm run dataflows/ -w 2 -n 2 -p 0 -h hosts     # process 0 of 2; run -p 1 elsewhere")]
    Run(RunArgs),
    /// Run the GitHub UserProfile product on an embedded broker with generated data.
    Demo(DemoArgs),
    /// Check product files: every mistake with its line and how to fix it.
    ///
    /// With --brokers (or DENORM_BROKERS), also check the source topics: each must exist, and the
    /// first and last records of each partition must decode, have the declared columns and
    /// types, and be keyed by the declared primary key. Exits 1 on any problem.
    #[command(after_help = "Examples:
  denorm check dataflows/
  denorm check shop.toml --brokers kafka:9092 --sample 20")]
    Check(CheckArgs),
    /// Print the plan: sources, shared arrangements, nesting tree and outputs.
    #[command(after_help = "Example:
  denorm explain --dot dataflows/github_user_profile.toml | dot -Tsvg > plan.svg")]
    Explain {
        /// Product files, or folders of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a Graphviz graph (dot) instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Write generated Debezium topics for a product's sources (test data).
    Gen(GenArgs),
    /// Compare the output topic with documents computed independently from the input topics.
    ///
    /// Replays the input topics, computes the expected documents with its own evaluator (the
    /// denorm-verify crate: its own product-file reader, Debezium decoder, evaluation, JSON
    /// comparison and Kafka consumer, sharing no code with the engine), reads the output topic to
    /// its end and reports expected / found / missing / unexpected / different documents, with
    /// field-by-field differences. Exits 0 only on a full match with every input record decoded.
    #[command(after_help = "Examples:
  denorm verify dataflows/ --brokers kafka:9092
  denorm verify product.toml --allow-undecodable 3   # three bad input records are expected")]
    Verify {
        /// Product files, or folders of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        reading: ReadingArgs,
        /// Input records that may fail to decode (they are listed); more is a failure. The
        /// expected documents are computed without them, so what they hold is not checked.
        #[arg(long, default_value_t = 0, value_name = "N")]
        allow_undecodable: usize,
    },
    /// Measurements for scripts/bench.sh (each prints one JSON object).
    Bench {
        #[command(subcommand)]
        command: denorm::bench::BenchCommand,
    },
}

/// How to reach the brokers.
#[derive(Args, Clone)]
struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port]. The default is the local test broker of
    /// scripts/broker.sh.
    #[arg(
        long,
        env = "DENORM_BROKERS",
        default_value = "127.0.0.1:19092",
        help_heading = "Kafka"
    )]
    brokers: String,
    /// A librdkafka setting (repeatable), e.g. -X security.protocol=SASL_SSL. Environment
    /// variables DENORM_KAFKA_<NAME> are settings too; secrets are never logged.
    #[arg(short = 'X', value_name = "KEY=VALUE", help_heading = "Kafka")]
    settings: Vec<String>,
    /// Seconds to wait at start for a broker to answer before exiting with an error (once
    /// running, a broker outage is waited out instead).
    #[arg(
        long,
        env = "DENORM_STARTUP_TIMEOUT",
        default_value_t = denorm::kafka::client::DEFAULT_STARTUP_TIMEOUT.as_secs_f64(),
        value_name = "SECONDS",
        help_heading = "Kafka"
    )]
    startup_timeout: f64,
}

/// How the consumers fetch.
#[derive(Args, Clone)]
struct ReadingArgs {
    /// fetch.wait.max.ms: how long a fetch waits for data; lower means lower latency and more
    /// requests.
    #[arg(
        long,
        env = "DENORM_FETCH_WAIT_MS",
        default_value_t = 10,
        value_name = "MS",
        help_heading = "Kafka"
    )]
    fetch_wait_ms: u32,
}

impl KafkaArgs {
    fn options(&self, reading: Option<&ReadingArgs>) -> anyhow::Result<KafkaOptions> {
        let mut options = KafkaOptions::new(&self.brokers);
        options.properties = KafkaOptions::parse_properties(&self.settings)?;
        options.startup_timeout = seconds(self.startup_timeout, "--startup-timeout")?;
        if let Some(reading) = reading {
            options.fetch_wait_ms = reading.fetch_wait_ms;
        }
        Ok(options.with_environment())
    }
}

/// A duration given in seconds on the command line.
fn seconds(value: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{flag} must be a number of seconds ≥ 0, not {value}"))
}

#[derive(Args)]
#[command(disable_help_flag = true)]
struct RunArgs {
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
    /// Records read per source per poll (several polls may go into one time: see
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

#[derive(Args)]
struct CheckArgs {
    /// Product files, or folders of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also check the source topics on these brokers (host:port[,host:port]).
    #[arg(long, env = "DENORM_BROKERS", help_heading = "Kafka")]
    brokers: Option<String>,
    /// A librdkafka setting (repeatable), as for `run`.
    #[arg(short = 'X', value_name = "KEY=VALUE", help_heading = "Kafka")]
    settings: Vec<String>,
    /// Records sampled from the start, and as many from the end, of each partition.
    #[arg(long, default_value_t = 5, value_name = "N", help_heading = "Kafka")]
    sample: usize,
    /// Seconds to wait for a broker to answer before exiting with an error.
    #[arg(
        long,
        env = "DENORM_STARTUP_TIMEOUT",
        default_value_t = denorm::kafka::client::DEFAULT_STARTUP_TIMEOUT.as_secs_f64(),
        value_name = "SECONDS",
        help_heading = "Kafka"
    )]
    startup_timeout: f64,
}

#[derive(Args)]
struct GenArgs {
    /// The product file whose sources to generate.
    file: PathBuf,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Rows of the root source (others scale with it).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    scale: usize,
    /// Change events after the snapshot.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    changes: usize,
    /// Random seed: the same seed writes the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Partitions of each topic it creates (existing topics are kept).
    #[arg(long, default_value_t = 2, value_name = "N")]
    partitions: i32,
    /// Write only the change records: those that follow a snapshot written earlier with the
    /// same scale and seed.
    #[arg(long)]
    only_changes: bool,
    /// Produce at most this many records per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Leave out the first N records (with --only-changes: of the change records), so that
    /// consecutive runs can write consecutive stretches of one change stream.
    #[arg(long, default_value_t = 0)]
    skip_records: u64,
    /// Write at most this many records.
    #[arg(long)]
    max_records: Option<u64>,
}

#[derive(Args)]
struct DemoArgs {
    /// How long to stream changes after the snapshot.
    #[arg(long, default_value_t = 15, value_name = "S")]
    seconds: u64,
    /// Users in the generated snapshot.
    #[arg(long, default_value_t = 40, value_name = "N")]
    scale: usize,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 2, value_name = "N")]
    workers: usize,
}

/// Logs go to stderr, filtered by `--log-level` (or DENORM_LOG), else RUST_LOG, else `info`.
fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let directives = match &cli.log_level {
        Some(flag) => flag.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).with_context(|| {
        format!("bad log filter `{directives}` (try info, or info,denorm=debug)")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(denorm::progress::LogWriter);
    if cli.log_json || cli.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Whether log lines may carry colour codes: only when stderr is a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org). Log files, pipes, service
/// managers and container logs get plain text.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A process of a multi-process job that loses another one cannot go on (timely needs all of
/// them): say so plainly and exit, instead of a panic trace per thread.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.contains("timely communication error") || message.contains("MergeQueue poisoned")
        {
            eprintln!(
                "error: lost the connection to another process of the job ({message}). A timely job cannot go on \
                 without all of its processes: start them all again (each rebuilds its state from the topics and \
                 writes only what differs from the output topic)."
            );
            std::process::exit(3);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    install_panic_hook();
    if let Err(e) = denorm::fault::check() {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    tracing::debug!(
        version = env!("CARGO_PKG_VERSION"),
        command = cli.command.name(),
        "denorm starting"
    );
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Demo(_) => "demo",
            Command::Check(_) => "check",
            Command::Explain { .. } => "explain",
            Command::Gen(_) => "gen",
            Command::Verify { .. } => "verify",
            Command::Bench { .. } => "bench",
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args),
        Command::Demo(args) => {
            denorm::demo::run(args.seconds, args.scale, args.workers).map(|_| ExitCode::SUCCESS)
        }
        Command::Check(args) => check(args),
        Command::Explain { files, dot } => {
            let plan = plan::load_all(&files)?;
            if dot {
                print!("{}", denorm::explain::dot::dot(&plan));
            } else {
                print!("{}", denorm::explain::explain(&plan));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => generate(args),
        Command::Bench { command } => denorm::bench::run(command).map(|_| ExitCode::SUCCESS),
        Command::Verify {
            files,
            kafka,
            reading,
            allow_undecodable,
        } => {
            // The verifier reads the settings itself: nothing of the engine's Kafka client.
            let mut settings =
                denorm_verify::Settings::from_command_line(&kafka.brokers, &kafka.settings)?;
            settings.fetch_wait_ms = reading.fetch_wait_ms;
            settings.startup_timeout = seconds(kafka.startup_timeout, "--startup-timeout")?;
            let run = denorm_verify::verify_files(&files, &settings)?;
            print!("{}", run.report(allow_undecodable));
            Ok(if run.ok(allow_undecodable) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load_all(&args.files)?;
    for warning in plan::lint::lint(&plan) {
        tracing::warn!("{warning}");
    }
    let kafka = args.kafka.options(Some(&args.reading))?;
    tracing::info!(brokers = %kafka.brokers, settings = ?kafka.redacted(), products = plan.products.len(), sources = plan.sources.len(), "starting");
    if let Some(addr) = &args.metrics_addr {
        denorm::metrics::serve(addr)?;
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

/// Stops the generator once `--max-records` are written.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("enough records")
    }
}

impl std::error::Error for Enough {}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // Every file is checked: the good ones say ok, each bad one gives its error.
    let (plan, errors) = plan::load_each(&args.files)?;
    for p in &plan.products {
        println!("ok: {} ({}) → {}", p.name, p.file, p.output_topic);
    }
    for warning in plan::lint::lint(&plan) {
        println!("{warning}");
    }
    for e in &errors {
        eprintln!("error: {e:#}");
    }
    if !errors.is_empty() {
        eprintln!(
            "{} of the product files {} errors",
            errors.len(),
            if errors.len() == 1 { "has" } else { "have" }
        );
        return Ok(ExitCode::from(1));
    }
    let Some(brokers) = &args.brokers else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut kafka = KafkaOptions::new(brokers);
    kafka.properties = KafkaOptions::parse_properties(&args.settings)?;
    kafka.startup_timeout = seconds(args.startup_timeout, "--startup-timeout")?;
    let kafka = kafka.with_environment();
    kafka.wait_for_brokers()?;
    let report = denorm::check::check_topics(&kafka, &plan, args.sample.max(1))?;
    print!("{report}");
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn generate(args: GenArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load(&args.file)?;
    let kafka = args.kafka.options(None)?;
    kafka.wait_for_brokers()?;
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    denorm::kafka::admin::ensure_topics(&kafka, &topics, args.partitions)?;
    let mut producer = denorm::kafka::admin::RecordProducer::new(&kafka)?;
    let options = denorm::gen::GenOptions {
        scale: args.scale,
        changes: args.changes,
        seed: args.seed,
    };
    let mut pacer = args.rate.map(denorm::bench::pace::Pacer::new).transpose()?;
    let mut per_source = vec![0u64; plan.sources.len()];
    let started = std::time::Instant::now();
    let end = args
        .max_records
        .map_or(u64::MAX, |m| args.skip_records.saturating_add(m));
    let mut index = 0u64;
    let send = |r: denorm::gen::Record| {
        index += 1;
        if index > end {
            return Err(anyhow::Error::new(Enough));
        }
        if index <= args.skip_records {
            return Ok(());
        }
        if let Some(pacer) = pacer.as_mut() {
            pacer.wait();
        }
        per_source[r.source] += 1;
        producer.send(
            &plan.sources[r.source].topic,
            r.key.as_deref(),
            r.value.as_deref(),
        )
    };
    let generated = if args.only_changes {
        denorm::gen::generate_changes(&plan, &options, send)
    } else {
        denorm::gen::generate(&plan, &options, send)
    };
    match generated {
        Err(e) if !e.is::<Enough>() => return Err(e),
        _ => {}
    }
    producer.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {} records in {seconds:.1}s ({:.0} records/s): {}",
        producer.sent,
        producer.sent as f64 / seconds.max(1e-9),
        plan.sources
            .iter()
            .zip(&per_source)
            .map(|(s, n)| format!("{} {n}", s.topic))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
