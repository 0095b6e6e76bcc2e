//! The session core driven with in-memory bytes and a fake clock.

use std::net::Ipv4Addr;

use super::*;
use crate::openflow::{
    port, Action, FlowModCommand, HelloElement, Instruction, Match, MULTIPART_MORE,
};

const SEC: u64 = 1_000_000_000;

fn cfg() -> SessionConfig {
    SessionConfig {
        echo_interval_ns: 5 * SEC,
        echo_timeout_ns: 15 * SEC,
        max_output: 1 << 20,
        ..SessionConfig::default()
    }
}

/// Takes everything the session queued, as parsed messages.
fn take(s: &mut Session) -> Vec<(u32, Message)> {
    let bytes = s.poll_transmit().to_vec();
    s.advance_transmit(bytes.len());
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(Some((_, n))) = frame(&bytes[pos..]) {
        out.push(Message::parse(&bytes[pos..pos + n]).expect("session emits valid messages"));
        pos += n;
    }
    assert_eq!(pos, bytes.len(), "whole messages only");
    out
}

fn send(s: &mut Session, now: u64, xid: u32, msg: Message) {
    let mut b = Vec::new();
    msg.emit(xid, &mut b);
    s.handle_input(now, &b);
}

fn host_key(table: u8, prio: u16, host: u8) -> EntryKey {
    EntryKey::new(
        table,
        prio,
        &Match::builder()
            .ipv4_src(Ipv4Addr::new(10, 0, 0, host))
            .build()
            .unwrap(),
    )
}

fn goto1() -> Vec<Instruction> {
    vec![Instruction::GotoTable(1)]
}

fn normal() -> Vec<Instruction> {
    vec![Instruction::ApplyActions(vec![Action::output(
        port::NORMAL,
    )])]
}

fn stats(key: &EntryKey, instructions: Vec<Instruction>) -> FlowStats {
    FlowStats {
        table_id: key.table_id,
        duration_sec: 7,
        duration_nsec: 0,
        priority: key.priority,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0xdead,
        packet_count: 42,
        byte_count: 4200,
        match_: key.match_.clone(),
        instructions,
    }
}

fn desired_of(entries: &[(EntryKey, Vec<Instruction>)]) -> Desired {
    let mut d = Desired::default();
    for (k, i) in entries {
        d.flows.insert(k.clone(), i);
    }
    d
}

fn reply(flags: u16, body: MultipartReplyBody) -> Message {
    Message::MultipartReply(MultipartReply { flags, body })
}

/// Runs the handshake against a switch holding `table`, replying `chunk` entries per
/// multipart message (MORE set on all but the last).
fn handshake(now: u64, table: &[FlowStats], chunk: usize) -> Session {
    handshake_with(now, cfg(), table, chunk)
}

fn handshake_with(now: u64, cfg: SessionConfig, table: &[FlowStats], chunk: usize) -> Session {
    let mut s = Session::new(now, cfg);
    let out = take(&mut s);
    assert!(
        matches!(out.as_slice(), [(_, Message::Hello(_))]),
        "{out:?}"
    );
    send(&mut s, now, 1, Message::Hello(Hello::v13()));
    let out = take(&mut s);
    let [(fx, Message::FeaturesRequest)] = out.as_slice() else {
        panic!("{out:?}")
    };
    send(
        &mut s,
        now,
        *fx,
        Message::FeaturesReply(Features {
            datapath_id: 0xabc,
            n_buffers: 0,
            n_tables: 254,
            ..Features::default()
        }),
    );
    let out = take(&mut s);
    let [(_, Message::SetConfig(c)), (px, Message::MultipartRequest(r))] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(c.miss_send_len, 0xffff);
    assert_eq!(r.body, MultipartRequestBody::PortDesc);
    let port = |n: u32| Port {
        port_no: n,
        name: format!("p{n}"),
        ..Port::default()
    };
    send(
        &mut s,
        now,
        *px,
        reply(MULTIPART_MORE, MultipartReplyBody::PortDesc(vec![port(1)])),
    );
    assert_eq!(s.phase(), Phase::PortDesc, "waits for the rest");
    send(
        &mut s,
        now,
        *px,
        reply(0, MultipartReplyBody::PortDesc(vec![port(2), port(3)])),
    );
    let out = take(&mut s);
    let [(dx, Message::MultipartRequest(r))] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(matches!(r.body, MultipartRequestBody::Flow(ref f) if f.table_id == 0xff));
    let chunks: Vec<&[FlowStats]> = if table.is_empty() {
        vec![&[]]
    } else {
        table.chunks(chunk.max(1)).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(s.phase(), Phase::FlowDump);
        let flags = if i + 1 < chunks.len() {
            MULTIPART_MORE
        } else {
            0
        };
        send(
            &mut s,
            now,
            *dx,
            reply(flags, MultipartReplyBody::Flow(c.to_vec())),
        );
    }
    assert_eq!(s.phase(), Phase::Ready);
    s
}

