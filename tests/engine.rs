//! End to end against a real broker: Debezium records in, nested documents out, following every
//! insert, update and delete — each relation kind, a non-key join, a child moving between
//! parents, a child delete, a many-to-many fan-out, a root delete, duplicates and replays.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use denorm::runtime::{self as job, JobOptions};
use serde_json::{json, Value};

type Rec = (String, Option<String>, Option<String>);

struct Topics {
    prefix: String,
}

impl Topics {
    fn t(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }
    /// A schema-less change envelope.
    fn change(&self, table: &str, op: &str, key: Value, before: Value, after: Value) -> Rec {
        let value = json!({"before": before, "after": after, "source": {"connector": "postgresql", "table": table}, "op": op, "ts_ms": 1});
        (
            self.t(table),
            Some(key.to_string()),
            Some(value.to_string()),
        )
    }
    fn upsert(&self, table: &str, key: Value, row: Value) -> Rec {
        self.change(table, "c", key, Value::Null, row)
    }
    /// A delete as PostgreSQL sends it (only the key in `before`), then its tombstone.
    fn delete(&self, table: &str, key: Value) -> Vec<Rec> {
        vec![
            self.change(table, "d", key.clone(), key.clone(), Value::Null),
            (self.t(table), Some(key.to_string()), None),
        ]
    }
    /// The flattened form (ExtractNewRecordState) with a schema wrapper.
    fn flat_with_schema(&self, table: &str, key: Value, row: Value) -> Rec {
        let value = json!({"schema": {"type": "struct", "fields": [
            {"field": "repo", "type": "string"}, {"field": "repo_owner", "type": "string"},
            {"field": "index", "type": "int64"}, {"field": "author", "type": "string", "optional": true},
            {"field": "title", "type": "string"}, {"field": "status", "type": "string"},
            {"field": "created_at", "type": "int64", "name": "io.debezium.time.MicroTimestamp"}]},
            "payload": row});
        (
            self.t(table),
            Some(key.to_string()),
            Some(value.to_string()),
        )
    }
}

fn user(t: &Topics, id: i64, email: &str, username: &str) -> Rec {
    t.upsert("users", json!({"email": email}), json!({"id": id, "email": email, "username": username, "registered_at": 1_600_000_000_000i64}))
}
fn repo(t: &Topics, owner: &str, name: &str, description: &str) -> Rec {
    t.upsert(
        "repos",
        json!({"owner": owner, "name": name}),
        json!({"owner": owner, "name": name, "description": description, "star_count": 1, "fork_count": 0, "created_at": 0, "updated_at": 0}),
    )
}
fn star(t: &Topics, username: &str, owner: &str, name: &str) -> Rec {
    t.upsert(
        "stars",
        json!({"username": username, "repo_name": name, "repo_owner": owner}),
        json!({"username": username, "repo_name": name, "repo_owner": owner, "created_at": 0}),
    )
}
fn pull(
    t: &Topics,
    repo: &str,
    index: i64,
    author: &str,
    title: &str,
    status: &str,
    created_us: i64,
) -> Rec {
    let key = json!({"repo": repo, "repo_owner": "octo", "index": index});
    t.flat_with_schema(
        "pull_requests",
        key,
        json!({"repo": repo, "repo_owner": "octo", "index": index, "author": author, "title": title, "status": status, "created_at": created_us, "__deleted": "false"}),
    )
}
fn payment(t: &Topics, id: i64, verified: bool) -> Rec {
    t.upsert(
        "payment_info",
        json!({"id": id}),
        json!({"id": id, "verified": verified}),
    )
}

fn doc(email: &str, username: &str, starred: Value, pulls: Value, verified: Value) -> String {
    json!({"email": email, "username": username, "starred_repos": starred, "pull_requests": pulls, "payment_verified": verified}).to_string()
}

fn key(email: &str) -> String {
    json!({ "email": email }).to_string()
}

