//! Reliability, end to end against real brokers, with `denorm verify` as the judge: bad records
//! and schema drift on a live stream (dead-letter topic by default), a broker outage, a crash
//! (SIGKILL) and restart, a graceful stop (SIGINT, SIGTERM), bounded memory while hydrating, and
//! Kafka security settings that pass through without leaking secrets.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use common::*;
use denorm::kafka::admin::RecordProducer;
use denorm::kafka::client::KafkaOptions;
use denorm::plan::Plan;
use serde_json::{json, Value};

type Rec = (String, Option<String>, Option<String>);

/// A copy of the GitHub product whose topics and name are unique to one test (so its default
/// dead-letter topic `<name>.dlq` is too).
struct Product {
    _dir: tempfile::TempDir,
    file: PathBuf,
    prefix: String,
    name: String,
    plan: Plan,
}

impl Product {
    fn new(tag: &str) -> Product {
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique(tag);
        let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
        let name = format!("{prefix}_profile");
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "name = \"github_user_profile\"",
            &format!("name = \"{name}\""),
        );
        std::fs::write(&file, text).unwrap();
        let plan = denorm::plan::load(&file).unwrap();
        Product {
            _dir: dir,
            file,
            prefix,
            name,
            plan,
        }
    }
    fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }
    fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }
    fn output(&self) -> String {
        self.plan.products[0].output_topic.clone()
    }
    fn dlq(&self) -> String {
        format!("{}.dlq", self.name)
    }
    /// A schema-less change envelope with op `c`.
    fn upsert(&self, table: &str, key: Value, row: Value) -> Rec {
        let value = json!({"before": null, "after": row, "source": {"table": table}, "op": "c", "ts_ms": 1});
        (
            self.topic(table),
            Some(key.to_string()),
            Some(value.to_string()),
        )
    }
    fn user(&self, id: i64, email: &str, username: &str) -> Rec {
        self.upsert(
            "users",
            json!({ "email": email }),
            json!({"id": id, "email": email, "username": username, "registered_at": 1_600_000_000_000i64}),
        )
    }
    fn raw(&self, table: &str, key: &str, value: &str) -> Rec {
        (self.topic(table), Some(key.into()), Some(value.into()))
    }
    /// Generated records (snapshot, then changes) and how many of them are the snapshot.
    fn generate(&self, scale: usize, changes: usize, seed: u64) -> (Vec<Rec>, usize) {
        let mut records = Vec::new();
        let summary = denorm::tools::gen::generate(
            &self.plan,
            &denorm::tools::gen::GenOptions {
                scale,
                changes,
                seed,
            },
            |r| {
                records.push((self.plan.sources[r.source].topic.clone(), r.key, r.value));
                Ok(())
            },
        )
        .unwrap();
        (records, summary.snapshot_rows.iter().sum())
    }
}

fn produce_to(kafka: &KafkaOptions, records: &[Rec]) {
    let mut p = RecordProducer::new(kafka).unwrap();
    for (t, k, v) in records {
        p.send(t, k.as_deref(), v.as_deref()).unwrap();
    }
    p.flush().unwrap();
}

