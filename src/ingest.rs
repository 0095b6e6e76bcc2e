//! Ingest workers: one thread per core, each with its own SO_REUSEPORT socket, receive
//! batch, agent table and flow engine, so the per-datagram path shares nothing with other
//! threads, takes no lock and allocates nothing.
//!
//! [`IngestCore`] is the sans-IO part (datagram bytes + `now` in, detections out);
//! `daemon::ingest` is the thin thread loop around `recvmmsg`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::flow::engine::{Detection, FlowEngine};
use crate::flow::key::FlowKey;
use crate::flow::sample::Sample;
use crate::flow::ThresholdId;
use crate::packet::{parse_sampled_header_into, HeaderKeys};
use crate::sflow::{self, AgentId, DecodeError, PacketRecord, SampledIp, ScannedSample};

/// Counters of one worker, written only by it (once per batch) and read by anyone.
#[derive(Default)]
pub struct WorkerStats {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    pub flow_samples: AtomicU64,
    pub counter_samples: AtomicU64,
    pub other_samples: AtomicU64,
    pub truncated: AtomicU64,
    pub decode_errors: [AtomicU64; DecodeError::ALL.len()],
    pub lost_datagrams: AtomicU64,
    pub agent_restarts: AtomicU64,
    pub untracked_agents: AtomicU64,
    pub detections: AtomicU64,
    /// Crossings not fired because a table of disarmed keys was full (see
    /// [`FlowEngine::suppressed`]).
    pub events_suppressed: AtomicU64,
    /// Events the policy thread's queue refused at first and took from the backlog later.
    pub events_retried: AtomicU64,
    /// Events lost: the queue and the worker's backlog were both full.
    pub events_dropped: AtomicU64,
    pub recv_errors: AtomicU64,
}

/// The same counters as plain integers, owned by the worker between publications.
#[derive(Default, Clone, Copy)]
struct Counters {
    datagrams: u64,
    bytes: u64,
    batches: u64,
    flow_samples: u64,
    counter_samples: u64,
    other_samples: u64,
    truncated: u64,
    decode_errors: [u64; DecodeError::ALL.len()],
    lost_datagrams: u64,
    agent_restarts: u64,
    untracked_agents: u64,
    detections: u64,
    events_suppressed: u64,
}

impl Counters {
    fn publish(&self, s: &WorkerStats) {
        let r = Ordering::Relaxed;
        s.bytes.store(self.bytes, r);
        s.batches.store(self.batches, r);
        s.flow_samples.store(self.flow_samples, r);
        s.counter_samples.store(self.counter_samples, r);
        s.other_samples.store(self.other_samples, r);
        s.truncated.store(self.truncated, r);
        for (a, v) in s.decode_errors.iter().zip(self.decode_errors) {
            a.store(v, r);
        }
        s.lost_datagrams.store(self.lost_datagrams, r);
        s.agent_restarts.store(self.agent_restarts, r);
        s.untracked_agents.store(self.untracked_agents, r);
        s.detections.store(self.detections, r);
        s.events_suppressed.store(self.events_suppressed, r);
        // Last, with release: a reader that acquires this count sees every counter above
        // at least as new (stats never show a datagram without its decode error).
        s.datagrams.store(self.datagrams, Ordering::Release);
    }
}

/// What one worker knows of one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentEntry {
    pub agent: AgentId,
    pub last_sequence: u32,
    pub datagrams: u64,
    /// Datagrams missing from the sequence (lost on the way or dropped by the kernel).
    pub lost: u64,
    /// Times the sequence went backwards (agent restart).
    pub restarts: u64,
    /// The agent's own count of samples it could not send (latest flow sample's `drops`).
    pub drops: u32,
    pub last_seen_ns: u64,
}

/// A fixed-capacity table of agents (open addressing), so a flood of datagrams from spoofed
/// agent addresses cannot grow memory.
pub struct AgentTable {
    slots: Vec<Option<AgentEntry>>,
    len: usize,
}

/// How a datagram's sequence number relates to the agent's previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    First,
    InOrder,
    /// This many datagrams are missing before this one.
    Gap(u32),
    /// The sequence went backwards: the agent restarted (or the datagram is a late duplicate).
    Restart,
    /// The table is full; the agent is not tracked.
    Untracked,
}

impl AgentTable {
    /// A table for up to `capacity` agents (rounded up to a power of two, at least 16).
    pub fn new(capacity: usize) -> AgentTable {
        let n = capacity.clamp(16, 1 << 20).next_power_of_two() * 2;
        AgentTable {
            slots: vec![None; n],
            len: 0,
        }
    }

