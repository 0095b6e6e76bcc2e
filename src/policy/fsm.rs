//! FSM modules (Resonance / Kinetic style): per-key state machines whose current state picks
//! the policy applied to that key's packets.
//!
//! The table stores only instances that are away from their initial state (or have a timer),
//! so ten thousand quiet hosts cost nothing. Events are validated in full before anything
//! changes: an error leaves the table exactly as it was. Timed transitions ("hold this state
//! for 30 s, then go back") are sans-IO: the caller passes `now` and polls
//! [`FsmTable::poll_timeout`] / [`FsmTable::expire`].

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ast::{ModuleId, Policy};
use super::field::Field;
use super::key::ModuleKey;
use super::parse::{parse_policy, ParseError, RESERVED};

/// Index of a state within its module's `states`.
pub type StateId = usize;

/// What an instance key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyKind {
    /// An IPv4 address (`10.0.0.1`).
    Ipv4Host,
    /// An IPv6 address (`2001:db8::1`).
    Ipv6Host,
    /// A MAC address (`00:00:00:00:00:01`).
    Mac,
    /// A switch port number.
    Port,
}

impl KeyKind {
    /// The packet field a module keyed this way dispatches on unless told otherwise.
    pub fn default_field(self) -> Field {
        match self {
            KeyKind::Ipv4Host => Field::Ipv4Src,
            KeyKind::Ipv6Host => Field::Ipv6Src,
            KeyKind::Mac => Field::EthSrc,
            KeyKind::Port => Field::InPort,
        }
    }

    /// True if `field` carries keys of this kind.
    pub fn fits(self, field: Field) -> bool {
        match self {
            KeyKind::Ipv4Host => matches!(field, Field::Ipv4Src | Field::Ipv4Dst),
            KeyKind::Ipv6Host => matches!(field, Field::Ipv6Src | Field::Ipv6Dst),
            KeyKind::Mac => matches!(field, Field::EthSrc | Field::EthDst),
            KeyKind::Port => field == Field::InPort,
        }
    }

    /// Parses a key written as text.
    pub fn parse_key(self, text: &str) -> Option<u128> {
        self.default_field().parse_value(text.trim()).ok()
    }

    /// Writes a key the way [`KeyKind::parse_key`] reads it.
    pub fn fmt_key(self, key: u128) -> String {
        struct Show(Field, u128);
        impl std::fmt::Display for Show {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt_value(self.1, f)
            }
        }
        Show(self.default_field(), key).to_string()
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Ipv4Host => "IPv4 address",
            KeyKind::Ipv6Host => "IPv6 address",
            KeyKind::Mac => "MAC address",
            KeyKind::Port => "port number",
        }
    }

    /// Parses `ipv4`, `ipv6`, `mac` or `port`.
    pub fn from_name(name: &str) -> Option<KeyKind> {
        Some(match name {
            "ipv4" => KeyKind::Ipv4Host,
            "ipv6" => KeyKind::Ipv6Host,
            "mac" => KeyKind::Mac,
            "port" => KeyKind::Port,
            _ => return None,
        })
    }
}

/// A module: its key, states, allowed transitions and the policy of each state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleDef {
    /// Name used in policies and events.
    pub name: String,
    /// The packet fields whose values select the instance.
    pub key: ModuleKey,
    /// State names.
    pub states: Vec<String>,
    /// State of every instance not otherwise set.
    pub initial: String,
    /// Allowed `(from, to)` transitions; `None` allows any.
    pub transitions: Option<Vec<(String, String)>>,
    /// The policy of each state, index-aligned with `states`; may not refer to modules.
    pub policies: Vec<Policy>,
}

impl ModuleDef {
    /// Builds a module keyed by one field of kind `key` (`field`, by default the kind's
    /// source field) whose state policies are given as text (`(state, policy)` pairs, one
    /// per state).
    pub fn from_text(
        name: &str,
        key: KeyKind,
        field: Option<Field>,
        initial: &str,
        transitions: Option<Vec<(String, String)>>,
        policies: &[(&str, &str)],
    ) -> Result<ModuleDef, FsmError> {
        let field = field.unwrap_or(key.default_field());
        if !key.fits(field) {
            return Err(FsmError::BadDef {
                module: name.to_string(),
                msg: format!("field {} cannot hold a {}", field, key.describe()),
            });
        }
        ModuleDef::with_key(
            name,
            ModuleKey::single(field),
            initial,
            transitions,
            policies,
        )
    }

