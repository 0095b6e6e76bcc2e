//! Byte fixtures per message, every error path, and property tests for the whole codec.

use proptest::prelude::*;

use super::super::strategies;
use super::super::*;
use super::*;

fn emit(msg: &Message, xid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let n = msg.emit(xid, &mut out);
    assert_eq!(n, out.len());
    assert_eq!(
        n,
        msg.encoded_len(),
        "encoded_len agrees with emit for {msg:?}"
    );
    out
}

/// Parses `bytes`, checks the xid and that re-emitting gives the same bytes.
fn round(bytes: &[u8], xid: u32) -> Message {
    let (x, msg) = Message::parse(bytes).unwrap();
    assert_eq!(x, xid);
    assert_eq!(emit(&msg, xid), bytes);
    msg
}

#[rustfmt::skip]
const FLOW_MOD: [u8; 88] = [
    4, 14, 0, 88, 0, 0, 0, 9,
    0, 0, 0, 0, 0, 0, 0, 0, // cookie
    0, 0, 0, 0, 0, 0, 0, 0, // cookie_mask
    0, 0, 0, 0, 0, 0, 0, 100, // table 0, add, idle 0, hard 0, priority 100
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // buffer_id, out_port
    0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, // out_group, flags, pad
    0, 1, 0, 12, 0x80, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, // match in_port=1
    0, 4, 0, 24, 0, 0, 0, 0, // apply_actions
    0, 0, 0, 16, 0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 0, 0, 0, // output:2
];

#[test]
fn flow_mod_fixture() {
    let m = round(&FLOW_MOD, 9);
    let expected = FlowMod::add(
        0,
        100,
        Match::builder().in_port(1).build().unwrap(),
        vec![Instruction::ApplyActions(vec![Action::output(2)])],
    );
    assert_eq!(m, Message::FlowMod(expected.clone()));
    assert_eq!(emit(&Message::FlowMod(expected), 9), FLOW_MOD);
}

#[test]
fn flow_mod_errors() {
    // unknown command
    let mut b = FLOW_MOD;
    b[25] = 9;
    assert_eq!(Message::parse(&b), Err(CodecError::BadCommand));
    // match length overruns the message
    let mut b = FLOW_MOD;
    b[51] = 200;
    assert_eq!(Message::parse(&b), Err(CodecError::BadMatch));
    // instruction length not a multiple of 8
    let mut b = FLOW_MOD;
    b[67] = 20;
    assert_eq!(Message::parse(&b), Err(CodecError::BadInstruction));
    // action length overruns its instruction
    let mut b = FLOW_MOD;
    b[75] = 24;
    assert_eq!(Message::parse(&b), Err(CodecError::BadAction));
    // header length disagrees with the bytes
    assert_eq!(Message::parse(&FLOW_MOD[..80]), Err(CodecError::BadLength));
    // wrong version
    let mut b = FLOW_MOD;
    b[0] = 1;
    assert_eq!(Message::parse(&b), Err(CodecError::BadVersion));
    // truncated fixed part
    let mut b = FLOW_MOD[..40].to_vec();
    b[3] = 40;
    assert_eq!(Message::parse(&b), Err(CodecError::Truncated));
    assert_eq!(Message::parse(&[4, 0, 0]), Err(CodecError::Truncated));
}

