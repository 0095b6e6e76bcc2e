//! Flow tables as sets of canonical entries, and the minimal difference between two.
//!
//! The controller keeps, per switch, what it believes is installed and, once for all
//! switches, what it wants there (the [`Desired`] table: flow entries and meters, built by
//! the caller; Reflex lowers its policy into it). Both sides are stored canonically so that
//! an entry read back from a switch compares equal to the one we sent: matches are
//! normalized (masks applied, fields sorted by OXM number, which is also an order that
//! respects prerequisites), instructions are sorted into the spec's execution order and an
//! output's `max_len` (meaningful only towards CONTROLLER) is zeroed. Cookies, counters, flags and
//! timeouts are not part of an entry: Reflex installs permanent rules with cookie 0 and
//! ignores those fields when reconciling.
//!
//! Entries are keyed like OpenFlow's strict commands, on (table, priority, match), so the
//! difference maps one to one onto DELETE_STRICT, ADD and MODIFY_STRICT ([`diff`]).
//!
//! Keys and instruction lists are shared (`Arc`) between the desired table, every
//! session's installed table and its in-flight records, so queuing a flow-mod and
//! recording it as installed copies no match and no instruction list.
//!
//! Table-miss: nothing here adds a miss entry; the desired table is installed as given.
//! (Reflex's policy compiler ends every table it uses with a priority-0 match-all rule, and a
//! table it does not use stays empty and, with the switch in fail-mode secure, drops its
//! misses.) The MAC-learning table's miss entry, `priority=0 actions=CONTROLLER:65535`, is
//! defined here ([`learning_miss_entry`]) because the session's learning answers its
//! PACKET_INs; the caller puts it in the desired table like any entry. Any other entry found on a switch (for example
//! OVS's `priority=0 actions=NORMAL` from standalone mode) is deleted strictly, one by one;
//! the table is never wiped.
//!
//! Learnt flows (installed by the session from PACKET_INs, with the learning cookie and an
//! idle timeout) live on the switch but in neither table: the session leaves them out of the
//! installed table it reads at connect ([`FlowTable::from_stats_without`]), so no diff ever
//! deletes or "fixes" them, and the switch expires them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::{port, Action, DropMeter, FlowStats, Instruction, Match, OxmField, OFPVID_PRESENT};

/// What identifies an entry on a switch: OpenFlow's (table, priority, match), canonical.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    pub table_id: u8,
    pub priority: u16,
    /// Canonical (see [`canonical_match`]).
    pub match_: Match,
}

impl EntryKey {
    /// A key with its match made canonical.
    pub fn new(table_id: u8, priority: u16, match_: &Match) -> EntryKey {
        EntryKey {
            table_id,
            priority,
            match_: canonical_match(match_),
        }
    }
}

/// The canonical form of a match: [`Match::normalize`], or (for a match the switch reports
/// that does not normalize, such as one with a duplicate field) its fields sorted.
pub fn canonical_match(m: &Match) -> Match {
    m.normalize().unwrap_or_else(|_| {
        let mut fields = m.fields.clone();
        fields.sort();
        Match { fields }
    })
}

/// The canonical form of an instruction list: execution order, `max_len` zeroed on outputs
/// to ports other than CONTROLLER. Action order inside a list is meaningful and kept.
pub fn canonical_instructions(instructions: &[Instruction]) -> Vec<Instruction> {
    fn actions(list: &[Action]) -> Vec<Action> {
        list.iter()
            .map(|a| match a {
                Action::Output { port: p, .. } if *p != port::CONTROLLER => Action::Output {
                    port: *p,
                    max_len: 0,
                },
                other => other.clone(),
            })
            .collect()
    }
    let mut out: Vec<Instruction> = instructions
        .iter()
        .map(|i| match i {
            Instruction::ApplyActions(a) => Instruction::ApplyActions(actions(a)),
            Instruction::WriteActions(a) => Instruction::WriteActions(actions(a)),
            other => other.clone(),
        })
        .collect();
    out.sort();
    out
}

