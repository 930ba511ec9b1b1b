//! `denorm gen`: generated Debezium topics for a product's sources.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use denorm::plan;

use super::args::{EditMixArg, KafkaArgs};

#[derive(Args)]
pub struct GenArgs {
    /// The product file whose sources to generate.
    file: PathBuf,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Rows of the root source (others scale with it).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    scale: usize,
    /// Change events after the snapshot.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    changes: usize,
    /// Random seed: the same seed writes the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Partitions of each topic it creates (existing topics are kept).
    #[arg(long, default_value_t = 2, value_name = "N")]
    partitions: i32,
    /// Write only the change records: those that follow a snapshot written earlier with the
    /// same scale and seed.
    #[arg(long)]
    only_changes: bool,
    /// Produce at most this many records per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Leave out the first N records (with --only-changes: of the change records), so that
    /// consecutive runs can write consecutive stretches of one change stream.
    #[arg(long, default_value_t = 0)]
    skip_records: u64,
    /// Write at most this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// How changes pick the rows they edit: `popular` (fan-out updates edit many-to-many
    /// targets such as repositories by popularity, so the rows with the most children are edited
    /// most) or `uniform` (every such row as often as any other). The snapshot is the same.
    #[arg(long, value_enum, default_value_t = EditMixArg::Popular)]
    edit_mix: EditMixArg,
}

/// Stops the generator once `--max-records` are written.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("enough records")
    }
}

impl std::error::Error for Enough {}

pub fn generate(args: GenArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::load(&args.file)?;
    let kafka = args.kafka.options(None)?;
    kafka.wait_for_brokers()?;
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    denorm::kafka::admin::ensure_topics(&kafka, &topics, args.partitions)?;
    let mut producer = denorm::kafka::admin::RecordProducer::new(&kafka)?;
    let options = denorm::tools::gen::GenOptions {
        scale: args.scale,
        changes: args.changes,
        seed: args.seed,
    };
    let mut pacer = args
        .rate
        .map(denorm::tools::bench::pace::Pacer::new)
        .transpose()?;
    let mut per_source = vec![0u64; plan.sources.len()];
    let started = std::time::Instant::now();
    let end = args
        .max_records
        .map_or(u64::MAX, |m| args.skip_records.saturating_add(m));
    let mut index = 0u64;
    let send = |r: denorm::tools::gen::Record| {
        index += 1;
        if index > end {
            return Err(anyhow::Error::new(Enough));
        }
        if index <= args.skip_records {
            return Ok(());
        }
        if let Some(pacer) = pacer.as_mut() {
            pacer.wait();
        }
        per_source[r.source] += 1;
        producer.send(
            &plan.sources[r.source].topic,
            r.key.as_deref(),
            r.value.as_deref(),
        )
    };
    let mix = args.edit_mix.into();
    let generated =
        denorm::tools::gen::generate_with(&plan, &options, mix, !args.only_changes, send);
    match generated {
        Err(e) if !e.is::<Enough>() => return Err(e),
        _ => {}
    }
    producer.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {} records in {seconds:.1}s ({:.0} records/s): {}",
        producer.sent,
        producer.sent as f64 / seconds.max(1e-9),
        plan.sources
            .iter()
            .zip(&per_source)
            .map(|(s, n)| format!("{} {n}", s.topic))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
