//! What a process shows while its job catches up, and the lag it reports after: the readers'
//! partition positions ([`PartitionPosition`]) are registered here by the workers, and one
//! monitor thread per process reads them — to draw a progress bar per source on stderr (offsets
//! read towards the end each partition had when reading began, rate and ETA; a spinner with a
//! count and rate while that end is unknown), to print one "caught up" line with the hydration
//! time, and to set the consumer-lag gauges. Workers only store atomics. Bars are drawn only when
//! asked (stderr is a terminal and not `--quiet`); log lines written meanwhile go through
//! [`LogWriter`], which lifts the bars out of the way.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::kafka::position::PartitionPosition;

/// One source as this process reads it.
struct Watched {
    name: String,
    positions: Vec<Arc<PartitionPosition>>,
}

/// The partition positions of a process's readers, and when the job caught up.
pub struct Progress {
    sources: Mutex<Vec<Watched>>,
    caught_up: OnceLock<Duration>,
}

impl Progress {
    /// Progress over the sources of a plan, by name, in plan order.
    pub fn new(source_names: impl IntoIterator<Item = String>) -> Arc<Progress> {
        Arc::new(Progress {
            sources: Mutex::new(
                source_names
                    .into_iter()
                    .map(|name| Watched {
                        name,
                        positions: Vec::new(),
                    })
                    .collect(),
            ),
            caught_up: OnceLock::new(),
        })
    }

    /// A worker reads these partitions of the source named `source` (a source installed after
    /// the start is added at the end).
    pub fn watch(&self, source: &str, positions: &[Arc<PartitionPosition>]) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        match sources.iter_mut().find(|w| w.name == source) {
            Some(watched) => watched.positions.extend(positions.iter().cloned()),
            None => sources.push(Watched {
                name: source.to_owned(),
                positions: positions.to_vec(),
            }),
        }
    }

    /// The source named `source` is no longer read (its last product was removed).
    pub fn forget(&self, source: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.retain(|w| w.name != source);
    }

    /// The job caught up `after` its start (the first call counts).
    pub fn caught_up(&self, after: Duration) {
        let _ = self.caught_up.set(after);
    }

    /// Per source: its name and a snapshot of what this process read of it.
    fn totals(&self) -> Vec<(String, SourceTotals)> {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources
            .iter()
            .map(|w| (w.name.clone(), SourceTotals::of(&w.positions)))
            .collect()
    }

    /// Sets the consumer-lag gauge of every partition whose end the consumer has seen.
    fn publish_lag(&self) {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let metrics = crate::runtime::metrics::metrics();
        for position in sources.iter().flat_map(|w| &w.positions) {
            if let Some(lag) = position.snapshot().lag() {
                metrics
                    .consumer_lag
                    .get_or_create(&crate::runtime::metrics::PartitionLabel {
                        topic: position.topic.clone(),
                        partition: position.partition,
                    })
                    .set(lag);
            }
        }
    }
}

/// What this process read of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SourceTotals {
    partitions: usize,
    records: u64,
    /// `(done, total)` offsets towards the ends at start, when every partition's end is known.
    progress: Option<(u64, u64)>,
    at_end: bool,
}

impl SourceTotals {
    fn of(positions: &[Arc<PartitionPosition>]) -> SourceTotals {
        let snapshots: Vec<_> = positions.iter().map(|p| p.snapshot()).collect();
        let progress = snapshots
            .iter()
            .map(|s| {
                s.progress()
                    // An end of zero for a partition not read to its end is a broker that does
                    // not know (or tell) it: unknown.
                    .filter(|&(_, total)| total > 0 || s.at_end)
            })
            .try_fold((0, 0), |(d, t), p| {
                p.map(|(done, total)| (d + done, t + total))
            });
        SourceTotals {
            partitions: snapshots.len(),
            records: snapshots.iter().map(|s| s.records).sum(),
            progress,
            at_end: snapshots.iter().all(|s| s.at_end),
        }
    }
}

/// The bars of the process, while they are drawn: log lines suspend them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn bars() -> Option<MultiProgress> {
    BARS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The monitor thread; stops (and clears any bars) when dropped.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the monitor of `progress`: lag gauges every second, and bars on stderr if `draw`.