#[test]
fn hello_fixture_and_negotiation() {
    let bytes = [4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10];
    let m = round(&bytes, 1);
    let Message::Hello(h) = &m else {
        panic!("not a hello: {m:?}")
    };
    assert_eq!(h, &Hello::v13());
    assert_eq!(negotiate(h), Ok(4));
    assert_eq!(emit(&Message::Hello(Hello::v13()), 1), bytes);

    // OVS offering 1.0..1.5 with header version 6
    let wide = Hello {
        version: 6,
        elements: vec![HelloElement::VersionBitmap(vec![0x7e])],
    };
    assert_eq!(negotiate(&wide), Ok(4));
    // 1.0 only
    let old = Hello {
        version: 1,
        elements: vec![],
    };
    assert_eq!(
        negotiate(&old),
        Err(CodecError::NoCommonVersion {
            peer_version: 1,
            offered: 0
        })
    );
    let no13 = Hello {
        version: 6,
        elements: vec![HelloElement::VersionBitmap(vec![0x62])],
    };
    assert_eq!(
        negotiate(&no13),
        Err(CodecError::NoCommonVersion {
            peer_version: 6,
            offered: 0x62
        })
    );
    assert_eq!(
        negotiate(&Hello {
            version: 5,
            elements: vec![]
        }),
        Ok(4)
    );
    // a 1.0 hello (any version is accepted for HELLO) with no elements
    let (_, m) = Message::parse(&[1, 0, 0, 8, 0, 0, 0, 2]).unwrap();
    assert_eq!(m, Message::Hello(old));
}

#[test]
fn hello_errors() {
    // element length < 4
    assert_eq!(
        Message::parse(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0]),
        Err(CodecError::BadHello)
    );
    // bitmap of 3 bytes
    assert_eq!(
        Message::parse(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 7, 0, 0, 0, 0]),
        Err(CodecError::BadHello)
    );
    // element overruns the message
    assert_eq!(
        Message::parse(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 12, 0, 0, 0, 0]),
        Err(CodecError::BadHello)
    );
    // padding missing
    assert_eq!(
        Message::parse(&[4, 0, 0, 14, 0, 0, 0, 1, 0, 2, 0, 6, 1, 2]),
        Err(CodecError::BadHello)
    );
    // dangling bytes
    assert_eq!(
        Message::parse(&[4, 0, 0, 10, 0, 0, 0, 1, 0, 2]),
        Err(CodecError::BadHello)
    );
}

#[test]
fn error_fixture() {
    let bytes = [
        4, 1, 0, 20, 0, 0, 0, 3, 0, 4, 0, 9, 4, 14, 0, 88, 0, 0, 0, 9,
    ];
    let Message::Error(e) = round(&bytes, 3) else {
        panic!("not an error")
    };
    assert_eq!(e.names(), ("OFPET_BAD_MATCH", "OFPBMC_BAD_PREREQ"));
    assert_eq!(e.offending_header().map(|h| h.xid), Some(9));
    assert_eq!(
        Message::parse(&[4, 1, 0, 10, 0, 0, 0, 3, 0, 4]),
        Err(CodecError::Truncated)
    );
}

