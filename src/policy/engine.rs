//! The policy engine as the policy thread runs it: FSM modules, the compiled pipeline,
//! threshold reactions and assertions, built from a [`PolicySpec`]. Sans-IO: every
//! operation takes `now_ns` and returns the state change and the rule delta it caused.
//!
//! Reactions take a crossing as it left the detector: the threshold's id and the whole
//! flow key. Each reaction's [`Projection`] of that flow's key onto its module's key is
//! fixed (and checked) when the engine is built, and re-arms lift module keys back through
//! the same projection; keys become text only for people (dry runs, listings, journal).
//!
//! The policy thread is the single writer of this state; everything else reaches it through
//! channels.

use std::collections::BTreeSet;

use crate::flow::key::FlowKey;
use crate::flow::ThresholdId;

use super::compile::{run_pipeline, Compiler, Delta, Rule};
use super::field::{Field, Match, Packet};
use super::fsm::{Change, Event, FsmError, FsmSnapshot, FsmTable, KeyKind, ModuleDef, StateId};
use super::key::{field_of_flow_key, ModuleKey, Projection};
use super::spec::{ModuleSpec, PolicySpec};
use super::{parse_policy, ModuleId, Policy};

/// Why a configuration's policy part cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyConfigError {
    #[error("module `{module}`: {message}")]
    Module { module: String, message: String },
    #[error(transparent)]
    Fsm(#[from] FsmError),
    #[error("policy.main: {0}")]
    Main(super::ParseError),
    #[error("policy: {0}")]
    Compile(#[from] super::CompileError),
    #[error("reaction on `{threshold}`: {message}")]
    Reaction { threshold: String, message: String },
    #[error("assertion `{name}`: {message}")]
    Assertion { name: String, message: String },
}

struct Reaction {
    threshold: ThresholdId,
    /// The threshold's flow key onto the module's key.
    projection: Projection,
    module: ModuleId,
    state: StateId,
    hold_ns: Option<u64>,
    then: Option<StateId>,
    whitelist: Vec<Match>,
    dry_run: bool,
}

struct Assertion {
    name: String,
    module: ModuleId,
    state: StateId,
    forwards: bool,
}

/// What a reaction did for one threshold event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReactionOutcome {
    /// The instance changed state.
    Applied(Change),
    /// The instance already was in that state (its hold, if any, was renewed).
    Unchanged,
    /// The key is whitelisted: nothing done.
    Whitelisted,
    /// Dry run: what would have been done.
    DryRun {
        module: String,
        key: String,
        state: String,
    },
    /// The key does not fit the module (a crossing key shorter than its flow's, or a
    /// transition the module refuses).
    BadKey(String),
}

/// An assertion that does not hold, with a packet showing it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub assertion: String,
    pub module: String,
    pub key: String,
    pub packet: String,
    pub outputs: Vec<String>,
}

/// One instance for listings.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InstanceView {
    pub module: String,
    pub key: String,
    pub state: String,
    pub remaining_s: Option<f64>,
    pub then: Option<String>,
}

/// FSMs + compiled pipeline + reactions + assertions.
pub struct PolicyEngine {
    fsm: FsmTable,
    main: Policy,
    compiler: Compiler,
    reactions: Vec<Reaction>,
    assertions: Vec<Assertion>,
}

