//! The policy thread's memory of recent FSM changes (for `reflexctl top` and the chart's
//! "moment of the block"), and their count (for metrics). Bounded: the oldest are dropped.

use std::collections::VecDeque;

use crate::policy::fsm::{Change, ModuleDef};

const HISTORY: usize = 256;

/// What made an instance change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A threshold reaction.
    Threshold,
    /// A control event (reflexctl event).
    Control,
    /// A hold expired.
    Timer,
}

impl Cause {
    /// The cause as the `changes` reply names it.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Threshold => "threshold",
            Cause::Control => "control",
            Cause::Timer => "timer",
        }
    }
}

/// One change, named for people.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub unix_ms: u64,
    pub module: String,
    pub key: String,
    pub from: String,
    pub to: String,
    pub cause: Cause,
}

/// The last changes, newest last, and how many there were since start.
#[derive(Clone, Debug)]
pub struct RecentChanges {
    pub total: u64,
    pub changes: Vec<ChangeRecord>,
}

/// Recent changes, newest last.
#[derive(Default)]
pub struct ChangeLog {
    recent: VecDeque<ChangeRecord>,
    total: u64,
}

impl ChangeLog {
    /// Remembers `change`, naming it with `modules` (the FSM's definitions).
    pub fn record(&mut self, modules: &[ModuleDef], change: &Change, cause: Cause, unix_ms: u64) {
        let Some(d) = modules.get(change.module) else {
            return;
        };
        let state = |s: usize| d.states.get(s).cloned().unwrap_or_else(|| "?".into());
        if self.recent.len() == HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(ChangeRecord {
            unix_ms,
            module: d.name.clone(),
            key: d.key.fmt_key(change.key),
            from: state(change.from),
            to: state(change.to),
            cause,
        });
        self.total += 1;
    }

    /// Changes since start.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The last `max` changes, newest last.
    pub fn recent(&self, max: usize) -> RecentChanges {
        let skip = self.recent.len().saturating_sub(max);
        RecentChanges {
            total: self.total,
            changes: self.recent.iter().skip(skip).cloned().collect(),
        }
    }
}
