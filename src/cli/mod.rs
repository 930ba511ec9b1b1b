//! The `denorm` command line, a thin shell over the library: each subcommand's arguments (clap)
//! become the library's options, and its result an exit code.

mod args;
mod bench;
mod check;
mod gen;
mod logging;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use denorm::plan;

use args::{seconds, KafkaArgs, ReadingArgs};
use check::{check, CheckArgs};
use gen::{generate, GenArgs};
use logging::{init_logging, install_panic_hook, LogFormat};
use run::{run, RunArgs};

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
pub struct Cli {
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
    pub log_level: Option<String>,
    /// Log lines as text for people, or as one JSON object per line for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DENORM_LOG_FORMAT",
        default_value = "text",
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
    /// The same as --log-format json.
    #[arg(long, global = true, hide = true, env = "DENORM_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    command: Command,
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
        command: bench::BenchCommand,
    },
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

pub fn main() -> ExitCode {
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
        Command::Demo(args) => denorm::tools::demo::run(args.seconds, args.scale, args.workers)
            .map(|_| ExitCode::SUCCESS),
        Command::Check(args) => check(args),
        Command::Explain { files, dot } => {
            let plan = plan::load_all(&files)?;
            if dot {
                print!("{}", denorm::tools::explain::dot::dot(&plan));
            } else {
                print!("{}", denorm::tools::explain::explain(&plan));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => generate(args),
        Command::Bench { command } => bench::run(command).map(|_| ExitCode::SUCCESS),
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