/// The key of a module as stated: a kind with an optional field, or a list of fields
/// (sFlow-RT names such as `ipdestination`, or policy names such as `ip_dst`).
fn module_key(m: &ModuleSpec) -> Result<ModuleKey, String> {
    let field = match &m.field {
        Some(f) => Some(Field::from_name(f).ok_or_else(|| format!("unknown field `{f}`"))?),
        None => None,
    };
    if let Some(kind) = KeyKind::from_name(m.key.trim()) {
        let field = field.unwrap_or(kind.default_field());
        if !kind.fits(field) {
            let what = ModuleKey::single(kind.default_field()).describe();
            return Err(format!("field {field} cannot hold a {what}"));
        }
        return Ok(ModuleKey::single(field));
    }
    let fields = m
        .key
        .split(',')
        .map(str::trim)
        .map(|name| {
            if let Some(f) = Field::from_name(name) {
                return Ok(f);
            }
            match crate::flow::field::KeyField::from_name(name) {
                Some(k) => field_of_flow_key(k).ok_or_else(|| {
                    format!(
                        "key `{}`: `{name}` cannot key a module, because an OpenFlow 1.3 \
                         switch cannot match it; it can still be a flow key (and filter) \
                         for detection",
                        m.key
                    )
                }),
                None => Err(format!(
                    "key `{}` is not ipv4, ipv6, mac or port, nor a comma list of fields \
                     (`{name}` is not a field)",
                    m.key
                )),
            }
        })
        .collect::<Result<Vec<Field>, String>>()?;
    if m.field.is_some() {
        return Err(
            "`field` goes with a key kind (ipv4, ipv6, mac, port), not a field list".into(),
        );
    }
    ModuleKey::tuple(fields)
}