    fn slot_of(&self, agent: &AgentId) -> Option<usize> {
        let mut h: u64 = agent.sub_agent as u64 ^ 0x9E37_79B9_7F4A_7C15;
        match agent.address {
            IpAddr::V4(a) => h ^= u32::from(a) as u64,
            IpAddr::V6(a) => {
                let v = u128::from(a);
                h ^= (v as u64) ^ ((v >> 64) as u64);
            }
        }
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 29;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        for _ in 0..self.slots.len() {
            match &self.slots[i] {
                Some(e) if e.agent == *agent => return Some(i),
                None => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
        None
    }

    /// Records a datagram from `agent` with `sequence`; says how it fits the sequence.
    #[inline]
    pub fn record(&mut self, agent: AgentId, sequence: u32, now_ns: u64) -> SequenceCheck {
        let Some(i) = self.slot_of(&agent) else {
            return SequenceCheck::Untracked;
        };
        let full = self.len * 2 >= self.slots.len();
        match &mut self.slots[i] {
            Some(e) => {
                e.datagrams += 1;
                e.last_seen_ns = now_ns;
                let expected = e.last_sequence.wrapping_add(1);
                let check = if sequence == expected {
                    SequenceCheck::InOrder
                } else if sequence > expected {
                    let gap = sequence - expected;
                    e.lost += gap as u64;
                    SequenceCheck::Gap(gap)
                } else {
                    e.restarts += 1;
                    SequenceCheck::Restart
                };
                e.last_sequence = sequence;
                check
            }
            empty => {
                // Keep half the slots free so probes stay short.
                if full {
                    return SequenceCheck::Untracked;
                }
                *empty = Some(AgentEntry {
                    agent,
                    last_sequence: sequence,
                    datagrams: 1,
                    lost: 0,
                    restarts: 0,
                    drops: 0,
                    last_seen_ns: now_ns,
                });
                self.len += 1;
                SequenceCheck::First
            }
        }
    }

    /// Notes the agent's latest sample drop counter.
    #[inline]
    pub fn set_drops(&mut self, agent: &AgentId, drops: u32) {
        if let Some(i) = self.slot_of(agent) {
            if let Some(e) = &mut self.slots[i] {
                e.drops = drops;
            }
        }
    }

    /// All tracked agents.
    pub fn entries(&self) -> impl Iterator<Item = &AgentEntry> {
        self.slots.iter().flatten()
    }

    /// Number of tracked agents.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no agent has been seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The sans-IO part of a worker.
pub struct IngestCore {
    engine: FlowEngine,
    agents: AgentTable,
    counters: Counters,
}

/// A detection together with the agent whose datagram decided it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AgentDetection {
    pub detection: Detection,
    pub agent: IpAddr,
}

impl IngestCore {
    /// A core measuring with `engine`, tracking up to `max_agents` agents.
    pub fn new(engine: FlowEngine, max_agents: usize) -> IngestCore {
        IngestCore {
            engine,
            agents: AgentTable::new(max_agents),
            counters: Counters::default(),
        }
    }

    /// Decodes one datagram and accounts every flow sample in it. Malformed datagrams are
    /// counted by kind and returned as the error (after any samples before the fault were
    /// accounted: they were well-formed and are real evidence).
    pub fn datagram(
        &mut self,
        bytes: &[u8],
        now_ns: u64,
        on: &mut impl FnMut(AgentDetection),
    ) -> Result<(), DecodeError> {
        self.counters.datagrams += 1;
        self.counters.bytes += bytes.len() as u64;
        let result = self.decode(bytes, now_ns, on);
        if let Err(e) = result {
            self.counters.decode_errors[e.index()] += 1;
        }
        result
    }

    fn decode(
        &mut self,
        bytes: &[u8],
        now_ns: u64,
        on: &mut impl FnMut(AgentDetection),
    ) -> Result<(), DecodeError> {
        let dg = sflow::parse_datagram(bytes)?;
        match self.agents.record(dg.agent, dg.sequence, now_ns) {
            SequenceCheck::Gap(n) => self.counters.lost_datagrams += n as u64,
            SequenceCheck::Restart => self.counters.agent_restarts += 1,
            SequenceCheck::Untracked => self.counters.untracked_agents += 1,
            SequenceCheck::First | SequenceCheck::InOrder => {}
        }
        let agent = dg.agent.address;
        let (engine, counters, agents) = (&mut self.engine, &mut self.counters, &mut self.agents);
        dg.scan(|scanned| match scanned {
            ScannedSample::Flow(head, record) => {
                counters.flow_samples += 1;
                // Built in place: the header keys are written straight into the sample
                // rather than moved through an `Option` and copied again.
                let mut sample = Sample {
                    agent,
                    source: head.source,
                    input: head.input,
                    output: head.output,
                    sampling_rate: head.sampling_rate.max(1),
                    frame_length: 0,
                    keys: HeaderKeys::default(),
                };
                match record {
                    PacketRecord::Header(h) => {
                        parse_sampled_header_into(h.protocol, h.header, &mut sample.keys);
                        sample.frame_length = h.frame_length;
                    }
                    PacketRecord::Ipv4(_) | PacketRecord::Ipv6(_) => {
                        if let Some(ip) = record.ip() {
                            sample.keys = keys_from_sampled_ip(&ip);
                            sample.frame_length = ip.length;
                        }
                    }
                    PacketRecord::None => {}
                }
                if head.drops != 0 {
                    agents.set_drops(&dg.agent, head.drops);
                }
                engine.observe(&sample, now_ns, &mut |detection| {
                    counters.detections += 1;
                    on(AgentDetection { detection, agent });
                });
            }
            ScannedSample::Counters => counters.counter_samples += 1,
            ScannedSample::Other => counters.other_samples += 1,
        })
    }

    /// Re-arms a threshold for a key (see [`FlowEngine::rearm`]).
    pub fn rearm(&mut self, threshold: ThresholdId, key: &FlowKey) -> bool {
        self.engine.rearm(threshold, key)
    }

    /// Counts a datagram the kernel cut short (longer than our receive buffer).
    pub fn truncated(&mut self) {
        self.counters.truncated += 1;
    }

    /// Ends a batch: publishes counters for readers on other threads.
    pub fn end_batch(&mut self, stats: &WorkerStats) {
        self.counters.batches += 1;
        self.counters.events_suppressed = self.engine.suppressed();
        self.counters.publish(stats);
    }

    /// The flow engine (for snapshots).
    pub fn engine(&self) -> &FlowEngine {
        &self.engine
    }

    /// The agent table (for reports).
    pub fn agents(&self) -> &AgentTable {
        &self.agents
    }
}

fn keys_from_sampled_ip(ip: &SampledIp) -> HeaderKeys {
    let proto = (ip.protocol & 0xff) as u8;
    let mut k = HeaderKeys {
        ethertype: Some(if ip.src.is_ipv4() { 0x0800 } else { 0x86dd }),
        ip_src: Some(ip.src),
        ip_dst: Some(ip.dst),
        ip_proto: Some(proto),
        ..HeaderKeys::default()
    };
    match proto {
        6 | 17 | 132 => {
            k.src_port = Some(ip.src_port as u16);
            k.dst_port = Some(ip.dst_port as u16);
        }
        // sFlow carries ICMP type and code in the port fields.
        1 | 58 => {
            k.icmp_type = Some(ip.src_port as u8);
            k.icmp_code = Some(ip.dst_port as u8);
        }
        _ => {}
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sflow::{AgentId, DataSource, Interface};
    use std::net::Ipv4Addr;

    fn agent(last: u8) -> AgentId {
        AgentId {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            sub_agent: 0,
        }
    }

    #[test]
    fn agent_sequences_report_gaps_and_restarts() {
        let mut t = AgentTable::new(16);
        assert_eq!(t.record(agent(1), 10, 0), SequenceCheck::First);
        assert_eq!(t.record(agent(1), 11, 1), SequenceCheck::InOrder);
        assert_eq!(t.record(agent(1), 15, 2), SequenceCheck::Gap(3));
        assert_eq!(t.record(agent(1), 1, 3), SequenceCheck::Restart);
        assert_eq!(t.record(agent(2), 7, 3), SequenceCheck::First);
        let e = t.entries().find(|e| e.agent == agent(1)).unwrap();
        assert_eq!((e.datagrams, e.lost, e.restarts), (4, 3, 1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn agent_table_is_bounded() {
        let mut t = AgentTable::new(16);
        let mut untracked = 0;
        for i in 0..=255u8 {
            if t.record(agent(i), 0, 0) == SequenceCheck::Untracked {
                untracked += 1;
            }
        }
        assert_eq!(t.len(), 16);
        assert_eq!(untracked, 256 - 16);
        // Known agents are still tracked when the table is full.
        assert_eq!(t.record(agent(0), 1, 1), SequenceCheck::InOrder);
    }

    use crate::sflow::fixtures::ovs_capture as capture;

    #[test]
    fn the_ovs_capture_drives_the_default_flow_to_detection() {
        let flows = Config::embedded().unwrap().flow_set().unwrap();
        let mut core = IngestCore::new(FlowEngine::new(&flows).unwrap(), 64);
        let mut detections = Vec::new();
        // Replay at 1 ms per datagram: the floods far exceed 100 frames/s.
        for (i, dg) in capture().iter().enumerate() {
            core.datagram(dg, i as u64 * 1_000_000, &mut |d| detections.push(d))
                .unwrap();
        }
        let stats = WorkerStats::default();
        core.end_batch(&stats);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 335);
        assert_eq!(stats.flow_samples.load(Ordering::Relaxed), 2241);
        assert_eq!(stats.counter_samples.load(Ordering::Relaxed), 12);
        let def = flows.def(0).unwrap();
        let keys: Vec<String> = detections
            .iter()
            .map(|d| def.format_key(&d.detection.key))
            .collect();
        assert!(keys.contains(&"10.0.0.1".to_owned()), "{keys:?}");
        assert!(detections
            .iter()
            .all(|d| d.agent == IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let top = core.engine().snapshot(335_000_000);
        assert!(!top[0].top.is_empty());
    }

    #[test]
    fn sampled_ipv4_records_give_keys() {
        let ip = SampledIp {
            length: 84,
            protocol: 1,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 8,
            dst_port: 0,
            tcp_flags: 0,
            tos: 0,
        };
        let k = keys_from_sampled_ip(&ip);
        assert_eq!(k.icmp_type, Some(8));
        assert_eq!(k.ip_proto, Some(1));
        assert_eq!(k.src_port, None);
        let _ = (DataSource::default(), Interface::Unknown);
    }
}