/// Produces `records` from a thread, 100 at a time with short pauses: a live stream of changes.
fn stream_in(records: &[Rec]) -> std::thread::JoinHandle<()> {
    let records = records.to_vec();
    std::thread::spawn(move || {
        for chunk in records.chunks(100) {
            produce(chunk);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// A `denorm run` process with JSON logs in a file and a metrics endpoint.
struct Job {
    child: Child,
    log: PathBuf,
    metrics: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Job {
    fn start(product: &Product, brokers: &str, extra: &[&str]) -> Job {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = product._dir.path().join(format!("job{run}.log"));
        let metrics = format!("127.0.0.1:{}", free_port());
        let file = std::fs::File::create(&log).unwrap();
        let child = denorm()
            .args(["run", product.path(), "--brokers", brokers, "--log-json"])
            .args(["--metrics-addr", &metrics])
            .args(extra)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Job {
            child,
            log,
            metrics,
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let ok = wait_for(timeout, || self.log().contains(needle) || !self.alive());
        assert!(
            ok && self.log().contains(needle),
            "no `{needle}` in the job's log:\n{}",
            self.log()
        );
    }
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    /// The sum of a metric's samples (over its labels), 0 when absent or unreachable.
    fn metric(&self, name: &str) -> f64 {
        metric(&scrape(&self.metrics).unwrap_or_default(), name)
    }
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "the job did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Peak resident memory of the process so far, in bytes (Linux).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the samples of `name` (e.g. `denorm_dead_letters_total`, or with its labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs `denorm verify`; returns whether it passed and its report.
fn verify(product: &Product, brokers: &str) -> (bool, String) {
    output(&["verify", product.path(), "--brokers", brokers])
}

/// Runs `denorm verify --allow-undecodable N`: the bad records a test wrote on purpose.
fn verify_allowing(product: &Product, brokers: &str, undecodable: usize) -> (bool, String) {
    let allowed = undecodable.to_string();
    output(&[
        "verify",
        product.path(),
        "--brokers",
        brokers,
        "--allow-undecodable",
        &allowed,
    ])
}

/// A record with its headers: (key, value, headers).
type Letter = (Option<String>, Option<String>, BTreeMap<String, String>);

/// Every record of a topic with its headers.
fn read_with_headers(kafka: &KafkaOptions, topic: &str) -> Vec<Letter> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let counts = kafka
        .partition_counts(&[topic], Duration::from_secs(10))
        .unwrap();
    let consumer = kafka.consumer("reliability-test").unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..counts[0] {
        list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let mut ended = 0;
    while ended < counts[0] {
        match consumer.poll(Duration::from_secs(20)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), text(h.value).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((text(m.key()), text(m.payload()), headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: no end after 20 s"),
        }
    }
    out
}

/// The JSON log lines of a job whose message contains `needle`.
fn log_lines(log: &str, needle: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .collect()
}

/// Parses `topic/partition=offset …` (the positions of a stop log line).
fn parse_positions(text: &str) -> HashMap<(String, i32), i64> {
    text.split_whitespace()
        .map(|p| {
            let (tp, offset) = p.rsplit_once('=').unwrap();
            let (topic, partition) = tp.rsplit_once('/').unwrap();
            let offset = if offset == "beginning" {
                0
            } else {
                offset.parse().unwrap()
            };
            ((topic.to_owned(), partition.parse().unwrap()), offset)
        })
        .collect()
}

/// How the output topic compares with the documents the product should hold after the records
/// of each source partition before `positions` (verify's evaluator over a prefix of every
/// partition, given as records in memory).
fn compare_at(p: &Product, positions: &HashMap<(String, i32), i64>) -> denorm_verify::Run {
    let settings = verify_settings();
    let mut inputs = Vec::new();
    for source in &p.plan.sources {
        denorm_verify::kafka::read_topic(&settings, &source.topic, |record| {
            let end = positions
                .get(&(record.topic.clone(), record.partition))
                .copied()
                .unwrap_or_else(|| panic!("no position for {}", record.place()));
            if record.offset < end {
                inputs.push(record);
            }
            Ok(())
        })
        .unwrap();
    }
    let mut outputs = Vec::new();
    denorm_verify::kafka::read_topic(&settings, &p.output(), |record| {
        outputs.push(record);
        Ok(())
    })
    .unwrap();
    let text = std::fs::read_to_string(p.path()).unwrap();
    denorm_verify::verify_records(&text, &inputs, &outputs).unwrap()
}

/// Every record of a topic as (partition, offset, key, value), in partition and offset order.
fn read_placed(topic: &str) -> Vec<(i32, i64, String, Option<String>)> {
    let mut out = Vec::new();
    denorm_verify::kafka::read_topic(&verify_settings(), topic, |r| {
        out.push((
            r.partition,
            r.offset,
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
            r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        ));
        Ok(())
    })
    .unwrap();
    out.sort_by_key(|r| (r.0, r.1));
    out
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

// ---------------------------------------------------------------------------------------------
// 1. Bad records.

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
    let metrics = scrape(&job.metrics).unwrap();
    assert!(counted, "{metrics}");
    assert!(
        metrics.contains(&format!("denorm_dead_letters_total{{topic=\"{users}\"}} 2")),
        "{metrics}"
    );

    let letters = read_with_headers(&kafka(), &p.dlq());
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
    assert!(!ok, "two undecodable records, none allowed:\n{report}");
    let (ok, report) = verify_allowing(&p, &brokers(), 2);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!("{}: OK — expected 3, found 3", p.name)),
        "{report}"
    );
    assert!(report.contains("(2 undecodable)"), "{report}");
    job.signal("TERM");
    assert!(job.wait_exit(Duration::from_secs(30)).success());
}

// ---------------------------------------------------------------------------------------------
// 2. Schema drift.

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
    let mut live = vec![wide, p.user(3, "c@x", "carol")]; // users offsets 2, 3
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
    let mut letters = read_with_headers(&kafka(), &p.dlq());
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
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!("({} undecodable)", drifted.len())),
        "{report}"
    );
    job.signal("TERM");
    assert!(job.wait_exit(Duration::from_secs(30)).success());
}

// ---------------------------------------------------------------------------------------------
// 7. Security settings.

const SECRET: &str = "s3cr3t-value";

/// Runs `denorm ARGS` with the SASL password in the environment and debug logs everywhere;
/// returns (success, stdout + stderr), asserting the secret is not in it.
fn run_with_secret(args: &[&str]) -> (bool, String) {
    let out = denorm()
        .args(args)
        .env("DENORM_KAFKA_SASL_PASSWORD", SECRET)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(SECRET),
        "the secret leaked with {args:?}:\n{text}"
    );
    (out.status.success(), text)
}

/// librdkafka settings pass through from `-X` and `DENORM_KAFKA_*`; the password from the
/// environment appears in no log (text or JSON, debug level, librdkafka's own debug) nor in
/// `explain`; bad settings fail at once with a clear error.
#[test]
fn kafka_security_settings_pass_through_and_secrets_never_show() {
    let p = Product::new("security");
    create_topics(&p.plan, 1);
    produce(&[p.user(1, "a@x", "alice")]);
    let b = brokers();
    let base = [
        "run",
        p.path(),
        "--brokers",
        b.as_str(),
        "--exit-when-caught-up",
        "-X",
        "sasl.username=u",
    ];

    // Plaintext: the SASL settings are carried but unused; the job works. Text and JSON logs at
    // debug level, with librdkafka's own debug output (it prints its configuration).
    for extra in [
        &["-X", "debug=conf,security,broker"][..],
        &["--log-json"][..],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (ok, text) = run_with_secret(&args);
        assert!(ok, "{text}");
        // The settings are logged, the password masked.
        assert!(text.contains("sasl.password"), "{text}");
        assert!(text.contains("*****"), "{text}");
        assert!(text.contains("sasl.username"), "{text}");
    }
    assert_eq!(final_docs(&read_all(&p.output())).len(), 1);

    // The settings reach librdkafka: SASL over plaintext is tried, and the broker's refusal
    // ends the job at once with its words.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "-X",
            "security.protocol=sasl_plaintext",
            "-X",
            "sasl.mechanism=SCRAM-SHA-512",
        ])
        .collect();
    let started = Instant::now();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok, "{text}");
    assert!(
        text.contains("refused to authenticate") || text.contains("SASL"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?} to fail:\n{text}",
        started.elapsed()
    );
    // A protocol this build cannot speak, and a setting that does not exist: clear errors.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["-X", "security.protocol=sasl_ssl"])
        .collect();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok);
    assert!(
        text.contains("error: ") && text.contains("\"security.protocol\""),
        "{text}"
    );
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["-X", "no.such.setting=1"])
        .collect();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok);
    assert!(
        text.contains("No such configuration property: \"no.such.setting\""),
        "{text}"
    );
    let (ok, text) = run_with_secret(&["run", p.path(), "-X", "missing-equals"]);
    assert!(!ok);
    assert!(text.contains("`missing-equals` is not key=value"), "{text}");

    // explain and verify, with the secret in the environment.
    let (ok, text) = run_with_secret(&["explain", p.path()]);
    assert!(ok, "{text}");
    let (ok, text) =
        run_with_secret(&["verify", p.path(), "--brokers", &b, "-X", "sasl.username=u"]);
    assert!(ok, "{text}");
}

