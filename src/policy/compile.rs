//! The compiler: the composed policy plus current FSM states → a multi-table rule pipeline,
//! kept up to date incrementally as instances change state.
//!
//! Pipeline layout. The top-level policy is read as a chain `p1 >> p2 >> … >> pn`. Its
//! leading elements that only drop or pass packets (up to a meter) commute with each other,
//! so each module among them (e.g. `auth`) gets a table of its own: one block of rules per
//! instance away from its initial state — all blocks share one priority band, which is safe
//! because their patterns pin the key field to different values — above the initial state's
//! rules, and a pass becomes `goto` the next table. The rest of the chain (module-free
//! filters included) is compiled with the classifier algebra into the last table, whose
//! actions produce the outputs. So `auth >> ids >> forward` costs O(instances) + |forward|
//! rules, not a cross product, and a state change touches only its instance's rules.
//!
//! Rule tables have a precise meaning ([`run_pipeline`]) that the tests check against the
//! interpreter: start in table 0, take the highest-priority matching rule, run its actions.

use std::collections::{BTreeSet, HashMap};

use thiserror::Error;

use super::ast::{ModuleId, Policy};
use super::classifier::{dispatch, of_policy, ActionSet, Classifier, Mods, Pattern};
use super::field::{Field, Out, Packet};
use super::fsm::{Change, FsmTable, StateId};
use super::key::ModuleKey;

/// Most module tables in front of the last one.
pub const MAX_MODULE_TABLES: usize = 250;
/// Most tables a pipeline uses (ids `0..MAX_TABLES`): tables from this one on are free for
/// other uses (the reactive learning table).
pub const MAX_TABLES: usize = MAX_MODULE_TABLES + 1;

/// Highest priority, used by the first rule of every instance block.
const TOP: u16 = u16::MAX;

/// One step of a rule's action list, run in order on the packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Pass through meter `id` (see [`Compiler::meters`]).
    Meter(u32),
    /// Set a field.
    Set(Field, u128),
    /// Emit a copy of the packet as it is now.
    Output(Out),
    /// Run each bucket on its own copy of the packet (an OpenFlow group of type ALL); used
    /// when the copies need changes that one action list cannot undo.
    Group(Vec<Vec<Action>>),
    /// Continue matching in a later table.
    Goto(u8),
}

/// A rule's actions; empty drops the packet.
pub type RuleActions = Vec<Action>;

/// A prioritized flow rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Table number.
    pub table: u8,
    /// Priority (higher wins; overlapping rules never share one).
    pub priority: u16,
    /// What the rule matches.
    pub pattern: Pattern,
    /// What it does.
    pub actions: RuleActions,
}

/// What identifies a rule on a switch: OpenFlow's (table, priority, match).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    /// Table number.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match.
    pub pattern: Pattern,
}

impl Rule {
    /// The rule's identity.
    pub fn key(&self) -> RuleKey {
        RuleKey {
            table: self.table,
            priority: self.priority,
            pattern: self.pattern.clone(),
        }
    }
}

/// The change between two rule sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Delta {
    /// Rules to delete.
    pub removed: Vec<RuleKey>,
    /// Rules to add.
    pub added: Vec<Rule>,
    /// Rules whose actions change.
    pub modified: Vec<Rule>,
}

impl Delta {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty() && self.modified.is_empty()
    }

    /// Number of rule operations.
    pub fn len(&self) -> usize {
        self.removed.len() + self.added.len() + self.modified.len()
    }

    fn extend(&mut self, other: Delta) {
        self.removed.extend(other.removed);
        self.added.extend(other.added);
        self.modified.extend(other.modified);
    }

    /// Applies the delta to a table keyed by [`RuleKey`].
    pub fn apply_to(&self, table: &mut HashMap<RuleKey, RuleActions>) {
        for k in &self.removed {
            table.remove(k);
        }
        for r in self.added.iter().chain(&self.modified) {
            table.insert(r.key(), r.actions.clone());
        }
    }
}

