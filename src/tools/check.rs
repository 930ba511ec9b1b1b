//! `denorm check --brokers`: the product files against the topics they name. Every source topic
//! must exist, and records sampled from each of its partitions (the first and the last few) must
//! decode and carry the declared columns with the declared types, keyed by the declared primary
//! key. Each problem names the topic, partition and offset of a record that shows it, points at
//! the line of the product file to change, and says how; columns the records have but the
//! product does not declare are listed as a note (they are ignored).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::decode::{self, DecodeError};
use crate::kafka::client::{cached_watermarks, KafkaOptions, Reader, FROM_START};
use crate::kafka::source::Origin;
use crate::plan::spec::{self, SourceText};
use crate::plan::suggest;
use crate::plan::{Plan, SourcePlan};

/// How long reading a partition's sample may go without any record coming before it fails.
const PARTITION_TIMEOUT: Duration = Duration::from_secs(20);

/// What the check found for one source topic.
#[derive(Debug)]
pub struct TopicReport {
    pub source: String,
    pub topic: String,
    /// `None`: the topic does not exist.
    pub partitions: Option<i32>,
    pub sampled: usize,
    pub problems: Vec<Problem>,
    /// Columns of the records that the product does not declare (ignored by the engine).
    pub undeclared: BTreeSet<String>,
}

/// One kind of problem, with the first record that shows it and how many sampled records do.
#[derive(Debug)]
pub struct Problem {
    pub message: String,
    /// Where the first record showing it is (none for a missing topic).
    pub origin: Option<Origin>,
    pub count: usize,
    /// `file:line:column` and the line with a caret, of what to change.
    pub place: Option<(String, String)>,
    pub hint: String,
}

impl TopicReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The checks of every source topic of a plan.
#[derive(Debug)]
pub struct Report {
    pub brokers: String,
    pub topics: Vec<TopicReport>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.topics.iter().all(TopicReport::ok)
    }
}

/// Checks every source topic of `plan` on the brokers, sampling `per_partition` records from
/// the start and as many from the end of each partition.
pub fn check_topics(
    kafka: &KafkaOptions,
    plan: &Plan,
    per_partition: usize,
) -> anyhow::Result<Report> {
    let places = Places::of(plan);
    let existing = kafka.topic_names()?;
    let consumer = kafka.consumer("check")?;
    let mut topics = Vec::new();
    for source in &plan.sources {
        let mut report = TopicReport {
            source: source.name.clone(),
            topic: source.topic.clone(),
            partitions: None,
            sampled: 0,
            problems: Vec::new(),
            undeclared: BTreeSet::new(),
        };
        let partitions = match partition_count(&consumer, &source.topic)? {
            Some(n) => n,
            None => {
                let alike =
                    suggest::did_you_mean(&source.topic, existing.iter().map(String::as_str));
                report.problems.push(Problem {
                    message: format!("topic `{}` does not exist on {}", source.topic, kafka.brokers),
                    origin: None,
                    count: 1,
                    place: places.topic(&source.topic),
                    hint: format!(
                        "create it (Debezium names topics <topic.prefix>.<schema>.<table>), or fix `topic`.{alike}"
                    ),
                });
                topics.push(report);
                continue;
            }
        };
        report.partitions = Some(partitions);
        let mut findings = Findings::default();
        for partition in 0..partitions {
            sample_partition(
                &consumer,
                &source.topic,
                partition,
                per_partition,
                |origin, key, value| {
                    report.sampled += 1;
                    findings.record(source, &places, &mut report.undeclared, origin, key, value);
                },
            )?;
        }
        report.problems = findings.problems.into_values().collect();
        topics.push(report);
    }
    Ok(Report {
        brokers: kafka.brokers.clone(),
        topics,
    })
}

/// The number of partitions of `topic`, or `None` if it does not exist.
fn partition_count(consumer: &Reader, topic: &str) -> anyhow::Result<Option<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot read the metadata of topic {topic}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// How far ahead of the first records the last ones may be for `check` to read on to them
/// rather than seek.
const READ_ON_LIMIT: i64 = 20_000;

