//! The reference interpreter: the meaning of a policy, against which the compiler is tested.
//!
//! A policy maps one located packet to a set of located packets. `fwd`, `flood`, `normal`
//! and `learn` set the packet's output (Pyretic's `outport` field); a later one overrides an
//! earlier one. `normal` and `learn` are opaque outputs: the packet is handed to something
//! outside the policy (the switch's own pipeline; the reactive MAC-learning table, whose
//! flows the controller installs from PACKET_INs) and what happens there is not part of the
//! policy's meaning — so, e.g., `auth >> learn` means "what auth passes goes to learning".
//! A module reference dispatches on the packet's key field: the instance named by that value
//! applies the policy of its current state; packets without the field get the initial
//! state's policy (an absent instance is in its initial state).

use std::collections::BTreeSet;

use super::ast::{ModuleId, Policy, Pred};
use super::field::{Out, Packet};
use super::fsm::{ModuleDef, StateId};

/// True if the packet satisfies the predicate.
pub fn holds(pred: &Pred, pkt: &Packet) -> bool {
    match pred {
        Pred::True => true,
        Pred::False => false,
        Pred::Test(f, m) => pkt.get(*f).is_some_and(|v| m.matches(v)),
        Pred::And(a, b) => holds(a, pkt) && holds(b, pkt),
        Pred::Or(a, b) => holds(a, pkt) || holds(b, pkt),
        Pred::Not(a) => !holds(a, pkt),
    }
}

/// The set of packets `policy` produces from `pkt`, with module states from `state`.
pub fn eval(
    policy: &Policy,
    modules: &[ModuleDef],
    state: &dyn Fn(ModuleId, u128) -> StateId,
    pkt: &Packet,
) -> BTreeSet<Packet> {
    let mut out = BTreeSet::new();
    eval_into(policy, modules, state, pkt, &mut out);
    out
}

