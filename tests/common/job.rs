//! A `denorm run` that runs while the test goes on: JSON logs in a file, metrics on a port the
//! job chooses itself (`--metrics-addr 127.0.0.1:0`; the log says which), signals, waits with a
//! timeout.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{denorm, Running};
use super::product::Product;

/// A `denorm run` process with JSON logs in a file and a metrics endpoint.
pub struct Job {
    pub process: Running,
    metrics: Option<String>,
}

impl Job {
    /// `denorm run FILE --brokers B --log-json --metrics-addr 127.0.0.1:0 EXTRA…`.
    pub fn start(product: &Product, brokers: &str, extra: &[&str]) -> Job {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Job::start_logging(
            product.path(),
            &product.dir().join(format!("job{run}.log")),
            brokers,
            extra,
        )
    }

    /// The same for any product file or folder, logging to `log`.
    pub fn start_logging(files: &str, log: &Path, brokers: &str, extra: &[&str]) -> Job {
        let process = Running::spawn(
            denorm()
                .args(["run", files, "--brokers", brokers, "--log-json"])
                .args(["--metrics-addr", "127.0.0.1:0"])
                .args(extra),
            log,
        );
        Job {
            process,
            metrics: None,
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        self.process.wait_log(needle, timeout)
    }

    pub fn alive(&mut self) -> bool {
        self.process.alive()
    }

    pub fn signal(&self, signal: &str) {
        self.process.signal(signal)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait(timeout)
    }

    /// Where the job serves its metrics (the address it bound, from its log).
    pub fn metrics_addr(&mut self) -> String {
        if let Some(addr) = &self.metrics {
            return addr.clone();
        }
        self.process
            .wait_log("serving metrics at /metrics", Duration::from_secs(60));
        let addr = metrics_addr(&self.log()).expect("the address in the log line");
        self.metrics = Some(addr.clone());
        addr
    }

    /// The metrics text now (empty if unreachable).
    pub fn scrape(&mut self) -> String {
        let addr = self.metrics_addr();
        super::scrape(&addr).unwrap_or_default()
    }

    /// The sum of a metric's samples (over its labels), 0 when absent or unreachable.
    pub fn metric(&mut self, name: &str) -> f64 {
        super::metric(&self.scrape(), name)
    }

    /// Peak resident memory of the process so far, in bytes (Linux).
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

/// The address of the `serving metrics at /metrics` line of a log (JSON or text).
pub fn metrics_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics at /metrics"))?;
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        return json["fields"]["addr"].as_str().map(str::to_owned);
    }
    let at = line.find("addr=")? + "addr=".len();
    Some(line[at..].split_whitespace().next()?.to_owned())
}

/// The JSON log lines of a job whose message contains `needle`.
pub fn log_lines(log: &str, needle: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .collect()
}

/// The records the job read, from its last `stopped, …` line (text or JSON log).
pub fn records_read(log: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("stopped") && l.contains("records_read"))
        .unwrap_or_else(|| panic!("no `stopped, …` line in the log:\n{log}"));
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        if let Some(n) = json["fields"]["records_read"].as_u64() {
            return n;
        }
    }
    let at = line
        .find("records_read=")
        .unwrap_or_else(|| panic!("no records_read in `{line}`"))
        + "records_read=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Parses `topic/partition=offset …` (the positions of a stop log line).
pub fn parse_positions(text: &str) -> HashMap<(String, i32), i64> {
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

/// Waits until `check` holds of the job's metrics text, failing (with the text and the log) if
/// the job exits or `timeout` passes.
pub fn wait_metrics(job: &mut Job, timeout: Duration, what: &str, check: impl Fn(&str) -> bool) {
    let end = Instant::now() + timeout;
    loop {
        let text = job.scrape();
        if check(&text) {
            return;
        }
        assert!(job.alive(), "the job exited before {what}:\n{}", job.log());
        assert!(
            Instant::now() < end,
            "not {what} within {timeout:?}; metrics:\n{text}\nlog:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