fn final_docs(records: &[(String, Option<String>)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in records {
        match v {
            Some(v) => out.insert(k.clone(), v.clone()),
            None => out.remove(k),
        };
    }
    out
}

#[test]
fn documents_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("engine");
    let prefix = scratch.prefix.clone();
    let t = Topics {
        prefix: prefix.clone(),
    };
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 2);
    let output = plan.products[0].output_topic.clone();

    // Phase 1: a snapshot.
    let mut phase1 = vec![
        user(&t, 1, "a@x", "alice"),
        user(&t, 2, "b@x", "bob"),
        user(&t, 3, "c@x", "carol"),
        user(&t, 4, "d@x", "dave"),
        repo(&t, "octo", "hello", "Hello"),
        repo(&t, "octo", "world", "World"),
        star(&t, "alice", "octo", "hello"),
        star(&t, "bob", "octo", "hello"),
        star(&t, "alice", "octo", "world"),
        star(&t, "dave", "octo", "world"),
        star(&t, "alice", "octo", "missing"), // a star of a repo that does not exist: not listed
        pull(
            &t,
            "hello",
            1,
            "alice",
            "Fix",
            "open",
            1_660_000_000_000_000,
        ),
        pull(
            &t,
            "hello",
            2,
            "bob",
            "Add",
            "merged",
            1_650_000_000_000_000,
        ),
        pull(
            &t,
            "world",
            7,
            "alice",
            "Docs",
            "open",
            1_640_000_000_000_000,
        ),
        payment(&t, 1, true),
        payment(&t, 3, false),
    ];
    // A duplicate of a whole record and a replayed snapshot row change nothing.
    phase1.push(phase1[0].clone());
    produce(&phase1);

    let mut options = JobOptions::new(plan.clone(), kafka());
    // Many small times: exercises consolidation across times.
    options.batch_size = 3;
    options.epochs.max_records = 3;
    let stop = options.stop.clone();
    let job = std::thread::spawn(move || job::run(options, timely::Config::process(2)));

    let hello = json!({"repo": "hello", "description": "Hello"});
    let world = json!({"repo": "world", "description": "World"});
    let fix = json!({"repo": "hello", "index": 1, "title": "Fix", "created_at": "2022-08-08T23:06:40Z", "status": "open"});
    let add = json!({"repo": "hello", "index": 2, "title": "Add", "created_at": "2022-04-15T05:20:00Z", "status": "merged"});
    let docs_ = json!({"repo": "world", "index": 7, "title": "Docs", "created_at": "2021-12-20T11:33:20Z", "status": "open"});
    let expected1: BTreeMap<String, String> = [
        (
            key("a@x"),
            doc(
                "a@x",
                "alice",
                json!([hello, world]),
                json!([docs_, fix]),
                json!(true),
            ),
        ),
        (
            key("b@x"),
            doc("b@x", "bob", json!([hello]), json!([add]), Value::Null),
        ),
        (
            key("c@x"),
            doc("c@x", "carol", json!([]), json!([]), json!(false)),
        ),
        (
            key("d@x"),
            doc("d@x", "dave", json!([world]), json!([]), Value::Null),
        ),
    ]
    .into();
    let ok = wait_for(Duration::from_secs(60), || {
        final_docs(&read_all(&output)) == expected1
    });
    assert!(
        ok,
        "phase 1 documents:\n{:#?}\nexpected:\n{:#?}",
        final_docs(&read_all(&output)),
        expected1
    );
    let after_phase1 = read_all(&output).len();

    // Phase 2: changes.
    let mut phase2 = vec![
        repo(&t, "octo", "hello", "Hi"), // fan-out to alice and bob
        pull(
            &t,
            "hello",
            2,
            "carol",
            "Add",
            "merged",
            1_650_000_000_000_000,
        ), // moves from bob to carol
        user(&t, 3, "c@x", "carol"),     // replayed snapshot row: no change
        repo(&t, "octo", "hello", "Hi"), // duplicate
    ];
    phase2.extend(t.delete(
        "stars",
        json!({"username": "alice", "repo_name": "world", "repo_owner": "octo"}),
    )); // child delete
    phase2.extend(t.delete("users", json!({"email": "b@x"}))); // root delete: tombstone
    phase2.extend(t.delete("users", json!({"email": "nobody@x"}))); // delete of an unknown key: nothing
    produce(&phase2);

    let hi = json!({"repo": "hello", "description": "Hi"});
    let expected2: BTreeMap<String, String> = [
        (
            key("a@x"),
            doc(
                "a@x",
                "alice",
                json!([hi]),
                json!([docs_, fix]),
                json!(true),
            ),
        ),
        (
            key("c@x"),
            doc("c@x", "carol", json!([]), json!([add]), json!(false)),
        ),
        (
            key("d@x"),
            doc("d@x", "dave", json!([world]), json!([]), Value::Null),
        ),
    ]
    .into();
    // Stop once the job has read every record (its metrics, in this process, say so): a stop
    // writes the documents of every record read before the job ends.
    let sent = (phase1.len() + phase2.len()) as u64;
    let read = || -> u64 {
        plan.sources
            .iter()
            .map(|s| {
                denorm::runtime::metrics::metrics()
                    .records_read
                    .get_or_create(&denorm::runtime::metrics::topic(&s.topic))
                    .get()
            })
            .sum()
    };
    let all_read = wait_for(Duration::from_secs(60), || read() >= sent);
    stop.store(true, Ordering::SeqCst);
    let report = join_within(job, Duration::from_secs(120)).unwrap();
    assert!(all_read, "the job read {} of {sent} records", read());
    let all = read_all(&output);
    assert_eq!(
        final_docs(&all),
        expected2,
        "phase 2 documents (left) and the expected ones (right)"
    );

    // Only what changed was emitted: nothing for dave, no tombstone but bob's.
    let phase2_records = &all[after_phase1..];
    assert!(
        phase2_records.iter().all(|(k, _)| k != &key("d@x")),
        "an unchanged document was re-emitted: {phase2_records:#?}"
    );
    let tombstones: Vec<&String> = all
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(tombstones, vec![&key("b@x")]);
    // No document was emitted twice in a row with the same content (no flapping duplicates).
    let mut last: BTreeMap<&String, &Option<String>> = BTreeMap::new();
    for (k, v) in &all {
        assert_ne!(
            last.insert(k, v),
            Some(v),
            "document {k} emitted twice unchanged"
        );
    }
    assert_eq!(report.decode_errors(), 0);
    // Every record read once: a record read twice (or skipped) shows here.
    assert_eq!(report.records_read(), sent);
}

