//! The OpenFlow codec against independent ground truth: a real Open vSwitch 3.1 session
//! recorded to pcapng (every message must parse and re-emit to identical bytes), and
//! Wireshark's OpenFlow dissector reading messages we emit (no malformed packets).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use reflex::openflow::*;

const OF_PORT: u16 = 6653;

/// TCP payload per direction (src port, dst port), reassembled by sequence number.
fn tcp_streams(path: &Path) -> BTreeMap<(u16, u16), Vec<u8>> {
    let file = std::fs::File::open(path).expect("fixture present");
    let mut reader = PcapNgReader::new(file).expect("pcapng");
    let mut segments: BTreeMap<(u16, u16), BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    while let Some(block) = reader.next_block() {
        let block = block.expect("valid block");
        match block {
            Block::InterfaceDescription(idb) => {
                assert_eq!(
                    idb.linktype,
                    DataLink::ETHERNET,
                    "fixture is Ethernet-framed"
                )
            }
            Block::EnhancedPacket(epb) => {
                let frame = &epb.data[..];
                assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 only in this capture");
                let ip = &frame[14..];
                assert_eq!(ip[0] >> 4, 4);
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                assert_eq!(ip[9], 6, "TCP");
                let tcp = &ip[ihl..total];
                let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
                let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
                let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
                let off = usize::from(tcp[12] >> 4) * 4;
                let payload = &tcp[off..];
                if !payload.is_empty() {
                    // a retransmission lands on the same key and changes nothing
                    segments
                        .entry((sport, dport))
                        .or_default()
                        .insert(seq, payload.to_vec());
                }
            }
            _ => {}
        }
    }
    segments
        .into_iter()
        .map(|(dir, segs)| {
            let mut stream = Vec::new();
            let mut next: Option<u32> = None;
            for (seq, data) in segs {
                if let Some(n) = next {
                    assert_eq!(seq, n, "no gap in {dir:?}");
                }
                next = Some(seq.wrapping_add(data.len() as u32));
                stream.extend_from_slice(&data);
            }
            (dir, stream)
        })
        .collect()
}

/// Frames and parses a whole stream; checks each message re-emits to identical bytes.
fn messages(stream: &[u8]) -> Vec<(u32, Message)> {
    let mut rest = stream;
    let mut out = Vec::new();
    while let Some((header, n)) = frame(rest).expect("valid framing") {
        let bytes = &rest[..n];
        let (xid, msg) = Message::parse(bytes).expect("OVS message parses");
        assert_eq!(xid, header.xid);
        let mut again = Vec::new();
        msg.emit(xid, &mut again);
        assert_eq!(again, bytes, "re-emit of {msg:?}");
        out.push((xid, msg));
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "stream ends on a message boundary");
    out
}

#[test]
fn ovs_session_parses_and_round_trips() {
    let streams = tcp_streams(Path::new("tests/data/ovs-openflow13.pcapng"));
    let to_switch: Vec<_> = streams
        .iter()
        .filter(|((s, _), _)| *s == OF_PORT)
        .flat_map(|(_, s)| messages(s))
        .collect();
    let from_switch: Vec<_> = streams
        .iter()
        .filter(|((_, d), _)| *d == OF_PORT)
        .flat_map(|(_, s)| messages(s))
        .collect();

    let names = |v: &[(u32, Message)]| v.iter().map(|(_, m)| m.name()).collect::<Vec<_>>();
    assert_eq!(
        names(&from_switch),
        [
            "hello",
            "features_reply",
            "barrier_reply",
            "echo_request",
            "barrier_reply",
            "echo_request",
            "echo_request",
            "echo_request"
        ]
    );
    assert_eq!(
        names(&to_switch),
        [
            "hello",
            "features_request",
            "flow_mod",
            "flow_mod",
            "barrier_request",
            "echo_reply",
            "flow_mod",
            "barrier_request",
            "echo_reply",
            "echo_reply",
            "echo_reply"
        ]
    );

    let Message::Hello(hello) = &from_switch[0].1 else {
        panic!("switch starts with HELLO")
    };
    assert_eq!(negotiate(hello), Ok(VERSION));
    let Message::FeaturesReply(features) = &from_switch[1].1 else {
        panic!("features reply second")
    };
    assert_eq!(features.n_buffers, 0, "OVS reports no buffers");
    assert!(features.n_tables > 0);

    // every flow-mod carries a well-formed match and instruction list
    for (_, m) in &to_switch {
        if let Message::FlowMod(fm) = m {
            assert!(fm.match_.encoded_len() % 8 == 0);
            assert_eq!(fm.buffer_id, NO_BUFFER);
        }
    }
    // barrier replies answer the barrier requests' xids, in order
    let xids = |v: &[(u32, Message)], name: &str| {
        v.iter()
            .filter(|(_, m)| m.name() == name)
            .map(|(x, _)| *x)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        xids(&to_switch, "barrier_request"),
        xids(&from_switch, "barrier_reply")
    );
    assert_eq!(
        xids(&from_switch, "echo_request"),
        xids(&to_switch, "echo_reply")
    );
}

