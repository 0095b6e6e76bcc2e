//! Event discipline under a many-source flood: each key fires at most once until it re-arms,
//! whatever the number of keys above the threshold; crossings the full tables cannot hold
//! are suppressed and counted, never fired twice.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;

use reflex::config::Config;
use reflex::flow::engine::FlowEngine;
use reflex::flow::key::FlowKey;
use reflex::ingest::{IngestCore, WorkerStats};
use reflex::sflow::{AgentId, DataSource, Interface, SampledIp};
use reflex_testkit::sflow::{DatagramRepr, FlowRecordRepr, FlowSampleRepr, SampleRepr};

const CONFIG: &str = r#"
[[flow]]
name = "src"
keys = "ipsource"
value = "frames"
t = 0.5

[[threshold]]
name = "flood"
metric = "src"
value = 100.0
by_flow = true
timeout = 10.0
min_samples = 0.0
"#;

const KEYS: u32 = 100_000;
const PER_DATAGRAM: u32 = 10;

fn source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// A datagram with one 1-in-1000 sample of each of `PER_DATAGRAM` sources from `first`.
fn datagram(sequence: u32, first: u32) -> Vec<u8> {
    let samples = (first..first + PER_DATAGRAM)
        .map(|i| {
            SampleRepr::Flow(FlowSampleRepr {
                expanded: false,
                sequence: i,
                source: DataSource { kind: 0, index: 1 },
                sampling_rate: 1000,
                sample_pool: 1000 * i,
                drops: 0,
                input: Interface::Ifindex(1),
                output: Interface::Ifindex(2),
                records: vec![FlowRecordRepr::SampledIpv4(SampledIp {
                    length: 84,
                    protocol: 17,
                    src: IpAddr::V4(source(i)),
                    dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    src_port: 1234,
                    dst_port: 53,
                    tcp_flags: 0,
                    tos: 0,
                })],
            })
        })
        .collect();
    let repr = DatagramRepr {
        agent: AgentId {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254)),
            sub_agent: 0,
        },
        sequence,
        uptime_ms: sequence,
        samples,
    };
    let mut out = vec![0; repr.buffer_len()];
    let n = repr.emit(&mut out).expect("emit");
    out.truncate(n);
    out
}

#[test]
fn a_hundred_thousand_keys_above_fire_at_most_once_each() {
    let config = Config::from_toml(CONFIG, "test").expect("config");
    let flows = config.flow_set().expect("flow set");
    let mut core = IngestCore::new(FlowEngine::new(&flows).expect("engine"), 64);
    let stats = WorkerStats::default();
    let mut fired: HashMap<FlowKey, u32> = HashMap::new();
    let datagrams: Vec<Vec<u8>> = (0..KEYS / PER_DATAGRAM)
        .map(|d| datagram(d + 1, d * PER_DATAGRAM))
        .collect();
    // Twice over every key, 10 µs per datagram (well within the 10 s timeout).
    let mut now = 1_000_000_000u64;
    let mut first_pass = (0, 0);
    for pass in 0..2 {
        for dg in &datagrams {
            now += 10_000;
            core.datagram(dg, now, &mut |d| {
                *fired.entry(d.detection.key).or_default() += 1;
            })
            .expect("datagram");
        }
        core.end_batch(&stats);
        if pass == 0 {
            first_pass = (
                fired.len() as u64,
                stats.events_suppressed.load(Ordering::Relaxed),
            );
        }
    }
    let (events, suppressed) = first_pass;
    assert!(suppressed > 0, "the tables filled up");
    assert!(events > 0 && events <= 4096, "{events} events");
    assert_eq!(
        events + suppressed,
        u64::from(KEYS),
        "every crossing fired or counted"
    );
    assert!(fired.values().all(|&n| n == 1), "a key fired twice");
    assert_eq!(
        fired.len() as u64,
        events,
        "nothing fired on the second pass"
    );
    assert_eq!(
        stats.detections.load(Ordering::Relaxed),
        events,
        "detections count events"
    );
}