pub fn monitor(progress: Arc<Progress>, draw: bool) -> anyhow::Result<Monitor> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || run_monitor(&progress, draw, &stopped))
        .map_err(|e| anyhow::anyhow!("cannot start the progress thread: {e}"))?;
    Ok(Monitor {
        stop,
        thread: Some(thread),
    })
}

const TICK: Duration = Duration::from_millis(100);
const LAG_EVERY: Duration = Duration::from_secs(1);

fn run_monitor(progress: &Progress, draw: bool, stop: &AtomicBool) {
    let mut board = draw.then(Board::new);
    let mut lag_at = Instant::now() - LAG_EVERY;
    while !stop.load(Ordering::SeqCst) {
        if lag_at.elapsed() >= LAG_EVERY {
            lag_at = Instant::now();
            progress.publish_lag();
        }
        if let Some(b) = board.as_mut() {
            let totals = progress.totals();
            match progress.caught_up.get() {
                None => b.update(&totals),
                Some(after) => {
                    b.close();
                    board = None;
                    eprintln!("{}", caught_up_line(*after, &totals));
                }
            }
        }
        std::thread::sleep(TICK);
    }
    if let Some(mut b) = board {
        b.close();
        if let Some(after) = progress.caught_up.get() {
            eprintln!("{}", caught_up_line(*after, &progress.totals()));
        }
    }
}

/// `caught up in 3.2s: read 12,345 records of 5 sources (10 partitions) and wrote what changed`
fn caught_up_line(after: Duration, totals: &[(String, SourceTotals)]) -> String {
    let records: u64 = totals.iter().map(|(_, t)| t.records).sum();
    let partitions: usize = totals.iter().map(|(_, t)| t.partitions).sum();
    let sources = totals.iter().filter(|(_, t)| t.partitions > 0).count();
    format!(
        "caught up in {:.1}s: read {} records of {sources} source{} ({partitions} partition{}) \
         and wrote what changed",
        after.as_secs_f64(),
        indicatif::HumanCount(records),
        if sources == 1 { "" } else { "s" },
        if partitions == 1 { "" } else { "s" },
    )
}

