//! Reading back what the output topics hold: one reader per worker for every product whose topic
//! it is loading, assigned to its share of their partitions from the beginning, polled without
//! blocking beside the source readers. A product's topic is loaded once each of those partitions
//! reached the end it had. So a hundred products load at once, while the sources are read,
//! instead of one after another.

use super::client::KafkaOptions;
use super::source::TopicsReader;

/// One worker's reader of the output topics being loaded.
pub struct OutputReader {
    reader: TopicsReader,
    /// Topics loaded, still assigned while others load.
    loaded: std::collections::BTreeSet<String>,
}

impl OutputReader {
    pub fn new(options: &KafkaOptions, worker: usize) -> Self {
        OutputReader {
            reader: TopicsReader::new(options, &format!("outputs-w{worker}")),
            loaded: Default::default(),
        }
    }

    /// Starts loading `partitions` of `topic` from the beginning. With none, the topic is
    /// loaded at once (the next [`OutputReader::poll`] says so).
    pub fn add(&mut self, topic: &str, partitions: Vec<i32>) -> anyhow::Result<()> {
        self.reader.add(topic, partitions).map(|_| ())
    }

    /// Whether a topic is still loading.
    pub fn is_loading(&self) -> bool {
        self.reader.topics().any(|t| !self.loaded.contains(t))
    }

    /// Reads up to `max` records without blocking, calling `record(topic, key, value)` for each
    /// (`None` value: a tombstone). Returns the topics that finished loading.
    pub fn poll(
        &mut self,
        max: usize,
        mut record: impl FnMut(&str, String, Option<String>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<String>> {
        let loaded = &self.loaded;
        self.reader
            .poll(max, std::time::Duration::ZERO, |origin, key, value, _| {
                if loaded.contains(&origin.topic) {
                    return Ok(());
                }
                let key = key
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .ok_or_else(|| anyhow::anyhow!("{origin}: an output record without a key (denorm writes every record with its document's key)"))?;
                let value = value
                    .filter(|v| !v.is_empty())
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                record(&origin.topic, key, value)
            })?;
        // A topic loaded stays assigned until every topic is (records of its that come later,
        // the job's own, are not fed): changing the assignment while partitions start trips
        // librdkafka.
        let done: Vec<String> = self
            .reader
            .topics()
            .filter(|t| self.reader.caught_up(t) && !self.loaded.contains(*t))
            .map(str::to_owned)
            .collect();
        self.loaded.extend(done.iter().cloned());
        if self.reader.all_caught_up() {
            for topic in std::mem::take(&mut self.loaded) {
                self.reader.remove(&topic)?;
            }
            self.reader.sync()?;
        }
        Ok(done)
    }
}
