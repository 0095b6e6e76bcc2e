//! Decodes every sFlow datagram that Open vSwitch 3.1 sent during the recorded ping floods
//! (tests/data/ovs-sflow.pcapng), checks the totals against the capture's README, records
//! what OVS puts in the data source and interface fields, and re-emits each datagram
//! byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use reflex::sflow::{parse_datagram, CounterRecord, DataSource, FlowRecord, Interface, Sample};
use reflex_testkit::sflow::DatagramRepr;

const SFLOW_PORT: u16 = 6343;

/// The UDP payloads sent to the sFlow port, in capture order.
fn sflow_payloads() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ovs-sflow.pcapng");
    let mut reader = PcapNgReader::new(File::open(path).expect("capture present")).unwrap();
    let mut links = Vec::new();
    let mut payloads = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("well-formed pcapng") {
            Block::InterfaceDescription(idb) => links.push(idb.linktype),
            Block::EnhancedPacket(epb) => {
                let link = links[epb.interface_id as usize];
                if let Some(payload) = udp_payload(link, &epb.data, SFLOW_PORT) {
                    payloads.push(payload.to_vec());
                }
            }
            _ => {}
        }
    }
    payloads
}

/// Strips link, IPv4 and UDP headers; `None` unless the frame is UDP/IPv4 to `port`.
fn udp_payload(link: DataLink, frame: &[u8], port: u16) -> Option<&[u8]> {
    let ip = match link {
        DataLink::ETHERNET => {
            (frame.get(12..14)? == [0x08, 0x00]).then_some(())?;
            &frame[14..]
        }
        // Linux cooked capture: 16-byte header, protocol in the last two bytes.
        DataLink::LINUX_SLL => {
            (frame.get(14..16)? == [0x08, 0x00]).then_some(())?;
            &frame[16..]
        }
        // BSD loopback: 4-byte address family.
        DataLink::NULL | DataLink::LOOP => frame.get(4..)?,
        other => panic!("unexpected link type {other:?}"),
    };
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(usize::from(ip[0] & 0x0F) * 4..)?;
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    (dst_port == port).then(|| udp.get(8..udp_len))?
}

#[test]
fn decodes_every_ovs_datagram() {
    let payloads = sflow_payloads();
    assert_eq!(payloads.len(), 335);

    let (mut flows, mut counters, mut other_samples) = (0, 0, 0);
    let mut flow_records_by_type = BTreeMap::new();
    let mut counter_records_by_type = BTreeMap::new();
    let mut sources = BTreeSet::new();
    let mut counter_sources = BTreeSet::new();
    let mut source_is_input = 0;
    let mut source_is_output = 0;
    let mut outputs = BTreeSet::new();
    let mut inputs = BTreeSet::new();
    let mut sampling_rates = BTreeSet::new();

    for payload in &payloads {
        let datagram = parse_datagram(payload).expect("valid header");
        assert_eq!(datagram.agent.address, std::net::Ipv4Addr::LOCALHOST);
        for sample in datagram.samples() {
            match sample.expect("valid sample") {
                Sample::Flow(f) => {
                    flows += 1;
                    assert!(!f.expanded, "OVS sends compact flow samples");
                    sources.insert((f.source.kind, f.source.index));
                    inputs.insert(format!("{:?}", f.input));
                    outputs.insert(format!("{:?}", f.output));
                    sampling_rates.insert(f.sampling_rate);
                    if f.input == Interface::Ifindex(f.source.index) {
                        source_is_input += 1;
                    }
                    if f.output == Interface::Ifindex(f.source.index) {
                        source_is_output += 1;
                    }
                    let mut has_ethernet_header = false;
                    for record in f.records() {
                        let key = match record.expect("valid flow record") {
                            FlowRecord::SampledHeader(h) => {
                                has_ethernet_header |= h.protocol == 1;
                                assert!(h.header.len() <= 128);
                                assert!(h.frame_length as usize >= h.header.len());
                                (0, 1)
                            }
                            FlowRecord::SampledIpv4(_) => (0, 3),
                            FlowRecord::SampledIpv6(_) => (0, 4),
                            FlowRecord::ExtendedSwitch(_) => (0, 1001),
                            FlowRecord::Other {
                                enterprise, format, ..
                            } => (enterprise, format),
                        };
                        *flow_records_by_type.entry(key).or_insert(0) += 1;
                    }
                    assert!(
                        has_ethernet_header,
                        "flow sample without an Ethernet header"
                    );
                }
                Sample::Counters(c) => {
                    counters += 1;
                    counter_sources.insert((c.source.kind, c.source.index));
                    for record in c.records() {
                        let key = match record.expect("valid counter record") {
                            CounterRecord::Generic(ifc) => {
                                assert_eq!(
                                    c.source,
                                    DataSource {
                                        kind: 0,
                                        index: ifc.if_index
                                    }
                                );
                                (0, 1)
                            }
                            CounterRecord::Other {
                                enterprise, format, ..
                            } => (enterprise, format),
                        };
                        *counter_records_by_type.entry(key).or_insert(0) += 1;
                    }
                }
                Sample::Other { .. } => other_samples += 1,
            }
        }
    }

    assert_eq!(flows, 2241);
    assert_eq!(counters, 12);
    assert_eq!(other_samples, 0);
    assert_eq!(sampling_rates, BTreeSet::from([2]));
    // Every flow sample carries the sampled header and extended_switch, nothing else.
    assert_eq!(
        flow_records_by_type,
        BTreeMap::from([((0, 1), 2241), ((0, 1001), 2241)])
    );
    // Per-port counter samples: generic, ethernet, OpenFlow port and port name records;
    // the bridge-level sample carries OVS-specific records that are skipped as Other.
    assert_eq!(
        counter_records_by_type,
        BTreeMap::from([
            ((0, 1), 9),
            ((0, 2), 9),
            ((0, 1004), 9),
            ((0, 1005), 9),
            ((0, 2203), 3),
            ((0, 2207), 3),
        ])
    );
    assert_eq!(
        counter_sources,
        BTreeSet::from([(0, 6), (0, 7), (0, 8), (0, 9), (2, 1000)])
    );

    // What OVS puts in flow samples: the data source is the bridge itself
    // (entPhysicalEntry 1000), never a port, so it never equals the input (or output)
    // ifIndex; input and output are the ports' ifIndexes.
    assert_eq!(sources, BTreeSet::from([(2, 1000)]));
    assert_eq!(source_is_input, 0);
    assert_eq!(source_is_output, 0);
    assert_eq!(
        inputs,
        BTreeSet::from(["Ifindex(7)".to_owned(), "Ifindex(8)".to_owned()])
    );
    assert_eq!(outputs, inputs);
}