/// One strict flow-table operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowOp {
    /// OFPFC_ADD: a new entry.
    Add,
    /// OFPFC_MODIFY_STRICT: same key, new instructions.
    Modify,
    /// OFPFC_DELETE_STRICT: the entry goes.
    Delete,
}

impl FlowOp {
    /// The flow-mod command for this operation.
    pub fn command(self) -> super::FlowModCommand {
        match self {
            FlowOp::Add => super::FlowModCommand::Add,
            FlowOp::Modify => super::FlowModCommand::ModifyStrict,
            FlowOp::Delete => super::FlowModCommand::DeleteStrict,
        }
    }

    /// "add", "modify" or "delete".
    pub fn name(self) -> &'static str {
        match self {
            FlowOp::Add => "add",
            FlowOp::Modify => "modify",
            FlowOp::Delete => "delete",
        }
    }
}

/// A shared key.
pub type Key = Arc<EntryKey>;
/// A shared, canonical instruction list.
pub type Instructions = Arc<[Instruction]>;

/// A flow table: canonical entries in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowTable {
    entries: BTreeMap<Key, Instructions>,
}

impl FlowTable {
    /// An empty table.
    pub fn new() -> FlowTable {
        FlowTable::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The instructions of the entry with this key.
    pub fn get(&self, key: &EntryKey) -> Option<&[Instruction]> {
        self.entries.get(key).map(|v| &v[..])
    }

    /// Entries in key order (table, priority ascending, match).
    pub fn iter(&self) -> impl Iterator<Item = (&EntryKey, &[Instruction])> {
        self.entries.iter().map(|(k, v)| (&**k, &v[..]))
    }

    /// Makes this table's entry for `key` what it is in `other` (removed if absent there),
    /// sharing `other`'s parts.
    pub fn copy_entry(&mut self, other: &FlowTable, key: &EntryKey) {
        match other.entries.get_key_value(key) {
            Some((k, v)) => {
                self.entries.insert(k.clone(), v.clone());
            }
            None => {
                self.entries.remove(key);
            }
        }
    }

    /// Inserts an entry whose parts are already shared and canonical.
    pub fn insert_shared(&mut self, key: Key, instructions: Instructions) {
        self.entries.insert(key, instructions);
    }

    /// Inserts or replaces an entry; the key must be canonical (from [`EntryKey::new`]),
    /// the instructions are made canonical here.
    pub fn insert(&mut self, key: EntryKey, instructions: &[Instruction]) {
        self.entries
            .insert(Arc::new(key), canonical_instructions(instructions).into());
    }

    /// Removes an entry; true if it was there.
    pub fn remove(&mut self, key: &EntryKey) -> bool {
        self.entries.remove(key).is_some()
    }

    /// The table a switch reported in a flow-stats reply (cookies and counters ignored).
    pub fn from_stats(stats: &[FlowStats]) -> FlowTable {
        let mut t = FlowTable::new();
        for s in stats {
            t.insert(
                EntryKey::new(s.table_id, s.priority, &s.match_),
                &s.instructions,
            );
        }
        t
    }

    /// The table a switch reported, without the entries `skip` picks (learnt flows).
    pub fn from_stats_without(stats: &[FlowStats], skip: impl Fn(&FlowStats) -> bool) -> FlowTable {
        let mut t = FlowTable::new();
        for s in stats.iter().filter(|s| !skip(s)) {
            t.insert(
                EntryKey::new(s.table_id, s.priority, &s.match_),
                &s.instructions,
            );
        }
        t
    }

    /// Applies one operation as [`diff`] produced it.
    pub fn apply(&mut self, op: FlowOp, key: &EntryKey, instructions: &[Instruction]) {
        match op {
            FlowOp::Delete => {
                self.entries.remove(key);
            }
            FlowOp::Add | FlowOp::Modify => {
                self.entries.insert(
                    Arc::new(key.clone()),
                    canonical_instructions(instructions).into(),
                );
            }
        }
    }

    /// The operation that brings this table's entry for `key` to `desired`'s, if any.
    pub fn op_towards(&self, desired: &FlowTable, key: &EntryKey) -> Option<FlowOp> {
        match (self.entries.get(key), desired.entries.get(key)) {
            (None, None) => None,
            (Some(_), None) => Some(FlowOp::Delete),
            (None, Some(_)) => Some(FlowOp::Add),
            (Some(a), Some(b)) => (a != b).then_some(FlowOp::Modify),
        }
    }
}

/// The strict operations turning `old` into `new`, in key order: one per key whose entry
/// differs (DELETE for keys only in `old`, ADD for keys only in `new`, MODIFY for keys in
/// both with other instructions). Instructions are `new`'s (empty for a delete).
pub fn diff<'a>(
    old: &'a FlowTable,
    new: &'a FlowTable,
) -> Vec<(FlowOp, &'a Key, &'a [Instruction])> {
    let mut out = Vec::new();
    let mut a = old.entries.iter().peekable();
    let mut b = new.entries.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), None) => {
                out.push((FlowOp::Delete, *ka, &[][..]));
                a.next();
            }
            (None, Some((kb, ib))) => {
                out.push((FlowOp::Add, *kb, &ib[..]));
                b.next();
            }
            (Some((ka, ia)), Some((kb, ib))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((FlowOp::Delete, *ka, &[][..]));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((FlowOp::Add, *kb, &ib[..]));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if ia != ib {
                        out.push((FlowOp::Modify, *kb, &ib[..]));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

/// What every switch should hold: flow entries and meters (by meter id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub flows: FlowTable,
    pub meters: BTreeMap<u32, DropMeter>,
}

/// A change to the desired table: entries to set (`Some`) or remove (`None`), applied in
/// order, and the complete new meter set (meters are few).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredDelta {
    pub flows: Vec<(Key, Option<Instructions>)>,
    pub meters: BTreeMap<u32, DropMeter>,
}