fn flow_mods(out: &[(u32, Message)]) -> Vec<(u32, &crate::openflow::FlowMod)> {
    out.iter()
        .filter_map(|(x, m)| match m {
            Message::FlowMod(f) => Some((*x, f)),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_learns_dpid_ports_and_reassembles_the_flow_dump() {
    let table: Vec<FlowStats> = (1..=5)
        .map(|h| stats(&host_key(0, 10, h), goto1()))
        .collect();
    let mut s = handshake(0, &table, 2);
    assert_eq!(s.dpid(), Some(0xabc));
    assert_eq!(s.ports().len(), 3);
    assert_eq!(s.installed().len(), 5, "three replies joined");
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Ready {
            dpid: 0xabc,
            ports: 3,
            installed: 5
        })
    );
}

#[test]
fn a_switch_without_openflow_13_gets_an_error_and_the_session_closes() {
    for hello in [
        Hello {
            version: 1,
            elements: vec![],
        },
        Hello {
            version: 5,
            elements: vec![HelloElement::VersionBitmap(vec![(1 << 1) | (1 << 5)])],
        },
    ] {
        let mut s = Session::new(0, cfg());
        take(&mut s);
        let mut b = Vec::new();
        Message::Hello(hello).emit(1, &mut b);
        s.handle_input(0, &b);
        let out = take(&mut s);
        assert!(
            matches!(out.as_slice(), [(_, Message::Error(e))] if e.err_type == 0 && e.code == 0),
            "{out:?}"
        );
        assert!(matches!(
            s.close_reason(),
            Some(CloseReason::NoCommonVersion(_))
        ));
        assert!(s.close_reason().unwrap().to_string().contains("need 1.3"));
        assert!(!s.wants_input());
    }
}

#[test]
fn echo_keepalive_and_dead_peer() {
    let mut s = handshake(0, &[], 1);
    s.sync(&Desired::default());
    take(&mut s);
    assert_eq!(s.poll_timeout(), Some(5 * SEC));
    s.handle_timeout(4 * SEC);
    assert!(take(&mut s).is_empty());
    s.handle_timeout(5 * SEC);
    let out = take(&mut s);
    let [(x, Message::EchoRequest(_))] = out.as_slice() else {
        panic!("{out:?}")
    };
    // The reply resets the clock.
    send(&mut s, 6 * SEC, *x, Message::EchoReply(vec![]));
    assert_eq!(s.poll_timeout(), Some(11 * SEC));
    s.handle_timeout(11 * SEC);
    assert_eq!(take(&mut s).len(), 1, "second echo");
    assert_eq!(s.poll_timeout(), Some(21 * SEC));
    s.handle_timeout(20 * SEC);
    assert!(!s.is_closed());
    s.handle_timeout(21 * SEC);
    assert_eq!(
        s.close_reason(),
        Some(&CloseReason::DeadPeer { silent_ms: 15_000 })
    );
}

#[test]
fn the_switchs_echo_requests_are_answered_with_their_payload() {
    let mut s = handshake(0, &[], 1);
    take(&mut s);
    send(&mut s, SEC, 77, Message::EchoRequest(b"ping".to_vec()));
    let out = take(&mut s);
    assert_eq!(out, vec![(77, Message::EchoReply(b"ping".to_vec()))]);
}

#[test]
fn a_silent_switch_times_out_during_the_handshake() {
    let mut s = Session::new(0, cfg());
    take(&mut s);
    s.handle_timeout(15 * SEC);
    assert_eq!(
        s.close_reason(),
        Some(&CloseReason::HandshakeTimeout(Phase::Hello))
    );
}

#[test]
fn reconciliation_sends_only_the_difference_then_a_barrier() {
    let desired = desired_of(&[
        (host_key(0, 100, 1), goto1()),
        (host_key(0, 100, 2), goto1()),
        (host_key(0, 100, 3), goto1()),
        (EntryKey::new(1, 0, &Match::any()), normal()),
    ]);
    // The switch has host 1 right but with its OXM fields in another order, host 2 with
    // the wrong instructions, no host 3, the table-1 rule right, and a foreign entry.
    let mut reversed = stats(&host_key(0, 100, 1), goto1());
    reversed.match_.fields.reverse();
    let mut normal_max_len = normal();
    if let Instruction::ApplyActions(a) = &mut normal_max_len[0] {
        a[0] = Action::Output {
            port: port::NORMAL,
            max_len: 0,
        };
    }
    let table = vec![
        reversed,
        stats(&host_key(0, 100, 2), vec![]),
        stats(&EntryKey::new(1, 0, &Match::any()), normal_max_len),
        stats(&host_key(0, 50, 9), normal()),
    ];
    let mut s = handshake(0, &table, 3);
    assert_eq!(s.sync(&desired), 3);
    let out = take(&mut s);
    let mods = flow_mods(&out);
    let mut seen: Vec<(FlowModCommand, u16, Option<Ipv4Addr>)> = mods
        .iter()
        .map(|(_, f)| {
            let host = f.match_.fields.iter().find_map(|x| match x {
                crate::openflow::OxmField::Ipv4Src { addr, .. } => Some(*addr),
                _ => None,
            });
            (f.command, f.priority, host)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (FlowModCommand::Add, 100, Some(Ipv4Addr::new(10, 0, 0, 3))),
            (
                FlowModCommand::ModifyStrict,
                100,
                Some(Ipv4Addr::new(10, 0, 0, 2))
            ),
            (
                FlowModCommand::DeleteStrict,
                50,
                Some(Ipv4Addr::new(10, 0, 0, 9))
            ),
        ]
    );
    assert!(
        !mods
            .iter()
            .any(|(_, f)| f.command == FlowModCommand::Delete),
        "never a wipe"
    );
    assert_eq!(out.last().map(|m| &m.1), Some(&Message::BarrierRequest));
    assert_eq!(out.len(), 4);
    assert_eq!(s.installed(), &desired.flows);
    // Nothing more to do.
    assert_eq!(s.sync(&desired), 0);
    assert!(take(&mut s).is_empty());
    // The barrier confirms all three.
    assert_eq!(s.pending_barriers(), 1);
    send(&mut s, SEC, out[3].0, Message::BarrierReply);
    assert_eq!(s.pending_barriers(), 0);
    assert_eq!(s.stats().flow_mods_confirmed, 3);
    assert_eq!(s.unconfirmed(), 0);
}

#[test]
fn the_default_policy_is_installed_whole_on_an_empty_switch() {
    let config = crate::config::Config::embedded().unwrap();
    let engine = config.build().unwrap().policy;
    let (desired, errors) = Desired::from_policy(
        &engine.rules(),
        &engine.meters(),
        &crate::openflow::translate::TranslateConfig::default(),
    );
    assert!(errors.is_empty());
    assert_eq!(desired.flows.len(), 3);
    let mut s = handshake(0, &[], 1);
    assert_eq!(s.sync(&desired), 3);
    let out = take(&mut s);
    let mods = flow_mods(&out);
    assert!(mods.iter().all(|(_, f)| f.command == FlowModCommand::Add));
    let sent = FlowTable::from_translated(
        mods.iter()
            .map(|(_, f)| crate::openflow::translate::TranslatedRule {
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
fn an_error_is_mapped_back_to_the_flow_mod_that_caused_it() {
    let desired = desired_of(&[
        (host_key(0, 100, 1), goto1()),
        (host_key(0, 100, 2), goto1()),
        (host_key(0, 100, 3), goto1()),
    ]);
    let mut s = handshake(0, &[], 1);
    s.sync(&desired);
    let out = take(&mut s);
    let mods = flow_mods(&out);
    let (bad_xid, bad) = mods[1];
    let barrier = out.last().unwrap().0;
    let mut data = Vec::new();
    Message::FlowMod(bad.clone()).emit(bad_xid, &mut data);
    data.truncate(64);
    send(
        &mut s,
        SEC,
        bad_xid,
        Message::Error(ErrorMsg {
            err_type: 5,
            code: 6,
            data,
        }),
    );
    send(&mut s, SEC, barrier, Message::BarrierReply);
    let _ready = s.poll_event();
    let Some(SessionEvent::FlowModFailed(e)) = s.poll_event() else {
        panic!("no error event")
    };
    assert_eq!(e.xid, bad_xid);
    assert_eq!(e.op, "add");
    assert_eq!(e.type_name, "OFPET_FLOW_MOD_FAILED");
    assert!(e.entry.contains("nw_src=10.0.0.2"), "{}", e.entry);
    let st = s.stats();
    assert_eq!((st.flow_mod_errors, st.flow_mods_confirmed), (1, 2));
    assert_eq!(s.recent_errors().count(), 1);
    assert_eq!(
        s.installed().len(),
        2,
        "the rejected entry is not installed"
    );
    assert!(s.installed().get(&host_key(0, 100, 2)).is_none());
    assert!(!s.is_closed());
}

#[test]
fn deltas_send_changed_keys_once_in_their_latest_form() {
    let mut desired = desired_of(&[(EntryKey::new(1, 0, &Match::any()), normal())]);
    let mut s = handshake(0, &[], 1);
    s.sync(&desired);
    take(&mut s);
    let k = Key::new(host_key(0, 65535, 1));
    desired.flows.insert((*k).clone(), &[]);
    s.mark_dirty(&k);
    desired.flows.insert((*k).clone(), &goto1());
    s.mark_dirty(&k);
    assert_eq!(s.sync(&desired), 1);
    let out = take(&mut s);
    let mods = flow_mods(&out);
    assert_eq!(mods.len(), 1);
    assert_eq!(mods[0].1.command, FlowModCommand::Add);
    assert_eq!(mods[0].1.instructions, goto1());
    assert_eq!(out.len(), 2, "flow-mod + barrier");
    // A key marked but unchanged sends nothing, not even a barrier.
    s.mark_dirty(&k);
    assert_eq!(s.sync(&desired), 0);
    assert!(take(&mut s).is_empty());
    // Removal is a strict delete.
    desired.flows.remove(&k);
    s.mark_dirty(&k);
    s.sync(&desired);
    let out = take(&mut s);
    assert_eq!(flow_mods(&out)[0].1.command, FlowModCommand::DeleteStrict);
}

#[test]
fn a_full_output_queue_defers_flow_mods_without_losing_any() {
    let entries: Vec<(EntryKey, Vec<Instruction>)> =
        (1..=50).map(|h| (host_key(0, 100, h), goto1())).collect();
    let desired = desired_of(&entries);
    let mut s = handshake(0, &[], 1);
    take(&mut s);
    s.cfg.max_output = 300;
    let mut total = 0;
    let mut rounds = 0;
    let mut sent = Vec::new();
    loop {
        s.sync(&desired);
        if s.poll_transmit().len() >= 300 {
            assert!(!s.wants_input(), "reading pauses while the queue is full");
        }
        let out = take(&mut s);
        if out.is_empty() {
            break;
        }
        assert!(s.wants_input());
        total += flow_mods(&out).len();
        sent.extend(flow_mods(&out).iter().map(|(_, f)| f.match_.clone()));
        rounds += 1;
        assert!(rounds < 100);
    }
    assert!(rounds > 1, "the queue bound was hit");
    assert_eq!(total, 50, "each entry once");
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 50);
    assert_eq!(s.installed(), &desired.flows);
    assert!(!s.has_backlog());
}

#[test]
fn byte_at_a_time_input_is_reassembled() {
    let mut s = Session::new(0, cfg());
    take(&mut s);
    let mut b = Vec::new();
    Message::Hello(Hello::v13()).emit(1, &mut b);
    Message::EchoRequest(vec![1, 2, 3]).emit(9, &mut b);
    for byte in &b {
        s.handle_input(0, std::slice::from_ref(byte));
    }
    let out = take(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(s.phase(), Phase::Features);
    assert!(s.stats().partial_inputs > 0);
    assert_eq!(s.stats().msgs_in, 2);
}

#[test]
fn garbage_closes_malformed_is_counted() {
    let mut s = handshake(0, &[], 1);
    // Well framed but not a valid FEATURES_REPLY (too short): counted, skipped.
    s.handle_input(SEC, &[4, 6, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]);
    assert!(!s.is_closed());
    assert_eq!(s.stats().malformed, 1);
    // Still alive: echo answered.
    send(&mut s, SEC, 3, Message::EchoRequest(vec![]));
    take(&mut s);
    // A length below the header cannot be resynchronized.
    s.handle_input(SEC, &[4, 0, 0, 3, 0, 0, 0, 0, 0xff, 0xff]);
    assert!(matches!(
        s.close_reason(),
        Some(CloseReason::Framing(CodecError::BadLength))
    ));
    // Anything after is ignored.
    s.handle_input(SEC, &[0; 64]);
    assert_eq!(s.stats().malformed, 1);
}

#[test]
fn a_garbage_first_message_closes() {
    let mut s = Session::new(0, cfg());
    take(&mut s);
    s.handle_input(0, b"GET / HTTP/1.1\r\n\r\n");
    assert!(s.is_closed(), "{:?}", s.close_reason());
}

#[test]
fn meters_go_first_and_an_existing_meter_is_modified() {
    let mut desired = desired_of(&[(
        host_key(0, 100, 1),
        vec![Instruction::Meter(7), Instruction::GotoTable(1)],
    )]);
    desired.meters.insert(7, 1000);
    let mut s = handshake(0, &[], 1);
    assert_eq!(s.sync(&desired), 2);
    let out = take(&mut s);
    let Message::MeterMod(m) = &out[0].1 else {
        panic!("{out:?}")
    };
    assert_eq!((m.command, m.meter_id), (MeterModCommand::Add, 7));
    assert!(matches!(out[1].1, Message::FlowMod(_)));
    // The meter was left by an earlier run.
    send(
        &mut s,
        SEC,
        out[0].0,
        Message::Error(ErrorMsg {
            err_type: 12,
            code: 1,
            data: vec![],
        }),
    );
    let out = take(&mut s);
    assert!(
        matches!(&out[0].1, Message::MeterMod(m) if m.command == MeterModCommand::Modify),
        "{out:?}"
    );
    assert_eq!(s.stats().flow_mod_errors, 0);
    // Meter gone from the policy: deleted after the flows.
    let mut d2 = desired_of(&[(host_key(0, 100, 1), goto1())]);
    d2.meters.clear();
    s.mark_resync();
    s.sync(&d2);
    let out = take(&mut s);
    assert!(matches!(out[0].1, Message::FlowMod(_)));
    assert!(matches!(&out[1].1, Message::MeterMod(m) if m.command == MeterModCommand::Delete));
}

mod reconciliation {
    use super::*;
    use proptest::prelude::*;

    fn table_of(v: &[(u8, u16, u8, u8)]) -> Vec<(EntryKey, Vec<Instruction>)> {
        v.iter()
            .map(|&(t, p, h, a)| {
                let i = match a {
                    0 => vec![],
                    1 => goto1(),
                    _ => normal(),
                };
                (host_key(t, p, h), i)
            })
            .collect()
    }

    fn arb() -> impl Strategy<Value = Vec<(u8, u16, u8, u8)>> {
        proptest::collection::vec((0u8..2, 0u16..3, 0u8..4, 0u8..3), 0..16)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the switch holds, the first sync sends one strict flow-mod per
        /// differing key, and applying them on the switch yields the desired table.
        #[test]
        fn the_first_sync_sends_exactly_the_difference(old in arb(), new in arb()) {
            let on_switch = desired_of(&table_of(&old)).flows;
            let desired = desired_of(&table_of(&new));
            let dump: Vec<FlowStats> = on_switch.iter().map(|(k, i)| stats(k, i.to_vec())).collect();
            let mut s = handshake(0, &dump, 3);
            let n = s.sync(&desired);
            let out = take(&mut s);
            let mods = flow_mods(&out);
            prop_assert_eq!(n, mods.len());
            prop_assert_eq!(mods.len(), diff(&on_switch, &desired.flows).len());
            let mut switch = on_switch.clone();
            for (_, f) in &mods {
                let key = EntryKey::new(f.table_id, f.priority, &f.match_);
                match f.command {
                    FlowModCommand::DeleteStrict => {
                        prop_assert!(switch.remove(&key));
                    }
                    FlowModCommand::ModifyStrict => {
                        prop_assert!(switch.get(&key).is_some());
                        switch.insert(key, &f.instructions);
                    }
                    FlowModCommand::Add => {
                        prop_assert!(switch.get(&key).is_none());
                        switch.insert(key, &f.instructions);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(&switch, &desired.flows);
            prop_assert_eq!(s.installed(), &desired.flows);
            prop_assert_eq!(out.len(), mods.len() + usize::from(!mods.is_empty()));
        }
    }
}

mod hostile_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random bytes, in random chunks, at any phase: never a panic, and the session
        /// either stays open or closes with a reason.
        #[test]
        fn arbitrary_bytes_never_panic(
            ready in any::<bool>(),
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..8),
        ) {
            let mut s = if ready { handshake(0, &[], 1) } else { Session::new(0, cfg()) };
            for c in &chunks {
                s.handle_input(SEC, c);
                s.sync(&Desired::default());
                let n = s.poll_transmit().len();
                s.advance_transmit(n);
            }
            while s.poll_event().is_some() {}
            prop_assert_eq!(s.is_closed(), s.close_reason().is_some());
        }

        /// Well-framed messages of every type with random bodies: skipped or handled.
        #[test]
        fn well_framed_random_bodies_never_panic(
            msgs in proptest::collection::vec((0u8..32, proptest::collection::vec(any::<u8>(), 0..200)), 1..8),
        ) {
            let mut s = handshake(0, &[], 1);
            for (t, body) in &msgs {
                let mut b = vec![4, *t, 0, 0, 0, 0, 0, 9];
                b.extend_from_slice(body);
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
                s.handle_input(SEC, &b);
            }
            prop_assert!(!s.is_closed() || s.close_reason().is_some());
            prop_assert!(s.stats().msgs_in >= msgs.len() as u64 || s.is_closed());
        }

        /// With learning on (table 0, so every PACKET_IN reaches it): random PACKET_IN
        /// bodies never panic, and well-formed ones with random frames, ports and buffer
        /// ids get answers the general codec parses, one kind counted per PACKET_IN.
        #[test]
        fn learning_answers_always_parse(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..8),
            pkts in proptest::collection::vec(
                (any::<bool>(), 1u32..6, proptest::collection::vec(any::<u8>(), 0..100)),
                1..32,
            ),
        ) {
            let cfg = SessionConfig {
                learning: Some(LearningConfig { table_id: 0, ..LearningConfig::default() }),
                mac_capacity: 16,
                ..cfg()
            };
            let mut s = handshake_with(0, cfg, &[], 1);
            take(&mut s);
            for body in &bodies {
                let mut b = vec![4, crate::openflow::msg_type::PACKET_IN, 0, 0, 0, 0, 0, 9];
                b.extend_from_slice(body);
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
                s.handle_input(SEC, &b);
                take(&mut s);
            }
            prop_assert!(!s.is_closed());
            let before = s.stats();
            for (i, (buffered, in_port, frame)) in pkts.iter().enumerate() {
                let buffer = if *buffered { i as u32 } else { NO_BUFFER };
                packet_in(&mut s, SEC, buffer, *in_port, 0, frame);
                // `take` parses every message with the codec and fails on garbage.
                let out = take(&mut s);
                prop_assert!(out.len() <= 2);
            }
            let st = s.stats();
            let kinds = |x: SessionStats| x.learn_flows + x.learn_floods + x.learn_hairpins + x.learn_ignored;
            prop_assert_eq!(kinds(st) - kinds(before), pkts.len() as u64);
        }
    }
}

#[test]
fn packet_out_carries_the_packet_not_a_buffer_id() {
    let mut s = handshake(0, &[], 1);
    take(&mut s);
    s.packet_out(port::CONTROLLER, vec![Action::output(2)], &[0xff; 60]);
    let out = take(&mut s);
    let [(_, Message::PacketOut(p))] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(p.buffer_id, crate::openflow::NO_BUFFER);
    assert_eq!(p.data.len(), 60);
}

// ---- reactive MAC learning ----

use crate::openflow::learning::{emit_table_miss, LearningConfig};
use crate::openflow::translate::TranslateConfig;
use crate::openflow::{CONTROLLER_MAX_LEN_NO_BUFFER, NO_BUFFER};

const LEARN_TABLE: u8 = 250;
const MAC_A: [u8; 6] = [0, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0, 0, 0, 0, 0, 0xb];

/// An OUTPUT as the learning core writes it (max_len 0).
fn out_to(port: u32) -> Action {
    Action::Output { port, max_len: 0 }
}

fn learning() -> LearningConfig {
    LearningConfig {
        table_id: LEARN_TABLE,
        ..LearningConfig::default()
    }
}

fn learning_cfg() -> SessionConfig {
    SessionConfig {
        learning: Some(learning()),
        mac_capacity: 64,
        ..cfg()
    }
}

fn eth(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45; 46]);
    f
}

fn packet_in(s: &mut Session, now: u64, buffer_id: u32, in_port: u32, table: u8, frame: &[u8]) {
    let mut b = Vec::new();
    emit_table_miss(&mut b, 0, buffer_id, in_port, table, frame);
    s.handle_input(now, &b);
}

/// The desired table of `main` over the embedded default's `auth` module.
fn desired_for(main: &str, translate: &TranslateConfig) -> Desired {
    let mut config = crate::config::Config::embedded().unwrap();
    config.policy.main = main.into();
    let engine = config.build().unwrap().policy;
    let (desired, errors) = Desired::from_policy(&engine.rules(), &engine.meters(), translate);
    assert!(errors.is_empty(), "{errors:?}");
    desired
}

fn learn_translate() -> TranslateConfig {
    TranslateConfig {
        learning_table: Some(LEARN_TABLE),
    }
}

/// A learnt flow as the switch reports it in a flow dump.
fn learnt_stats(in_port: u32, dst: [u8; 6], out_port: u32) -> FlowStats {
    let key = EntryKey::new(
        LEARN_TABLE,
        learning().priority,
        &Match::builder()
            .in_port(in_port)
            .eth_dst(dst)
            .build()
            .unwrap(),
    );
    FlowStats {
        cookie: learning().cookie,
        idle_timeout: 60,
        ..stats(
            &key,
            vec![Instruction::ApplyActions(vec![Action::output(out_port)])],
        )
    }
}

#[test]
fn auth_then_learn_keeps_auth_in_front_and_ends_in_the_learning_miss_entry() {
    let d = desired_for("auth >> learn", &learn_translate());
    let (miss_key, miss) = crate::openflow::table::learning_miss_entry(LEARN_TABLE);
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
    let config = crate::config::Config::embedded().unwrap();
    let engine = config.build().unwrap().policy;
    let (plain, errors) = Desired::from_policy(
        &engine.rules(),
        &engine.meters(),
        &TranslateConfig::default(),
    );
    assert!(errors.is_empty());
    assert!(plain.flows.iter().all(|(k, _)| k.table_id != LEARN_TABLE));
}

#[test]
fn an_unknown_destination_floods_then_a_learnt_one_gets_a_flow_with_the_buffer_id() {
    let mut s = handshake_with(0, learning_cfg(), &[], 1);
    let desired = desired_for("auth >> learn", &learn_translate());
    assert!(s.sync(&desired) > 0);
    let _ = take(&mut s);
    // A (port 1) → B: B unknown, flooded with the frame itself (unbuffered).
    let f = eth(MAC_B, MAC_A);
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &f);
    let out = take(&mut s);
    let [(_, Message::PacketOut(po))] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!((po.buffer_id, po.in_port, &po.data), (NO_BUFFER, 1, &f));
    assert_eq!(po.actions, vec![out_to(port::FLOOD)]);
    // B (port 2) → A, buffered as 7: a flow towards port 1 releasing buffer 7, nothing else.
    packet_in(&mut s, SEC, 7, 2, LEARN_TABLE, &eth(MAC_A, MAC_B));
    let out = take(&mut s);
    let [(_, Message::FlowMod(fm))] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(fm.command, FlowModCommand::Add);
    let l = learning();
    assert_eq!(
        (
            fm.table_id,
            fm.priority,
            fm.idle_timeout,
            fm.cookie,
            fm.buffer_id
        ),
        (LEARN_TABLE, l.priority, l.idle_timeout, l.cookie, 7)
    );
    assert_eq!(
        fm.match_,
        Match::builder().in_port(2).eth_dst(MAC_A).build().unwrap()
    );
    assert_eq!(
        fm.instructions,
        vec![Instruction::ApplyActions(vec![out_to(1)])]
    );
    // Unbuffered, the flow is followed by a PACKET_OUT carrying the frame.
    let f = eth(MAC_B, MAC_A);
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &f);
    let out = take(&mut s);
    assert!(
        matches!(out.as_slice(), [(_, Message::FlowMod(_)), (_, Message::PacketOut(p))] if p.data == f && p.actions == vec![out_to(2)]),
        "{out:?}"
    );
    let st = s.stats();
    assert_eq!(
        (
            st.packet_ins,
            st.learn_floods,
            st.learn_flows,
            st.packet_ins_shed
        ),
        (3, 1, 2, 0)
    );
    // Learnt flows are not the controller's: the installed table did not grow.
    assert_eq!(s.installed(), &desired.flows);
    assert_eq!(s.mac_table().map(|t| t.counts().0), Some(2));
    assert!(s
        .events
        .iter()
        .all(|e| !matches!(e, SessionEvent::Malformed { .. })));
}

