//! A crash (SIGKILL) and restart, end to end against the test broker with `denorm verify` as the
//! judge: nothing is lost, and the restart writes only what changed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The output key of a users record key (schema-less or with a schema).
fn root_key(key: &str) -> String {
    let json: Value = serde_json::from_str(key).unwrap();
    let email = json.get("payload").unwrap_or(&json)["email"].clone();
    json!({ "email": email }).to_string()
}

/// SIGKILL while the job writes documents for a stream of changes; more changes and root deletes
/// while it is down; the restart writes exactly the documents that differ from what the topic
/// holds (deleted roots get their tombstone) and verify passes.
#[test]
fn a_crash_mid_stream_and_a_restart_lose_nothing_and_rewrite_only_what_changed() {
    let _heavy = heavy();
    let p = Product::new("crash");
    create_topics(&p.plan, 2);
    let b = brokers();
    let (records, snapshot) = p.generate(3000, 9000, 21);
    let (first, rest) = records.split_at(snapshot + 3000);
    let (during, down) = rest.split_at(3000);
    produce(first);
    let mut job = Job::start(&p, &b, &["--batch-size", "256"]);
    job.wait_log("job caught up:", Duration::from_secs(60));

    // Stream changes and kill the job as soon as it writes documents for them.
    let written_before = job.metric("denorm_documents_written_total");
    let streamer = stream_in(during);
    let writing = wait_for(Duration::from_secs(30), || {
        job.metric("denorm_documents_written_total") > written_before
    });
    job.signal("KILL");
    let status = job.wait_exit(Duration::from_secs(10));
    assert!(
        writing,
        "the job wrote nothing for the stream:\n{}",
        job.log()
    );
    assert_eq!(status.signal(), Some(9), "{status}");
    let killed_log = job.log();
    streamer.join().unwrap();
    // What the killed job wrote has a timestamp (the producer's create time) before this; what
    // the restart writes, after. (Records it had sent may still reach the topic after the kill:
    // the topic is read only at the end, and split by time, not by what was there now.)
    std::thread::sleep(Duration::from_millis(5));
    let boundary = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::thread::sleep(Duration::from_millis(5));

    // While it is down: the rest of the changes, then deletes of 20 roots that have documents:
    // roots of the snapshot that no later record touches, whose documents the hydration wrote
    // (and delivered, before the job said it caught up).
    let users = p.topic("users");
    let touched: HashSet<String> = records[snapshot..]
        .iter()
        .filter(|(topic, key, _)| topic == &users && key.is_some())
        .map(|(_, key, _)| root_key(key.as_deref().unwrap()))
        .collect();
    let mut deleted = Vec::new();
    let mut tombstones = Vec::new();
    for (topic, key, _) in &records[..snapshot] {
        if topic != &users || deleted.len() == 20 {
            continue;
        }
        let out_key = root_key(key.as_deref().unwrap());
        if !touched.contains(&out_key) {
            deleted.push(out_key);
            tombstones.push((topic.clone(), key.clone(), None));
        }
    }
    assert_eq!(deleted.len(), 20);
    produce(down);
    produce(&tombstones);

    let mut job = Job::start(&p, &b, &[]);
    job.wait_log("job caught up:", Duration::from_secs(60));
    job.signal("TERM");
    assert!(
        job.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        job.log()
    );
    let in_topics = (records.len() + tombstones.len()) as u64;
    let report = verify_clean(
        p.path(),
        &b,
        &format!("--- killed:\n{killed_log}\n--- restarted:\n{}", job.log()),
    );
    assert_eq!(replayed(&report), in_topics, "{report}");
    // The restart read every record of the topics, once: what it did not write below is
    // unchanged, not unread.
    assert_eq!(records_read(&job.log()), in_topics, "{}", job.log());

    let all = read_placed(&p.output());
    let docs = |records: &[&Placed]| {
        final_docs(
            &records
                .iter()
                .map(|r| (r.key.clone(), r.value.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let (before, after): (Vec<&Placed>, Vec<&Placed>) =
        all.iter().partition(|r| r.timestamp < boundary);
    // The restart's records come after the killed job's in every partition.
    let mut last_before: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &before {
        last_before.insert(r.partition, r.offset);
    }
    for r in &after {
        assert!(
            last_before.get(&r.partition).is_none_or(|&o| r.offset > o),
            "a record of the killed job after one of the restart: {r:?}"
        );
    }
    let held = docs(&before);
    for key in &deleted {
        assert!(held.contains_key(key), "{key} had no document");
    }
    let now = docs(&all.iter().collect::<Vec<_>>());
    let changed: Vec<&String> = held
        .keys()
        .chain(now.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| held.get(*k) != now.get(*k))
        .collect();
    eprintln!(
        "crash: {} records before the restart ({} documents), {} written after it, {} documents changed",
        before.len(),
        held.len(),
        after.len(),
        changed.len()
    );
    // No burst: one record per document that changed, none repeating what the topic held.
    assert_eq!(after.len(), changed.len(), "{after:#?}");
    for r in &after {
        assert_ne!(
            held.get(&r.key),
            r.value.as_ref(),
            "re-emitted an unchanged document {}",
            r.key
        );
    }
    for key in &deleted {
        assert!(
            after.iter().any(|r| &r.key == key && r.value.is_none()),
            "no tombstone for {key}"
        );
    }
}
