//! Network-wide thresholds: the same datagrams, from agents pinned to different ingest
//! workers (one `IngestCore` per worker, as each SO_REUSEPORT socket feeds one), give the
//! same events with 1, 2 and 4 workers; a flood split over two agents fires once; the
//! `agent` scope keeps each worker's own rate.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use reflex::flow::engine::FlowEngine;
use reflex::flow::{FlowSet, FlowSpec, Network, ThresholdScope, ThresholdSpec};
use reflex::ingest::IngestCore;
use reflex::sflow::SampledIp;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A flow `ddos` by source address (τ = 1 s) and a threshold at 100 frames/s, timeout 2 s.
fn flows(scope: ThresholdScope) -> FlowSet {
    let flow = FlowSpec::new("ddos", "ipsource");
    let mut threshold = ThresholdSpec::new("ddos", "ddos", 100.0);
    threshold.timeout_s = 2.0;
    threshold.scope = scope;
    FlowSet::new(&[flow], &[threshold]).unwrap()
}

/// One datagram from agent `192.0.2.<agent>` holding one 1-in-`sampling` sample of an ICMP
/// packet from `10.0.0.<source>`.
fn datagram(agent: u8, sequence: u32, source: u8, sampling: u32) -> Vec<u8> {
    reflex_testkit::sflow::one_sample_datagram(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, agent)),
        sequence,
        sampling,
        2,
        SampledIp {
            length: 84,
            protocol: 1,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, source)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
            src_port: 8,
            dst_port: 0,
            tcp_flags: 0,
            tos: 0,
        },
    )
}

/// One stream of traffic as an agent reports it: `source` at `frames_per_s`, sampled
/// 1-in-10, from `from_ns` for `for_ns`.
#[derive(Clone, Copy, Debug)]
struct Stream {
    agent: u8,
    source: u8,
    frames_per_s: u64,
    from_ns: u64,
    for_ns: u64,
}

/// Every datagram of `streams`, in time order: (time, agent, bytes).
fn schedule(streams: &[Stream]) -> Vec<(u64, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut sequences = [0u32; 256];
    let mut samples: Vec<(u64, u8, u8)> = Vec::new();
    for s in streams {
        let period = SEC * 10 / s.frames_per_s.max(1);
        // Streams of one agent start at different phases so that agents interleave.
        let mut t = s.from_ns + u64::from(s.agent) * 7 * MS + u64::from(s.source) * MS;
        while t < s.from_ns + s.for_ns {
            samples.push((t, s.agent, s.source));
            t += period;
        }
    }
    samples.sort();
    for (t, agent, source) in samples {
        let seq = &mut sequences[usize::from(agent)];
        *seq += 1;
        out.push((t, agent, datagram(agent, *seq, source, 10)));
    }
    out
}

/// Feeds `streams` into `workers` cores sharing one network, agent `a` pinned to worker
/// `pin(a)`; returns the events as (time, key text, worker).
fn run(
    scope: ThresholdScope,
    workers: usize,
    pin: impl Fn(u8) -> usize,
    streams: &[Stream],
) -> Vec<(u64, String, usize)> {
    let set = flows(scope);
    let network = Network::new(&set, workers);
    let mut cores: Vec<IngestCore> = (0..workers)
        .map(|w| IngestCore::new(FlowEngine::for_worker(&set, &network, w).unwrap(), 64))
        .collect();
    let def = set.def(0).unwrap();
    let mut events = Vec::new();
    for (t, agent, bytes) in schedule(streams) {
        let w = pin(agent) % workers;
        cores[w]
            .datagram(&bytes, t, &mut |d| {
                events.push((t, def.format_key(&d.detection.key), w));
            })
            .unwrap();
    }
    events
}

fn keys(events: &[(u64, String, usize)]) -> Vec<&str> {
    events.iter().map(|e| e.1.as_str()).collect()
}

/// Two agents each report half of a 120 frames/s flood from 10.0.0.1 (10 s, then 10 s of
/// silence, then 10 s again), plus 60 frames/s of background from 10.0.0.9.
fn split_flood() -> Vec<Stream> {
    let mut v = Vec::new();
    for agent in [1, 2] {
        for from in [0, 20 * SEC] {
            v.push(Stream {
                agent,
                source: 1,
                frames_per_s: 60,
                from_ns: from,
                for_ns: 10 * SEC,
            });
        }
        v.push(Stream {
            agent,
            source: 9,
            frames_per_s: 30,
            from_ns: 0,
            for_ns: 30 * SEC,
        });
    }
    v
}

#[test]
fn a_flood_split_over_two_workers_fires_exactly_once_per_crossing() {
    // Agents 1 and 2 on different workers: neither worker alone sees 100/s.
    let events = run(
        ThresholdScope::Network,
        2,
        |a| usize::from(a) - 1,
        &split_flood(),
    );
    assert_eq!(keys(&events), ["10.0.0.1", "10.0.0.1"], "{events:?}");
    assert!(
        events[0].0 < 10 * SEC && events[1].0 >= 20 * SEC,
        "{events:?}"
    );
}