#[test]
fn small_fixed_messages() {
    assert_eq!(
        round(&[4, 2, 0, 10, 0, 0, 0, 5, 0xab, 0xcd], 5),
        Message::EchoRequest(vec![0xab, 0xcd])
    );
    assert_eq!(
        round(&[4, 3, 0, 8, 0, 0, 0, 5], 5),
        Message::EchoReply(vec![])
    );
    assert_eq!(
        round(&[4, 5, 0, 8, 0, 0, 0, 1], 1),
        Message::FeaturesRequest
    );
    assert_eq!(
        round(&[4, 7, 0, 8, 0, 0, 0, 1], 1),
        Message::GetConfigRequest
    );
    assert_eq!(
        round(&[4, 20, 0, 8, 0, 0, 0, 1], 1),
        Message::BarrierRequest
    );
    assert_eq!(round(&[4, 21, 0, 8, 0, 0, 0, 1], 1), Message::BarrierReply);
    assert_eq!(
        round(&[4, 9, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xe5], 1),
        Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 0xffe5
        })
    );
    assert_eq!(
        round(&[4, 8, 0, 12, 0, 0, 0, 1, 0, 1, 0, 128], 1),
        Message::GetConfigReply(SwitchConfig {
            flags: 1,
            miss_send_len: 128
        })
    );
    let role = [
        4, 24, 0, 24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
    ];
    assert_eq!(
        round(&role, 1),
        Message::RoleRequest(Role {
            role: role::MASTER,
            generation_id: 7
        })
    );
    let mut reply = role;
    reply[1] = 25;
    assert!(matches!(round(&reply, 1), Message::RoleReply(_)));
    // fixed-size messages with extra bytes
    assert_eq!(
        Message::parse(&[4, 20, 0, 9, 0, 0, 0, 1, 0]),
        Err(CodecError::BadLength)
    );
    assert_eq!(
        Message::parse(&[4, 9, 0, 13, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
        Err(CodecError::BadLength)
    );
    // unknown type is kept, never an error
    assert_eq!(
        round(&[4, 15, 0, 10, 0, 0, 0, 1, 1, 2], 1),
        Message::Other {
            msg_type: 15,
            body: vec![1, 2]
        }
    );
}

#[test]
fn features_reply_fixture() {
    #[rustfmt::skip]
    let bytes = [
        4, 6, 0, 32, 0, 0, 0, 2,
        0, 0, 0, 0, 0, 0, 0, 0x2a, // dpid 42
        0, 0, 0, 0, 254, 0, 0, 0, // n_buffers 0, n_tables 254, aux 0
        0, 0, 0, 0x4f, 0, 0, 0, 0, // capabilities
    ];
    assert_eq!(
        round(&bytes, 2),
        Message::FeaturesReply(Features {
            datapath_id: 42,
            n_buffers: 0,
            n_tables: 254,
            auxiliary_id: 0,
            capabilities: 0x4f,
            reserved: 0
        })
    );
    assert_eq!(
        Message::parse(
            &bytes[..24]
                .iter()
                .copied()
                .enumerate()
                .map(|(i, b)| if i == 3 { 24 } else { b })
                .collect::<Vec<_>>()
        ),
        Err(CodecError::Truncated)
    );
}

#[test]
fn packet_in_and_out_fixtures() {
    #[rustfmt::skip]
    let pin = [
        4, 10, 0, 46, 0, 0, 0, 0,
        0xff, 0xff, 0xff, 0xff, 0, 4, 0, 0, // buffer, total_len 4, no_match, table 0
        0, 0, 0, 0, 0, 0, 0, 0, // cookie
        0, 1, 0, 12, 0x80, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0, // match in_port=3
        0, 0, // pad
        0xde, 0xad, 0xbe, 0xef,
    ];
    let Message::PacketIn(p) = round(&pin, 0) else {
        panic!("not a packet-in")
    };
    assert_eq!(p.match_.fields, vec![OxmField::InPort(3)]);
    assert_eq!(p.data, [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(p.total_len, 4);

    #[rustfmt::skip]
    let pout = [
        4, 13, 0, 42, 0, 0, 0, 6,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd, // no buffer, in_port CONTROLLER
        0, 16, 0, 0, 0, 0, 0, 0, // actions_len 16
        0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, // output FLOOD
        1, 2,
    ];
    assert_eq!(
        round(&pout, 6),
        Message::PacketOut(PacketOut {
            buffer_id: NO_BUFFER,
            in_port: port::CONTROLLER,
            actions: vec![Action::Output {
                port: port::FLOOD,
                max_len: 0
            }],
            data: vec![1, 2],
        })
    );
    // actions_len beyond the message
    let mut bad = pout;
    bad[17] = 40;
    assert_eq!(Message::parse(&bad), Err(CodecError::BadAction));
}

fn sample_port() -> Port {
    Port {
        port_no: 1,
        hw_addr: [2, 0, 0, 0, 0, 1],
        name: "h1-eth0".into(),
        config: 0,
        state: 4,
        curr: 0x840,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 0,
    }
}

#[test]
fn port_status_fixture() {
    let msg = Message::PortStatus(PortStatus {
        reason: 2,
        port: sample_port(),
    });
    let bytes = emit(&msg, 0);
    assert_eq!(bytes.len(), 80);
    assert_eq!(&bytes[8..9], &[2]);
    assert_eq!(&bytes[16..20], &[0, 0, 0, 1]);
    assert_eq!(&bytes[32..48], b"h1-eth0\0\0\0\0\0\0\0\0\0");
    assert_eq!(round(&bytes, 0), msg);
    let mut short = bytes[..72].to_vec();
    short[3] = 72;
    assert_eq!(Message::parse(&short), Err(CodecError::Truncated));
}

#[test]
fn flow_removed_fixture() {
    let msg = Message::FlowRemoved(FlowRemoved {
        cookie: 1,
        priority: 2,
        reason: 0,
        table_id: 3,
        duration_sec: 4,
        duration_nsec: 5,
        idle_timeout: 6,
        hard_timeout: 7,
        packet_count: 8,
        byte_count: 9,
        match_: Match::any(),
    });
    let bytes = emit(&msg, 1);
    assert_eq!(bytes.len(), 56);
    assert_eq!(&bytes[8..16], &[0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&bytes[16..20], &[0, 2, 0, 3]);
    assert_eq!(round(&bytes, 1), msg);
}

#[test]
fn meter_mod_fixture() {
    #[rustfmt::skip]
    let bytes = [
        4, 29, 0, 48, 0, 0, 0, 1,
        0, 0, 0, 5, 0, 0, 0, 7, // add, kbps|burst, meter 7
        0, 1, 0, 16, 0, 0, 0x03, 0xe8, 0, 0, 0, 100, 0, 0, 0, 0, // drop 1000 kbps, burst 100
        0, 2, 0, 16, 0, 0, 0x07, 0xd0, 0, 0, 0, 0, 1, 0, 0, 0, // dscp_remark 2000, prec 1
    ];
    assert_eq!(
        round(&bytes, 1),
        Message::MeterMod(MeterMod {
            command: MeterModCommand::Add,
            flags: 5,
            meter_id: 7,
            bands: vec![
                MeterBand::Drop {
                    rate: 1000,
                    burst_size: 100
                },
                MeterBand::DscpRemark {
                    rate: 2000,
                    burst_size: 0,
                    prec_level: 1
                },
            ],
        })
    );
    let mut b = bytes;
    b[9] = 3;
    assert_eq!(Message::parse(&b), Err(CodecError::BadCommand));
    let mut b = bytes;
    b[19] = 8;
    assert_eq!(Message::parse(&b), Err(CodecError::BadBand));
    let mut b = bytes;
    b[19] = 24;
    assert_eq!(Message::parse(&b), Err(CodecError::BadBand));
    let mut b = bytes;
    b[35] = 32;
    assert_eq!(Message::parse(&b), Err(CodecError::BadBand));
}

#[test]
fn multipart_flow_request_and_reply() {
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
    });
    let bytes = emit(&req, 4);
    // header 8 + mp header 8 + fixed 32 + empty match 8
    assert_eq!(bytes.len(), 56);
    assert_eq!(&bytes[8..12], &[0, 1, 0, 0]);
    assert_eq!(bytes[16], 0xff);
    assert_eq!(round(&bytes, 4), req);

    let fm = FlowMod::add(
        0,
        100,
        Match::builder().in_port(1).build().unwrap(),
        vec![Instruction::ApplyActions(vec![Action::output(2)])],
    );
    let stats = FlowStats {
        table_id: 0,
        duration_sec: 1,
        duration_nsec: 2,
        priority: 100,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0,
        packet_count: 10,
        byte_count: 1000,
        match_: fm.match_.clone(),
        instructions: fm.instructions.clone(),
    };
    assert_eq!(stats.rule_key(), fm.rule_key());
    let reply = Message::MultipartReply(MultipartReply {
        flags: MULTIPART_MORE,
        body: MultipartReplyBody::Flow(vec![stats.clone(), stats]),
    });
    let bytes = emit(&reply, 4);
    assert_eq!(bytes.len(), 16 + 2 * (48 + 16 + 24));
    assert_eq!(&bytes[16..18], &[0, 88], "entry length");
    let Message::MultipartReply(r) = round(&bytes, 4) else {
        panic!("not a reply")
    };
    assert!(r.more());

    // entry length below the minimum, unaligned, and overrunning
    for (len, what) in [(40u8, "short"), (90, "unaligned"), (200, "overrun")] {
        let mut b = bytes.clone();
        b[17] = len;
        assert_eq!(Message::parse(&b), Err(CodecError::BadMultipart), "{what}");
    }
}

#[test]
fn multipart_other_bodies() {
    let desc = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Desc(Desc {
            mfr_desc: "Nicira, Inc.".into(),
            hw_desc: "Open vSwitch".into(),
            sw_desc: "3.1.0".into(),
            serial_num: "None".into(),
            dp_desc: "s1".into(),
        }),
    });
    let bytes = emit(&desc, 1);
    assert_eq!(bytes.len(), 16 + 1056);
    assert_eq!(round(&bytes, 1), desc);
    let mut short = bytes[..1000].to_vec();
    short[2..4].copy_from_slice(&1000u16.to_be_bytes());
    assert_eq!(Message::parse(&short), Err(CodecError::BadMultipart));

    let ports = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::PortDesc(vec![sample_port(), sample_port()]),
    });
    let bytes = emit(&ports, 1);
    assert_eq!(bytes.len(), 16 + 128);
    assert_eq!(round(&bytes, 1), ports);
    let mut bad = bytes[..bytes.len() - 8].to_vec();
    let n = bad.len() as u16;
    bad[2..4].copy_from_slice(&n.to_be_bytes());
    assert_eq!(Message::parse(&bad), Err(CodecError::BadMultipart));

    let tables = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Table(vec![TableStats {
            table_id: 0,
            active_count: 3,
            lookup_count: 10,
            matched_count: 7,
        }]),
    });
    let bytes = emit(&tables, 1);
    assert_eq!(bytes.len(), 16 + 24);
    assert_eq!(round(&bytes, 1), tables);
    let mut bad = bytes[..bytes.len() - 4].to_vec();
    let n = bad.len() as u16;
    bad[2..4].copy_from_slice(&n.to_be_bytes());
    assert_eq!(Message::parse(&bad), Err(CodecError::BadMultipart));

    let meters = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Meter(vec![MeterStats {
            meter_id: 1,
            flow_count: 2,
            packet_in_count: 3,
            byte_in_count: 4,
            duration_sec: 5,
            duration_nsec: 6,
            band_stats: vec![BandStats {
                packet_band_count: 7,
                byte_band_count: 8,
            }],
        }]),
    });
    let bytes = emit(&meters, 1);
    assert_eq!(bytes.len(), 16 + 56);
    assert_eq!(&bytes[20..22], &[0, 56]);
    assert_eq!(round(&bytes, 1), meters);
    let mut bad = bytes.clone();
    bad[21] = 50;
    assert_eq!(Message::parse(&bad), Err(CodecError::BadMultipart));

    for body in [
        MultipartRequestBody::Desc,
        MultipartRequestBody::Table,
        MultipartRequestBody::PortDesc,
        MultipartRequestBody::Meter {
            meter_id: 0xffff_ffff,
        },
    ] {
        let m = Message::MultipartRequest(MultipartRequest { flags: 0, body });
        let bytes = emit(&m, 2);
        assert_eq!(round(&bytes, 2), m);
        // trailing junk is rejected
        let mut extra = bytes.clone();
        extra.extend_from_slice(&[0; 8]);
        let n = extra.len() as u16;
        extra[2..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(Message::parse(&extra), Err(CodecError::BadMultipart));
    }
}

