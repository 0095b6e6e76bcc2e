//! The policy thread's memory of recent FSM changes (for `reflexctl top` and the chart's
//! "moment of the block"), and their count (for metrics). Bounded: the oldest are dropped.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::policy::fsm::{Change, ModuleDef};

use super::format_unix_ms;

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
    fn name(self) -> &'static str {
        match self {
            Cause::Threshold => "threshold",
            Cause::Control => "control",
            Cause::Timer => "timer",
        }
    }
}

struct Record {
    unix_ms: u64,
    module: String,
    key: String,
    from: String,
    to: String,
    cause: Cause,
}

/// Recent changes, newest last.
#[derive(Default)]
pub struct ChangeLog {
    recent: VecDeque<Record>,
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
        self.recent.push_back(Record {
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

    /// The `changes` reply: the last `max` changes, newest last.
    pub fn json(&self, max: usize) -> Value {
        let skip = self.recent.len().saturating_sub(max);
        let changes: Vec<Value> = self
            .recent
            .iter()
            .skip(skip)
            .map(|r| {
                json!({
                    "unix_ms": r.unix_ms,
                    "time": format_unix_ms(r.unix_ms),
                    "module": r.module,
                    "key": r.key,
                    "from": r.from,
                    "to": r.to,
                    "cause": r.cause.name(),
                })
            })
            .collect();
        json!({"total": self.total, "changes": changes})
    }
}
