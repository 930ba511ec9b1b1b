//! Paces a producer to a fixed rate: record `i` is not sent before `start + i / rate`, where
//! `start` is when the first record was due (not when the pacer was made: a generator may spend
//! seconds building its model and skipping records first, and those seconds must not be made up
//! by a burst). Falling behind (a slow broker) is not made up by a burst beyond what the schedule
//! allows.

use std::time::{Duration, Instant};

/// A fixed-rate schedule.
pub struct Pacer {
    /// Set when the first record is due.
    start: Option<Instant>,
    rate: f64,
    sent: u64,
}

impl Pacer {
    /// `rate` records per second (must be positive).
    pub fn new(rate: f64) -> anyhow::Result<Pacer> {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "the rate must be a positive number of records per second, not {rate}"
        );
        Ok(Pacer {
            start: None,
            rate,
            sent: 0,
        })
    }

    /// Waits until the next record is due.
    pub fn wait(&mut self) {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.sent as f64 / self.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_rate() {
        let mut pacer = Pacer::new(2000.0).unwrap();
        let start = Instant::now();
        for _ in 0..201 {
            pacer.wait();
        }
        // 200 intervals of 0.5 ms.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(99), "{took:?}");
        assert!(Pacer::new(0.0).is_err());
    }

    #[test]
    fn time_before_the_first_record_is_not_made_up() {
        let mut pacer = Pacer::new(1000.0).unwrap();
        std::thread::sleep(Duration::from_millis(60)); // building a model, skipping records
        let start = Instant::now();
        for _ in 0..51 {
            pacer.wait();
        }
        // 50 intervals of 1 ms from the first record, not a burst of the 60 ms missed before it.
        assert!(
            start.elapsed() >= Duration::from_millis(49),
            "{:?}",
            start.elapsed()
        );
    }
}
