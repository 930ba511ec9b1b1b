//! Arguments several subcommands share: how to reach the brokers and how consumers fetch.

use clap::Args;
use denorm::kafka::client::KafkaOptions;

/// How to reach the brokers.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port]. The default is the local test broker of
    /// scripts/broker.sh.
    #[arg(
        long,
        env = "DENORM_BROKERS",
        default_value = "127.0.0.1:19092",
        help_heading = "Kafka"
    )]
    pub brokers: String,
    /// A librdkafka setting (repeatable), e.g. -X security.protocol=SASL_SSL. Environment
    /// variables DENORM_KAFKA_<NAME> are settings too; secrets are never logged.
    #[arg(short = 'X', value_name = "KEY=VALUE", help_heading = "Kafka")]
    pub settings: Vec<String>,
    /// Seconds to wait at start for a broker to answer before exiting with an error (once
    /// running, a broker outage is waited out instead).
    #[arg(
        long,
        env = "DENORM_STARTUP_TIMEOUT",
        default_value_t = denorm::kafka::client::DEFAULT_STARTUP_TIMEOUT.as_secs_f64(),
        value_name = "SECONDS",
        help_heading = "Kafka"
    )]
    pub startup_timeout: f64,
}

/// How the consumers fetch.
#[derive(Args, Clone)]
pub struct ReadingArgs {
    /// fetch.wait.max.ms: how long a fetch waits for data; lower means lower latency and more
    /// requests.
    #[arg(
        long,
        env = "DENORM_FETCH_WAIT_MS",
        default_value_t = 10,
        value_name = "MS",
        help_heading = "Kafka"
    )]
    pub fetch_wait_ms: u32,
}

impl KafkaArgs {
    pub fn options(&self, reading: Option<&ReadingArgs>) -> anyhow::Result<KafkaOptions> {
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
pub fn seconds(value: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{flag} must be a number of seconds ≥ 0, not {value}"))
}

/// How generated changes pick the rows they edit (see [`denorm::tools::gen::EditMix`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EditMixArg {
    Popular,
    Uniform,
}

impl From<EditMixArg> for denorm::tools::gen::EditMix {
    fn from(mix: EditMixArg) -> Self {
        match mix {
            EditMixArg::Popular => denorm::tools::gen::EditMix::Popular,
            EditMixArg::Uniform => denorm::tools::gen::EditMix::Uniform,
        }
    }
}
