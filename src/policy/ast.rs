//! The policy language's abstract syntax: predicates over packets and policies from a located
//! packet to a set of located packets (Pyretic / NetKAT style).

use std::fmt;

use super::field::{Field, Match};

/// Index of an FSM module in the table that defines it.
pub type ModuleId = usize;

/// A packet predicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pred {
    /// Every packet.
    True,
    /// No packet.
    False,
    /// Packets that have the field and whose value satisfies the match.
    Test(Field, Match),
    /// Both.
    And(Box<Pred>, Box<Pred>),
    /// Either.
    Or(Box<Pred>, Box<Pred>),
    /// Negation.
    Not(Box<Pred>),
}

/// A policy: a function from a located packet to a set of located packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `{pkt}`.
    Identity,
    /// `∅`.
    Drop,
    /// `{pkt}` if the predicate holds, else `∅`.
    Filter(Pred),
    /// Sets the fields (sorted by field, each at most once).
    Modify(Vec<(Field, u128)>),
    /// Sends out of a port.
    Fwd(u32),
    /// Sends out of every port but the ingress one.
    Flood,
    /// Hands the packet to the switch's own pipeline.
    Normal,
    /// Hands the packet to the reactive MAC-learning module (a table of learnt flows whose
    /// misses go to the controller): like `normal`, where it goes is decided outside the
    /// policy.
    Learn,
    /// Limits the packet's flow to a rate in packets/s.
    Meter(u32),
    /// Kleisli composition: the second applied to every result of the first.
    Seq(Box<Policy>, Box<Policy>),
    /// Union of both results.
    Par(Box<Policy>, Box<Policy>),
    /// The first policy where the predicate holds, the second elsewhere.
    If(Pred, Box<Policy>, Box<Policy>),
    /// The policy of the module instance the packet belongs to, in its current state.
    Module(ModuleId),
}

impl Pred {
    /// `a & b`.
    pub fn and(a: Pred, b: Pred) -> Pred {
        Pred::And(Box::new(a), Box::new(b))
    }
    /// `a | b`.
    pub fn or(a: Pred, b: Pred) -> Pred {
        Pred::Or(Box::new(a), Box::new(b))
    }
    /// `!a`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(a: Pred) -> Pred {
        Pred::Not(Box::new(a))
    }
}

impl Policy {
    /// `a >> b`.
    pub fn seq(a: Policy, b: Policy) -> Policy {
        Policy::Seq(Box::new(a), Box::new(b))
    }
    /// `a + b`.
    pub fn par(a: Policy, b: Policy) -> Policy {
        Policy::Par(Box::new(a), Box::new(b))
    }
    /// `if_(c, a, b)`.
    pub fn if_(c: Pred, a: Policy, b: Policy) -> Policy {
        Policy::If(c, Box::new(a), Box::new(b))
    }

    /// Calls `f` on every module this policy refers to.
    pub fn for_each_module(&self, f: &mut dyn FnMut(ModuleId)) {
        match self {
            Policy::Module(m) => f(*m),
            Policy::Seq(a, b) | Policy::Par(a, b) | Policy::If(_, a, b) => {
                a.for_each_module(f);
                b.for_each_module(f);
            }
            _ => {}
        }
    }

    /// Calls `f` on every meter rate this policy mentions.
    pub fn for_each_meter(&self, f: &mut dyn FnMut(u32)) {
        match self {
            Policy::Meter(r) => f(*r),
            Policy::Seq(a, b) | Policy::Par(a, b) | Policy::If(_, a, b) => {
                a.for_each_meter(f);
                b.for_each_meter(f);
            }
            _ => {}
        }
    }

    /// True if the policy hands packets to the MAC-learning module anywhere.
    pub fn uses_learn(&self) -> bool {
        match self {
            Policy::Learn => true,
            Policy::Seq(a, b) | Policy::Par(a, b) | Policy::If(_, a, b) => {
                a.uses_learn() || b.uses_learn()
            }
            _ => false,
        }
    }

    /// Renders the policy in the language's syntax, naming modules with `names`.
    pub fn display<'a>(&'a self, names: &'a dyn Fn(ModuleId) -> String) -> impl fmt::Display + 'a {
        ShowPolicy(self, names)
    }
}

impl fmt::Display for Pred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pred::True => f.write_str("true"),
            Pred::False => f.write_str("false"),
            Pred::Test(field, m) => {
                write!(f, "match({field}=")?;
                field.fmt_match(m, f)?;
                f.write_str(")")
            }
            Pred::And(a, b) => write!(f, "({a} & {b})"),
            Pred::Or(a, b) => write!(f, "({a} | {b})"),
            Pred::Not(a) => write!(f, "!{a}"),
        }
    }
}

struct ShowPolicy<'a>(&'a Policy, &'a dyn Fn(ModuleId) -> String);

impl fmt::Display for ShowPolicy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1;
        match self.0 {
            Policy::Identity => f.write_str("identity"),
            Policy::Drop => f.write_str("drop"),
            Policy::Filter(p) => write!(f, "filter({p})"),
            Policy::Modify(sets) => {
                f.write_str("modify(")?;
                for (i, (field, v)) in sets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{field}=")?;
                    field.fmt_value(*v, f)?;
                }
                f.write_str(")")
            }
            Policy::Fwd(p) => write!(f, "fwd({p})"),
            Policy::Flood => f.write_str("flood"),
            Policy::Normal => f.write_str("normal"),
            Policy::Learn => f.write_str("learn"),
            Policy::Meter(r) => write!(f, "meter({r})"),
            Policy::Seq(a, b) => write!(f, "({} >> {})", ShowPolicy(a, n), ShowPolicy(b, n)),
            Policy::Par(a, b) => write!(f, "({} + {})", ShowPolicy(a, n), ShowPolicy(b, n)),
            Policy::If(c, a, b) => {
                write!(f, "if_({c}, {}, {})", ShowPolicy(a, n), ShowPolicy(b, n))
            }
            Policy::Module(m) => f.write_str(&(self.1)(*m)),
        }
    }
}
