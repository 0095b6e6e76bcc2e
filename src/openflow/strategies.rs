//! proptest strategies for every codec type (test-only).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn mac() -> impl Strategy<Value = [u8; 6]> {
    any::<[u8; 6]>()
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// Basic-class field numbers this codec does not model (so they stay raw).
const UNMODELLED: &[u8] = &[
    1, 2, 7, 8, 17, 18, 21, 22, 23, 24, 25, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 127,
];

pub fn oxm_field() -> impl Strategy<Value = OxmField> {
    prop_oneof![
        any::<u32>().prop_map(OxmField::InPort),
        (mac(), proptest::option::of(mac()))
            .prop_map(|(addr, mask)| OxmField::EthDst { addr, mask }),
        (mac(), proptest::option::of(mac()))
            .prop_map(|(addr, mask)| OxmField::EthSrc { addr, mask }),
        any::<u16>().prop_map(OxmField::EthType),
        (any::<u16>(), proptest::option::of(any::<u16>()))
            .prop_map(|(vid, mask)| OxmField::VlanVid { vid, mask }),
        any::<u8>().prop_map(OxmField::IpProto),
        (0u8..4).prop_map(OxmField::IpEcn),
        (v4(), proptest::option::of(v4()))
            .prop_map(|(addr, mask)| OxmField::Ipv4Src { addr, mask }),
        (v4(), proptest::option::of(v4()))
            .prop_map(|(addr, mask)| OxmField::Ipv4Dst { addr, mask }),
        any::<u16>().prop_map(OxmField::TcpSrc),
        any::<u16>().prop_map(OxmField::TcpDst),
        any::<u16>().prop_map(OxmField::UdpSrc),
        any::<u16>().prop_map(OxmField::UdpDst),
        any::<u8>().prop_map(OxmField::Icmpv4Type),
        any::<u8>().prop_map(OxmField::Icmpv4Code),
        (v6(), proptest::option::of(v6()))
            .prop_map(|(addr, mask)| OxmField::Ipv6Src { addr, mask }),
        (v6(), proptest::option::of(v6()))
            .prop_map(|(addr, mask)| OxmField::Ipv6Dst { addr, mask }),
        any::<u8>().prop_map(OxmField::Icmpv6Type),
        any::<u8>().prop_map(OxmField::Icmpv6Code),
        (
            prop_oneof![
                proptest::sample::select(UNMODELLED).prop_map(|f| (OFPXMC_OPENFLOW_BASIC, f)),
                (0u16..0x8000, 0u8..128).prop_map(|(c, f)| (c, f)),
                (0x8001u16..=0xffff, 0u8..128).prop_map(|(c, f)| (c, f)),
            ],
            any::<bool>(),
            vec(any::<u8>(), 0..20)
        )
            .prop_map(|((class, field), has_mask, payload)| OxmField::Raw {
                class,
                field,
                has_mask,
                payload
            }),
    ]
}

pub fn match_() -> impl Strategy<Value = Match> {
    vec(oxm_field(), 0..6).prop_map(|fields| Match { fields })
}

/// A body length `l` with (4 + l) % 8 == 0.
fn padded_body() -> impl Strategy<Value = Vec<u8>> {
    (0usize..4).prop_flat_map(|k| vec(any::<u8>(), 4 + 8 * k))
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        oxm_field().prop_map(Action::SetField),
        any::<u16>().prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        any::<u32>().prop_map(Action::Group),
        any::<u32>().prop_map(Action::SetQueue),
        (
            any::<u16>().prop_filter("modelled", |t| ![0, 17, 18, 21, 22, 25].contains(t)),
            padded_body()
        )
            .prop_map(|(action_type, body)| Action::Raw { action_type, body }),
    ]
}

pub fn actions() -> impl Strategy<Value = Vec<Action>> {
    vec(action(), 0..4)
}

pub fn instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        any::<u8>().prop_map(Instruction::GotoTable),
        (any::<u64>(), any::<u64>())
            .prop_map(|(metadata, mask)| Instruction::WriteMetadata { metadata, mask }),
        actions().prop_map(Instruction::WriteActions),
        actions().prop_map(Instruction::ApplyActions),
        Just(Instruction::ClearActions),
        any::<u32>().prop_map(Instruction::Meter),
        (
            any::<u16>().prop_filter("modelled", |t| !(1..=6).contains(t)),
            padded_body()
        )
            .prop_map(|(instruction_type, body)| Instruction::Raw {
                instruction_type,
                body
            }),
    ]
}

pub fn instructions() -> impl Strategy<Value = Vec<Instruction>> {
    vec(instruction(), 0..4)
}

fn command() -> impl Strategy<Value = FlowModCommand> {
    prop_oneof![
        Just(FlowModCommand::Add),
        Just(FlowModCommand::Modify),
        Just(FlowModCommand::ModifyStrict),
        Just(FlowModCommand::Delete),
        Just(FlowModCommand::DeleteStrict),
    ]
}

