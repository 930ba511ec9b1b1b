//! A broker outage, end to end against a broker of the test's own (sqlite storage: the data
//! survive), with `denorm verify` as the judge: the job waits, reconnects and resumes without
//! exiting, and the documents the broker did not take are sent again by denorm itself.

mod common;

use std::time::Duration;

use common::broker::OwnBroker;
use common::*;
use denorm::kafka::client::KafkaOptions;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until verify passes (or the job exits); returns its last report.
fn wait_verified(job: &mut Job, p: &Product, addr: &str) -> String {
    let mut report = String::new();
    let ok = wait_for(Duration::from_secs(240), || {
        let (ok, text) = verify(p, addr);
        report = text;
        ok || !job.alive()
    });
    assert!(job.alive(), "the job exited:\n{}", job.log());
    assert!(
        ok && report.contains("(0 undecodable)"),
        "{report}\n--- the job's log:\n{}",
        job.log()
    );
    report
}

/// The broker stops for 15 s just as the job writes the documents of its hydration, and comes
/// back with the same storage. A delivery times out after 5 s (`-X message.timeout.ms=5000`;
/// librdkafka's default of 300 s would wait out the outage by itself, and denorm's resend would
/// never run), so every document the broker had not taken when it stopped, and every one
/// written while it was down, fails, and only denorm's resend brings it to the topic. The job
/// waits, reconnects and resumes without exiting; verify passes, then again after the rest of
/// the data.
#[test]
fn a_broker_outage_mid_stream_is_waited_out_and_the_documents_are_sent_again() {
    let _heavy = heavy();
    let broker = OwnBroker::start();
    let addr = broker.addr();
    let k = KafkaOptions::new(&addr);
    let p = Product::new("outage");
    create_topics_on(&k, &p.plan, 2);
    let (records, snapshot) = p.generate(5000, 4000, 31);
    let (first, rest) = records.split_at(snapshot);
    produce_to(&k, first);

    let mut job = Job::start(&p, &addr, &["-X", "message.timeout.ms=5000"]);
    // As soon as the job starts writing (the documents of its hydration, thousands of them, in
    // one burst), it is frozen, the broker stops, and the job goes on: the broker cannot have
    // taken the documents the job had not written yet, nor can it take those in flight.
    wait_metrics(&mut job, Duration::from_secs(120), "writing", |m| {
        metric(m, "denorm_documents_written_total") > 0.0
    });
    job.signal("STOP");
    let frozen_at = now_ms();
    broker.down();
    job.signal("CONT");
    // Three delivery timeouts.
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        job.alive(),
        "the job exited during the outage:\n{}",
        job.log()
    );
    broker.up();

    // Every document of the snapshot is there; those the broker stored after the outage
    // (records written after the job was frozen) reached it only by being sent again.
    let report = wait_verified(&mut job, &p, &addr);
    let expected = expected_documents(&report, &p.name);
    let output = read_placed_on(&k, &p.output());
    let sent_again: Vec<&Placed> = output.iter().filter(|r| r.timestamp >= frozen_at).collect();
    eprintln!(
        "outage: {} of {expected} documents reached the topic only after the outage, {} before",
        sent_again.len(),
        output.len() - sent_again.len()
    );
    assert!(
        !sent_again.is_empty(),
        "the broker had taken every document before it stopped: nothing was sent again"
    );

    // The job goes on with the rest of the data.
    produce_to(&k, rest);
    wait_verified(&mut job, &p, &addr);
    job.signal("TERM");
    assert!(
        job.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        job.log()
    );
    let log = job.log();
    assert!(
        !log_lines(&log, "the client reconnects and retries").is_empty(),
        "the outage was not logged:\n{log}"
    );
    // denorm's own resend ran, because deliveries timed out; it sent again at least every
    // document that reached the topic only after the outage.
    let warnings = log_lines(&log, "sending them again");
    assert!(
        warnings.iter().any(|w| w["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("Message timed out")),
        "no delivery timed out:\n{warnings:#?}"
    );
    let resent: u64 = log_lines(&log, "records the broker had not taken were sent again")
        .iter()
        .map(|l| l["fields"]["resent"].as_u64().unwrap())
        .sum();
    eprintln!("outage: {resent} records sent again");
    assert!(
        resent >= sent_again.len() as u64,
        "{resent} records sent again, but {} reached the topic only after the outage:\n{log}",
        sent_again.len()
    );
}