    /// Builds a module keyed by `key` (one field or a tuple of fields) whose state policies
    /// are given as text.
    pub fn with_key(
        name: &str,
        key: ModuleKey,
        initial: &str,
        transitions: Option<Vec<(String, String)>>,
        policies: &[(&str, &str)],
    ) -> Result<ModuleDef, FsmError> {
        let mut states = Vec::with_capacity(policies.len());
        let mut parsed = Vec::with_capacity(policies.len());
        for (state, text) in policies {
            let p = parse_policy(text, &|_| None).map_err(|err| FsmError::Policy {
                module: name.to_string(),
                state: state.to_string(),
                err,
            })?;
            states.push(state.to_string());
            parsed.push(p);
        }
        let def = ModuleDef {
            name: name.to_string(),
            key,
            states,
            initial: initial.to_string(),
            transitions,
            policies: parsed,
        };
        def.validate()?;
        Ok(def)
    }

    /// Index of the initial state (0 if the definition is invalid).
    pub fn initial_id(&self) -> StateId {
        self.state_id(&self.initial).unwrap_or(0)
    }

    /// Index of a state by name.
    pub fn state_id(&self, name: &str) -> Option<StateId> {
        self.states.iter().position(|s| s == name)
    }

    /// Checks the definition is self-consistent.
    pub fn validate(&self) -> Result<(), FsmError> {
        let bad = |msg: String| FsmError::BadDef {
            module: self.name.clone(),
            msg,
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok || RESERVED.contains(&self.name.as_str()) {
            return Err(bad("name must be an identifier and not a keyword".into()));
        }
        if self.states.is_empty() {
            return Err(bad("no states".into()));
        }
        if self.policies.len() != self.states.len() {
            return Err(bad("one policy per state is required".into()));
        }
        for (i, s) in self.states.iter().enumerate() {
            if self.states[..i].contains(s) {
                return Err(bad(format!("state `{s}` declared twice")));
            }
        }
        if self.state_id(&self.initial).is_none() {
            return Err(bad(format!(
                "initial state `{}` is not a state",
                self.initial
            )));
        }
        for (from, to) in self.transitions.iter().flatten() {
            if self.state_id(from).is_none() || self.state_id(to).is_none() {
                return Err(bad(format!(
                    "transition {from} -> {to} names an unknown state"
                )));
            }
        }
        for p in &self.policies {
            let mut refers = false;
            p.for_each_module(&mut |_| refers = true);
            if refers {
                return Err(bad("state policies may not refer to modules".into()));
            }
        }
        Ok(())
    }
}

/// Why an event or definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FsmError {
    /// No module by that name.
    #[error("unknown module `{0}`")]
    UnknownModule(String),
    /// The module has no such state.
    #[error("module `{module}` has no state `{state}`")]
    UnknownState {
        /// Module name.
        module: String,
        /// Offending state.
        state: String,
    },
    /// The key does not parse as the module's key kind.
    #[error("`{key}` is not a valid {kind} for module `{module}`")]
    BadKey {
        /// Module name.
        module: String,
        /// Offending key text.
        key: String,
        /// Expected kind.
        kind: String,
    },
    /// The module does not allow this transition.
    #[error("module `{module}`: transition {from} -> {to} is not allowed")]
    Disallowed {
        /// Module name.
        module: String,
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },
    /// A module definition is inconsistent.
    #[error("module `{module}`: {msg}")]
    BadDef {
        /// Module name.
        module: String,
        /// What is wrong.
        msg: String,
    },
    /// A state's policy does not parse.
    #[error("module `{module}`, state `{state}`: {err}")]
    Policy {
        /// Module name.
        module: String,
        /// State whose policy failed.
        state: String,
        /// The parse error.
        err: ParseError,
    },
}

/// A request to move an instance to a state, optionally only for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Module name.
    pub module: String,
    /// Instance key as text (`10.0.0.1`).
    pub key: String,
    /// Target state.
    pub state: String,
    /// Stay in `state` this long (ns), then move to `then`.
    pub hold_ns: Option<u64>,
    /// State after the hold; the initial state if `None`.
    pub then: Option<String>,
}

/// An instance changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// Module.
    pub module: ModuleId,
    /// Instance key.
    pub key: u128,
    /// Previous state.
    pub from: StateId,
    /// New state.
    pub to: StateId,
}

