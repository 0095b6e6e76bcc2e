//! What the policy thread logs about threshold events: each event at debug, and at info one
//! line per second while events flow (how many, how many distinct keys, the top key), so a
//! flood of crossings over many keys costs a line a second rather than a line per event.
//!
//! [`EventSummary`] is sans-IO: the thread notes each event with `now` and polls for the
//! summary of a second that has ended; it reads no clock and writes no log itself. Distinct
//! keys are counted exactly up to a fixed cap, past which the count is a lower bound
//! ([`Summary::keys_capped`]).

use std::collections::HashMap;
use std::hash::Hash;

/// One second of events, summed up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary<K> {
    /// Events in the window.
    pub events: u64,
    /// Distinct keys among them (a lower bound if `keys_capped`).
    pub keys: usize,
    /// More distinct keys came than the summary tracks.
    pub keys_capped: bool,
    /// The key with the most events (ties: the highest value), its events and that value.
    pub top: Option<(K, u64, f64)>,
}

/// Counts events per window of `period_ns`, from the first event of the window on.
#[derive(Debug)]
pub struct EventSummary<K> {
    period_ns: u64,
    max_keys: usize,
    /// Start of the current window; `None` while no event waits to be summed up.
    since_ns: Option<u64>,
    events: u64,
    per_key: HashMap<K, u64>,
    keys_capped: bool,
    top: Option<(K, u64, f64)>,
}

impl<K: Copy + Eq + Hash> EventSummary<K> {
    /// Windows of `period_ns`, tracking up to `max_keys` distinct keys per window.
    pub fn new(period_ns: u64, max_keys: usize) -> EventSummary<K> {
        EventSummary {
            period_ns,
            max_keys: max_keys.max(1),
            since_ns: None,
            events: 0,
            per_key: HashMap::new(),
            keys_capped: false,
            top: None,
        }
    }

    /// Notes an event for `key` with `value` at `now_ns`.
    pub fn note(&mut self, key: K, value: f64, now_ns: u64) {
        self.since_ns.get_or_insert(now_ns);
        self.events += 1;
        let room = self.per_key.len() < self.max_keys;
        let count = match self.per_key.get_mut(&key) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                if room {
                    self.per_key.insert(key, 1);
                } else {
                    self.keys_capped = true;
                }
                1
            }
        };
        let better = match &self.top {
            None => true,
            Some((_, n, v)) => count > *n || (count == *n && value > *v),
        };
        if better {
            self.top = Some((key, count, value));
        }
    }

    /// The summary of the window if it has lasted `period_ns` by `now_ns` (a new window
    /// starts with the next event); `None` while it runs or when no event came.
    #[must_use]
    pub fn poll(&mut self, now_ns: u64) -> Option<Summary<K>> {
        let since = self.since_ns?;
        if now_ns.saturating_sub(since) < self.period_ns {
            return None;
        }
        let summary = Summary {
            events: self.events,
            keys: self.per_key.len(),
            keys_capped: self.keys_capped,
            top: self.top,
        };
        self.since_ns = None;
        self.events = 0;
        self.per_key.clear();
        self.keys_capped = false;
        self.top = None;
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn one_line_per_second_while_events_flow() {
        let mut s = EventSummary::new(SEC, 16);
        assert_eq!(s.poll(5 * SEC), None, "no event, no line");
        s.note('a', 150.0, 10 * SEC);
        s.note('b', 900.0, 10 * SEC + MS);
        s.note('a', 120.0, 10 * SEC + 2 * MS);
        assert_eq!(s.poll(10 * SEC + 999 * MS), None, "the second is not over");
        let got = s.poll(11 * SEC).expect("a summary");
        assert_eq!(
            got,
            Summary {
                events: 3,
                keys: 2,
                keys_capped: false,
                top: Some(('a', 2, 120.0)),
            }
        );
        assert_eq!(s.poll(12 * SEC), None, "quiet: no line");
        // A new window starts with the next event.
        s.note('c', 101.0, 20 * SEC);
        assert_eq!(s.poll(20 * SEC + 500 * MS), None);
        let got = s.poll(21 * SEC).expect("a summary");
        assert_eq!(
            (got.events, got.keys, got.top),
            (1, 1, Some(('c', 1, 101.0)))
        );
    }

    #[test]
    fn ties_go_to_the_highest_value_and_keys_are_capped() {
        let mut s = EventSummary::new(SEC, 4);
        for k in 0..10u32 {
            s.note(k, f64::from(k), 0);
        }
        let got = s.poll(SEC).expect("a summary");
        assert_eq!(got.events, 10);
        assert_eq!(got.keys, 4);
        assert!(got.keys_capped);
        assert_eq!(got.top, Some((9, 1, 9.0)));
    }
}
