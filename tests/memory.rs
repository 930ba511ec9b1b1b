//! Backpressure, end to end against the test broker: peak memory while hydrating is bounded by
//! the state, not by the topic.

mod common;

use std::time::{Duration, Instant};

use common::*;
use denorm::kafka::admin::RecordProducer;
use serde_json::json;

/// Hydrates a fresh product from `records` versions of 400 pull requests of 4 users (each title
/// 2 KB, so documents are large and the state is small), with two workers; returns the topic's
/// bytes and the job's peak resident memory.
fn hydrate(records: usize, flight: &str) -> (u64, u64) {
    let (users, pulls) = (4, 400);
    let p = Product::new("memory");
    create_topics(&p.plan, 1);
    let text = "x".repeat(2048);
    let mut producer = RecordProducer::new(&kafka()).unwrap();
    let mut topic_bytes = 0;
    let mut send = |rec: Rec| {
        topic_bytes +=
            rec.1.as_ref().map_or(0, String::len) + rec.2.as_ref().map_or(0, String::len);
        producer
            .send(&rec.0, rec.1.as_deref(), rec.2.as_deref())
            .unwrap();
    };
    for u in 0..users {
        send(p.user(u as i64, &format!("u{u}@x"), &format!("user{u}")));
    }
    for i in 0..records {
        let index = (i % pulls) as i64;
        send(p.upsert(
            "pull_requests",
            json!({"repo": "r", "repo_owner": "o", "index": index}),
            json!({"repo": "r", "repo_owner": "o", "index": index, "author": format!("user{}", index % users as i64),
                "title": format!("{} {text}", i / pulls), "status": "open", "created_at": 0}),
        ));
    }
    producer.flush().unwrap();
    drop(producer);

    let mut job = Job::start(
        &p,
        &brokers(),
        &[
            "-w",
            "2",
            "--batch-size",
            "256",
            "--max-epoch-mib",
            "4",
            "--max-in-flight",
            flight,
        ],
    );
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(180);
    while !job.log().contains("job caught up:") {
        assert!(Instant::now() < end && job.alive(), "{}", job.log());
        peak = peak.max(job.peak_rss());
        std::thread::sleep(Duration::from_millis(50));
    }
    peak = peak.max(job.peak_rss());
    job.signal("TERM");
    assert!(job.wait_exit(Duration::from_secs(60)).success());
    let report = verify_clean(p.path(), &brokers(), &job.log());
    assert_eq!(replayed(&report), (users + records) as u64, "{report}");
    eprintln!(
        "memory: topic {} MB in {records} records, peak RSS {} MB with --max-in-flight {flight}",
        topic_bytes >> 20,
        peak >> 20
    );
    (topic_bytes as u64, peak)
}

/// Peak memory while hydrating does not grow with the topic when the state does not: four
/// times the records (all versions of the same rows) cost little more memory, and less than
/// the topic. A worker's open time holds at most `--max-epoch-mib` of decoded rows, it keeps at
/// most `--max-in-flight` closed times in the dataflow and reads more only once they are
/// computed; the sink consolidates held documents by count and by bytes.
#[test]
fn hydration_memory_is_bounded_by_the_state_not_by_the_topic() {
    let _heavy = heavy();
    let flight = std::env::var("DENORM_TEST_MAX_IN_FLIGHT").unwrap_or("2".into());
    let (small_topic, small_peak) = hydrate(30_000, &flight);
    let (big_topic, big_peak) = hydrate(120_000, &flight);
    assert!(
        big_peak < small_peak + (big_topic - small_topic) / 4 && big_peak < big_topic,
        "peak RSS {} MB for a topic of {} MB, {} MB for the same rows in a topic of {} MB",
        small_peak >> 20,
        small_topic >> 20,
        big_peak >> 20,
        big_topic >> 20
    );
}
