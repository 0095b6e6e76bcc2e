//! The lowering over real compiled policies: the embedded default, the classic experiment
//! (examples/classic.toml: hosts start cleared) and `auth >> learn` become the desired
//! tables a session installs, and policy deltas become the entry-level changes that keep
//! that table equal to a fresh lowering.

mod common;

use common::CLASSIC_TOML;
use reflex::config::Config;
use reflex::lower::table::{desired_delta, desired_table, flow_table};
use reflex::lower::translate::{TranslateConfig, TranslatedRule};
use reflex::openflow::learning::LearningConfig;
use reflex::openflow::session::{Phase, Session, SessionConfig};
use reflex::openflow::table::{learning_miss_entry, Desired};
use reflex::openflow::{
    port, Action, FlowModCommand, Instruction, Message, CONTROLLER_MAX_LEN_NO_BUFFER,
};
use reflex::policy::engine::PolicyEngine;
use reflex_testkit::switch::EmulatedSwitch;

const LEARN_TABLE: u8 = 250;

/// The classic experiment's policy (hosts start cleared), with `main` if given.
fn classic(main: Option<&str>) -> PolicyEngine {
    let mut config = Config::from_toml(CLASSIC_TOML, "classic").expect("classic config");
    if let Some(m) = main {
        config.policy.main = m.into();
    }
    config.build().expect("policy").policy
}

fn learn_translate() -> TranslateConfig {
    TranslateConfig {
        learning_table: Some(LEARN_TABLE),
        ..Default::default()
    }
}

fn take(s: &mut Session) -> Vec<(u32, Message)> {
    reflex_testkit::switch::take_session_output(s)
}

/// A session through the handshake with an emulated switch that has no ports and an empty
/// table.
fn ready_session(cfg: SessionConfig) -> Session {
    let mut s = Session::new(0, cfg);
    EmulatedSwitch::new(1, 0)
        .converse(0, &mut s)
        .expect("handshake");
    assert_eq!(s.phase(), Phase::Ready);
    s
}

/// The embedded default's policy (hosts start authenticated).
fn default_engine() -> PolicyEngine {
    Config::embedded()
        .expect("embedded config")
        .build()
        .expect("policy")
        .policy
}

#[test]
fn the_default_policy_is_installed_whole_on_an_empty_switch() {
    // The classic policy drops unknown hosts' IPv4 (one more entry); the default passes all.
    for (e, entries) in [(classic(None), 3), (default_engine(), 2)] {
        installed_whole(e, entries);
    }
}

fn installed_whole(e: PolicyEngine, entries: usize) {
    let (desired, errors) = desired_table(&e.rules(), &e.meters(), &TranslateConfig::default());
    assert!(errors.is_empty());
    assert_eq!(desired.flows.len(), entries);
    let mut s = ready_session(SessionConfig::default());
    assert_eq!(s.sync(&desired), entries);
    let out = take(&mut s);
    let mods: Vec<_> = out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::FlowMod(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(mods.iter().all(|f| f.command == FlowModCommand::Add));
    let sent = flow_table(
        mods.iter()
            .map(|f| TranslatedRule {
                table_id: f.table_id,
                priority: f.priority,
                match_: f.match_.clone(),
                instructions: f.instructions.clone(),
            })
            .collect::<Vec<_>>()
            .iter(),
    );
    assert_eq!(sent, desired.flows);
}

#[test]
fn auth_then_learn_keeps_auth_in_front_and_ends_in_the_learning_miss_entry() {
    let e = classic(Some("auth >> learn"));
    let (d, errors) = desired_table(&e.rules(), &e.meters(), &learn_translate());
    assert!(errors.is_empty(), "{errors:?}");
    let (miss_key, miss) = learning_miss_entry(LEARN_TABLE);
    assert_eq!(d.flows.get(&miss_key), Some(&miss[..]));
    assert_eq!(
        miss,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: port::CONTROLLER,
            max_len: CONTROLLER_MAX_LEN_NO_BUFFER
        }])]
    );
    // auth's table 0 drops cleared hosts' IPv4 (its initial state) and passes the rest to
    // table 1, whose only rule continues to the learning table.
    let by_table = |t: u8| d.flows.iter().filter(move |(k, _)| k.table_id == t);
    assert!(by_table(0).any(|(_, i)| i.is_empty()), "auth's drop");
    assert!(by_table(0).any(|(_, i)| i == [Instruction::GotoTable(1)]));
    let last: Vec<_> = by_table(1).collect();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1, [Instruction::GotoTable(LEARN_TABLE)]);
    assert!(d
        .flows
        .iter()
        .all(|(k, _)| k.table_id <= 1 || k.table_id == LEARN_TABLE));
    // Without learning configured, `learn` cannot be translated; `normal` needs no table.
    let e = classic(None);
    let (plain, errors) = desired_table(&e.rules(), &e.meters(), &TranslateConfig::default());
    assert!(errors.is_empty());
    assert!(plain.flows.iter().all(|(k, _)| k.table_id != LEARN_TABLE));
}

#[test]
fn a_learning_session_installs_the_lowered_auth_then_learn_table() {
    let e = classic(Some("auth >> learn"));
    let (desired, _) = desired_table(&e.rules(), &e.meters(), &learn_translate());
    let mut s = ready_session(SessionConfig {
        learning: Some(LearningConfig {
            table_id: LEARN_TABLE,
            ..LearningConfig::default()
        }),
        ..SessionConfig::default()
    });
    assert_eq!(s.sync(&desired), desired.flows.len());
    take(&mut s);
    assert_eq!(s.installed(), &desired.flows);
}