pub fn flow_mod() -> impl Strategy<Value = FlowMod> {
    (
        (any::<u64>(), any::<u64>(), any::<u8>(), command()),
        (any::<u16>(), any::<u16>(), any::<u16>(), any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u16>()),
        match_(),
        instructions(),
    )
        .prop_map(
            |(
                (cookie, cookie_mask, table_id, command),
                (idle_timeout, hard_timeout, priority, buffer_id),
                (out_port, out_group, flags),
                match_,
                instructions,
            )| FlowMod {
                cookie,
                cookie_mask,
                table_id,
                command,
                idle_timeout,
                hard_timeout,
                priority,
                buffer_id,
                out_port,
                out_group,
                flags,
                match_,
                instructions,
            },
        )
}

pub fn port() -> impl Strategy<Value = Port> {
    ((any::<u32>(), mac(), "[a-z0-9-]{0,16}"), any::<[u32; 8]>()).prop_map(
        |((port_no, hw_addr, name), v)| Port {
            port_no,
            hw_addr,
            name,
            config: v[0],
            state: v[1],
            curr: v[2],
            advertised: v[3],
            supported: v[4],
            peer: v[5],
            curr_speed: v[6],
            max_speed: v[7],
        },
    )
}

pub fn flow_stats() -> impl Strategy<Value = FlowStats> {
    (
        (any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>()),
        (any::<u16>(), any::<u16>(), any::<u16>()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        match_(),
        instructions(),
    )
        .prop_map(
            |(
                (table_id, duration_sec, duration_nsec, priority),
                (idle_timeout, hard_timeout, flags),
                (cookie, packet_count, byte_count),
                match_,
                instructions,
            )| FlowStats {
                table_id,
                duration_sec,
                duration_nsec,
                priority,
                idle_timeout,
                hard_timeout,
                flags,
                cookie,
                packet_count,
                byte_count,
                match_,
                instructions,
            },
        )
}

fn unmodelled_mp() -> impl Strategy<Value = u16> {
    proptest::sample::select(vec![2u16, 4, 5, 6, 7, 8, 10, 11, 12, 14, 0xffff])
}

fn mp_request() -> impl Strategy<Value = MultipartRequest> {
    let body = prop_oneof![
        Just(MultipartRequestBody::Desc),
        Just(MultipartRequestBody::Table),
        Just(MultipartRequestBody::PortDesc),
        any::<u32>().prop_map(|meter_id| MultipartRequestBody::Meter { meter_id }),
        (
            (any::<u8>(), any::<u32>(), any::<u32>()),
            (any::<u64>(), any::<u64>()),
            match_()
        )
            .prop_map(
                |((table_id, out_port, out_group), (cookie, cookie_mask), match_)| {
                    MultipartRequestBody::Flow(FlowStatsRequest {
                        table_id,
                        out_port,
                        out_group,
                        cookie,
                        cookie_mask,
                        match_,
                    })
                }
            ),
        (unmodelled_mp(), vec(any::<u8>(), 0..24))
            .prop_map(|(mp_type, body)| MultipartRequestBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartRequest { flags, body })
}

fn mp_reply() -> impl Strategy<Value = MultipartReply> {
    let s = "[ -~&&[^\\x00]]{0,40}";
    let body = prop_oneof![
        (s, s, s, "[a-z0-9]{0,32}", s).prop_map(|(a, b, c, d, e)| MultipartReplyBody::Desc(Desc {
            mfr_desc: a,
            hw_desc: b,
            sw_desc: c,
            serial_num: d,
            dp_desc: e,
        })),
        vec(flow_stats(), 0..4).prop_map(MultipartReplyBody::Flow),
        vec(
            (any::<u8>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
                |(table_id, active_count, lookup_count, matched_count)| TableStats {
                    table_id,
                    active_count,
                    lookup_count,
                    matched_count,
                }
            ),
            0..4
        )
        .prop_map(MultipartReplyBody::Table),
        vec(
            (
                (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()),
                (any::<u32>(), any::<u32>()),
                vec(
                    (any::<u64>(), any::<u64>()).prop_map(|(p, b)| BandStats {
                        packet_band_count: p,
                        byte_band_count: b,
                    }),
                    0..3
                )
            )
                .prop_map(|((meter_id, flow_count, pi, bi), (ds, dn), band_stats)| {
                    MeterStats {
                        meter_id,
                        flow_count,
                        packet_in_count: pi,
                        byte_in_count: bi,
                        duration_sec: ds,
                        duration_nsec: dn,
                        band_stats,
                    }
                }),
            0..3
        )
        .prop_map(MultipartReplyBody::Meter),
        vec(port(), 0..4).prop_map(MultipartReplyBody::PortDesc),
        (unmodelled_mp(), vec(any::<u8>(), 0..24))
            .prop_map(|(mp_type, body)| MultipartReplyBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartReply { flags, body })
}

fn meter_band() -> impl Strategy<Value = MeterBand> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(rate, burst_size)| MeterBand::Drop { rate, burst_size }),
        (any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(rate, burst_size, prec_level)| {
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            }
        }),
        (
            any::<u16>().prop_filter("modelled", |t| *t != 1 && *t != 2),
            any::<u32>(),
            any::<u32>(),
            (0usize..3).prop_flat_map(|k| vec(any::<u8>(), 4 + 8 * k))
        )
            .prop_map(|(band_type, rate, burst_size, body)| MeterBand::Raw {
                band_type,
                rate,
                burst_size,
                body
            }),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    let elem = prop_oneof![
        vec(any::<u32>(), 0..3).prop_map(HelloElement::VersionBitmap),
        (
            any::<u16>().prop_filter("bitmap", |t| *t != 1),
            vec(any::<u8>(), 0..12)
        )
            .prop_map(|(elem_type, data)| HelloElement::Unknown { elem_type, data }),
    ];
    (1u8..=255, vec(elem, 0..3)).prop_map(|(version, elements)| Hello { version, elements })
}

