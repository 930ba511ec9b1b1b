//! When each change's documents showed up: the states each document must go through (one per
//! change that changes it, from [`super::impact`]) against the output records of its key.
//!
//! A change is *seen* once, for every document it must change, the output topic holds that
//! document as the change left it or as a later change left it: at the first output record of
//! the key (at or after the change) whose content is the state after this change or after a
//! later change that has happened by then, or at the change itself when the topic already holds
//! such a state (a change undone by the next one, as in a replayed stretch, needs no new record).
//! Its latency is the time from the change's input record until the last of its documents is
//! seen; a change with a document never seen has no latency and counts as never seen. Records
//! whose content is no state the inputs give their key (the engine showed an interleaving of
//! changes of several topics other than the inputs' timestamp order, or something is wrong) are
//! counted, and satisfy nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::impact::{Effect, Kind, ABSENT};

/// One measured change: an input record of the window.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    /// Its Kafka timestamp (ms).
    pub ts: i64,
    pub kind: Kind,
    /// Documents it must change.
    pub documents: u32,
    /// Documents seen so far, and when the last of them was.
    seen: u32,
    last_ms: i64,
}

impl ChangeRecord {
    /// The latency, once every document is seen (0 documents: none).
    pub fn latency_ms(&self) -> Option<i64> {
        (self.documents > 0 && self.seen == self.documents).then(|| (self.last_ms - self.ts).max(0))
    }
}

/// The states and outputs of one document (root key).
#[derive(Debug, Default)]
struct Line {
    /// The digest of the last output record before the window (`None`: no record).
    before_window: Option<u64>,
    /// (change, its timestamp, the document's digest after it), in change order.
    states: Vec<(u32, i64, u64)>,
    /// The expected document before its first change in the window.
    expected_before: u64,
    /// (time seen, digest) of the window's output records, in offset order.
    outputs: Vec<(i64, u64)>,
}

/// Every change of a window and every document they change.
#[derive(Debug, Default)]
pub struct Timeline {
    pub changes: Vec<ChangeRecord>,
    lines: HashMap<String, Line>,
    /// Window output records of keys no change touched.
    pub outputs_of_unchanged_keys: u64,
    /// Window output records whose content is no state of their key.
    pub outputs_matching_no_state: u64,
    /// Window output records followed by another record of their key seen at the same time (ms).
    pub outputs_superseded_at_once: u64,
    pub window_outputs: u64,
}

impl Timeline {
    /// Adds a change (in input order) with its effect.
    pub fn change(&mut self, ts: i64, effect: &Effect) {
        let index = self.changes.len() as u32;
        self.changes.push(ChangeRecord {
            ts,
            kind: effect.kind,
            documents: effect.documents.len() as u32,
            seen: 0,
            last_ms: i64::MIN,
        });
        for (key, before, digest) in &effect.documents {
            let line = self.lines.entry(key.clone()).or_insert_with(|| Line {
                expected_before: *before,
                ..Line::default()
            });
            line.states.push((index, ts, *digest));
        }
    }

    /// Whether a key's documents matter (a change touched it).
    pub fn tracks(&self, key: &str) -> bool {
        self.lines.contains_key(key)
    }

    /// An output record before the window (`digest` [`ABSENT`] for a tombstone).
    pub fn before_window(&mut self, key: &str, digest: u64) {
        if let Some(line) = self.lines.get_mut(key) {
            line.before_window = Some(digest);
        }
    }

    /// An output record of the window, seen at `time` (ms).
    pub fn output(&mut self, key: &str, time: i64, digest: u64) {
        self.window_outputs += 1;
        match self.lines.get_mut(key) {
            Some(line) => line.outputs.push((time, digest)),
            None => self.outputs_of_unchanged_keys += 1,
        }
    }

    /// Matches every document's states with its outputs.
    pub fn settle(&mut self) {
        for line in self.lines.values() {
            let (states, outputs) = (&line.states, &line.outputs);
            let mut current = line.before_window.unwrap_or(ABSENT);
            // States [satisfied, arrived) wait for an output.
            let (mut arrived, mut satisfied) = (0usize, 0usize);
            let mut o = 0usize;
            self.outputs_superseded_at_once +=
                outputs.windows(2).filter(|w| w[0].0 == w[1].0).count() as u64;
            let changes = &mut self.changes;
            let mut satisfy = |upto: usize, at: i64, satisfied: &mut usize| {
                for &(change, _, _) in &states[*satisfied..=upto] {
                    let c = &mut changes[change as usize];
                    c.seen += 1;
                    c.last_ms = c.last_ms.max(at);
                }
                *satisfied = upto + 1;
            };
            while arrived < states.len() || o < outputs.len() {
                let input_next = match (states.get(arrived), outputs.get(o)) {
                    (Some(s), Some(out)) => s.1 <= out.0,
                    (Some(_), None) => true,
                    _ => false,
                };
                if input_next {
                    let (_, ts, digest) = states[arrived];
                    if digest == current {
                        satisfy(arrived, ts, &mut satisfied);
                    }
                    arrived += 1;
                } else {
                    let (time, digest) = outputs[o];
                    o += 1;
                    current = digest;
                    let known = (0..arrived).rev().find(|&j| states[j].2 == digest);
                    match known {
                        Some(j) if j >= satisfied => satisfy(j, time, &mut satisfied),
                        Some(_) => {}
                        None if digest == line.expected_before => {}
                        None => self.outputs_matching_no_state += 1,
                    }
                }
            }
        }
    }
}

