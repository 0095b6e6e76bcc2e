//! The representations of the library's hand-built datagrams
//! ([`reflex::sflow::fixtures`]), for the emitter's construct / deconstruct tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reflex::sflow::{AgentId, DataSource, ExtendedSwitch, IfCounters, Interface, SampledIp};

use super::{
    CounterRecordRepr, CountersSampleRepr, DatagramRepr, FlowRecordRepr, FlowSampleRepr,
    SampleRepr, SampledHeaderRepr,
};

/// The representation of [`COMPACT`](reflex::sflow::fixtures::COMPACT).
pub fn compact_repr() -> DatagramRepr {
    DatagramRepr {
        agent: AgentId {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)),
            sub_agent: 7,
        },
        sequence: 42,
        uptime_ms: 123_456,
        samples: vec![
            SampleRepr::Flow(FlowSampleRepr {
                expanded: false,
                sequence: 3,
                source: DataSource { kind: 0, index: 2 },
                sampling_rate: 10,
                sample_pool: 1000,
                drops: 0,
                input: Interface::Ifindex(2),
                output: Interface::Unknown,
                records: vec![
                    FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                        protocol: 1,
                        frame_length: 98,
                        stripped: 4,
                        header: vec![
                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 8,
                            0,
                        ],
                    }),
                    FlowRecordRepr::ExtendedSwitch(ExtendedSwitch {
                        src_vlan: 10,
                        src_priority: 0,
                        dst_vlan: 20,
                        dst_priority: 3,
                    }),
                ],
            }),
            SampleRepr::Counters(CountersSampleRepr {
                expanded: false,
                sequence: 9,
                source: DataSource { kind: 0, index: 2 },
                records: vec![
                    CounterRecordRepr::Generic(IfCounters {
                        if_index: 2,
                        if_type: 6,
                        if_speed: 10_000_000,
                        if_direction: 1,
                        if_status: 3,
                        in_octets: 1 << 32,
                        in_ucast: 5,
                        in_multicast: 6,
                        in_broadcast: 7,
                        out_octets: 1234,
                        out_ucast: 8,
                        promiscuous: 1,
                        ..IfCounters::default()
                    }),
                    CounterRecordRepr::Other {
                        enterprise: 0,
                        format: 2207,
                        data: vec![1, 2, 3, 4, 5],
                    },
                ],
            }),
        ],
    }
}

/// The representation of [`EXPANDED`](reflex::sflow::fixtures::EXPANDED).
pub fn expanded_repr() -> DatagramRepr {
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last));
    DatagramRepr {
        agent: AgentId {
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            sub_agent: 0,
        },
        sequence: u32::MAX,
        uptime_ms: 0,
        samples: vec![
            SampleRepr::Flow(FlowSampleRepr {
                expanded: true,
                sequence: 1,
                source: DataSource {
                    kind: 3,
                    index: 1 << 24,
                },
                sampling_rate: 100,
                sample_pool: 200,
                drops: 1,
                input: Interface::Discard(258),
                output: Interface::Multiple(3),
                records: vec![
                    FlowRecordRepr::SampledIpv4(SampledIp {
                        length: 84,
                        protocol: 1,
                        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                        src_port: 0,
                        dst_port: 0,
                        tcp_flags: 0,
                        tos: 0x10,
                    }),
                    FlowRecordRepr::SampledIpv6(SampledIp {
                        length: 104,
                        protocol: 17,
                        src: v6(1),
                        dst: v6(2),
                        src_port: 5001,
                        dst_port: 6343,
                        tcp_flags: 0,
                        tos: 5,
                    }),
                ],
            }),
            SampleRepr::Other {
                enterprise: 4413,
                format: 5,
                data: vec![0xde, 0xad, 0xbe, 0xef],
            },
            SampleRepr::Counters(CountersSampleRepr {
                expanded: true,
                sequence: 77,
                source: DataSource {
                    kind: 0,
                    index: 1 << 30,
                },
                records: vec![],
            }),
        ],
    }
}