impl DesiredDelta {
    /// True when no flow entry changes (the meter set may still differ).
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Folds a later delta into this one: applying the result equals applying both in
    /// turn. Each key keeps only its latest change, so a run of merged deltas stays as
    /// large as the set of keys it touches.
    pub fn merge(&mut self, later: DesiredDelta) {
        self.flows.extend(later.flows);
        let mut seen = BTreeSet::new();
        let mut latest: Vec<_> = self
            .flows
            .drain(..)
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        latest.reverse();
        self.flows = latest;
        self.meters = later.meters;
    }
}

/// The learning table's miss entry: everything not learnt yet goes to the controller, whole
/// (max_len NO_BUFFER), as a PACKET_IN.
pub fn learning_miss_entry(table: u8) -> (EntryKey, Vec<Instruction>) {
    (
        EntryKey::new(table, 0, &Match::any()),
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: port::CONTROLLER,
            max_len: super::CONTROLLER_MAX_LEN_NO_BUFFER,
        }])],
    )
}

impl Desired {
    /// Applies a delta; returns nothing, the caller already holds the changed keys.
    pub fn apply(&mut self, delta: &DesiredDelta) {
        for (k, v) in &delta.flows {
            match v {
                Some(i) => self.flows.insert_shared(k.clone(), i.clone()),
                None => {
                    self.flows.remove(k);
                }
            }
        }
        self.meters.clone_from(&delta.meters);
    }
}

fn mac_text(a: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        a[0], a[1], a[2], a[3], a[4], a[5]
    )
}

fn port_text(p: u32) -> String {
    match p {
        port::IN_PORT => "IN_PORT".into(),
        port::TABLE => "TABLE".into(),
        port::NORMAL => "NORMAL".into(),
        port::FLOOD => "FLOOD".into(),
        port::ALL => "ALL".into(),
        port::CONTROLLER => "CONTROLLER".into(),
        port::LOCAL => "LOCAL".into(),
        port::ANY => "ANY".into(),
        n => n.to_string(),
    }
}

