//! Property tests tying the policy compiler to the reference interpreter:
//! compiled rule tables give the interpreter's outputs on every packet, and incremental
//! deltas give the same tables (and the same deltas) as a full recompile + diff.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use reflex::policy::{
    diff, eval, parse_policy, run_pipeline, Compiler, Delta, Field, FsmTable, Match, ModuleDef,
    ModuleKey, Packet, Policy, Pred, RuleActions, RuleKey,
};

const HOSTS: [u128; 3] = [0x0a00_0001, 0x0a00_0002, 0x0a00_0003];
const MACS: [u128; 2] = [1, 2];

fn test_leaf() -> impl Strategy<Value = (Field, Match)> {
    let v4 = |s: &str| Field::Ipv4Src.parse_match(s).unwrap();
    prop_oneof![
        (1u128..4).prop_map(|v| (Field::InPort, Match::exact(Field::InPort, v))),
        prop::sample::select(MACS.to_vec())
            .prop_map(|v| (Field::EthSrc, Match::exact(Field::EthSrc, v))),
        prop::sample::select(vec![
            v4("10.0.0.1"),
            v4("10.0.0.2"),
            v4("10.0.0.3"),
            v4("10.0.0.0/31"),
            v4("10.0.0.2/31"),
            v4("0.0.0.0/0"),
        ])
        .prop_map(|m| (Field::Ipv4Src, m)),
        prop::sample::select(vec![22u128, 80])
            .prop_map(|v| (Field::TcpDst, Match::exact(Field::TcpDst, v))),
        (1u128..3).prop_map(|v| (Field::VlanVid, Match::exact(Field::VlanVid, v))),
    ]
}

fn pred() -> impl Strategy<Value = Pred> {
    let leaf = prop_oneof![
        1 => Just(Pred::True),
        1 => Just(Pred::False),
        6 => test_leaf().prop_map(|(f, m)| Pred::Test(f, m)),
    ];
    leaf.prop_recursive(3, 10, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::and(a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::or(a, b)),
            inner.prop_map(Pred::not),
        ]
    })
}

fn modify() -> impl Strategy<Value = Policy> {
    prop_oneof![
        prop::sample::select(HOSTS.to_vec()).prop_map(|v| vec![(Field::Ipv4Src, v)]),
        prop::sample::select(vec![22u128, 80]).prop_map(|v| vec![(Field::TcpDst, v)]),
        (1u128..3).prop_map(|v| vec![(Field::VlanVid, v)]),
        prop::sample::select(MACS.to_vec()).prop_map(|v| vec![(Field::EthSrc, v)]),
    ]
    .prop_map(Policy::Modify)
}

/// Random policies; `modules` = number of modules they may refer to.
fn policy(modules: usize) -> impl Strategy<Value = Policy> {
    let mut leaves: Vec<(u32, BoxedStrategy<Policy>)> = vec![
        (1, Just(Policy::Identity).boxed()),
        (1, Just(Policy::Drop).boxed()),
        (3, pred().prop_map(Policy::Filter).boxed()),
        (2, modify().boxed()),
        (2, (1u32..4).prop_map(Policy::Fwd).boxed()),
        (1, Just(Policy::Flood).boxed()),
        (1, Just(Policy::Normal).boxed()),
        (1, Just(Policy::Learn).boxed()),
        (
            1,
            prop::sample::select(vec![10u32, 100])
                .prop_map(Policy::Meter)
                .boxed(),
        ),
    ];
    if modules > 0 {
        leaves.push((2, (0..modules).prop_map(Policy::Module).boxed()));
    }
    let leaf = prop::strategy::Union::new_weighted(leaves);
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Policy::seq(a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Policy::par(a, b)),
            (pred(), inner.clone(), inner).prop_map(|(c, a, b)| Policy::if_(c, a, b)),
        ]
    })
}

/// State policies that only drop or pass (so the module gets its own table).
fn filter_like() -> impl Strategy<Value = Policy> {
    let leaf = prop_oneof![
        Just(Policy::Identity),
        Just(Policy::Drop),
        pred().prop_map(Policy::Filter),
        prop::sample::select(vec![10u32, 100]).prop_map(Policy::Meter),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Policy::seq(a, b)),
            (pred(), inner.clone(), inner).prop_map(|(c, a, b)| Policy::if_(c, a, b)),
        ]
    })
}

fn state_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![3 => filter_like(), 1 => policy(0)]
}

fn modules() -> impl Strategy<Value = Vec<ModuleDef>> {
    (
        prop::collection::vec(state_policy(), 2),
        prop::collection::vec(state_policy(), 1),
    )
        .prop_map(|(a, b)| {
            let mut pa = vec![Policy::Identity];
            pa.extend(a);
            let mut pb = vec![Policy::Identity];
            pb.extend(b);
            vec![
                ModuleDef {
                    name: "auth".into(),
                    key: ModuleKey::single(Field::Ipv4Src),
                    states: vec!["ok".into(), "s1".into(), "s2".into()],
                    initial: "ok".into(),
                    transitions: None,
                    policies: pa,
                },
                ModuleDef {
                    name: "mac".into(),
                    key: ModuleKey::single(Field::EthSrc),
                    states: vec!["ok".into(), "s1".into()],
                    initial: "ok".into(),
                    transitions: None,
                    policies: pb,
                },
            ]
        })
}