#[test]
fn bad_records_stop_the_job_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("badrec");
    let prefix = scratch.prefix.clone();
    let t = Topics {
        prefix: prefix.clone(),
    };
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 1);
    produce(&[
        user(&t, 1, "a@x", "alice"),
        (
            t.t("users"),
            Some("{\"email\":\"z@x\"}".into()),
            Some("{not json".into()),
        ),
    ]);
    let out = finish(
        denorm().args([
            "run",
            file.to_str().unwrap(),
            "--brokers",
            &brokers(),
            "--exit-when-caught-up",
            "--on-error",
            "fail",
        ]),
        RUN_TIMEOUT,
    );
    let stderr = out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("topic {} partition 0 offset 1", t.t("users"))),
        "{stderr}"
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");

    // With --on-error skip the job goes on and the good record makes its document.
    run_ok(&[
        "run",
        file.to_str().unwrap(),
        "--brokers",
        &brokers(),
        "--exit-when-caught-up",
        "--on-error",
        "skip",
    ]);
    let docs = final_docs(&read_all(&plan.products[0].output_topic));
    assert_eq!(docs.keys().cloned().collect::<Vec<_>>(), vec![key("a@x")]);
}

#[test]
fn a_restart_writes_only_what_changed_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("restart");
    let prefix = scratch.prefix.clone();
    let t = Topics {
        prefix: prefix.clone(),
    };
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 2);
    let output = plan.products[0].output_topic.clone();
    // Runs the job until caught up; returns how many records it read.
    let run = || {
        records_read(&run_ok(&[
            "run",
            file.to_str().unwrap(),
            "--brokers",
            &brokers(),
            "--exit-when-caught-up",
            "-w",
            "2",
        ]))
    };
    produce(&[
        user(&t, 1, "a@x", "alice"),
        user(&t, 2, "b@x", "bob"),
        user(&t, 4, "d@x", "dave"),
        payment(&t, 4, true),
    ]);
    assert_eq!(run(), 4);
    assert_eq!(read_all(&output).len(), 3);

    // A restart with nothing new writes nothing, though it read every record again.
    assert_eq!(run(), 4, "the restart did not read the sources");
    assert_eq!(
        read_all(&output).len(),
        3,
        "a restart re-emitted unchanged documents"
    );

    // While the job is down: bob is deleted, carol comes and goes, dave's payment flips.
    let mut down = t.delete("users", json!({"email": "b@x"}));
    down.push(user(&t, 3, "c@x", "carol"));
    down.extend(t.delete("users", json!({"email": "c@x"})));
    down.push(payment(&t, 4, false));
    produce(&down);
    assert_eq!(run(), 4 + down.len() as u64);
    let all = read_all(&output);
    let new: Vec<_> = all[3..].iter().collect();
    assert_eq!(
        new.len(),
        2,
        "expected a tombstone for bob and dave's new document only: {new:#?}"
    );
    assert!(new.contains(&&(key("b@x"), None)), "{new:#?}");
    assert!(
        new.iter().any(|(k, v)| k == &key("d@x")
            && v.as_deref()
                .is_some_and(|d| d.contains("\"payment_verified\":false"))),
        "{new:#?}"
    );
    let docs = final_docs(&all);
    assert_eq!(
        docs.keys().cloned().collect::<Vec<_>>(),
        vec![key("a@x"), key("d@x")],
        "{docs:#?}"
    );
}

