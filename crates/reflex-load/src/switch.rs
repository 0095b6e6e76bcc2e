//! `reflex-load switch`: N emulated OpenFlow 1.3 switches (reflex_testkit::switch) connected
//! to a controller over loopback TCP, driven by one mio loop. Modes: `passive` answers and
//! records flow-mods; `throughput` and `latency` are cbench's: PACKET_IN for unique MACs,
//! counting responses (flow-mods or packet-outs) per second or timing each round trip.
//! `--pipeline` makes each PACKET_IN come from where the controller's own pipeline would
//! send it (table, cookie, reason, VLAN tag), for controllers such as Faucet that answer
//! nothing else.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use mio::{Events, Interest, Poll, Token};
use reflex::io::now_ns;
use reflex_testkit::switch::{EmulatedSwitch, ReceivedFlowMod, SwitchCounters};
use serde_json::json;

use crate::report::{self, loopback, parse_duration, Progress};

/// What the switches do once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Answer the controller and record flow-mods.
    Passive,
    /// cbench throughput: keep PACKET_INs flowing, count responses per second.
    Throughput,
    /// cbench latency: one PACKET_IN at a time per switch, time each answer (the first
    /// response after it that is not about the PACKET_IN before it).
    Latency,
}

#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// The controller (loopback only).
    #[arg(long, default_value = "127.0.0.1:6653")]
    pub controller: SocketAddr,
    /// Number of switches (datapath ids 1..=N).
    #[arg(long, default_value_t = 1)]
    pub switches: u32,
    /// Ports per switch.
    #[arg(long, default_value_t = 4)]
    pub ports: u32,
    /// Flow entries each switch already holds (reported by FLOW stats).
    #[arg(long, default_value_t = 0)]
    pub table_flows: u32,
    #[arg(long, value_enum, default_value_t = Mode::Passive)]
    pub mode: Mode,
    /// Distinct source MACs cycled through by PACKET_INs.
    #[arg(long, default_value_t = 100_000)]
    pub macs: u32,
    /// Stop after this long.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,
    /// Give up if no switch has connected after this long.
    #[arg(long, default_value = "5", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Buffered PACKET_INs (a buffer id and the frame, 256 buffers announced), as cbench
    /// sends them; without it unbuffered (no buffer id), as Open vSwitch does.
    #[arg(long)]
    pub buffered: bool,
    /// PACKET_INs from the entry a walk of the controller's flow table reaches for a new
    /// frame on its in_port (table, cookie, reason ACTION or NO_MATCH, the frame 802.1Q-tagged
    /// if the pipeline pushed a VLAN), as Open vSwitch sends them under a multi-table
    /// pipeline such as Faucet's; without it from the catch-all output-to-CONTROLLER entry,
    /// untagged.
    #[arg(long)]
    pub pipeline: bool,
    /// Write every flow-mod received (JSON lines with receive time) to this file.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Bytes of PACKET_IN kept queued per switch in throughput mode.
const THROUGHPUT_WINDOW: usize = 64 << 10;

struct Conn {
    stream: mio::net::TcpStream,
    switch: EmulatedSwitch,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    out_at: usize,
    closed: Option<String>,
    next_mac: u32,
    /// Latency mode: when the outstanding PACKET_IN was queued, and responses seen then.
    outstanding: Option<(u64, u64)>,
}

/// A set of emulated switches connected to one controller.
pub struct Fleet {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    mode: Mode,
    macs: u32,
    /// Round-trip times in latency mode (ns).
    pub rtt: hdrhistogram::Histogram<u64>,
}

/// Connects one TCP stream, retrying refusals until `deadline`.
fn connect(addr: SocketAddr, deadline: Instant) -> anyhow::Result<TcpStream> {
    let mut last: Option<io::Error> = None;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => return Ok(s),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let why = last.map_or("timed out".to_string(), |e| e.to_string());
    bail!(
        "no OpenFlow controller accepted a connection at {addr} ({why}); \
         is the controller running and listening there (reflexd --openflow {addr})?"
    )
}

