//! The `denorm` command line: run products, try the demo, check and explain product files,
//! generate test data and verify output topics.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use denorm::job::{self, ErrorPolicy, JobOptions};
use denorm::kafka::client::KafkaOptions;
use denorm::plan;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns Debezium change topics into denormalized, nested JSON documents, continuously.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log filter (e.g. info, denorm=debug); also RUST_LOG.
    #[arg(long, global = true, env = "DENORM_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "DENORM_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run data products (files or folders of *.toml) against Kafka, until stopped.
    Run(RunArgs),
    /// Run the GitHub UserProfile product on an embedded broker with generated data.
    Demo(DemoArgs),
    /// Check product files and report every mistake with its line.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the plan: sources, shared arrangements, nesting tree and outputs.
    Explain {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write generated Debezium topics for a product's sources.
    Gen(GenArgs),
    /// Replay the input topics, compute the expected documents independently and compare them
    /// with the output topic. Exits 0 only on a full match.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Measurements for scripts/bench.sh (each prints one JSON object).
    Bench {
        #[command(subcommand)]
        command: denorm::bench::BenchCommand,
    },
}

#[derive(Args, Clone)]
struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port].
    #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
    brokers: String,
    /// librdkafka setting key=value (repeatable), e.g. -X security.protocol=SASL_SSL.
    /// DENORM_KAFKA_<NAME> environment variables are settings too (sasl.password from
    /// DENORM_KAFKA_SASL_PASSWORD); secrets are never logged.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// fetch.wait.max.ms: lower means lower latency.
    #[arg(long, env = "DENORM_FETCH_WAIT_MS", default_value_t = 10)]
    fetch_wait_ms: u32,
}

impl KafkaArgs {
    fn options(&self) -> anyhow::Result<KafkaOptions> {
        let mut options = KafkaOptions::new(&self.brokers);
        options.properties = KafkaOptions::parse_properties(&self.settings)?;
        options.fetch_wait_ms = self.fetch_wait_ms;
        Ok(options.with_environment())
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
struct RunArgs {
    /// Product files, or folders of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Exit once all sources are read to the end they had at start and the output is written.
    #[arg(long)]
    exit_when_caught_up: bool,
    /// What to do with a record that cannot be decoded (bad JSON, a declared column missing or
    /// of another type): write it to the dead-letter topic and go on (dlq), log it and go on
    /// (skip), or stop the job (fail).
    #[arg(long, value_enum, env = "DENORM_ON_ERROR", default_value = "dlq")]
    on_error: ErrorPolicy,
    /// The dead-letter topic of `--on-error dlq` (default: <first product>.dlq).
    #[arg(long, env = "DENORM_DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// Records read per source per step.
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    /// Seconds between scans of the product files and folders: a file added, changed or
    /// removed installs, rebuilds or removes its products in the running job (0: never).
    #[arg(long, env = "DENORM_WATCH_INTERVAL", default_value_t = 2.0)]
    watch_interval: f64,
    /// Batches a worker may have in the dataflow before it stops reading (bounds memory in
    /// flight while hydrating).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at any path.
    #[arg(long, env = "DENORM_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Timely: worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    workers: usize,
    /// Timely: number of processes.
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// Timely: index of this process (0..n).
    #[arg(short = 'p', long, default_value_t = 0)]
    process: usize,
    /// Timely: file with one host:port per process.
    #[arg(short = 'h', long)]
    hostfile: Option<PathBuf>,
    /// Print help.
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
struct GenArgs {
    /// The product file whose sources to generate.
    file: PathBuf,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Rows of the root source (others scale with it).
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Change events after the snapshot.
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Partitions of each topic created.
    #[arg(long, default_value_t = 2)]
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
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Users in the generated snapshot.
    #[arg(long, default_value_t = 40)]
    scale: usize,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 2)]
    workers: usize,
}

fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
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
    init_logging(&cli);
    install_panic_hook();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args),
        Command::Demo(args) => {
            denorm::demo::run(args.seconds, args.scale, args.workers).map(|_| ExitCode::SUCCESS)
        }
        Command::Check { files } => {
            let plan = plan::load_all(&files)?;
            for p in &plan.products {
                println!("ok: {} ({}) → {}", p.name, p.file, p.output_topic);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { files } => {
            print!("{}", denorm::explain::explain(&plan::load_all(&files)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => generate(args),
        Command::Bench { command } => denorm::bench::run(command).map(|_| ExitCode::SUCCESS),
        Command::Verify { files, kafka } => {
            let plan = plan::load_all(&files)?;
            let (results, records, errors) = denorm::verify::verify(&kafka.options()?, &plan)?;
            println!(
                "replayed {records} input records ({} undecodable)",
                errors.len()
            );
            for e in errors.iter().take(5) {
                println!("  undecodable: {e}");
            }
            for r in &results {
                print!("{r}");
            }
            Ok(if results.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load_all(&args.files)?;
    let kafka = args.kafka.options()?;
    tracing::info!(brokers = %kafka.brokers, settings = ?kafka.redacted(), products = plan.products.len(), sources = plan.sources.len(), "starting");
    if let Some(addr) = &args.metrics_addr {
        denorm::metrics::serve(addr)?;
    }
    let mut options = JobOptions::new(plan, kafka);
    options.exit_when_caught_up = args.exit_when_caught_up;
    options.on_error = args.on_error;
    if let Some(topic) = args.dlq_topic.clone() {
        options.dlq_topic = topic;
    }
    options.batch_size = args.batch_size;
    if args.watch_interval > 0.0 {
        options.watch = Some(args.files.clone());
        options.watch_interval = std::time::Duration::from_secs_f64(args.watch_interval);
    }
    options.max_in_flight = args.max_in_flight as usize;
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

fn generate(args: GenArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load(&args.file)?;
    let kafka = args.kafka.options()?;
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
