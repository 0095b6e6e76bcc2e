//! Compiled policy rules → OpenFlow 1.3 flow entries and meters.
//!
//! The policy compiler reasons about packet fields independently; OpenFlow needs each
//! field's prerequisites (an IPv4 address implies eth_type 0x0800, a TCP port ip_proto 6).
//! This module adds them, splits a rule whose IP version is open (a bare `tcp_dst=80`)
//! into an IPv4 and an IPv6 entry at the same priority (they never overlap), maps ICMP to
//! ICMPv4 or ICMPv6 by version, and drops rules no real packet can match (`tcp_dst` with
//! `ip_proto=17`). Meters become meter instructions, outputs and rewrites apply-actions.
//!
//! `learn` (the reactive MAC-learning output) becomes `goto_table` to the learning table
//! ([`TranslateConfig::learning_table`]), whose flows the controller installs from
//! PACKET_INs. Apply-actions run before the goto, so the packet reaches the learning table
//! as the whole action list leaves it: a rule is refused if a rewrite follows its `learn`
//! output (the learnt copy would see it), or if `learn` sits in a group bucket (a bucket
//! cannot continue the pipeline).
//!
//! A pattern's matches come back inline ([`Matches`], at most two) and a policy meter is a
//! [`DropMeter`] by value, so lowering a rule allocates only what its entries keep.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::openflow::{
    meter_flags, port, Action, DropMeter, Instruction, Match, MatchBuilder, OxmField,
    OFPVID_PRESENT,
};
use crate::policy::{self, Field, Out};

/// Where the outputs that leave the compiled pipeline go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranslateConfig {
    /// The MAC-learning table `learn` continues to; `None` when reactive mode is off (and
    /// `learn` cannot be translated).
    pub learning_table: Option<u8>,
    /// Split every IP entry that restricts traffic (drops it or meters it) into four, one
    /// per ECN value, so that a switch's datapath cache can never carry a flow across a
    /// block or a re-admission (see [`super::table`]'s module docs: the stale-flow guard).
    pub stale_flow_guard: bool,
}

/// A flow entry ready for a FLOW_MOD (no timeouts: Reflex expires state itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TranslatedRule {
    pub table_id: u8,
    pub priority: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

/// Why a rule cannot be expressed in OpenFlow 1.3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("field {0} cannot be matched under a partial mask in OpenFlow 1.3")]
    Unmaskable(&'static str),
    #[error("policy copies packets with different rewrites (OpenFlow groups are not used yet)")]
    Group,
    #[error("invalid match: {0}")]
    Match(String),
    #[error("policy uses `learn` but no learning table is configured")]
    LearnOff,
    #[error("`learn` must come after every rewrite of its rule (the learning table sees the packet as the actions leave it)")]
    LearnNotLast,
    #[error("`learn` cannot be one copy of a group (a group bucket cannot continue the pipeline)")]
    LearnInGroup,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V6,
}

/// The matches one pattern becomes: none (no packet can match), one, or an IPv4 and an
/// IPv6 twin. Held inline: a pattern never needs more than two.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    items: [Match; 2],
    len: usize,
}