fn main_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        policy(2),
        policy(2).prop_map(|p| Policy::seq(Policy::Module(0), p)),
        policy(2).prop_map(|p| Policy::seq(Policy::Module(0), Policy::seq(Policy::Module(1), p))),
        policy(0).prop_map(|p| Policy::seq(Policy::seq(Policy::Module(1), Policy::Module(0)), p)),
        Just(Policy::seq(Policy::Module(0), Policy::Normal)),
        Just(Policy::seq(Policy::Module(0), Policy::Learn)),
    ]
}

/// (module, key index, state) settings.
fn settings() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..3, 0usize..3).prop_map(|(k, s)| (0, k, s)),
            (0usize..2, 0usize..2).prop_map(|(k, s)| (1, k, s)),
        ],
        0..8,
    )
}

fn key_of(m: usize, k: usize) -> u128 {
    if m == 0 {
        HOSTS[k]
    } else {
        MACS[k]
    }
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        prop::option::of(1u128..5),
        prop::option::of(prop_oneof![
            prop::sample::select(MACS.to_vec()),
            0u128..(1 << 48)
        ]),
        prop::option::of(prop_oneof![
            prop::sample::select(vec![0x0a00_0000u128, 0x0a00_0001, 0x0a00_0002, 0x0a00_0003]),
            0u128..(1 << 32)
        ]),
        prop::option::of(prop_oneof![
            prop::sample::select(vec![22u128, 80]),
            0u128..65536
        ]),
        prop::option::of(0u128..4),
        prop::option::of(Just(6u128)),
    )
        .prop_map(|(port, mac, ip, tcp, vlan, proto)| {
            let mut p = Packet::new(1);
            for (f, v) in [
                (Field::InPort, port),
                (Field::EthSrc, mac),
                (Field::Ipv4Src, ip),
                (Field::TcpDst, tcp),
                (Field::VlanVid, vlan),
                (Field::IpProto, proto),
            ] {
                if let Some(v) = v {
                    p.set(f, v);
                }
            }
            p
        })
}

fn fsm_with(defs: Vec<ModuleDef>, settings: &[(usize, usize, usize)]) -> FsmTable {
    let mut t = FsmTable::new(defs).unwrap();
    for &(m, k, s) in settings {
        let _ = t.set(m, key_of(m, k), s, None, 0).unwrap();
    }
    t
}

fn as_map(rules: &[reflex::policy::Rule]) -> HashMap<RuleKey, RuleActions> {
    rules.iter().map(|r| (r.key(), r.actions.clone())).collect()
}

fn canon(
    mut d: Delta,
) -> (
    Vec<RuleKey>,
    Vec<reflex::policy::Rule>,
    Vec<reflex::policy::Rule>,
) {
    d.removed.sort();
    let by_key = |a: &reflex::policy::Rule, b: &reflex::policy::Rule| a.key().cmp(&b.key());
    d.added.sort_by(by_key);
    d.modified.sort_by(by_key);
    (d.removed, d.added, d.modified)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn compiled_rules_agree_with_interpreter(
        defs in modules(),
        main in main_policy(),
        set in settings(),
        pkts in prop::collection::vec(packet(), 24),
    ) {
        let t = fsm_with(defs, &set);
        let c = Compiler::new(&main, &t).unwrap();
        let rules = c.rules();
        let mut probe = pkts;
        // Also every host and MAC with an instance.
        for (i, &h) in HOSTS.iter().enumerate() {
            probe.push(Packet::new(1).with(Field::Ipv4Src, h).with(Field::EthSrc, MACS[i % 2]).with(Field::InPort, 1));
        }
        for p in &probe {
            let want: BTreeSet<Packet> = eval(&main, t.modules(), &|m, k| t.state_id(m, k), p)
                .into_iter()
                .filter(|q| q.out.is_some())
                .collect();
            let got = run_pipeline(&rules, &|id| c.meter_rate(id), p);
            prop_assert_eq!(got, want, "packet {:?}\nrules {:#?}", p, rules);
        }
    }

    #[test]
    fn incremental_deltas_equal_full_recompile(
        defs in modules(),
        main in main_policy(),
        start in settings(),
        events in settings(),
    ) {
        let mut t = fsm_with(defs, &start);
        let mut c = Compiler::new(&main, &t).unwrap();
        let mut installed = as_map(&c.rules());
        let mut prev = c.rules();
        for (m, k, s) in events {
            let Some(change) = t.set(m, key_of(m, k), s, None, 0).unwrap() else { continue };
            let delta = c.on_change(&change).unwrap();
            delta.apply_to(&mut installed);
            let full = Compiler::new(&main, &t).unwrap().rules();
            prop_assert_eq!(&installed, &as_map(&full));
            prop_assert_eq!(&as_map(&c.rules()), &as_map(&full));
            prop_assert_eq!(canon(delta), canon(diff(&prev, &full)));
            prev = full;
        }
    }

    #[test]
    fn printed_policies_parse_back(main in policy(2)) {
        let names = |m: usize| ["auth", "mac"][m].to_string();
        let text = main.display(&names).to_string();
        let back = parse_policy(&text, &|n| ["auth", "mac"].iter().position(|x| *x == n)).unwrap();
        prop_assert_eq!(back, main);
    }
}
