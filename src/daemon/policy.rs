//! The policy thread: the single writer of FSM state. It takes threshold events from the
//! ingest workers and [`PolicyCommand`]s from the control thread, runs reactions, journals
//! every state change, and hands rule deltas to the OpenFlow side. It answers commands with
//! typed values; the control thread turns them into replies.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalError};
use crate::policy::engine::{
    InstanceView, PolicyConfigError, PolicyEngine, ReactionOutcome, Violation,
};
use crate::policy::fsm::{Change, FsmError, FsmSnapshot};
use crate::policy::ModuleId;
use crate::policy::{self, Delta, Rule};
use crate::timing::latency_histogram;

use super::changes::{Cause, ChangeLog, RecentChanges};
use super::event_log::{EventSummary, Summary};
use super::ingest::{Event, Rearm};
use super::names::Names;
use crate::flow::key::FlowKey;
use crate::flow::ThresholdId;

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

/// Why the policy thread could not start from its journal.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStartError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the journaled FSM state does not fit the policy: {0}")]
    Restore(#[from] PolicyConfigError),
}

/// What the control thread may ask the policy thread; each command carries the bounded
/// channel its typed answer goes to.
pub enum PolicyCommand {
    /// An operator's event: move an instance to a state (journaled before the answer).
    Event {
        event: policy::Event,
        reply: Sender<Result<EventApplied, FsmError>>,
    },
    /// One instance's state.
    StateOf {
        module: String,
        key: String,
        reply: Sender<Result<String, FsmError>>,
    },
    /// The modules, and every instance away from its initial state (of `module` only, if
    /// given).
    Instances {
        module: Option<String>,
        reply: Sender<Instances>,
    },
    /// The last `max` threshold events (of the key whose text is `key` only, if given).
    Events {
        max: usize,
        key: Option<String>,
        reply: Sender<RecentEvents>,
    },
    /// The last `max` FSM changes.
    Changes {
        max: usize,
        reply: Sender<RecentChanges>,
    },
    /// The composed policy and its compiled rules and meters.
    Policy { reply: Sender<PolicyView> },
    /// The configured assertions that do not hold.
    Check { reply: Sender<Vec<Violation>> },
    /// Event counters and latencies, for `stats`.
    Stats { reply: Sender<PolicyStats> },
}

/// What an operator's event did.
#[derive(Clone, Debug)]
pub struct EventApplied {
    /// The instance's state before (absent if the module or key did not resolve).
    pub from: Option<String>,
    pub changed: bool,
    /// The instance's new state or renewed hold is in the journal.
    pub journaled: bool,
    pub rules_added: usize,
    pub rules_modified: usize,
    pub rules_removed: usize,
}

/// A module as listed by `state`.
#[derive(Clone, Debug)]
pub struct ModuleSummary {
    pub name: String,
    pub states: Vec<String>,
    pub initial: String,
}

/// The answer to [`PolicyCommand::Instances`].
#[derive(Clone, Debug)]
pub struct Instances {
    pub modules: Vec<ModuleSummary>,
    pub instances: Vec<InstanceView>,
}

/// A threshold event as the policy thread took it.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub event: Event,
    pub unix_ms: u64,
    /// recvmmsg return → taken by the policy thread.
    pub latency_ns: u64,
    /// What the reactions did, in words.
    pub outcome: String,
}

/// The answer to [`PolicyCommand::Events`]: the newest last.
#[derive(Clone, Debug)]
pub struct RecentEvents {
    /// Events taken since start.
    pub total: u64,
    pub events: Vec<EventRecord>,
}

/// The answer to [`PolicyCommand::Policy`].
#[derive(Clone, Debug)]
pub struct PolicyView {
    pub main: String,
    pub rules: Vec<Rule>,
    pub meters: Vec<(u32, u32)>,
}