/// How long a seek towards the end of a partition may yield nothing before `check` reads on
/// from the first records instead: some brokers, tansu among them, return nothing for a fetch
/// that starts inside a record batch (Kafka returns the whole batch and the client skips the
/// records before the offset asked for).
const SEEK_PROBE: Duration = Duration::from_secs(2);

/// A record read: where it is, its key and its value.
type Owned = (Origin, Option<Vec<u8>>, Option<Vec<u8>>);

/// What one read of a partition got.
struct Read {
    /// The last records read (at most the number asked to keep).
    kept: Vec<Owned>,
    /// Whether it reached the end of the partition.
    at_end: bool,
    /// Records read in all.
    count: usize,
}

/// Reads the first `n` records of a partition, then (if it has more) the last `n`, calling
/// `record` for each.
fn sample_partition(
    consumer: &Reader,
    topic: &str,
    partition: i32,
    n: usize,
    mut record: impl FnMut(Origin, Option<&[u8]>, Option<&[u8]>),
) -> anyhow::Result<()> {
    let assign = |offset: Offset| -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, offset)
            .and_then(|_| consumer.assign(&list))
            .map_err(|e| anyhow::anyhow!("cannot read {topic} partition {partition}: {e}"))
    };
    // Reads until `limit` records or the end of the partition, keeping the last `keep`. Fails
    // when no record comes for PARTITION_TIMEOUT; with `probe`, stops (having read nothing)
    // when nothing came for that long.
    let read = |limit: usize, keep: usize, probe: Option<Duration>| -> anyhow::Result<Read> {
        let mut last_progress = Instant::now();
        let mut kept = std::collections::VecDeque::new();
        let mut count = 0;
        while count < limit {
            if let Some(probe) = probe.filter(|_| count == 0) {
                if last_progress.elapsed() >= probe {
                    break;
                }
            }
            anyhow::ensure!(
                last_progress.elapsed() < PARTITION_TIMEOUT,
                "reading {topic} partition {partition}: no record came for {}s",
                PARTITION_TIMEOUT.as_secs()
            );
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) if m.partition() == partition => {
                    let origin = Origin {
                        topic: topic.to_owned(),
                        partition,
                        offset: m.offset(),
                    };
                    kept.push_back((
                        origin,
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                    ));
                    if kept.len() > keep {
                        kept.pop_front();
                    }
                    count += 1;
                    last_progress = Instant::now();
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => {
                    return Ok(Read {
                        kept: kept.into(),
                        at_end: true,
                        count,
                    })
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::debug!(%topic, partition, error = %e, "consumer error while sampling; retrying")
                }
            }
        }
        Ok(Read {
            kept: kept.into(),
            at_end: false,
            count,
        })
    };
    let mut evaluate = |read: Read| {
        for (origin, key, value) in read.kept {
            record(origin, key.as_deref(), value.as_deref());
        }
    };
    assign(FROM_START)?;
    let first = read(n, n, None)?;
    let next = first.kept.last().map(|(o, _, _)| o.offset + 1);
    let at_end = first.at_end;
    evaluate(first);
    let Some(next) = next.filter(|_| !at_end) else {
        return Ok(());
    };
    // The last n records, up to the end the consumer saw in its fetches.
    let end = cached_watermarks(consumer, topic, partition).map_or(next, |(_, high)| high);
    let tail = (end - n as i64).max(next);
    tracing::debug!(%topic, partition, next, end, tail, "sampling the end of the partition");
    // Records produced meanwhile may follow: stop after at most n more than the end seen.
    let limit = |from: i64| (end - from).max(0) as usize + n;
    if tail - next > READ_ON_LIMIT {
        assign(Offset::Offset(tail))?;
        let last = read(limit(tail), n, Some(SEEK_PROBE))?;
        if last.count > 0 {
            evaluate(last);
            return Ok(());
        }
        tracing::debug!(%topic, partition, offset = tail, "a fetch inside a record batch returned nothing: reading on to the end instead");
        assign(Offset::Offset(next))?;
    }
    let last = read(limit(next), n, None)?;
    evaluate(last);
    Ok(())
}