/// Every instance of every module, plus pending timed transitions.
#[derive(Clone, Debug)]
pub struct FsmTable {
    defs: Vec<ModuleDef>,
    initial: Vec<StateId>,
    /// Per module, `allowed[from * n + to]`; `None` allows everything.
    allowed: Vec<Option<Vec<bool>>>,
    /// Per module, the instances not in the initial state.
    inst: Vec<HashMap<u128, StateId>>,
    timers: BTreeSet<(u64, ModuleId, u128)>,
    pending: HashMap<(ModuleId, u128), (u64, StateId)>,
}

/// Serializable picture of an [`FsmTable`]'s instances, for journaling across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsmSnapshot {
    /// Instances away from their initial state or with a pending timer.
    pub instances: Vec<SnapInstance>,
}

/// One instance in an [`FsmSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapInstance {
    /// Module name.
    pub module: String,
    /// Key as text.
    pub key: String,
    /// Current state.
    pub state: String,
    /// Time left before the timed transition, if any (clock-independent).
    pub remaining_ns: Option<u64>,
    /// Target of the timed transition.
    pub then: Option<String>,
}

impl FsmTable {
    /// A table with every instance of every module in its initial state.
    pub fn new(defs: Vec<ModuleDef>) -> Result<FsmTable, FsmError> {
        let mut allowed = Vec::with_capacity(defs.len());
        for (i, d) in defs.iter().enumerate() {
            d.validate()?;
            if defs[..i].iter().any(|e| e.name == d.name) {
                return Err(FsmError::BadDef {
                    module: d.name.clone(),
                    msg: "defined twice".into(),
                });
            }
            allowed.push(d.transitions.as_ref().map(|ts| {
                let n = d.states.len();
                let mut m = vec![false; n * n];
                for (from, to) in ts {
                    if let (Some(f), Some(t)) = (d.state_id(from), d.state_id(to)) {
                        m[f * n + t] = true;
                    }
                }
                m
            }));
        }
        Ok(FsmTable {
            initial: defs.iter().map(ModuleDef::initial_id).collect(),
            inst: defs.iter().map(|_| HashMap::new()).collect(),
            allowed,
            defs,
            timers: BTreeSet::new(),
            pending: HashMap::new(),
        })
    }

    /// The module definitions, indexed by [`ModuleId`].
    pub fn modules(&self) -> &[ModuleDef] {
        &self.defs
    }

    /// A module's id by name.
    pub fn module_id(&self, name: &str) -> Option<ModuleId> {
        self.defs.iter().position(|d| d.name == name)
    }

    /// Current state of an instance (initial if never set or out of range).
    #[inline]
    pub fn state_id(&self, module: ModuleId, key: u128) -> StateId {
        self.inst
            .get(module)
            .and_then(|m| m.get(&key).copied())
            .unwrap_or_else(|| self.initial.get(module).copied().unwrap_or(0))
    }

    /// Current state of an instance, by names.
    pub fn state(&self, module: &str, key: &str) -> Result<&str, FsmError> {
        let (m, k) = self.resolve(module, key)?;
        Ok(&self.defs[m].states[self.state_id(m, k)])
    }

    /// Name of a state.
    pub fn state_name(&self, module: ModuleId, state: StateId) -> &str {
        self.defs
            .get(module)
            .and_then(|d| d.states.get(state))
            .map_or("?", String::as_str)
    }

