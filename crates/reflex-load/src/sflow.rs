//! `reflex-load sflow`: the sFlow v5 generator. The traffic model (reflex_testkit::load) writes
//! each batch of datagrams into one buffer; sendmmsg sends the batch in one syscall.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use reflex::io::mmsg::SendBatch;
use reflex::io::rusage::process_cpu_time;
use reflex_testkit::load::{Attack, Emitted, ModelConfig, SourceDist, TrafficModel};
use serde_json::json;

use crate::report::{self, loopback, parse_duration, Progress};

/// How background sources are drawn.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Distribution {
    Zipf,
    Uniform,
}

/// The shape of the generated traffic (shared with `mitigate`).
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Number of sFlow agents (addresses from --agent-base).
    #[arg(long, default_value_t = 4)]
    pub agents: u32,
    /// First agent address written in datagram headers (a label, not a destination).
    #[arg(long, default_value = "192.0.2.1")]
    pub agent_base: std::net::Ipv4Addr,
    /// Sub-agents per agent, each with its own sequence numbers.
    #[arg(long, default_value_t = 1)]
    pub sub_agents: u32,
    /// Flow samples per datagram (Open vSwitch sends 7).
    #[arg(long, default_value_t = 7)]
    pub samples: usize,
    /// 1-in-N sampling rate written in samples; attack rates are divided by it.
    #[arg(long, default_value_t = 1000)]
    pub sampling_rate: u32,
    /// Sampled header bytes per sample.
    #[arg(long, default_value_t = 64)]
    pub header_len: usize,
    /// Ports per agent (attacks enter on port 1, background on the others).
    #[arg(long, default_value_t = 8)]
    pub ports: u32,
    /// Background sources K (10.0.0.1 ...).
    #[arg(long, default_value_t = 10_000)]
    pub sources: u64,
    /// How background sources are chosen.
    #[arg(long, value_enum, default_value_t = Distribution::Zipf)]
    pub distribution: Distribution,
    /// Zipf exponent s (P(rank k) ∝ k^-s).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Background destinations (10.200.0.1 ...).
    #[arg(long, default_value_t = 16)]
    pub destinations: u32,
    /// Poll every port's interface counters once per this interval, per agent (e.g. 20;
    /// default: no counters samples).
    #[arg(long, value_parser = parse_duration)]
    pub counter_interval: Option<Duration>,
    /// Random seed (runs are reproducible).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl ModelArgs {
    /// The model configuration with these attacks.
    pub fn config(&self, attacks: Vec<Attack>) -> ModelConfig {
        ModelConfig {
            agents: self.agents,
            agent_base: self.agent_base,
            sub_agents: self.sub_agents,
            samples_per_datagram: self.samples,
            sampling_rate: self.sampling_rate,
            header_len: self.header_len,
            ports: self.ports,
            sources: self.sources,
            distribution: match self.distribution {
                Distribution::Zipf => SourceDist::Zipf(self.zipf_s),
                Distribution::Uniform => SourceDist::Uniform,
            },
            destinations: self.destinations,
            counter_interval: self.counter_interval,
            attacks,
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
pub struct SflowArgs {
    /// Where to send (127.0.0.0/8 or ::1 only).
    #[arg(long, default_value = "127.0.0.1:6343")]
    pub target: SocketAddr,
    /// Datagrams per second; 0 sends flat out.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Stop after this many datagrams.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Stop after this long (e.g. 10, 2.5s, 500ms; at most 3600 s).
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Attack to inject, repeatable: KIND[:key=value,...] with KIND icmp, syn,
    /// reflection or spoofed and keys at=SECS, for=SECS, rate=PPS (packets/s before
    /// sampling), src=IP, dst=IP, reflectors=N (default at=0, rate=10000, until the end).
    #[arg(long = "attack", value_name = "SPEC")]
    pub attacks: Vec<Attack>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What a sender did.
#[derive(Clone, Debug, Default)]
pub struct SendStats {
    pub datagrams: u64,
    pub bytes: u64,
    pub samples: u64,
    pub attack_samples: u64,
    pub counter_samples: u64,
    /// Send calls the kernel refused because nothing listens (ICMP port unreachable).
    pub refused: u64,
    /// Other failed send calls.
    pub errors: u64,
}

/// A connected UDP socket, sendmmsg scratch space, the model and one batch buffer.
pub struct Sender {
    socket: UdpSocket,
    batch: SendBatch,
    buf: Vec<u8>,
    /// Slot size in `buf` (the longest datagram), and this batch's datagram lengths.
    len: usize,
    lens: Vec<usize>,
    capacity: usize,
    pub model: TrafficModel,
    pub stats: SendStats,
}

impl Sender {
    /// A sender to `target` (checked to be loopback) in batches of `batch`.
    pub fn new(target: SocketAddr, config: ModelConfig, batch: usize) -> anyhow::Result<Sender> {
        let target = loopback(target, "sFlow target")?;
        let capacity = report::within("--batch", batch, 1, 1024)?;
        let model = TrafficModel::new(config).context("bad traffic model")?;
        let bind: SocketAddr = if target.is_ipv4() {
            "127.0.0.1:0".parse()?
        } else {
            "[::1]:0".parse()?
        };
        let socket = UdpSocket::bind(bind).context("cannot bind a UDP socket on loopback")?;
        socket
            .connect(target)
            .with_context(|| format!("cannot connect a UDP socket to {target}"))?;
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(4 << 20);
        let len = model.datagram_len();
        Ok(Sender {
            socket,
            batch: SendBatch::new(capacity),
            buf: vec![0; len * capacity],
            len,
            lens: vec![0; capacity],
            capacity,
            model,
            stats: SendStats::default(),
        })
    }

    /// Bytes of the longest datagram (every flow datagram).
    pub fn datagram_len(&self) -> usize {
        self.len
    }

    /// Builds up to `n` (at most one batch of) datagrams at `now_ns` (since the run started),
    /// calls `each` on every one, and sends them. Returns how many the kernel took.
    pub fn send(
        &mut self,
        now_ns: u64,
        n: usize,
        mut each: impl FnMut(&Emitted),
    ) -> anyhow::Result<usize> {
        let n = n.min(self.capacity);
        for i in 0..n {
            let slot = &mut self.buf[i * self.len..(i + 1) * self.len];
            let e = self
                .model
                .next_datagram(now_ns, slot)
                .context("emitting a datagram")?;
            self.stats.samples += u64::from(e.samples);
            self.stats.attack_samples += u64::from(e.attack_samples);
            self.stats.counter_samples += u64::from(e.counter_samples);
            self.lens[i] = e.len;
            each(&e);
        }
        let mut sent = 0;
        // One retry: a refusal reports an earlier ICMP error and sends nothing.
        for _ in 0..2 {
            match self.batch.send_slots(
                &self.socket,
                &self.buf[sent * self.len..n * self.len],
                self.len,
                &self.lens[sent..n],
            ) {
                Ok(k) => {
                    sent += k;
                    if sent == n {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => self.stats.refused += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stats.errors += 1,
                Err(e) => return Err(e).context("sendmmsg failed"),
            }
        }
        self.stats.datagrams += sent as u64;
        self.stats.bytes += self.lens[..sent].iter().sum::<usize>() as u64;
        Ok(sent)
    }
}

/// Datagrams allowed by `elapsed` at `rate` per second (unbounded when rate is 0).
pub fn paced(rate: f64, elapsed: Duration) -> u64 {
    if rate <= 0.0 {
        u64::MAX
    } else {
        (elapsed.as_secs_f64() * rate) as u64 + 1
    }
}

pub fn run(args: SflowArgs) -> anyhow::Result<()> {
    if !(args.rate >= 0.0 && args.rate <= 1e8) {
        bail!(
            "--rate must be in 0..=1e8 datagrams/s (0 = flat out), got {}",
            args.rate
        );
    }
    report::within("--count", args.count, 1, 1 << 40)?;
    let attacks = args.attacks.clone();
    let mut sender = Sender::new(args.target, args.model.config(attacks.clone()), args.batch)?;
    let mut progress = Progress::new(args.quiet);
    let cpu0 = process_cpu_time();
    let start = Instant::now();
    let mut attempted = 0u64;
    let mut last = (0u64, start);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= args.duration || attempted >= args.count {
            break;
        }
        let mut due = paced(args.rate, elapsed)
            .min(args.count)
            .saturating_sub(attempted);
        let mut elapsed = elapsed;
        let want = (args.batch as u64).min(args.count - attempted);
        if due < want {
            // Paced: sleep until a whole batch is due, at most 1 ms, then send what is due —
            // one syscall per batch at high rates, few wake-ups at low ones.
            let full_at = Duration::from_secs_f64((attempted + want) as f64 / args.rate);
            std::thread::sleep(
                full_at
                    .saturating_sub(elapsed)
                    .min(Duration::from_millis(1)),
            );
            elapsed = start.elapsed();
            due = paced(args.rate, elapsed)
                .min(args.count)
                .saturating_sub(attempted);
            if due == 0 {
                continue;
            }
        }
        let n = (due as usize).min(args.batch);
        sender.send(elapsed.as_nanos() as u64, n, |_| {})?;
        attempted += n as u64;
        progress.tick(|| {
            let now = Instant::now();
            let dt = now.duration_since(last.1).as_secs_f64();
            let rate = (sender.stats.datagrams - last.0) as f64 / dt.max(1e-9);
            last = (sender.stats.datagrams, now);
            format!(
                "sflow: {:.1}s {} datagrams ({:.0}/s), {} attack samples, {} refused",
                elapsed.as_secs_f64(),
                sender.stats.datagrams,
                rate,
                sender.stats.attack_samples,
                sender.stats.refused
            )
        });
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu_time().since(&cpu0);
    let s = &sender.stats;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let per_attack: Vec<_> = attacks
        .iter()
        .zip(sender.model.attack_samples())
        .map(|(a, n)| {
            json!({
                "kind": a.kind.name(),
                "source": a.source.to_string(),
                "target": a.target.to_string(),
                "at_s": a.start.as_secs_f64(),
                "rate_pps": a.rate_pps,
                "samples": n,
            })
        })
        .collect();
    let summary = json!({
        "command": "sflow",
        "target": args.target.to_string(),
        "datagrams": s.datagrams,
        "attempted": attempted,
        "bytes": s.bytes,
        "flow_datagram_bytes": sender.datagram_len(),
        "samples": s.samples,
        "attack_samples": s.attack_samples,
        "counter_samples": s.counter_samples,
        "attacks": per_attack,
        "refused": s.refused,
        "errors": s.errors,
        "elapsed_s": secs,
        "datagrams_per_s": s.datagrams as f64 / secs,
        "mbit_per_s": s.bytes as f64 * 8.0 / secs / 1e6,
        "cpu_s": cpu.total().as_secs_f64(),
        "cpu_ns_per_datagram": cpu.total().as_nanos() as f64 / (s.datagrams.max(1) as f64),
    });
    if args.json {
        report::print_json(&summary);
    } else {
        println!(
            "sent {} datagrams ({} bytes, {} flow samples, {} attack samples, {} counters \
             samples) to {} in {:.2} s: \
             {:.0} datagrams/s, {:.1} Mbit/s, {:.0} ns CPU/datagram; {} refused, {} errors",
            s.datagrams,
            s.bytes,
            s.samples,
            s.attack_samples,
            s.counter_samples,
            args.target,
            secs,
            s.datagrams as f64 / secs,
            s.bytes as f64 * 8.0 / secs / 1e6,
            cpu.total().as_nanos() as f64 / (s.datagrams.max(1) as f64),
            s.refused,
            s.errors
        );
    }
    Ok(())
}