/// Latency percentiles of a group of changes; a change never seen counts as later than any
/// seen, so a percentile that falls on one is `None` (as is `max_ms` if any was never seen).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    /// Changes in the group (each must change at least one document).
    pub changes: u64,
    pub never_seen: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Of the changes seen.
    pub max_seen_ms: Option<f64>,
    pub mean_seen_ms: Option<f64>,
    /// Documents the group's changes must change, in all.
    pub documents: u64,
}

impl Percentiles {
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a ChangeRecord>) -> Percentiles {
        let mut seen = Vec::new();
        let mut p = Percentiles::default();
        for c in changes {
            p.changes += 1;
            p.documents += u64::from(c.documents);
            match c.latency_ms() {
                Some(ms) => seen.push(ms as f64),
                None => p.never_seen += 1,
            }
        }
        seen.sort_by(f64::total_cmp);
        let n = p.changes as usize;
        let at = |q: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            seen.get(rank - 1).copied()
        };
        p.p50_ms = at(0.5);
        p.p90_ms = at(0.9);
        p.p99_ms = at(0.99);
        p.max_ms = at(1.0);
        p.max_seen_ms = seen.last().copied();
        p.mean_seen_ms = (!seen.is_empty()).then(|| seen.iter().sum::<f64>() / seen.len() as f64);
        p
    }
}

/// Changes by kind, with their percentiles.
pub fn by_kind(changes: &[ChangeRecord]) -> BTreeMap<String, Percentiles> {
    let mut kinds: BTreeMap<String, Vec<&ChangeRecord>> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.documents > 0) {
        let name = serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        kinds.entry(name).or_default().push(c);
    }
    kinds
        .into_iter()
        .map(|(k, v)| (k, Percentiles::of(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes `(timestamp, [(key, digest after)])`; every key's document was `before`.
    fn timeline(changes: &[(i64, &[(&str, u64)])], before: u64) -> Timeline {
        let mut t = Timeline::default();
        for (ts, docs) in changes {
            let effect = Effect {
                source: 0,
                kind: Kind::Update,
                documents: docs
                    .iter()
                    .map(|(k, d)| (k.to_string(), before, *d))
                    .collect(),
            };
            t.change(*ts, &effect);
        }
        t
    }

    #[test]
    fn a_change_is_seen_when_its_last_document_shows_it() {
        // Change 0 at 100 changes a (to 1) and b (to 2); change 1 at 150 changes c.
        let mut t = timeline(&[(100, &[("a", 1), ("b", 2)]), (150, &[("c", 3)])], 9);
        for k in ["a", "b", "c"] {
            t.before_window(k, 9);
        }
        t.output("a", 110, 1);
        t.output("c", 160, 3);
        t.output("b", 400, 2);
        t.settle();
        assert_eq!(t.changes[0].latency_ms(), Some(300));
        assert_eq!(t.changes[1].latency_ms(), Some(10));
        assert_eq!(t.outputs_matching_no_state, 0);
    }

    #[test]
    fn a_later_state_shows_an_earlier_change_and_other_content_does_not() {
        // a: 1 at 100, 2 at 200; the engine writes an interleaving (7), then 2 once.
        let mut t = timeline(&[(100, &[("a", 1)]), (200, &[("a", 2)])], 9);
        t.output("a", 150, 7);
        t.output("a", 260, 2);
        t.settle();
        assert_eq!(t.changes[0].latency_ms(), Some(160));
        assert_eq!(t.changes[1].latency_ms(), Some(60));
        assert_eq!(t.outputs_matching_no_state, 1);
    }

    #[test]
    fn an_output_before_a_change_does_not_show_it() {
        // a: the output of 2 arrives before the change that makes 2 (a coincidence of content).
        let mut t = timeline(&[(100, &[("a", 1)]), (200, &[("a", 2)])], 9);
        t.output("a", 150, 1);
        t.output("a", 170, 2);
        t.settle();
        assert_eq!(t.changes[0].latency_ms(), Some(50));
        // At 200 the topic holds 2 already: the change is shown at once.
        assert_eq!(t.changes[1].latency_ms(), Some(0));
    }

    #[test]
    fn an_undone_change_is_seen_when_the_topic_already_holds_the_later_state() {
        // a was 9 (in the topic); change 0 makes it 1, change 1 makes it 9 again; no output.
        let mut t = timeline(&[(100, &[("a", 1)]), (130, &[("a", 9)])], 9);
        t.before_window("a", 9);
        t.settle();
        assert_eq!(t.changes[0].latency_ms(), Some(30));
        assert_eq!(t.changes[1].latency_ms(), Some(0));
    }

    #[test]
    fn never_seen_changes_are_counted_and_bound_the_percentiles() {
        let mut t = timeline(&[(100, &[("a", 1)]), (100, &[("b", 1)])], 9);
        t.output("a", 120, 1);
        t.output("x", 120, 1);
        t.settle();
        assert_eq!(t.outputs_of_unchanged_keys, 1);
        let p = Percentiles::of(&t.changes);
        assert_eq!((p.changes, p.never_seen), (2, 1));
        assert_eq!(p.p50_ms, Some(20.0));
        assert_eq!(p.p99_ms, None);
        assert_eq!(p.max_ms, None);
        assert_eq!(p.max_seen_ms, Some(20.0));
    }

    #[test]
    fn a_deleted_root_is_seen_by_its_tombstone() {
        let mut t = timeline(&[(100, &[("a", ABSENT)])], 5);
        t.before_window("a", 5);
        t.output("a", 140, ABSENT);
        t.settle();
        assert_eq!(t.changes[0].latency_ms(), Some(40));
    }
}