impl Matches {
    fn push(&mut self, m: Match) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = m;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for Matches {
    type Target = [Match];

    fn deref(&self) -> &[Match] {
        self.items.get(..self.len).unwrap_or(&[])
    }
}

/// Translates one compiled rule into one or two flow entries (none if no packet can match).
pub fn translate_rule(
    rule: &policy::Rule,
    cfg: &TranslateConfig,
) -> Result<Vec<TranslatedRule>, TranslateError> {
    let instructions = translate_actions(&rule.actions, cfg)?;
    let matches = pattern_matches(&rule.pattern)?;
    Ok(matches
        .iter()
        .map(|m| TranslatedRule {
            table_id: rule.table,
            priority: rule.priority,
            match_: m.clone(),
            instructions: instructions.clone(),
        })
        .collect())
}

/// The OpenFlow matches of a policy pattern, prerequisites added (see the module docs).
/// An entry's key depends only on these, not on the rule's actions.
pub fn pattern_matches(pattern: &policy::Pattern) -> Result<Matches, TranslateError> {
    let get = |f: Field| pattern.get(f).copied();
    // Which IP versions can a packet matching this pattern have? (IPv4, IPv6)
    let mut versions = [true, true];
    let mut needs_ip = false;
    let mut restrict = |v4: bool, v6: bool| {
        versions[0] &= v4;
        versions[1] &= v6;
    };
    if let Some(m) = get(Field::EthType) {
        if m.mask != 0 {
            match m.value as u16 {
                0x0800 => restrict(true, false),
                0x86dd => restrict(false, true),
                _ => restrict(false, false),
            }
        }
    }
    if get(Field::Ipv4Src).is_some() || get(Field::Ipv4Dst).is_some() {
        restrict(true, false);
        needs_ip = true;
    }
    if get(Field::Ipv6Src).is_some() || get(Field::Ipv6Dst).is_some() {
        restrict(false, true);
        needs_ip = true;
    }
    let proto = get(Field::IpProto)
        .filter(|m| m.mask != 0)
        .map(|m| m.value as u8);
    let tcp = get(Field::TcpSrc).is_some() || get(Field::TcpDst).is_some();
    let udp = get(Field::UdpSrc).is_some() || get(Field::UdpDst).is_some();
    let icmp = get(Field::IcmpType).is_some() || get(Field::IcmpCode).is_some();
    if get(Field::IpProto).is_some() || tcp || udp || icmp {
        needs_ip = true;
    }
    let mut out = Matches::default();
    let l4_kinds = [tcp, udp, icmp].iter().filter(|&&b| b).count();
    if l4_kinds > 1 {
        return Ok(out);
    }
    let l4_proto = |v: Version| -> Option<u8> {
        if tcp {
            Some(6)
        } else if udp {
            Some(17)
        } else if icmp {
            Some(if v == Version::V4 { 1 } else { 58 })
        } else {
            None
        }
    };
    if !needs_ip && get(Field::EthType).is_none_or(|m| m.mask == 0) {
        // No IP in play: a single entry without version prerequisites.
        let b = common_fields(pattern, MatchBuilder::default())?;
        let m = b
            .build()
            .map_err(|e| TranslateError::Match(format!("{e:?}")))?;
        out.push(m);
        return Ok(out);
    }
    let allowed = [Version::V4, Version::V6]
        .into_iter()
        .zip(versions)
        .filter_map(|(v, ok)| ok.then_some(v));
    for v in allowed {
        let implied = l4_proto(v);
        let ip_proto = match (proto, implied) {
            (Some(p), Some(q)) if p != q => continue,
            (Some(p), _) => Some(p),
            (None, q) => q,
        };
        let mut b = common_fields(pattern, MatchBuilder::default())?;
        b = b.eth_type(if v == Version::V4 { 0x0800 } else { 0x86dd });
        if let Some(p) = ip_proto {
            b = b.ip_proto(p);
        }
        b = ip_fields(pattern, v, b)?;
        b = l4_fields(pattern, v, b)?;
        let m = b
            .build()
            .map_err(|e| TranslateError::Match(format!("{e:?}")))?;
        out.push(m);
    }
    Ok(out)
}

fn exact_or_err(
    f: Field,
    m: &policy::Match,
    name: &'static str,
) -> Result<Option<u128>, TranslateError> {
    if m.mask == 0 {
        Ok(None)
    } else if m.mask == f.full_mask() {
        Ok(Some(m.value))
    } else {
        Err(TranslateError::Unmaskable(name))
    }
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Fields that need no IP prerequisite: in_port, MACs, VLAN.
fn common_fields(
    pattern: &policy::Pattern,
    mut b: MatchBuilder,
) -> Result<MatchBuilder, TranslateError> {
    for (f, m) in pattern.tests() {
        if m.mask == 0 {
            continue;
        }
        b = match f {
            Field::InPort => match exact_or_err(*f, m, "in_port")? {
                Some(v) => b.in_port(v as u32),
                None => b,
            },
            Field::EthSrc | Field::EthDst => {
                let (addr, mask) = (mac(m.value), mac(m.mask));
                let full = m.mask == f.full_mask();
                match (f, full) {
                    (Field::EthSrc, true) => b.eth_src(addr),
                    (Field::EthSrc, false) => b.eth_src_masked(addr, mask),
                    (_, true) => b.eth_dst(addr),
                    (_, false) => b.eth_dst_masked(addr, mask),
                }
            }
            Field::VlanVid => {
                let vid = (m.value as u16) & 0x0fff;
                let mask = (m.mask as u16) & 0x0fff;
                b.field(OxmField::VlanVid {
                    vid: OFPVID_PRESENT | vid,
                    mask: (mask != 0x0fff).then_some(OFPVID_PRESENT | mask),
                })
            }
            Field::EthType => match exact_or_err(*f, m, "eth_type")? {
                Some(v) if v != 0x0800 && v != 0x86dd => b.eth_type(v as u16),
                _ => b,
            },
            _ => b,
        };
    }
    Ok(b)
}

fn ip_fields(
    pattern: &policy::Pattern,
    v: Version,
    mut b: MatchBuilder,
) -> Result<MatchBuilder, TranslateError> {
    for (f, m) in pattern.tests() {
        if m.mask == 0 {
            continue;
        }
        let full = m.mask == f.full_mask();
        b = match (f, v) {
            (Field::Ipv4Src, Version::V4) | (Field::Ipv4Dst, Version::V4) => {
                let addr = Ipv4Addr::from(m.value as u32);
                let mask = (!full).then(|| Ipv4Addr::from(m.mask as u32));
                if *f == Field::Ipv4Src {
                    b.field(OxmField::Ipv4Src { addr, mask })
                } else {
                    b.field(OxmField::Ipv4Dst { addr, mask })
                }
            }
            (Field::Ipv6Src, Version::V6) | (Field::Ipv6Dst, Version::V6) => {
                let addr = Ipv6Addr::from(m.value);
                let mask = (!full).then(|| Ipv6Addr::from(m.mask));
                if *f == Field::Ipv6Src {
                    b.field(OxmField::Ipv6Src { addr, mask })
                } else {
                    b.field(OxmField::Ipv6Dst { addr, mask })
                }
            }
            _ => b,
        };
    }
    Ok(b)
}

fn l4_fields(
    pattern: &policy::Pattern,
    v: Version,
    mut b: MatchBuilder,
) -> Result<MatchBuilder, TranslateError> {
    for (f, m) in pattern.tests() {
        let name = match f {
            Field::TcpSrc => "tcp_src",
            Field::TcpDst => "tcp_dst",
            Field::UdpSrc => "udp_src",
            Field::UdpDst => "udp_dst",
            Field::IcmpType => "icmp_type",
            Field::IcmpCode => "icmp_code",
            _ => continue,
        };
        let Some(x) = exact_or_err(*f, m, name)? else {
            continue;
        };
        b = match (f, v) {
            (Field::TcpSrc, _) => b.tcp_src(x as u16),
            (Field::TcpDst, _) => b.tcp_dst(x as u16),
            (Field::UdpSrc, _) => b.udp_src(x as u16),
            (Field::UdpDst, _) => b.udp_dst(x as u16),
            (Field::IcmpType, Version::V4) => b.icmpv4_type(x as u8),
            (Field::IcmpType, Version::V6) => b.icmpv6_type(x as u8),
            (Field::IcmpCode, Version::V4) => b.icmpv4_code(x as u8),
            (_, _) => b.icmpv6_code(x as u8),
        };
    }
    Ok(b)
}

/// The instruction list for a rule's actions (empty = drop).
pub fn translate_actions(
    actions: &[policy::Action],
    cfg: &TranslateConfig,
) -> Result<Vec<Instruction>, TranslateError> {
    let mut instructions = Vec::new();
    let mut apply = Vec::new();
    let mut goto = None;
    let mut learn = false;
    for a in actions {
        match a {
            policy::Action::Meter(id) => instructions.push(Instruction::Meter(*id)),
            policy::Action::Set(f, v) => {
                if learn {
                    return Err(TranslateError::LearnNotLast);
                }
                apply.push(Action::SetField(set_field(*f, *v)))
            }
            policy::Action::Output(Out::Learn) => {
                let t = cfg.learning_table.ok_or(TranslateError::LearnOff)?;
                if goto.is_some_and(|g| g != t) {
                    return Err(TranslateError::LearnNotLast);
                }
                goto = Some(t);
                learn = true;
            }
            policy::Action::Output(out) => apply.push(Action::output(match out {
                Out::Port(p) => *p,
                Out::Flood => port::FLOOD,
                Out::Normal => port::NORMAL,
                Out::Learn => return Err(TranslateError::LearnOff),
            })),
            policy::Action::Group(buckets) => {
                let learns = buckets
                    .iter()
                    .flatten()
                    .any(|a| matches!(a, policy::Action::Output(Out::Learn)));
                return Err(if learns {
                    TranslateError::LearnInGroup
                } else {
                    TranslateError::Group
                });
            }
            policy::Action::Goto(t) => {
                if learn && Some(*t) != goto {
                    return Err(TranslateError::LearnNotLast);
                }
                goto = Some(*t)
            }
        }
    }
    if !apply.is_empty() {
        instructions.push(Instruction::ApplyActions(apply));
    }
    if let Some(t) = goto {
        instructions.push(Instruction::GotoTable(t));
    }
    Ok(instructions)
}

fn set_field(f: Field, v: u128) -> OxmField {
    match f {
        Field::InPort => OxmField::InPort(v as u32),
        Field::EthSrc => OxmField::EthSrc {
            addr: mac(v),
            mask: None,
        },
        Field::EthDst => OxmField::EthDst {
            addr: mac(v),
            mask: None,
        },
        Field::EthType => OxmField::EthType(v as u16),
        Field::VlanVid => OxmField::VlanVid {
            vid: OFPVID_PRESENT | (v as u16 & 0x0fff),
            mask: None,
        },
        Field::IpProto => OxmField::IpProto(v as u8),
        Field::Ipv4Src => OxmField::Ipv4Src {
            addr: Ipv4Addr::from(v as u32),
            mask: None,
        },
        Field::Ipv4Dst => OxmField::Ipv4Dst {
            addr: Ipv4Addr::from(v as u32),
            mask: None,
        },
        Field::Ipv6Src => OxmField::Ipv6Src {
            addr: Ipv6Addr::from(v),
            mask: None,
        },
        Field::Ipv6Dst => OxmField::Ipv6Dst {
            addr: Ipv6Addr::from(v),
            mask: None,
        },
        Field::TcpSrc => OxmField::TcpSrc(v as u16),
        Field::TcpDst => OxmField::TcpDst(v as u16),
        Field::UdpSrc => OxmField::UdpSrc(v as u16),
        Field::UdpDst => OxmField::UdpDst(v as u16),
        Field::IcmpType => OxmField::Icmpv4Type(v as u8),
        Field::IcmpCode => OxmField::Icmpv4Code(v as u8),
    }
}

/// The meter for a policy meter of `rate_pps` packets per second: drop above the rate,
/// with a burst of a tenth of a second of traffic, counters on.
pub fn meter(rate_pps: u32) -> DropMeter {
    DropMeter {
        flags: meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS,
        rate: rate_pps.max(1),
        burst_size: (rate_pps / 10).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Match as PMatch, Pattern, Rule};

    fn rule(tests: Vec<(Field, PMatch)>, actions: Vec<policy::Action>) -> Rule {
        Rule {
            table: 0,
            priority: 100,
            pattern: Pattern::from_tests(tests).unwrap(),
            actions,
        }
    }

    #[test]
    fn an_ipv4_source_block_gets_its_ethertype_and_drops() {
        let r = rule(
            vec![(Field::Ipv4Src, PMatch::exact(Field::Ipv4Src, 0x0a00_0001))],
            vec![],
        );
        let t = translate_rule(&r, &TranslateConfig::default()).unwrap();
        assert_eq!(t.len(), 1);
        let expected = MatchBuilder::default()
            .ipv4_src(Ipv4Addr::new(10, 0, 0, 1))
            .build()
            .unwrap();
        assert_eq!(t[0].match_, expected);
        assert!(t[0].instructions.is_empty(), "empty = drop");
    }

    #[test]
    fn a_bare_tcp_port_splits_into_ipv4_and_ipv6() {
        let r = rule(
            vec![(Field::TcpDst, PMatch::exact(Field::TcpDst, 80))],
            vec![policy::Action::Output(Out::Normal)],
        );
        let t = translate_rule(&r, &TranslateConfig::default()).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|e| e.priority == 100));
        assert_eq!(
            t[0].instructions,
            vec![Instruction::ApplyActions(vec![Action::output(
                port::NORMAL
            )])]
        );
    }