/// The rules to remove, add and modify to turn `old` into `new` (keyed on table, priority
/// and pattern; rules with equal keys and actions are left alone).
pub fn diff(old: &[Rule], new: &[Rule]) -> Delta {
    let mut before: HashMap<RuleKey, &RuleActions> =
        old.iter().map(|r| (r.key(), &r.actions)).collect();
    let mut d = Delta::default();
    for r in new {
        match before.remove(&r.key()) {
            None => d.added.push(r.clone()),
            Some(a) if *a != r.actions => d.modified.push(r.clone()),
            Some(_) => {}
        }
    }
    d.removed = before.into_keys().collect();
    d.removed.sort();
    d
}

/// Why a policy could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompileError {
    /// A table would need more distinct priorities than OpenFlow has.
    #[error("table {table} needs {rules} rules, more than 65535 priorities allow")]
    TooManyRules {
        /// Table number.
        table: u8,
        /// Rules it would need.
        rules: usize,
    },
    /// The chain has more modules than tables.
    #[error("more than 250 pipeline tables")]
    TooManyTables,
    /// The policy names a module the FSM table lacks.
    #[error("policy refers to unknown module #{0}")]
    UnknownModule(ModuleId),
}

struct ModInfo {
    key: ModuleKey,
    initial: StateId,
    per_state: Vec<Classifier>,
}

enum Table {
    /// A filter-like module's own table.
    Module {
        module: ModuleId,
        /// Per state: (priority, pattern, actions) before restriction to an instance key.
        blocks: Vec<Vec<(u16, Pattern, RuleActions)>>,
        /// The initial state's rules, below every instance block.
        default: Vec<Rule>,
    },
    /// The last table: the rest of the chain.
    General {
        policy: Policy,
        deps: Vec<ModuleId>,
        rules: Vec<Rule>,
    },
}

/// The compiled pipeline, updated one state change at a time.
pub struct Compiler {
    mods: Vec<ModInfo>,
    /// Mirror of the FSM instances away from their initial state.
    states: Vec<HashMap<u128, StateId>>,
    tables: Vec<Table>,
    /// Meter rates; meter id = index + 1.
    meters: Vec<u32>,
}

impl Compiler {
    /// Compiles `main` against the modules and current states of `fsm`.
    pub fn new(main: &Policy, fsm: &FsmTable) -> Result<Compiler, CompileError> {
        let defs = fsm.modules();
        let mut bad = None;
        main.for_each_module(&mut |m| {
            if m >= defs.len() {
                bad = Some(m);
            }
        });
        if let Some(m) = bad {
            return Err(CompileError::UnknownModule(m));
        }
        let mut meters = Vec::new();
        main.for_each_meter(&mut |r| meters.push(r));
        for d in defs {
            for p in &d.policies {
                p.for_each_meter(&mut |r| meters.push(r));
            }
        }
        meters.sort_unstable();
        meters.dedup();
        let mods: Vec<ModInfo> = defs
            .iter()
            .map(|d| ModInfo {
                key: d.key.clone(),
                initial: d.initial_id(),
                per_state: d
                    .policies
                    .iter()
                    // Module policies cannot refer to modules (checked by the FSM table).
                    .map(|p| of_policy(p, &mut |_| Classifier::constant(Vec::new())))
                    .collect(),
            })
            .collect();
        let mut states: Vec<HashMap<u128, StateId>> = defs.iter().map(|_| HashMap::new()).collect();
        for (m, k, s) in fsm.instances() {
            states[m].insert(k, s);
        }
        let mut c = Compiler {
            mods,
            states,
            tables: Vec::new(),
            meters,
        };
        c.layout(main)?;
        Ok(c)
    }

