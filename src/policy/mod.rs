//! The policy engine core, sans-IO: FSM modules, the Pyretic/NetKAT-style policy language,
//! its reference interpreter, and the compiler to prioritized, multi-table flow rules.
//!
//! Nothing here knows OpenFlow's wire format: the compiler emits abstract [`compile::Rule`]s
//! (table, priority, masked pattern, ordered actions) that the OpenFlow layer turns into
//! FLOW_MODs. The interpreter ([`eval::eval`]) is the definition of what a policy means; the
//! compiler is tested against it.

pub mod ast;
pub mod classifier;
pub mod compile;
pub mod engine;
pub mod eval;
pub mod field;
pub mod fsm;
pub mod key;
pub mod parse;
pub mod spec;

pub use ast::{ModuleId, Policy, Pred};
pub use classifier::{Classifier, Mods, Pattern};
pub use compile::{
    diff, run_pipeline, Action, CompileError, Compiler, Delta, Rule, RuleActions, RuleKey,
};
pub use eval::eval;
pub use field::{Field, Match, Out, Packet};
pub use fsm::{Change, Event, FsmError, FsmTable, KeyKind, ModuleDef, StateId};
pub use key::{ModuleKey, Projection};
pub use parse::{parse_policy, parse_pred, ParseError};
pub use spec::{AssertionSpec, ModuleSpec, PolicySpec, ReactionSpec, ThresholdKey};
