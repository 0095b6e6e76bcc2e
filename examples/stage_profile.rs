//! Throwaway: per-stage instruction counts (STAGE=decode|parse|key|full).
use reflex::config::Config;
use reflex::flow::engine::{flow_defs, FlowEngine};
use reflex::flow::key::FlowKey;
use reflex::flow::sample::Sample;
use reflex::ingest::IngestCore;
use reflex::packet::{parse_sampled_header_into, HeaderKeys};
use reflex::sflow::{parse_datagram, PacketRecord, ScannedSample};

fn main() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ovs-sflow.pcapng"
    ))
    .unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut datagrams = Vec::new();
    while let Some(Ok(block)) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
            datagrams.push(p.data[42..].to_vec());
        }
    }
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let stage = std::env::var("STAGE").unwrap_or_default();
    let config = Config::embedded().unwrap();
    let defs = flow_defs(&config).unwrap();
    let mut core = IngestCore::new(FlowEngine::new(&config).unwrap(), 4096);
    let mut acc = 0u64;
    let mut now_ns = 1_000_000_000u64;
    for _ in 0..rounds {
        for d in &datagrams {
            now_ns += 10_000;
            let d = std::hint::black_box(&d[..]);
            if stage == "full" {
                let _ = core.datagram(d, now_ns, &mut |_| acc += 1);
                continue;
            }
            let Ok(dg) = parse_datagram(d) else { continue };
            let agent = dg.agent.address;
            let _ = dg.scan(|s| {
                if let ScannedSample::Flow(head, record) = s {
                    if stage == "decode" {
                        acc += head.sampling_rate as u64;
                        return;
                    }
                    let mut sample = Sample {
                        agent,
                        source: head.source,
                        input: head.input,
                        output: head.output,
                        sampling_rate: head.sampling_rate.max(1),
                        frame_length: 0,
                        keys: HeaderKeys::default(),
                    };
                    if let PacketRecord::Header(h) = record {
                        parse_sampled_header_into(h.protocol, h.header, &mut sample.keys);
                        sample.frame_length = h.frame_length;
                    }
                    let sample = std::hint::black_box(sample);
                    if stage == "parse" {
                        return;
                    }
                    let mut key = FlowKey::EMPTY;
                    if defs[0].key_of(&sample, &mut key) {
                        acc += key.hash64() & 1;
                    }
                }
            });
        }
    }
    println!("{acc}");
}
