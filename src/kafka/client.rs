//! librdkafka client settings: the bootstrap brokers, settings passed through from the command
//! line (`-X key=value`) and the environment (`DENORM_KAFKA_SASL_PASSWORD` → `sasl.password`),
//! and a printable form that never shows secrets.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset};

/// Where a reader of a whole partition starts: offset 0, not `Offset::Beginning`. The
/// consumers reset an offset below the log start to the earliest (`auto.offset.reset`), so on
/// Kafka the two are the same; but `Beginning` is resolved by asking the broker for the earliest
/// offset, and the test broker (tansu 0.6, memory storage) answers with the batch stored first,
/// not the lowest offset: when two producers wrote a partition at once, a reader from the
/// "beginning" skipped the first batch.
pub const FROM_START: Offset = Offset::Offset(0);

/// Routes librdkafka's errors and log lines to `tracing` through [`log_client_error`] and
/// [`log_client_line`] (warnings, each repeated message once per 10 s), leaving out
/// partition-EOF notices (the readers use them to know they reached the end; they are not
/// errors), and remembers an authentication failure so that start-up can stop with it instead
/// of waiting for topics it will never see.
#[derive(Default)]
pub struct QuietContext {
    authentication: std::sync::Mutex<Option<String>>,
}

impl QuietContext {
    /// The broker's last refusal of our credentials, if any.
    pub fn authentication_failure(&self) -> Option<String> {
        self.authentication
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        log_client_line(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_authentication(&error) {
            *self
                .authentication
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(format!("{error}: {reason}"));
        }
        log_client_error(error, reason);
    }
}

/// How often one repeated client message is logged.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// Counts a message under `key`; whether to log it now (the first time, then once per
/// [`REPEAT_EVERY`]), and how many times it came since it was last logged. A broker down for
/// minutes makes librdkafka repeat the same lines every second per connection.
fn rate_limited(key: String) -> Option<u64> {
    type Seen = std::collections::HashMap<String, (std::time::Instant, u64)>;
    static LAST: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let seen = last
        .get_or_insert_with(Default::default)
        .entry(key)
        .or_insert((std::time::Instant::now() - 2 * REPEAT_EVERY, 0));
    seen.1 += 1;
    if seen.0.elapsed() < REPEAT_EVERY {
        return None;
    }
    let times = seen.1;
    *seen = (std::time::Instant::now(), 0);
    Some(times)
}

/// Logs a librdkafka client error (a broker down, a connection refused: the client reconnects
/// and retries by itself) as a warning, each error once per 10 s, except partition-EOF notices.
pub fn log_client_error(error: KafkaError, reason: &str) {
    let eof = matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
    if eof {
        return;
    }
    if let Some(times) = rate_limited(error.to_string()) {
        tracing::warn!(target: "librdkafka", %error, reason, times, "Kafka client error (the client reconnects and retries)");
    }
}

/// Logs one of librdkafka's own log lines. Its errors (`FAIL … Connection refused` and the
/// like, about connections it retries by itself) become warnings, its critical lines errors,
/// and each line is logged once per 10 s: lines of one facility that differ only in their
/// numbers (ports, counts, milliseconds) count as the same. Debug lines (`-X debug=…`) all
/// pass, at debug level, as do the notices that a setting is for the other kind of client
/// ([`for_other_client`]).
pub fn log_client_line(level: RDKafkaLogLevel, facility: &str, line: &str) {
    if matches!(level, RDKafkaLogLevel::Debug) || for_other_client(facility, line) {
        tracing::debug!(target: "librdkafka", facility, "{line}");
        return;
    }
    let key: String = std::iter::once(facility)
        .chain(std::iter::once(" "))
        .flat_map(str::chars)
        .chain(line.chars().filter(|c| !c.is_ascii_digit()))
        .collect();
    let Some(times) = rate_limited(key) else {
        return;
    };
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(target: "librdkafka", facility, times, "{line}")
        }
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility, times, "{line}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
            tracing::info!(target: "librdkafka", facility, times, "{line}")
        }
    }
}

/// Whether a line is librdkafka's notice that a setting is a producer's and ignored by a
/// consumer, or the other way round: `-X` settings go to every client of denorm (its consumers
/// and its producers), so a `-X compression.type=lz4` for the output would otherwise warn at
/// every consumer's start.
fn for_other_client(facility: &str, line: &str) -> bool {
    facility == "CONFWARN"
        && (line.contains("is a producer property and will be ignored by this consumer")
            || line.contains("is a consumer property and will be ignored by this producer"))
}

