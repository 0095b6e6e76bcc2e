//! The policy thread: the single writer of FSM state. It takes threshold events from the
//! ingest workers and requests from the control socket, runs reactions, journals every
//! state change, and hands rule deltas to the OpenFlow side.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::protocol::{Reply, Request};
use crate::journal::Journal;
use crate::policy::engine::{PolicyEngine, ReactionOutcome};
use crate::policy::fsm::{Change, FsmSnapshot};
use crate::policy::ModuleId;
use crate::policy::{self, Delta, Rule};

use super::changes::{Cause, ChangeLog};
use super::ingest::{Event, Rearm};
use super::{format_unix_ms, latency_histogram, Names};

/// Where compiled rules go (the OpenFlow server, or nothing).
pub trait RuleSink: Send {
    /// The whole pipeline (at start and after a restore).
    fn full(&mut self, rules: &[Rule], meters: &[(u32, u32)]);
    /// A change to it.
    fn delta(&mut self, delta: &Delta, meters: &[(u32, u32)]);
}

/// A sink that drops everything (no OpenFlow side configured).
pub struct NoSink;

impl RuleSink for NoSink {
    fn full(&mut self, _: &[Rule], _: &[(u32, u32)]) {}
    fn delta(&mut self, _: &Delta, _: &[(u32, u32)]) {}
}

/// A request for the policy thread, with where to send the answer.
pub struct PolicyRequest {
    pub query: PolicyQuery,
    pub reply: Sender<Reply>,
}

/// What the control thread may ask.
pub enum PolicyQuery {
    Control(Request),
    /// Event counters and latency percentiles, for `stats`.
    EventStats,
}

/// A state change as journaled.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JournalRecord {
    unix_ms: u64,
    module: String,
    key: String,
    state: String,
    #[serde(default)]
    hold_ms: Option<u64>,
    #[serde(default)]
    then: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct JournalSnapshot {
    unix_ms: u64,
    fsm: FsmSnapshot,
}

type StateJournal = Journal<JournalSnapshot, JournalRecord>;

const EVENT_HISTORY: usize = 1024;

struct EventRecord {
    event: Event,
    unix_ms: u64,
    latency_ns: u64,
    outcome: String,
}

/// The policy thread's state.
pub struct PolicyThread {
    engine: PolicyEngine,
    journal: Option<StateJournal>,
    compact_after: usize,
    sink: Box<dyn RuleSink>,
    names: Arc<Names>,
    recent: VecDeque<EventRecord>,
    events_total: u64,
    /// recvmmsg return → event taken by this thread.
    delivery: hdrhistogram::Histogram<u64>,
    /// recvmmsg return → the reaction's delta handed to the OpenFlow side.
    reaction: hdrhistogram::Histogram<u64>,
    journal_errors: u64,
    changes: ChangeLog,
    /// One queue per ingest worker: thresholds to re-arm for keys let back in.
    rearm: Vec<Sender<Rearm>>,
    rearms_sent: u64,
    rearms_dropped: u64,
}

fn unix_now_ms() -> u64 {
    crate::io::clock::unix_ms(crate::io::now_ns())
}

impl PolicyThread {
    /// Builds the thread's state, restoring journaled FSM state from `state_dir` (if given)
    /// and handing the resulting full table to `sink`.
    pub fn new(
        mut engine: PolicyEngine,
        state_dir: Option<&Path>,
        compact_after: usize,
        mut sink: Box<dyn RuleSink>,
        names: Arc<Names>,
    ) -> anyhow::Result<PolicyThread> {
        let mut journal = None;
        if let Some(dir) = state_dir {
            let (j, recovered) = StateJournal::open(dir)?;
            let now = crate::io::now_ns();
            let now_ms = unix_now_ms();
            if recovered.torn_tail {
                tracing::warn!(dir = %dir.display(), "journal had a torn last record (crash mid-write); dropped it");
            }
            if let Some(mut snap) = recovered.snapshot {
                let elapsed_ns = now_ms.saturating_sub(snap.unix_ms) * 1_000_000;
                for i in &mut snap.fsm.instances {
                    if let Some(r) = &mut i.remaining_ns {
                        *r = r.saturating_sub(elapsed_ns);
                    }
                }
                let _ = engine.restore(&snap.fsm, now)?;
            }
            let mut replayed = 0;
            for r in &recovered.records {
                let (state, hold) = match r.hold_ms {
                    Some(h) if r.unix_ms + h <= now_ms => {
                        (r.then.clone().unwrap_or(r.state.clone()), None)
                    }
                    Some(h) => (r.state.clone(), Some((r.unix_ms + h - now_ms) * 1_000_000)),
                    None => (r.state.clone(), None),
                };
                let ev = policy::Event {
                    module: r.module.clone(),
                    key: r.key.clone(),
                    state,
                    hold_ns: hold,
                    then: r.then.clone(),
                };
                match engine.apply_event(&ev, now) {
                    Ok(_) => replayed += 1,
                    Err(e) => tracing::warn!(error = %e, "journal record not replayed"),
                }
            }
            let restored = engine.instances(now).len();
            tracing::info!(dir = %dir.display(), restored, replayed, "FSM state restored");
            journal = Some(j);
        }
        sink.full(&engine.rules(), &engine.meters());
        let mut t = PolicyThread {
            engine,
            journal,
            compact_after: compact_after.max(1),
            sink,
            names,
            recent: VecDeque::with_capacity(EVENT_HISTORY),
            events_total: 0,
            delivery: latency_histogram(),
            reaction: latency_histogram(),
            journal_errors: 0,
            changes: ChangeLog::default(),
            rearm: Vec::new(),
            rearms_sent: 0,
            rearms_dropped: 0,
        };
        t.compact_if_due(true);
        for v in t.engine.check() {
            tracing::error!(assertion = %v.assertion, key = %v.key, packet = %v.packet, "policy assertion violated at load");
        }
        Ok(t)
    }

