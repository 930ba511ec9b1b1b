//! Epochs: which time a worker stamps the records it feeds with, and when it closes that time.
//!
//! A time stays open, gathering the records read, until it is full (`max_records` records, or at
//! least `max_bytes` of decoded rows: a poll is not split, so it may pass the bytes by one poll).
//! While this worker catches up with its sources it also closes when they had nothing more to
//! read; once caught up (output is written from then on) it closes as soon as the dataflow has
//! computed every earlier time *and* this worker's output has been delivered, all but at most
//! [`OUTPUT_SLACK`] documents. A hydrating worker, whose documents are not written before it has
//! caught up, thus feeds the dataflow in times as large as memory allows; an idle one closes each
//! poll's records at once (low latency), and a busy one — computing, or waiting for the broker to
//! take its documents — in times as large as what it read meanwhile. Each document is rebuilt and
//! written once per time at which one of its children changed, so under load fewer, larger times
//! mean fewer rebuilds and fewer records written: the pressure of the output coalesces the
//! rewrites. Reading stops while `max_in_flight` closed times are not yet computed, which bounds
//! what is in flight to about `max_in_flight + 1` full times.

use std::collections::VecDeque;

use crate::dataflow::Time;

/// Documents written and not yet delivered that do not hold back the next time. Output pressure
/// coalesces rewrites while the broker takes the documents more slowly than the dataflow makes
/// them; but while a fan-out's documents stream out there is nearly always some document on its
/// way, and waiting for none at all held every later change back until the whole fan-out was
/// delivered (at M, a small change waited about a second behind the repository edits). A time
/// now closes once no more than this many are on their way: a small change waits behind at most
/// these and the chunks the drivers have started.
pub const OUTPUT_SLACK: usize = 1024;

/// How a worker groups the records it reads into times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochLimits {
    /// Records one time holds at most (feed at most [`Epochs::room`] records per poll).
    pub max_records: usize,
    /// Bytes of decoded rows (keys and values, [`crate::value::Row::size`]) one time holds at
    /// most: what waits in the dataflow until the time is computed.
    pub max_bytes: usize,
    /// Closed times not yet computed before the worker stops reading.
    pub max_in_flight: usize,
}

impl Default for EpochLimits {
    fn default() -> Self {
        EpochLimits {
            max_records: 1 << 20,
            max_bytes: 256 << 20,
            max_in_flight: 2,
        }
    }
}

/// One worker's open time and the closed times still in the dataflow.
#[derive(Debug)]
pub struct Epochs {
    limits: EpochLimits,
    open: Time,
    open_records: usize,
    open_bytes: usize,
    in_flight: VecDeque<Time>,
    /// The latest time closed.
    last_closed: Option<Time>,
    /// Output is being written: close the open time once nothing earlier is in flight and the
    /// output is delivered.
    eager: bool,
}

impl Epochs {
    pub fn new(limits: EpochLimits) -> Self {
        Epochs {
            limits: EpochLimits {
                max_records: limits.max_records.max(1),
                max_bytes: limits.max_bytes.max(1),
                max_in_flight: limits.max_in_flight.max(1),
            },
            open: 0,
            open_records: 0,
            open_bytes: 0,
            in_flight: VecDeque::new(),
            last_closed: None,
            eager: false,
        }
    }

    /// The job has caught up and writes output from now on: a time closes as soon as the
    /// dataflow has computed the earlier ones and the output is delivered (but for
    /// [`OUTPUT_SLACK`] documents), so that changes wait no longer than that.
    pub fn caught_up(&mut self) {
        self.eager = true;
    }

    /// The open time: what records fed now are stamped with.
    pub fn time(&self) -> Time {
        self.open
    }

    /// Records in the open time.
    pub fn open_records(&self) -> usize {
        self.open_records
    }

    /// The latest time closed (every record fed so far is at it or before, or in the open time).
    pub fn last_closed(&self) -> Option<Time> {
        self.last_closed
    }

    /// Closed times not yet computed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Forgets the closed times the dataflow has computed; whether the worker may read more.
    pub fn may_read(&mut self, computed_past: impl Fn(&Time) -> bool) -> bool {
        while self.in_flight.front().is_some_and(&computed_past) {
            self.in_flight.pop_front();
        }
        self.in_flight.len() < self.limits.max_in_flight && !self.full()
    }