// ---------------------------------------------------------------------------------------------
// 5. Graceful stop.

/// The positions of the job's stop log line (which must say the output is written).
fn stop_positions(job: &Job) -> HashMap<(String, i32), i64> {
    let lines = log_lines(
        &job.log(),
        "stopped on request (Ctrl-C/SIGTERM), the output of every record read is written",
    );
    assert_eq!(lines.len(), 1, "{}", job.log());
    parse_positions(lines[0]["fields"]["positions"].as_str().unwrap())
}

/// SIGINT while hydrating over an existing output topic exits 0 and writes nothing (the
/// documents would reflect part of the sources); SIGTERM mid-stream exits 0, says where it
/// stopped, and has written the documents of exactly the records it read; a restart resumes.
#[test]
fn a_signal_stops_the_job_gracefully_and_it_says_where() {
    let p = Product::new("stop");
    create_topics(&p.plan, 2);
    let b = brokers();
    let (records, snapshot) = p.generate(3000, 6000, 11);
    let (first, rest) = records.split_at(snapshot + 1000);
    produce(first);
    run_ok(&[
        "run",
        p.path(),
        "--brokers",
        &b,
        "--exit-when-caught-up",
        "--log-json",
    ]);
    let written = read_all(&p.output()).len();
    assert!(written > 2000);
    let (changes, rest) = rest.split_at(2000);
    produce(changes);

    // SIGINT while hydrating (small times, one in flight: hydration takes a while).
    let mut job = Job::start(
        &p,
        &b,
        &[
            "--batch-size",
            "16",
            "--max-epoch-records",
            "16",
            "--max-in-flight",
            "1",
        ],
    );
    job.wait_log("worker reading", Duration::from_secs(60));
    assert!(wait_for(Duration::from_secs(30), || job
        .metric("denorm_records_read_total")
        > 0.0));
    job.signal("INT");
    let status = job.wait_exit(Duration::from_secs(60));
    let log = job.log();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(
        !log.contains("job caught up:"),
        "it caught up before SIGINT, try a bigger data set:\n{log}"
    );
    let lines = log_lines(
        &log,
        "stopped on request (Ctrl-C/SIGTERM), before the job caught up",
    );
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0]["fields"]["positions"]
        .as_str()
        .unwrap()
        .contains(&p.topic("users")));
    assert_eq!(
        read_all(&p.output()).len(),
        written,
        "a stop while hydrating wrote to the output topic"
    );

    // SIGTERM mid-stream: changes are streaming in when it comes, and the last of them are
    // produced only after the job has exited (so the stop is mid-stream however fast it reads).
    let (streamed, after_stop) = rest.split_at(rest.len() / 2);
    let mut job = Job::start(&p, &b, &["--batch-size", "256"]);
    job.wait_log("job caught up", Duration::from_secs(60));
    let read_before = job.metric("denorm_records_read_total");
    let streamer = stream_in(streamed);
    assert!(wait_for(Duration::from_secs(30), || job
        .metric("denorm_records_read_total")
        > read_before));
    job.signal("TERM");
    let status = job.wait_exit(Duration::from_secs(60));
    streamer.join().unwrap();
    assert!(status.success(), "exit {status}:\n{}", job.log());
    let positions = stop_positions(&job);
    let read: i64 = positions.values().sum();
    assert!(
        read > (records.len() - rest.len()) as i64 && read < records.len() as i64,
        "the stop was not mid-stream: read {read} of {} records",
        records.len()
    );
    // Everything read before the stop is in the output, nothing more.
    let run = compare_at(&p, &positions);
    assert!(
        run.ok(0),
        "output after SIGTERM vs the records read before it:\n{}",
        run.report(0)
    );

    // A restart takes up the rest.
    produce(after_stop);
    run_ok(&["run", p.path(), "--brokers", &b, "--exit-when-caught-up"]);
    let (ok, report) = verify(&p, &b);
    assert!(ok, "{report}");
}