/// A latency histogram's summary, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl LatencySummary {
    fn of(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

/// The answer to [`PolicyCommand::Stats`].
#[derive(Clone, Copy, Debug)]
pub struct PolicyStats {
    /// Threshold events taken.
    pub delivered: u64,
    /// recvmmsg return → event taken by this thread.
    pub delivery: LatencySummary,
    /// recvmmsg return → the reaction's delta handed to the OpenFlow side.
    pub reaction: LatencySummary,
    pub journal_errors: u64,
    pub fsm_changes: u64,
    pub rearms_sent: u64,
    pub rearms_dropped: u64,
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

/// Distinct keys the per-second event summary tells apart.
const SUMMARY_KEYS: usize = 4096;

/// What the per-second summary groups events by: threshold, flow, key.
type EventKey = (ThresholdId, u16, FlowKey);

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
    /// Events of the current second, for the info-level summary line.
    summary: EventSummary<EventKey>,
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
    ) -> Result<PolicyThread, PolicyStartError> {
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
            summary: EventSummary::new(1_000_000_000, SUMMARY_KEYS),
        };
        t.compact_if_due(true);
        for v in t.engine.check() {
            tracing::error!(assertion = %v.assertion, key = %v.key, packet = %v.packet, "policy assertion violated at load");
        }
        Ok(t)
    }

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

    /// Starts the thread; it runs until `stop` is set.
    pub fn spawn(
        self,
        events: Receiver<Event>,
        commands: Receiver<PolicyCommand>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("reflex-policy".into())
            .spawn(move || self.run(events, commands, stop))
    }

    fn run(
        mut self,
        events: Receiver<Event>,
        commands: Receiver<PolicyCommand>,
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
                recv(commands) -> c => if let Ok(c) = c { self.on_command(c) },
                default(wait) => {}
            }
            let now = crate::io::now_ns();
            if let Some(summary) = self.summary.poll(now) {
                self.log_summary(&summary);
            }
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
        self.summary
            .note((event.threshold, event.flow, event.key), event.value, taken);
        tracing::debug!(
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

    /// The info-level line for a second of threshold events.
    fn log_summary(&self, s: &Summary<EventKey>) {
        let names = &self.names;
        let (threshold, key, key_events, value) = match &s.top {
            Some(((t, flow, key), n, v)) => (
                names.threshold_name(*t).to_owned(),
                names.key_text(*flow, key),
                *n,
                *v,
            ),
            None => (String::new(), String::new(), 0, 0.0),
        };
        tracing::info!(
            events = s.events,
            keys = s.keys,
            keys_capped = s.keys_capped,
            top_threshold = %threshold,
            top_key = %key,
            top_key_events = key_events,
            top_value = value,
            "threshold events in the last second"
        );
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

    /// Answers one command; a command whose asker gave up is answered into the void.
    fn on_command(&mut self, command: PolicyCommand) {
        match command {
            PolicyCommand::Event { event, reply } => {
                let _ = reply.send(self.control_event(&event));
            }
            PolicyCommand::StateOf { module, key, reply } => {
                let state = self.engine.state(&module, &key).map(str::to_owned);
                let _ = reply.send(state);
            }
            PolicyCommand::Instances { module, reply } => {
                let _ = reply.send(self.instances(module.as_deref()));
            }
            PolicyCommand::Events { max, key, reply } => {
                let names = &self.names;
                let of_key = |r: &&EventRecord| {
                    key.as_deref()
                        .is_none_or(|k| names.key_text(r.event.flow, &r.event.key) == k)
                };
                let matching = self.recent.iter().filter(of_key).count();
                let skip = matching.saturating_sub(max);
                let _ = reply.send(RecentEvents {
                    total: self.events_total,
                    events: self
                        .recent
                        .iter()
                        .filter(of_key)
                        .skip(skip)
                        .cloned()
                        .collect(),
                });
            }
            PolicyCommand::Changes { max, reply } => {
                let _ = reply.send(self.changes.recent(max));
            }
            PolicyCommand::Policy { reply } => {
                let _ = reply.send(PolicyView {
                    main: self.engine.main_text(),
                    rules: self.engine.rules(),
                    meters: self.engine.meters(),
                });
            }
            PolicyCommand::Check { reply } => {
                let _ = reply.send(self.engine.check());
            }
            PolicyCommand::Stats { reply } => {
                let _ = reply.send(PolicyStats {
                    delivered: self.events_total,
                    delivery: LatencySummary::of(&self.delivery),
                    reaction: LatencySummary::of(&self.reaction),
                    journal_errors: self.journal_errors,
                    fsm_changes: self.changes.total(),
                    rearms_sent: self.rearms_sent,
                    rearms_dropped: self.rearms_dropped,
                });
            }
        }
    }

    fn control_event(&mut self, ev: &policy::Event) -> Result<EventApplied, FsmError> {
        let now = crate::io::now_ns();
        let from = self.engine.state(&ev.module, &ev.key).map(str::to_owned);
        let (change, delta) = self.engine.apply_event(ev, now)?;
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
            None if ev.hold_ns.is_some() => self
                .engine
                .fsm()
                .module_id(&ev.module)
                .and_then(|m| Some((m, self.engine.fsm().modules()[m].key.parse_key(&ev.key)?))),
            None => None,
        };
        if let Some((m, k)) = target {
            self.journal_instance(m, k);
        }
        Ok(EventApplied {
            from: from.ok(),
            changed: change.is_some(),
            journaled: target.is_some() && self.journal.is_some(),
            rules_added: delta.added.len(),
            rules_modified: delta.modified.len(),
            rules_removed: delta.removed.len(),
        })
    }

    fn instances(&self, module: Option<&str>) -> Instances {
        let now = crate::io::now_ns();
        let instances = self
            .engine
            .instances(now)
            .into_iter()
            .filter(|i| module.is_none_or(|m| i.module == m))
            .collect();
        let modules = self
            .engine
            .fsm()
            .modules()
            .iter()
            .map(|d| ModuleSummary {
                name: d.name.clone(),
                states: d.states.clone(),
                initial: d.initial.clone(),
            })
            .collect();
        Instances { modules, instances }
    }
}