    fn meter_id(&self, rate: u32) -> u32 {
        // Every rate in the policies was collected at construction.
        self.meters.binary_search(&rate).map_or(0, |i| i as u32 + 1)
    }

    /// Meter table the rules refer to: `(id, rate in packets/s)`.
    pub fn meters(&self) -> Vec<(u32, u32)> {
        self.meters
            .iter()
            .enumerate()
            .map(|(i, &r)| (i as u32 + 1, r))
            .collect()
    }

    /// Rate of a meter id.
    pub fn meter_rate(&self, id: u32) -> Option<u32> {
        self.meters.get((id as usize).checked_sub(1)?).copied()
    }

    /// Number of pipeline tables.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    fn layout(&mut self, main: &Policy) -> Result<(), CompileError> {
        let mut chain = Vec::new();
        flatten(main, &mut chain);
        let mut split = Vec::new();
        let mut rest = Vec::new();
        let mut leading = true;
        for e in chain {
            let filter_like = leading
                && match e {
                    Policy::Module(m) => self.mods[*m].per_state.iter().all(|c| c.is_filter_like()),
                    _ => {
                        let mut has_module = false;
                        e.for_each_module(&mut |_| has_module = true);
                        !has_module
                            && of_policy(e, &mut |_| Classifier::constant(Vec::new()))
                                .is_filter_like()
                    }
                };
            leading = filter_like;
            match e {
                Policy::Module(m) if leading => split.push(*m),
                _ => rest.push(e.clone()),
            }
        }
        if split.len() > MAX_MODULE_TABLES {
            return Err(CompileError::TooManyTables);
        }
        for (t, &m) in split.iter().enumerate() {
            let table = self.module_table(t as u8, m)?;
            self.tables.push(table);
        }
        let policy = rest
            .into_iter()
            .reduce(Policy::seq)
            .unwrap_or(Policy::Identity);
        let mut deps = Vec::new();
        policy.for_each_module(&mut |m| deps.push(m));
        deps.sort_unstable();
        deps.dedup();
        let table = split.len() as u8;
        let rules = self.general_rules(table, &policy)?;
        self.tables.push(Table::General {
            policy,
            deps,
            rules,
        });
        Ok(())
    }

    fn pass_actions(&self, acts: &ActionSet, next: u8) -> RuleActions {
        match acts.first() {
            None => Vec::new(),
            Some(m) => {
                let mut a = Vec::with_capacity(2);
                if let Some(r) = m.meter {
                    a.push(Action::Meter(self.meter_id(r)));
                }
                a.push(Action::Goto(next));
                a
            }
        }
    }

    fn module_table(&self, t: u8, m: ModuleId) -> Result<Table, CompileError> {
        let info = &self.mods[m];
        let mut blocks = Vec::with_capacity(info.per_state.len());
        let mut widest = 0;
        for c in &info.per_state {
            widest = widest.max(c.rules.len());
            blocks.push(
                c.rules
                    .iter()
                    .enumerate()
                    .map(|(j, (p, a))| {
                        (
                            TOP - j.min(TOP as usize) as u16,
                            p.clone(),
                            self.pass_actions(a, t + 1),
                        )
                    })
                    .collect(),
            );
        }
        let init = &info.per_state[info.initial].rules;
        if widest + init.len() > TOP as usize {
            return Err(CompileError::TooManyRules {
                table: t,
                rules: widest + init.len(),
            });
        }
        let n = init.len();
        let default = init
            .iter()
            .enumerate()
            .map(|(j, (p, a))| Rule {
                table: t,
                priority: (n - 1 - j) as u16,
                pattern: p.clone(),
                actions: self.pass_actions(a, t + 1),
            })
            .collect();
        Ok(Table::Module {
            module: m,
            blocks,
            default,
        })
    }

    /// The rules an instance in `state` adds to a module table (none in the initial state).
    fn instance_rules(&self, t: usize, key: u128, state: StateId, out: &mut Vec<Rule>) {
        let Some(Table::Module { module, blocks, .. }) = self.tables.get(t) else {
            return;
        };
        let info = &self.mods[*module];
        if state == info.initial {
            return;
        }
        let kp = info.key.pattern(key);
        for (prio, p, a) in blocks.get(state).into_iter().flatten() {
            if let Some(q) = p.intersect(&kp) {
                let done = q == kp;
                out.push(Rule {
                    table: t as u8,
                    priority: *prio,
                    pattern: q,
                    actions: a.clone(),
                });
                if done {
                    break;
                }
            }
        }
    }

    fn general_rules(&self, t: u8, policy: &Policy) -> Result<Vec<Rule>, CompileError> {
        let c = of_policy(policy, &mut |m| {
            let info = &self.mods[m];
            let mut inst: Vec<(u128, StateId)> =
                self.states[m].iter().map(|(&k, &s)| (k, s)).collect();
            inst.sort_unstable();
            dispatch(&info.key, &info.per_state, info.initial, &inst)
        });
        let n = c.rules.len();
        if n > TOP as usize + 1 {
            return Err(CompileError::TooManyRules { table: t, rules: n });
        }
        Ok(c.rules
            .iter()
            .enumerate()
            .map(|(j, (p, a))| Rule {
                table: t,
                priority: (n - 1 - j) as u16,
                pattern: p.clone(),
                actions: self.output_actions(p, a),
            })
            .collect())
    }

    /// Actions emitting the packets of `acts` that have an output.
    fn output_actions(&self, pattern: &Pattern, acts: &ActionSet) -> RuleActions {
        let mut outs: Vec<&Mods> = acts.iter().filter(|m| m.out.is_some()).collect();
        if outs.is_empty() {
            return Vec::new();
        }
        let meter = outs[0].meter;
        if outs.iter().all(|m| m.meter == meter) {
            // Changes to fields the pattern pins can be undone, so those copies go first.
            outs.sort_by_key(|m| {
                let unpinned = m
                    .sets
                    .iter()
                    .filter(|(f, _)| pattern.get(*f).is_none_or(|x| x.mask != f.full_mask()))
                    .count();
                (unpinned, m.sets.len())
            });
            if let Some(mut seq) = linear(pattern, &outs) {
                if let Some(r) = meter {
                    seq.insert(0, Action::Meter(self.meter_id(r)));
                }
                return seq;
            }
        }
        let buckets = outs
            .iter()
            .map(|m| {
                let mut b: Vec<Action> = m
                    .meter
                    .map(|r| Action::Meter(self.meter_id(r)))
                    .into_iter()
                    .collect();
                b.extend(m.sets.iter().map(|&(f, v)| Action::Set(f, v)));
                b.extend(m.out.map(Action::Output));
                b
            })
            .collect();
        vec![Action::Group(buckets)]
    }

    /// Every rule of the pipeline, sorted by table, then priority (highest first).
    pub fn rules(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            match table {
                Table::Module {
                    module, default, ..
                } => {
                    for (&k, &s) in &self.states[*module] {
                        self.instance_rules(t, k, s, &mut out);
                    }
                    out.extend(default.iter().cloned());
                }
                Table::General { rules, .. } => out.extend(rules.iter().cloned()),
            }
        }
        out.sort_by(|a, b| {
            (a.table, std::cmp::Reverse(a.priority), &a.pattern).cmp(&(
                b.table,
                std::cmp::Reverse(b.priority),
                &b.pattern,
            ))
        });
        out
    }

    /// Number of rules in the pipeline (without building them).
    pub fn rule_count(&self) -> usize {
        let mut n = 0;
        for table in &self.tables {
            match table {
                Table::Module {
                    module,
                    blocks,
                    default,
                } => {
                    n += default.len();
                    // An upper bound per instance is exact for the usual one-rule states.
                    n += self.states[*module]
                        .values()
                        .map(|&s| blocks.get(s).map_or(0, Vec::len))
                        .sum::<usize>();
                }
                Table::General { rules, .. } => n += rules.len(),
            }
        }
        n
    }

    /// Follows one instance's state change; returns the rules that differ as a result.
    /// Only the instance's rules in its module's table(s) and, if the rest of the chain
    /// refers to the module, the last table are recomputed.
    pub fn on_change(&mut self, change: &Change) -> Result<Delta, CompileError> {
        let m = change.module;
        let Some(info) = self.mods.get(m) else {
            return Err(CompileError::UnknownModule(m));
        };
        let initial = info.initial;
        let old = self.states[m].get(&change.key).copied().unwrap_or(initial);
        if change.to == initial {
            self.states[m].remove(&change.key);
        } else {
            self.states[m].insert(change.key, change.to);
        }
        let mut delta = Delta::default();
        for t in 0..self.tables.len() {
            match &self.tables[t] {
                Table::Module { module, .. } if *module == m => {
                    let (mut before, mut after) = (Vec::new(), Vec::new());
                    self.instance_rules(t, change.key, old, &mut before);
                    self.instance_rules(t, change.key, change.to, &mut after);
                    delta.extend(diff(&before, &after));
                }
                Table::General {
                    policy,
                    deps,
                    rules,
                } if deps.contains(&m) => {
                    let fresh = self.general_rules(t as u8, policy)?;
                    delta.extend(diff(rules, &fresh));
                    if let Some(Table::General { rules, .. }) = self.tables.get_mut(t) {
                        *rules = fresh;
                    }
                }
                _ => {}
            }
        }
        Ok(delta)
    }
}