    fn full(&self) -> bool {
        self.open_records >= self.limits.max_records || self.open_bytes >= self.limits.max_bytes
    }

    /// Records the open time can still take.
    pub fn room(&self) -> usize {
        self.limits.max_records.saturating_sub(self.open_records)
    }

    /// Counts `records` of `bytes` fed at the open time.
    pub fn fed(&mut self, records: usize, bytes: usize) {
        self.open_records += records;
        self.open_bytes += bytes;
    }

    /// Moves time on towards `clock` (a monotone counter; 0 for a purely logical time); returns
    /// the time it closed. An open time with records closes when it is full; while catching up
    /// also when `idle` (the worker tried to read and got nothing); once caught up, instead,
    /// when nothing earlier is in flight and at most [`OUTPUT_SLACK`] of the documents written
    /// are `undelivered`. An empty open time just follows the clock.
    pub fn tick(&mut self, clock: Time, idle: bool, undelivered: usize) -> Option<Time> {
        // An empty open time goes to `close`, which moves it on with the clock.
        let close = self.open_records == 0
            || self.full()
            || if self.eager {
                self.in_flight.is_empty() && undelivered <= OUTPUT_SLACK
            } else {
                idle
            };
        if close {
            self.close(clock)
        } else {
            None
        }
    }