/// A complete ARP request frame (who-has 10.0.0.2 tell 10.0.0.1), 42 bytes.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}

/// One of every message type the codec models, as the controller or a switch would send.
fn every_message() -> Vec<Message> {
    let m5 = Match::builder()
        .in_port(1)
        .eth_src([0, 0, 0, 0, 0, 1])
        .ipv4_src(Ipv4Addr::new(10, 0, 0, 1))
        .ipv4_dst_prefix(Ipv4Addr::new(10, 0, 0, 0), 24)
        .icmpv4_type(8)
        .build()
        .expect("valid match");
    let tcp = Match::builder()
        .ipv6_src("2001:db8::1".parse().expect("v6"))
        .tcp_dst(22)
        .vlan_vid(10)
        .build()
        .expect("valid match");
    let port = Port {
        port_no: 1,
        hw_addr: [2, 0, 0, 0, 0, 1],
        name: "s1-eth1".into(),
        config: 0,
        state: 4,
        curr: 0x840,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 0,
    };
    let add = FlowMod::add(
        0,
        100,
        m5.clone(),
        vec![
            Instruction::Meter(1),
            Instruction::ApplyActions(vec![
                Action::PushVlan(0x8100),
                Action::SetField(OxmField::VlanVid {
                    vid: OFPVID_PRESENT | 5,
                    mask: None,
                }),
                Action::output(2),
                Action::output(port::CONTROLLER),
            ]),
            Instruction::WriteMetadata {
                metadata: 1,
                mask: 1,
            },
            Instruction::GotoTable(1),
        ],
    )
    .with_cookie(0x1234)
    .with_flags(flow_flags::SEND_FLOW_REM);
    let stats = FlowStats {
        table_id: 0,
        duration_sec: 5,
        duration_nsec: 0,
        priority: 100,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0x1234,
        packet_count: 3,
        byte_count: 294,
        match_: m5.clone(),
        instructions: add.instructions.clone(),
    };
    vec![
        Message::Hello(Hello::v13()),
        Message::Error(ErrorMsg {
            err_type: 4,
            code: 9,
            data: vec![4, 20, 0, 8, 0, 0, 0, 1],
        }),
        Message::EchoRequest(vec![1, 2, 3, 4]),
        Message::EchoReply(vec![1, 2, 3, 4]),
        Message::FeaturesRequest,
        Message::FeaturesReply(Features {
            datapath_id: 1,
            n_buffers: 0,
            n_tables: 254,
            auxiliary_id: 0,
            capabilities: 0x4f,
            reserved: 0,
        }),
        Message::GetConfigRequest,
        Message::GetConfigReply(SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
        Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 0xffff,
        }),
        Message::PacketIn(PacketIn {
            buffer_id: NO_BUFFER,
            total_len: 42,
            reason: 0,
            table_id: 0,
            cookie: 0,
            match_: Match::builder().in_port(3).build().expect("match"),
            data: arp_request(),
        }),
        Message::FlowRemoved(FlowRemoved {
            cookie: 1,
            priority: 100,
            reason: 0,
            table_id: 0,
            duration_sec: 1,
            duration_nsec: 2,
            idle_timeout: 10,
            hard_timeout: 0,
            packet_count: 1,
            byte_count: 64,
            match_: tcp.clone(),
        }),
        Message::PortStatus(PortStatus {
            reason: 2,
            port: port.clone(),
        }),
        Message::PacketOut(PacketOut {
            buffer_id: NO_BUFFER,
            in_port: port::CONTROLLER,
            actions: vec![Action::output(port::FLOOD)],
            data: arp_request(),
        }),
        Message::FlowMod(add),
        Message::FlowMod(FlowMod::add(
            1,
            10,
            tcp.clone(),
            vec![Instruction::ApplyActions(vec![])],
        )),
        Message::FlowMod(FlowMod::delete_strict(0, 100, m5)),
        Message::FlowMod(FlowMod::delete(TABLE_ALL, Match::any())),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::PortDesc,
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Desc,
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Table,
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Meter {
                meter_id: 0xffff_ffff,
            },
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(vec![stats]),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::PortDesc(vec![port]),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Desc(Desc {
                mfr_desc: "Nicira, Inc.".into(),
                hw_desc: "Open vSwitch".into(),
                sw_desc: "3.1.0".into(),
                serial_num: "None".into(),
                dp_desc: "s1".into(),
            }),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Table(vec![TableStats {
                table_id: 0,
                active_count: 3,
                lookup_count: 10,
                matched_count: 7,
            }]),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Meter(vec![MeterStats {
                meter_id: 1,
                flow_count: 1,
                packet_in_count: 10,
                byte_in_count: 1000,
                duration_sec: 3,
                duration_nsec: 0,
                band_stats: vec![BandStats {
                    packet_band_count: 2,
                    byte_band_count: 200,
                }],
            }]),
        }),
        Message::BarrierRequest,
        Message::BarrierReply,
        Message::RoleRequest(Role {
            role: role::MASTER,
            generation_id: 1,
        }),
        Message::RoleReply(Role {
            role: role::MASTER,
            generation_id: 1,
        }),
        Message::MeterMod(MeterMod {
            command: MeterModCommand::Add,
            flags: 1 | 4 | 8,
            meter_id: 1,
            bands: vec![
                MeterBand::Drop {
                    rate: 1000,
                    burst_size: 100,
                },
                MeterBand::DscpRemark {
                    rate: 500,
                    burst_size: 50,
                    prec_level: 1,
                },
            ],
        }),
    ]
}