impl Fleet {
    /// Buffered PACKET_INs on every switch (call before the first step).
    pub fn set_buffered(&mut self, on: bool) {
        for c in &mut self.conns {
            c.switch.set_buffered(on);
        }
    }

    /// PACKET_INs from a walk of each switch's pipeline (see `--pipeline`).
    pub fn set_pipeline(&mut self, on: bool) {
        for c in &mut self.conns {
            c.switch.set_pipeline(on);
        }
    }

    /// Connects `switches` switches to `controller` (retrying until `connect_timeout`).
    pub fn connect(
        controller: SocketAddr,
        switches: u32,
        ports: u32,
        table_flows: u32,
        mode: Mode,
        macs: u32,
        connect_timeout: Duration,
    ) -> anyhow::Result<Fleet> {
        let controller = loopback(controller, "controller")?;
        report::within("--switches", switches, 1, 4096)?;
        report::within("--ports", ports, 1, 255)?;
        report::within("--macs", macs, 1, 1 << 24)?;
        let poll = Poll::new().context("mio poll")?;
        let deadline = Instant::now() + connect_timeout;
        let mut conns = Vec::new();
        for i in 0..switches {
            let std_stream = connect(controller, deadline)?;
            let _ = std_stream.set_nodelay(true);
            std_stream.set_nonblocking(true)?;
            let mut stream = mio::net::TcpStream::from_std(std_stream);
            poll.registry().register(
                &mut stream,
                Token(i as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let mut switch = EmulatedSwitch::new(u64::from(i) + 1, ports).with_table(table_flows);
            let mut outbuf = Vec::with_capacity(THROUGHPUT_WINDOW * 2);
            switch.start(&mut outbuf);
            conns.push(Conn {
                stream,
                switch,
                inbuf: Vec::with_capacity(1 << 16),
                outbuf,
                out_at: 0,
                closed: None,
                next_mac: 0,
                outstanding: None,
            });
        }
        Ok(Fleet {
            poll,
            events: Events::with_capacity(1024),
            conns,
            mode,
            macs,
            rtt: reflex::timing::latency_histogram(),
        })
    }

    /// Switches whose handshake (FEATURES) completed.
    pub fn connected(&self) -> usize {
        self.conns.iter().filter(|c| c.switch.connected()).count()
    }

    /// Switches whose connection ended, with the reason.
    pub fn closed(&self) -> Vec<(u64, String)> {
        self.conns
            .iter()
            .filter_map(|c| c.closed.clone().map(|r| (c.switch.datapath_id(), r)))
            .collect()
    }

    /// Counters summed over switches.
    pub fn counters(&self) -> SwitchCounters {
        let mut t = SwitchCounters::default();
        for c in &self.conns {
            let s = c.switch.counters();
            t.messages_in += s.messages_in;
            t.flow_mods += s.flow_mods;
            t.packet_outs += s.packet_outs;
            t.barriers += s.barriers;
            t.echoes += s.echoes;
            t.multiparts += s.multiparts;
            t.errors_sent += s.errors_sent;
            t.errors_received += s.errors_received;
            t.packet_ins_sent += s.packet_ins_sent;
        }
        t
    }

    /// Responses (flow-mods + packet-outs) over all switches.
    pub fn responses(&self) -> u64 {
        self.conns.iter().map(|c| c.switch.responses()).sum()
    }

    /// Flow-mods received since the last call, with their switch's datapath id.
    pub fn drain_flow_mods(&mut self) -> Vec<(u64, ReceivedFlowMod)> {
        let mut all = Vec::new();
        for c in &mut self.conns {
            let dpid = c.switch.datapath_id();
            all.extend(c.switch.drain_flow_mods().into_iter().map(|f| (dpid, f)));
        }
        all
    }

    /// Waits up to `timeout` for socket readiness, then reads, answers and writes on every
    /// connection. Connection errors close that switch only.
    pub fn step(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("mio poll"),
        }
        let (mode, macs) = (self.mode, self.macs);
        for c in &mut self.conns {
            if c.closed.is_none() {
                if let Err(why) = service(c, mode, macs, &mut self.rtt) {
                    c.closed = Some(why);
                }
            }
        }
        Ok(())
    }
}

/// One connection's turn: read all, handle, generate cbench traffic, write all.
fn service(
    c: &mut Conn,
    mode: Mode,
    macs: u32,
    rtt: &mut hdrhistogram::Histogram<u64>,
) -> Result<(), String> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => return Err("controller closed the connection".into()),
            Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if !c.inbuf.is_empty() {
        let now = now_ns();
        let used = c
            .switch
            .receive(now, &c.inbuf, &mut c.outbuf)
            .map_err(|e| format!("protocol error from the controller: {e}"))?;
        c.inbuf.drain(..used);
        if let Some((sent_at, before)) = c.outstanding {
            if c.switch.answers() > before {
                let _ = rtt.record(now.saturating_sub(sent_at).max(1));
                c.outstanding = None;
            }
        }
    }
    if c.switch.connected() {
        match mode {
            Mode::Passive => {}
            Mode::Throughput => {
                while c.outbuf.len() - c.out_at < THROUGHPUT_WINDOW {
                    if !packet_in(c, macs) {
                        break;
                    }
                }
            }
            Mode::Latency => {
                if c.outstanding.is_none() && packet_in(c, macs) {
                    c.outstanding = Some((now_ns(), c.switch.answers()));
                }
            }
        }
    }
    while c.out_at < c.outbuf.len() {
        match c.stream.write(&c.outbuf[c.out_at..]) {
            Ok(0) => return Err("controller stopped reading".into()),
            Ok(n) => c.out_at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    if c.out_at == c.outbuf.len() {
        c.outbuf.clear();
        c.out_at = 0;
    } else if c.out_at > (1 << 20) {
        c.outbuf.drain(..c.out_at);
        c.out_at = 0;
    }
    Ok(())
}

/// Queues the next cbench PACKET_IN; false when the switch's pipeline (--pipeline) does
/// not send that frame to the controller (it is dropped, as a switch would).
fn packet_in(c: &mut Conn, macs: u32) -> bool {
    let m = c.next_mac % macs;
    c.next_mac = c.next_mac.wrapping_add(1);
    let dp = c.switch.datapath_id() as u8;
    let mac = [0x02, dp, 0, (m >> 16) as u8, (m >> 8) as u8, m as u8];
    let port = 1 + m % 2;
    c.switch.packet_in(mac, port, &mut c.outbuf)
}

/// One flow-mod as a JSON record.
pub fn flow_mod_json(dpid: u64, f: &ReceivedFlowMod, origin_ns: u64) -> serde_json::Value {
    json!({
        "dpid": dpid,
        "at_ms": f.at_ns.saturating_sub(origin_ns) as f64 / 1e6,
        "xid": f.xid,
        "command": format!("{:?}", f.flow_mod.command),
        "table": f.flow_mod.table_id,
        "priority": f.flow_mod.priority,
        "cookie": f.flow_mod.cookie,
        "match": format!("{:?}", f.flow_mod.match_.fields),
        "instructions": format!("{:?}", f.flow_mod.instructions),
    })
}

pub fn run(args: SwitchArgs) -> anyhow::Result<()> {
    let origin = now_ns();
    let mut fleet = Fleet::connect(
        args.controller,
        args.switches,
        args.ports,
        args.table_flows,
        args.mode,
        args.macs,
        args.connect_timeout,
    )?;
    fleet.set_buffered(args.buffered);
    fleet.set_pipeline(args.pipeline);
    let mut record = match &args.record {
        Some(p) => Some(io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let start = Instant::now();
    let handshake_deadline = start + args.connect_timeout;
    let mut progress = Progress::new(args.quiet);
    let mut per_second: Vec<u64> = Vec::new();
    let mut second_start = (Instant::now(), 0u64);
    let mut measuring_from: Option<(Instant, u64)> = None;
    let mut flow_mods = 0u64;
    while start.elapsed() < args.duration {
        fleet.step(Duration::from_millis(5))?;
        for (dpid, f) in fleet.drain_flow_mods() {
            flow_mods += 1;
            if let Some(w) = record.as_mut() {
                writeln!(w, "{}", flow_mod_json(dpid, &f, origin)).context("writing --record")?;
            }
        }
        let connected = fleet.connected();
        if connected == 0 && Instant::now() >= handshake_deadline {
            bail!(
                "connected to {} but no switch completed the OpenFlow handshake within {:?} \
                 (the controller sent no FEATURES_REQUEST){}",
                args.controller,
                args.connect_timeout,
                fleet
                    .closed()
                    .first()
                    .map_or(String::new(), |(_, why)| format!("; {why}"))
            );
        }
        if connected > 0 && measuring_from.is_none() {
            measuring_from = Some((Instant::now(), fleet.responses()));
            second_start = (Instant::now(), fleet.responses());
        }
        if measuring_from.is_some() && second_start.0.elapsed() >= Duration::from_secs(1) {
            let r = fleet.responses();
            per_second.push(r - second_start.1);
            second_start = (Instant::now(), r);
        }
        if !fleet.closed().is_empty() && fleet.closed().len() == fleet.conns.len() {
            break;
        }
        progress.tick(|| {
            format!(
                "switch: {:.1}s {connected}/{} connected, {} flow-mods, {} responses",
                start.elapsed().as_secs_f64(),
                args.switches,
                flow_mods,
                fleet.responses()
            )
        });
    }
    if let Some(mut w) = record.take() {
        w.flush().context("writing --record")?;
    }
    let counters = fleet.counters();
    let (measured_s, responses) = measuring_from.map_or((0.0, 0), |(t, r0)| {
        (t.elapsed().as_secs_f64(), fleet.responses() - r0)
    });
    let avg = responses as f64 / measured_s.max(1e-9);
    let rtt = &fleet.rtt;
    let q = |p: f64| rtt.value_at_quantile(p) as f64 / 1e3;
    let summary = json!({
        "command": "switch",
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "controller": args.controller.to_string(),
        "switches": args.switches,
        "buffered": args.buffered,
        "pipeline": args.pipeline,
        "packet_in_origin": fleet.conns.first().and_then(|c| c.switch.packet_in_origin()).map(|o| {
            json!({"table_id": o.table_id, "cookie": format!("{:#x}", o.cookie), "reason": o.reason, "vlan": o.vlan})
        }),
        "connected": fleet.connected(),
        "closed": fleet.closed().iter().map(|(d, w)| json!({"dpid": d, "reason": w})).collect::<Vec<_>>(),
        "counters": counters,
        "flow_mods": flow_mods,
        "responses": responses,
        "measured_s": measured_s,
        "responses_per_s": avg,
        "per_second": per_second,
        "rtt_us": if rtt.is_empty() { serde_json::Value::Null } else { json!({
            "count": rtt.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            "max": rtt.max() as f64 / 1e3, "mean": rtt.mean() / 1e3,
        })},
    });
    if args.json {
        report::print_json(&summary);
    } else {
        println!(
            "{} of {} switches connected; {} flow-mods, {} packet-outs, {} barriers, {} echoes, \
             {} multiparts, {} errors sent",
            fleet.connected(),
            args.switches,
            counters.flow_mods,
            counters.packet_outs,
            counters.barriers,
            counters.echoes,
            counters.multiparts,
            counters.errors_sent
        );
        match args.mode {
            Mode::Passive => {}
            Mode::Throughput => println!(
                "cbench throughput: {avg:.0} responses/s over {measured_s:.1} s (per second: {per_second:?})"
            ),
            Mode::Latency => println!(
                "cbench latency: {} round trips, p50 {:.1} us, p99 {:.1} us ({:.0} responses/s)",
                rtt.len(),
                q(0.5),
                q(0.99),
                avg
            ),
        }
        for (d, why) in fleet.closed() {
            println!("switch {d}: {why}");
        }
    }
    Ok(())
}
