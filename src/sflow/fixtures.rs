//! Hand-built sFlow v5 datagrams shared by the decoder's tests here and the emitter's tests
//! in reflex-testkit (written word by word from sflow_version_5.txt so that neither side of
//! the codec checks itself), and the recorded Open vSwitch capture.

/// IPv4 agent; a compact flow sample (sampled_header + extended_switch) and a compact
/// counters sample (generic interface counters + an unknown record of 5 bytes).
#[rustfmt::skip]
pub const COMPACT: [u8; 264] = [
    // datagram header
    0, 0, 0, 5,           // version
    0, 0, 0, 1,           // agent address type IPv4
    10, 0, 0, 254,        // agent 10.0.0.254
    0, 0, 0, 7,           // sub-agent
    0, 0, 0, 42,          // sequence
    0, 1, 0xe2, 0x40,     // uptime 123456 ms
    0, 0, 0, 2,           // samples
    // flow_sample
    0, 0, 0, 1,           // enterprise 0, format 1
    0, 0, 0, 96,          // length
    0, 0, 0, 3,           // sequence
    0, 0, 0, 2,           // source: type 0, index 2
    0, 0, 0, 10,          // sampling rate
    0, 0, 3, 0xe8,        // sample pool 1000
    0, 0, 0, 0,           // drops
    0, 0, 0, 2,           // input ifIndex 2
    0x3f, 0xff, 0xff, 0xff, // output unknown
    0, 0, 0, 2,           // records
    //   sampled_header
    0, 0, 0, 1,  0, 0, 0, 32,
    0, 0, 0, 1,           // protocol Ethernet
    0, 0, 0, 98,          // frame length
    0, 0, 0, 4,           // stripped
    0, 0, 0, 14,          // header length
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 8, 0, 0, 0,
    //   extended_switch
    0, 0, 3, 0xe9,  0, 0, 0, 16,
    0, 0, 0, 10,  0, 0, 0, 0,  0, 0, 0, 20,  0, 0, 0, 3,
    // counters_sample
    0, 0, 0, 2,           // enterprise 0, format 2
    0, 0, 0, 124,         // length
    0, 0, 0, 9,           // sequence
    0, 0, 0, 2,           // source: type 0, index 2
    0, 0, 0, 2,           // records
    //   generic interface counters
    0, 0, 0, 1,  0, 0, 0, 88,
    0, 0, 0, 2,           // ifIndex
    0, 0, 0, 6,           // ifType
    0, 0, 0, 0, 0, 0x98, 0x96, 0x80, // ifSpeed 10 Mb/s
    0, 0, 0, 1,           // direction
    0, 0, 0, 3,           // status
    0, 0, 0, 1, 0, 0, 0, 0, // in octets 2^32
    0, 0, 0, 5,  0, 0, 0, 6,  0, 0, 0, 7,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 4, 0xd2, // out octets 1234
    0, 0, 0, 8,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 1,
    //   unknown record, enterprise 0 format 2207, 5 bytes + 3 padding
    0, 0, 0x08, 0x9f,  0, 0, 0, 5,
    1, 2, 3, 4, 5, 0, 0, 0,
];

/// IPv6 agent; an expanded flow sample (discarded input, multiple outputs, sampled_ipv4 +
/// sampled_ipv6), an unknown sample type, and an expanded counters sample with no records.
#[rustfmt::skip]
pub const EXPANDED: [u8; 232] = [
    // datagram header
    0, 0, 0, 5,
    0, 0, 0, 2,           // agent address type IPv6
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2001:db8::1
    0, 0, 0, 0,           // sub-agent
    0xff, 0xff, 0xff, 0xff, // sequence
    0, 0, 0, 0,           // uptime
    0, 0, 0, 3,           // samples
    // flow_sample_expanded
    0, 0, 0, 3,
    0, 0, 0, 148,         // length: 44 + 40 + 64
    0, 0, 0, 1,           // sequence
    0, 0, 0, 3,           // source type 3
    0x01, 0, 0, 0,        // source index 2^24 (needs the expanded form)
    0, 0, 0, 100,         // sampling rate
    0, 0, 0, 200,         // sample pool
    0, 0, 0, 1,           // drops
    0, 0, 0, 1,  0, 0, 1, 2,  // input: discarded, reason 258 (ACL)
    0, 0, 0, 2,  0, 0, 0, 3,  // output: multiple, 3 interfaces
    0, 0, 0, 2,           // records
    //   sampled_ipv4
    0, 0, 0, 3,  0, 0, 0, 32,
    0, 0, 0, 84,          // length
    0, 0, 0, 1,           // protocol ICMP
    10, 0, 0, 1,  10, 0, 0, 2,
    0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0x10,
    //   sampled_ipv6
    0, 0, 0, 4,  0, 0, 0, 56,
    0, 0, 0, 104,         // length
    0, 0, 0, 17,          // protocol UDP
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    0, 0, 0x13, 0x89,  0, 0, 0x18, 0xc7,  0, 0, 0, 0,  0, 0, 0, 5,
    // unknown sample: enterprise 4413, format 5, 4 bytes
    0x01, 0x13, 0xd0, 0x05,  0, 0, 0, 4,
    0xde, 0xad, 0xbe, 0xef,
    // counters_sample_expanded
    0, 0, 0, 4,
    0, 0, 0, 16,
    0, 0, 0, 77,          // sequence
    0, 0, 0, 0,           // source type 0
    0x40, 0, 0, 0,        // source index 2^30
    0, 0, 0, 0,           // records
];

#[cfg(test)]
/// The UDP payloads of the recorded Open vSwitch capture (tests/data/ovs-sflow.pcapng).
pub fn ovs_capture() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ovs-sflow.pcapng"
    ))
    .unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(Ok(block)) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
            // Ethernet (14) + IPv4 without options (20) + UDP (8).
            out.push(p.data[42..].to_vec());
        }
    }
    out
}
