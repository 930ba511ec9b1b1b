//! `denorm bench`: the measurements `scripts/bench.sh` runs and writes into BENCHMARKS.md. Each
//! subcommand prints one JSON object on stdout (the script collects them):
//!
//! - [`memory`]: the in-memory limit, the product's dataflow fed with generated rows decoded up
//!   front (no Kafka, no JSON while timed), documents rendered into a counting writer.
//! - [`consume`]: the Kafka ceiling, reading and decoding the source topics and nothing else.
//! - [`latency`]: after a change run, reads the input and output topics back and measures
//!   change-to-output latency and throughput from the records' Kafka timestamps.
//! - [`export`]: the generated data as CSV tables and a change list, for the PostgreSQL
//!   requery baseline (`scripts/bench_pg.py`).
//!
//! [`pace`] paces a producer to a fixed rate (`denorm gen --rate`).

pub mod consume;
pub mod export;
pub mod latency;
pub mod memory;
pub mod pace;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::dataflow::epoch::EpochLimits;
use crate::decode::{self, Change};
use crate::gen::{GenOptions, Record};
use crate::kafka::client::KafkaOptions;
use crate::plan;

/// The `denorm bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Hydrate a product in memory from generated rows decoded up front (the in-memory limit).
    Memory {
        /// The product file.
        file: PathBuf,
        /// Rows of the root source, as for `denorm gen`.
        #[arg(long, default_value_t = 10_000)]
        scale: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Worker threads.
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
        /// Rows fed per source per poll (the job's default batch size).
        #[arg(long, default_value_t = 4096)]
        batch_size: usize,
        /// Rows one time holds at most (as the job's --max-epoch-records).
        #[arg(long, default_value_t = EpochLimits::default().max_records)]
        max_epoch_records: usize,
        /// MiB of decoded rows one time holds at most (as the job's --max-epoch-mib).
        #[arg(long, default_value_t = EpochLimits::default().max_bytes >> 20)]
        max_epoch_mib: usize,
        /// Closed times in the dataflow before feeding stops (as the job's --max-in-flight).
        #[arg(long, default_value_t = EpochLimits::default().max_in_flight)]
        max_in_flight: usize,
    },
    /// Read and decode every record of the product's source topics, nothing else (the Kafka
    /// ceiling).
    Consume {
        file: PathBuf,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
        /// Reader threads (the partitions are spread over them as over a job's workers).
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
    },
    /// Change-to-output latency and throughput of the records produced since `--since-ms`,
    /// from the Kafka timestamps of the input and output topics.
    Latency {
        file: PathBuf,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
        /// Start of the change window (milliseconds since the epoch): input records with a
        /// timestamp from then on are the changes measured.
        #[arg(long)]
        since_ms: i64,
        /// End of the change window (exclusive; default: none).
        #[arg(long)]
        until_ms: Option<i64>,
        /// Also write every traced update as a CSV line `update_ms,latency_ms` to this file.
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// Delete topics (the benchmark's own, when it is done with them).
    DropTopics {
        #[arg(required = true)]
        topics: Vec<String>,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
    },
    /// Write the generated data as CSV tables (the snapshot) and a JSON-lines change list.
    Export {
        file: PathBuf,
        /// Output folder (created).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        scale: usize,
        /// Change events after the snapshot.
        #[arg(long, default_value_t = 0)]
        changes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Runs a bench subcommand and prints its JSON result.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let json = match command {
        BenchCommand::Memory {
            file,
            scale,
            seed,
            workers,
            batch_size,
            max_epoch_records,
            max_epoch_mib,
            max_in_flight,
        } => {
            let plan = plan::load(&file)?;
            let gen = GenOptions {
                scale,
                changes: 0,
                seed,
            };
            let epochs = EpochLimits {
                max_records: max_epoch_records,
                max_bytes: max_epoch_mib << 20,
                max_in_flight,
            };
            serde_json::to_value(memory::run(plan, &gen, workers, batch_size, epochs)?)?
        }
        BenchCommand::Consume {
            file,
            brokers,
            workers,
        } => {
            let plan = plan::load(&file)?;
            let kafka = KafkaOptions::new(&brokers).with_environment();
            serde_json::to_value(consume::run(&kafka, &plan, workers)?)?
        }
        BenchCommand::Latency {
            file,
            brokers,
            since_ms,
            until_ms,
            samples,
        } => {
            let plan = plan::load(&file)?;
            let kafka = KafkaOptions::new(&brokers).with_environment();
            let until = until_ms.unwrap_or(i64::MAX);
            let mut traced = Vec::new();
            let want = samples.is_some().then_some(&mut traced);
            let report = latency::run(&kafka, &plan, since_ms..until, want)?;
            if let Some(path) = samples {
                let text: String = traced
                    .iter()
                    .map(|(at, ms)| format!("{at},{ms}\n"))
                    .collect();
                std::fs::write(&path, format!("update_ms,latency_ms\n{text}"))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            serde_json::to_value(report)?
        }
        BenchCommand::DropTopics { topics, brokers } => {
            let kafka = KafkaOptions::new(&brokers).with_environment();
            drop_topics(&kafka, &topics)?;
            serde_json::json!({ "dropped": topics })
        }
        BenchCommand::Export {
            file,
            dir,
            scale,
            changes,
            seed,
        } => {
            let plan = plan::load(&file)?;
            let gen = GenOptions {
                scale,
                changes,
                seed,
            };
            serde_json::to_value(export::run(&plan, &gen, &dir)?)?
        }
    };
    println!("{json}");
    Ok(())
}

pub use crate::kafka::admin::drop_topics;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), where there is one (Linux).
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) this process has used so far, in seconds, from `/proc/self/stat`
/// (whose clock ticks are Linux's fixed `USER_HZ` of 100 per second).
pub fn proc_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `pid (comm)`.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The value at quantile `q` (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Decodes a generated record as a job would (the generator's records always decode).
fn decode_record(plan: &plan::Plan, r: &Record) -> anyhow::Result<Change> {
    let source = &plan.sources[r.source];
    decode::decode(
        source,
        r.key.as_deref().map(str::as_bytes),
        r.value.as_deref().map(str::as_bytes),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "a generated record of {} does not decode: {e}",
            source.topic
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_its_own_memory() {
        if cfg!(target_os = "linux") {
            let rss = proc_status_bytes("VmRSS").unwrap();
            let peak = proc_status_bytes("VmHWM").unwrap();
            assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        }
    }
}