fn flatten<'a>(p: &'a Policy, out: &mut Vec<&'a Policy>) {
    match p {
        Policy::Seq(a, b) => {
            flatten(a, out);
            flatten(b, out);
        }
        _ => out.push(p),
    }
}

/// One action list emitting every packet of `outs` in order, if the
/// fields an earlier copy changed can be put back — i.e. the pattern pins their values.
fn linear(pattern: &Pattern, outs: &[&Mods]) -> Option<RuleActions> {
    let mut acts = Vec::new();
    let mut cur: Vec<(Field, u128)> = Vec::new();
    for m in outs {
        for &(f, v) in &cur {
            if m.get(f).is_none() {
                let orig = pattern.get(f).filter(|x| x.mask == f.full_mask())?;
                if orig.value != v {
                    acts.push(Action::Set(f, orig.value));
                }
            }
        }
        for &(f, v) in &m.sets {
            if !cur.contains(&(f, v)) {
                acts.push(Action::Set(f, v));
            }
        }
        cur.clone_from(&m.sets);
        acts.extend(m.out.map(Action::Output));
    }
    Some(acts)
}

/// What a rule pipeline does to a packet: the set of packets it emits (the reference
/// meaning of compiled rules). `meter_rate` maps meter ids to rates.
pub fn run_pipeline(
    rules: &[Rule],
    meter_rate: &dyn Fn(u32) -> Option<u32>,
    pkt: &Packet,
) -> BTreeSet<Packet> {
    let mut out = BTreeSet::new();
    let mut table = 0u8;
    let mut p = *pkt;
    loop {
        let best = rules
            .iter()
            .filter(|r| r.table == table && r.pattern.matches(&p))
            .max_by_key(|r| r.priority);
        let Some(rule) = best else {
            return out;
        };
        match run_actions(&rule.actions, meter_rate, &mut p, &mut out) {
            Some(next) if next > table => table = next,
            _ => return out,
        }
    }
}

