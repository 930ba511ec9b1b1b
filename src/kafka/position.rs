//! Where a reader is in one partition, shared with whoever watches it: the offset it reads next,
//! the partition's end (the high watermark) when reading began and now, and whether it reached
//! the end. Written by the reading worker with relaxed atomics (one owner per partition); read by
//! the progress bars and the consumer-lag gauges.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Unknown offsets are negative.
const UNKNOWN: i64 = -1;

#[derive(Debug)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    /// The offset after the last record read.
    next: AtomicI64,
    /// Where reading began: the first record's offset (or the partition's start).
    base: AtomicI64,
    /// The high watermark as first seen: the end the progress bar aims for.
    start_end: AtomicI64,
    /// The high watermark as last seen.
    end: AtomicI64,
    at_end: AtomicBool,
    records: AtomicU64,
}

/// A consistent-enough copy of a position, for display and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub next: Option<i64>,
    pub base: Option<i64>,
    pub start_end: Option<i64>,
    pub end: Option<i64>,
    pub at_end: bool,
    pub records: u64,
}

fn known(v: i64) -> Option<i64> {
    (v >= 0).then_some(v)
}

impl PartitionPosition {
    pub fn new(topic: &str, partition: i32) -> Self {
        PartitionPosition {
            topic: topic.to_owned(),
            partition,
            next: AtomicI64::new(UNKNOWN),
            base: AtomicI64::new(UNKNOWN),
            start_end: AtomicI64::new(UNKNOWN),
            end: AtomicI64::new(UNKNOWN),
            at_end: AtomicBool::new(false),
            records: AtomicU64::new(0),
        }
    }

    /// A record at `offset` was read.
    pub fn read(&self, offset: i64) {
        if self.base.load(Ordering::Relaxed) < 0 {
            self.base.store(offset, Ordering::Relaxed);
        }
        self.next.store(offset + 1, Ordering::Relaxed);
        self.records.fetch_add(1, Ordering::Relaxed);
    }

    /// The consumer saw these watermarks (from its fetch responses).
    pub fn watermarks(&self, low: Option<i64>, high: i64) {
        if let Some(low) = low {
            // The start of the partition, until a record says where reading really began.
            let _ = self
                .base
                .compare_exchange(UNKNOWN, low, Ordering::Relaxed, Ordering::Relaxed);
        }
        let _ =
            self.start_end
                .compare_exchange(UNKNOWN, high, Ordering::Relaxed, Ordering::Relaxed);
        self.end.store(high, Ordering::Relaxed);
    }

    /// The reader reached the end of the partition; `high` is the end if the consumer knows it.
    pub fn reached_end(&self, high: Option<i64>) {
        if let Some(high) = high {
            self.watermarks(None, high);
            self.next.fetch_max(high, Ordering::Relaxed);
            let _ = self
                .base
                .compare_exchange(UNKNOWN, high, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.at_end.store(true, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            next: known(self.next.load(Ordering::Relaxed)),
            base: known(self.base.load(Ordering::Relaxed)),
            start_end: known(self.start_end.load(Ordering::Relaxed)),
            end: known(self.end.load(Ordering::Relaxed)),
            at_end: self.at_end.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Records between the next offset and the partition's end as last seen.
    pub fn lag(&self) -> Option<i64> {
        let end = self.end?;
        let next = self.next.or(self.base)?;
        Some((end - next).max(0))
    }

    /// `(done, total)` in offsets towards the end the partition had when reading began; `None`
    /// while that end is unknown.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let start_end = self.start_end?;
        let base = self.base.unwrap_or(0).min(start_end);
        let total = (start_end - base) as u64;
        if self.at_end {
            return Some((total, total));
        }
        let done = (self.next.unwrap_or(base) - base).clamp(0, total as i64) as u64;
        Some((done, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_lag_follow_the_reader() {
        let p = PartitionPosition::new("t", 0);
        assert_eq!(p.snapshot().progress(), None);
        assert_eq!(p.snapshot().lag(), None);
        p.watermarks(Some(100), 200);
        assert_eq!(p.snapshot().progress(), Some((0, 100)));
        assert_eq!(p.snapshot().lag(), Some(100));
        p.read(100);
        p.read(149);
        assert_eq!(p.snapshot().progress(), Some((50, 100)));
        assert_eq!(p.snapshot().lag(), Some(50));
        // New records arrive: the bar still aims at the end it started with, the lag grows.
        p.watermarks(Some(100), 260);
        assert_eq!(p.snapshot().progress(), Some((50, 100)));
        assert_eq!(p.snapshot().lag(), Some(110));
        p.read(230);
        assert_eq!(p.snapshot().progress(), Some((100, 100)));
        p.reached_end(Some(260));
        assert_eq!(p.snapshot().lag(), Some(0));
        assert_eq!(p.snapshot().records, 3);
        // A partition empty at start is done at once.
        let empty = PartitionPosition::new("t", 1);
        empty.reached_end(Some(0));
        assert_eq!(empty.snapshot().progress(), Some((0, 0)));
        assert_eq!(empty.snapshot().lag(), Some(0));
    }
}
