//! The sans-IO traffic model: which packets a fleet of sFlow agents samples at a given
//! instant, encoded as sFlow v5 datagrams with this crate's emitter.
//!
//! Background traffic comes from `sources` hosts (Zipf-ranked or uniform) towards a few
//! destinations; attacks are injected by a schedule, each at its own represented packet
//! rate: an attack of `r` packets/s sampled 1-in-`N` owes `r/N` samples per second of `now`,
//! and those samples take the first slots of the next datagrams, background filling the
//! rest. With counter polling on, each exporter also reports every port's generic interface
//! counters once per interval, in counters-only datagrams, as Open vSwitch does. The model
//! reads no clock: the driver passes `now_ns` (since the run started).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::frame::{self, tcp, Packet, Transport};
use super::rng::{scramble_u32, Rng};
use super::zipf::{Zipf, ZipfError};
use crate::sflow::{
    CounterRecordRepr, CountersSampleRepr, DatagramRepr, EmitError, FlowRecordRepr, FlowSampleRepr,
    SampleRepr, SampledHeaderRepr,
};
use reflex::sflow::{AgentId, DataSource, IfCounters, Interface};

/// Largest number of background sources (they live in 10.0.0.0/9).
pub const MAX_SOURCES: u64 = (1 << 23) - 2;
/// Largest number of destinations (they live in 10.200.0.0/16).
pub const MAX_DESTINATIONS: u32 = 65534;
/// Largest number of flow samples per datagram (OVS sends 7; 1400-byte MTU fits ~10).
pub const MAX_SAMPLES_PER_DATAGRAM: usize = 32;
/// Sampled header bytes kept per sample (bounds, inclusive).
pub const HEADER_LEN_RANGE: (usize, usize) = (frame::MIN_HEADER, 256);

/// How background sources are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceDist {
    /// Rank `k` with probability ∝ `k^-s`.
    Zipf(f64),
    /// Every source equally likely.
    Uniform,
}

/// The kinds of attack the generator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttackKind {
    /// ICMP echo requests from one source to the victim.
    IcmpFlood,
    /// TCP SYNs from one source to the victim's port 80.
    SynFlood,
    /// Large UDP datagrams from port 53 of `reflectors` hosts (starting at `source`).
    UdpReflection,
    /// UDP from a new random (spoofed) source address for every packet.
    SpoofedFlood,
}

impl AttackKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::IcmpFlood => "icmp",
            AttackKind::SynFlood => "syn",
            AttackKind::UdpReflection => "reflection",
            AttackKind::SpoofedFlood => "spoofed",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<AttackKind> {
        Some(match name {
            "icmp" | "icmp-flood" => AttackKind::IcmpFlood,
            "syn" | "syn-flood" => AttackKind::SynFlood,
            "reflection" | "udp-reflection" => AttackKind::UdpReflection,
            "spoofed" | "spoofed-flood" => AttackKind::SpoofedFlood,
            _ => return None,
        })
    }
}

/// One scheduled attack.
#[derive(Clone, Debug, PartialEq)]
pub struct Attack {
    pub kind: AttackKind,
    /// When it starts, from the beginning of the run.
    pub start: Duration,
    /// How long it lasts (`None`: until the run ends).
    pub duration: Option<Duration>,
    /// Represented packets per second (before 1-in-N sampling).
    pub rate_pps: f64,
    /// The attacker (first reflector for reflection; unused when spoofed).
    pub source: Ipv4Addr,
    /// The victim.
    pub target: Ipv4Addr,
    /// Reflector count for [`AttackKind::UdpReflection`].
    pub reflectors: u32,
}

/// Why an attack specification is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown attack kind `{0}` (expected icmp, syn, reflection or spoofed)")]
    Kind(String),
    #[error("unknown attack parameter `{0}` (expected at, for, rate, src, dst, reflectors)")]
    Key(String),
    #[error("bad value `{value}` for attack parameter `{key}`: {why}")]
    Value {
        key: String,
        value: String,
        why: &'static str,
    },
}

