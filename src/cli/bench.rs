//! `denorm bench`: the measurement subcommands of `scripts/bench.sh`, each printing one JSON
//! object (see [`denorm::tools::bench`]).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use denorm::kafka::admin::drop_topics;
use denorm::kafka::client::KafkaOptions;
use denorm::plan;
use denorm::runtime::epoch::EpochLimits;
use denorm::tools::bench::{consume, export, latency, memory};
use denorm::tools::gen::GenOptions;

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
