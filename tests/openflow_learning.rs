//! Reactive mode through the real reflexd: with `main = "auth >> learn"`, a fake switch
//! gets the learning table's miss entry, its PACKET_INs are answered with flooding
//! PACKET_OUTs and learnt FLOW_MODs (decoded with the library codec), a cbench-like burst
//! gets one answer per PACKET_IN, and learnt flows found at reconnect are left alone.
//! Timings are never asserted.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{free_udp_port, Daemon, CLASSIC_TOML};
use reflex::lower::table::desired_table;
use reflex::lower::translate::TranslateConfig;
use reflex::openflow::learning::{emit_table_miss, LearningConfig};
use reflex::openflow::table::{learning_miss_entry, Desired, EntryKey};
use reflex::openflow::{
    port, Action, FlowModCommand, FlowStats, Instruction, Match, Message, NO_BUFFER,
};
use reflex_testkit::switch::{entry, FakeSwitch};

const LEARN_TABLE: u8 = 251;

/// The classic experiment (hosts start cleared, so authenticating one is one flow-mod),
/// reactive.
fn config() -> String {
    // Without the stale-flow guard: these tests count the classic table's entries.
    let text = CLASSIC_TOML
        .replace("main = \"auth >> normal\"", "main = \"auth >> learn\"")
        .replace("stale_flow_guard = true", "stale_flow_guard = false");
    assert!(text.contains("main = \"auth >> learn\"\n"));
    assert!(text.contains("stale_flow_guard = false"));
    text
}

fn start() -> Daemon {
    Daemon::start(
        &config(),
        &[
            "--sflow",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--workers",
            "1",
        ],
    )
}

/// The desired table of `auth >> learn` with no host authenticated.
fn desired() -> Desired {
    let config = reflex::config::Config::from_toml(&config(), "test").expect("config");
    let engine = config.build().expect("policy").policy;
    let (d, errors) = desired_table(
        &engine.rules(),
        &engine.meters(),
        &TranslateConfig {
            learning_table: Some(LEARN_TABLE),
            stale_flow_guard: config.openflow.stale_flow_guard,
        },
    );
    assert!(errors.is_empty());
    d
}

fn learning() -> LearningConfig {
    LearningConfig {
        table_id: LEARN_TABLE,
        ..LearningConfig::default()
    }
}

fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0, b[0], b[1], b[2], b[3]]
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0; 46]);
    f
}

fn packet_in(buffer_id: u32, in_port: u32, frame: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    emit_table_miss(&mut b, 0, buffer_id, in_port, LEARN_TABLE, frame);
    b
}

fn switch_json(d: &Daemon, dpid: &str) -> serde_json::Value {
    d.ctl_json(&["switches"])["switches"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["dpid"] == dpid)
        .cloned()
        .unwrap_or_default()
}

fn wait_in_sync(d: &Daemon, dpid: &str) -> serde_json::Value {
    d.wait_for(Duration::from_secs(20), "switch in sync", || {
        let s = switch_json(d, dpid);
        (s["in_sync"] == true && s["pending_barriers"] == 0).then_some(s)
    })
}

