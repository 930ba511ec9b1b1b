//! `denorm demo`: the GitHub UserProfile product on an embedded broker (librdkafka's mock
//! cluster), fed with generated Debezium records: a snapshot, then a stream of changes, while the
//! documents are printed as they change. Ends with a verification of the output topic.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::TopicPartitionList;

use crate::kafka::admin::RecordProducer;
use crate::kafka::client::{KafkaOptions, Reader, FROM_START};
use crate::plan;
use crate::runtime::{self as job, JobOptions};
use crate::tools::gen::{self, GenOptions};

/// The product the demo runs, embedded so the demo works from any directory.
const PRODUCT: &str = include_str!("../../dataflows/github_user_profile.toml");

pub fn run(seconds: u64, scale: usize, workers: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("denorm-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("github_user_profile.toml");
    std::fs::write(&file, PRODUCT)?;
    let plan = plan::load(Path::new(&file))?;
    let product = plan.products[0].clone();

    let cluster = MockCluster::new(1)
        .map_err(|e| anyhow::anyhow!("cannot start the embedded broker: {e}"))?;
    let kafka = KafkaOptions::new(&cluster.bootstrap_servers());
    for source in &plan.sources {
        cluster
            .create_topic(&source.topic, 2, 1)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", source.topic))?;
    }
    cluster
        .create_topic(&product.output_topic, 2, 1)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", product.output_topic))?;
    println!(
        "embedded broker at {}; product {} → topic {}",
        kafka.brokers, product.name, product.output_topic
    );

    let mut records = Vec::new();
    let changes = (seconds as usize * 10).max(10);
    let summary = gen::generate(
        &plan,
        &GenOptions {
            scale,
            changes,
            seed: 7,
        },
        |r| {
            records.push(r);
            Ok(())
        },
    )?;
    // The snapshot (op r) comes first.
    let snapshot = summary.ops.r;
    let mut producer = RecordProducer::new(&kafka)?;
    let send = |producer: &mut RecordProducer, r: &gen::Record| {
        producer.send(
            &plan.sources[r.source].topic,
            r.key.as_deref(),
            r.value.as_deref(),
        )
    };
    for r in &records[..snapshot] {
        send(&mut producer, r)?;
    }
    producer.flush()?;
    println!(
        "wrote a snapshot of {snapshot} Debezium records; starting denorm with {workers} workers"
    );

    let mut options = JobOptions::new(plan.clone(), kafka.clone());
    // Generated records always decode; the embedded broker has no admin API to create a
    // dead-letter topic (creating it would stall the start), so a bad record stops the demo.
    options.on_error = job::ErrorPolicy::Fail;
    let stop = options.stop.clone();
    let job = std::thread::spawn(move || job::run(options, timely::Config::process(workers)));

    let printer = printer(&kafka, &product.output_topic)?;
    let mut printed = 0usize;
    printed += print_until(&printer, Instant::now() + Duration::from_secs(3));
    println!("--- streaming {} changes over {seconds}s: inserts, updates, deletes, moves, fan-out, duplicates, replays ---", records.len() - snapshot);
    let pace = Duration::from_secs(seconds) / (records.len() - snapshot).max(1) as u32;
    for r in &records[snapshot..] {
        send(&mut producer, r)?;
        printed += print_until(&printer, Instant::now() + pace);
    }
    // Stop once the job has read every record written (its metrics say so): a stop writes the
    // documents of every record read before the job exits.
    let read = || -> u64 {
        let metrics = crate::runtime::metrics::metrics();
        plan.sources
            .iter()
            .map(|s| {
                metrics
                    .records_read
                    .get_or_create(&crate::runtime::metrics::topic(&s.topic))
                    .get()
            })
            .sum()
    };
    let end = Instant::now() + Duration::from_secs(60);
    while read() < records.len() as u64 && Instant::now() < end && !job.is_finished() {
        printed += print_until(&printer, Instant::now() + Duration::from_millis(100));
    }
    let all_read = read() >= records.len() as u64;
    stop.store(true, Ordering::SeqCst);
    let report = job
        .join()
        .map_err(|_| anyhow::anyhow!("the job thread panicked"))??;
    anyhow::ensure!(
        all_read,
        "the job read {} of the {} records written within 60 s",
        read(),
        records.len()
    );
    // The documents written while it stopped.
    printed += print_until(&printer, Instant::now() + Duration::from_millis(500));
    println!(
        "--- denorm read {} records and wrote {} document changes ({printed} printed) ---",
        report.records_read(),
        report.documents_written()
    );
    let run = denorm_verify::verify_files(
        std::slice::from_ref(&file),
        &denorm_verify::Settings::new(&kafka.brokers),
    )?;
    print!("verify: {}", run.report(0));
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(run.ok(0), "the demo's output does not match its inputs");
    Ok(())
}

/// Prints the documents the job writes until `deadline`; returns how many.
fn print_until(printer: &Reader, deadline: Instant) -> usize {
    let mut printed = 0;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = printer.poll(Duration::from_millis(50)) {
            printed += 1;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default());
            match m.payload() {
                Some(v) => println!("{key} → {}", shorten(&String::from_utf8_lossy(v), 220)),
                None => println!("{key} → (deleted: tombstone)"),
            }
        }
    }
    printed
}

fn printer(kafka: &KafkaOptions, topic: &str) -> anyhow::Result<Reader> {
    let consumer = kafka.consumer("demo-printer")?;
    let mut list = TopicPartitionList::new();
    for p in 0..2 {
        list.add_partition_offset(topic, p, FROM_START)?;
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        text.to_owned()
    } else {
        format!("{}…", &text[..text.floor_char_boundary(max)])
    }
}