#[test]
fn packet_ins_from_other_tables_or_without_learning_are_only_counted() {
    let mut s = handshake_with(0, learning_cfg(), &[], 1);
    packet_in(&mut s, SEC, NO_BUFFER, 1, 0, &eth(MAC_B, MAC_A));
    assert!(take(&mut s).is_empty());
    let mut off = handshake(0, &[], 1);
    packet_in(&mut off, SEC, NO_BUFFER, 1, LEARN_TABLE, &eth(MAC_B, MAC_A));
    assert!(take(&mut off).is_empty());
    for st in [s.stats(), off.stats()] {
        assert_eq!(
            (st.packet_ins, st.packet_ins_other, st.learn_floods),
            (1, 1, 0)
        );
    }
    assert!(off.mac_table().is_none());
    // A lying PACKET_IN is malformed, not a panic.
    let mut b = Vec::new();
    emit_table_miss(&mut b, 0, NO_BUFFER, 1, LEARN_TABLE, &eth(MAC_B, MAC_A));
    b[27] = 200;
    s.handle_input(SEC, &b);
    assert_eq!(s.stats().malformed, 1);
    assert!(!s.is_closed());
}

#[test]
fn learnt_flows_survive_a_reconnects_reconciliation_and_later_syncs() {
    let desired = desired_for("auth >> learn", &learn_translate());
    // The switch kept its learnt flows while we were away, plus a stray entry in the
    // learning table without our cookie, and lacks the miss entry.
    let (miss_key, _) = crate::openflow::table::learning_miss_entry(LEARN_TABLE);
    let mut dump: Vec<FlowStats> = desired
        .flows
        .iter()
        .filter(|(k, _)| **k != miss_key)
        .map(|(k, i)| stats(k, i.to_vec()))
        .collect();
    dump.push(learnt_stats(1, MAC_B, 2));
    dump.push(learnt_stats(2, MAC_A, 1));
    let stray = FlowStats {
        cookie: 0,
        ..learnt_stats(3, MAC_A, 1)
    };
    dump.push(stray.clone());
    let mut s = handshake_with(0, learning_cfg(), &dump, 3);
    assert_eq!(s.stats().learnt_at_connect, 2);
    assert_eq!(s.sync(&desired), 2);
    let out = take(&mut s);
    let mods = flow_mods(&out);
    let ops: Vec<_> = mods
        .iter()
        .map(|(_, f)| (f.command, f.table_id, f.priority, f.cookie))
        .collect();
    // Only the miss entry is added and the stray one deleted; learnt flows are untouched.
    assert_eq!(
        ops,
        vec![
            (FlowModCommand::Add, LEARN_TABLE, 0, 0),
            (
                FlowModCommand::DeleteStrict,
                LEARN_TABLE,
                learning().priority,
                0
            ),
        ]
    );
    assert_eq!(
        canonical_match(&mods[1].1.match_),
        canonical_match(&stray.match_)
    );
    // A full resync (the policy thread resending the table) finds nothing to do.
    s.mark_resync();
    assert_eq!(s.sync(&desired), 0);
    // The switch expiring a learnt flow changes nothing on our side.
    let removed = learnt_stats(1, MAC_B, 2);
    send(
        &mut s,
        SEC,
        0,
        Message::FlowRemoved(crate::openflow::FlowRemoved {
            cookie: removed.cookie,
            priority: removed.priority,
            reason: 0,
            table_id: LEARN_TABLE,
            duration_sec: 60,
            duration_nsec: 0,
            idle_timeout: 60,
            hard_timeout: 0,
            packet_count: 1,
            byte_count: 64,
            match_: removed.match_.clone(),
        }),
    );
    assert_eq!(s.sync(&desired), 0);
    assert_eq!(s.installed(), &desired.flows);
}