#[test]
fn packet_ins_from_the_learning_table_are_flooded_then_learnt() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 1);
    sw.handshake(&[]);
    let mods = sw.batch();
    let want = desired();
    assert_eq!(mods.len(), want.flows.len());
    assert_eq!(sw.table(), want.flows);
    let (miss_key, miss) = learning_miss_entry(LEARN_TABLE);
    assert_eq!(sw.table().get(&miss_key), Some(&miss[..]), "the miss entry");
    assert!(mods
        .iter()
        .any(|(_, f)| f.instructions == [Instruction::GotoTable(LEARN_TABLE)]));
    wait_in_sync(&d, "0000000000000001");

    // h1 (port 1) → h2: unknown, flooded with the frame itself.
    let f = frame(mac(2), mac(1));
    sw.send_raw(&packet_in(NO_BUFFER, 1, &f));
    let (_, m) = sw.next();
    let Message::PacketOut(po) = m else {
        panic!("expected a PACKET_OUT, got {m:?}")
    };
    assert_eq!((po.buffer_id, po.in_port, &po.data), (NO_BUFFER, 1, &f));
    assert_eq!(
        po.actions,
        vec![Action::Output {
            port: port::FLOOD,
            max_len: 0
        }]
    );
    // h2 (port 2) → h1: learnt on port 1, so a flow there and the frame sent along.
    let f = frame(mac(1), mac(2));
    sw.send_raw(&packet_in(NO_BUFFER, 2, &f));
    let (_, m) = sw.next();
    let Message::FlowMod(fm) = m else {
        panic!("expected a FLOW_MOD, got {m:?}")
    };
    let l = learning();
    assert_eq!(fm.command, FlowModCommand::Add);
    assert_eq!(
        (fm.table_id, fm.cookie, fm.idle_timeout, fm.priority),
        (LEARN_TABLE, l.cookie, 60, l.priority)
    );
    assert_eq!(
        fm.match_,
        Match::builder()
            .in_port(2)
            .eth_dst(mac(1))
            .build()
            .expect("match")
    );
    assert_eq!(
        fm.instructions,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: 1,
            max_len: 0
        }])]
    );
    let (_, m) = sw.next();
    assert!(
        matches!(&m, Message::PacketOut(p) if p.data == f && p.in_port == 2),
        "{m:?}"
    );
    // A buffered one is answered by the flow alone, releasing the buffer.
    sw.send_raw(&packet_in(41, 1, &frame(mac(2), mac(1))));
    let (_, m) = sw.next();
    assert!(
        matches!(&m, Message::FlowMod(f) if f.buffer_id == 41),
        "{m:?}"
    );
    assert!(sw.echo().is_empty(), "nothing else");

    let s = switch_json(&d, "0000000000000001");
    let l = &s["learning"];
    assert_eq!(s["packet_ins"], 3, "{s}");
    assert_eq!(
        (&l["floods"], &l["flows"], &l["shed"]),
        (&1.into(), &2.into(), &0.into())
    );
    assert_eq!(l["macs_learnt"], 2);
    assert_eq!(s["in_sync"], true, "learnt flows are not the policy's: {s}");
    let text = d.ctl(&["switches"]).expect("switches");
    assert!(
        text.contains("learning: 3 packet-ins: 2 flows, 1 floods"),
        "{text}"
    );
    // A policy delta after learning touches only the policy's entry, never learnt flows.
    d.auth("10.0.0.1", "authenticated").expect("event");
    let mods = sw.batch();
    assert_eq!(mods.len(), 1, "{mods:?}");
    assert_eq!(
        (mods[0].1.command, mods[0].1.table_id),
        (FlowModCommand::Add, 0)
    );
    assert!(sw.echo().is_empty());
    wait_in_sync(&d, "0000000000000001");
    let t = d.ctl(&["table", "1"]).expect("table");
    assert!(t.contains("learnt flows: table 251, cookie 0x"), "{t}");
    assert!(
        t.contains("table=251, priority=0 actions=CONTROLLER:65535"),
        "{t}"
    );
    let stats = d.ctl_json(&["stats"]);
    let of = &stats["openflow"];
    assert_eq!(of["learning_table"], 251, "{of}");
    assert_eq!(
        [
            &of["packet_ins"],
            &of["learn_flows"],
            &of["learn_floods"],
            &of["packet_ins_shed"]
        ],
        [3, 2, 1, 0],
        "{of}"
    );
}

