//! What a [`PolicyEngine`](super::engine::PolicyEngine) is built from: modules, the main
//! policy, reactions and assertions as the caller states them (as text, the way operators
//! write them), plus the key layout of every threshold a reaction may name.
//!
//! The engine checks all of it once, when it is built, and reports the first problem with
//! the name of the part at fault.

use crate::flow::field::KeyField;

/// An FSM module as stated.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleSpec {
    /// Name used in policies and events.
    pub name: String,
    /// What instances are keyed by: a kind (`ipv4`, `ipv6`, `mac`, `port`; then `field`
    /// picks the packet field, by default the source of that kind), or a comma list of
    /// fields (`ipdestination,udpsourceport` or `ip_dst,udp_src`) whose values together
    /// make the key.
    pub key: String,
    /// With a kind, the packet field the key selects (a policy field name).
    pub field: Option<String>,
    /// State of every instance not otherwise set.
    pub initial: String,
    /// Allowed `(from, to)` transitions; `None` allows any.
    pub transitions: Option<Vec<(String, String)>>,
    /// `(state, policy text)` pairs, one per state.
    pub states: Vec<(String, String)>,
}

/// A threshold as reactions see it: its name and its flow's key fields, in key order.
/// Listed in [`ThresholdId`](crate::flow::ThresholdId) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThresholdKey {
    /// The threshold's name.
    pub name: String,
    /// The fields of the key its crossings carry.
    pub fields: Vec<KeyField>,
}

/// What to do when a threshold fires.
#[derive(Clone, Debug, PartialEq)]
pub struct ReactionSpec {
    /// The threshold's name.
    pub threshold: String,
    /// The module whose instance (the crossing key projected onto the module's key) moves.
    pub module: String,
    /// The state it moves to.
    pub state: String,
    /// Seconds to hold the state, then move to `then` (or back); `None` keeps it.
    pub hold_s: Option<f64>,
    /// The state after the hold.
    pub then: Option<String>,
    /// Keys (CIDR prefixes for address keys) never touched.
    pub whitelist: Vec<String>,
    /// Log what would be done, change nothing.
    pub dry_run: bool,
}

/// An invariant checked on the compiled tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionSpec {
    /// Name for reports.
    pub name: String,
    /// The module whose instances are probed.
    pub module: String,
    /// The state they are probed in.
    pub state: String,
    /// Whether packets of an instance in that state may be forwarded anywhere.
    pub forwards: bool,
}

/// Everything the policy engine is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    /// The modules.
    pub modules: Vec<ModuleSpec>,
    /// The top-level policy expression, e.g. `auth >> normal`.
    pub main: String,
    /// Every threshold, in id order (reactions name them).
    pub thresholds: Vec<ThresholdKey>,
    /// Threshold reactions.
    pub reactions: Vec<ReactionSpec>,
    /// Assertions.
    pub assertions: Vec<AssertionSpec>,
}
