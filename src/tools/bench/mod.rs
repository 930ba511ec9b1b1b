//! `denorm bench`: the measurements `scripts/bench.sh` runs and writes into BENCHMARKS.md. Each
//! subcommand prints one JSON object on stdout (the script collects them):
//!
//! - [`memory`]: the in-memory limit, the product's dataflow fed with generated rows decoded up
//!   front (no Kafka, no JSON while timed), documents rendered into a counting writer.
//! - [`consume`]: the Kafka ceiling, reading and decoding the source topics and nothing else.
//! - [`latency`]: tails the output topic during a change stretch, then replays the inputs to
//!   find the documents each change must change, and times each change until the last of them
//!   shows up in the output.
//! - [`hop`]: the broker's own produce → consume hop, on a fresh topic.
//! - [`compare`]: another system's documents against an output topic, by content.
//! - [`export`]: the generated data as CSV tables and a change list, for the PostgreSQL
//!   requery baseline (`scripts/bench_pg.py`).
//!
//! [`pace`] paces a producer to a fixed rate (`denorm gen --rate`).

pub mod compare;
pub mod consume;
pub mod export;
pub mod hop;
pub mod latency;
pub mod memory;
pub mod pace;

use crate::decode::{self, Change};
use crate::plan;
use crate::tools::gen::Record;

pub use crate::kafka::admin::drop_topics;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), where there is one (Linux).
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) this process has used so far, in seconds, from `/proc/self/stat`
/// (whose clock ticks are Linux's fixed `USER_HZ` of 100 per second).
pub fn proc_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `pid (comm)`.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The value at quantile `q` (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Decodes a generated record as a job would (the generator's records always decode).
fn decode_record(plan: &plan::Plan, r: &Record) -> anyhow::Result<Change> {
    let source = &plan.sources[r.source];
    decode::decode(
        source,
        r.key.as_deref().map(str::as_bytes),
        r.value.as_deref().map(str::as_bytes),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "a generated record of {} does not decode: {e}",
            source.topic
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_its_own_memory() {
        if cfg!(target_os = "linux") {
            let rss = proc_status_bytes("VmRSS").unwrap();
            let peak = proc_status_bytes("VmHWM").unwrap();
            assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        }
    }
}