fn eval_into(
    policy: &Policy,
    modules: &[ModuleDef],
    state: &dyn Fn(ModuleId, u128) -> StateId,
    pkt: &Packet,
    out: &mut BTreeSet<Packet>,
) {
    let mut one = |f: &dyn Fn(&mut Packet)| {
        let mut p = *pkt;
        f(&mut p);
        out.insert(p);
    };
    match policy {
        Policy::Identity => one(&|_| {}),
        Policy::Drop => {}
        Policy::Filter(c) => {
            if holds(c, pkt) {
                one(&|_| {});
            }
        }
        Policy::Modify(sets) => one(&|p| {
            for &(f, v) in sets {
                p.set(f, v);
            }
        }),
        Policy::Fwd(port) => one(&|p| p.out = Some(Out::Port(*port))),
        Policy::Flood => one(&|p| p.out = Some(Out::Flood)),
        Policy::Normal => one(&|p| p.out = Some(Out::Normal)),
        Policy::Learn => one(&|p| p.out = Some(Out::Learn)),
        Policy::Meter(rate) => one(&|p| p.add_meter(*rate)),
        Policy::Seq(a, b) => {
            for q in eval(a, modules, state, pkt) {
                eval_into(b, modules, state, &q, out);
            }
        }
        Policy::Par(a, b) => {
            eval_into(a, modules, state, pkt, out);
            eval_into(b, modules, state, pkt, out);
        }
        Policy::If(c, a, b) => {
            let branch = if holds(c, pkt) { a } else { b };
            eval_into(branch, modules, state, pkt, out);
        }
        Policy::Module(m) => {
            let Some(def) = modules.get(*m) else {
                return;
            };
            let s = match def.key.of_packet(pkt) {
                Some(key) => state(*m, key),
                None => def.initial_id(),
            };
            if let Some(p) = def.policies.get(s) {
                eval_into(p, modules, state, pkt, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::field::{Field, Match};
    use crate::policy::key::ModuleKey;
    use crate::policy::parse::parse_policy;

    fn auth() -> ModuleDef {
        ModuleDef {
            name: "auth".into(),
            key: ModuleKey::single(Field::Ipv4Src),
            states: vec!["authenticated".into(), "clear".into(), "limited".into()],
            initial: "authenticated".into(),
            transitions: None,
            policies: vec![Policy::Identity, Policy::Drop, Policy::Meter(10)],
        }
    }

    fn run(src: &str, pkt: &Packet) -> BTreeSet<Packet> {
        let mods = [auth()];
        let p = parse_policy(src, &|n| (n == "auth").then_some(0)).unwrap();
        // 10.0.0.1 is cleared, 10.0.0.2 limited, the rest authenticated.
        eval(
            &p,
            &mods,
            &|_, k| match k {
                0x0a00_0001 => 1,
                0x0a00_0002 => 2,
                _ => 0,
            },
            pkt,
        )
    }

    fn pkt(src: u128) -> Packet {
        Packet::new(7)
            .with(Field::InPort, 1)
            .with(Field::Ipv4Src, src)
            .with(Field::TcpDst, 80)
    }

    fn set(pkts: &[Packet]) -> BTreeSet<Packet> {
        pkts.iter().copied().collect()
    }

    #[test]
    fn identity_drop_filter() {
        let p = pkt(0x0a00_0003);
        assert_eq!(run("identity", &p), set(&[p]));
        assert!(run("drop", &p).is_empty());
        assert_eq!(run("filter(match(tcp_dst=80))", &p), set(&[p]));
        assert!(run("filter(match(tcp_dst=81))", &p).is_empty());
        // A test on an absent field fails, and so its negation holds.
        assert!(run("filter(match(udp_dst=80))", &p).is_empty());
        assert_eq!(run("filter(!match(udp_dst=80))", &p), set(&[p]));
        assert_eq!(
            run("filter(match(ip_src=10.0.0.0/8) & !false)", &p),
            set(&[p])
        );
        assert_eq!(run("filter(match(tcp_dst=1) | true)", &p), set(&[p]));
    }

    #[test]
    fn modify_fwd_flood_normal_meter() {
        let p = pkt(0x0a00_0003);
        let mut q = p.with(Field::TcpDst, 8080).with(Field::VlanVid, 3);
        assert_eq!(run("modify(tcp_dst=8080, vlan=3)", &p), set(&[q]));
        q = p;
        q.out = Some(Out::Port(4));
        assert_eq!(run("fwd(2) >> fwd(4)", &p), set(&[q]));
        q.out = Some(Out::Flood);
        assert_eq!(run("flood", &p), set(&[q]));
        q.out = Some(Out::Normal);
        assert_eq!(run("normal", &p), set(&[q]));
        q.out = Some(Out::Learn);
        assert_eq!(run("learn", &p), set(&[q]));
        // Like `normal`, a later output overrides; a drop in front keeps the packet out.
        assert_eq!(run("learn >> fwd(2) >> learn", &p), set(&[q]));
        assert!(run("drop >> learn", &p).is_empty());
        q.out = None;
        q.meter = Some(5);
        assert_eq!(run("meter(5) >> meter(9)", &p), set(&[q]));
    }

    #[test]
    fn sequential_and_parallel_composition() {
        let p = pkt(0x0a00_0003);
        let r = run("(fwd(1) + fwd(2)) >> (identity + modify(tcp_dst=1))", &p);
        assert_eq!(r.len(), 4);
        let r = run(
            "modify(tcp_dst=22) >> filter(match(tcp_dst=22)) >> fwd(9)",
            &p,
        );
        let mut q = p.with(Field::TcpDst, 22);
        q.out = Some(Out::Port(9));
        assert_eq!(r, set(&[q]));
        assert_eq!(run("fwd(1) + fwd(1)", &p).len(), 1);
        assert!(run("drop >> fwd(1)", &p).is_empty());
    }

    #[test]
    fn if_then_else() {
        let src = "if_(match(tcp_dst=80), fwd(1), fwd(2))";
        let p = pkt(0x0a00_0003);
        let out: Vec<_> = run(src, &p).into_iter().map(|q| q.out).collect();
        assert_eq!(out, vec![Some(Out::Port(1))]);
        let p2 = p.with(Field::TcpDst, 81);
        let out: Vec<_> = run(src, &p2).into_iter().map(|q| q.out).collect();
        assert_eq!(out, vec![Some(Out::Port(2))]);
    }

    #[test]
    fn modules_dispatch_on_their_key() {
        let cleared = pkt(0x0a00_0001);
        let limited = pkt(0x0a00_0002);
        let fine = pkt(0x0a00_0003);
        assert!(run("auth >> normal", &cleared).is_empty());
        assert_eq!(run("auth >> normal", &fine).len(), 1);
        let r = run("auth >> normal", &limited);
        assert_eq!(r.iter().next().and_then(|q| q.meter), Some(10));
        // No key field: the initial state's policy.
        let arp = Packet::new(7).with(Field::EthType, 0x806);
        assert_eq!(run("auth", &arp), set(&[arp]));
        // The module sees the packet as modified before it.
        assert!(run("modify(ip_src=10.0.0.1) >> auth", &fine).is_empty());
        let _ = Match::exact(Field::InPort, 1);
    }
}