/// The bars, one per source this process reads, and a line for the work after reading.
struct Board {
    multi: MultiProgress,
    bars: Vec<Option<(ProgressBar, Shown)>>,
    /// Per source, recent `(when, records read)` samples for the rate.
    samples: Vec<std::collections::VecDeque<(Instant, u64)>>,
    /// Shown once every source is read to its end at start, until the job caught up.
    computing: Option<ProgressBar>,
    width: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Spinner,
    Bar,
    Done,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Board {
    fn new() -> Board {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        *BARS.lock().unwrap_or_else(|p| p.into_inner()) = Some(multi.clone());
        Board {
            multi,
            bars: Vec::new(),
            samples: Vec::new(),
            computing: None,
            width: 8,
        }
    }

    fn update(&mut self, totals: &[(String, SourceTotals)]) {
        self.width = totals.iter().map(|(n, _)| n.len()).max().unwrap_or(8);
        self.bars.resize_with(totals.len(), || None);
        self.samples.resize_with(totals.len(), Default::default);
        for (i, (name, t)) in totals.iter().enumerate() {
            if t.partitions == 0 {
                continue;
            }
            let rate = self.rate(i, t.records);
            let shown = if t.at_end {
                Shown::Done
            } else if t.progress.is_some() {
                Shown::Bar
            } else {
                Shown::Spinner
            };
            if self.bars[i].is_none() {
                let rank = self.bars[..i].iter().filter(|b| b.is_some()).count();
                let bar = ProgressBar::no_length().with_style(self.style(shown));
                bar.set_prefix(name.clone());
                self.bars[i] = Some((self.multi.insert(rank, bar), shown));
            }
            let Some((bar, was)) = self.bars[i].clone() else {
                continue;
            };
            if was == Shown::Done {
                continue;
            }
            if shown != was {
                bar.set_style(self.style(shown));
                self.bars[i] = Some((bar.clone(), shown));
            }
            let records = format!("{} records", indicatif::HumanCount(t.records));
            match (shown, t.progress) {
                (Shown::Bar, Some((done, total))) => {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(format!("{records} · {rate}"));
                }
                (Shown::Done, _) => {
                    let (_, total) = t.progress.unwrap_or((t.records, t.records));
                    bar.set_length(total);
                    bar.set_position(total);
                    bar.finish_with_message(format!("{records}: read to the end it had at start"));
                }
                _ if t.records == 0 => {
                    bar.set_message("waiting for the first records");
                }
                _ => {
                    bar.set_position(t.records);
                    bar.set_message(format!(
                        "{records} · {rate} (the end of the topic is not known yet)"
                    ));
                }
            }
        }
        let read = totals.iter().all(|(_, t)| t.at_end);
        if read && self.computing.is_none() && self.bars.iter().any(Option::is_some) {
            let line = ProgressBar::new_spinner().with_style(style("{spinner} {msg} ({elapsed})"));
            line.set_message(
                "every partition is read to its end at start: building the documents and writing what changed",
            );
            line.enable_steady_tick(Duration::from_millis(200));
            self.computing = Some(self.multi.add(line));
        }
    }

    /// Records per second over the last few seconds, as `1,234 records/s`.
    fn rate(&mut self, source: usize, records: u64) -> String {
        let now = Instant::now();
        let samples = &mut self.samples[source];
        samples.push_back((now, records));
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(t, _)| now - *t > Duration::from_secs(3))
        {
            samples.pop_front();
        }
        let per_second = match (samples.front(), samples.back()) {
            (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => {
                (r1 - r0) as f64 / (*t1 - *t0).as_secs_f64()
            }
            _ => 0.0,
        };
        format!(
            "{} records/s",
            indicatif::HumanCount(per_second.round() as u64)
        )
    }

    fn style(&self, shown: Shown) -> ProgressStyle {
        let w = self.width;
        match shown {
            Shown::Bar => style(&format!(
                "{{prefix:>{w}}} [{{bar:30}}] {{percent:>3}}% · {{msg}} · eta {{eta}}"
            )),
            Shown::Spinner => style(&format!("{{prefix:>{w}}} {{spinner}} {{msg}}")),
            Shown::Done => style(&format!("{{prefix:>{w}}} [{{bar:30}}] {{msg}}")),
        }
    }

    fn close(&mut self) {
        *BARS.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for bar in self
            .bars
            .iter()
            .flatten()
            .map(|(b, _)| b)
            .chain(&self.computing)
        {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Where log lines go: stderr, with the progress bars (if any) lifted while a line is written.
pub struct LogWriter;

/// One log line, written when dropped.
pub struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bars() {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_partitions_and_know_when_the_end_is_unknown() {
        let a = Arc::new(PartitionPosition::new("t", 0));
        let b = Arc::new(PartitionPosition::new("t", 1));
        let progress = Progress::new(["users".to_owned(), "orders".to_owned()]);
        progress.watch("users", &[a.clone(), b.clone()]);
        a.watermarks(Some(0), 100);
        a.read(0);
        a.read(49);
        let totals = progress.totals();
        assert_eq!(totals[0].1.progress, None, "b's end is unknown");
        assert_eq!(totals[0].1.records, 2);
        assert_eq!(totals[1].1.partitions, 0);
        // A zero end for a partition not read to its end means the broker did not say.
        b.watermarks(Some(0), 0);
        assert_eq!(progress.totals()[0].1.progress, None);
        b.reached_end(Some(0));
        let t = progress.totals()[0].1;
        assert_eq!(t.progress, Some((50, 100)));
        assert!(!t.at_end);
        a.reached_end(Some(100));
        let t = progress.totals()[0].1;
        assert_eq!(t.progress, Some((100, 100)));
        assert!(t.at_end);
        let line = caught_up_line(Duration::from_millis(3240), &progress.totals());
        assert!(
            line.starts_with("caught up in 3.2s: read 2 records of 1 source (2 partitions)"),
            "{line}"
        );
    }
}
