//! `reflex-load mitigate`: emulated switch(es) connected to a running reflexd, background
//! sFlow towards it, and repeated attacks from fresh sources. For each attack it measures
//! the time from the first attack datagram sent to the blocking flow-mod received at the
//! emulated switch, and from the deciding datagram — the one after which the attacker's
//! decayed rate, computed exactly as reflexd smooths it, first reaches the threshold.
//! Both clocks are this process's monotonic clock, so the figures need no synchronisation.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use reflex::io::now_ns;
use reflex_testkit::load::{Attack, AttackKind, DecayedRate};
use reflex_testkit::switch::ReceivedFlowMod;
use serde_json::{json, Value};

use crate::report::{self, parse_duration, Progress};
use crate::sflow::{paced, ModelArgs, Sender};
use crate::switch::{Fleet, Mode};

/// Single-source attacks (a block is one flow-mod on the attacker's address).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Icmp,
    Syn,
}

#[derive(Args, Debug)]
pub struct MitigateArgs {
    /// reflexd's OpenFlow address (`reflexd --openflow`), loopback only.
    #[arg(long, default_value = "127.0.0.1:6653")]
    pub controller: SocketAddr,
    /// reflexd's sFlow address, loopback only.
    #[arg(long, default_value = "127.0.0.1:6343")]
    pub target: SocketAddr,
    /// Emulated switches.
    #[arg(long, default_value_t = 1)]
    pub switches: u32,
    /// Number of attacks, one after another, each from a new source (172.16.x.y).
    #[arg(long, default_value_t = 10)]
    pub attacks: u32,
    #[arg(long, value_enum, default_value_t = Kind::Icmp)]
    pub kind: Kind,
    /// Attack rate in packets/s before sampling (3 Mpps: 3000 samples/s at 1-in-1000,
    /// 3x the default threshold, while the heaviest background source is ~0.7 Mpps).
    #[arg(long, default_value_t = 3_000_000.0)]
    pub attack_rate: f64,
    /// How long each attack lasts (and how long a block is waited for).
    #[arg(long, default_value = "3", value_parser = parse_duration)]
    pub attack_duration: Duration,
    /// Quiet time between attacks.
    #[arg(long, default_value = "1", value_parser = parse_duration)]
    pub gap: Duration,
    /// Background only, before the first attack.
    #[arg(long, default_value = "2", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Background datagrams per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// reflexd's threshold on the attacked flow (frames/s), to find the deciding datagram
    /// (tools/reflex-load/mitigate.toml uses the same value).
    #[arg(long, default_value_t = 1_000_000.0)]
    pub threshold: f64,
    /// reflexd's smoothing time t of that flow (seconds).
    #[arg(long, default_value_t = 1.0)]
    pub smoothing: f64,
    /// Give up if no switch is connected and handshaken after this long.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The attacker of attack `i`: 172.16.0.1, 172.16.0.2, ... (250 per /24).
pub fn attacker(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, (i / 250) as u8, (i % 250 + 1) as u8)
}

#[derive(Debug)]
struct AttackRun {
    source: Ipv4Addr,
    first_ns: Option<u64>,
    decide_ns: Option<u64>,
    block: Option<(u64, u64)>,
    rate: DecayedRate,
}