/// cbench-style: many PACKET_INs pipelined in windows; every one gets exactly one answer,
/// matched by the buffer id it carries. Throughput is printed, never asserted.
#[test]
fn a_cbench_like_burst_gets_one_answer_per_packet_in() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 7);
    sw.handshake(&[]);
    sw.batch();
    wait_in_sync(&d, "0000000000000007");
    // 63 hosts on ports 1..=3 by index; host j talks to host j+1 (always another port).
    const HOSTS: u32 = 63;
    const N: u32 = 20_000;
    const WINDOW: u32 = 200;
    let port_of = |j: u32| j % 3 + 1;
    let started = std::time::Instant::now();
    let mut answered = BTreeSet::new();
    let (mut flows, mut floods) = (0u32, 0u32);
    let mut sent = 0u32;
    while sent < N {
        let mut burst = Vec::new();
        let end = (sent + WINDOW).min(N);
        for i in sent..end {
            let j = i % HOSTS;
            let f = frame(mac((j + 1) % HOSTS), mac(j));
            // Buffer ids 1.. identify the PACKET_IN an answer belongs to.
            emit_table_miss(&mut burst, i, i + 1, port_of(j), LEARN_TABLE, &f);
        }
        sw.send_raw(&burst);
        while (answered.len() as u32) < end {
            let (_, m) = sw.next();
            let id = match m {
                Message::FlowMod(f) => {
                    flows += 1;
                    f.buffer_id
                }
                Message::PacketOut(p) => {
                    floods += 1;
                    p.buffer_id
                }
                other => panic!("unexpected {other:?}"),
            };
            assert!(id >= 1 && id <= end, "answer to buffer {id}");
            assert!(answered.insert(id), "buffer {id} answered twice");
        }
        sent = end;
    }
    assert!(sw.echo().is_empty(), "no extra answers");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "cbench-like: {N} packet-ins answered in {secs:.3} s ({:.0}/s; {flows} flows, {floods} floods)",
        f64::from(N) / secs
    );
    assert_eq!(answered.len() as u32, N);
    // Only the first round of each host's destination is unknown.
    assert!(floods < HOSTS + 1, "{floods}");
    let s = switch_json(&d, "0000000000000007");
    let l = &s["learning"];
    assert_eq!(s["packet_ins"], N, "{s}");
    assert_eq!(l["flows"], flows);
    assert_eq!(l["floods"], floods);
    assert_eq!(l["shed"], 0);
}

#[test]
fn learnt_flows_survive_a_reconnect_untouched_while_strays_go() {
    let d = start();
    let l = learning();
    let learnt = |in_port: u32, dst: u32, out: u32| -> FlowStats {
        let key = EntryKey::new(
            LEARN_TABLE,
            l.priority,
            &Match::builder()
                .in_port(in_port)
                .eth_dst(mac(dst))
                .build()
                .expect("match"),
        );
        FlowStats {
            cookie: l.cookie,
            idle_timeout: l.idle_timeout,
            ..entry(
                &key,
                vec![Instruction::ApplyActions(vec![Action::Output {
                    port: out,
                    max_len: 0,
                }])],
            )
        }
    };
    // A switch that kept the whole policy and two learnt flows: nothing to send.
    let mut dump: Vec<FlowStats> = desired()
        .flows
        .iter()
        .map(|(k, i)| entry(k, i.to_vec()))
        .collect();
    dump.push(learnt(1, 2, 2));
    dump.push(learnt(2, 1, 1));
    let mut sw = FakeSwitch::connect(&d.openflow, 3);
    sw.handshake(&dump);
    assert!(sw.echo().is_empty(), "a reconciled switch gets no flow-mod");
    let s = d.wait_for(Duration::from_secs(20), "switch ready", || {
        let s = switch_json(&d, "0000000000000003");
        (s["phase"] == "ready").then_some(s)
    });
    assert_eq!(s["learning"]["learnt_at_connect"], 2, "{s}");
    assert_eq!(s["in_sync"], true, "{s}");
    drop(sw);

    // The same, plus an entry in the learning table that is not ours: only it goes.
    let stray = FlowStats {
        cookie: 0,
        ..learnt(3, 1, 1)
    };
    dump.push(stray.clone());
    let mut sw = FakeSwitch::connect(&d.openflow, 4);
    sw.handshake(&dump);
    let mods = sw.batch();
    assert_eq!(mods.len(), 1, "{mods:?}");
    let f = &mods[0].1;
    assert_eq!(f.command, FlowModCommand::DeleteStrict);
    assert_eq!(
        EntryKey::new(f.table_id, f.priority, &f.match_),
        EntryKey::new(stray.table_id, stray.priority, &stray.match_)
    );
    wait_in_sync(&d, "0000000000000004");
}