/// Where things are declared in the product files: topics and `(topic, column)`s.
#[derive(Default)]
struct Places {
    topics: BTreeMap<String, (String, String)>,
    primary_keys: BTreeMap<String, (String, String)>,
    columns: BTreeMap<(String, String), (String, String)>,
}

impl Places {
    fn of(plan: &Plan) -> Places {
        let mut places = Places::default();
        for product in &plan.products {
            let Ok(text) = SourceText::read(Path::new(&product.file)) else {
                continue;
            };
            let Ok(file) = spec::parse(&text) else {
                continue;
            };
            let at = |offset: usize| (text.locate(offset), text.excerpt(offset));
            for source in file.sources.values() {
                let source = source.get_ref();
                let topic = source.topic.get_ref().clone();
                places
                    .topics
                    .entry(topic.clone())
                    .or_insert_with(|| at(source.topic.span().start));
                places
                    .primary_keys
                    .entry(topic.clone())
                    .or_insert_with(|| at(source.primary_key.span().start));
                for (column, ty) in source.columns.get_ref() {
                    // Point at the column's name: the last occurrence before its type.
                    let offset = text.text[..ty.span().start]
                        .rfind(column.as_str())
                        .unwrap_or(ty.span().start);
                    places
                        .columns
                        .entry((topic.clone(), column.clone()))
                        .or_insert_with(|| at(offset));
                }
            }
        }
        places
    }

    fn topic(&self, topic: &str) -> Option<(String, String)> {
        self.topics.get(topic).cloned()
    }

    fn primary_key(&self, topic: &str) -> Option<(String, String)> {
        self.primary_keys.get(topic).cloned()
    }

    fn column(&self, topic: &str, column: &str) -> Option<(String, String)> {
        self.columns
            .get(&(topic.to_owned(), column.to_owned()))
            .cloned()
    }
}

/// The problems of one topic's sampled records, one per distinct message.
#[derive(Default)]
struct Findings {
    problems: BTreeMap<String, Problem>,
}

impl Findings {
    /// Adds a problem to its group (one per kind and column): the first one met speaks for the
    /// group, the others are counted.
    fn add(
        &mut self,
        group: String,
        origin: &Origin,
        message: String,
        place: Option<(String, String)>,
        hint: String,
    ) {
        self.problems
            .entry(group)
            .and_modify(|p| p.count += 1)
            .or_insert_with(|| Problem {
                message,
                origin: Some(origin.clone()),
                count: 1,
                place,
                hint,
            });
    }