    /// Runs until `stop` is set.
    /// Where to send re-arms (one sender per ingest worker).
    pub fn with_rearm(mut self, workers: Vec<Sender<Rearm>>) -> PolicyThread {
        self.rearm = workers;
        self
    }

    /// A change that undid a reaction (an operator let the key back in, or a timed block
    /// ran out): the workers re-arm that threshold for the key, so that a new flood right
    /// after re-admission is seen at once instead of after the hysteresis timeout.
    fn rearm_after(&mut self, change: &Change) {
        if self.rearm.is_empty() {
            return;
        }
        for (threshold, key) in self.engine.rearms(change) {
            let r = Rearm { threshold, key };
            for tx in &self.rearm {
                if tx.try_send(r).is_ok() {
                    self.rearms_sent += 1;
                } else {
                    self.rearms_dropped += 1;
                }
            }
        }
    }

    pub fn run(
        mut self,
        events: Receiver<Event>,
        requests: Receiver<PolicyRequest>,
        stop: Arc<AtomicBool>,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let now = crate::io::now_ns();
            let wait = self
                .engine
                .poll_timeout()
                .map_or(Duration::from_millis(100), |d| {
                    Duration::from_nanos(d.saturating_sub(now)).min(Duration::from_millis(100))
                });
            crossbeam_channel::select! {
                recv(events) -> e => if let Ok(e) = e { self.on_threshold(e) },
                recv(requests) -> r => if let Ok(r) = r {
                    let reply = self.on_request(r.query);
                    let _ = r.reply.send(reply);
                },
                default(wait) => {}
            }
            let now = crate::io::now_ns();
            for (change, delta) in self.engine.expire(now) {
                self.sink.delta(&delta, &self.engine.meters());
                self.rearm_after(&change);
                let modules = self.engine.fsm().modules();
                self.changes
                    .record(modules, &change, Cause::Timer, unix_now_ms());
                self.journal_instance(change.module, change.key);
                tracing::info!(change = %self.describe(&change), "timed transition");
            }
        }
    }

    fn describe(&self, c: &Change) -> String {
        let defs = self.engine.fsm().modules();
        let d = &defs[c.module];
        format!(
            "{}({}) {} -> {}",
            d.name,
            d.key.fmt_key(c.key),
            d.states[c.from],
            d.states[c.to]
        )
    }

    fn on_threshold(&mut self, event: Event) {
        let taken = crate::io::now_ns();
        let _ = self
            .delivery
            .record(taken.saturating_sub(event.recv_ns).max(1));
        let outcomes = self.engine.react(event.threshold, &event.key, taken);
        let mut texts = Vec::new();
        for (outcome, delta) in &outcomes {
            if let ReactionOutcome::Applied(change) = outcome {
                self.sink.delta(delta, &self.engine.meters());
                let modules = self.engine.fsm().modules();
                self.changes
                    .record(modules, change, Cause::Threshold, unix_now_ms());
                let done = crate::io::now_ns();
                let _ = self
                    .reaction
                    .record(done.saturating_sub(event.recv_ns).max(1));
                self.journal_instance(change.module, change.key);
                texts.push(self.describe(change));
            } else {
                texts.push(match outcome {
                    ReactionOutcome::Unchanged => "unchanged".to_owned(),
                    ReactionOutcome::Whitelisted => "whitelisted".to_owned(),
                    ReactionOutcome::DryRun { module, key, state } => {
                        format!("dry run: would set {module}({key}) = {state}")
                    }
                    ReactionOutcome::BadKey(k) => format!("key {k} does not fit the module"),
                    ReactionOutcome::Applied(_) => String::new(),
                });
            }
        }
        let outcome = texts.join("; ");
        tracing::info!(
            id = event.id,
            threshold = self.names.threshold_name(event.threshold),
            flow = self.names.flow_name(event.flow),
            key = %self.names.key_text(event.flow, &event.key),
            agent = %event.agent,
            value = event.value,
            latency_us = taken.saturating_sub(event.recv_ns) as f64 / 1e3,
            outcome = %outcome,
            "threshold crossed"
        );
        if self.recent.len() == EVENT_HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(EventRecord {
            event,
            unix_ms: crate::io::clock::unix_ms(event.detected_ns),
            latency_ns: taken.saturating_sub(event.recv_ns),
            outcome,
        });
        self.events_total += 1;
    }

    /// Journals an instance's current state and pending hold.
    fn journal_instance(&mut self, module: ModuleId, key: u128) {
        let d = &self.engine.fsm().modules()[module];
        let key_text = d.key.fmt_key(key);
        let now = crate::io::now_ns();
        let view = self
            .engine
            .instances(now)
            .into_iter()
            .find(|i| i.module == d.name && i.key == key_text);
        let state = self.engine.fsm().state_id(module, key);
        let record = JournalRecord {
            unix_ms: unix_now_ms(),
            module: d.name.clone(),
            key: key_text,
            state: d.states[state].clone(),
            hold_ms: view
                .as_ref()
                .and_then(|v| v.remaining_s)
                .map(|r| (r * 1e3) as u64),
            then: view.and_then(|v| v.then),
        };
        if let Some(j) = &mut self.journal {
            if let Err(e) = j.append(&record) {
                self.journal_errors += 1;
                tracing::error!(error = %e, "journal write failed: this change will not survive a restart");
            }
        }
        self.compact_if_due(false);
    }

    fn compact_if_due(&mut self, force: bool) {
        let Some(j) = &mut self.journal else { return };
        if !force && j.len() < self.compact_after {
            return;
        }
        let snap = JournalSnapshot {
            unix_ms: unix_now_ms(),
            fsm: self.engine.snapshot(crate::io::now_ns()),
        };
        if let Err(e) = j.compact(&snap) {
            self.journal_errors += 1;
            tracing::error!(error = %e, "journal compaction failed");
        }
    }

    fn on_request(&mut self, query: PolicyQuery) -> Reply {
        match query {
            PolicyQuery::EventStats => Reply::ok(self.event_stats()),
            PolicyQuery::Control(request) => match request {
                Request::Event {
                    module,
                    key,
                    state,
                    hold,
                    then,
                } => self.control_event(module, key, state, hold, then),
                Request::State { module, key } => self.state(module, key),
                Request::Events { max } => Reply::ok(self.events_json(max)),
                Request::Changes { max } => Reply::ok(self.changes.json(max)),
                Request::Policy => Reply::ok(self.policy_json()),
                Request::Check => {
                    let v = self.engine.check();
                    Reply::ok(json!({"ok": v.is_empty(), "violations": v}))
                }
                other => Reply::error(format!("the policy thread does not answer {other:?}")),
            },
        }
    }

    fn control_event(
        &mut self,
        module: String,
        key: String,
        state: String,
        hold: Option<f64>,
        then: Option<String>,
    ) -> Reply {
        let hold_ns = match hold {
            Some(h) if !(h.is_finite() && h > 0.0) => {
                return Reply::error("hold must be a positive number of seconds")
            }
            Some(h) => Some((h * 1e9) as u64),
            None => None,
        };
        let ev = policy::Event {
            module,
            key,
            state,
            hold_ns,
            then,
        };
        let now = crate::io::now_ns();
        let from = self.engine.state(&ev.module, &ev.key).map(str::to_owned);
        match self.engine.apply_event(&ev, now) {
            Err(e) => Reply::error(e.to_string()),
            Ok((change, delta)) => {
                if !delta.is_empty() {
                    self.sink.delta(&delta, &self.engine.meters());
                }
                if let Some(c) = &change {
                    let modules = self.engine.fsm().modules();
                    self.changes
                        .record(modules, c, Cause::Control, unix_now_ms());
                    self.rearm_after(c);
                }
                // Journal before acknowledging (a renewed hold is journaled too).
                let target = match &change {
                    Some(c) => Some((c.module, c.key)),
                    None if hold_ns.is_some() => {
                        self.engine.fsm().module_id(&ev.module).and_then(|m| {
                            Some((m, self.engine.fsm().modules()[m].key.parse_key(&ev.key)?))
                        })
                    }
                    None => None,
                };
                if let Some((m, k)) = target {
                    self.journal_instance(m, k);
                }
                let journaled = target.is_some() && self.journal.is_some();
                tracing::info!(module = %ev.module, key = %ev.key, state = %ev.state, hold = ?hold, changed = change.is_some(), "control event");
                Reply::ok(json!({
                    "module": ev.module,
                    "key": ev.key,
                    "from": from.ok(),
                    "state": ev.state,
                    "changed": change.is_some(),
                    "hold_s": hold,
                    "journaled": journaled,
                    "rules": {
                        "added": delta.added.len(),
                        "modified": delta.modified.len(),
                        "removed": delta.removed.len(),
                    },
                }))
            }
        }
    }

    fn state(&self, module: Option<String>, key: Option<String>) -> Reply {
        match (module, key) {
            (Some(m), Some(k)) => match self.engine.state(&m, &k) {
                Ok(s) => Reply::ok(json!({"module": m, "key": k, "state": s})),
                Err(e) => Reply::error(e.to_string()),
            },
            (module, None) => {
                let now = crate::io::now_ns();
                let list: Vec<_> = self
                    .engine
                    .instances(now)
                    .into_iter()
                    .filter(|i| module.as_ref().is_none_or(|m| &i.module == m))
                    .collect();
                let modules: Vec<Value> = self
                    .engine
                    .fsm()
                    .modules()
                    .iter()
                    .map(|d| json!({"name": d.name, "states": d.states, "initial": d.initial}))
                    .collect();
                Reply::ok(json!({"modules": modules, "instances": list}))
            }
            (None, Some(_)) => Reply::error("a key needs a module (-e MODULE)"),
        }
    }

    fn policy_json(&self) -> Value {
        let rules: Vec<Value> = self
            .engine
            .rules()
            .iter()
            .map(|r| {
                json!({
                    "table": r.table,
                    "priority": r.priority,
                    "match": r.pattern.to_string(),
                    "actions": format_actions(&r.actions),
                })
            })
            .collect();
        let meters: Vec<Value> = self
            .engine
            .meters()
            .iter()
            .map(|(id, rate)| json!({"id": id, "rate_pps": rate}))
            .collect();
        json!({"main": self.engine.main_text(), "rules": rules, "meters": meters})
    }

    fn events_json(&self, max: usize) -> Value {
        let skip = self.recent.len().saturating_sub(max);
        let events: Vec<Value> = self
            .recent
            .iter()
            .skip(skip)
            .map(|r| {
                let e = &r.event;
                json!({
                    "id": e.id,
                    "unix_ms": r.unix_ms,
                    "time": format_unix_ms(r.unix_ms),
                    "threshold": self.names.threshold_name(e.threshold),
                    "flow": self.names.flow_name(e.flow),
                    "key": self.names.key_text(e.flow, &e.key),
                    "agent": e.agent.to_string(),
                    "value": e.value,
                    "latency_us": r.latency_ns as f64 / 1e3,
                    "decide_us": e.detected_ns.saturating_sub(e.recv_ns) as f64 / 1e3,
                    "outcome": r.outcome,
                })
            })
            .collect();
        json!({"total": self.events_total, "events": events})
    }

    fn event_stats(&self) -> Value {
        let pct = |h: &hdrhistogram::Histogram<u64>| {
            json!({
                "count": h.len(),
                "p50_us": h.value_at_quantile(0.5) as f64 / 1e3,
                "p99_us": h.value_at_quantile(0.99) as f64 / 1e3,
                "max_us": h.max() as f64 / 1e3,
                "sum_us": h.mean() * h.len() as f64 / 1e3,
            })
        };
        json!({
            "delivered": self.events_total,
            "latency": pct(&self.delivery),
            "reaction_latency": pct(&self.reaction),
            "journal_errors": self.journal_errors,
            "fsm_changes": self.changes.total(),
            "rearms_sent": self.rearms_sent,
            "rearms_dropped": self.rearms_dropped,
        })
    }
}

/// Actions in ovs-ofctl's words.
pub fn format_actions(actions: &[policy::Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    actions
        .iter()
        .map(|a| match a {
            policy::Action::Meter(id) => format!("meter:{id}"),
            policy::Action::Set(f, v) => format!("set_field:{}->{}", v, f.name()),
            policy::Action::Output(o) => format!("output:{o}"),
            policy::Action::Group(b) => format!("group({} buckets)", b.len()),
            policy::Action::Goto(t) => format!("goto_table:{t}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}