#[test]
fn metrics_say_what_was_read_and_when_the_job_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("metrics");
    let prefix = scratch.prefix.clone();
    let t = Topics {
        prefix: prefix.clone(),
    };
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 1);
    produce(&[
        user(&t, 1, "a@x", "alice"),
        user(&t, 2, "b@x", "bob"),
        payment(&t, 1, true),
        (
            t.t("users"),
            Some("{\"email\":\"z@x\"}".into()),
            Some("{oops".into()),
        ),
    ]);
    let log = dir.path().join("job.log");
    let mut job = Running::spawn(
        denorm().args([
            "run",
            file.to_str().unwrap(),
            "--brokers",
            &brokers(),
            "--on-error",
            "dlq",
            "--dlq-topic",
            &format!("{prefix}.dlq"),
            "--metrics-addr",
            "127.0.0.1:0",
        ]),
        &log,
    );
    // The job binds a free port and says which.
    job.wait_log("serving metrics at /metrics", Duration::from_secs(60));
    let addr = metrics_addr(&job.log()).unwrap();
    let mut text = String::new();
    let caught_up = wait_for(Duration::from_secs(60), || {
        text = common::scrape(&addr).unwrap_or_default();
        text.contains("\ndenorm_caught_up 1\n")
    });
    // A change after the job caught up is measured end to end.
    let output = format!("{prefix}.user_profile");
    let latency = format!("denorm_end_to_end_latency_seconds_count{{topic=\"{output}\"}}");
    let mut after = String::new();
    let measured = caught_up && {
        produce(&[user(&t, 2, "b@x", "bobby")]);
        wait_for(Duration::from_secs(30), || {
            after = common::scrape(&addr).unwrap_or_default();
            series(&after, &latency).is_some_and(|n| n >= 1.0)
        })
    };
    // Everything read is written and delivered: no worker is behind.
    let mut settled_text = String::new();
    let settled = wait_for(Duration::from_secs(10), || {
        settled_text = common::scrape(&addr).unwrap_or_default();
        series(&settled_text, "denorm_workers_behind") == Some(0.0)
    });
    // Every source partition is read to its end: no lag (a gauge sampled every second).
    let lag_series: Vec<String> = ["users", "repos", "stars", "pull_requests", "payment_info"]
        .iter()
        .map(|table| {
            format!(
                "denorm_consumer_lag{{topic=\"{}\",partition=\"0\"}}",
                t.t(table)
            )
        })
        .collect();
    let mut lags = String::new();
    let no_lag = wait_for(Duration::from_secs(10), || {
        lags = common::scrape(&addr).unwrap_or_default();
        lag_series.iter().all(|s| series(&lags, s) == Some(0.0))
    });
    job.kill();
    assert!(caught_up, "{text}");
    assert!(measured, "no latency measured:\n{after}");
    assert!(settled, "workers still behind:\n{settled_text}");
    assert!(
        no_lag,
        "{}",
        lags.lines()
            .filter(|l| l.contains("consumer_lag"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let users = t.t("users");
    assert!(
        text.contains(&format!("denorm_records_read_total{{topic=\"{users}\"}} 3")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "denorm_decode_errors_total{{topic=\"{users}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "denorm_documents_written_total{{topic=\"{prefix}.user_profile\"}} 2"
        )),
        "{text}"
    );
    // The hydration took time, and less than the wait for it.
    let hydration = series(&text, "denorm_hydration_seconds")
        .unwrap_or_else(|| panic!("no hydration time:\n{text}"));
    assert!(hydration > 0.0 && hydration < 60.0, "{text}");

    // The bad record went to the dead-letter topic.
    assert_eq!(
        series(
            &text,
            &format!("denorm_dead_letters_total{{topic=\"{users}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    // Rows held per source: two users, one payment; arrangements hold something.
    assert_eq!(
        series(&text, "denorm_source_rows{source=\"users\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "denorm_source_rows{source=\"payment_info\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        series(&text, "denorm_arrangement_records").is_some_and(|n| n > 0.0),
        "{text}"
    );
    // Hydration is not measured; the one changed document is, within the buckets.
    let count = series(&after, &latency).unwrap();
    let sum = series(
        &after,
        &format!("denorm_end_to_end_latency_seconds_sum{{topic=\"{output}\"}}"),
    )
    .unwrap();
    assert_eq!(count, 1.0, "{after}");
    assert!(sum > 0.0 && sum < 30.0, "latency {sum}s:\n{after}");
    assert_eq!(
        series(
            &after,
            &format!("denorm_end_to_end_latency_seconds_bucket{{le=\"60.0\",topic=\"{output}\"}}")
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        after.contains(&format!(
            "denorm_documents_written_total{{topic=\"{output}\"}} 3"
        )),
        "{after}"
    );
}

#[test]
fn undecodable_records_go_to_the_dead_letter_topic_and_the_rest_verifies() {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};

    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("dlq");
    let prefix = scratch.prefix.clone();
    let t = Topics {
        prefix: prefix.clone(),
    };
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 1);
    let users = t.t("users");
    let bad = |key: Option<&str>, value: Option<&str>| {
        (
            users.clone(),
            key.map(str::to_owned),
            value.map(str::to_owned),
        )
    };
    produce(&[
        user(&t, 1, "a@x", "alice"),
        bad(Some("{\"email\":\"m@x\"}"), Some("{not json")), // offset 1: malformed JSON
        bad(
            Some("{\"email\":\"o@x\"}"),
            Some(r#"{"before":null,"after":{"id":5},"op":"x"}"#),
        ), // 2: unknown op
        bad(None, None),                                     // 3: a tombstone without a key
        bad(
            Some("{\"email\":\"w@x\"}"),
            Some(
                r#"{"before":null,"after":{"id":"six","email":"w@x","username":"w","registered_at":0},"op":"c"}"#,
            ),
        ), // 4: wrong type
        user(&t, 2, "b@x", "bob"),
    ]);
    let dlq = format!("{prefix}.dead");
    run_ok(&[
        "run",
        file.to_str().unwrap(),
        "--brokers",
        &brokers(),
        "--exit-when-caught-up",
        "--on-error",
        "dlq",
        "--dlq-topic",
        &dlq,
    ]);

    // Each bad record is in the dead-letter topic with its bytes and where it came from.
    let consumer = kafka().consumer("dlq-test").unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(&dlq, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 4 {
        match consumer.poll(Duration::from_secs(20)) {
            Some(Ok(m)) => {
                let headers: BTreeMap<String, String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                letters.push((
                    m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
                    headers,
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => break,
        }
    }
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let offsets: Vec<&str> = letters
        .iter()
        .map(|(_, h)| h["denorm.offset"].as_str())
        .collect();
    assert_eq!(offsets, vec!["1", "2", "3", "4"]);
    assert!(letters
        .iter()
        .all(|(_, h)| h["denorm.topic"] == users && h["denorm.partition"] == "0"));
    assert_eq!(letters[0].0.as_deref(), Some("{not json"));
    assert!(
        letters[0].1["denorm.error"].contains("not valid JSON"),
        "{letters:#?}"
    );
    assert!(
        letters[1].1["denorm.error"].contains("unknown Debezium op `x`"),
        "{letters:#?}"
    );
    assert!(
        letters[2].1["denorm.error"].contains("no primary key"),
        "{letters:#?}"
    );
    assert!(
        letters[3].1["denorm.error"].contains("column `id`"),
        "{letters:#?}"
    );

    // The good records made their documents, and verify agrees once the four bad records are
    // allowed (without that, undecodable input is a failure).
    let file = file.to_str().unwrap();
    let (ok, report) = output(&["verify", file, "--brokers", &brokers()]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("FAILED: 4 input records could not be decoded"),
        "{report}"
    );
    let report = run_ok(&[
        "verify",
        file,
        "--brokers",
        &brokers(),
        "--allow-undecodable",
        "4",
    ]);
    assert!(
        report.contains("github_user_profile: OK — expected 2, found 2"),
        "{report}"
    );
    assert!(report.contains("(4 undecodable)"), "{report}");
}