fn parse_secs(key: &str, value: &str) -> Result<Duration, SpecError> {
    let bare = value.strip_suffix('s').unwrap_or(value);
    let (number, scale) = match bare.strip_suffix('m') {
        Some(ms) => (ms, 1e-3),
        None => (bare, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| SpecError::Value {
            key: key.into(),
            value: value.into(),
            why: "expected seconds such as 2, 1.5s or 250ms",
        })
}

impl std::str::FromStr for Attack {
    type Err = SpecError;

    /// `KIND[:key=value,...]`, e.g. `icmp:at=2s,for=5s,rate=20000,src=172.16.0.1`.
    fn from_str(spec: &str) -> Result<Attack, SpecError> {
        let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
        let kind = AttackKind::from_name(kind.trim()).ok_or(SpecError::Kind(kind.into()))?;
        let mut attack = Attack::new(kind, Duration::ZERO, 10_000.0);
        for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').ok_or(SpecError::Key(param.into()))?;
            let bad = |why| SpecError::Value {
                key: key.into(),
                value: value.into(),
                why,
            };
            match key {
                "at" => attack.start = parse_secs(key, value)?,
                "for" => attack.duration = Some(parse_secs(key, value)?),
                "rate" => {
                    attack.rate_pps = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .ok_or(bad("expected packets per second > 0"))?
                }
                "src" => {
                    attack.source = value.parse().map_err(|_| bad("expected an IPv4 address"))?
                }
                "dst" => {
                    attack.target = value.parse().map_err(|_| bad("expected an IPv4 address"))?
                }
                "reflectors" => {
                    attack.reflectors = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=65536).contains(n))
                        .ok_or(bad("expected 1..=65536"))?
                }
                _ => return Err(SpecError::Key(key.into())),
            }
        }
        Ok(attack)
    }
}

impl Attack {
    /// An attack of `kind` at `rate_pps` from `start`, with the default addresses:
    /// attacker 172.16.0.1 (reflectors from 172.20.0.1), victim 10.200.0.1.
    pub fn new(kind: AttackKind, start: Duration, rate_pps: f64) -> Attack {
        let source = match kind {
            AttackKind::UdpReflection => Ipv4Addr::new(172, 20, 0, 1),
            _ => Ipv4Addr::new(172, 16, 0, 1),
        };
        Attack {
            kind,
            start,
            duration: None,
            rate_pps,
            source,
            target: Ipv4Addr::new(10, 200, 0, 1),
            reflectors: 16,
        }
    }

    /// Whether the attack is on at `now`.
    pub fn active(&self, now: Duration) -> bool {
        now >= self.start && self.duration.is_none_or(|d| now < self.start + d)
    }

    /// Samples the attack owes by `now` at sampling rate 1-in-`sampling_rate`.
    pub fn samples_due(&self, now: Duration, sampling_rate: u32) -> u64 {
        if now < self.start {
            return 0;
        }
        let mut on = now - self.start;
        if let Some(d) = self.duration {
            on = on.min(d);
        }
        (on.as_secs_f64() * self.rate_pps / f64::from(sampling_rate.max(1))) as u64
    }
}

/// Everything the model needs, validated by [`TrafficModel::new`].
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Agent addresses `agent_base`, `agent_base + 1`, ...
    pub agents: u32,
    pub agent_base: Ipv4Addr,
    /// Sub-agents per agent (independent sequence spaces).
    pub sub_agents: u32,
    pub samples_per_datagram: usize,
    /// 1-in-N sampling written in every flow sample (and scaling attack rates).
    pub sampling_rate: u32,
    /// Sampled header bytes per sample.
    pub header_len: usize,
    /// Switch ports per agent; background enters on ports 2..=ports, attacks on port 1.
    pub ports: u32,
    pub sources: u64,
    pub distribution: SourceDist,
    pub destinations: u32,
    pub attacks: Vec<Attack>,
    /// Counter polling: every exporter reports each of its ports' generic interface
    /// counters once per interval, one counters sample per datagram (None: no counters).
    pub counter_interval: Option<Duration>,
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            agents: 4,
            agent_base: Ipv4Addr::new(192, 0, 2, 1),
            sub_agents: 1,
            samples_per_datagram: 7,
            sampling_rate: 1000,
            header_len: 64,
            ports: 8,
            sources: 10_000,
            distribution: SourceDist::Zipf(1.0),
            destinations: 16,
            attacks: Vec::new(),
            counter_interval: None,
            seed: 1,
        }
    }
}

/// Why a model configuration is unusable.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("{what} must be in {min}..={max} (got {got})")]
    Range {
        what: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
    #[error(transparent)]
    Zipf(#[from] ZipfError),
}

fn check(what: &'static str, got: u64, min: u64, max: u64) -> Result<(), ModelError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(ModelError::Range {
            what,
            min,
            max,
            got,
        })
    }
}