fn field_text(f: &OxmField, v6: bool) -> String {
    let masked4 = |name: &str, a: &std::net::Ipv4Addr, m: &Option<std::net::Ipv4Addr>| match m {
        None => format!("{name}={a}"),
        Some(m) => format!("{name}={a}/{m}"),
    };
    let masked6 = |name: &str, a: &std::net::Ipv6Addr, m: &Option<std::net::Ipv6Addr>| match m {
        None => format!("{name}={a}"),
        Some(m) => format!("{name}={a}/{m}"),
    };
    let (tp_src, tp_dst) = ("tp_src", "tp_dst");
    match f {
        OxmField::InPort(p) => format!("in_port={}", port_text(*p)),
        OxmField::EthDst { addr, mask } => match mask {
            None => format!("dl_dst={}", mac_text(addr)),
            Some(m) => format!("dl_dst={}/{}", mac_text(addr), mac_text(m)),
        },
        OxmField::EthSrc { addr, mask } => match mask {
            None => format!("dl_src={}", mac_text(addr)),
            Some(m) => format!("dl_src={}/{}", mac_text(addr), mac_text(m)),
        },
        OxmField::EthType(t) => format!("dl_type=0x{t:04x}"),
        OxmField::VlanVid { vid, mask: None } if *vid & OFPVID_PRESENT != 0 => {
            format!("dl_vlan={}", vid & 0x0fff)
        }
        OxmField::VlanVid { vid, mask } => match mask {
            None => format!("vlan_tci=0x{vid:04x}"),
            Some(m) => format!("vlan_tci=0x{vid:04x}/0x{m:04x}"),
        },
        OxmField::IpProto(p) => format!("nw_proto={p}"),
        OxmField::IpEcn(e) => format!("nw_ecn={e}"),
        OxmField::Ipv4Src { addr, mask } => masked4("nw_src", addr, mask),
        OxmField::Ipv4Dst { addr, mask } => masked4("nw_dst", addr, mask),
        OxmField::Ipv6Src { addr, mask } => masked6("ipv6_src", addr, mask),
        OxmField::Ipv6Dst { addr, mask } => masked6("ipv6_dst", addr, mask),
        OxmField::TcpSrc(p) | OxmField::UdpSrc(p) => format!("{tp_src}={p}"),
        OxmField::TcpDst(p) | OxmField::UdpDst(p) => format!("{tp_dst}={p}"),
        OxmField::Icmpv4Type(t) | OxmField::Icmpv6Type(t) => {
            format!("{}={t}", if v6 { "icmpv6_type" } else { "icmp_type" })
        }
        OxmField::Icmpv4Code(c) | OxmField::Icmpv6Code(c) => {
            format!("{}={c}", if v6 { "icmpv6_code" } else { "icmp_code" })
        }
        OxmField::Raw {
            class,
            field,
            payload,
            ..
        } => {
            let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
            format!("oxm{class:04x}:{field}=0x{hex}")
        }
    }
}