/// (input, output, IPv4 source, ICMP type) of an Ethernet/IPv4/ICMP sampled header.
fn icmp_path(f: &reflex::sflow::FlowSample<'_>) -> Option<(Interface, Interface, [u8; 4], u8)> {
    let header = f.records().find_map(|r| match r {
        Ok(FlowRecord::SampledHeader(h)) => Some(h.header),
        _ => None,
    })?;
    if header.get(12..14)? != [0x08, 0x00] || *header.get(23)? != 1 {
        return None;
    }
    let ihl = usize::from(header.get(14)? & 0x0F) * 4;
    let src = header.get(26..30)?.try_into().ok()?;
    Some((f.input, f.output, src, *header.get(14 + ihl)?))
}

#[test]
fn ovs_samples_both_directions_of_the_ping_flood_at_ingress() {
    let mut paths = BTreeMap::new();
    for payload in sflow_payloads() {
        for sample in parse_datagram(&payload).unwrap().samples() {
            if let Ok(Sample::Flow(f)) = sample {
                if let Some(path) = icmp_path(&f) {
                    *paths.entry(format!("{path:?}")).or_insert(0) += 1;
                }
            }
        }
    }
    // h1 (10.0.0.1) sits on ifIndex 7 and h2 (10.0.0.2) on ifIndex 8: echo requests enter
    // on 7 and leave on 8, replies the other way round. Both directions are sampled, each
    // with the port it entered on as input, so "ingress" for OVS means "the input port".
    let request = format!(
        "{:?}",
        (
            Interface::Ifindex(7),
            Interface::Ifindex(8),
            [10u8, 0, 0, 1],
            8u8
        )
    );
    let reply = format!(
        "{:?}",
        (
            Interface::Ifindex(8),
            Interface::Ifindex(7),
            [10u8, 0, 0, 2],
            0u8
        )
    );
    assert_eq!(paths, BTreeMap::from([(request, 1123), (reply, 1116)]));
}

/// Zeroes the XDR padding after each sampled header and opaque record: OVS leaves stale
/// bytes there (e.g. after 42-byte ARP headers) and the emitter always pads with zeros.
fn zero_padding(payload: &[u8]) -> Vec<u8> {
    let mut clean = payload.to_vec();
    let mut zero_after = |data: &[u8]| {
        let start = data.as_ptr() as usize - payload.as_ptr() as usize + data.len();
        let end = start + (4 - data.len() % 4) % 4;
        clean[start..end].fill(0);
    };
    for sample in parse_datagram(payload).unwrap().samples() {
        match sample.unwrap() {
            Sample::Flow(f) => {
                for record in f.records() {
                    match record.unwrap() {
                        FlowRecord::SampledHeader(h) => zero_after(h.header),
                        FlowRecord::Other { data, .. } => zero_after(data),
                        _ => {}
                    }
                }
            }
            Sample::Counters(c) => {
                for record in c.records() {
                    if let CounterRecord::Other { data, .. } = record.unwrap() {
                        zero_after(data);
                    }
                }
            }
            Sample::Other { .. } => {}
        }
    }
    clean
}

#[test]
fn reemits_every_ovs_datagram_byte_for_byte() {
    let mut out = vec![0u8; 65_536];
    let mut identical = 0;
    for payload in sflow_payloads() {
        let datagram = parse_datagram(&payload).unwrap();
        let repr = DatagramRepr::parse(&datagram).unwrap();
        assert_eq!(repr.buffer_len(), payload.len());
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(&out[..n], &zero_padding(&payload)[..]);
        identical += usize::from(out[..n] == payload[..]);
    }
    // Only the datagram holding the two sampled ARP frames (42-byte headers) carries
    // non-zero padding; every other one is reproduced exactly.
    assert_eq!(identical, 334);
}
