//! Classifiers: prioritized lists of (pattern, action set) — the intermediate form between a
//! policy and flow rules, with Pyretic's classifier algebra for `+`, `>>` and negation.
//!
//! Every classifier built here is *total*: its last rule matches every packet, so the first
//! matching rule is always defined. Parallel composition is the ordered cross product with
//! unioned actions; sequential composition pulls the second classifier back through each
//! action of the first (a test on a field the action sets is decided statically).

use std::collections::BTreeSet;

use super::ast::{ModuleId, Policy, Pred};
use super::field::{Field, Match, Out, Packet};
use super::key::ModuleKey;

/// Above this many rules, shadowed-rule elimination (quadratic) is skipped.
const OPTIMIZE_LIMIT: usize = 400;

/// A conjunction of masked field tests, sorted by field, at most one per field; empty
/// matches every packet. A test with mask 0 still requires the field to be present.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern(Vec<(Field, Match)>);

impl Pattern {
    /// Matches every packet.
    pub fn any() -> Pattern {
        Pattern(Vec::new())
    }

    /// One field test.
    pub fn single(f: Field, m: Match) -> Pattern {
        Pattern(vec![(f, m)])
    }

    /// Builds a pattern from tests; `None` if two tests on one field contradict.
    pub fn from_tests(tests: impl IntoIterator<Item = (Field, Match)>) -> Option<Pattern> {
        tests.into_iter().try_fold(Pattern::any(), |p, (f, m)| {
            p.intersect(&Pattern::single(f, m))
        })
    }

    /// The tests, sorted by field.
    pub fn tests(&self) -> &[(Field, Match)] {
        &self.0
    }

    /// The test on a field, if any.
    pub fn get(&self, f: Field) -> Option<&Match> {
        self.0.iter().find(|(g, _)| *g == f).map(|(_, m)| m)
    }

    /// True for the pattern matching everything.
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// True if the packet passes every test.
    pub fn matches(&self, pkt: &Packet) -> bool {
        self.0
            .iter()
            .all(|(f, m)| pkt.get(*f).is_some_and(|v| m.matches(v)))
    }

    /// The pattern matching exactly the packets both match; `None` if there are none.
    pub fn intersect(&self, other: &Pattern) -> Option<Pattern> {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((a[i].0, a[i].1.intersect(&b[j].1)?));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Some(Pattern(out))
    }

    /// True if every packet matching `other` matches `self`.
    pub fn covers(&self, other: &Pattern) -> bool {
        self.0
            .iter()
            .all(|(f, m)| other.get(*f).is_some_and(|o| m.covers(o)))
    }

    /// The tests `mods` leaves to be checked on the original packet: tests on fields it
    /// sets are decided now (`None` if one fails).
    fn pull_back(&self, mods: &Mods) -> Option<Pattern> {
        let mut out = Vec::with_capacity(self.0.len());
        for &(f, m) in &self.0 {
            match mods.get(f) {
                Some(v) if m.matches(v) => {}
                Some(_) => return None,
                None => out.push((f, m)),
            }
        }
        Some(Pattern(out))
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("*");
        }
        for (i, (field, m)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{field}=")?;
            field.fmt_match(m, f)?;
        }
        Ok(())
    }
}

/// One output packet of a classifier rule: what is changed relative to the input packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mods {
    /// Fields set, sorted by field.
    pub sets: Vec<(Field, u128)>,
    /// Output chosen, if any.
    pub out: Option<Out>,
    /// Tightest meter rate applied, if any.
    pub meter: Option<u32>,
}

impl Mods {
    /// The value this sets on `f`, if any.
    pub fn get(&self, f: Field) -> Option<u128> {
        self.sets.iter().find(|(g, _)| *g == f).map(|(_, v)| *v)
    }

    /// True if this changes nothing but, possibly, the meter.
    pub fn is_pass(&self) -> bool {
        self.sets.is_empty() && self.out.is_none()
    }

    /// `self` followed by `next`.
    pub fn then(&self, next: &Mods) -> Mods {
        let mut sets = next.sets.clone();
        for &(f, v) in &self.sets {
            if next.get(f).is_none() {
                sets.push((f, v));
            }
        }
        sets.sort();
        Mods {
            sets,
            out: next.out.or(self.out),
            meter: min_meter(self.meter, next.meter),
        }
    }

