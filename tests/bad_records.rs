//! Bad records on a live stream, end to end against the test broker with `denorm verify` as the
//! judge: undecodable records and schema drift go to the dead-letter topic (the default), with
//! headers naming them, are counted and logged once, and the job keeps running.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A record of a dead-letter topic: key, value and headers.
type Letter = (
    Option<String>,
    Option<String>,
    std::collections::BTreeMap<String, String>,
);

/// Every record of a topic with its headers.
fn letters(topic: &str) -> Vec<Letter> {
    read_placed(topic)
        .into_iter()
        .map(|r| (Some(r.key), r.value, r.headers))
        .collect()
}

/// With no `--on-error`, an undecodable record goes to `<product>.dlq` with headers naming it,
/// is counted in the metrics and logged once, and the job keeps running on a live stream.
#[test]
fn bad_records_go_to_the_default_dead_letter_topic_and_the_job_keeps_running() {
    let p = Product::new("deadletter");
    create_topics(&p.plan, 1);
    let users = p.topic("users");
    produce(&[
        p.user(1, "a@x", "alice"),
        p.raw("users", r#"{"email":"m@x"}"#, "{not json"), // offset 1
        p.user(2, "b@x", "bob"),
    ]);
    let mut job = Job::start(&p, &brokers(), &[]);
    job.wait_log("job caught up", Duration::from_secs(60));
    // Live: another bad record, then a good one.
    produce(&[
        p.raw(
            "users",
            r#"{"email":"o@x"}"#,
            r#"{"before":null,"after":{"id":5},"op":"x"}"#,
        ), // offset 3
        p.user(3, "c@x", "carol"),
    ]);
    let counted = wait_for(Duration::from_secs(30), || {
        job.metric("denorm_dead_letters_total") == 2.0
            && job.metric("denorm_documents_written_total") == 3.0
    });
    assert!(
        job.alive(),
        "the job stopped on a bad record:\n{}",
        job.log()
    );
    let metrics = job.scrape();
    assert!(counted, "{metrics}");
    assert!(
        metrics.contains(&format!("denorm_dead_letters_total{{topic=\"{users}\"}} 2")),
        "{metrics}"
    );

    let letters = letters(&p.dlq());
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let offsets: Vec<&str> = letters
        .iter()
        .map(|(_, _, h)| h["denorm.offset"].as_str())
        .collect();
    assert_eq!(offsets, ["1", "3"]);
    assert_eq!(letters[0].0.as_deref(), Some(r#"{"email":"m@x"}"#));
    assert_eq!(letters[0].1.as_deref(), Some("{not json"));
    // Logged once each, with the same facts as the headers.
    let log = job.log();
    for (_, _, headers) in &letters {
        let place = format!(
            "topic {} partition {} offset {}",
            headers["denorm.topic"], headers["denorm.partition"], headers["denorm.offset"]
        );
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&place)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{place} logged {} times:\n{log}",
            lines.len()
        );
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["error"], headers["denorm.error"]);
        assert_eq!(line["fields"]["dlq"].as_str(), Some(p.dlq().as_str()));
    }

    let (ok, report) = verify(&p, &brokers());
    assert!(
        !ok && report.contains("FAILED: 2 input records could not be decoded"),
        "two undecodable records, none allowed:\n{report}"
    );
    let (ok, report) = verify_allowing(&p, &brokers(), 2);
    assert!(
        ok && report.contains(&format!("{}: OK — expected 3, found 3", p.name))
            && report.contains("(2 undecodable)"),
        "{report}\n--- the job's log:\n{}",
        job.log()
    );
    job.signal("TERM");
    assert!(job.wait_exit(Duration::from_secs(30)).success());
}