#[test]
fn events_are_the_same_with_one_two_and_four_workers() {
    let streams = split_flood();
    let alone = run(ThresholdScope::Network, 1, |_| 0, &streams);
    assert_eq!(keys(&alone), ["10.0.0.1", "10.0.0.1"]);
    for workers in [2, 4] {
        // Apart, together, and the other way round.
        for pin in [|a: u8| usize::from(a), |_| 3, |a: u8| 4 - usize::from(a)] {
            let events = run(ThresholdScope::Network, workers, pin, &streams);
            assert_eq!(keys(&events), keys(&alone), "{workers} workers: {events:?}");
            for (a, b) in events.iter().zip(&alone) {
                // The same crossing, decided on the next sample of a candidate at worst.
                assert!(a.0.abs_diff(b.0) <= 200 * MS, "{a:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn agent_scope_keeps_each_workers_own_rate() {
    let streams = split_flood();
    // Apart: each worker sees 60/s, below the threshold.
    let apart = run(ThresholdScope::Agent, 2, |a| usize::from(a) - 1, &streams);
    assert!(apart.is_empty(), "{apart:?}");
    // On one worker the two agents add up, as they always did.
    let together = run(ThresholdScope::Agent, 2, |_| 0, &streams);
    assert_eq!(keys(&together), ["10.0.0.1", "10.0.0.1"]);
    // One agent alone above the threshold, reported twice through two workers (say, two
    // collectors' worth of the same agent): each worker fires for its own view.
    let twice = [1, 2].map(|agent| Stream {
        agent,
        source: 5,
        frames_per_s: 150,
        from_ns: 0,
        for_ns: 5 * SEC,
    });
    let per_agent = run(ThresholdScope::Agent, 2, |a| usize::from(a) - 1, &twice);
    let mut workers: Vec<usize> = per_agent.iter().map(|e| e.2).collect();
    workers.sort();
    assert_eq!(workers, [0, 1], "{per_agent:?}");
    // The network scope sees one key at 300/s: one event.
    let network = run(ThresholdScope::Network, 2, |a| usize::from(a) - 1, &twice);
    assert_eq!(keys(&network), ["10.0.0.5"]);
}

#[test]
fn flows_query_rates_are_the_network_wide_sums() {
    let set = flows(ThresholdScope::Network);
    let network = Network::new(&set, 2);
    let mut cores: Vec<IngestCore> = (0..2)
        .map(|w| IngestCore::new(FlowEngine::for_worker(&set, &network, w).unwrap(), 64))
        .collect();
    let streams = [1u8, 2].map(|agent| Stream {
        agent,
        source: 1,
        frames_per_s: 60,
        from_ns: 0,
        for_ns: 10 * SEC,
    });
    for (t, agent, bytes) in schedule(&streams) {
        cores[usize::from(agent) - 1]
            .datagram(&bytes, t, &mut |_| {})
            .unwrap();
    }
    let now = 10 * SEC;
    for core in &cores {
        let top = core.engine().snapshot(now);
        let (_, rate) = top[0].top[0];
        assert!((rate - 120.0).abs() < 12.0, "{rate}");
        let key = top[0].top[0].0;
        assert_eq!(core.engine().rate(0, &key, now), Some(rate));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Sources clearly above or below the threshold, spread over up to four agents in
    /// random shares, agents pinned to workers at random: the events per key are those of
    /// one worker.
    #[test]
    fn any_spread_of_agents_over_workers_gives_the_same_events(
        rates in proptest::collection::vec(prop_oneof![Just(40u64), Just(70), Just(200), Just(400)], 1..4),
        agents_of in proptest::collection::vec(1u8..=4, 1..4),
        pins in proptest::collection::vec(0usize..4, 4),
        workers in prop_oneof![Just(2usize), Just(4)],
    ) {
        let mut streams = Vec::new();
        for (i, &total) in rates.iter().enumerate() {
            let agents = agents_of.get(i).copied().unwrap_or(1);
            for a in 1..=agents {
                streams.push(Stream {
                    agent: a,
                    source: i as u8 + 1,
                    frames_per_s: total / u64::from(agents),
                    from_ns: 0,
                    for_ns: 8 * SEC,
                });
            }
        }
        let mut alone = keys(&run(ThresholdScope::Network, 1, |_| 0, &streams))
            .into_iter().map(str::to_owned).collect::<Vec<_>>();
        alone.sort();
        let mut spread = keys(&run(ThresholdScope::Network, workers, |a| pins[usize::from(a) - 1], &streams))
            .into_iter().map(str::to_owned).collect::<Vec<_>>();
        spread.sort();
        prop_assert_eq!(spread, alone);
    }
}
