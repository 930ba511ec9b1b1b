//! End-to-end latency, from source records to the delivery of the output they led to.
//!
//! The dataflow's logical time is a millisecond clock (since the job started) with which a
//! worker stamps a group of the records it reads ([`crate::runtime::epoch`]), and every output
//! update carries the time of the input it came from. So the workers note, per time, the Kafka
//! timestamp of the oldest record read at that time ([`SourceTimes::note`]); a sink that writes a window of completed times looks up the
//! oldest of those ([`SourceTimes::oldest`]) and tags each record it writes with it; the producer
//! observes `delivery time − that timestamp` when the broker acknowledges the record.
//!
//! Each record is measured against the oldest input of its window, so the figure is an upper
//! bound for the records whose own input was younger. Batches read before their worker caught up
//! with the start-time contents of its partitions are not noted (their records can be days old),
//! so hydration does not count. In a multi-process job, a process knows only the batches its own
//! workers read: output of a time for which it read nothing is not measured there.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::dataflow::Time;

/// The oldest source timestamp (ms since the Unix epoch) of the batches read at each time.
#[derive(Debug, Default)]
pub struct SourceTimes {
    times: Mutex<BTreeMap<Time, i64>>,
}

impl SourceTimes {
    /// A batch read at `time` held a record with Kafka timestamp `timestamp_ms`, the oldest of
    /// the batch.
    pub fn note(&self, time: Time, timestamp_ms: i64) {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        times
            .entry(time)
            .and_modify(|t| *t = (*t).min(timestamp_ms))
            .or_insert(timestamp_ms);
    }

    /// The oldest source timestamp of the batches read at any of `times`.
    pub fn oldest(&self, times: &[Time]) -> Option<i64> {
        let noted = self.times.lock().unwrap_or_else(|p| p.into_inner());
        times.iter().filter_map(|t| noted.get(t)).min().copied()
    }

    /// Forgets the times before `frontier`: every sink has written their output.
    pub fn forget_before(&self, frontier: Time) {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        *times = times.split_off(&frontier);
    }

    pub fn len(&self) -> usize {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The latency in seconds of a record delivered now whose oldest input had `source_ms`; a
/// source clock ahead of ours counts as zero.
pub fn seconds_since(source_ms: i64) -> f64 {
    (now_ms() - source_ms).max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_oldest_timestamp_per_time_until_written() {
        let times = SourceTimes::default();
        times.note(10, 5_000);
        times.note(10, 4_000);
        times.note(10, 4_500);
        times.note(12, 3_000);
        times.note(15, 9_000);
        assert_eq!(times.oldest(&[10]), Some(4_000));
        assert_eq!(times.oldest(&[10, 12]), Some(3_000));
        assert_eq!(times.oldest(&[11]), None);
        times.forget_before(12);
        assert_eq!(times.oldest(&[10]), None);
        assert_eq!(times.oldest(&[12, 15]), Some(3_000));
        assert_eq!(times.len(), 2);
        assert!(seconds_since(now_ms() + 10_000) == 0.0);
        assert!((seconds_since(now_ms() - 1_500) - 1.5).abs() < 0.1);
    }
}
