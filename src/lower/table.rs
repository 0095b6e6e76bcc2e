//! Compiled policy → the desired table every switch should hold, whole or as a delta.
//!
//! The whole table ([`desired_table`]) is built at start and after a restore; a policy
//! [`Delta`](policy::Delta) becomes the entry-level change ([`desired_delta`]) the
//! OpenFlow thread applies to its one desired table and marks dirty in every session.
//! A removed rule's entries are found from its key alone (entry keys do not depend on
//! actions), and a rule's instruction list is made canonical once and shared by its IPv4
//! and IPv6 entries.

use std::sync::Arc;

use crate::openflow::table::{
    canonical_instructions, learning_miss_entry, Desired, DesiredDelta, EntryKey, FlowTable,
    Instructions, Key,
};
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

/// A rule's entries: their keys and the one shared, canonical instruction list.
fn lower_rule(
    rule: &policy::Rule,
    cfg: &TranslateConfig,
) -> Result<(impl Iterator<Item = Key>, Instructions), TranslateError> {
    let instructions = canonical_instructions(&translate_actions(&rule.actions, cfg)?).into();
    let matches = pattern_matches(&rule.pattern)?;
    let (table, priority) = (rule.table, rule.priority);
    let keys = (0..matches.len()).filter_map(move |i| {
        matches
            .get(i)
            .map(|m| Arc::new(EntryKey::new(table, priority, m)))
    });
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
        match pattern_matches(&k.pattern) {
            Ok(matches) => out.flows.extend(
                matches
                    .iter()
                    .map(|m| (Arc::new(EntryKey::new(k.table, k.priority, m)), None)),
            ),
            Err(e) => errors.push((k.clone(), e)),
        }
    }
    for r in delta.added.iter().chain(&delta.modified) {
        match lower_rule(r, cfg) {
            Ok((keys, instructions)) => {
                out.flows
                    .extend(keys.map(|k| (k, Some(instructions.clone()))));
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
