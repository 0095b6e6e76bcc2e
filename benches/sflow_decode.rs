//! sFlow v5 decoding throughput on the recorded OVS capture: our zero-copy decoder against
//! the `sflow-parser` crate, both walking every sample and flow record, and our full
//! per-sample ingest path (decode, sampled-header parse, flow keys, sketch, top-k,
//! threshold: `IngestCore::datagram` with the embedded configuration). Throughput is in
//! samples.

use std::fs::File;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use reflex::config::Config;
use reflex::flow::engine::FlowEngine;
use reflex::ingest::IngestCore;
use reflex::sflow::{parse_datagram, CounterRecord, FlowRecord, Sample};

/// UDP payloads of the capture's Ethernet/IPv4/UDP frames.
fn capture() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ovs-sflow.pcapng");
    let mut reader = PcapNgReader::new(File::open(path).expect("capture")).expect("pcapng");
    let mut payloads = Vec::new();
    let mut links = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("block") {
            Block::InterfaceDescription(idb) => links.push(idb.linktype),
            Block::EnhancedPacket(epb) => {
                assert_eq!(links[epb.interface_id as usize], DataLink::ETHERNET);
                let ip = &epb.data[14..];
                let udp = &ip[usize::from(ip[0] & 0x0F) * 4..];
                payloads.push(udp[8..].to_vec());
            }
            _ => {}
        }
    }
    payloads
}

/// Decodes and walks one datagram with our decoder; returns (samples, checksum).
fn walk_reflex(buf: &[u8]) -> (u64, u64) {
    let Ok(datagram) = parse_datagram(buf) else {
        return (0, 0);
    };
    let (mut samples, mut sum) = (0u64, 0u64);
    for sample in datagram.samples().flatten() {
        samples += 1;
        match sample {
            Sample::Flow(f) => {
                sum += u64::from(f.input == f.output) + u64::from(f.sampling_rate);
                for record in f.records().flatten() {
                    match record {
                        FlowRecord::SampledHeader(h) => {
                            sum += u64::from(h.frame_length) + h.header.len() as u64
                        }
                        FlowRecord::ExtendedSwitch(s) => sum += u64::from(s.src_vlan),
                        _ => sum += 1,
                    }
                }
            }
            Sample::Counters(c) => {
                for record in c.records().flatten() {
                    match record {
                        CounterRecord::Generic(ifc) => sum += ifc.in_octets,
                        CounterRecord::Other { data, .. } => sum += data.len() as u64,
                    }
                }
            }
            Sample::Other { .. } => {}
        }
    }
    (samples, sum)
}

/// The same walk over `sflow-parser`'s owned datagram.
fn walk_peer(buf: &[u8]) -> (u64, u64) {
    use sflow_parser::models::{CounterData, FlowData, SampleData};
    let Ok(datagram) = sflow_parser::parse_datagram(buf) else {
        return (0, 0);
    };
    let (mut samples, mut sum) = (0u64, 0u64);
    for sample in &datagram.samples {
        samples += 1;
        match &sample.sample_data {
            SampleData::FlowSample(f) => {
                sum += u64::from(f.input == f.output) + u64::from(f.sampling_rate);
                for record in &f.flow_records {
                    match &record.flow_data {
                        FlowData::SampledHeader(h) => {
                            sum += u64::from(h.frame_length) + h.header.len() as u64
                        }
                        FlowData::ExtendedSwitch(s) => sum += u64::from(s.src_vlan),
                        _ => sum += 1,
                    }
                }
            }
            SampleData::CountersSample(c) => {
                for record in &c.counters {
                    match &record.counter_data {
                        CounterData::GenericInterface(ifc) => sum += ifc.if_in_octets,
                        _ => sum += 1,
                    }
                }
            }
            _ => {}
        }
    }
    (samples, sum)
}

fn bench(c: &mut Criterion) {
    let datagrams = capture();
    let samples: u64 = datagrams.iter().map(|d| walk_reflex(d).0).sum();
    let peer_samples: u64 = datagrams.iter().map(|d| walk_peer(d).0).sum();
    assert_eq!(samples, peer_samples, "both decoders see every sample");

    let mut group = c.benchmark_group("sflow_decode");
    group.throughput(Throughput::Elements(samples));
    group.bench_function("reflex", |b| {
        b.iter(|| {
            datagrams
                .iter()
                .map(|d| walk_reflex(black_box(d)).1)
                .sum::<u64>()
        })
    });
    group.bench_function("sflow-parser", |b| {
        b.iter(|| {
            datagrams
                .iter()
                .map(|d| walk_peer(black_box(d)).1)
                .sum::<u64>()
        })
    });
    let config = Config::embedded().expect("embedded configuration");
    let mut core = IngestCore::new(
        FlowEngine::new(&config.flow_set().expect("flows")).expect("flow engine"),
        4096,
    );
    let mut now_ns = 1_000_000_000u64;
    group.bench_function("reflex_full_path", |b| {
        b.iter(|| {
            let mut detections = 0u64;
            for d in &datagrams {
                // Datagrams 10 µs apart, as at 100k datagrams/s.
                now_ns += 10_000;
                let _ = core.datagram(black_box(d), now_ns, &mut |_| detections += 1);
            }
            detections
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
