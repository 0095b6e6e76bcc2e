//! `reflex-load drain`: a bare recvmmsg loop that counts datagrams and bytes and nothing
//! else — the most a single socket can take in, to compare reflexd's ingest against.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use reflex::io::mmsg::{BatchWait, RecvBatch};
use reflex::io::rusage::process_cpu_time;
use reflex::io::udp;
use serde_json::json;

use crate::report::{self, loopback, parse_duration, Progress};

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// UDP address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:6343")]
    pub listen: SocketAddr,
    /// Stop after this long.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop once this many datagrams arrived.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Stop after this long without a datagram, once the first one arrived.
    #[arg(long, value_parser = parse_duration)]
    pub idle: Option<Duration>,
    /// Datagrams per recvmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Pause this many microseconds after a short batch of a busy stream, as reflexd's
    /// `sflow.batch_wait_us` does (default 0: the bare loop, never pausing).
    #[arg(long, default_value_t = 0)]
    pub batch_wait_us: u64,
    /// Requested receive buffer (bytes).
    #[arg(long, default_value_t = 32 << 20)]
    pub rcvbuf: usize,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: DrainArgs) -> anyhow::Result<()> {
    let listen = loopback(args.listen, "drain address")?;
    report::within("--batch", args.batch, 1, 1024)?;
    report::within("--batch-wait-us", args.batch_wait_us, 0, 10_000)?;
    let socket = udp::bind_ingest_group(listen, 1, args.rcvbuf, Duration::from_millis(50))
        .with_context(|| format!("cannot listen on udp {listen}"))?
        .into_iter()
        .next()
        .context("no socket bound")?;
    let bound = socket.local_addr()?;
    // Tests and scripts read the bound port from this line.
    eprintln!("drain: listening on {bound}");
    let mut batch = RecvBatch::new(args.batch);
    let wait = BatchWait::new(Duration::from_micros(args.batch_wait_us), args.batch);
    let mut progress = Progress::new(args.quiet);
    let (mut datagrams, mut bytes, mut truncated, mut calls) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut first: Option<(Instant, reflex::io::rusage::CpuTime)> = None;
    let mut last_rx = start;
    let mut last = (0u64, start);
    loop {
        let now = Instant::now();
        if now.duration_since(start) >= args.duration
            || args.expect.is_some_and(|n| datagrams >= n)
            || args
                .idle
                .is_some_and(|idle| first.is_some() && now.duration_since(last_rx) >= idle)
        {
            break;
        }
        let called = Instant::now();
        let n = batch.recv(&socket).context("recvmmsg failed")?;
        if n == 0 {
            continue;
        }
        let took = called.elapsed();
        calls += 1;
        if first.is_none() {
            // Measure from the first datagram: waiting for the sender is not ingest.
            first = Some((Instant::now(), process_cpu_time()));
        }
        last_rx = Instant::now();
        for i in 0..n {
            let (d, t) = batch.datagram(i);
            bytes += d.len() as u64;
            truncated += u64::from(t);
        }
        datagrams += n as u64;
        progress.tick(|| {
            let now = Instant::now();
            let rate = (datagrams - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
            last = (datagrams, now);
            format!("drain: {datagrams} datagrams ({rate:.0}/s)")
        });
        if let Some(pause) = wait.after(n, u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)) {
            std::thread::sleep(pause);
        }
    }
    let (active, cpu) = match first {
        Some((t0, c0)) => (
            last_rx.duration_since(t0),
            process_cpu_time().since(&c0).total(),
        ),
        None => (Duration::ZERO, Duration::ZERO),
    };
    let secs = active.as_secs_f64().max(1e-9);
    let drops = udp::kernel_drops(&socket);
    let summary = json!({
        "command": "drain",
        "listen": bound.to_string(),
        "datagrams": datagrams,
        "bytes": bytes,
        "truncated": truncated,
        "recv_calls": calls,
        "batch_wait_us": args.batch_wait_us,
        "kernel_drops": drops,
        "active_s": active.as_secs_f64(),
        "datagrams_per_s": if datagrams > 1 { datagrams as f64 / secs } else { 0.0 },
        "cpu_s": cpu.as_secs_f64(),
        "cpu_ns_per_datagram": cpu.as_nanos() as f64 / datagrams.max(1) as f64,
    });
    if args.json {
        report::print_json(&summary);
    } else {
        println!(
            "received {datagrams} datagrams ({bytes} bytes) in {:.2} s: {:.0} datagrams/s, \
             {:.0} ns CPU/datagram, {} recvmmsg calls, kernel drops {}",
            active.as_secs_f64(),
            summary["datagrams_per_s"].as_f64().unwrap_or(0.0),
            summary["cpu_ns_per_datagram"].as_f64().unwrap_or(0.0),
            calls,
            drops.map_or("n/a".to_string(), |d| d.to_string()),
        );
    }
    Ok(())
}
