//! `denorm check`: every product file checked, and with brokers, their topics sampled.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use denorm::kafka::client::KafkaOptions;
use denorm::plan;

use super::args::seconds;

#[derive(Args)]
pub struct CheckArgs {
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

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
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
    let report = denorm::tools::check::check_topics(&kafka, &plan, args.sample.max(1))?;
    print!("{report}");
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