/// A classic pcap with one Ethernet/IPv4/TCP packet per payload, 127.0.0.1 → :6653.
fn write_pcap(path: &Path, payloads: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    let mut seq: u32 = 1000;
    for (i, payload) in payloads.iter().enumerate() {
        let mut pkt = Vec::new();
        pkt.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let ip_total = (20 + 20 + payload.len()) as u16;
        pkt.extend_from_slice(&[0x45, 0]);
        pkt.extend_from_slice(&ip_total.to_be_bytes());
        pkt.extend_from_slice(&(i as u16).to_be_bytes());
        pkt.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
        pkt.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
        pkt.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
        pkt.extend_from_slice(&40000u16.to_be_bytes());
        pkt.extend_from_slice(&OF_PORT.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&1u32.to_be_bytes());
        pkt.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        pkt.extend_from_slice(payload);
        seq = seq.wrapping_add(payload.len() as u32);
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&pkt);
    }
    std::fs::write(path, f).expect("write pcap");
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn wireshark_accepts_every_message_we_emit() {
    if !tshark_available() {
        eprintln!("NOTICE: tshark not installed; skipping the Wireshark cross-check");
        return;
    }
    let msgs = every_message();
    let payloads: Vec<Vec<u8>> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut out = Vec::new();
            assert!(m.emit(i as u32 + 1, &mut out) > 0);
            // and our own parser agrees
            assert_eq!(Message::parse(&out).expect("parse").1, *m);
            out
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ours.pcap");
    write_pcap(&path, &payloads);
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-d", "tcp.port==6653,openflow", "-V"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in ["Malformed", "Expert Info (Error", "Expert Info (Warning"] {
        if let Some(pos) = text.find(bad) {
            let frame_start = text[..pos].rfind("\nFrame ").unwrap_or(0);
            let start = text[frame_start..pos]
                .find("OpenFlow")
                .map_or(frame_start, |o| frame_start + o);
            panic!(
                "tshark reports {bad}:\n{}",
                &text[start..(pos + 300).min(text.len())]
            );
        }
    }
    for name in [
        "OFPT_HELLO",
        "OFPT_ERROR",
        "OFPT_ECHO_REQUEST",
        "OFPT_ECHO_REPLY",
        "OFPT_FEATURES_REQUEST",
        "OFPT_FEATURES_REPLY",
        "OFPT_GET_CONFIG_REQUEST",
        "OFPT_GET_CONFIG_REPLY",
        "OFPT_SET_CONFIG",
        "OFPT_PACKET_IN",
        "OFPT_FLOW_REMOVED",
        "OFPT_PORT_STATUS",
        "OFPT_PACKET_OUT",
        "OFPT_FLOW_MOD",
        "OFPT_MULTIPART_REQUEST",
        "OFPT_MULTIPART_REPLY",
        "OFPT_BARRIER_REQUEST",
        "OFPT_BARRIER_REPLY",
        "OFPT_ROLE_REQUEST",
        "OFPT_ROLE_REPLY",
        "OFPT_METER_MOD",
        "OFPMP_FLOW",
        "OFPMP_PORT_DESC",
        "OFPMP_DESC",
        "OFPMP_TABLE",
        "OFPMP_METER",
        "OFPXMT_OFB_IPV4_DST",
        "OFPAT_SET_FIELD",
        "OFPIT_GOTO_TABLE",
        "OFPMBT_DSCP_REMARK",
    ] {
        assert!(text.contains(name), "tshark output lacks {name}");
    }
    // every packet was dissected as OpenFlow 1.3
    let frames = text.matches("\nFrame ").count() + usize::from(text.starts_with("Frame "));
    assert_eq!(frames, msgs.len());
    // top-level protocol lines only (an error's data is dissected again, indented)
    assert_eq!(text.matches("\nOpenFlow 1.3\n").count(), msgs.len());
}