    fn record(
        &mut self,
        source: &SourcePlan,
        places: &Places,
        undeclared: &mut BTreeSet<String>,
        origin: Origin,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let declared = source.column_names();
        let row = decode::record_row(value);
        let columns: Option<Vec<String>> = row.as_ref().map(|r| r.keys().cloned().collect());
        if let Some(columns) = &columns {
            undeclared.extend(
                columns
                    .iter()
                    .filter(|c| !declared.contains(&c.as_str()))
                    .cloned(),
            );
        }
        let primary_key: Vec<&str> = source.key.iter().map(|&k| declared[k]).collect();
        if let Some(key_columns) = decode::key_columns(key) {
            let mut sorted_key = key_columns.clone();
            sorted_key.sort();
            let mut sorted_pk = primary_key.clone();
            sorted_pk.sort();
            if sorted_key != sorted_pk {
                let place = places.primary_key(&source.topic);
                self.add(
                    "primary key".to_owned(),
                    &origin,
                    format!(
                        "the record key has columns ({}) but `primary_key` is [{}]",
                        key_columns.join(", "),
                        primary_key.join(", ")
                    ),
                    place,
                    format!(
                        "write primary_key = [{}] (the table's primary key, as Debezium keys the records); \
                         with another key, rows that share it overwrite each other",
                        key_columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        let Err(error) = decode::decode(source, key, value) else {
            return;
        };
        let record_columns = columns
            .as_ref()
            .map(|c| format!("the records' columns are: {}", c.join(", ")))
            .unwrap_or_default();
        match &error {
            DecodeError::MissingColumn(column) => {
                let close = columns
                    .as_ref()
                    .map(|c| suggest::did_you_mean(column, c.iter().map(String::as_str)))
                    .unwrap_or_default();
                self.add(
                    format!("missing {column}"),
                    &origin,
                    format!("the records have no column `{column}`, which the product declares"),
                    places.column(&source.topic, column),
                    format!("{record_columns}.{close} Fix the name, or remove the column if the table does not have it"),
                );
            }
            DecodeError::Column { column, problem } => {
                let declared = source
                    .columns
                    .iter()
                    .find(|c| &c.name == column)
                    .map(|c| c.ty.to_string())
                    .unwrap_or_default();
                let advice = row
                    .as_ref()
                    .and_then(|r| r.get(column))
                    .map(carried_type)
                    .unwrap_or_else(|| "declare the type the records carry".to_owned());
                self.add(
                    format!("type {column}"),
                    &origin,
                    format!(
                        "column `{column}` does not fit its declared type `{declared}`: {problem}"
                    ),
                    places.column(&source.topic, column),
                    format!("{advice}; the README lists the types and the encodings each accepts"),
                );
            }
            DecodeError::MissingKey(_) | DecodeError::NullKey(_) => self.add(
                "key".to_owned(),
                &origin,
                error.to_string(),
                places.topic(&source.topic),
                format!("check `primary_key` against the table's primary key; {record_columns}"),
            ),
            _ => self.add(
                format!("{:?}", std::mem::discriminant(&error)),
                &origin,
                error.to_string(),
                places.topic(&source.topic),
                "is this a Debezium topic with JSON values (the JsonConverter)? check `topic`"
                    .to_owned(),
            ),
        }
    }
}

/// Which declared types fit a JSON value, as advice.
fn carried_type(value: &serde_json::Value) -> String {
    use serde_json::Value as Json;
    match value {
        Json::Null => "declare the type the records carry",
        Json::Bool(_) => "the records carry a boolean: declare `bool`",
        Json::Number(n) if n.is_i64() || n.is_u64() => {
            "the records carry an integer: declare `int` (or `date`, `time`, `timestamp(ms|us|ns)` \
             if the column is one of those, which Debezium sends as numbers)"
        }
        Json::Number(_) => {
            "the records carry a fractional number: declare `float` (or `decimal` with \
             decimal.handling.mode=double)"
        }
        Json::String(_) => {
            "the records carry a string: declare `string` (or `decimal`, `date`, `time`, \
             `timestamp` if the column is one of those, in a string or base64 encoding)"
        }
        Json::Array(_) | Json::Object(_) => "the records carry a JSON structure: declare `json`",
    }
    .to_owned()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source topics on {}:", self.brokers)?;
        for t in &self.topics {
            let status = if t.ok() { "ok  " } else { "FAIL" };
            match t.partitions {
                None => writeln!(f, "{status} {} (source `{}`)", t.topic, t.source)?,
                Some(p) => writeln!(
                    f,
                    "{status} {} (source `{}`): {p} partition{}, {} record{} sampled{}",
                    t.topic,
                    t.source,
                    if p == 1 { "" } else { "s" },
                    t.sampled,
                    if t.sampled == 1 { "" } else { "s" },
                    if t.sampled == 0 {
                        " (the topic is empty)"
                    } else {
                        ""
                    }
                )?,
            }
            for p in &t.problems {
                match &p.place {
                    Some((place, _)) => write!(f, "  {place}: ")?,
                    None => write!(f, "  ")?,
                }
                write!(f, "{}", p.message)?;
                if let Some(origin) = &p.origin {
                    write!(f, " (at {origin}")?;
                    if p.count > 1 {
                        write!(f, ", and {} more sampled records", p.count - 1)?;
                    }
                    write!(f, ")")?;
                }
                writeln!(f)?;
                if let Some((_, excerpt)) = &p.place {
                    for line in excerpt.lines() {
                        writeln!(f, "  {line}")?;
                    }
                }
                if !p.hint.is_empty() {
                    writeln!(f, "    = help: {}", p.hint)?;
                }
            }
            if !t.undeclared.is_empty() {
                writeln!(
                    f,
                    "  note: the records also have columns the product does not declare (ignored): {}",
                    t.undeclared.iter().cloned().collect::<Vec<_>>().join(", ")
                )?;
            }
        }
        Ok(())
    }
}