#[test]
fn packet_ins_are_answered_during_a_backlog_and_shed_when_the_queue_is_full() {
    let cfg = SessionConfig {
        max_output: 4096,
        ..learning_cfg()
    };
    let mut s = handshake_with(0, cfg, &[], 1);
    let _ = take(&mut s);
    // A desired table far larger than the queue: the sync stops at max_output.
    let mut big = desired_for("auth >> learn", &learn_translate());
    for h in 0..200u8 {
        big.flows.insert(host_key(0, 20, h), &goto1());
    }
    s.sync(&big);
    assert!(s.has_backlog());
    let queued = s.poll_transmit().len();
    assert!(queued >= 4096);
    // Answers still go out, into the headroom above max_output.
    let f = eth(MAC_B, MAC_A);
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &f);
    assert_eq!(s.stats().learn_floods, 1);
    assert!(s.poll_transmit().len() > queued);
    // Until the headroom is used up: then PACKET_INs are counted and dropped.
    let n = 200;
    for _ in 0..n {
        packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &f);
    }
    let st = s.stats();
    assert_eq!(st.learn_floods + st.packet_ins_shed, n + 1);
    assert!(st.packet_ins_shed > 0);
    let limit = 4096 + cfg.packet_in_headroom();
    assert!(s.poll_transmit().len() < limit + 200, "bounded");
    assert!(!s.wants_input());
    // Once the switch reads, answers resume.
    let _ = take(&mut s);
    assert!(s.wants_input());
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &f);
    assert_eq!(s.stats().learn_floods, st.learn_floods + 1);
}

