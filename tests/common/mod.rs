//! Shared by the end-to-end tests: a real broker (tansu, started by `scripts/broker.sh`, or
//! `DENORM_TEST_BROKERS`), topics with per-test names that are deleted after the test, product
//! files on them, child processes with a clean environment and a timeout on every run and wait,
//! and the judges (`denorm verify`, the job's log and metrics).
//!
//! - [`topics`]: per-test topic names ([`Scratch`]), producing and reading records;
//! - [`process`]: `denorm` children, every run and wait bounded, two-process jobs, the lock that
//!   serialises the heavy tests;
//! - [`job`]: a running `denorm run` with its JSON log and metrics;
//! - [`product`]: a per-test copy of the GitHub user profile and Debezium records for it;
//! - [`judge`]: `denorm verify` and the comparisons of an output topic with its inputs;
//! - [`broker`]: a tansu broker of a test's own, for outages.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod job;
pub mod judge;
pub mod process;
pub mod product;
pub mod topics;

pub use job::*;
pub use judge::*;
pub use process::*;
pub use product::*;
pub use topics::*;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use denorm::kafka::client::KafkaOptions;

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
            let out = finish(
                Command::new("bash").arg(&script).arg("start"),
                Duration::from_secs(1200), // a first start builds tansu (about 9 minutes)
            );
            assert!(out.ok(), "scripts/broker.sh start failed:\n{}", out.stderr);
            out.stdout.trim().to_owned()
        })
        .clone()
}

pub fn kafka() -> KafkaOptions {
    KafkaOptions::new(&brokers())
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

/// Joins a thread of the test (an in-process job), failing the test if it has not finished
/// within `timeout` (a job that never stops would otherwise hang the suite).
pub fn join_within<T>(handle: std::thread::JoinHandle<T>, timeout: Duration) -> T {
    let finished = wait_for(timeout, || handle.is_finished());
    assert!(finished, "the thread did not finish within {timeout:?}");
    handle.join().expect("the thread panicked")
}

/// Fetches the metrics text from `addr` (a minimal HTTP GET, bounded by a timeout).
pub fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of the series `name{labels}` (labels exactly as rendered), if present.
pub fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Sum of the samples of `name` (e.g. `denorm_dead_letters_total`, or with its labels).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