/// Message types this codec does not model.
const OTHER_TYPES: &[u8] = &[4, 15, 16, 17, 22, 23, 26, 27, 28, 30, 31, 100, 255];

pub fn message() -> impl Strategy<Value = Message> {
    let bytes = || vec(any::<u8>(), 0..40);
    let config = || {
        (any::<u16>(), any::<u16>()).prop_map(|(flags, miss_send_len)| SwitchConfig {
            flags,
            miss_send_len,
        })
    };
    let role = || {
        (any::<u32>(), any::<u64>()).prop_map(|(role, generation_id)| Role {
            role,
            generation_id,
        })
    };
    prop_oneof![
        hello().prop_map(Message::Hello),
        (any::<u16>(), any::<u16>(), bytes()).prop_map(|(err_type, code, data)| Message::Error(
            ErrorMsg {
                err_type,
                code,
                data
            }
        )),
        bytes().prop_map(Message::EchoRequest),
        bytes().prop_map(Message::EchoReply),
        Just(Message::FeaturesRequest),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(d, b, t, a, c, r)| Message::FeaturesReply(Features {
                datapath_id: d,
                n_buffers: b,
                n_tables: t,
                auxiliary_id: a,
                capabilities: c,
                reserved: r,
            })),
        Just(Message::GetConfigRequest),
        config().prop_map(Message::GetConfigReply),
        config().prop_map(Message::SetConfig),
        (
            (
                any::<u32>(),
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                any::<u64>()
            ),
            match_(),
            bytes()
        )
            .prop_map(
                |((buffer_id, total_len, reason, table_id, cookie), match_, data)| {
                    Message::PacketIn(PacketIn {
                        buffer_id,
                        total_len,
                        reason,
                        table_id,
                        cookie,
                        match_,
                        data,
                    })
                }
            ),
        (
            (any::<u64>(), any::<u16>(), any::<u8>(), any::<u8>()),
            (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()),
            (any::<u64>(), any::<u64>()),
            match_()
        )
            .prop_map(
                |((cookie, priority, reason, table_id), (ds, dn, it, ht), (pc, bc), match_)| {
                    Message::FlowRemoved(FlowRemoved {
                        cookie,
                        priority,
                        reason,
                        table_id,
                        duration_sec: ds,
                        duration_nsec: dn,
                        idle_timeout: it,
                        hard_timeout: ht,
                        packet_count: pc,
                        byte_count: bc,
                        match_,
                    })
                }
            ),
        (any::<u8>(), port())
            .prop_map(|(reason, port)| Message::PortStatus(PortStatus { reason, port })),
        (any::<u32>(), any::<u32>(), actions(), bytes()).prop_map(
            |(buffer_id, in_port, actions, data)| Message::PacketOut(PacketOut {
                buffer_id,
                in_port,
                actions,
                data,
            })
        ),
        flow_mod().prop_map(Message::FlowMod),
        mp_request().prop_map(Message::MultipartRequest),
        mp_reply().prop_map(Message::MultipartReply),
        Just(Message::BarrierRequest),
        Just(Message::BarrierReply),
        role().prop_map(Message::RoleRequest),
        role().prop_map(Message::RoleReply),
        (
            prop_oneof![
                Just(MeterModCommand::Add),
                Just(MeterModCommand::Modify),
                Just(MeterModCommand::Delete)
            ],
            any::<u16>(),
            any::<u32>(),
            vec(meter_band(), 0..3)
        )
            .prop_map(
                |(command, flags, meter_id, bands)| Message::MeterMod(MeterMod {
                    command,
                    flags,
                    meter_id,
                    bands,
                })
            ),
        (proptest::sample::select(OTHER_TYPES), bytes())
            .prop_map(|(msg_type, body)| Message::Other { msg_type, body }),
    ]
}