/// An `auth` event: `host` goes to `state`, untimed.
fn auth_event(host: &str, state: &str) -> reflex::policy::Event {
    reflex::policy::Event {
        module: "auth".into(),
        key: host.into(),
        state: state.into(),
        hold_ns: None,
        then: None,
    }
}

/// Applies each event's lowered delta to the desired table and checks it equals a fresh
/// lowering; the deltas merged (an OpenFlow thread that lagged) land on the same table.
fn check_deltas(mut e: PolicyEngine, cfg: TranslateConfig, events: &[(&str, &str)]) {
    let (mut desired, _) = desired_table(&e.rules(), &e.meters(), &cfg);
    let mut merged: Option<reflex::openflow::table::DesiredDelta> = None;
    let mut lagging: Desired = desired.clone();
    let now = 0;
    for &(host, state) in events {
        let ev = auth_event(host, state);
        let (_, delta) = e.apply_event(&ev, now).expect("event");
        let (d, errors) = desired_delta(&delta, &e.meters(), &cfg);
        assert!(errors.is_empty());
        assert!(!d.is_empty(), "{host} {state} changes entries");
        desired.apply(&d);
        let (fresh, _) = desired_table(&e.rules(), &e.meters(), &cfg);
        assert_eq!(desired, fresh, "after {host} {state}");
        // Deltas the OpenFlow thread did not take in time, merged, land on the same table.
        match merged.as_mut() {
            None => merged = Some(d),
            Some(m) => m.merge(d),
        }
    }
    if let Some(m) = merged {
        lagging.apply(&m);
    }
    assert_eq!(lagging, desired);
}

const EVENTS: [(&str, &str); 4] = [
    ("10.0.0.1", "authenticated"),
    ("10.0.0.2", "authenticated"),
    ("10.0.0.1", "clear"),
    ("10.0.0.3", "authenticated"),
];

#[test]
fn deltas_keep_the_desired_table_equal_to_a_fresh_lowering() {
    check_deltas(classic(None), TranslateConfig::default(), &EVENTS);
}

fn guarded() -> TranslateConfig {
    TranslateConfig {
        stale_flow_guard: true,
        ..Default::default()
    }
}

/// The embedded default (hosts start authenticated) with a third state, `limited` (IPv4
/// through a meter): blocks add per-host restricting rules instead of removing them.
fn permissive_engine() -> PolicyEngine {
    let mut config = Config::embedded().expect("embedded config");
    let auth = config
        .modules
        .iter_mut()
        .find(|m| m.name == "auth")
        .expect("auth");
    assert_eq!(auth.initial, "authenticated");
    auth.states.insert(
        "limited".into(),
        "if_(match(eth_type=0x0800), meter(500), identity)".into(),
    );
    config.build().expect("policy").policy
}

#[test]
fn guarded_deltas_keep_the_desired_table_equal_to_a_fresh_lowering() {
    check_deltas(classic(None), guarded(), &EVENTS);
    check_deltas(
        permissive_engine(),
        guarded(),
        &[
            ("10.0.0.1", "clear"),
            ("10.0.0.2", "limited"),
            ("10.0.0.1", "limited"),
            ("10.0.0.2", "clear"),
            ("10.0.0.1", "authenticated"),
            ("10.0.0.2", "authenticated"),
        ],
    );
}

/// The stale-flow guard: every IP entry that drops or meters is four, one per ECN value,
/// with the same instructions; entries that pass stay single.
#[test]
fn the_guard_splits_restricting_ip_entries_by_ecn_and_nothing_else() {
    let count = |d: &Desired, restricting: bool| {
        d.flows
            .iter()
            .filter(|(_, i)| {
                (i.is_empty() || i.iter().any(|x| matches!(x, Instruction::Meter(_))))
                    == restricting
            })
            .count()
    };
    let ecn = |d: &Desired| {
        d.flows
            .iter()
            .filter(|(k, _)| reflex::openflow::table::ofctl_line(k, &[]).contains("nw_ecn="))
            .count()
    };
    let mut e = permissive_engine();
    for (host, state) in [("10.0.0.1", "clear"), ("10.0.0.2", "limited")] {
        let ev = auth_event(host, state);
        let _ = e.apply_event(&ev, 0).expect("event");
    }
    let (plain, errors) = desired_table(&e.rules(), &e.meters(), &TranslateConfig::default());
    assert!(errors.is_empty());
    let (guard, errors) = desired_table(&e.rules(), &e.meters(), &guarded());
    assert!(errors.is_empty());
    assert_eq!(ecn(&plain), 0);
    assert!(count(&plain, true) >= 2, "a drop and a meter: {plain:?}");
    assert_eq!(count(&guard, true), 4 * count(&plain, true));
    assert_eq!(count(&guard, false), count(&plain, false));
    assert_eq!(ecn(&guard), count(&guard, true));
    for v in 0..4 {
        let needle = format!("nw_ecn={v}");
        assert_eq!(
            guard
                .flows
                .iter()
                .filter(|(k, _)| reflex::openflow::table::ofctl_line(k, &[]).contains(&needle))
                .count(),
            count(&plain, true),
            "{needle}"
        );
    }
}
