//! Compiled policy → the desired table every switch should hold, whole or as a delta.
//!
//! The whole table ([`desired_table`]) is built at start and after a restore; a policy
//! [`Delta`](policy::Delta) becomes the entry-level change ([`desired_delta`]) the
//! OpenFlow thread applies to its one desired table and marks dirty in every session.
//! A removed rule's entries are found from its key alone (entry keys do not depend on
//! actions, except for the guard below, whose twins a removal names too), and a rule's
//! instruction list is made canonical once and shared by its IPv4 and IPv6 entries.
//!
//! # The stale-flow guard
//!
//! Open vSwitch caches the result of its flow table in datapath flows ("megaflows"), each
//! with the mask of the fields its lookup examined, and its revalidators fix them up after
//! a table change. A megaflow made while a host passed (its mask covers what the pass path
//! looked at: the host's address and, under `normal` or `learn`, the MACs) is only
//! *modified* when the host is blocked, since the drop path looks at no field the pass path
//! did not. Blocked traffic the old megaflow does not cover (another destination MAC) then
//! gets megaflows of the drop path's own, narrower mask, which overlap it. At re-admission
//! the revalidator modifies the old megaflow back; the userspace datapath of Open vSwitch
//! before 3.1.3 (Debian 12 ships 3.1.0) finds the flow to modify by a classifier lookup of
//! its key instead of its id, hits the overlapping drop megaflow, and leaves the old one
//! dropping while its cache entry says it forwards: the host stays cut off for as long as
//! it keeps sending (`dpctl/dump-flows` shows the drop, `revalidator/wait` does not help,
//! `revalidator/purge` does; upstream fix "dpif-netdev: Fix dpif_netdev_flow_put",
//! 21410ff80 / 9c600710b, and "ofproto-dpif-upcall: Fix push_dp_ops to handle all errors").
//! A revalidator *deletes* (by id, which is always right) instead of modifying when the new
//! lookup examines a field the megaflow did not. So with the guard, every IP entry that
//! restricts traffic (drops or meters it) is four entries, one per ECN value: the restricted
//! path examines the ECN bits, no pass path does (it stops at the host's higher-priority
//! entry, or is skipped by the address prefix trie before the ECN stage), so a block
//! deletes the host's pass megaflows, the blocked host's megaflows all share one mask and
//! never overlap, and a re-admission deletes or exactly modifies them. Same semantics, three
//! more entries per restricting IP entry; `[openflow] stale_flow_guard = false` turns it
//! off for switches without the defect.
//!
//! Not the whole story: with the guard on, the e2e re-admission test still saw a host stay
//! cut off once in about 70 rounds, through a drop-path megaflow (ECN in its mask, no MACs)
//! whose cache entry already said "forward" — so the revalidator never looked at it again.
//! That pairing of a fresh cache entry with an old datapath flow is a second mechanism this
//! guard does not cover; it is still being traced.

use std::sync::Arc;

use crate::openflow::oxm_field as field;
use crate::openflow::table::{
    canonical_instructions, learning_miss_entry, Desired, DesiredDelta, EntryKey, FlowTable,
    Instructions, Key,
};
use crate::openflow::{Instruction, Match, OxmField};
use crate::policy;

use super::translate::{
    meter, pattern_matches, translate_actions, TranslateConfig, TranslateError, TranslatedRule,
};

/// Rules that could not be translated, with why (logged and counted by the caller).
pub type TranslateErrors = Vec<(policy::RuleKey, TranslateError)>;

/// The desired meters of a compiled pipeline's meters (id, packets/s).
fn meters_of(meters: &[(u32, u32)]) -> std::collections::BTreeMap<u32, crate::openflow::DropMeter> {
    meters.iter().map(|&(id, rate)| (id, meter(rate))).collect()
}

/// Whether an entry with these instructions restricts traffic: drops it or meters it.
fn restricts(instructions: &[Instruction]) -> bool {
    instructions.is_empty()
        || instructions
            .iter()
            .any(|i| matches!(i, Instruction::Meter(_)))
}

/// The match's four ECN twins (the stale-flow guard), if it is an IP match that does not
/// already test ECN.
fn ecn_twins(m: &Match) -> Option<[Match; 4]> {
    let ip = matches!(
        m.get(field::ETH_TYPE),
        Some(OxmField::EthType(0x0800 | 0x86dd))
    );
    if !ip || m.get(field::IP_ECN).is_some() {
        return None;
    }
    let twin = |ecn: u8| {
        m.fields
            .iter()
            .fold(Match::builder(), |b, f| b.field(f.clone()))
            .ip_ecn(ecn)
            .build()
            .ok()
    };
    Some([twin(0)?, twin(1)?, twin(2)?, twin(3)?])
}