    /// The packet these changes produce from `pkt`.
    pub fn apply(&self, pkt: &Packet) -> Packet {
        let mut p = *pkt;
        for &(f, v) in &self.sets {
            p.set(f, v);
        }
        if self.out.is_some() {
            p.out = self.out;
        }
        if let Some(r) = self.meter {
            p.add_meter(r);
        }
        p
    }
}

fn min_meter(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A set of output packets (sorted, deduplicated); empty means drop.
pub type ActionSet = Vec<Mods>;

fn union(a: &ActionSet, b: &ActionSet) -> ActionSet {
    let mut out: Vec<Mods> = a.iter().chain(b).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// A total, prioritized rule list: the first rule whose pattern matches decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    /// Rules, highest priority first; the last one matches everything.
    pub rules: Vec<(Pattern, ActionSet)>,
}

impl Classifier {
    /// One rule for everything.
    pub fn constant(acts: ActionSet) -> Classifier {
        Classifier {
            rules: vec![(Pattern::any(), acts)],
        }
    }

    /// The classifier's result on a packet (the same meaning as the interpreter's).
    pub fn eval(&self, pkt: &Packet) -> BTreeSet<Packet> {
        self.rules
            .iter()
            .find(|(p, _)| p.matches(pkt))
            .map(|(_, acts)| acts.iter().map(|m| m.apply(pkt)).collect())
            .unwrap_or_default()
    }

    /// True if every rule either drops or passes the packet on unchanged (up to a meter).
    pub fn is_filter_like(&self) -> bool {
        self.rules
            .iter()
            .all(|(_, a)| a.is_empty() || (a.len() == 1 && a[0].is_pass()))
    }

    /// `self + other`.
    pub fn par(&self, other: &Classifier) -> Classifier {
        optimize(cross(&self.rules, &other.rules, union))
    }

    /// `self >> other`.
    pub fn seq(&self, other: &Classifier) -> Classifier {
        let mut out = Vec::new();
        for (pa, acts) in &self.rules {
            let mut combined: Option<Vec<(Pattern, ActionSet)>> = None;
            for m in acts {
                let mut pulled = Vec::new();
                for (pb, bacts) in &other.rules {
                    let Some(q) = pb.pull_back(m).and_then(|q| pa.intersect(&q)) else {
                        continue;
                    };
                    let done = q == *pa;
                    let mut acts: ActionSet = bacts.iter().map(|b| m.then(b)).collect();
                    acts.sort();
                    acts.dedup();
                    pulled.push((q, acts));
                    if done {
                        break;
                    }
                }
                combined = Some(match combined {
                    None => pulled,
                    Some(c) => cross(&c, &pulled, union),
                });
            }
            out.extend(combined.unwrap_or_else(|| vec![(pa.clone(), Vec::new())]));
        }
        optimize(out)
    }
}

/// Ordered cross product: rule (i, j) before (i', j') iff (i, j) < (i', j') lexicographically,
/// which makes the first match the pair of first matches when both inputs are total.
fn cross<A, B, C>(
    a: &[(Pattern, A)],
    b: &[(Pattern, B)],
    f: impl Fn(&A, &B) -> C,
) -> Vec<(Pattern, C)> {
    let mut out = Vec::new();
    for (pa, xa) in a {
        for (pb, xb) in b {
            if let Some(q) = pa.intersect(pb) {
                let done = q == *pa;
                out.push((q, f(xa, xb)));
                if done {
                    break;
                }
            }
        }
    }
    out
}

/// Drops rules that can never decide: those after a catch-all, those covered by an earlier
/// rule, and those that would get the same actions from the rules below them anyway.
fn optimize<A: PartialEq>(mut rules: Vec<(Pattern, A)>) -> Classifier
where
    Vec<(Pattern, A)>: IntoClassifier,
{
    if let Some(i) = rules.iter().position(|(p, _)| p.is_any()) {
        rules.truncate(i + 1);
    }
    if rules.len() <= OPTIMIZE_LIMIT {
        let mut kept: Vec<(Pattern, A)> = Vec::with_capacity(rules.len());
        for r in rules {
            if !kept.iter().any(|(p, _)| p.covers(&r.0)) {
                kept.push(r);
            }
        }
        rules = kept;
        // Walk upwards; a rule is redundant if every rule below it that it overlaps, down to
        // the first one covering it, has its actions.
        let mut j = rules.len().saturating_sub(1);
        while j > 0 {
            j -= 1;
            let mut same = false;
            for (p, a) in &rules[j + 1..] {
                if p.intersect(&rules[j].0).is_none() {
                    continue;
                }
                if *a != rules[j].1 {
                    break;
                }
                if p.covers(&rules[j].0) {
                    same = true;
                    break;
                }
            }
            if same {
                rules.remove(j);
            }
        }
    }
    rules.into_classifier()
}

/// Lets [`optimize`] serve both predicate (bool) and policy classifiers.
trait IntoClassifier {
    fn into_classifier(self) -> Classifier;
}

impl IntoClassifier for Vec<(Pattern, ActionSet)> {
    fn into_classifier(self) -> Classifier {
        Classifier { rules: self }
    }
}

impl IntoClassifier for Vec<(Pattern, bool)> {
    fn into_classifier(self) -> Classifier {
        Classifier {
            rules: self
                .into_iter()
                .map(|(p, b)| (p, if b { vec![Mods::default()] } else { Vec::new() }))
                .collect(),
        }
    }
}

fn pred_rules(pred: &Pred) -> Vec<(Pattern, bool)> {
    match pred {
        Pred::True => vec![(Pattern::any(), true)],
        Pred::False => vec![(Pattern::any(), false)],
        Pred::Test(f, m) => vec![(Pattern::single(*f, *m), true), (Pattern::any(), false)],
        Pred::Not(a) => pred_rules(a).into_iter().map(|(p, b)| (p, !b)).collect(),
        Pred::And(a, b) => shrink(cross(&pred_rules(a), &pred_rules(b), |x, y| *x && *y)),
        Pred::Or(a, b) => shrink(cross(&pred_rules(a), &pred_rules(b), |x, y| *x || *y)),
    }
}

fn shrink(rules: Vec<(Pattern, bool)>) -> Vec<(Pattern, bool)> {
    optimize(rules)
        .rules
        .into_iter()
        .map(|(p, a)| (p, !a.is_empty()))
        .collect()
}

/// The classifier of a predicate used as a filter.
pub fn of_pred(pred: &Pred) -> Classifier {
    optimize(pred_rules(pred))
}

/// The classifier of a policy; `module` supplies the classifier of each module reference.
pub fn of_policy(policy: &Policy, module: &mut dyn FnMut(ModuleId) -> Classifier) -> Classifier {
    let one = |m: Mods| Classifier::constant(vec![m]);
    match policy {
        Policy::Identity => one(Mods::default()),
        Policy::Drop => Classifier::constant(Vec::new()),
        Policy::Filter(p) => of_pred(p),
        Policy::Modify(sets) => {
            let mut sets = sets.clone();
            sets.sort();
            sets.dedup_by_key(|s| s.0);
            one(Mods {
                sets,
                ..Mods::default()
            })
        }
        Policy::Fwd(p) => one(Mods {
            out: Some(Out::Port(*p)),
            ..Mods::default()
        }),
        Policy::Flood => one(Mods {
            out: Some(Out::Flood),
            ..Mods::default()
        }),
        Policy::Normal => one(Mods {
            out: Some(Out::Normal),
            ..Mods::default()
        }),
        Policy::Learn => one(Mods {
            out: Some(Out::Learn),
            ..Mods::default()
        }),
        Policy::Meter(r) => one(Mods {
            meter: Some(*r),
            ..Mods::default()
        }),
        Policy::Seq(a, b) => of_policy(a, module).seq(&of_policy(b, module)),
        Policy::Par(a, b) => of_policy(a, module).par(&of_policy(b, module)),
        Policy::If(c, a, b) => {
            // if_(c, a, b) = filter(c) >> a + filter(!c) >> b
            let yes = of_pred(c).seq(&of_policy(a, module));
            let no = of_pred(&Pred::not(c.clone())).seq(&of_policy(b, module));
            yes.par(&no)
        }
        Policy::Module(m) => module(*m),
    }
}

/// The classifier of a module reference: instance rules (the state's classifier restricted
/// to the instance's key) for every instance not in the initial state, in the order given,
/// then the initial state's classifier for everything else.
pub fn dispatch(
    key: &ModuleKey,
    per_state: &[Classifier],
    initial: usize,
    instances: &[(u128, usize)],
) -> Classifier {
    let mut rules = Vec::new();
    for &(instance, state) in instances {
        let Some(c) = per_state.get(state) else {
            continue;
        };
        let kp = key.pattern(instance);
        for (p, a) in &c.rules {
            if let Some(q) = p.intersect(&kp) {
                let done = q == kp;
                rules.push((q, a.clone()));
                if done {
                    break;
                }
            }
        }
    }
    if let Some(c) = per_state.get(initial) {
        rules.extend(c.rules.iter().cloned());
    } else {
        rules.push((Pattern::any(), Vec::new()));
    }
    Classifier { rules }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::eval::{eval, holds};
    use crate::policy::parse::{parse_policy, parse_pred};

    fn pkts() -> Vec<Packet> {
        let mut v = Vec::new();
        for port in [None, Some(1), Some(2)] {
            for dst in [None, Some(22), Some(80)] {
                for src in [None, Some(0x0a00_0001), Some(0x0a00_0102)] {
                    let mut p = Packet::new(1);
                    if let Some(x) = port {
                        p.set(Field::InPort, x);
                    }
                    if let Some(x) = dst {
                        p.set(Field::TcpDst, x);
                    }
                    if let Some(x) = src {
                        p.set(Field::Ipv4Src, x);
                    }
                    v.push(p);
                }
            }
        }
        v
    }

    #[test]
    fn predicate_classifiers_agree_with_holds() {
        for s in [
            "match(in_port=1) & !match(tcp_dst=22)",
            "!(match(in_port=1) | match(ip_src=10.0.0.0/24)) | match(tcp_dst=80)",
            "!!match(ip_src=10.0.1.0/24) & true",
            "false | !true",
        ] {
            let pred = parse_pred(s).unwrap();
            let c = of_pred(&pred);
            assert!(c.rules.last().unwrap().0.is_any());
            for p in pkts() {
                assert_eq!(!c.eval(&p).is_empty(), holds(&pred, &p), "{s} on {p:?}");
            }
        }
    }

    #[test]
    fn policy_classifiers_agree_with_eval() {
        for s in [
            "filter(match(in_port=1)) >> fwd(2) + filter(match(in_port=2)) >> fwd(1)",
            "modify(tcp_dst=22) >> if_(match(tcp_dst=22), fwd(3), drop)",
            "(fwd(1) + modify(ip_src=10.0.0.1)) >> (identity + filter(match(ip_src=10.0.0.1)) >> meter(5))",
            "if_(match(ip_src=10.0.0.0/24), meter(7) >> normal, flood) + drop",
        ] {
            let pol = parse_policy(s, &|_| None).unwrap();
            let c = of_policy(&pol, &mut |_| Classifier::constant(Vec::new()));
            for p in pkts() {
                assert_eq!(c.eval(&p), eval(&pol, &[], &|_, _| 0, &p), "{s} on {p:?}");
            }
        }
    }

    #[test]
    fn optimize_removes_shadowed_and_redundant_rules() {
        let pol = parse_policy(
            "filter(match(in_port=1) | match(in_port=1, tcp_dst=22)) >> fwd(1)",
            &|_| None,
        )
        .unwrap();
        let c = of_policy(&pol, &mut |_| unreachable!());
        assert_eq!(c.rules.len(), 2, "{c:?}");
        let c = of_pred(&parse_pred("match(tcp_dst=22) | true").unwrap());
        assert_eq!(c.rules.len(), 1);
    }

    #[test]
    fn pattern_algebra() {
        let a = Pattern::from_tests([(Field::InPort, Match::exact(Field::InPort, 1))]).unwrap();
        let b = Pattern::single(Field::TcpDst, Match::exact(Field::TcpDst, 80));
        let ab = a.intersect(&b).unwrap();
        assert!(a.covers(&ab) && b.covers(&ab) && !ab.covers(&a));
        assert!(Pattern::any().covers(&a));
        let c = Pattern::single(Field::InPort, Match::exact(Field::InPort, 2));
        assert_eq!(a.intersect(&c), None);
        assert_eq!(ab.to_string(), "in_port=1,tcp_dst=80");
    }
}