pub fn run(args: MitigateArgs) -> anyhow::Result<()> {
    report::within("--attacks", args.attacks, 1, 10_000)?;
    if !(args.attack_rate > 0.0 && args.attack_rate.is_finite()) {
        bail!("--attack-rate must be > 0 packets/s");
    }
    if !(args.rate > 0.0 && args.rate <= 1e7) {
        bail!("--rate must be in (0, 1e7] datagrams/s");
    }
    if !(args.threshold > 0.0 && args.smoothing > 0.0) {
        bail!("--threshold and --smoothing must be > 0");
    }
    let period = args.attack_duration + args.gap;
    let total = args.warmup + period * args.attacks + Duration::from_secs(1);
    if total.as_secs_f64() > report::MAX_DURATION_SECS {
        bail!(
            "the schedule lasts {:.0} s, more than {} s: fewer or shorter attacks",
            total.as_secs_f64(),
            report::MAX_DURATION_SECS
        );
    }
    let kind = match args.kind {
        Kind::Icmp => AttackKind::IcmpFlood,
        Kind::Syn => AttackKind::SynFlood,
    };
    let attacks: Vec<Attack> = (0..args.attacks)
        .map(|i| Attack {
            duration: Some(args.attack_duration),
            source: attacker(i),
            ..Attack::new(kind, args.warmup + period * i, args.attack_rate)
        })
        .collect();
    let mut sender = Sender::new(args.target, args.model.config(attacks.clone()), args.batch)?;

    // The switches live on their own thread so flow-mods are timestamped as they arrive.
    let fleet = Fleet::connect(
        args.controller,
        args.switches,
        4,
        0,
        Mode::Passive,
        1,
        args.connect_timeout,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::bounded::<(u64, ReceivedFlowMod)>(65536);
    let switch_thread = {
        let (stop, connected) = (stop.clone(), connected.clone());
        std::thread::Builder::new()
            .name("switches".into())
            .spawn(move || -> anyhow::Result<Vec<(u64, String)>> {
                let mut fleet = fleet;
                while !stop.load(Ordering::Relaxed) {
                    fleet.step(Duration::from_millis(2))?;
                    connected.store(fleet.connected(), Ordering::Relaxed);
                    for f in fleet.drain_flow_mods() {
                        let _ = tx.try_send(f);
                    }
                }
                Ok(fleet.closed())
            })
            .context("spawning the switch thread")?
    };
    let finish = |stop: &AtomicBool| {
        stop.store(true, Ordering::Relaxed);
    };

    let deadline = Instant::now() + args.connect_timeout;
    while connected.load(Ordering::Relaxed) == 0 {
        if Instant::now() >= deadline || switch_thread.is_finished() {
            finish(&stop);
            let closed = switch_thread
                .join()
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let why = closed
                .first()
                .map_or(String::new(), |(_, w)| format!(" ({w})"));
            bail!(
                "the controller at {} accepted TCP but completed no OpenFlow handshake within \
                 {:?}{why}: does this reflexd serve OpenFlow on --openflow {}?",
                args.controller,
                args.connect_timeout,
                args.controller
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !args.quiet {
        eprintln!(
            "mitigate: {} switch(es) connected to {}; {} attacks of {} pps from {}",
            connected.load(Ordering::Relaxed),
            args.controller,
            args.attacks,
            args.attack_rate,
            attacker(0)
        );
    }

    let mut runs: Vec<AttackRun> = attacks
        .iter()
        .map(|a| AttackRun {
            source: a.source,
            first_ns: None,
            decide_ns: None,
            block: None,
            rate: DecayedRate::new(args.smoothing),
        })
        .collect();
    let weight = f64::from(args.model.sampling_rate);
    let threshold = args.threshold;
    let origin = now_ns();
    let start = Instant::now();
    let mut progress = Progress::new(args.quiet);
    let mut attempted = 0u64;
    let mut flow_mods = 0u64;
    let last_end = args.warmup + period * (args.attacks - 1) + args.attack_duration;
    loop {
        let elapsed = start.elapsed();
        let blocked = runs.iter().filter(|r| r.block.is_some()).count();
        if elapsed >= total
            || (blocked == runs.len())
            || (elapsed > last_end + Duration::from_secs(1))
        {
            break;
        }
        for (dpid, f) in rx.try_iter() {
            flow_mods += 1;
            for r in runs
                .iter_mut()
                .filter(|r| r.first_ns.is_some() && r.block.is_none())
            {
                if f.blocks(r.source) {
                    r.block = Some((f.at_ns, dpid));
                }
            }
        }
        let due = paced(args.rate, elapsed).saturating_sub(attempted);
        if due == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let n = (due as usize).min(args.batch);
        let now = now_ns();
        sender.send(now - origin, n, |e| {
            if let Some(r) = e.attack.and_then(|i| runs.get_mut(i)) {
                r.first_ns.get_or_insert(now);
                let rate = r
                    .rate
                    .add(now - origin, f64::from(e.attack_samples) * weight);
                if rate >= threshold && r.decide_ns.is_none() {
                    r.decide_ns = Some(now);
                }
            }
        })?;
        attempted += n as u64;
        progress.tick(|| {
            format!(
                "mitigate: {:.1}s {} datagrams, {} flow-mods, {}/{} attacks blocked",
                elapsed.as_secs_f64(),
                sender.stats.datagrams,
                flow_mods,
                blocked,
                runs.len()
            )
        });
    }
    // Late flow-mods already queued still count.
    std::thread::sleep(Duration::from_millis(20));
    for (dpid, f) in rx.try_iter() {
        flow_mods += 1;
        for r in runs
            .iter_mut()
            .filter(|r| r.first_ns.is_some() && r.block.is_none())
        {
            if f.blocks(r.source) {
                r.block = Some((f.at_ns, dpid));
            }
        }
    }
    finish(&stop);
    let closed = match switch_thread.join() {
        Ok(r) => r?,
        Err(_) => bail!("the switch thread panicked"),
    };

    let mut from_first = reflex::timing::latency_histogram();
    let mut from_decision = reflex::timing::latency_histogram();
    let mut early = 0u64;
    let per_attack: Vec<Value> = runs
        .iter()
        .map(|r| {
            let first = r
                .first_ns
                .and_then(|f| r.block.map(|(b, _)| b.saturating_sub(f)));
            let decide = r
                .decide_ns
                .and_then(|d| r.block.map(|(b, _)| b as i64 - d as i64));
            if let Some(ns) = first {
                let _ = from_first.record(ns.max(1));
            }
            match decide {
                Some(ns) if ns >= 0 => {
                    let _ = from_decision.record((ns as u64).max(1));
                }
                Some(_) => early += 1,
                None => {}
            }
            json!({
                "source": r.source.to_string(),
                "blocked": r.block.is_some(),
                "dpid": r.block.map(|b| b.1),
                "from_first_ms": first.map(|ns| ns as f64 / 1e6),
                "from_decision_ms": decide.map(|ns| ns as f64 / 1e6),
            })
        })
        .collect();
    let pct = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            return Value::Null;
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1e6;
        json!({"count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
               "max": h.max() as f64 / 1e6, "mean": h.mean() / 1e6})
    };
    let blocked = runs.iter().filter(|r| r.block.is_some()).count();
    let summary = json!({
        "command": "mitigate",
        "controller": args.controller.to_string(),
        "target": args.target.to_string(),
        "kind": kind.name(),
        "attack_rate_pps": args.attack_rate,
        "attacks": runs.len(),
        "blocked": blocked,
        "missed": runs.len() - blocked,
        "decided_before_model": early,
        "from_first_ms": pct(&from_first),
        "from_decision_ms": pct(&from_decision),
        "flow_mods": flow_mods,
        "datagrams": sender.stats.datagrams,
        "refused": sender.stats.refused,
        "closed": closed.iter().map(|(d, w)| json!({"dpid": d, "reason": w})).collect::<Vec<_>>(),
        "per_attack": per_attack,
    });
    if args.json {
        report::print_json(&summary);
    } else {
        println!(
            "{blocked} of {} attacks blocked ({} flow-mods, {} datagrams sent)",
            runs.len(),
            flow_mods,
            sender.stats.datagrams
        );
        for (name, h) in [
            ("first attack datagram", &from_first),
            ("deciding datagram", &from_decision),
        ] {
            if !h.is_empty() {
                let q = |p: f64| h.value_at_quantile(p) as f64 / 1e6;
                println!(
                    "from {name} to block: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    q(0.5),
                    q(0.9),
                    q(0.99),
                    h.max() as f64 / 1e6
                );
            }
        }
    }
    if blocked == 0 {
        bail!(
            "no attack was blocked: the controller sent no flow-mod dropping ipv4_src of an \
             attacker (check reflexd's threshold, reaction and that hosts start authenticated)"
        );
    }
    Ok(())
}