#[test]
fn oversize_message_is_not_emitted() {
    let big = Message::EchoRequest(vec![0; MAX_MESSAGE_LEN]);
    let mut out = vec![1, 2, 3];
    assert_eq!(big.emit(1, &mut out), 0);
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(big.try_emit(1, &mut out), Err(CodecError::TooLong));
    let max = Message::EchoRequest(vec![0; MAX_MESSAGE_LEN - 8]);
    assert_eq!(max.emit(1, &mut out), MAX_MESSAGE_LEN);
    assert_eq!(&out[5..7], &[0xff, 0xff]);
}

#[test]
fn emit_appends_to_a_shared_buffer() {
    let fm = Message::parse(&FLOW_MOD).unwrap().1;
    let mut out = Vec::with_capacity(4 * FLOW_MOD.len());
    for xid in 0..4 {
        fm.emit(xid, &mut out);
    }
    let mut rest = &out[..];
    let mut xids = vec![];
    while let Some((h, n)) = frame(rest).unwrap() {
        xids.push(h.xid);
        assert_eq!(Message::parse(&rest[..n]).unwrap().1, fm);
        rest = &rest[n..];
    }
    assert_eq!(xids, [0, 1, 2, 3]);
    assert!(rest.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn emit_then_parse_is_identity(msg in strategies::message(), xid in any::<u32>()) {
        let bytes = emit(&msg, xid);
        let (x, back) = Message::parse(&bytes).unwrap();
        prop_assert_eq!(x, xid);
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(frame(&bytes).unwrap().map(|(_, n)| n), Some(bytes.len()));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame(&bytes);
        let _ = Message::parse(&bytes);
        // also with a consistent header, to get past the length check
        if bytes.len() >= 8 && bytes.len() <= MAX_MESSAGE_LEN {
            let mut b = bytes.clone();
            b[0] = VERSION;
            let n = b.len() as u16;
            b[2..4].copy_from_slice(&n.to_be_bytes());
            let _ = Message::parse(&b);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        msg in strategies::message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = emit(&msg, 7);
        let mut b = bytes.clone();
        for (i, v) in &edits {
            let i = i.index(b.len() - 4) + 4; // keep the header length consistent
            b[i] = *v;
        }
        if let Ok((_, m)) = Message::parse(&b) {
            // whatever parses must emit and parse back to itself
            let again = emit(&m, 7);
            prop_assert_eq!(Message::parse(&again).unwrap().1, m);
        }
        // a truncated message with a patched length must not panic either
        let n = cut.index(bytes.len() - 7) + 8;
        let mut t = bytes[..n].to_vec();
        t[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        let _ = Message::parse(&t);
    }

    #[test]
    fn frame_reassembles_any_split(
        msgs in proptest::collection::vec(strategies::message(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for (xid, m) in msgs.iter().enumerate() {
            m.emit(xid as u32, &mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut rx = Vec::new();
        let mut got = Vec::new();
        let mut prev = 0;
        for p in points {
            rx.extend_from_slice(&stream[prev..p]);
            prev = p;
            let mut used = 0;
            while let Some((h, n)) = frame(&rx[used..]).unwrap() {
                let (xid, m) = Message::parse(&rx[used..used + n]).unwrap();
                prop_assert_eq!(xid, h.xid);
                got.push(m);
                used += n;
            }
            rx.drain(..used);
        }
        prop_assert!(rx.is_empty());
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn normalize_is_idempotent_and_emits_valid(m in strategies::match_()) {
        if let Ok(n) = m.normalize() {
            prop_assert_eq!(n.normalize().unwrap(), n.clone());
            let mut keys: Vec<_> = n.fields.iter().map(OxmField::key).collect();
            let sorted = { let mut k = keys.clone(); k.sort(); k };
            prop_assert_eq!(&keys, &sorted);
            keys.dedup();
            prop_assert_eq!(keys.len(), n.fields.len());
        }
    }
}

#[test]
fn a_drop_meter_is_written_as_the_owned_meter_mod_would_be() {
    let meter = DropMeter {
        flags: 14,
        rate: 1000,
        burst_size: 100,
    };
    for (command, band) in [
        (MeterModCommand::Add, Some(&meter)),
        (MeterModCommand::Modify, Some(&meter)),
        (MeterModCommand::Delete, None),
    ] {
        let owned = Message::MeterMod(MeterMod {
            command,
            flags: band.map_or(0, |m| m.flags),
            meter_id: 9,
            bands: band.map(DropMeter::band).into_iter().collect(),
        });
        let mut want = Vec::new();
        owned.emit(77, &mut want);
        let mut got = vec![0xaa];
        let n = emit_meter_mod(77, command, 9, band, &mut got);
        assert_eq!(n, want.len());
        assert_eq!(&got[1..], &want[..]);
    }
}
