//! Profiling driver for `IngestCore::datagram`, for instruction counting under
//! `valgrind --tool=callgrind` and quick timings (`cargo build --release --example
//! ingest_profile`). `ROUNDS` passes (default 200) over one of two inputs:
//!
//! - default: the recorded OVS capture with the embedded configuration;
//! - `LOAD=1`: 20 000 datagrams of `reflex-load sflow`'s default model (7 samples each,
//!   Zipf over 10k sources, 4 agents) with the two flows and threshold that
//!   `tools/bench.sh ingest` gives reflexd — the flat-out ingest comparison's work, without
//!   the sockets. `CONFIG=FILE` measures another configuration on the same datagrams.
//!
//! Prints the wall time per sample (a rough figure; criterion benches are the reference).

use std::time::Instant;

use reflex::config::Config;
use reflex::flow::engine::FlowEngine;
use reflex::ingest::IngestCore;
use reflex_testkit::load::{ModelConfig, TrafficModel};

/// The flows and threshold of `tools/bench.sh ingest`.
const BENCH_INGEST_TOML: &str = include_str!("../tools/reflex-load/ingest-flows.toml");

fn capture() -> Vec<Vec<u8>> {
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
    datagrams
}

fn load_model() -> Vec<Vec<u8>> {
    let mut model = TrafficModel::new(ModelConfig::default()).expect("model");
    let mut buf = vec![0u8; 65536];
    (0..20_000u64)
        .map(|i| {
            let e = model.next_datagram(i * 3_000, &mut buf).expect("datagram");
            buf[..e.len].to_vec()
        })
        .collect()
}

fn flow_samples(datagram: &[u8]) -> u64 {
    reflex::sflow::parse_datagram(datagram)
        .map(|d| {
            d.samples()
                .flatten()
                .filter(|s| matches!(s, reflex::sflow::Sample::Flow(_)))
                .count() as u64
        })
        .unwrap_or(0)
}

fn main() {
    let load = std::env::var("LOAD").is_ok_and(|v| v == "1");
    let (datagrams, config) = if load {
        let c = match std::env::var("CONFIG") {
            Ok(path) => Config::load(path.as_ref()).expect("configuration"),
            Err(_) => Config::from_toml(BENCH_INGEST_TOML, "bench ingest").expect("configuration"),
        };
        (load_model(), c)
    } else {
        (
            capture(),
            Config::embedded().expect("embedded configuration"),
        )
    };
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let mut core = IngestCore::new(
        FlowEngine::new(&config.flow_set().expect("flows")).expect("flow engine"),
        4096,
    );
    let mut now_ns = 1_000_000_000u64;
    // A datagram every 10 µs for the capture (as since the first figures), every 3 µs for
    // the load (about the rate `reflex-load sflow` sends flat out).
    let step_ns = if load { 3_000 } else { 10_000 };
    let mut detections = 0u64;
    let start = Instant::now();
    for _ in 0..rounds {
        for d in &datagrams {
            now_ns += step_ns;
            let _ = core.datagram(std::hint::black_box(d), now_ns, &mut |_| detections += 1);
        }
    }
    let elapsed = start.elapsed();
    let samples: u64 = datagrams.iter().map(|d| flow_samples(d)).sum::<u64>() * rounds;
    let samples = samples.max(1);
    println!(
        "{} datagrams x {rounds} rounds, {samples} samples, {detections} detections, {:.1} ns/sample",
        datagrams.len(),
        elapsed.as_nanos() as f64 / samples as f64
    );
}