fn run_actions(
    actions: &[Action],
    meter_rate: &dyn Fn(u32) -> Option<u32>,
    p: &mut Packet,
    out: &mut BTreeSet<Packet>,
) -> Option<u8> {
    for a in actions {
        match a {
            Action::Meter(id) => {
                if let Some(r) = meter_rate(*id) {
                    p.add_meter(r);
                }
            }
            Action::Set(f, v) => p.set(*f, *v),
            Action::Output(o) => {
                let mut q = *p;
                q.out = Some(*o);
                out.insert(q);
            }
            Action::Group(buckets) => {
                for b in buckets {
                    let mut q = *p;
                    run_actions(b, meter_rate, &mut q, out);
                }
            }
            Action::Goto(t) => return Some(*t),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::eval::eval;
    use crate::policy::fsm::{KeyKind, ModuleDef};
    use crate::policy::parse::parse_policy;

    fn fsm() -> FsmTable {
        let auth = ModuleDef::from_text(
            "auth",
            KeyKind::Ipv4Host,
            None,
            "authenticated",
            None,
            &[
                ("authenticated", "identity"),
                ("clear", "drop"),
                ("limited", "meter(100)"),
            ],
        )
        .unwrap();
        FsmTable::new(vec![auth]).unwrap()
    }

    fn host(i: u128) -> u128 {
        0x0a00_0000 + i
    }

    fn check(c: &Compiler, main: &Policy, t: &FsmTable) {
        let rules = c.rules();
        for i in 0..6 {
            for proto in [None, Some(6)] {
                let mut p = Packet::new(1)
                    .with(Field::Ipv4Src, host(i))
                    .with(Field::InPort, 1);
                if let Some(x) = proto {
                    p.set(Field::IpProto, x);
                }
                let want: BTreeSet<Packet> = eval(main, t.modules(), &|m, k| t.state_id(m, k), &p)
                    .into_iter()
                    .filter(|q| q.out.is_some())
                    .collect();
                let got = run_pipeline(&rules, &|id| c.meter_rate(id), &p);
                assert_eq!(got, want, "{p:?}");
            }
        }
    }

    #[test]
    fn auth_gets_its_own_table_with_one_rule_per_instance() {
        let mut t = fsm();
        let main = parse_policy("auth >> normal", &|n| t.module_id(n)).unwrap();
        let _ = t.set(0, host(1), 1, None, 0).unwrap();
        let _ = t.set(0, host(2), 2, None, 0).unwrap();
        let c = Compiler::new(&main, &t).unwrap();
        assert_eq!(c.table_count(), 2);
        let rules = c.rules();
        assert_eq!(rules.len(), 4, "{rules:#?}");
        assert_eq!(c.rule_count(), 4);
        assert_eq!(rules[0].table, 0);
        assert!(rules.iter().any(|r| r.table == 0 && r.actions.is_empty()));
        assert_eq!(
            rules.last().unwrap().actions,
            vec![Action::Output(Out::Normal)]
        );
        check(&c, &main, &t);
    }

    #[test]
    fn incremental_change_touches_one_rule() {
        let mut t = fsm();
        let main = parse_policy("auth >> normal", &|n| t.module_id(n)).unwrap();
        let mut c = Compiler::new(&main, &t).unwrap();
        let ch = t.set(0, host(3), 1, None, 0).unwrap().unwrap();
        let d = c.on_change(&ch).unwrap();
        assert_eq!(
            (d.added.len(), d.removed.len(), d.modified.len()),
            (1, 0, 0)
        );
        assert!(d.added[0].actions.is_empty());
        check(&c, &main, &t);
        let ch = t.set(0, host(3), 2, None, 0).unwrap().unwrap();
        let d = c.on_change(&ch).unwrap();
        assert_eq!(d.modified.len(), 1, "{d:?}");
        let ch = t.set(0, host(3), 0, None, 0).unwrap().unwrap();
        let d = c.on_change(&ch).unwrap();
        assert_eq!(d.removed.len(), 1);
        assert_eq!(c.rules().len(), 2);
    }

    #[test]
    fn general_table_handles_modules_after_modifications() {
        let mut t = fsm();
        let main = parse_policy(
            "filter(match(in_port=1)) >> modify(ip_src=10.0.0.1) >> auth >> (fwd(2) + fwd(3))",
            &|n| t.module_id(n),
        )
        .unwrap();
        let mut c = Compiler::new(&main, &t).unwrap();
        assert_eq!(c.table_count(), 1);
        check(&c, &main, &t);
        let ch = t.set(0, host(1), 1, None, 0).unwrap().unwrap();
        let before = c.rules();
        let d = c.on_change(&ch).unwrap();
        let after = c.rules();
        assert_eq!(
            sorted(d.clone()),
            sorted(diff(&before, &after)),
            "incremental delta is the full diff"
        );
        assert!(!d.is_empty());
        check(&c, &main, &t);
    }

    fn sorted(mut d: Delta) -> (Vec<RuleKey>, Vec<RuleKey>, Vec<RuleKey>) {
        d.removed.sort();
        let mut a: Vec<_> = d.added.iter().map(Rule::key).collect();
        let mut m: Vec<_> = d.modified.iter().map(Rule::key).collect();
        a.sort();
        m.sort();
        (d.removed, a, m)
    }

    #[test]
    fn copies_that_cannot_be_undone_use_a_group() {
        let t = fsm();
        let main = parse_policy(
            "modify(tcp_dst=1) >> fwd(1) + modify(tcp_src=2) >> fwd(2)",
            &|_| None,
        )
        .unwrap();
        let c = Compiler::new(&main, &t).unwrap();
        let rules = c.rules();
        assert_eq!(rules.len(), 1);
        assert!(matches!(rules[0].actions[0], Action::Group(ref b) if b.len() == 2));
        let main = parse_policy("fwd(1) + modify(tcp_src=2) >> fwd(2)", &|_| None).unwrap();
        let c = Compiler::new(&main, &t).unwrap();
        assert_eq!(
            c.rules()[0].actions,
            vec![
                Action::Output(Out::Port(1)),
                Action::Set(Field::TcpSrc, 2),
                Action::Output(Out::Port(2))
            ]
        );
    }

    #[test]
    fn fields_pinned_by_the_pattern_are_restored_between_copies() {
        let t = fsm();
        let main = parse_policy(
            "filter(match(tcp_dst=22)) >> (modify(tcp_dst=80) >> fwd(1) + modify(vlan=1) >> fwd(2))",
            &|_| None,
        )
        .unwrap();
        let c = Compiler::new(&main, &t).unwrap();
        let rules = c.rules();
        let pinned = rules.iter().find(|r| !r.actions.is_empty()).unwrap();
        assert!(
            pinned.actions.contains(&Action::Set(Field::TcpDst, 22))
                || pinned.actions.contains(&Action::Set(Field::VlanVid, 0)),
            "{pinned:?}"
        );
        assert!(!matches!(pinned.actions[0], Action::Group(_)));
        let p = Packet::new(1)
            .with(Field::TcpDst, 22)
            .with(Field::VlanVid, 7);
        let want: BTreeSet<Packet> = eval(&main, t.modules(), &|_, _| 0, &p);
        assert_eq!(run_pipeline(&rules, &|_| None, &p), want);
        assert_eq!(want.len(), 2);
    }

    #[test]
    fn diff_is_the_symmetric_difference() {
        let r = |prio: u16, port: u32| Rule {
            table: 0,
            priority: prio,
            pattern: Pattern::any(),
            actions: vec![Action::Output(Out::Port(port))],
        };
        let d = diff(&[r(1, 1), r(2, 1), r(3, 1)], &[r(2, 1), r(3, 2), r(4, 1)]);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].priority, 1);
        assert_eq!(d.added, vec![r(4, 1)]);
        assert_eq!(d.modified, vec![r(3, 2)]);
        assert!(diff(&[r(1, 1)], &[r(1, 1)]).is_empty());
    }
}