    /// Closes the open time if it holds records (what was read must be before a time the job
    /// tells the sinks of); returns the time it closed. An empty open time follows the clock.
    pub fn close(&mut self, clock: Time) -> Option<Time> {
        if self.open_records == 0 {
            self.open = self.open.max(clock);
            return None;
        }
        let closed = self.open;
        self.in_flight.push_back(closed);
        self.last_closed = Some(closed);
        self.open = (closed + 1).max(clock);
        self.open_records = 0;
        self.open_bytes = 0;
        Some(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(max_records: usize, max_in_flight: usize) -> Epochs {
        let mut e = Epochs::new(EpochLimits {
            max_records,
            max_bytes: usize::MAX,
            max_in_flight,
        });
        e.caught_up();
        e
    }

    #[test]
    fn while_catching_up_a_time_closes_only_when_full_or_nothing_is_left_to_read() {
        let mut e = Epochs::new(EpochLimits {
            max_records: 100,
            max_bytes: usize::MAX,
            max_in_flight: 2,
        });
        for _ in 0..9 {
            assert!(e.may_read(|_| true));
            e.fed(10, 10);
            assert_eq!(
                e.tick(7, false, 0),
                None,
                "nothing is in flight, but nothing is written yet"
            );
        }
        e.fed(10, 10);
        assert_eq!(e.tick(8, false, 0), Some(0), "full");
        e.fed(5, 5);
        assert_eq!(e.tick(9, false, 0), None);
        assert_eq!(e.tick(9, true, 0), Some(8), "the sources had nothing more");
        e.caught_up();
        e.fed(1, 1);
        assert!(e.may_read(|_| true));
        assert_eq!(
            e.tick(10, false, 0),
            Some(9),
            "caught up: closes as the dataflow is idle"
        );
    }

    #[test]
    fn an_idle_dataflow_gets_each_poll_in_its_own_time() {
        let mut e = epochs(100, 2);
        assert!(e.may_read(|_| true));
        e.fed(5, 5);
        assert_eq!(e.tick(10, false, 0), Some(0));
        assert_eq!(e.time(), 10);
        assert!(e.may_read(|_| true));
        assert_eq!(e.in_flight(), 0);
        e.fed(3, 3);
        assert_eq!(e.tick(10, false, 0), Some(10));
        assert_eq!(e.time(), 11, "a closed time is never reused");
    }

    #[test]
    fn a_busy_dataflow_gets_the_records_read_meanwhile_in_one_time() {
        let mut e = epochs(100, 2);
        e.fed(5, 5);
        assert_eq!(e.tick(1, false, 0), Some(0));
        // Time 1 is open; time 0 is still being computed.
        for _ in 0..5 {
            assert!(e.may_read(|_| false));
            e.fed(10, 10);
            assert_eq!(e.tick(2, false, 0), None);
        }
        assert_eq!(e.open_records(), 50);
        // Time 0 is done: the 50 records close at time 1.
        assert!(e.may_read(|t| *t < 1));
        assert_eq!(e.tick(3, false, 0), Some(1));
        assert_eq!((e.time(), e.open_records(), e.in_flight()), (3, 0, 1));
    }

    #[test]
    fn a_full_time_closes_and_reading_stops_at_the_in_flight_limit() {
        let mut e = epochs(20, 2);
        e.fed(1, 1);
        assert_eq!(e.tick(0, false, 0), Some(0));
        assert!(e.may_read(|_| false));
        e.fed(15, 15);
        assert_eq!(e.tick(0, false, 0), None);
        e.fed(15, 15);
        assert!(!e.may_read(|_| false), "the open time is full");
        assert_eq!(e.tick(0, false, 0), Some(1));
        assert_eq!(e.in_flight(), 2);
        assert!(!e.may_read(|_| false), "two closed times in flight");
        assert!(e.may_read(|t| *t == 0));
        assert_eq!(e.in_flight(), 1);
    }

    #[test]
    fn a_time_is_full_at_its_bytes_too() {
        let mut e = Epochs::new(EpochLimits {
            max_records: 100,
            max_bytes: 1000,
            max_in_flight: 2,
        });
        e.fed(2, 600);
        assert!(e.may_read(|_| false));
        assert_eq!(e.tick(0, false, 0), None);
        e.fed(1, 600);
        assert!(!e.may_read(|_| false));
        assert_eq!(e.tick(0, false, 0), Some(0));
    }

    #[test]
    fn a_poll_takes_no_more_than_the_room_left() {
        let mut e = epochs(10, 2);
        e.fed(1, 1);
        e.tick(0, false, 0);
        e.fed(7, 7);
        assert_eq!(e.room(), 3);
        e.fed(e.room(), 3);
        assert_eq!(e.room(), 0);
        assert!(!e.may_read(|_| false));
    }

    #[test]
    fn once_caught_up_a_time_waits_for_the_earlier_one_even_when_nothing_more_is_read() {
        let mut e = epochs(100, 4);
        e.fed(1, 1);
        e.tick(0, false, 0);
        e.fed(7, 7);
        assert_eq!(e.tick(0, false, 0), None);
        assert_eq!(
            e.tick(0, true, 0),
            None,
            "a poll that got nothing does not close it: the time before is in flight"
        );
        assert!(e.may_read(|_| true));
        assert_eq!(e.tick(0, true, 0), Some(1));
    }

    #[test]
    fn once_caught_up_a_time_waits_for_the_output_to_be_delivered() {
        let mut e = epochs(100, 2);
        e.fed(1, 1);
        assert_eq!(e.tick(0, false, 0), Some(0));
        assert!(e.may_read(|_| true));
        e.fed(3, 3);
        assert_eq!(
            e.tick(1, false, OUTPUT_SLACK + 1),
            None,
            "time 0 is computed but its documents are not delivered"
        );
        e.fed(4, 4);
        assert_eq!(e.tick(2, false, OUTPUT_SLACK + 1), None);
        assert_eq!(
            e.tick(3, false, OUTPUT_SLACK),
            Some(1),
            "a few documents still on their way do not hold it back"
        );
        assert_eq!(e.in_flight(), 1);
    }

    #[test]
    fn a_full_time_closes_whatever_the_output() {
        let mut e = epochs(10, 2);
        e.fed(10, 10);
        assert_eq!(e.tick(0, false, OUTPUT_SLACK + 1), Some(0));
    }

    #[test]
    fn close_closes_an_open_time_at_once() {
        let mut e = epochs(100, 4);
        e.fed(1, 1);
        e.tick(0, false, 0);
        e.fed(2, 2);
        assert_eq!(e.tick(5, true, OUTPUT_SLACK + 1), None);
        assert_eq!(e.close(5), Some(1));
        assert_eq!(e.last_closed(), Some(1));
        assert_eq!(e.time(), 5);
        assert_eq!(e.close(6), None, "nothing to close");
        assert_eq!(e.time(), 6);
    }

    #[test]
    fn an_empty_time_follows_the_clock_and_closes_nothing() {
        let mut e = epochs(100, 2);
        assert_eq!(e.tick(5, true, 0), None);
        assert_eq!(e.time(), 5);
        assert_eq!(e.tick(3, false, 0), None);
        assert_eq!(e.time(), 5, "time never goes back");
    }
}