struct Exporter {
    agent: AgentId,
    sequence: u32,
    sample_sequence: u32,
    sample_pool: u32,
    counter_sequence: u32,
    /// When the next counters sample is due, and for which port.
    next_counters: Duration,
    counter_port: u32,
}

/// What one call to [`TrafficModel::next_datagram`] produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Emitted {
    /// Bytes written.
    pub len: usize,
    /// Flow samples in the datagram.
    pub samples: u32,
    /// Of which attack samples.
    pub attack_samples: u32,
    /// Counters samples in the datagram.
    pub counter_samples: u32,
    /// The first attack (index in the configuration) with samples in the datagram.
    pub attack: Option<usize>,
}

/// The generator state: exporters, the reusable datagram, the random source.
pub struct TrafficModel {
    cfg: ModelConfig,
    rng: Rng,
    zipf: Option<Zipf>,
    exporters: Vec<Exporter>,
    next_exporter: usize,
    template: DatagramRepr,
    counters: DatagramRepr,
    /// Attack samples emitted so far, per attack.
    attack_sent: Vec<u64>,
    spoof_counter: u32,
    spoof_key: u32,
    frame: Vec<u8>,
}

impl TrafficModel {
    /// Validates `cfg` and builds the datagram template (the only allocations).
    pub fn new(cfg: ModelConfig) -> Result<TrafficModel, ModelError> {
        check("agents", cfg.agents.into(), 1, 65536)?;
        check("sub-agents", cfg.sub_agents.into(), 1, 1024)?;
        check(
            "agents x sub-agents",
            u64::from(cfg.agents) * u64::from(cfg.sub_agents),
            1,
            1 << 20,
        )?;
        check(
            "samples per datagram",
            cfg.samples_per_datagram as u64,
            1,
            MAX_SAMPLES_PER_DATAGRAM as u64,
        )?;
        check("sampling rate", cfg.sampling_rate.into(), 1, 1 << 30)?;
        check(
            "header length",
            cfg.header_len as u64,
            HEADER_LEN_RANGE.0 as u64,
            HEADER_LEN_RANGE.1 as u64,
        )?;
        check("ports", cfg.ports.into(), 2, 1 << 20)?;
        check("sources", cfg.sources, 1, MAX_SOURCES)?;
        check(
            "destinations",
            cfg.destinations.into(),
            1,
            MAX_DESTINATIONS.into(),
        )?;
        let zipf = match cfg.distribution {
            SourceDist::Zipf(s) => Some(Zipf::new(cfg.sources, s)?),
            SourceDist::Uniform => None,
        };
        let base = u32::from(cfg.agent_base);
        let mut exporters = Vec::new();
        for a in 0..cfg.agents {
            for s in 0..cfg.sub_agents {
                exporters.push(Exporter {
                    agent: AgentId {
                        address: IpAddr::V4(Ipv4Addr::from(base.wrapping_add(a))),
                        sub_agent: s,
                    },
                    sequence: 0,
                    sample_sequence: 0,
                    sample_pool: 0,
                    counter_sequence: 0,
                    next_counters: Duration::ZERO,
                    counter_port: 1,
                });
            }
        }
        let sample = FlowSampleRepr {
            expanded: false,
            sequence: 0,
            source: DataSource { kind: 0, index: 1 },
            sampling_rate: cfg.sampling_rate,
            sample_pool: 0,
            drops: 0,
            input: Interface::Ifindex(1),
            output: Interface::Ifindex(cfg.ports),
            records: vec![FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                protocol: 1,
                frame_length: 0,
                stripped: 4,
                header: vec![0; cfg.header_len],
            })],
        };
        let template = DatagramRepr {
            agent: exporters[0].agent,
            sequence: 0,
            uptime_ms: 0,
            samples: vec![SampleRepr::Flow(sample); cfg.samples_per_datagram],
        };
        if let Some(iv) = cfg.counter_interval {
            if iv < Duration::from_millis(1) {
                return Err(ModelError::Range {
                    what: "counter interval (ms)",
                    min: 1,
                    max: u64::MAX,
                    got: iv.as_millis() as u64,
                });
            }
        }
        let counters = DatagramRepr {
            agent: exporters[0].agent,
            sequence: 0,
            uptime_ms: 0,
            samples: vec![SampleRepr::Counters(CountersSampleRepr {
                expanded: false,
                sequence: 0,
                source: DataSource { kind: 0, index: 1 },
                records: vec![CounterRecordRepr::Generic(IfCounters::default())],
            })],
        };
        let mut rng = Rng::new(cfg.seed);
        let spoof_key = rng.next_u32();
        Ok(TrafficModel {
            attack_sent: vec![0; cfg.attacks.len()],
            frame: vec![0; cfg.header_len],
            rng,
            zipf,
            exporters,
            next_exporter: 0,
            template,
            counters,
            spoof_counter: 0,
            spoof_key,
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Bytes of the longest datagram the model writes (flow datagrams all have this
    /// length; counters datagrams are shorter).
    pub fn datagram_len(&self) -> usize {
        self.template.buffer_len().max(self.counters.buffer_len())
    }

    /// Writes exporter `e`'s next counters datagram if one is due at `now`.
    fn counters_datagram(
        &mut self,
        e: usize,
        now: Duration,
        out: &mut [u8],
    ) -> Option<Result<Emitted, EmitError>> {
        let interval = self.cfg.counter_interval?;
        let ports = self.cfg.ports;
        let exporter = &mut self.exporters[e];
        if now < exporter.next_counters {
            return None;
        }
        // Each port once per interval, spread evenly over it.
        exporter.next_counters = now + interval / ports;
        let port = exporter.counter_port;
        exporter.counter_port = port % ports + 1;
        exporter.counter_sequence = exporter.counter_sequence.wrapping_add(1);
        exporter.sequence = exporter.sequence.wrapping_add(1);
        let secs = now.as_secs_f64();
        // Plausible, monotonic counters: ~1 Gbit/s in, ~0.8 out, 800-byte packets.
        let in_octets = (secs * 125e6) as u64 + u64::from(port) * 1_000_000;
        let out_octets = in_octets / 5 * 4;
        let counters = IfCounters {
            if_index: port,
            if_type: 6,
            if_speed: 10_000_000_000,
            if_direction: 1,
            if_status: 3,
            in_octets,
            in_ucast: (in_octets / 800) as u32,
            out_octets,
            out_ucast: (out_octets / 800) as u32,
            ..IfCounters::default()
        };
        self.counters.agent = exporter.agent;
        self.counters.sequence = exporter.sequence;
        self.counters.uptime_ms = now.as_millis() as u32;
        if let Some(SampleRepr::Counters(c)) = self.counters.samples.first_mut() {
            c.sequence = exporter.counter_sequence;
            c.source.index = port;
            c.records[0] = CounterRecordRepr::Generic(counters);
        }
        Some(self.counters.emit(out).map(|len| Emitted {
            len,
            counter_samples: 1,
            ..Emitted::default()
        }))
    }

    /// Attack samples emitted so far, per attack (in configuration order).
    pub fn attack_samples(&self) -> &[u64] {
        &self.attack_sent
    }

    /// The address of background source `rank` (1-based): 10.0.0.0 + rank.
    pub fn source_address(rank: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)).wrapping_add(rank as u32))
    }

    /// The address of destination `i` (0-based): 10.200.0.1 + i.
    pub fn destination_address(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 1)).wrapping_add(i))
    }

    /// The next spoofed source: distinct from every earlier one for 2³² draws.
    pub fn next_spoofed(&mut self) -> Ipv4Addr {
        let v = scramble_u32(self.spoof_counter, self.spoof_key);
        self.spoof_counter = self.spoof_counter.wrapping_add(1);
        Ipv4Addr::from(v)
    }

    fn background_packet(&mut self) -> (Packet, u32) {
        let rank = match &self.zipf {
            Some(z) => z.sample(&mut self.rng),
            None => 1 + self.rng.below(self.cfg.sources),
        };
        let src = Self::source_address(rank);
        let dst = Self::destination_address(self.rng.below(self.cfg.destinations.into()) as u32);
        let r = self.rng.next_u32();
        let sport = 1024 + (r >> 16) as u16 % 60000;
        let transport = match r % 100 {
            0..=79 => Transport::Tcp {
                src: sport,
                dst: if r & 0x100 != 0 { 443 } else { 80 },
                flags: tcp::ACK | if r & 0x200 != 0 { tcp::PSH } else { 0 },
            },
            80..=94 => Transport::Udp {
                src: sport,
                dst: 53,
            },
            _ => Transport::Icmp { ty: 8, code: 0 },
        };
        // Bimodal sizes: acks and full segments.
        let frame_len = if r & 0x400 != 0 {
            1514
        } else {
            64 + (r >> 20) as u16 % 500
        };
        let port = 2 + (rank % u64::from(self.cfg.ports - 1)) as u32;
        (
            Packet {
                src,
                dst,
                transport,
                frame_len,
            },
            port,
        )
    }

    fn attack_packet(&mut self, i: usize) -> Packet {
        let a = &self.cfg.attacks[i];
        let (kind, source, target, reflectors) = (a.kind, a.source, a.target, a.reflectors);
        let r = self.rng.next_u32();
        match kind {
            AttackKind::IcmpFlood => Packet {
                src: source,
                dst: target,
                transport: Transport::Icmp { ty: 8, code: 0 },
                frame_len: 98,
            },
            AttackKind::SynFlood => Packet {
                src: source,
                dst: target,
                transport: Transport::Tcp {
                    src: 1024 + (r % 60000) as u16,
                    dst: 80,
                    flags: tcp::SYN,
                },
                frame_len: 66,
            },
            AttackKind::UdpReflection => Packet {
                src: Ipv4Addr::from(u32::from(source).wrapping_add(r % reflectors.max(1))),
                dst: target,
                transport: Transport::Udp {
                    src: 53,
                    dst: 1024 + (r >> 16) as u16 % 60000,
                },
                frame_len: 1514,
            },
            AttackKind::SpoofedFlood => Packet {
                src: self.next_spoofed(),
                dst: target,
                transport: Transport::Udp {
                    src: 1024 + (r % 60000) as u16,
                    dst: 80,
                },
                frame_len: 128,
            },
        }
    }

    /// The first attack that still owes samples at `now`.
    fn owed_attack(&self, now: Duration) -> Option<usize> {
        self.cfg.attacks.iter().enumerate().find_map(|(i, a)| {
            (a.samples_due(now, self.cfg.sampling_rate) > self.attack_sent[i]).then_some(i)
        })
    }

    /// Writes the next datagram (from the next exporter, round robin) at the start of
    /// `out`, with the attack samples owed at `now_ns` first. Allocates nothing.
    pub fn next_datagram(&mut self, now_ns: u64, out: &mut [u8]) -> Result<Emitted, EmitError> {
        let now = Duration::from_nanos(now_ns);
        let e = self.next_exporter;
        self.next_exporter = (e + 1) % self.exporters.len();
        if let Some(result) = self.counters_datagram(e, now, out) {
            return result;
        }
        let mut attack_samples = 0;
        let mut first_attack = None;
        let n = self.template.samples.len();
        for slot in 0..n {
            let (packet, port) = match self.owed_attack(now) {
                Some(i) => {
                    self.attack_sent[i] += 1;
                    attack_samples += 1;
                    first_attack.get_or_insert(i);
                    (self.attack_packet(i), 1)
                }
                None => self.background_packet(),
            };
            let frame_len = packet.frame_len.max(self.cfg.header_len as u16);
            frame::write(&packet, &mut self.frame);
            let exporter = &mut self.exporters[e];
            exporter.sample_sequence = exporter.sample_sequence.wrapping_add(1);
            exporter.sample_pool = exporter.sample_pool.wrapping_add(self.cfg.sampling_rate);
            let (sequence, pool) = (exporter.sample_sequence, exporter.sample_pool);
            if let Some(SampleRepr::Flow(f)) = self.template.samples.get_mut(slot) {
                f.sequence = sequence;
                f.sample_pool = pool;
                f.source.index = port;
                f.input = Interface::Ifindex(port);
                if let Some(FlowRecordRepr::SampledHeader(h)) = f.records.first_mut() {
                    h.frame_length = u32::from(frame_len) + 4;
                    h.header.copy_from_slice(&self.frame);
                }
            }
        }
        let exporter = &mut self.exporters[e];
        exporter.sequence = exporter.sequence.wrapping_add(1);
        self.template.agent = exporter.agent;
        self.template.sequence = exporter.sequence;
        self.template.uptime_ms = (now_ns / 1_000_000) as u32;
        let len = self.template.emit(out)?;
        Ok(Emitted {
            len,
            samples: n as u32,
            attack_samples,
            counter_samples: 0,
            attack: first_attack,
        })
    }
}