impl PolicyEngine {
    /// Builds modules, the main policy, reactions (each bound to the projection of its
    /// threshold's flow key onto its module's key) and assertions from `spec`.
    pub fn new(spec: &PolicySpec) -> Result<PolicyEngine, PolicyConfigError> {
        let mut defs = Vec::new();
        for m in &spec.modules {
            let err = |message: String| PolicyConfigError::Module {
                module: m.name.clone(),
                message,
            };
            let key = module_key(m).map_err(err)?;
            let states: Vec<(&str, &str)> = m
                .states
                .iter()
                .map(|(s, p)| (s.as_str(), p.as_str()))
                .collect();
            defs.push(ModuleDef::with_key(
                &m.name,
                key,
                &m.initial,
                m.transitions.clone(),
                &states,
            )?);
        }
        let fsm = FsmTable::new(defs)?;
        let main = parse_policy(&spec.main, &|name| fsm.module_id(name))
            .map_err(PolicyConfigError::Main)?;
        let compiler = Compiler::new(&main, &fsm)?;
        let mut reactions = Vec::new();
        for r in &spec.reactions {
            let err = |message: String| PolicyConfigError::Reaction {
                threshold: r.threshold.clone(),
                message,
            };
            let (threshold, flow_fields) = spec
                .thresholds
                .iter()
                .enumerate()
                .find(|(_, t)| t.name == r.threshold)
                .map(|(i, t)| (ThresholdId(i as u16), &t.fields))
                .ok_or_else(|| err("no such threshold".into()))?;
            let module = fsm
                .module_id(&r.module)
                .ok_or_else(|| err(format!("unknown module `{}`", r.module)))?;
            let def = &fsm.modules()[module];
            let projection = Projection::new(flow_fields, &def.key)
                .map_err(|e| err(format!("module `{}`: {e}", def.name)))?;
            let state_of = |s: &str| {
                def.state_id(s)
                    .ok_or_else(|| err(format!("module `{}` has no state `{s}`", def.name)))
            };
            let state = state_of(&r.state)?;
            let then = r.then.as_deref().map(state_of).transpose()?;
            let whitelist = r
                .whitelist
                .iter()
                .map(|w| {
                    def.key
                        .parse_match(w)
                        .map_err(|e| err(format!("whitelist `{w}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            reactions.push(Reaction {
                threshold,
                projection,
                module,
                state,
                hold_ns: r.hold_s.map(|h| (h * 1e9) as u64),
                then,
                whitelist,
                dry_run: r.dry_run,
            });
        }
        let mut assertions = Vec::new();
        for a in &spec.assertions {
            let err = |message: String| PolicyConfigError::Assertion {
                name: a.name.clone(),
                message,
            };
            let module = fsm
                .module_id(&a.module)
                .ok_or_else(|| err(format!("unknown module `{}`", a.module)))?;
            let state = fsm.modules()[module]
                .state_id(&a.state)
                .ok_or_else(|| err(format!("no state `{}`", a.state)))?;
            assertions.push(Assertion {
                name: a.name.clone(),
                module,
                state,
                forwards: a.forwards,
            });
        }
        Ok(PolicyEngine {
            fsm,
            main,
            compiler,
            reactions,
            assertions,
        })
    }

    /// Applies an operator's event; on success returns the change (if any) and its delta.
    pub fn apply_event(
        &mut self,
        event: &Event,
        now_ns: u64,
    ) -> Result<(Option<Change>, Delta), FsmError> {
        let change = self.fsm.apply(event, now_ns)?;
        let delta = match &change {
            Some(c) => self.recompile(c),
            None => Delta::default(),
        };
        Ok((change, delta))
    }

    /// Re-arms `change` calls for: for every reaction it undid (the instance left the
    /// state a reaction put it in), the threshold and the flow key the instance's key lifts
    /// back to, so the detector watches that key afresh. A reaction whose module key does
    /// not hold every field of its flow's key names no single flow key and re-arms nothing.
    pub fn rearms(&self, change: &Change) -> Vec<(ThresholdId, FlowKey)> {
        let mut out: Vec<(ThresholdId, FlowKey)> = Vec::new();
        for r in &self.reactions {
            if r.module != change.module || change.from != r.state || change.to == r.state {
                continue;
            }
            if let Some(key) = r.projection.lift(change.key) {
                if !out.contains(&(r.threshold, key)) {
                    out.push((r.threshold, key));
                }
            }
        }
        out
    }

    /// Runs the reactions bound to `threshold` on the crossing's flow `key`, each on the
    /// key's projection onto its module's key.
    pub fn react(
        &mut self,
        threshold: ThresholdId,
        flow_key: &FlowKey,
        now_ns: u64,
    ) -> Vec<(ReactionOutcome, Delta)> {
        let mut out = Vec::new();
        for i in 0..self.reactions.len() {
            let r = &self.reactions[i];
            if r.threshold != threshold {
                continue;
            }
            let def = &self.fsm.modules()[r.module];
            let Some(key) = r.projection.project(flow_key) else {
                out.push((
                    ReactionOutcome::BadKey(format!("{flow_key:?}")),
                    Delta::default(),
                ));
                continue;
            };
            if r.whitelist.iter().any(|w| w.matches(key)) {
                out.push((ReactionOutcome::Whitelisted, Delta::default()));
                continue;
            }
            if r.dry_run {
                out.push((
                    ReactionOutcome::DryRun {
                        module: def.name.clone(),
                        key: def.key.fmt_key(key),
                        state: def.states[r.state].clone(),
                    },
                    Delta::default(),
                ));
                continue;
            }
            let before = self.fsm.state_id(r.module, key);
            let hold = r.hold_ns.map(|h| (h, r.then.unwrap_or(before)));
            let (module, state) = (r.module, r.state);
            match self.fsm.set(module, key, state, hold, now_ns) {
                Ok(Some(change)) => {
                    let delta = self.recompile(&change);
                    out.push((ReactionOutcome::Applied(change), delta));
                }
                Ok(None) => out.push((ReactionOutcome::Unchanged, Delta::default())),
                Err(e) => out.push((ReactionOutcome::BadKey(e.to_string()), Delta::default())),
            }
        }
        out
    }

    /// Performs timed transitions due at `now_ns`.
    pub fn expire(&mut self, now_ns: u64) -> Vec<(Change, Delta)> {
        let mut changes = Vec::new();
        self.fsm.expire(now_ns, &mut changes);
        changes
            .into_iter()
            .map(|c| {
                let d = self.recompile(&c);
                (c, d)
            })
            .collect()
    }

    fn recompile(&mut self, change: &Change) -> Delta {
        match self.compiler.on_change(change) {
            Ok(d) => d,
            Err(e) => {
                // Cannot happen for a configuration that compiled at load; rebuild to stay
                // exact rather than keep a stale table.
                tracing::error!(error = %e, "incremental compile failed; recompiling in full");
                let old = self.compiler.rules();
                match Compiler::new(&self.main, &self.fsm) {
                    Ok(c) => {
                        self.compiler = c;
                        super::diff(&old, &self.compiler.rules())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "full compile failed; keeping the old table");
                        Delta::default()
                    }
                }
            }
        }
    }

    /// Deadline of the next timed transition.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.fsm.poll_timeout()
    }

    /// True if the main policy or a module state hands packets to `learn` (reactive mode).
    pub fn uses_learn(&self) -> bool {
        self.main.uses_learn()
            || self
                .fsm
                .modules()
                .iter()
                .any(|m| m.policies.iter().any(Policy::uses_learn))
    }

    /// Tables the compiled pipeline uses (0 up to this, exclusive).
    pub fn table_count(&self) -> usize {
        self.compiler.table_count()
    }

    /// The whole compiled pipeline.
    pub fn rules(&self) -> Vec<Rule> {
        self.compiler.rules()
    }

    /// Meters the rules use: (id, packets per second).
    pub fn meters(&self) -> Vec<(u32, u32)> {
        self.compiler.meters()
    }

    /// The main policy as text.
    pub fn main_text(&self) -> String {
        let defs = self.fsm.modules();
        let names = |m: ModuleId| {
            defs.get(m)
                .map_or_else(|| format!("#{m}"), |d| d.name.clone())
        };
        let text = self.main.display(&names).to_string();
        text
    }

    /// The FSM table (read-only).
    pub fn fsm(&self) -> &FsmTable {
        &self.fsm
    }

    /// Every instance away from its initial state, with pending holds.
    pub fn instances(&self, now_ns: u64) -> Vec<InstanceView> {
        self.fsm
            .snapshot(now_ns)
            .instances
            .into_iter()
            .map(|i| InstanceView {
                module: i.module,
                key: i.key,
                state: i.state,
                remaining_s: i.remaining_ns.map(|r| r as f64 / 1e9),
                then: i.then,
            })
            .collect()
    }

    /// The state of one instance.
    pub fn state(&self, module: &str, key: &str) -> Result<&str, FsmError> {
        self.fsm.state(module, key)
    }

    /// The instances and timers, for the journal.
    pub fn snapshot(&self, now_ns: u64) -> FsmSnapshot {
        self.fsm.snapshot(now_ns)
    }

    /// Replaces all instances with `snap` and recompiles; returns the full-table delta.
    pub fn restore(&mut self, snap: &FsmSnapshot, now_ns: u64) -> Result<Delta, PolicyConfigError> {
        let old = self.compiler.rules();
        self.fsm.restore(snap, now_ns)?;
        self.compiler = Compiler::new(&self.main, &self.fsm)?;
        Ok(super::diff(&old, &self.compiler.rules()))
    }

    /// Checks every assertion on the compiled tables: for each instance in the asserted
    /// state (and a fresh key, when the state is the initial one) a set of probe packets
    /// is run through the pipeline.
    pub fn check(&self) -> Vec<Violation> {
        let rules = self.compiler.rules();
        let rate = |id| self.compiler.meter_rate(id);
        let mut violations = Vec::new();
        for a in &self.assertions {
            let def = &self.fsm.modules()[a.module];
            let mut keys: BTreeSet<u128> = self
                .fsm
                .instances()
                .filter(|&(m, _, s)| m == a.module && s == a.state)
                .map(|(_, k, _)| k)
                .take(1000)
                .collect();
            if a.state == def.initial_id() {
                keys.insert(fresh_key(&def.key, &self.fsm, a.module));
            }
            'keys: for key in keys {
                for pkt in probes(&def.key, key, &rules) {
                    let outs: Vec<String> = run_pipeline(&rules, &rate, &pkt)
                        .into_iter()
                        .filter_map(|p| p.out.map(|o| o.to_string()))
                        .collect();
                    if outs.is_empty() == a.forwards {
                        violations.push(Violation {
                            assertion: a.name.clone(),
                            module: def.name.clone(),
                            key: def.key.fmt_key(key),
                            packet: describe(&pkt),
                            outputs: outs,
                        });
                        continue 'keys;
                    }
                }
            }
        }
        violations
    }
}