/// The entry keys one match becomes: itself, or its ECN twins when `guarded`.
fn match_keys(table: u8, priority: u16, m: &Match, guarded: bool) -> Vec<Key> {
    match ecn_twins(m).filter(|_| guarded) {
        Some(twins) => twins
            .iter()
            .map(|t| Arc::new(EntryKey::new(table, priority, t)))
            .collect(),
        None => vec![Arc::new(EntryKey::new(table, priority, m))],
    }
}

/// Every key a rule's entries may have had, whatever its actions: the plain keys and,
/// with the guard on, the ECN twins (what a removal or a change of actions must clear).
fn all_keys(rule: &policy::RuleKey, cfg: &TranslateConfig) -> Result<Vec<Key>, TranslateError> {
    let matches = pattern_matches(&rule.pattern)?;
    let mut keys = Vec::new();
    for m in matches.iter() {
        keys.extend(match_keys(rule.table, rule.priority, m, false));
        if cfg.stale_flow_guard {
            keys.extend(match_keys(rule.table, rule.priority, m, true));
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// A rule's entries: their keys and the one shared, canonical instruction list.
fn lower_rule(
    rule: &policy::Rule,
    cfg: &TranslateConfig,
) -> Result<(Vec<Key>, Instructions), TranslateError> {
    let actions = translate_actions(&rule.actions, cfg)?;
    let guarded = cfg.stale_flow_guard && restricts(&actions);
    let instructions = canonical_instructions(&actions).into();
    let matches = pattern_matches(&rule.pattern)?;
    let keys = matches
        .iter()
        .flat_map(|m| match_keys(rule.table, rule.priority, m, guarded))
        .collect();
    Ok((keys, instructions))
}

/// The desired table of a compiled pipeline (plus the learning table's miss entry when
/// `cfg` names one).
pub fn desired_table(
    rules: &[policy::Rule],
    meters: &[(u32, u32)],
    cfg: &TranslateConfig,
) -> (Desired, TranslateErrors) {
    let mut d = Desired {
        flows: FlowTable::new(),
        meters: meters_of(meters),
    };
    if let Some(t) = cfg.learning_table {
        let (key, instructions) = learning_miss_entry(t);
        d.flows.insert(key, &instructions);
    }
    let mut errors = Vec::new();
    for r in rules {
        match lower_rule(r, cfg) {
            Ok((keys, instructions)) => {
                for k in keys {
                    d.flows.insert_shared(k, instructions.clone());
                }
            }
            Err(e) => errors.push((r.key(), e)),
        }
    }
    (d, errors)
}

/// The entry-level change for a policy rule delta.
pub fn desired_delta(
    delta: &policy::Delta,
    meters: &[(u32, u32)],
    cfg: &TranslateConfig,
) -> (DesiredDelta, TranslateErrors) {
    let mut out = DesiredDelta {
        flows: Vec::with_capacity(delta.len()),
        meters: meters_of(meters),
    };
    let mut errors = Vec::new();
    for k in &delta.removed {
        match all_keys(k, cfg) {
            Ok(keys) => out.flows.extend(keys.into_iter().map(|k| (k, None))),
            Err(e) => errors.push((k.clone(), e)),
        }
    }
    for r in delta.added.iter().chain(&delta.modified) {
        let lowered = all_keys(&r.key(), cfg).and_then(|all| Ok((all, lower_rule(r, cfg)?)));
        match lowered {
            Ok((all, (keys, instructions))) => {
                // A change of actions may move the rule in or out of the guard: clear the
                // keys of the other form first.
                out.flows.extend(
                    all.into_iter()
                        .filter(|k| !keys.contains(k))
                        .map(|k| (k, None)),
                );
                out.flows
                    .extend(keys.into_iter().map(|k| (k, Some(instructions.clone()))));
            }
            Err(e) => errors.push((r.key(), e)),
        }
    }
    (out, errors)
}

/// The table of translated rules (each entry made canonical).
pub fn flow_table<'a>(rules: impl IntoIterator<Item = &'a TranslatedRule>) -> FlowTable {
    let mut t = FlowTable::new();
    for r in rules {
        t.insert(
            EntryKey::new(r.table_id, r.priority, &r.match_),
            &r.instructions,
        );
    }
    t
}