// ---------------------------------------------------------------------------------------------
// 4. Crash and restart.

/// SIGKILL while the job writes documents for a stream of changes; more changes and root deletes
/// while it is down; the restart writes exactly the documents that differ from what the topic
/// holds (deleted roots get their tombstone) and verify passes.
#[test]
fn a_crash_mid_stream_and_a_restart_lose_nothing_and_rewrite_only_what_changed() {
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
    assert!(!status.success());
    streamer.join().unwrap();

    // While it is down: the rest of the changes, then deletes of 20 roots that have documents.
    let before = read_placed(&p.output());
    let ends: HashMap<i32, i64> = before.iter().map(|r| (r.0, r.1 + 1)).collect();
    let held = final_docs(
        &before
            .iter()
            .map(|r| (r.2.clone(), r.3.clone()))
            .collect::<Vec<_>>(),
    );
    let users = p.topic("users");
    let mut deleted = Vec::new();
    let mut tombstones = Vec::new();
    for (topic, key, _) in &records[..snapshot] {
        if topic != &users || deleted.len() == 20 {
            continue;
        }
        let json: Value = serde_json::from_str(key.as_deref().unwrap()).unwrap();
        let email = json.get("payload").unwrap_or(&json)["email"].clone();
        let out_key = json!({ "email": email }).to_string();
        if held.contains_key(&out_key) {
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
    let (ok, report) = verify(&p, &b);
    assert!(ok, "{report}");

    let all = read_placed(&p.output());
    let after: Vec<(String, Option<String>)> = all
        .iter()
        .filter(|r| r.1 >= ends.get(&r.0).copied().unwrap_or(0))
        .map(|r| (r.2.clone(), r.3.clone()))
        .collect();
    let now = final_docs(
        &all.iter()
            .map(|r| (r.2.clone(), r.3.clone()))
            .collect::<Vec<_>>(),
    );
    let changed: Vec<&String> = held
        .keys()
        .chain(now.keys())
        .collect::<std::collections::BTreeSet<_>>()
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
    for (key, value) in &after {
        assert_ne!(
            held.get(key),
            value.as_ref(),
            "re-emitted an unchanged document {key}"
        );
    }
    for key in &deleted {
        assert!(
            after.contains(&(key.clone(), None)),
            "no tombstone for {key}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Broker outage.

/// A tansu broker of this test's own, with sqlite storage (data survive a restart).
struct OwnBroker {
    port: u16,
    state: tempfile::TempDir,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        // A port outside the ephemeral range, so that no client connection takes it while the
        // broker is down.
        let base = 19300 + (std::process::id() % 50) as u16 * 10;
        let port = (base..base + 500)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .unwrap();
        let broker = OwnBroker {
            port,
            state: tempfile::tempdir().unwrap(),
        };
        broker.up();
        broker
    }
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn script(&self, args: &[&str]) {
        let out = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh"))
            .args(args)
            .env("DENORM_BROKER_PORT", self.port.to_string())
            .env("DENORM_BROKER_STATE", self.state.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "broker.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn up(&self) {
        self.script(&["start", "sqlite"]);
    }
    fn down(&self) {
        self.script(&["stop"]);
        assert!(
            wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(
                self.addr()
            )
            .is_err()),
            "the broker still accepts connections"
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh"))
            .arg("stop")
            .env("DENORM_BROKER_PORT", self.port.to_string())
            .env("DENORM_BROKER_STATE", self.state.path())
            .output();
    }
}

/// The broker stops for 25 s while the job writes its first documents, and comes back with
/// the same storage; the job waits, reconnects and resumes without exiting, and verify passes
/// after the rest of the data.
#[test]
fn a_broker_outage_mid_stream_is_waited_out() {
    let broker = OwnBroker::start();
    let addr = broker.addr();
    let k = KafkaOptions::new(&addr);
    let p = Product::new("outage");
    let mut topics: Vec<&str> = p.plan.sources.iter().map(|s| s.topic.as_str()).collect();
    let output = p.output();
    topics.push(&output);
    denorm::kafka::admin::ensure_topics(&k, &topics, 2).unwrap();
    let (records, snapshot) = p.generate(5000, 4000, 31);
    let (first, rest) = records.split_at(snapshot);
    produce_to(&k, first);

    let mut job = Job::start(&p, &addr, &[]);
    let end = Instant::now() + Duration::from_secs(120);
    while job.metric("denorm_documents_written_total") == 0.0 {
        assert!(Instant::now() < end && job.alive(), "{}", job.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.down();
    let enqueued = job.metric("denorm_documents_written_total");
    std::thread::sleep(Duration::from_secs(25));
    assert!(
        job.alive(),
        "the job exited during the outage:\n{}",
        job.log()
    );
    broker.up();
    produce_to(&k, rest);

    let mut report = String::new();
    let ok = wait_for(Duration::from_secs(180), || {
        let (ok, text) = verify(&p, &addr);
        report = text;
        ok || !job.alive()
    });
    let log = job.log();
    assert!(job.alive(), "the job exited:\n{log}");
    assert!(ok, "{report}");
    assert!(
        !log_lines(&log, "the client reconnects and retries").is_empty(),
        "the outage was not logged:\n{log}"
    );
    eprintln!(
        "outage: {enqueued} documents enqueued when the broker stopped, {} warnings of records sent again; {}",
        log_lines(&log, "sending them again").len(),
        report.lines().last().unwrap_or_default()
    );
    job.signal("TERM");
    assert!(
        job.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        job.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Backpressure.

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
    let (ok, report) = verify(&p, &brokers());
    assert!(ok, "{report}");
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
