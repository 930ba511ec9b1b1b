//! Watches the product files of a running job: a file added to a watched folder, changed or
//! removed becomes a command to install or remove its product, after it has been checked
//! against the products already running. One worker watches; the job sequences the commands so
//! that every worker applies them in the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kafka::client::KafkaOptions;
use crate::plan::{self, Plan};

/// A change to the set of running products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Install the product of this file; `text` is its content as the watcher read it.
    Install { path: PathBuf, text: String },
    /// Remove the product of this name.
    Remove { name: String },
}

/// A product file the job runs.
#[derive(Debug, Clone)]
struct Known {
    text: String,
    products: Vec<String>,
}

pub struct Watcher {
    paths: Vec<PathBuf>,
    interval: Duration,
    last: Instant,
    files: BTreeMap<PathBuf, Known>,
    /// Files whose current text was rejected (logged once), or that wait for their topics.
    rejected: BTreeMap<PathBuf, String>,
}

impl Watcher {
    /// Watches `paths` (folders and files) every `interval`; `running` holds the products the
    /// job started with.
    pub fn new(paths: Vec<PathBuf>, interval: Duration, running: &Plan) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        for path in plan::product_files(&paths)? {
            let text = std::fs::read_to_string(&path)?;
            let products = products_of(running, &path);
            files.insert(path, Known { text, products });
        }
        Ok(Watcher {
            paths,
            interval,
            last: Instant::now(),
            files,
            rejected: BTreeMap::new(),
        })
    }

    /// The commands for what changed since the last scan (none before `interval` has passed).
    /// `running` is the plan of the products the job runs now.
    pub fn poll(&mut self, running: &Plan, kafka: &KafkaOptions) -> Vec<Command> {
        if self.last.elapsed() < self.interval {
            return Vec::new();
        }
        self.last = Instant::now();
        let found = match plan::product_files(&self.paths) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot scan the product folders");
                return Vec::new();
            }
        };
        let mut commands = Vec::new();
        let mut plan = running.clone();
        let found_set: BTreeSet<&PathBuf> = found.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !found_set.contains(p))
            .cloned()
            .collect();
        for path in gone {
            let known = self.files.remove(&path).expect("listed");
            tracing::info!(file = %path.display(), products = ?known.products, "product file removed: dropping its products");
            for name in known.products {
                plan.products.retain(|p| p.name != name);
                commands.push(Command::Remove { name });
            }
        }
        for path in found {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // removed or being written: next scan
            };
            if self.files.get(&path).is_some_and(|k| k.text == text)
                || self.rejected.get(&path) == Some(&text)
            {
                continue;
            }
            match self.check(&plan, &path, &text, kafka) {
                Ok(next) => {
                    self.rejected.remove(&path);
                    if let Some(old) = self.files.remove(&path) {
                        tracing::info!(file = %path.display(), products = ?old.products, "product file changed: rebuilding its products");
                        for name in old.products {
                            commands.push(Command::Remove { name });
                        }
                    } else {
                        tracing::info!(file = %path.display(), "new product file: installing it");
                    }
                    let products = products_of(&next, &path);
                    plan = next;
                    self.files.insert(
                        path.clone(),
                        Known {
                            text: text.clone(),
                            products,
                        },
                    );
                    commands.push(Command::Install { path, text });
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %format!("{e:#}"), "product file not installed; the products running go on");
                    self.rejected.insert(path, text);
                }
            }
        }
        commands
    }

    /// The plan with the file's new version in place of its old one, if it checks, its topics
    /// exist and its output topic exists or could be created.
    fn check(
        &self,
        running: &Plan,
        path: &Path,
        text: &str,
        kafka: &KafkaOptions,
    ) -> anyhow::Result<Plan> {
        let new = plan::parse(path, text)?;
        let mut next = running.clone();
        if let Some(old) = self.files.get(path) {
            next.products.retain(|p| !old.products.contains(&p.name));
        }
        plan::merge(&mut next, new.clone(), plan::Sharing::Running)?;
        let topics: Vec<&str> = new.sources.iter().map(|s| s.topic.as_str()).collect();
        let counts = kafka
            .partition_counts(&topics, Duration::ZERO)
            .map_err(|e| anyhow::anyhow!("its source topics are not all there ({e:#}); it is tried again when the file changes"))?;
        for product in &new.products {
            if kafka
                .partition_counts(&[&product.output_topic], Duration::ZERO)
                .is_err()
            {
                crate::kafka::admin::ensure_topics(
                    kafka,
                    &[&product.output_topic],
                    counts[product.root.source],
                )?;
            }
        }
        Ok(next)
    }
}

/// The products of `plan` read from `path`.
fn products_of(plan: &Plan, path: &Path) -> Vec<String> {
    plan.products
        .iter()
        .filter(|p| Path::new(&p.file) == path)
        .map(|p| p.name.clone())
        .collect()
}