    #[test]
    fn contradictory_protocols_yield_no_entry() {
        let r = rule(
            vec![
                (Field::TcpDst, PMatch::exact(Field::TcpDst, 80)),
                (Field::IpProto, PMatch::exact(Field::IpProto, 17)),
            ],
            vec![],
        );
        assert!(translate_rule(&r, &TranslateConfig::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn icmp_follows_the_ip_version() {
        let r = rule(
            vec![
                (Field::Ipv6Src, PMatch::exact(Field::Ipv6Src, 1)),
                (Field::IcmpType, PMatch::exact(Field::IcmpType, 128)),
            ],
            vec![],
        );
        let t = translate_rule(&r, &TranslateConfig::default()).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0]
            .match_
            .get(crate::openflow::oxm_field::ICMPV6_TYPE)
            .is_some());
    }

    #[test]
    fn meter_goto_and_rewrite_are_ordered_as_the_spec_executes() {
        let acts = vec![
            policy::Action::Meter(3),
            policy::Action::Set(Field::VlanVid, 10),
            policy::Action::Output(Out::Port(2)),
            policy::Action::Goto(1),
        ];
        let i = translate_actions(&acts, &TranslateConfig::default()).unwrap();
        assert!(matches!(i[0], Instruction::Meter(3)));
        assert!(matches!(i[1], Instruction::ApplyActions(ref a) if a.len() == 2));
        assert_eq!(i[2], Instruction::GotoTable(1));
    }

    #[test]
    fn partial_port_masks_are_refused() {
        let r = rule(
            vec![(
                Field::TcpDst,
                PMatch {
                    value: 0x100,
                    mask: 0xff00,
                },
            )],
            vec![],
        );
        assert_eq!(
            translate_rule(&r, &TranslateConfig::default()).unwrap_err(),
            TranslateError::Unmaskable("tcp_dst")
        );
    }

    #[test]
    fn the_match_everything_rule_has_an_empty_match() {
        let r = Rule {
            table: 1,
            priority: 0,
            pattern: Pattern::any(),
            actions: vec![policy::Action::Output(Out::Normal)],
        };
        let t = translate_rule(&r, &TranslateConfig::default()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].match_, Match::any());
        assert_eq!(t[0].table_id, 1);
    }

