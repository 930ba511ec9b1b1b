//! `denorm bench`: the measurement subcommands of `scripts/bench.sh`, each printing one JSON
//! object (see [`denorm::tools::bench`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use denorm::kafka::admin::drop_topics;
use denorm::kafka::client::KafkaOptions;
use denorm::plan;
use denorm::runtime::epoch::EpochLimits;
use denorm::tools::bench::{compare, consume, export, hop, latency, memory};
use denorm::tools::gen::GenOptions;

use super::args::EditMixArg;

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
        /// Then hand the hydrated job this many generated change events at once (as `denorm gen
        /// --changes`), and measure the documents written per second when behind.
        #[arg(long, default_value_t = 0)]
        changes: usize,
        /// How the changes pick the rows they edit (as `denorm gen --edit-mix`).
        #[arg(long, value_enum, default_value_t = EditMixArg::Popular)]
        edit_mix: EditMixArg,
        /// Change events per second fed at most, all workers together (default: all at once).
        #[arg(long)]
        change_rate: Option<f64>,
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
    /// Change-to-output latency of every change of a stretch (see BENCHMARKS.md): each input
    /// record of the window is replayed to find the documents it must change, and timed until
    /// the last of them shows up in the output topic.
    ///
    /// With --follow, it tails the output topic while the stretch runs (create --ready-file once
    /// it has read what was there before; the stretch is over when --stop-file exists) and times
    /// each output record by its arrival; the window is from ready to stop. Without, it times
    /// output records by their Kafka timestamps, in the window --since-ms .. --until-ms.
    Latency {
        /// The product file (one product).
        file: PathBuf,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
        /// Tail the output topic while the stretch runs (needs --ready-file and --stop-file).
        #[arg(long, requires_all = ["ready_file", "stop_file"], conflicts_with = "since_ms")]
        follow: bool,
        /// Created (with the time, ms) once the tail has read the output topic's records from
        /// before the stretch.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// The stretch is over once this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Start of the change window (milliseconds since the epoch), without --follow.
        #[arg(long, required_unless_present = "follow")]
        since_ms: Option<i64>,
        /// End of the change window (exclusive; default: none), without --follow.
        #[arg(long)]
        until_ms: Option<i64>,
        /// Also write every change as a CSV line `input_ms,kind,documents,latency_ms` (empty:
        /// never seen) to this file.
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// The broker's own produce → consume hop: one record every --interval-ms on a fresh topic
    /// (deleted after), until --stop-file exists or --seconds pass.
    Hop {
        /// The probe's topic (created; must not exist).
        #[arg(long)]
        topic: String,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long)]
        stop_file: Option<PathBuf>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// `denorm verify` as one JSON object: the counts of each product's comparison.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
    },
    /// Compares documents from another system (JSON lines `{"key": …, "document": …}`) with the
    /// product's output topic, by content.
    CompareDocuments {
        /// The product file whose output topic to read.
        file: PathBuf,
        #[arg(long)]
        documents: PathBuf,
        #[arg(long, env = "DENORM_BROKERS", default_value = "127.0.0.1:19092")]
        brokers: String,
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
            changes,
            edit_mix,
            change_rate,
        } => {
            let plan = plan::load(&file)?;
            let gen = GenOptions {
                scale,
                changes,
                seed,
            };
            let epochs = EpochLimits {
                max_records: max_epoch_records,
                max_bytes: max_epoch_mib << 20,
                max_in_flight,
            };
            serde_json::to_value(memory::run(
                plan,
                &gen,
                edit_mix.into(),
                change_rate,
                workers,
                batch_size,
                epochs,
            )?)?
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
            follow,
            ready_file,
            stop_file,
            since_ms,
            until_ms,
            samples,
        } => {
            let timing = match (follow, &ready_file, &stop_file) {
                (true, Some(ready), Some(stop)) => latency::Timing::Tail { ready, stop },
                _ => latency::Timing::RecordTimestamp {
                    window: since_ms.unwrap_or(0)..until_ms.unwrap_or(i64::MAX),
                },
            };
            latency_json(&file, &brokers, timing, samples.as_deref())?
        }
        BenchCommand::Hop {
            topic,
            brokers,
            interval_ms,
            stop_file,
            seconds,
        } => {
            let kafka = KafkaOptions::new(&brokers).with_environment();
            let report = hop::run(
                &kafka,
                &topic,
                Duration::from_millis(interval_ms.max(1)),
                stop_file.as_deref(),
                Duration::from_secs_f64(seconds),
            )?;
            serde_json::to_value(report)?
        }
        BenchCommand::Verify { files, brokers } => verify_json(&files, &brokers)?,
        BenchCommand::CompareDocuments {
            file,
            documents,
            brokers,
        } => {
            let product = denorm_verify::read_product(&file)?;
            let settings = denorm_verify::Settings::new(&brokers);
            let report = compare::run(&settings, &product.output_topic, &documents)?;
            let ok = report.ok();
            let mut json = serde_json::to_value(report)?;
            json["ok"] = ok.into();
            json
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

/// `bench latency`: the stretch's report; the measured changes to `samples` (CSV) if given.
fn latency_json(
    file: &Path,
    brokers: &str,
    timing: latency::Timing,
    samples: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let kafka = KafkaOptions::new(brokers).with_environment();
    let mut changes = Vec::new();
    let want = samples.is_some().then_some(&mut changes);
    let report = latency::run(&kafka, file, timing, want)?;
    if let Some(path) = samples {
        let text: String = changes
            .iter()
            .map(|(at, kind, docs, ms)| {
                let ms = ms.map(|m| m.to_string()).unwrap_or_default();
                format!("{at},{kind},{docs},{ms}\n")
            })
            .collect();
        std::fs::write(path, format!("input_ms,kind,documents,latency_ms\n{text}"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(serde_json::to_value(report)?)
}

/// `bench verify`: denorm-verify's verdict on the products in `files`, as JSON.
fn verify_json(files: &[PathBuf], brokers: &str) -> anyhow::Result<serde_json::Value> {
    let settings = denorm_verify::Settings::new(brokers);
    let started = std::time::Instant::now();
    let run = denorm_verify::verify_files(files, &settings)?;
    let products: Vec<serde_json::Value> = run
        .comparisons
        .iter()
        .map(|c| {
            serde_json::json!({
                "product": c.product,
                "ok": c.ok(),
                "expected": c.expected,
                "found": c.found,
                "matching": c.matching,
                "missing": c.missing.len(),
                "unexpected": c.unexpected.len(),
                "different": c.different.len(),
                "bad_records": c.bad_records.len(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "ok": run.ok(0),
        "replayed": run.replayed,
        "undecodable": run.undecodable.len(),
        "products": products,
        "report": run.report(0),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