/// A match in `ovs-ofctl` words: `ip,nw_src=10.0.0.1`, `tcp6,tp_dst=80`, or empty.
pub fn ofctl_match(m: &Match) -> String {
    let eth = m.fields.iter().find_map(|f| match f {
        OxmField::EthType(t) => Some(*t),
        _ => None,
    });
    let proto = m.fields.iter().find_map(|f| match f {
        OxmField::IpProto(p) => Some(*p),
        _ => None,
    });
    let v6 = eth == Some(0x86dd);
    let shorthand = match (eth, proto) {
        (Some(0x0800), Some(6)) => Some("tcp"),
        (Some(0x0800), Some(17)) => Some("udp"),
        (Some(0x0800), Some(1)) => Some("icmp"),
        (Some(0x0800), None) => Some("ip"),
        (Some(0x86dd), Some(6)) => Some("tcp6"),
        (Some(0x86dd), Some(17)) => Some("udp6"),
        (Some(0x86dd), Some(58)) => Some("icmp6"),
        (Some(0x86dd), None) => Some("ipv6"),
        (Some(0x0806), None) => Some("arp"),
        _ => None,
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = shorthand {
        parts.push(s.to_owned());
    }
    for f in &m.fields {
        let covered = match f {
            OxmField::EthType(_) => shorthand.is_some(),
            OxmField::IpProto(_) => shorthand.is_some() && proto.is_some(),
            _ => false,
        };
        if !covered {
            parts.push(field_text(f, v6));
        }
    }
    parts.join(",")
}

/// Instructions in `ovs-ofctl` words: `goto_table:1`, `NORMAL`, `meter:1,output:2`, `drop`.
pub fn ofctl_actions(instructions: &[Instruction]) -> String {
    fn action(a: &Action, out: &mut Vec<String>) {
        out.push(match a {
            Action::Output { port: p, max_len } if *p == port::CONTROLLER => {
                format!("CONTROLLER:{max_len}")
            }
            Action::Output { port: p, .. } if *p > port::MAX => port_text(*p),
            Action::Output { port: p, .. } => format!("output:{p}"),
            Action::SetField(f) => {
                let text = field_text(f, false);
                let (name, value) = text.split_once('=').unwrap_or((&text, ""));
                format!("set_field:{value}->{name}")
            }
            Action::PushVlan(t) => format!("push_vlan:0x{t:04x}"),
            Action::PopVlan => "pop_vlan".into(),
            Action::Group(g) => format!("group:{g}"),
            Action::SetQueue(q) => format!("set_queue:{q}"),
            Action::Raw { action_type, .. } => format!("action{action_type}"),
        });
    }
    let mut parts = Vec::new();
    for i in instructions {
        match i {
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::ApplyActions(a) => a.iter().for_each(|x| action(x, &mut parts)),
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::WriteActions(a) => {
                let mut inner = Vec::new();
                a.iter().for_each(|x| action(x, &mut inner));
                parts.push(format!("write_actions({})", inner.join(",")));
            }
            Instruction::WriteMetadata { metadata, mask } => {
                parts.push(format!("write_metadata:0x{metadata:x}/0x{mask:x}"))
            }
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
            Instruction::Raw {
                instruction_type, ..
            } => parts.push(format!("instruction{instruction_type}")),
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

/// One entry as `ovs-ofctl -O OpenFlow13 dump-flows` prints it (without counters):
/// ` table=0, priority=65535,ip,nw_src=10.0.0.1 actions=goto_table:1`.
pub fn ofctl_line(key: &EntryKey, instructions: &[Instruction]) -> String {
    let mut s = String::new();
    let m = ofctl_match(&key.match_);
    let _ = write!(s, " table={}, priority={}", key.table_id, key.priority);
    if !m.is_empty() {
        let _ = write!(s, ",{m}");
    }
    let _ = write!(s, " actions={}", ofctl_actions(instructions));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn key(table: u8, prio: u16, host: u8) -> EntryKey {
        EntryKey::new(
            table,
            prio,
            &Match::builder()
                .ipv4_src(Ipv4Addr::new(10, 0, 0, host))
                .build()
                .unwrap_or_default(),
        )
    }

    #[test]
    fn oxm_order_and_output_max_len_do_not_matter() {
        let sorted = Match::builder()
            .ipv4_src(Ipv4Addr::new(10, 0, 0, 1))
            .build()
            .unwrap();
        let mut reversed = sorted.clone();
        reversed.fields.reverse();
        assert_ne!(sorted, reversed);
        let a = EntryKey::new(0, 5, &sorted);
        let b = EntryKey::new(0, 5, &reversed);
        assert_eq!(a, b);
        let i1 = [Instruction::ApplyActions(vec![Action::output(
            port::NORMAL,
        )])];
        let i2 = [Instruction::ApplyActions(vec![Action::Output {
            port: port::NORMAL,
            max_len: 0,
        }])];
        let mut t1 = FlowTable::new();
        t1.insert(a, &i1);
        let mut t2 = FlowTable::new();
        t2.insert(b, &i2);
        assert!(diff(&t1, &t2).is_empty());
    }

    #[test]
    fn diff_uses_the_three_strict_commands() {
        let goto = [Instruction::GotoTable(1)];
        let mut old = FlowTable::new();
        old.insert(key(0, 10, 1), &[]);
        old.insert(key(0, 10, 2), &[]);
        let mut new = FlowTable::new();
        new.insert(key(0, 10, 2), &goto);
        new.insert(key(0, 10, 3), &[]);
        let ops: Vec<_> = diff(&old, &new)
            .into_iter()
            .map(|(o, k, _)| (o, (**k).clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                (FlowOp::Delete, key(0, 10, 1)),
                (FlowOp::Modify, key(0, 10, 2)),
                (FlowOp::Add, key(0, 10, 3)),
            ]
        );
    }

    #[test]
    fn ofctl_lines_read_like_dump_flows() {
        let k = key(0, 65535, 1);
        assert_eq!(
            ofctl_line(&k, &[Instruction::GotoTable(1)]),
            " table=0, priority=65535,ip,nw_src=10.0.0.1 actions=goto_table:1"
        );
        let any = EntryKey::new(1, 0, &Match::any());
        assert_eq!(
            ofctl_line(
                &any,
                &[Instruction::ApplyActions(vec![Action::output(
                    port::NORMAL
                )])]
            ),
            " table=1, priority=0 actions=NORMAL"
        );
        let ip = EntryKey::new(0, 1, &Match::builder().eth_type(0x0800).build().unwrap());
        assert_eq!(ofctl_line(&ip, &[]), " table=0, priority=1,ip actions=drop");
        let tcp = EntryKey::new(
            0,
            1,
            &Match::builder()
                .tcp_dst(80)
                .eth_type(0x0800)
                .build()
                .unwrap(),
        );
        assert_eq!(
            ofctl_line(&tcp, &[]),
            " table=0, priority=1,tcp,tp_dst=80 actions=drop"
        );
    }

    #[test]
    fn a_merged_delta_applies_like_both_in_turn() {
        let shared = |k: EntryKey| Arc::new(k);
        let goto: Instructions = vec![Instruction::GotoTable(1)].into();
        let meter = |rate| DropMeter {
            flags: 0,
            rate,
            burst_size: 1,
        };
        let first = DesiredDelta {
            flows: vec![
                (shared(key(0, 1, 1)), Some(goto.clone())),
                (shared(key(0, 1, 2)), Some(goto.clone())),
            ],
            meters: [(1, meter(10))].into(),
        };
        let second = DesiredDelta {
            flows: vec![
                (shared(key(0, 1, 1)), None),
                (shared(key(0, 1, 3)), Some(goto.clone())),
            ],
            meters: [(2, meter(20))].into(),
        };
        let mut start = Desired::default();
        start.flows.insert(key(0, 1, 1), &[]);
        let mut in_turn = start.clone();
        in_turn.apply(&first);
        in_turn.apply(&second);
        let mut merged = first.clone();
        merged.merge(second);
        assert_eq!(merged.flows.len(), 3, "one change per key");
        let mut at_once = start;
        at_once.apply(&merged);
        assert_eq!(at_once, in_turn);
    }

    fn arb_table() -> impl Strategy<Value = FlowTable> {
        // Small key space so old and new share keys often.
        proptest::collection::vec((0u8..2, 0u16..3, 0u8..4, 0u8..3), 0..24).prop_map(|v| {
            let mut t = FlowTable::new();
            for (table, prio, host, action) in v {
                let instr = match action {
                    0 => vec![],
                    1 => vec![Instruction::GotoTable(1)],
                    _ => vec![Instruction::ApplyActions(vec![Action::output(
                        port::NORMAL,
                    )])],
                };
                t.insert(key(table, prio, host), &instr);
            }
            t
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_gives_the_new_table(old in arb_table(), new in arb_table()) {
            let ops = diff(&old, &new);
            let mut t = old.clone();
            for (op, k, i) in &ops {
                t.apply(*op, k, i);
            }
            prop_assert_eq!(&t, &new);
            let differing = old
                .iter()
                .map(|(k, _)| k)
                .chain(new.iter().map(|(k, _)| k))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| old.get(k) != new.get(k))
                .count();
            prop_assert_eq!(ops.len(), differing);
            for (op, k, _) in &ops {
                prop_assert_eq!(old.op_towards(&new, k), Some(*op));
            }
        }
    }
}
