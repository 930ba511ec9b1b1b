//! Shared by the end-to-end tests: a real broker (tansu, started by `scripts/broker.sh`, or
//! `DENORM_TEST_BROKERS`), product files with per-test topic names, and Debezium record helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use denorm::kafka::admin::{ensure_topics, RecordProducer};
use denorm::kafka::client::KafkaOptions;
use denorm::plan::Plan;

/// The bootstrap address of a running real broker, started once per test binary.
pub fn brokers() -> String {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| {
            if let Ok(b) = std::env::var("DENORM_TEST_BROKERS") {
                return b;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .output()
                .expect("run scripts/broker.sh");
            assert!(
                out.status.success(),
                "scripts/broker.sh start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .clone()
}

pub fn kafka() -> KafkaOptions {
    KafkaOptions::new(&brokers())
}

/// A unique prefix for this test's topics.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

/// Writes a copy of a product file of `dataflows/` whose topics `github.` become `<prefix>.`.
pub fn product_file(dir: &Path, name: &str, prefix: &str) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dataflows")
            .join(name),
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("\"github.", &format!("\"{prefix}."))).unwrap();
    path
}

/// Creates the plan's topics (sources and outputs) with `partitions` partitions.
pub fn create_topics(plan: &Plan, partitions: i32) {
    let mut topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    topics.extend(plan.products.iter().map(|p| p.output_topic.as_str()));
    ensure_topics(&kafka(), &topics, partitions).expect("create topics");
}

/// Produces `(topic, key, value)` records in order and waits for delivery.
pub fn produce(records: &[(String, Option<String>, Option<String>)]) {
    let mut p = RecordProducer::new(&kafka()).unwrap();
    for (t, k, v) in records {
        p.send(t, k.as_deref(), v.as_deref()).unwrap();
    }
    p.flush().unwrap();
}

/// The settings `denorm verify` reads topics with, for the test broker.
pub fn verify_settings() -> denorm_verify::Settings {
    denorm_verify::Settings::new(&brokers())
}

/// The documents of an output topic as written: last value (text) per key, tombstones removing.
pub fn read_output(topic: &str) -> std::collections::BTreeMap<String, String> {
    denorm_verify::kafka::read_output(&verify_settings(), topic).unwrap()
}

/// Every record of a topic, in partition then offset order: (key, value or None for tombstone).
pub fn read_all(topic: &str) -> Vec<(String, Option<String>)> {
    let mut records = Vec::new();
    denorm_verify::kafka::read_topic(&verify_settings(), topic, |r| {
        records.push(r);
        Ok(())
    })
    .unwrap();
    records.sort_by_key(|r| (r.partition, r.offset));
    records
        .into_iter()
        .map(|r| {
            (
                String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            )
        })
        .collect()
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// The `denorm` binary of this build.
pub fn denorm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_denorm"))
}

/// Runs `denorm ARGS`: whether it succeeded, and its stdout then stderr.
pub fn output(args: &[&str]) -> (bool, String) {
    let out = denorm().args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Fetches the metrics text from `addr` (a minimal HTTP GET).
pub fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Runs `denorm ARGS`, asserts it succeeded, and returns its stdout and stderr.
pub fn run_ok(args: &[&str]) -> String {
    let (ok, text) = output(args);
    assert!(ok, "denorm {args:?} failed:\n{text}");
    text
}

/// A timely hostfile for two processes on localhost, with free ports.
pub fn hostfile(dir: &Path) -> String {
    let path = dir.join("hosts");
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    std::fs::write(
        &path,
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}
