//! Reading a topic from its beginning to its end with a plain librdkafka consumer: every
//! partition assigned at its first offset, `enable.partition.eof` to learn where each ends (the
//! brokers' ListOffsets answers are not trusted: tansu's memory storage misreports them), records
//! handed over in offset order per partition.
//!
//! Settings follow the README ("Configuration"): `-X key=value` settings, and environment
//! variables `DENORM_KAFKA_<NAME>` (`_` → `.`, lower case), the command line winning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::Record;

/// How long reading may go without a record or a partition's end before it gives up.
const STALL: Duration = Duration::from_secs(120);

/// How to reach the brokers.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: String,
    /// librdkafka settings, applied after verify's own (so they can override them).
    pub properties: Vec<(String, String)>,
    /// `fetch.wait.max.ms`.
    pub fetch_wait_ms: u32,
    /// How long to wait at start for a broker to answer.
    pub startup_timeout: Duration,
}

const ENV_PREFIX: &str = "DENORM_KAFKA_";

impl Settings {
    /// The brokers alone (no settings from the environment).
    pub fn new(brokers: &str) -> Settings {
        Settings {
            brokers: brokers.to_owned(),
            properties: Vec::new(),
            fetch_wait_ms: 10,
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// As the command line gives them: `DENORM_KAFKA_*` variables, then the `-X key=value`
    /// settings (which win).
    pub fn from_command_line(brokers: &str, settings: &[String]) -> anyhow::Result<Settings> {
        let mut environment: Vec<(String, String)> = std::env::vars()
            .filter_map(|(name, value)| {
                let name = name.strip_prefix(ENV_PREFIX)?;
                Some((name.to_ascii_lowercase().replace('_', "."), value))
            })
            .collect();
        environment.sort();
        let mut all = Settings::new(brokers);
        all.properties = environment;
        for setting in settings {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| anyhow!("Kafka setting `{setting}` is not key=value"))?;
            all.properties
                .push((key.trim().to_owned(), value.to_owned()));
        }
        Ok(all)
    }

    fn consumer(&self) -> anyhow::Result<BaseConsumer<Context>> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "denorm-verify")
            .set("client.id", "denorm-verify")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
            .create_with_context(Context::default())
            .map_err(|e| anyhow!("cannot create a Kafka consumer for {}: {e}", self.brokers))
    }
}

/// Keeps the client's last error, for the message when reading gives up.
#[derive(Default)]
struct Context {
    last_error: Mutex<Option<String>>,
}

impl Context {
    fn last_error(&self) -> String {
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .map_or_else(String::new, |e| format!(" (last client error: {e})"))
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Context {}

/// Waits until a broker answers a metadata request, for at most the settings' startup timeout;
/// fails then with the brokers and the client's last error, or at once when the brokers refuse
/// the client's credentials.
pub fn wait_for_brokers(settings: &Settings) -> anyhow::Result<()> {
    let consumer = settings.consumer()?;
    let deadline = Instant::now() + settings.startup_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.clamp(Duration::from_millis(100), Duration::from_secs(5));
        let error = match consumer.fetch_metadata(None, wait) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
        ) {
            bail!(
                "the brokers {} refused to authenticate the client: {error}",
                settings.brokers
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no broker of {} answered within {}s ({error}){}; check --brokers, the network and the \
                 security settings, or wait longer with --startup-timeout",
                settings.brokers,
                settings.startup_timeout.as_secs_f64(),
                consumer.context().last_error()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The number of partitions of `topic`, waiting a little for a topic being created.
fn partitions(
    consumer: &BaseConsumer<Context>,
    settings: &Settings,
    topic: &str,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let why = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Ok(t.partitions().len() as i32)
                }
                Some(t) => format!("{} partitions, error {:?}", t.partitions().len(), t.error()),
                None => "the brokers do not know it".to_owned(),
            },
            Err(e) => format!("the metadata request failed: {e}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "topic `{topic}` is not available on {} ({why}){}",
                settings.brokers,
                consumer.context().last_error()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads every partition of `topic` from its beginning to the end it has when each is reached,
/// handing each record to `f` (records of one partition in offset order). Returns the count.
pub fn read_topic(
    settings: &Settings,
    topic: &str,
    mut f: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let consumer = settings.consumer()?;
    let count = partitions(&consumer, settings, topic)?;
    let mut list = TopicPartitionList::new();
    for p in 0..count {
        // Offset 0, not `Offset::Beginning`: the consumer resets an offset below the log start
        // to the earliest, so on Kafka it is the same; but `Beginning` asks the broker for the
        // earliest offset, and the test broker (tansu 0.6, memory storage) answers with the
        // batch stored first, not the lowest: after two producers wrote a partition at once,
        // reading from the "beginning" skipped the first batch (documents reported missing).
        list.add_partition_offset(topic, p, Offset::Offset(0))
            .with_context(|| format!("cannot assign {topic} partition {p}"))?;
    }
    consumer
        .assign(&list)
        .with_context(|| format!("cannot assign the partitions of {topic}"))?;
    let mut ended = BTreeSet::new();
    let mut read = 0u64;
    let mut progress = Instant::now();
    while ended.len() < count as usize {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                progress = Instant::now();
                read += 1;
                f(Record {
                    topic: topic.to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                })?;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                progress = Instant::now();
                ended.insert(p);
            }
            Some(Err(e)) => {
                *consumer
                    .context()
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            None => {}
        }
        if progress.elapsed() > STALL {
            let open: Vec<String> = (0..count)
                .filter(|p| !ended.contains(p))
                .map(|p| p.to_string())
                .collect();
            bail!(
                "reading {topic} from {}: nothing came for {}s and partitions {} have not reached their end{}",
                settings.brokers,
                STALL.as_secs(),
                open.join(", "),
                consumer.context().last_error()
            );
        }
    }
    Ok(read)
}

/// The documents of an output topic as written: the last value of each key's bytes (as text),
/// a null value removing the key. For tests that compare the bytes of several outputs.
pub fn read_output(settings: &Settings, topic: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut docs = BTreeMap::new();
    read_topic(settings, topic, |record| {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        match record.value {
            Some(value) => docs.insert(key, String::from_utf8_lossy(&value).into_owned()),
            None => docs.remove(&key),
        };
        Ok(())
    })?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_settings_parse_and_win_over_the_environment() {
        let s = Settings::from_command_line(
            "b:1",
            &["security.protocol=SASL_SSL".into(), " a.b =x=y".into()],
        )
        .unwrap();
        assert_eq!(s.brokers, "b:1");
        let tail = &s.properties[s.properties.len() - 2..];
        assert_eq!(
            tail,
            [
                ("security.protocol".into(), "SASL_SSL".into()),
                ("a.b".into(), "x=y".into())
            ]
        );
        let e = Settings::from_command_line("b:1", &["nokey".into()]).unwrap_err();
        assert!(e.to_string().contains("`nokey` is not key=value"), "{e}");
    }
}
