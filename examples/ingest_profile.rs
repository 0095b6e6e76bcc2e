//! Profiling driver: replays the recorded OVS capture through `IngestCore::datagram` with
//! the embedded configuration, `ROUNDS` times (default 200), for instruction counting
//! under `valgrind --tool=callgrind` (`cargo build --release --example ingest_profile`).

use reflex::config::Config;
use reflex::flow::engine::FlowEngine;
use reflex::ingest::IngestCore;

fn main() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ovs-sflow.pcapng"
    ))
    .expect("capture");
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("pcapng");
    let mut datagrams = Vec::new();
    while let Some(Ok(block)) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
            // Ethernet (14) + IPv4 without options (20) + UDP (8).
            datagrams.push(p.data[42..].to_vec());
        }
    }
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let config = Config::embedded().expect("embedded configuration");
    let mut core = IngestCore::new(FlowEngine::new(&config).expect("flow engine"), 4096);
    let mut now_ns = 1_000_000_000u64;
    let mut detections = 0u64;
    for _ in 0..rounds {
        for d in &datagrams {
            now_ns += 10_000;
            let _ = core.datagram(std::hint::black_box(d), now_ns, &mut |_| detections += 1);
        }
    }
    println!(
        "{} datagrams x {rounds} rounds, {detections} detections",
        datagrams.len()
    );
}