impl ConsumerContext for QuietContext {}

/// A consumer with [`QuietContext`].
pub type Reader = BaseConsumer<QuietContext>;

/// How to reach the brokers.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    /// librdkafka settings, applied after denorm's defaults (so they can override them).
    pub properties: Vec<(String, String)>,
    /// `fetch.wait.max.ms`: how long a fetch may wait for data. Low keeps latency low (and some
    /// brokers hold every fetch this long even when data is there).
    pub fetch_wait_ms: u32,
    /// How long start-up waits for a broker to answer before it gives up
    /// ([`KafkaOptions::wait_for_brokers`]).
    pub startup_timeout: Duration,
}

const ENV_PREFIX: &str = "DENORM_KAFKA_";

/// How long start-up waits for a broker by default (Kafka clients commonly give up after about
/// a minute).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

impl KafkaOptions {
    pub fn new(brokers: &str) -> Self {
        KafkaOptions {
            brokers: brokers.to_owned(),
            properties: Vec::new(),
            fetch_wait_ms: 10,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }

    /// Adds `DENORM_KAFKA_*` environment variables as settings (`_` → `.`, lower case).
    pub fn with_environment(mut self) -> Self {
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix(ENV_PREFIX)
                    .map(|name| (name.to_ascii_lowercase().replace('_', "."), v))
            })
            .collect();
        env.sort();
        // Command-line settings win over the environment: put the environment first.
        env.append(&mut self.properties);
        self.properties = env;
        self
    }

    /// Parses `key=value` settings.
    pub fn parse_properties(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
        pairs
            .iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("Kafka setting `{p}` is not key=value"))
            })
            .collect()
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// The settings for logs and `explain`, secrets masked.
    pub fn redacted(&self) -> Vec<(String, String)> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let secret = ["password", "secret", "key", "token", "jaas"]
                    .iter()
                    .any(|s| k.contains(s));
                (
                    k.clone(),
                    if secret {
                        "*****".to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }

    /// A consumer that reads assigned partitions from the beginning and reports their end.
    pub fn consumer(&self, purpose: &str) -> anyhow::Result<Reader> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("denorm-{purpose}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            // One consumer per worker reads all of its source partitions. Fetches carry up to
            // 16 MB a partition, 64 MB in all, and up to 16 MB wait prefetched. When those are
            // full, librdkafka waits fetch.queue.backoff.ms before it fetches the partition
            // again: 1 s by default, while a worker drains them in a fraction of that, so reading
            // stalled most of the time (`bench consume -w 2` at M: 229k rows/s with the default,
            // 662k with 10 ms). With 10 ms, 16 MB prefetched reads as fast as 64 MB (about 510k
            // rows/s either way at M, 8 MB too) for 200 MB less memory. Records waiting there
            // are memory the dataflow does not bound: lower them with -X where memory is tight.
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.queue.backoff.ms", "10")
            .set("client.id", format!("denorm-{purpose}"));
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
            .create_with_context(QuietContext::default())
            .map_err(|e| {
                anyhow::anyhow!("cannot create a Kafka consumer for {}: {e}", self.brokers)
            })
    }

    /// An admin client whose log lines and errors go through [`QuietContext`].
    pub fn admin(&self) -> anyhow::Result<AdminClient<QuietContext>> {
        self.client_config()
            .create_with_context(QuietContext::default())
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create a Kafka admin client for {}: {e}",
                    self.brokers
                )
            })
    }

    /// Waits until a broker answers a metadata request, for at most `startup_timeout`. Fails
    /// then with the brokers tried and the client's last error, or at once when the brokers
    /// refuse our credentials. Only start-up is bounded so: once running, readers and writers
    /// wait through a broker outage and reconnect.
    pub fn wait_for_brokers(&self) -> anyhow::Result<()> {
        let consumer = self.consumer("metadata")?;
        let deadline = std::time::Instant::now() + self.startup_timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let error = match consumer.fetch_metadata(
                None,
                left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
            ) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // Serves the client's error events, so that a refusal of our credentials is seen.
            let _ = consumer.poll(Duration::ZERO);
            let refused = if is_authentication(&error) {
                Some(error.to_string())
            } else {
                consumer.context().authentication_failure()
            };
            if let Some(refused) = refused {
                anyhow::bail!(
                    "the brokers {} refused to authenticate the client: {refused} (check security.protocol and the sasl.* and ssl.* settings)",
                    self.brokers
                );
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no broker of {} answered within {}s (the Kafka client's last error: {error}); check --brokers, the network and the security settings, or wait longer with --startup-timeout",
                    self.brokers,
                    self.startup_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The names of every topic the brokers have (one metadata request).
    pub fn topic_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .all_metadata()?
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_owned())
            .collect())
    }

    /// The number of partitions of each of `topics` that exists (one metadata request).
    pub fn existing_partition_counts(
        &self,
        topics: &[String],
    ) -> anyhow::Result<std::collections::HashMap<String, i32>> {
        if topics.is_empty() {
            return Ok(Default::default());
        }
        Ok(self
            .all_metadata()?
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .filter(|t| topics.iter().any(|name| name == t.name()))
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    }

    /// The metadata of every topic the brokers have (one request).
    fn all_metadata(&self) -> anyhow::Result<rdkafka::metadata::Metadata> {
        self.consumer("metadata")?
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("cannot list the topics of {}: {e}", self.brokers))
    }

    /// The number of partitions of each topic, waiting up to `wait` for topics to appear.
    pub fn partition_counts(&self, topics: &[&str], wait: Duration) -> anyhow::Result<Vec<i32>> {
        let consumer = self.consumer("metadata")?;
        let deadline = std::time::Instant::now() + wait;
        let mut counts = Vec::new();
        for topic in topics {
            loop {
                let found = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(1))
                    .map(|m| {
                        m.topics()
                            .iter()
                            .find(|t| t.name() == *topic)
                            .map(|t| (t.partitions().len(), t.error()))
                    });
                match found {
                    Ok(Some((n, None))) if n > 0 => {
                        counts.push(n as i32);
                        break;
                    }
                    other => {
                        // A broker that refuses our credentials will not change its mind.
                        // (Polling serves the client's error events, nothing is assigned.)
                        let _ = consumer.poll(Duration::ZERO);
                        let refused = match &other {
                            Err(e) if is_authentication(e) => Some(e.to_string()),
                            _ => consumer.context().authentication_failure(),
                        };
                        if let Some(refused) = refused {
                            anyhow::bail!(
                                "the brokers {} refused to authenticate the client: {refused} (check security.protocol and the sasl.* and ssl.* settings)",
                                self.brokers
                            );
                        }
                        if std::time::Instant::now() >= deadline {
                            let why = match other {
                                Ok(Some((n, error))) => format!("{n} partitions, error {error:?}"),
                                Ok(None) => "the broker does not know it".to_owned(),
                                Err(e) => format!("the metadata request failed: {e}"),
                            };
                            anyhow::bail!(
                                "source topic `{topic}` is not available on {} ({why}); create it or check the product file and the Kafka settings",
                                self.brokers
                            );
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
        Ok(counts)
    }
}

/// Whether a client error says the broker refused our credentials.
fn is_authentication(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// The low and high watermarks of a partition as the consumer last saw them in fetch responses,
/// without asking the broker; `None` before the first fetch of the partition (and a low of `None`
/// when the response did not say). Unlike `fetch_watermarks` (a ListOffsets request), these are
/// right on brokers whose ListOffsets misreport the end (tansu's memory storage), and cost nothing.
pub fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(Option<i64>, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle lives as long as `consumer`; librdkafka reads the
    // NUL-terminated topic name and writes the two offsets, nothing else.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(((low >= 0).then_some(low), high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_settings_parse() {
        let mut o = KafkaOptions::new("b:1");
        o.properties = KafkaOptions::parse_properties(&[
            "sasl.password=hunter2".into(),
            "security.protocol=SASL_SSL".into(),
        ])
        .unwrap();
        let shown = format!("{:?}", o.redacted());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_SSL"));
        assert!(KafkaOptions::parse_properties(&["nokey".into()]).is_err());
    }

    #[test]
    fn notices_of_settings_for_the_other_client_are_told_apart() {
        // librdkafka 2.x's words, as a consumer given -X compression.type=lz4 logs them.
        let line = "[thrd:app]: Configuration property compression.codec is a producer property \
                    and will be ignored by this consumer instance";
        assert!(for_other_client("CONFWARN", line));
        let other = "[thrd:app]: Configuration property fetch.wait.max.ms is a consumer \
                     property and will be ignored by this producer instance";
        assert!(for_other_client("CONFWARN", other));
        // Other configuration warnings stay warnings.
        let deprecated =
            "[thrd:app]: Configuration property queue.buffering.backpressure.threshold \
                          is deprecated";
        assert!(!for_other_client("CONFWARN", deprecated));
        assert!(!for_other_client("FAIL", line));
    }
}