/// A key not used by any instance of module `m`: documentation-range values, the last
/// field counting up.
fn fresh_key(key: &ModuleKey, fsm: &FsmTable, m: ModuleId) -> u128 {
    let base_of = |f: Field| -> u128 {
        match f {
            Field::Ipv4Src | Field::Ipv4Dst => 0xC633_6477, // 198.51.100.119
            Field::Ipv6Src | Field::Ipv6Dst => 0x2001_0db8_u128 << 96 | 0x77,
            Field::EthSrc | Field::EthDst => 0x0200_0000_0077,
            Field::InPort => 0xfff0,
            _ => 0x77,
        }
    };
    let last = key.fields().len().saturating_sub(1);
    let at = |i: u128| {
        key.pack(key.fields().iter().enumerate().map(|(j, &f)| {
            if j == last {
                base_of(f) + i
            } else {
                base_of(f)
            }
        }))
    };
    (0..1000u128)
        .map(at)
        .find(|k| fsm.state_id(m, *k) == fsm.modules()[m].initial_id())
        .unwrap_or(at(0))
}

/// Probe packets for a key: the shapes of traffic a host sends (ICMP, TCP, UDP, over the
/// ports and addresses the rules mention).
fn probes(module_key: &ModuleKey, key: u128, rules: &[Rule]) -> Vec<Packet> {
    let mut in_ports: BTreeSet<u128> = [1u128, 2, 3].into_iter().collect();
    let mut dsts: BTreeSet<u128> = [0x0a00_0002u128].into_iter().collect();
    for r in rules {
        for (f, m) in r.pattern.tests() {
            match f {
                Field::InPort if m.mask != 0 => {
                    in_ports.insert(m.value);
                }
                Field::Ipv4Dst if m.mask != 0 => {
                    dsts.insert(m.value);
                }
                _ => {}
            }
        }
    }
    let v6 = module_key
        .fields()
        .iter()
        .any(|f| matches!(f, Field::Ipv6Src | Field::Ipv6Dst));
    let mut out = Vec::new();
    for &port in in_ports.iter().take(16) {
        for &dst in dsts.iter().take(16) {
            for (proto, l4) in [
                (1u128, None),
                (6, Some((Field::TcpDst, 80u128))),
                (17, Some((Field::UdpDst, 53))),
            ] {
                let mut p = Packet::new(1)
                    .with(Field::InPort, port)
                    .with(Field::EthSrc, 0x0000_0000_0001)
                    .with(Field::EthDst, 0x0000_0000_0002)
                    .with(Field::EthType, if v6 { 0x86dd } else { 0x0800 })
                    .with(Field::IpProto, if v6 && proto == 1 { 58 } else { proto });
                if !v6 {
                    p = p
                        .with(Field::Ipv4Src, 0x0a00_0001)
                        .with(Field::Ipv4Dst, dst);
                } else {
                    p = p.with(Field::Ipv6Src, 1).with(Field::Ipv6Dst, 2);
                }
                match l4 {
                    Some((f, v)) => p = p.with(f, v),
                    None => p = p.with(Field::IcmpType, 8),
                }
                // The instance key goes last so it wins over the defaults above.
                for (f, v) in module_key.values(key) {
                    p = p.with(f, v);
                }
                out.push(p);
            }
        }
    }
    out
}

