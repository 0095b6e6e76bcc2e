//! Fixed-size XDR layouts of sFlow v5 structures, read in place with `zerocopy`.
//!
//! Every field is a big-endian word with alignment 1, so a layout can be viewed at any
//! offset of a received buffer; only its length has to be checked (done by
//! `ref_from_prefix`). Variable parts (addresses, opaque data, record lists) are handled by
//! the decoder between these fixed pieces.

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Builds an sFlow `data_format` word: 20-bit enterprise, 12-bit format.
pub const fn data_format(enterprise: u32, format: u32) -> u32 {
    (enterprise << 12) | format
}

/// Sample type: flow_sample.
pub const FLOW_SAMPLE: u32 = data_format(0, 1);
/// Sample type: counters_sample.
pub const COUNTERS_SAMPLE: u32 = data_format(0, 2);
/// Sample type: flow_sample_expanded.
pub const FLOW_SAMPLE_EXPANDED: u32 = data_format(0, 3);
/// Sample type: counters_sample_expanded.
pub const COUNTERS_SAMPLE_EXPANDED: u32 = data_format(0, 4);
/// Flow record: sampled_header.
pub const SAMPLED_HEADER: u32 = data_format(0, 1);
/// Flow record: sampled_ipv4.
pub const SAMPLED_IPV4: u32 = data_format(0, 3);
/// Flow record: sampled_ipv6.
pub const SAMPLED_IPV6: u32 = data_format(0, 4);
/// Flow record: extended_switch.
pub const EXTENDED_SWITCH: u32 = data_format(0, 1001);
/// Counter record: generic interface counters.
pub const IF_COUNTERS: u32 = data_format(0, 1);

/// Rounds an XDR opaque length up to its padded size; `None` on overflow.
#[inline]
pub fn padded(len: usize) -> Option<usize> {
    len.checked_add(3).map(|n| n & !3)
}

/// Version and agent address type, the part of the header before the address.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DatagramPrefix {
    pub version: U32,
    pub address_type: U32,
}

/// The header words after the agent address.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DatagramTail {
    pub sub_agent: U32,
    pub sequence: U32,
    pub uptime_ms: U32,
    pub sample_count: U32,
}

/// The header of every sample and record: `data_format` and the opaque length.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    pub data_format: U32,
    pub length: U32,
}

/// Size of [`RecordHeader`]: the least any sample or record occupies.
pub const RECORD_HEADER_LEN: usize = 8;

/// flow_sample fixed part, up to and including the record count.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FlowSampleCompact {
    pub sequence: U32,
    pub source: U32,
    pub sampling_rate: U32,
    pub sample_pool: U32,
    pub drops: U32,
    pub input: U32,
    pub output: U32,
    pub record_count: U32,
}

/// flow_sample_expanded fixed part, up to and including the record count.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FlowSampleExpanded {
    pub sequence: U32,
    pub source_type: U32,
    pub source_index: U32,
    pub sampling_rate: U32,
    pub sample_pool: U32,
    pub drops: U32,
    pub input_format: U32,
    pub input_value: U32,
    pub output_format: U32,
    pub output_value: U32,
    pub record_count: U32,
}

/// counters_sample fixed part.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CountersSampleCompact {
    pub sequence: U32,
    pub source: U32,
    pub record_count: U32,
}

/// counters_sample_expanded fixed part.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CountersSampleExpanded {
    pub sequence: U32,
    pub source_type: U32,
    pub source_index: U32,
    pub record_count: U32,
}

/// sampled_header fixed part; the header bytes (padded) follow.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SampledHeaderFixed {
    pub protocol: U32,
    pub frame_length: U32,
    pub stripped: U32,
    pub header_length: U32,
}

/// sampled_ipv4.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SampledIpv4 {
    pub length: U32,
    pub protocol: U32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: U32,
    pub dst_port: U32,
    pub tcp_flags: U32,
    pub tos: U32,
}

/// sampled_ipv6.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SampledIpv6 {
    pub length: U32,
    pub protocol: U32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: U32,
    pub dst_port: U32,
    pub tcp_flags: U32,
    pub priority: U32,
}

/// extended_switch.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ExtendedSwitch {
    pub src_vlan: U32,
    pub src_priority: U32,
    pub dst_vlan: U32,
    pub dst_priority: U32,
}

/// if_counters (generic interface counters).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IfCounters {
    pub if_index: U32,
    pub if_type: U32,
    pub if_speed: U64,
    pub if_direction: U32,
    pub if_status: U32,
    pub in_octets: U64,
    pub in_ucast: U32,
    pub in_multicast: U32,
    pub in_broadcast: U32,
    pub in_discards: U32,
    pub in_errors: U32,
    pub in_unknown_protos: U32,
    pub out_octets: U64,
    pub out_ucast: U32,
    pub out_multicast: U32,
    pub out_broadcast: U32,
    pub out_discards: U32,
    pub out_errors: U32,
    pub promiscuous: U32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes_match_the_spec() {
        assert_eq!(size_of::<DatagramPrefix>() + size_of::<DatagramTail>(), 24);
        assert_eq!(size_of::<RecordHeader>(), RECORD_HEADER_LEN);
        assert_eq!(size_of::<FlowSampleCompact>(), 32);
        assert_eq!(size_of::<FlowSampleExpanded>(), 44);
        assert_eq!(size_of::<CountersSampleCompact>(), 12);
        assert_eq!(size_of::<CountersSampleExpanded>(), 16);
        assert_eq!(size_of::<SampledHeaderFixed>(), 16);
        assert_eq!(size_of::<SampledIpv4>(), 32);
        assert_eq!(size_of::<SampledIpv6>(), 56);
        assert_eq!(size_of::<ExtendedSwitch>(), 16);
        assert_eq!(size_of::<IfCounters>(), 88);
    }

    #[test]
    fn data_format_and_padding() {
        assert_eq!(EXTENDED_SWITCH, 1001);
        assert_eq!(data_format(4413, 5), (4413 << 12) | 5);
        assert_eq!(padded(0), Some(0));
        assert_eq!(padded(1), Some(4));
        assert_eq!(padded(4), Some(4));
        assert_eq!(padded(5), Some(8));
        assert_eq!(padded(usize::MAX), None);
    }
}