/// A decayed rate estimate as reflexd keeps it (`Σ wᵢ·e^{-(now-tᵢ)/τ} / τ`), used to tell
/// which datagram made an attacker cross a threshold.
#[derive(Clone, Debug)]
pub struct DecayedRate {
    tau_secs: f64,
    count: f64,
    last_ns: u64,
}

impl DecayedRate {
    /// A zero estimate with smoothing time `tau_secs` (> 0).
    pub fn new(tau_secs: f64) -> DecayedRate {
        DecayedRate {
            tau_secs: tau_secs.max(1e-6),
            count: 0.0,
            last_ns: 0,
        }
    }

    fn decay_to(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            let dt = (now_ns - self.last_ns) as f64 * 1e-9;
            self.count *= (-dt / self.tau_secs).exp();
            self.last_ns = now_ns;
        }
    }

    /// Adds `weight` (e.g. frames = samples × sampling rate) at `now_ns`; returns the rate.
    pub fn add(&mut self, now_ns: u64, weight: f64) -> f64 {
        self.decay_to(now_ns);
        self.count += weight;
        self.count / self.tau_secs
    }

    /// The rate per second at `now_ns`.
    pub fn rate(&mut self, now_ns: u64) -> f64 {
        self.decay_to(now_ns);
        self.count / self.tau_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflex::packet::parse_sampled_header;
    use reflex::sflow::{parse_datagram, FlowRecord, Sample};
    use std::collections::{HashMap, HashSet};

    fn secs(s: f64) -> u64 {
        (s * 1e9) as u64
    }

    /// Decodes a datagram with the library decoder: (agent, sequence, ipv4 sources).
    fn decode(buf: &[u8]) -> (AgentId, u32, Vec<(Ipv4Addr, u8)>) {
        let d = parse_datagram(buf).unwrap();
        let mut srcs = Vec::new();
        for s in d.samples() {
            let Sample::Flow(f) = s.unwrap() else {
                panic!("not a flow sample")
            };
            assert_eq!(f.sampling_rate, 1000);
            for r in f.records() {
                let FlowRecord::SampledHeader(h) = r.unwrap() else {
                    panic!("not a header")
                };
                let k = parse_sampled_header(h.protocol, h.header);
                let Some(IpAddr::V4(ip)) = k.ip_src else {
                    panic!("no source")
                };
                srcs.push((ip, k.ip_proto.unwrap()));
            }
        }
        (d.agent, d.sequence, srcs)
    }

    #[test]
    fn datagrams_decode_with_the_library_decoder_and_round_trip() {
        let mut m = TrafficModel::new(ModelConfig {
            agents: 3,
            sub_agents: 2,
            ..ModelConfig::default()
        })
        .unwrap();
        let mut buf = vec![0u8; 2048];
        let mut seqs: HashMap<AgentId, u32> = HashMap::new();
        for i in 0..60 {
            let e = m.next_datagram(i * 1000, &mut buf).unwrap();
            assert_eq!(e.len, m.datagram_len());
            assert_eq!((e.samples, e.attack_samples), (7, 0));
            let bytes = &buf[..e.len];
            let (agent, seq, srcs) = decode(bytes);
            assert_eq!(srcs.len(), 7);
            for (ip, _) in srcs {
                assert_eq!(ip.octets()[0], 10);
            }
            // Sequences count up per (agent, sub-agent).
            let prev = seqs.insert(agent, seq).unwrap_or(0);
            assert_eq!(seq, prev + 1);
            // The emitter's output round-trips through the owned repr.
            let repr = DatagramRepr::parse(&parse_datagram(bytes).unwrap()).unwrap();
            let mut again = vec![0u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut again), Ok(bytes.len()));
            assert_eq!(&again[..], bytes);
        }
        assert_eq!(seqs.len(), 6);
        assert!(m.datagram_len() < 1400);
    }

    #[test]
    fn attacks_follow_their_schedule_and_rate() {
        let flood = Attack {
            duration: Some(Duration::from_secs(2)),
            ..Attack::new(AttackKind::IcmpFlood, Duration::from_secs(1), 7_000.0)
        };
        let mut m = TrafficModel::new(ModelConfig {
            attacks: vec![flood.clone()],
            ..ModelConfig::default()
        })
        .unwrap();
        let mut buf = vec![0u8; 2048];
        // Before the start: background only.
        for i in 0..100 {
            let e = m.next_datagram(secs(0.99) * i / 100, &mut buf).unwrap();
            assert_eq!(e.attack_samples, 0);
        }
        assert!(!flood.active(Duration::from_millis(999)));
        assert!(flood.active(Duration::from_secs(1)));
        assert!(!flood.active(Duration::from_secs(3)));
        // 7000 pps at 1-in-1000 = 7 samples/s: one full datagram per second of attack.
        let e = m.next_datagram(secs(2.0), &mut buf).unwrap();
        assert_eq!((e.attack_samples, e.attack), (7, Some(0)));
        let (_, _, srcs) = decode(&buf[..e.len]);
        assert!(srcs
            .iter()
            .all(|&(ip, proto)| ip == flood.source && proto == 1));
        let e = m.next_datagram(secs(2.0), &mut buf).unwrap();
        assert_eq!((e.attack_samples, e.attack), (0, None));
        // Partial debt: 0.5 s more owes 3 samples, then background fills the slots.
        let e = m.next_datagram(secs(2.5), &mut buf).unwrap();
        assert_eq!(e.attack_samples, 3);
        let (_, _, srcs) = decode(&buf[..e.len]);
        assert_eq!(srcs.iter().filter(|s| s.0 == flood.source).count(), 3);
        // After the end, the total stays at rate x duration / N.
        for t in [3.0, 4.0, 10.0] {
            let _ = m.next_datagram(secs(t), &mut buf).unwrap();
        }
        assert_eq!(m.attack_samples(), &[14]);
        assert_eq!(flood.samples_due(Duration::from_secs(100), 1000), 14);
    }

    #[test]
    fn every_attack_kind_has_its_signature() {
        let kinds = [
            (AttackKind::IcmpFlood, 1u8),
            (AttackKind::SynFlood, 6),
            (AttackKind::UdpReflection, 17),
            (AttackKind::SpoofedFlood, 17),
        ];
        for (kind, proto) in kinds {
            let a = Attack::new(kind, Duration::ZERO, 1e9);
            let mut m = TrafficModel::new(ModelConfig {
                attacks: vec![a.clone()],
                ..ModelConfig::default()
            })
            .unwrap();
            let mut buf = vec![0u8; 2048];
            let mut sources = HashSet::new();
            for _ in 0..20 {
                let e = m.next_datagram(secs(1.0), &mut buf).unwrap();
                assert_eq!(e.attack_samples, 7);
                for (ip, p) in decode(&buf[..e.len]).2 {
                    assert_eq!(p, proto, "{kind:?}");
                    sources.insert(ip);
                }
            }
            match kind {
                AttackKind::IcmpFlood | AttackKind::SynFlood => {
                    assert_eq!(sources, HashSet::from([a.source]))
                }
                AttackKind::UdpReflection => {
                    assert!(sources.len() > 1 && sources.len() <= 16, "{sources:?}")
                }
                AttackKind::SpoofedFlood => assert_eq!(sources.len(), 140),
            }
        }
    }

    #[test]
    fn spoofed_sources_are_distinct() {
        let mut m = TrafficModel::new(ModelConfig::default()).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..1_000_000 {
            assert!(seen.insert(m.next_spoofed()));
        }
        // Spread over the whole address space, not a counter.
        let first_octets: HashSet<u8> = seen.iter().map(|ip| ip.octets()[0]).collect();
        assert_eq!(first_octets.len(), 256);
    }

    #[test]
    fn zipf_background_has_heavy_hitters_and_uniform_does_not() {
        let count = |distribution| {
            let mut m = TrafficModel::new(ModelConfig {
                sources: 1000,
                distribution,
                ..ModelConfig::default()
            })
            .unwrap();
            let mut buf = vec![0u8; 2048];
            let mut by_source: HashMap<Ipv4Addr, usize> = HashMap::new();
            for _ in 0..2000 {
                let e = m.next_datagram(0, &mut buf).unwrap();
                for (ip, _) in decode(&buf[..e.len]).2 {
                    *by_source.entry(ip).or_default() += 1;
                }
            }
            by_source
        };
        let zipf = count(SourceDist::Zipf(1.0));
        let top = zipf[&TrafficModel::source_address(1)];
        // 14000 samples, H(1000) ≈ 7.49: rank 1 gets about 1870.
        assert!((1500..2300).contains(&top), "{top}");
        assert!(top as f64 > 1.6 * zipf[&TrafficModel::source_address(2)] as f64);
        let uniform = count(SourceDist::Uniform);
        assert!(
            uniform.values().all(|&c| c < 50),
            "max {:?}",
            uniform.values().max()
        );
        assert!(uniform.len() > 990);
    }

    #[test]
    fn attack_specs_parse_and_bad_ones_explain() {
        let a: Attack = "icmp:at=2s,for=500ms,rate=20000,src=172.16.9.9"
            .parse()
            .unwrap();
        assert_eq!(a.kind, AttackKind::IcmpFlood);
        assert_eq!(a.start, Duration::from_secs(2));
        assert_eq!(a.duration, Some(Duration::from_millis(500)));
        assert_eq!(a.rate_pps, 20000.0);
        assert_eq!(a.source, Ipv4Addr::new(172, 16, 9, 9));
        let s: Attack = "spoofed".parse().unwrap();
        assert_eq!(
            (s.kind, s.start, s.duration),
            (AttackKind::SpoofedFlood, Duration::ZERO, None)
        );
        let r: Attack = "reflection:reflectors=4,dst=10.200.0.9".parse().unwrap();
        assert_eq!((r.reflectors, r.target), (4, Ipv4Addr::new(10, 200, 0, 9)));
        assert!(matches!("ping".parse::<Attack>(), Err(SpecError::Kind(_))));
        assert!(matches!(
            "syn:speed=3".parse::<Attack>(),
            Err(SpecError::Key(_))
        ));
        let e = "syn:rate=-1".parse::<Attack>().unwrap_err();
        assert!(e.to_string().contains("rate"), "{e}");
        assert!("syn:at=soon".parse::<Attack>().is_err());
        assert!("syn:src=1.2.3".parse::<Attack>().is_err());
    }

    #[test]
    fn counters_are_polled_per_port_once_per_interval() {
        let mut m = TrafficModel::new(ModelConfig {
            agents: 2,
            ports: 4,
            counter_interval: Some(Duration::from_secs(1)),
            ..ModelConfig::default()
        })
        .unwrap();
        let mut buf = vec![0u8; m.datagram_len()];
        let (mut flows, mut counters) = (0, HashMap::<(IpAddr, u32), u32>::new());
        // 10 s at 1000 datagrams/s: each of 2 agents x 4 ports reports ~10 times.
        for i in 0..10_000u64 {
            let e = m.next_datagram(i * 1_000_000, &mut buf).unwrap();
            let d = parse_datagram(&buf[..e.len]).unwrap();
            for s in d.samples() {
                match s.unwrap() {
                    Sample::Flow(_) => flows += 1,
                    Sample::Counters(c) => {
                        assert_eq!(e.counter_samples, 1);
                        let Some(Ok(reflex::sflow::CounterRecord::Generic(g))) = c.records().next()
                        else {
                            panic!("no generic counters")
                        };
                        assert_eq!(g.if_index, c.source.index);
                        *counters.entry((d.agent.address, g.if_index)).or_default() += 1;
                    }
                    _ => panic!("unexpected sample"),
                }
            }
        }
        assert_eq!(counters.len(), 8);
        assert!(
            counters.values().all(|&n| (9..=11).contains(&n)),
            "{counters:?}"
        );
        assert!(flows > 60_000);
        let no_counters = TrafficModel::new(ModelConfig {
            counter_interval: Some(Duration::from_micros(10)),
            ..ModelConfig::default()
        });
        assert!(no_counters.is_err());
    }

    #[test]
    fn bad_configurations_are_rejected() {
        let bad = |cfg: ModelConfig| TrafficModel::new(cfg).err().map(|e| e.to_string());
        let e = bad(ModelConfig {
            samples_per_datagram: 0,
            ..ModelConfig::default()
        });
        assert!(e.unwrap().contains("samples per datagram"));
        assert!(bad(ModelConfig {
            sources: 0,
            ..ModelConfig::default()
        })
        .is_some());
        assert!(bad(ModelConfig {
            distribution: SourceDist::Zipf(-2.0),
            ..ModelConfig::default()
        })
        .is_some());
        assert!(bad(ModelConfig {
            header_len: 20,
            ..ModelConfig::default()
        })
        .is_some());
    }

    #[test]
    fn decayed_rate_converges_to_a_constant_rate() {
        let mut r = DecayedRate::new(1.0);
        let mut rate = 0.0;
        // 100 frames/s in 10 ms steps for 10 s.
        for i in 0..1000u64 {
            rate = r.add(i * 10_000_000, 1.0);
        }
        assert!((95.0..106.0).contains(&rate), "{rate}");
        assert!(r.rate(secs(20.0)) < 1.0);
    }
}