    /// Instances away from their initial state: `(module, key, state)`, in no set order.
    pub fn instances(&self) -> impl Iterator<Item = (ModuleId, u128, StateId)> + '_ {
        self.inst
            .iter()
            .enumerate()
            .flat_map(|(m, map)| map.iter().map(move |(&k, &s)| (m, k, s)))
    }

    fn resolve(&self, module: &str, key: &str) -> Result<(ModuleId, u128), FsmError> {
        let m = self
            .module_id(module)
            .ok_or_else(|| FsmError::UnknownModule(module.to_string()))?;
        let d = &self.defs[m];
        let k = d.key.parse_key(key).ok_or_else(|| FsmError::BadKey {
            module: module.to_string(),
            key: key.to_string(),
            kind: d.key.describe(),
        })?;
        Ok((m, k))
    }

    fn state_by_name(&self, m: ModuleId, state: &str) -> Result<StateId, FsmError> {
        self.defs[m]
            .state_id(state)
            .ok_or_else(|| FsmError::UnknownState {
                module: self.defs[m].name.clone(),
                state: state.to_string(),
            })
    }

    fn check_transition(&self, m: ModuleId, from: StateId, to: StateId) -> Result<(), FsmError> {
        let n = self.defs[m].states.len();
        let ok = from == to
            || self.allowed[m]
                .as_ref()
                .is_none_or(|a| a.get(from * n + to).copied().unwrap_or(false));
        if ok {
            Ok(())
        } else {
            Err(FsmError::Disallowed {
                module: self.defs[m].name.clone(),
                from: self.defs[m].states[from].clone(),
                to: self.defs[m].states[to].clone(),
            })
        }
    }

    /// Applies a named event. A new event replaces any pending timer of the instance;
    /// an event naming the current state changes nothing but that timer and returns `None`.
    pub fn apply(&mut self, ev: &Event, now_ns: u64) -> Result<Option<Change>, FsmError> {
        let (m, key) = self.resolve(&ev.module, &ev.key)?;
        let to = self.state_by_name(m, &ev.state)?;
        let hold = match ev.hold_ns {
            None => None,
            Some(d) => {
                let then = match &ev.then {
                    Some(t) => self.state_by_name(m, t)?,
                    None => self.initial[m],
                };
                Some((d, then))
            }
        };
        self.set(m, key, to, hold, now_ns)
    }

    /// Applies an event already resolved to ids (`hold` = duration in ns and the state after).
    pub fn set(
        &mut self,
        m: ModuleId,
        key: u128,
        to: StateId,
        hold: Option<(u64, StateId)>,
        now_ns: u64,
    ) -> Result<Option<Change>, FsmError> {
        let Some(def) = self.defs.get(m) else {
            return Err(FsmError::UnknownModule(format!("#{m}")));
        };
        let n = def.states.len();
        if to >= n || hold.is_some_and(|(_, t)| t >= n) {
            return Err(FsmError::UnknownState {
                module: def.name.clone(),
                state: format!("#{}", if to >= n { to } else { hold.map_or(0, |h| h.1) }),
            });
        }
        let from = self.state_id(m, key);
        self.check_transition(m, from, to)?;
        if let Some((_, then)) = hold {
            self.check_transition(m, to, then)?;
        }
        // Validated: from here on nothing can fail.
        if let Some((deadline, _)) = self.pending.remove(&(m, key)) {
            self.timers.remove(&(deadline, m, key));
        }
        if let Some((d, then)) = hold.filter(|&(_, then)| then != to) {
            let deadline = now_ns.saturating_add(d);
            self.pending.insert((m, key), (deadline, then));
            self.timers.insert((deadline, m, key));
        }
        Ok(self.put(m, key, from, to))
    }

    fn put(&mut self, m: ModuleId, key: u128, from: StateId, to: StateId) -> Option<Change> {
        if from == to {
            return None;
        }
        if to == self.initial[m] {
            self.inst[m].remove(&key);
        } else {
            self.inst[m].insert(key, to);
        }
        Some(Change {
            module: m,
            key,
            from,
            to,
        })
    }

    /// Deadline (ns) of the earliest pending timed transition.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|t| t.0)
    }

    /// Performs every timed transition due at `now_ns`, appending the changes to `out`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Change>) {
        while let Some(&(deadline, m, key)) = self.timers.first() {
            if deadline > now_ns {
                break;
            }
            self.timers.pop_first();
            if let Some((_, then)) = self.pending.remove(&(m, key)) {
                let from = self.state_id(m, key);
                out.extend(self.put(m, key, from, then));
            }
        }
    }

    /// The instances and timers, with timers relative to `now_ns`.
    pub fn snapshot(&self, now_ns: u64) -> FsmSnapshot {
        let mut keys: BTreeSet<(ModuleId, u128)> =
            self.instances().map(|(m, k, _)| (m, k)).collect();
        keys.extend(self.pending.keys().copied());
        let instances = keys
            .into_iter()
            .map(|(m, k)| {
                let d = &self.defs[m];
                let timer = self.pending.get(&(m, k));
                SnapInstance {
                    module: d.name.clone(),
                    key: d.key.fmt_key(k),
                    state: d.states[self.state_id(m, k)].clone(),
                    remaining_ns: timer.map(|t| t.0.saturating_sub(now_ns)),
                    then: timer.map(|t| d.states[t.1].clone()),
                }
            })
            .collect();
        FsmSnapshot { instances }
    }

    /// Replaces all instances and timers with a snapshot's (timers restart from `now_ns`).
    /// Returns the resulting state changes; on error nothing changes.
    pub fn restore(&mut self, snap: &FsmSnapshot, now_ns: u64) -> Result<Vec<Change>, FsmError> {
        let mut fresh = FsmTable::new(self.defs.clone())?;
        for i in &snap.instances {
            let (m, k) = fresh.resolve(&i.module, &i.key)?;
            let s = fresh.state_by_name(m, &i.state)?;
            let hold = match (i.remaining_ns, &i.then) {
                (Some(d), Some(t)) => Some((d, fresh.state_by_name(m, t)?)),
                _ => None,
            };
            // Journaled states were valid when written; bypass transition rules on replay.
            let from = fresh.state_id(m, k);
            let _ = fresh.put(m, k, from, s);
            if let Some((d, then)) = hold.filter(|&(_, t)| t != s) {
                let deadline = now_ns.saturating_add(d);
                fresh.pending.insert((m, k), (deadline, then));
                fresh.timers.insert((deadline, m, k));
            }
        }
        let mut changes = Vec::new();
        let mut keys: BTreeSet<(ModuleId, u128)> =
            self.instances().map(|(m, k, _)| (m, k)).collect();
        keys.extend(fresh.instances().map(|(m, k, _)| (m, k)));
        for (m, k) in keys {
            let (from, to) = (self.state_id(m, k), fresh.state_id(m, k));
            if from != to {
                changes.push(Change {
                    module: m,
                    key: k,
                    from,
                    to,
                });
            }
        }
        *self = fresh;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn auth() -> ModuleDef {
        ModuleDef::from_text(
            "auth",
            KeyKind::Ipv4Host,
            None,
            "authenticated",
            Some(vec![
                ("authenticated".into(), "clear".into()),
                ("clear".into(), "authenticated".into()),
                ("clear".into(), "quarantine".into()),
            ]),
            &[
                ("authenticated", "identity"),
                ("clear", "drop"),
                ("quarantine", "meter(10)"),
            ],
        )
        .unwrap()
    }

    fn table() -> FsmTable {
        let rl = ModuleDef::from_text(
            "rl",
            KeyKind::Mac,
            Some(Field::EthDst),
            "free",
            None,
            &[("free", "identity"), ("slow", "meter(100)")],
        )
        .unwrap();
        FsmTable::new(vec![auth(), rl]).unwrap()
    }

    fn ev(module: &str, key: &str, state: &str) -> Event {
        Event {
            module: module.into(),
            key: key.into(),
            state: state.into(),
            hold_ns: None,
            then: None,
        }
    }

    #[test]
    fn events_change_state_and_report_it() {
        let mut t = table();
        assert_eq!(t.state("auth", "10.0.0.1").unwrap(), "authenticated");
        let c = t
            .apply(&ev("auth", "10.0.0.1", "clear"), 0)
            .unwrap()
            .unwrap();
        assert_eq!((c.module, c.key, c.from, c.to), (0, 0x0a00_0001, 0, 1));
        assert_eq!(t.state("auth", "10.0.0.1").unwrap(), "clear");
        assert_eq!(t.apply(&ev("auth", "10.0.0.1", "clear"), 0).unwrap(), None);
        assert_eq!(t.instances().count(), 1);
        t.apply(&ev("auth", "10.0.0.1", "authenticated"), 0)
            .unwrap()
            .unwrap();
        assert_eq!(t.instances().count(), 0, "initial state is not stored");
        let c = t
            .apply(&ev("rl", "00:00:00:00:00:02", "slow"), 0)
            .unwrap()
            .unwrap();
        assert_eq!(c.key, 2);
    }

    #[test]
    fn errors_leave_state_unchanged() {
        let mut t = table();
        t.apply(&ev("auth", "10.0.0.1", "clear"), 0)
            .unwrap()
            .unwrap();
        let before = t.snapshot(0);
        let errs = [
            ev("nope", "10.0.0.1", "clear"),
            ev("auth", "10.0.0.300", "clear"),
            ev("auth", "zz", "clear"),
            ev("auth", "10.0.0.1", "bogus"),
            ev("rl", "10.0.0.1", "slow"),
        ];
        for e in &errs {
            assert!(t.apply(e, 0).is_err(), "{e:?}");
        }
        // authenticated -> quarantine is not in the transition list.
        let e = t
            .apply(&ev("auth", "10.0.0.2", "quarantine"), 0)
            .unwrap_err();
        assert!(matches!(e, FsmError::Disallowed { .. }), "{e}");
        // A hold whose return transition is disallowed is refused as a whole.
        let mut held = ev("auth", "10.0.0.1", "quarantine");
        held.hold_ns = Some(S);
        held.then = Some("authenticated".into());
        assert!(matches!(
            t.apply(&held, 0),
            Err(FsmError::Disallowed { .. })
        ));
        assert_eq!(t.snapshot(0), before);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn timed_transitions_expire_in_order() {
        let mut t = table();
        let mut e = ev("auth", "10.0.0.1", "clear");
        e.hold_ns = Some(30 * S);
        t.apply(&e, 5 * S).unwrap().unwrap();
        let mut e2 = ev("rl", "00:00:00:00:00:01", "slow");
        e2.hold_ns = Some(10 * S);
        t.apply(&e2, 5 * S).unwrap().unwrap();
        assert_eq!(t.poll_timeout(), Some(15 * S));
        let mut out = Vec::new();
        t.expire(15 * S - 1, &mut out);
        assert!(out.is_empty());
        t.expire(15 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].module, out[0].to), (1, 0));
        assert_eq!(t.poll_timeout(), Some(35 * S));
        t.expire(100 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.state("auth", "10.0.0.1").unwrap(), "authenticated");
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn new_event_replaces_timer() {
        let mut t = table();
        let mut e = ev("auth", "10.0.0.1", "clear");
        e.hold_ns = Some(S);
        t.apply(&e, 0).unwrap().unwrap();
        // Same state, no hold: stays cleared for good.
        assert_eq!(t.apply(&ev("auth", "10.0.0.1", "clear"), 0).unwrap(), None);
        assert_eq!(t.poll_timeout(), None);
        let mut out = Vec::new();
        t.expire(10 * S, &mut out);
        assert!(out.is_empty());
        // Hold with an explicit next state.
        e.then = Some("quarantine".into());
        e.hold_ns = Some(2 * S);
        assert_eq!(t.apply(&e, 10 * S).unwrap(), None);
        t.expire(12 * S, &mut out);
        assert_eq!(t.state("auth", "10.0.0.1").unwrap(), "quarantine");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn snapshot_restore_round_trips_through_json() {
        let mut t = table();
        let mut e = ev("auth", "10.0.0.1", "clear");
        e.hold_ns = Some(10 * S);
        t.apply(&e, 0).unwrap().unwrap();
        t.apply(&ev("rl", "00:00:00:00:00:09", "slow"), 0)
            .unwrap()
            .unwrap();
        let json = serde_json::to_string(&t.snapshot(4 * S)).unwrap();
        let snap: FsmSnapshot = serde_json::from_str(&json).unwrap();
        let mut u = table();
        let changes = u.restore(&snap, 100 * S).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(u.state("auth", "10.0.0.1").unwrap(), "clear");
        assert_eq!(u.state("rl", "00:00:00:00:00:09").unwrap(), "slow");
        assert_eq!(u.poll_timeout(), Some(106 * S));
        // A bad snapshot changes nothing.
        let mut bad = snap.clone();
        bad.instances[0].state = "nope".into();
        assert!(u.restore(&bad, 0).is_err());
        assert_eq!(u.state("auth", "10.0.0.1").unwrap(), "clear");
    }

    #[test]
    fn definitions_are_validated() {
        let mk = |init: &str, field| {
            ModuleDef::from_text(
                "m",
                KeyKind::Ipv4Host,
                field,
                init,
                None,
                &[("a", "identity"), ("b", "drop")],
            )
        };
        assert!(mk("a", None).is_ok());
        assert!(mk("c", None).is_err());
        assert!(mk("a", Some(Field::EthSrc)).is_err());
        assert!(mk("a", Some(Field::Ipv4Dst)).is_ok());
        let e = ModuleDef::from_text("m", KeyKind::Mac, None, "a", None, &[("a", "fwd(")]);
        assert!(matches!(e, Err(FsmError::Policy { .. })));
        let e = ModuleDef::from_text("drop", KeyKind::Mac, None, "a", None, &[("a", "drop")]);
        assert!(e.is_err());
        assert!(FsmTable::new(vec![auth(), auth()]).is_err());
    }
}
