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
    /// What to log: a level (error, warn, info, debug, trace) or directives such as
    /// `info,denorm=debug`. Without it: DENORM_LOG, then RUST_LOG, then `info`.
    #[arg(
        long = "log-level",
        visible_alias = "log",
        global = true,
        env = "DENORM_LOG",
        value_name = "FILTER"
    )]
    log_level: Option<String>,
    /// Log lines as text for people, or as one JSON object per line for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DENORM_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    /// The same as --log-format json.
    #[arg(long, global = true, hide = true, env = "DENORM_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run data products (files or folders of *.toml) against Kafka, until stopped.
    Run(RunArgs),
    /// Run the GitHub UserProfile product on an embedded broker with generated data.
    Demo(DemoArgs),
    /// Check product files and report every mistake with its line; with --brokers, also check
    /// that the source topics exist and that their records fit the declared columns.
    Check(CheckArgs),
    /// Print the plan: sources, shared arrangements, nesting tree and outputs.
    Explain {
        /// Product files, or folders of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a Graphviz graph instead of text: `denorm explain --dot FILE | dot -Tsvg > plan.svg`.
        #[arg(long)]
        dot: bool,
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
    /// What to do with a record that cannot be decoded.
    #[arg(long, value_enum, env = "DENORM_ON_ERROR", default_value = "fail")]
    on_error: ErrorPolicy,
    /// The dead-letter topic of `--on-error dlq` (default: <first product>.dlq).
    #[arg(long, env = "DENORM_DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// Records read per source per step.
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at any path.
    #[arg(long, env = "DENORM_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// No progress bars while catching up (they are drawn only when stderr is a terminal).
    #[arg(short, long, env = "DENORM_QUIET")]
    quiet: bool,
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
struct CheckArgs {
    /// Product files, or folders of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also check the source topics on these brokers (host:port[,host:port]): each must exist,
    /// and records sampled from each partition must decode and have the declared columns,
    /// types and primary key.
    #[arg(long, env = "DENORM_BROKERS")]
    brokers: Option<String>,
    /// librdkafka setting key=value (repeatable), as for `run`.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Records sampled from the start, and as many from the end, of each partition.
    #[arg(long, default_value_t = 5, value_name = "N")]
    sample: usize,
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
        .with_writer(denorm::progress::LogWriter);
    if cli.log_json || cli.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
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
    options.progress_bars = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stop = options.stop.clone();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C/SIGTERM handler")?;
    let report = job::run(options, args.timely()?)?;
    tracing::info!(
        records_read = report.records_read(),
        documents_written = report.documents_written(),
        decode_errors = report.decode_errors(),
        caught_up_seconds = report.caught_up_after().map(|d| d.as_secs_f64()),
        seconds = report.elapsed.as_secs_f64(),
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load_all(&args.files)?;
    for p in &plan.products {
        println!("ok: {} ({}) → {}", p.name, p.file, p.output_topic);
    }
    let Some(brokers) = &args.brokers else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut kafka = KafkaOptions::new(brokers);
    kafka.properties = KafkaOptions::parse_properties(&args.settings)?;
    let report = denorm::check::check_topics(&kafka.with_environment(), &plan, args.sample.max(1))?;
    print!("{report}");
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

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
    let started = std::time::Instant::now();
    let summary = denorm::gen::generate(&plan, &options, |r| {
        producer.send(
            &plan.sources[r.source].topic,
            r.key.as_deref(),
            r.value.as_deref(),
        )
    })?;
    producer.flush()?;
    println!(
        "generated {} records in {:.1}s: {}",
        summary.records,
        started.elapsed().as_secs_f64(),
        plan.sources
            .iter()
            .zip(&summary.per_source)
            .map(|(s, n)| format!("{} {n}", s.topic))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