struct Shown(Field, u128);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_value(self.1, f)
    }
}

fn describe(p: &Packet) -> String {
    let mut parts = Vec::new();
    for f in Field::ALL {
        if let Some(v) = p.get(f) {
            parts.push(format!("{}={}", f.name(), Shown(f, v)));
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::field::KeyField;
    use crate::policy::spec::{AssertionSpec, ReactionSpec, ThresholdKey};

    /// The classic experiment's policy part (examples/classic.toml: hosts start cleared).
    fn default_spec() -> PolicySpec {
        PolicySpec {
            modules: vec![ModuleSpec {
                name: "auth".into(),
                key: "ipv4".into(),
                field: None,
                initial: "clear".into(),
                transitions: None,
                states: vec![
                    ("authenticated".into(), "identity".into()),
                    (
                        "clear".into(),
                        "if_(match(eth_type=0x0800), drop, identity)".into(),
                    ),
                ],
            }],
            main: "auth >> normal".into(),
            thresholds: vec![ThresholdKey {
                name: "ddos".into(),
                fields: vec![KeyField::IpSource],
            }],
            reactions: vec![ReactionSpec {
                threshold: "ddos".into(),
                module: "auth".into(),
                state: "clear".into(),
                hold_s: None,
                then: None,
                whitelist: vec![],
                dry_run: false,
            }],
            assertions: vec![AssertionSpec {
                name: "cleared hosts are cut off".into(),
                module: "auth".into(),
                state: "clear".into(),
                forwards: false,
            }],
        }
    }

    fn engine() -> PolicyEngine {
        PolicyEngine::new(&default_spec()).unwrap()
    }

    const DDOS: ThresholdId = ThresholdId(0);

    /// A flow key of IPv4 addresses, in key order.
    fn ips(addrs: &[&str]) -> FlowKey {
        let mut key = FlowKey::EMPTY;
        for a in addrs {
            let a: std::net::Ipv4Addr = a.parse().unwrap();
            assert!(key.push(&a.octets()));
        }
        key
    }

    fn ev(key: &str, state: &str) -> Event {
        Event {
            module: "auth".into(),
            key: key.into(),
            state: state.into(),
            hold_ns: None,
            then: None,
        }
    }

    #[test]
    fn the_default_policy_compiles_and_holds_its_assertion() {
        let e = engine();
        assert!(e.check().is_empty(), "{:?}", e.check());
        assert!(!e.rules().is_empty());
        assert_eq!(e.main_text(), "(auth >> normal)");
    }

    #[test]
    fn auth_then_learn_is_reactive_and_keeps_the_assertion() {
        let mut spec = default_spec();
        spec.main = "auth >> learn".into();
        let mut e = PolicyEngine::new(&spec).unwrap();
        assert!(e.uses_learn() && !engine().uses_learn());
        assert_eq!(e.table_count(), 2);
        assert!(e.check().is_empty(), "{:?}", e.check());
        let _ = e.apply_event(&ev("10.0.0.1", "authenticated"), 0).unwrap();
        assert!(e.check().is_empty());
        // A cleared host's IPv4 never reaches learning; an authenticated one's does.
        let rate = |_| None;
        let ip = |h: u128| {
            Packet::new(1)
                .with(Field::EthType, 0x0800)
                .with(Field::Ipv4Src, 0x0a00_0000 | h)
        };
        let outs = |p: &Packet| -> Vec<_> {
            run_pipeline(&e.rules(), &rate, p)
                .into_iter()
                .filter_map(|q| q.out)
                .collect()
        };
        assert_eq!(outs(&ip(1)), vec![crate::policy::Out::Learn]);
        assert!(outs(&ip(2)).is_empty());
    }

    #[test]
    fn authenticating_a_host_adds_rules_and_keeps_the_assertion() {
        let mut e = engine();
        let (change, delta) = e.apply_event(&ev("10.0.0.1", "authenticated"), 0).unwrap();
        assert!(change.is_some());
        assert!(!delta.added.is_empty());
        assert_eq!(e.state("auth", "10.0.0.1").unwrap(), "authenticated");
        assert!(e.check().is_empty());
        // Nothing changes the second time.
        let (change, delta) = e.apply_event(&ev("10.0.0.1", "authenticated"), 1).unwrap();
        assert!(change.is_none() && delta.is_empty());
    }

    #[test]
    fn a_threshold_reaction_clears_the_source_and_removes_its_rules() {
        let mut e = engine();
        let (_, added) = e.apply_event(&ev("10.0.0.1", "authenticated"), 0).unwrap();
        let outcomes = e.react(DDOS, &ips(&["10.0.0.1"]), 5);
        assert_eq!(outcomes.len(), 1);
        assert!(matches!(outcomes[0].0, ReactionOutcome::Applied(_)));
        let removed = &outcomes[0].1.removed;
        assert_eq!(removed.len(), added.added.len());
        assert_eq!(e.state("auth", "10.0.0.1").unwrap(), "clear");
        // Other thresholds do nothing; keys shorter than the flow's are reported.
        assert!(e.react(ThresholdId(1), &ips(&["10.0.0.1"]), 6).is_empty());
        assert!(matches!(
            e.react(DDOS, &FlowKey::EMPTY, 7)[0].0,
            ReactionOutcome::BadKey(_)
        ));
    }

    /// The defect the typed crossing fixes: the text path took the flow key's first field,
    /// so a flow keyed `ipdestination,ipsource` cleared the victim, not the source.
    #[test]
    fn a_reaction_takes_the_module_field_wherever_the_flow_key_has_it() {
        let mut spec = default_spec();
        spec.thresholds[0].fields = vec![KeyField::IpDestination, KeyField::IpSource];
        let mut e = PolicyEngine::new(&spec).unwrap();
        for h in ["10.0.0.1", "10.0.0.2"] {
            let _ = e.apply_event(&ev(h, "authenticated"), 0).unwrap();
        }
        // Destination 10.0.0.2 (the victim), source 10.0.0.1 (the flooder).
        let outcomes = e.react(DDOS, &ips(&["10.0.0.2", "10.0.0.1"]), 5);
        assert!(matches!(outcomes[0].0, ReactionOutcome::Applied(_)));
        assert_eq!(e.state("auth", "10.0.0.1").unwrap(), "clear");
        assert_eq!(e.state("auth", "10.0.0.2").unwrap(), "authenticated");
    }

    #[test]
    fn a_reaction_on_a_module_key_the_flow_lacks_is_refused_at_build() {
        let mut spec = default_spec();
        spec.thresholds[0].fields = vec![KeyField::IpDestination, KeyField::UdpSourcePort];
        let err = PolicyEngine::new(&spec).err().unwrap().to_string();
        assert_eq!(
            err,
            "reaction on `ddos`: module `auth`: the module's key field ip_src is not among \
             the flow's key fields (ipdestination,udpsourceport)"
        );
        spec.thresholds.clear();
        let err = PolicyEngine::new(&spec).err().unwrap().to_string();
        assert_eq!(err, "reaction on `ddos`: no such threshold");
    }

    #[test]
    fn a_tuple_keyed_module_compiles_to_rules_matching_every_field() {
        let mut spec = default_spec();
        spec.modules[0].key = "ipdestination,udp_src".into();
        spec.modules[0].initial = "authenticated".into();
        spec.thresholds[0].fields = vec![
            KeyField::IpSource,
            KeyField::UdpSourcePort,
            KeyField::IpDestination,
        ];
        let mut e = PolicyEngine::new(&spec).unwrap();
        assert_eq!(e.fsm().modules()[0].key.to_string(), "ip_dst,udp_src");
        let mut key = ips(&["10.0.0.1"]);
        assert!(key.push(&53u16.to_be_bytes()));
        assert!(key.push(&[10, 0, 0, 2]));
        let outcomes = e.react(DDOS, &key, 5);
        let ReactionOutcome::Applied(change) = outcomes[0].0 else {
            panic!("{outcomes:?}");
        };
        assert_eq!(e.state("auth", "10.0.0.2,53").unwrap(), "clear");
        assert_eq!(e.state("auth", "10.0.0.2,54").unwrap(), "authenticated");
        let added = &outcomes[0].1.added;
        assert!(!added.is_empty());
        for rule in added {
            let tests = rule.pattern.tests();
            assert!(tests.contains(&(Field::Ipv4Dst, Match::exact(Field::Ipv4Dst, 0x0a00_0002))));
            assert!(tests.contains(&(Field::UdpSrc, Match::exact(Field::UdpSrc, 53))));
        }
        // The assertion holds for the tuple instance too.
        assert!(e.check().is_empty(), "{:?}", e.check());
        // The module key lacks the flow's ipsource: no single flow key to re-arm.
        let mut back = change;
        (back.from, back.to) = (change.to, change.from);
        assert!(e.rearms(&back).is_empty());
        // Control input in the comma form reaches the same instance.
        let (c, _) = e
            .apply_event(&ev("10.0.0.2, 53", "authenticated"), 6)
            .unwrap();
        assert_eq!(c.map(|c| c.key), Some(change.key));
    }

    #[test]
    fn a_rearm_lifts_the_module_key_back_through_the_projection() {
        let mut e = engine();
        let _ = e.apply_event(&ev("10.0.0.1", "authenticated"), 0).unwrap();
        let outcomes = e.react(DDOS, &ips(&["10.0.0.1"]), 5);
        let ReactionOutcome::Applied(cleared) = outcomes[0].0 else {
            panic!("{outcomes:?}");
        };
        // Clearing it again undoes nothing; letting it back in re-arms ddos for its key.
        assert!(e.rearms(&cleared).is_empty());
        let (back, _) = e.apply_event(&ev("10.0.0.1", "authenticated"), 6).unwrap();
        assert_eq!(e.rearms(&back.unwrap()), vec![(DDOS, ips(&["10.0.0.1"]))]);
        // A tuple module key covering the whole flow key lifts back in the flow's order.
        let mut spec = default_spec();
        spec.modules[0].key = "ipsource,ipdestination".into();
        spec.thresholds[0].fields = vec![KeyField::IpDestination, KeyField::IpSource];
        let mut e = PolicyEngine::new(&spec).unwrap();
        let flow_key = ips(&["10.0.0.2", "10.0.0.1"]);
        let _ = e
            .apply_event(&ev("10.0.0.1,10.0.0.2", "authenticated"), 0)
            .unwrap();
        let _ = e.react(DDOS, &flow_key, 5);
        assert_eq!(e.state("auth", "10.0.0.1,10.0.0.2").unwrap(), "clear");
        let (back, _) = e
            .apply_event(&ev("10.0.0.1,10.0.0.2", "authenticated"), 6)
            .unwrap();
        assert_eq!(e.rearms(&back.unwrap()), vec![(DDOS, flow_key)]);
    }

    #[test]
    fn unknown_module_state_or_key_changes_nothing() {
        let mut e = engine();
        let before = e.rules();
        assert!(e
            .apply_event(
                &Event {
                    module: "nope".into(),
                    ..ev("10.0.0.1", "clear")
                },
                0
            )
            .is_err());
        assert!(e.apply_event(&ev("10.0.0.1", "sleepy"), 0).is_err());
        assert!(e
            .apply_event(&ev("10.0.0.300", "authenticated"), 0)
            .is_err());
        assert_eq!(e.rules(), before);
    }

    #[test]
    fn a_held_reaction_expires_back_to_the_previous_state() {
        let mut spec = default_spec();
        spec.reactions[0].hold_s = Some(2.0);
        spec.reactions[0].whitelist = vec!["10.0.0.3/32".into()];
        let mut e = PolicyEngine::new(&spec).unwrap();
        let _ = e.apply_event(&ev("10.0.0.1", "authenticated"), 0).unwrap();
        let _ = e.react(DDOS, &ips(&["10.0.0.1"]), 1_000_000_000);
        assert_eq!(e.poll_timeout(), Some(3_000_000_000));
        assert!(e.expire(2_999_999_999).is_empty());
        let back = e.expire(3_000_000_000);
        assert_eq!(back.len(), 1);
        assert_eq!(e.state("auth", "10.0.0.1").unwrap(), "authenticated");
        assert!(matches!(
            e.react(DDOS, &ips(&["10.0.0.3"]), 4)[0].0,
            ReactionOutcome::Whitelisted
        ));
    }

    #[test]
    fn a_policy_that_forwards_cleared_hosts_is_caught_with_a_counterexample() {
        let mut spec = default_spec();
        spec.modules[0].states[1].1 = "identity".into();
        let e = PolicyEngine::new(&spec).unwrap();
        let v = e.check();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].packet.contains("ip_src="), "{}", v[0].packet);
        assert!(!v[0].outputs.is_empty());
    }

    #[test]
    fn snapshots_restore_states_and_tables() {
        let mut e = engine();
        let _ = e.apply_event(&ev("10.0.0.2", "authenticated"), 0).unwrap();
        let snap = e.snapshot(10);
        let rules = e.rules();
        let mut fresh = engine();
        let delta = fresh.restore(&snap, 20).unwrap();
        assert!(!delta.is_empty());
        assert_eq!(fresh.rules(), rules);
        assert_eq!(fresh.instances(20).len(), 1);
    }
}