    #[test]
    fn learn_continues_to_the_learning_table_after_the_other_outputs() {
        let cfg = TranslateConfig {
            learning_table: Some(250),
            ..Default::default()
        };
        let acts = vec![
            policy::Action::Meter(1),
            policy::Action::Set(Field::VlanVid, 10),
            policy::Action::Output(Out::Port(2)),
            policy::Action::Output(Out::Learn),
        ];
        let i = translate_actions(&acts, &cfg).unwrap();
        assert_eq!(
            i,
            vec![
                Instruction::Meter(1),
                Instruction::ApplyActions(vec![
                    Action::SetField(set_field(Field::VlanVid, 10)),
                    Action::output(2)
                ]),
                Instruction::GotoTable(250),
            ]
        );
        let only = [policy::Action::Output(Out::Learn)];
        assert_eq!(
            translate_actions(&only, &cfg).unwrap(),
            vec![Instruction::GotoTable(250)]
        );
    }

    #[test]
    fn learn_is_refused_without_a_table_after_a_rewrite_or_in_a_group() {
        let on = TranslateConfig {
            learning_table: Some(250),
            ..Default::default()
        };
        let learn = policy::Action::Output(Out::Learn);
        assert_eq!(
            translate_actions(std::slice::from_ref(&learn), &TranslateConfig::default()),
            Err(TranslateError::LearnOff)
        );
        let rewrite_after = [learn.clone(), policy::Action::Set(Field::VlanVid, 3)];
        assert_eq!(
            translate_actions(&rewrite_after, &on),
            Err(TranslateError::LearnNotLast)
        );
        let group = [policy::Action::Group(vec![
            vec![learn],
            vec![policy::Action::Output(Out::Port(1))],
        ])];
        assert_eq!(
            translate_actions(&group, &on),
            Err(TranslateError::LearnInGroup)
        );
    }

    #[test]
    fn a_meter_drops_above_its_rate_with_a_tenth_of_a_second_of_burst() {
        let m = meter(1000);
        assert_eq!((m.rate, m.burst_size), (1000, 100));
        assert_eq!(
            m.flags,
            meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS
        );
        assert_eq!((meter(5).rate, meter(5).burst_size), (5, 1));
    }

    #[test]
    fn a_rules_entries_are_its_patterns_matches() {
        let r = rule(
            vec![(Field::TcpDst, PMatch::exact(Field::TcpDst, 80))],
            vec![policy::Action::Output(Out::Normal)],
        );
        let entries = translate_rule(&r, &TranslateConfig::default()).unwrap();
        let matches = pattern_matches(&r.pattern).unwrap();
        assert_eq!(matches.len(), 2);
        let of_entries: Vec<_> = entries.iter().map(|e| e.match_.clone()).collect();
        assert_eq!(&matches[..], &of_entries[..]);
    }
}