#[test]
fn errors_about_learning_answers_are_counted_not_reported_one_by_one() {
    let mut s = handshake_with(0, learning_cfg(), &[], 1);
    let _ = take(&mut s);
    while s.poll_event().is_some() {}
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &eth(MAC_B, MAC_A));
    packet_in(&mut s, SEC, 5, 2, LEARN_TABLE, &eth(MAC_A, MAC_B));
    let bytes = s.poll_transmit().to_vec();
    let out = take(&mut s);
    assert!(matches!(
        out.as_slice(),
        [(_, Message::PacketOut(_)), (_, Message::FlowMod(_))]
    ));
    // The switch rejects both (say, its learning table is full): data = their first bytes.
    let Ok(Some((_, first))) = frame(&bytes) else {
        panic!("framing")
    };
    for (xid, data) in [
        (out[0].0, &bytes[..first]),
        (out[1].0, &bytes[first..first + 64]),
    ] {
        send(
            &mut s,
            2 * SEC,
            xid,
            Message::Error(crate::openflow::ErrorMsg {
                err_type: 5,
                code: 1,
                data: data.to_vec(),
            }),
        );
    }
    assert_eq!(s.stats().learn_errors, 2);
    assert_eq!(s.stats().flow_mod_errors, 0);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn packet_ins_are_answered_during_the_handshake_once_hellos_are_exchanged() {
    let mut s = Session::new(0, learning_cfg());
    let _ = take(&mut s);
    send(&mut s, 0, 1, Message::Hello(Hello::v13()));
    let _ = take(&mut s);
    assert_eq!(s.phase(), Phase::Features);
    packet_in(&mut s, SEC, NO_BUFFER, 1, LEARN_TABLE, &eth(MAC_B, MAC_A));
    let out = take(&mut s);
    assert!(
        matches!(out.as_slice(), [(_, Message::PacketOut(_))]),
        "{out:?}"
    );
    assert_eq!(s.stats().learn_floods, 1);
}