/// On a live stream: a new column is ignored; a referenced column that disappears or changes
/// type makes that record a dead letter naming the column, topic, partition and offset; no
/// input makes the job panic; verify agrees on every other record.
#[test]
fn schema_drift_on_a_live_stream_goes_to_the_dead_letter_topic() {
    let p = Product::new("drift");
    create_topics(&p.plan, 1);
    let pr_key = |index: i64| json!({"repo": "hello", "repo_owner": "octo", "index": index});
    let pr_row = |index: i64, author: &str| json!({"repo": "hello", "repo_owner": "octo", "index": index, "author": author, "title": "Fix", "status": "open", "created_at": 1_660_000_000_000i64});
    produce(&[
        p.user(1, "a@x", "alice"),
        p.user(2, "b@x", "bob"),
        p.upsert("pull_requests", pr_key(1), pr_row(1, "alice")),
        p.upsert(
            "payment_info",
            json!({"id": 1}),
            json!({"id": 1, "verified": true}),
        ),
    ]);
    let mut job = Job::start(&p, &brokers(), &[]);
    job.wait_log("job caught up", Duration::from_secs(60));

    // A column the product does not use appears: ignored.
    let mut wide = p.user(1, "a@x", "alice2");
    wide.2 = Some(
        json!({"before": null, "op": "u", "after": {"id": 1, "email": "a@x", "username": "alice2",
            "registered_at": 1_600_000_000_000i64, "nickname": "al", "tags": [1, 2]}})
        .to_string(),
    );
    // (topic, offset, what the error must name) of each record that must become a dead letter.
    let users = p.topic("users");
    let mut drifted: Vec<(String, usize, &str)> = Vec::new();
    // Users offsets 2 and 3.
    let mut live = vec![wide, p.user(3, "c@x", "carol")];
    // A referenced column disappears (users offset 4) or changes type (5, 6; payment_info 1).
    live.push(p.upsert(
        "users",
        json!({"email": "d@x"}),
        json!({"id": 4, "email": "d@x", "registered_at": 0}),
    ));
    drifted.push((users.clone(), 4, "lacks column `username`"));
    live.push(p.upsert(
        "users",
        json!({"email": "e@x"}),
        json!({"id": "five", "email": "e@x", "username": "eve", "registered_at": 0}),
    ));
    drifted.push((users.clone(), 5, "column `id`"));
    live.push(p.upsert(
        "users",
        json!({"email": "f@x"}),
        json!({"id": 6, "email": "f@x", "username": {"first": "fay"}, "registered_at": 0}),
    ));
    drifted.push((users.clone(), 6, "column `username`"));
    live.push(p.upsert(
        "payment_info",
        json!({"id": 2}),
        json!({"id": 2, "verified": "maybe"}),
    ));
    drifted.push((p.topic("payment_info"), 1, "column `verified`"));
    // Garbage of every shape (users offsets 7..): none of it may panic the job.
    let garbage = [
        (r#"{"email":"g@x"}"#, "\u{0}\u{1}binary"),
        (r#"{"email":"g@x"}"#, "[]"),
        (r#"{"email":"g@x"}"#, "42"),
        (r#"{"email":"g@x"}"#, "\"text\""),
        (r#"{"email":"g@x"}"#, r#"{"op":"c","after":[]}"#),
        (
            r#"{"email":"g@x"}"#,
            r#"{"op":"c","after":{"id":1e400,"email":"g@x","username":"g","registered_at":0}}"#,
        ),
        (
            r#"{"email":"g@x"}"#,
            r#"{"op":"c","after":{"id":9223372036854775808,"email":"g@x","username":"g","registered_at":0}}"#,
        ),
        (
            r#"{"email":"g@x"}"#,
            r#"{"op":"c","after":{"id":1.5,"email":"g@x","username":"g","registered_at":0}}"#,
        ),
        (
            "null",
            r#"{"op":"c","after":{"id":1,"email":null,"username":"g","registered_at":0}}"#,
        ),
        (
            r#"{"email":"h@x"}"#,
            r#"{"schema":{"type":"struct","fields":[{"field":"registered_at","type":"string","name":"io.debezium.time.ZonedTimestamp"}]},"payload":{"id":8,"email":"h@x","username":"h","registered_at":"yesterday"}}"#,
        ),
    ];
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for (key, value) in garbage
        .iter()
        .copied()
        .chain([(r#"{"email":"g@x"}"#, deep.as_str())])
    {
        drifted.push((users.clone(), 7 + drifted.len() - 4, ""));
        live.push(p.raw("users", key, value));
    }
    // After all that, the stream goes on.
    live.push(p.user(9, "z@x", "zed"));
    live.push(p.upsert("pull_requests", pr_key(2), pr_row(2, "zed")));
    produce(&live);

    let docs_done = wait_for(Duration::from_secs(30), || {
        let docs = final_docs(&read_all(&p.output()));
        docs.len() == 4
            && docs
                .get(r#"{"email":"z@x"}"#)
                .is_some_and(|d| d.contains("\"index\":2"))
            && docs
                .get(r#"{"email":"a@x"}"#)
                .is_some_and(|d| d.contains("alice2"))
    });
    assert!(job.alive(), "the job stopped:\n{}", job.log());
    assert!(
        docs_done,
        "documents: {:#?}\n{}",
        final_docs(&read_all(&p.output())),
        job.log()
    );
    assert!(
        !job.log().contains("panicked"),
        "a worker panicked:\n{}",
        job.log()
    );
    let docs = final_docs(&read_all(&p.output()));
    // The new columns are not in the document; the drifted rows made none.
    assert!(!docs[r#"{"email":"a@x"}"#].contains("nickname"));
    for gone in ["d@x", "e@x", "f@x", "g@x", "h@x"] {
        assert!(
            !docs.contains_key(&json!({ "email": gone }).to_string()),
            "{docs:#?}"
        );
    }
    let mut letters = letters(&p.dlq());
    letters.sort_by_key(|(_, _, h)| {
        (
            h["denorm.topic"].clone(),
            h["denorm.offset"].parse::<usize>().unwrap(),
        )
    });
    drifted.sort();
    assert_eq!(letters.len(), drifted.len(), "{letters:#?}");
    for ((topic, offset, names), (_, _, h)) in drifted.iter().zip(&letters) {
        assert_eq!(
            (&h["denorm.topic"], h["denorm.offset"].as_str()),
            (topic, offset.to_string().as_str()),
            "{letters:#?}"
        );
        assert_eq!(h["denorm.partition"], "0");
        assert!(
            h["denorm.error"].contains(names),
            "`{}` does not name {names}",
            h["denorm.error"]
        );
    }
    assert_eq!(
        job.metric("denorm_dead_letters_total"),
        drifted.len() as f64
    );

    let (ok, report) = verify_allowing(&p, &brokers(), drifted.len());
    assert!(
        ok && report.contains(&format!("({} undecodable)", drifted.len())),
        "{report}\n--- the job's log:\n{}",
        job.log()
    );
    job.signal("TERM");
    assert!(job.wait_exit(Duration::from_secs(30)).success());
}
