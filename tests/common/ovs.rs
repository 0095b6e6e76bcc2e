//! A real Open vSwitch for end-to-end tests: `tools/testbed.sh` brings up a private
//! ovsdb-server + ovs-vswitchd (userspace datapath), bridge s1 and hosts h1..hN
//! (10.0.0.N) in network namespaces; `Testbed` drives it and tears it down when dropped,
//! also when the test panics.
//!
//! Two userspace Open vSwitch instances on one machine collide (both create the tap
//! `ovs-netdev`) and the namespaces have fixed names, so a testbed is exclusive: within a
//! test binary through a mutex, across processes (another test binary, another checkout)
//! through a file lock. Everything lives in one fixed run directory, so the leftovers of a
//! killed run are torn down when the next testbed starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The testbed's run directory (databases, sockets, pidfiles, logs).
pub const RUN_DIR: &str = "/tmp/reflex-e2e";
/// Held (flock) by whoever runs a testbed; outside RUN_DIR, which `down` removes.
const LOCK_FILE: &str = "/tmp/reflex-e2e.lock";
/// How long to wait for another process's testbed to finish.
const LOCK_WAIT: Duration = Duration::from_secs(600);
/// Echo replies at most every 100 ms per peer: a flooded victim answers ~10/s, far below
/// the flood threshold (otherwise its replies cross it as fast as the attacker's requests
/// and the classic experiment blocks the victim too), while 5/s test pings all get answers.
const ECHO_REPLY_LIMIT_MS: u32 = 100;

const COMMANDS: [&str; 10] = [
    "sysctl",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
    "ip",
    "ping",
    "timeout",
];
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Writes straight to the process's stderr. libtest captures `print!`/`eprint!` but not
/// this, so skips and measurements show in CI logs.
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\n*** {msg}");
}

/// Whether a missing prerequisite fails the test instead of skipping it: under CI
/// (`CI` set, as every CI service does, and not "false"/"0"), or with `REFLEX_E2E=require`.
pub fn required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    ci || std::env::var("REFLEX_E2E").is_ok_and(|v| v == "require")
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|dir| std::fs::metadata(dir.join(cmd)).is_ok_and(|m| m.is_file()))
    })
}

/// What keeps the end-to-end tests from running here (empty: nothing).
pub fn missing_prerequisites(extra: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, veth pairs, Open vSwitch)".to_owned());
    }
    let absent: Vec<&str> = COMMANDS
        .iter()
        .chain(extra)
        .copied()
        .filter(|c| !on_path(c))
        .collect();
    if !absent.is_empty() {
        missing.push(format!(
            "commands not found: {} (apt-get install openvswitch-switch iproute2 \
             iputils-ping procps tshark, or run tools/test.sh as root)",
            absent.join(" ")
        ));
    }
    if !Path::new(SCHEMA).exists() {
        missing.push(format!("{SCHEMA} (package openvswitch-common)"));
    }
    missing
}

/// Whether `test` can run. Missing prerequisites fail it when `required()`; otherwise it is
/// skipped with a loud message (a green run then proves nothing, which the message says).
pub fn ready(test: &str, extra: &[&str]) -> bool {
    let missing = missing_prerequisites(extra);
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{test}: end-to-end prerequisites missing: {}",
        missing.join("; ")
    );
    assert!(
        !required(),
        "{what}. Under CI the end-to-end tests must run: run `tools/test.sh` as root."
    );
    loud(&format!(
        "SKIPPED {what}. This run did NOT test Reflex against Open vSwitch \
         (CI=true or REFLEX_E2E=require turns this skip into a failure)."
    ));
    false
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Exclusive use of Open vSwitch and the test namespaces on this machine.
pub struct Exclusive {
    // Field order: the flock is released before the mutex.
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// Waits for exclusive use of the testbed (mutex in this process, flock across processes).
pub fn exclusive() -> Exclusive {
    // A test that panicked while holding the mutex has torn its testbed down by then.
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE}: {e}"));
    let deadline = Instant::now() + LOCK_WAIT;
    let mut told = false;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        if !told {
            loud(&format!(
                "waiting for another process's Open vSwitch testbed ({LOCK_FILE})"
            ));
            told = true;
        }
        assert!(
            Instant::now() < deadline,
            "another process held {LOCK_FILE} for {LOCK_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Exclusive {
        _file: file,
        _guard: guard,
    }
}

/// Runs `cmd args` under `timeout(1)`, so no external tool can hang a test.
pub fn run(secs: u64, cmd: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("-k")
        .arg("2")
        .arg(secs.to_string())
        .arg(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Like `run`, panicking unless the command succeeds; returns its stdout.
pub fn run_ok(secs: u64, cmd: &str, args: &[&str]) -> String {
    let out = run(secs, cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How to build a testbed.
#[derive(Clone, Debug)]
pub struct Options {
    pub hosts: usize,
    /// UDP port on 127.0.0.1 receiving the bridge's sFlow; None: no sFlow.
    pub sflow_port: Option<u16>,
    pub sampling: u32,
    pub polling: u32,
    /// TCP port on 127.0.0.1 of the OpenFlow controller; None: a standalone learning switch.
    pub controller: Option<u16>,
}

impl Options {
    /// Three hosts, a standalone bridge, no sFlow.
    pub fn standalone() -> Options {
        Options {
            hosts: 3,
            sflow_port: None,
            sampling: 10,
            polling: 20,
            controller: None,
        }
    }

    /// sFlow to 127.0.0.1:`port`, 1-in-`sampling`, counters every `polling` s.
    pub fn sflow(mut self, port: u16, sampling: u32, polling: u32) -> Options {
        self.sflow_port = Some(port);
        self.sampling = sampling;
        self.polling = polling;
        self
    }

    /// Fail-mode secure, OpenFlow 1.3 to tcp:127.0.0.1:`port`.
    pub fn controller(mut self, port: u16) -> Options {
        self.controller = Some(port);
        self
    }
}

/// Traffic counters of one switch port (OpenFlow port statistics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortStats {
    /// "1", "2", … or "LOCAL".
    pub port: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// One entry of `ovs-ofctl dump-flows`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowEntry {
    pub table: u8,
    pub priority: u16,
    pub cookie: String,
    /// Match fields as OVS prints them, e.g. "ip,nw_src=10.0.0.1" ("" matches all).
    pub match_: String,
    pub actions: String,
    pub duration_s: f64,
    pub n_packets: u64,
}

impl FlowEntry {
    /// Parses one line of `ovs-ofctl -O OpenFlow13 dump-flows`.
    pub fn parse(line: &str) -> Option<FlowEntry> {
        let (left, actions) = line.trim().split_once(" actions=")?;
        let mut e = FlowEntry {
            table: 0,
            priority: 32768, // OVS omits the default priority
            cookie: "0x0".to_owned(),
            match_: String::new(),
            actions: actions.trim().to_owned(),
            duration_s: 0.0,
            n_packets: 0,
        };
        let items: Vec<&str> = left.split(", ").collect();
        let (last, stats) = items.split_last()?;
        for item in stats {
            match item.split_once('=') {
                Some(("cookie", v)) => e.cookie = v.to_owned(),
                Some(("duration", v)) => {
                    e.duration_s = v.trim_end_matches('s').parse().unwrap_or(0.0)
                }
                Some(("table", v)) => e.table = v.parse().ok()?,
                Some(("n_packets", v)) => e.n_packets = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        // Flags (send_flow_rem, …) precede the match, separated by spaces.
        let fields = last.split_whitespace().last().unwrap_or("");
        let mut rest = Vec::new();
        for f in fields.split(',').filter(|f| !f.is_empty()) {
            match f.split_once('=') {
                Some(("priority", v)) => e.priority = v.parse().ok()?,
                Some(("table", v)) => e.table = v.parse().ok()?,
                _ => rest.push(f),
            }
        }
        e.match_ = rest.join(",");
        Some(e)
    }

    /// The entry without its counters and age: equal keys mean the same rule.
    pub fn key(&self) -> String {
        format!(
            "table={} priority={} cookie={} match=[{}] actions={}",
            self.table, self.priority, self.cookie, self.match_, self.actions
        )
    }

    fn match_fields(&self) -> Vec<&str> {
        self.match_.split(',').filter(|f| !f.is_empty()).collect()
    }

    /// The ECN value the entry is limited to (`nw_ecn=K`, the stale-flow guard's split of
    /// a restricting entry into four), or None when it matches every ECN value.
    pub fn ecn(&self) -> Option<u8> {
        self.match_fields()
            .iter()
            .find_map(|f| f.strip_prefix("nw_ecn=")?.parse().ok())
    }

    /// Whether the entry drops the IPv4 packets from `ip` it matches: an explicit
    /// `nw_src=ip` drop, or an IPv4-wide drop (either possibly limited to one ECN value).
    pub fn drops_ipv4_from(&self, ip: &str) -> bool {
        let src = format!("nw_src={ip}");
        let fields: Vec<&str> = self
            .match_fields()
            .into_iter()
            .filter(|f| !f.starts_with("nw_ecn="))
            .collect();
        let ipv4 = |f: &&str| matches!(*f, "ip" | "dl_type=0x0800" | "eth_type=0x0800");
        self.actions == "drop"
            && (fields.contains(&src.as_str()) || (fields.len() == 1 && ipv4(&fields[0])))
    }

    /// Whether the entry lets IPv4 packets from `ip` on (`nw_src=ip` and not a drop).
    pub fn passes_ipv4_from(&self, ip: &str) -> bool {
        let src = format!("nw_src={ip}");
        self.actions != "drop" && self.match_fields().contains(&src.as_str())
    }
}

/// Whether `flows` drop every IPv4 packet from `ip`: drop entries for it covering all four
/// ECN values (one entry without `nw_ecn`, or the guard's four twins).
pub fn drops_all_ipv4_from(flows: &[FlowEntry], ip: &str) -> bool {
    let mut covered = [false; 4];
    for f in flows.iter().filter(|f| f.drops_ipv4_from(ip)) {
        match f.ecn() {
            Some(e) => {
                if let Some(c) = covered.get_mut(usize::from(e)) {
                    *c = true;
                }
            }
            None => covered = [true; 4],
        }
    }
    covered.iter().all(|&c| c)
}

/// A background ping (a flood or a monitor); interrupted and reaped when dropped.
pub struct Pinger {
    child: Option<Child>,
    what: String,
}

/// What a ping run reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingResult {
    pub transmitted: u64,
    pub received: u64,
}

/// The Unix times of the replies in `ping -D` output (`[1796526347.198499] 64 bytes from`).
pub fn reply_times(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// Parses ping's "N packets transmitted, M received" summary line.
pub fn parse_ping(text: &str) -> Option<PingResult> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    Some(PingResult {
        transmitted: nums.next()??,
        received: nums.next()??,
    })
}

impl Pinger {
    fn spawn(host: usize, args: &[String], what: String) -> Pinger {
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("h{host}"), "ping"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Pinger {
            child: Some(child),
            what,
        }
    }

    /// Waits for ping to end by itself (its -w deadline bounds it) and returns its summary.
    pub fn finish(mut self) -> PingResult {
        self.collect()
    }

    /// Interrupts ping (SIGINT: it still prints its summary) and returns the summary.
    pub fn stop(mut self) -> PingResult {
        self.interrupt();
        self.collect()
    }

    /// Waits for ping to end by itself and returns everything it printed.
    pub fn finish_output(mut self) -> String {
        let child = self.child.take().expect("ping child");
        let out = child.wait_with_output().expect("wait for ping");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn interrupt(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child, which `ip netns exec` turned into ping.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGINT);
            }
        }
    }

    fn collect(&mut self) -> PingResult {
        let child = self.child.take().expect("ping child");
        let out = child.wait_with_output().expect("wait for ping");
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping(&text).unwrap_or_else(|| {
            panic!(
                "{}: no ping summary ({}):\n{text}{}",
                self.what,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

/// The testbed; torn down when dropped.
pub struct Testbed {
    opts: Options,
    script: PathBuf,
    // Released last, after the teardown in Drop.
    _exclusive: Exclusive,
}

/// The address of host `n`.
pub fn ip(n: usize) -> String {
    format!("10.0.0.{n}")
}

/// The MAC address of host `n` (set by testbed.sh).
pub fn mac(n: usize) -> String {
    format!("00:00:00:00:00:{n:02x}")
}

impl Testbed {
    /// Tears down leftovers, then brings the topology up (and waits for exclusive use).
    pub fn up(opts: Options) -> Testbed {
        Testbed::up_exclusive(exclusive(), opts)
    }

    /// Like `up`, for a caller that took exclusive use earlier (to start what the switch
    /// connects to before the switch, without racing other tests).
    pub fn up_exclusive(exclusive: Exclusive, opts: Options) -> Testbed {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/testbed.sh");
        let tb = Testbed {
            opts,
            script,
            _exclusive: exclusive,
        };
        let out = tb.script_cmd("up", &[]);
        assert!(
            out.status.success(),
            "tools/testbed.sh up failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tb.vswitchd_log()
        );
        tb
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn script_cmd(&self, verb: &str, extra_env: &[(&str, String)]) -> Output {
        let o = &self.opts;
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "60", "bash"])
            .arg(&self.script)
            .arg(verb)
            .stdin(Stdio::null());
        for var in ["NO_SFLOW", "NO_CONTROLLER", "BRIDGE", "DPID", "HEADER"] {
            cmd.env_remove(var);
        }
        cmd.env("RUN_DIR", RUN_DIR)
            .env("HOSTS", o.hosts.to_string())
            .env("SAMPLING", o.sampling.to_string())
            .env("POLLING", o.polling.to_string())
            .env("ECHO_REPLY_LIMIT_MS", ECHO_REPLY_LIMIT_MS.to_string());
        match o.sflow_port {
            Some(p) => cmd.env("SFLOW_TARGET", format!("127.0.0.1:{p}")),
            None => cmd.env("NO_SFLOW", "1"),
        };
        match o.controller {
            Some(p) => cmd.env("CONTROLLER", format!("tcp:127.0.0.1:{p}")),
            None => cmd.env("NO_CONTROLLER", "1"),
        };
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run tools/testbed.sh")
    }

    fn script_ok(&self, verb: &str) {
        let out = self.script_cmd(verb, &[]);
        assert!(
            out.status.success(),
            "tools/testbed.sh {verb} failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.vswitchd_log()
        );
    }

    fn db(&self) -> String {
        format!("--db=unix:{RUN_DIR}/db.sock")
    }

    fn mgmt(&self) -> String {
        format!("unix:{RUN_DIR}/s1.mgmt")
    }

    /// ovs-vsctl against the private database.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let mut all = vec![self.db(), "--timeout=10".to_owned()];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_ok(15, "ovs-vsctl", &all)
    }

    /// ovs-appctl to the running ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> String {
        let ctl = std::fs::read_dir(RUN_DIR)
            .expect("run dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("ovs-vswitchd.") && n.ends_with(".ctl")
                })
            })
            .expect("ovs-vswitchd control socket");
        let ctl = ctl.to_string_lossy().into_owned();
        let mut all = vec!["-t", ctl.as_str()];
        all.extend_from_slice(args);
        run_ok(15, "ovs-appctl", &all)
    }

    /// The tail of ovs-vswitchd's log, for failure messages.
    pub fn vswitchd_log(&self) -> String {
        let text = std::fs::read_to_string(Path::new(RUN_DIR).join("ovs-vswitchd.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- ovs-vswitchd.log (tail) ---\n{tail}")
    }

    /// `ping -c count` from host `from` to `to_ip`, 5 per second; true if all came back.
    pub fn ping(&self, from: usize, to_ip: &str, count: u32) -> bool {
        let r = self.ping_result(from, to_ip, count);
        r.transmitted == u64::from(count) && r.received == r.transmitted
    }

    /// `ping -c count` from host `from` to `to_ip`, 5 per second, waiting 1 s for the last.
    pub fn ping_result(&self, from: usize, to_ip: &str, count: u32) -> PingResult {
        self.spawn_ping(from, to_ip, count).finish()
    }

    /// A background `ping -c count` at 5 per second (a monitor).
    pub fn spawn_ping(&self, from: usize, to_ip: &str, count: u32) -> Pinger {
        // Replies end it early; unanswered, it gives up 1 s after the last request.
        let deadline = (count as f64 * 0.2).ceil() as u32 + 1;
        let args: Vec<String> = [
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            "-w",
            &deadline.to_string(),
            to_ip,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Pinger::spawn(from, &args, format!("ping h{from} -> {to_ip}"))
    }

    /// A steady background ping every 100 ms for `secs` seconds, each reply stamped with
    /// its Unix time (`ping -D`); `stop_output`/`finish_output` return what it printed.
    pub fn spawn_steady_ping(&self, from: usize, to_ip: &str, secs: u32) -> Pinger {
        let args: Vec<String> = [
            "-n",
            "-D",
            "-i",
            "0.1",
            "-W",
            "1",
            "-w",
            &secs.to_string(),
            to_ip,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Pinger::spawn(from, &args, format!("steady ping h{from} -> {to_ip}"))
    }

    /// A bounded ping flood from host `from`: at most `count` echo requests, `max_secs`
    /// seconds. Runs in the background; `finish()` waits for it.
    ///
    /// `ping -f` alone paces itself on the replies (100/s with none); a flooded victim that
    /// rate-limits its replies would slow it down, so requests go out every millisecond
    /// (`-i 0.001`, root only) with up to 20 in flight (`-l 20`): about 1000/s.
    pub fn spawn_flood(&self, from: usize, to_ip: &str, count: u32, max_secs: u32) -> Pinger {
        let args: Vec<String> = [
            "-n",
            "-q",
            "-f",
            "-i",
            "0.001",
            "-l",
            "20",
            "-c",
            &count.to_string(),
            "-w",
            &max_secs.to_string(),
            to_ip,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Pinger::spawn(from, &args, format!("flood h{from} -> {to_ip}"))
    }

    /// A bounded ping flood (see `spawn_flood`), waiting for its end.
    pub fn flood(&self, from: usize, to_ip: &str, count: u32, max_secs: u32) -> PingResult {
        self.spawn_flood(from, to_ip, count, max_secs).finish()
    }

    /// The switch's flow table, one line per entry (`ovs-ofctl -O OpenFlow13 dump-flows`).
    pub fn dump_flows(&self) -> Vec<String> {
        let mgmt = self.mgmt();
        run_ok(15, "ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", &mgmt])
            .lines()
            .filter(|l| l.contains(" actions="))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// The flow table, parsed.
    pub fn flows(&self) -> Vec<FlowEntry> {
        self.dump_flows()
            .iter()
            .map(|l| FlowEntry::parse(l).unwrap_or_else(|| panic!("unparsed flow: {l}")))
            .collect()
    }

    /// Per-port counters (`ovs-ofctl -O OpenFlow13 dump-ports`).
    pub fn port_stats(&self) -> Vec<PortStats> {
        let mgmt = self.mgmt();
        let text = run_ok(15, "ovs-ofctl", &["-O", "OpenFlow13", "dump-ports", &mgmt]);
        let num = |s: &str, key: &str| -> u64 {
            s.split(", ")
                .flat_map(|kv| kv.split(' '))
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.trim_end_matches(',').parse().ok())
                .unwrap_or(0)
        };
        let mut out: Vec<PortStats> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("port ") {
                let Some((port, rx)) = rest.split_once(": rx ") else {
                    continue;
                };
                out.push(PortStats {
                    port: port.trim().to_owned(),
                    rx_packets: num(rx, "pkts="),
                    tx_packets: 0,
                    rx_dropped: num(rx, "drop="),
                    tx_dropped: 0,
                });
            } else if let Some(tx) = line.strip_prefix("tx ") {
                if let Some(p) = out.last_mut() {
                    p.tx_packets = num(tx, "pkts=");
                    p.tx_dropped = num(tx, "drop=");
                }
            }
        }
        out
    }

    /// The datapath's cached flows (`ovs-appctl dpctl/dump-flows`), for diagnostics.
    pub fn datapath_flows(&self) -> String {
        self.appctl(&["dpctl/dump-flows"])
    }

    /// `ovs-ofctl -O OpenFlow13 <verb> s1` (dump-meters, meter-features, …): its output.
    pub fn ofctl(&self, verb: &str) -> String {
        let mgmt = self.mgmt();
        run_ok(15, "ovs-ofctl", &["-O", "OpenFlow13", verb, &mgmt])
    }

    /// The switch's meters: (id, packets in, packets dropped by its bands), from
    /// `ovs-ofctl -O OpenFlow13 meter-stats`.
    pub fn meter_stats(&self) -> Vec<(u32, u64, u64)> {
        let text = self.ofctl("meter-stats");
        let num = |s: &str, key: &str| -> Option<u64> {
            let at = s.find(key)? + key.len();
            let digits: String = s[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        // "meter:1 flow_count:1 packet_in_count:5012 byte_in_count:… duration:…s bands:"
        // then "0: packet_count:4800 byte_count:…" (one line per band).
        let mut out: Vec<(u32, u64, u64)> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let (Some(id), Some(pkts)) = (num(line, "meter:"), num(line, "packet_in_count:")) {
                out.push((id as u32, pkts, 0));
            } else if let (Some(last), Some(d)) = (out.last_mut(), num(line, "packet_count:")) {
                last.2 += d;
            }
        }
        out
    }

    /// Total packets received by the bridge on the hosts' ports.
    pub fn host_rx_packets(&self) -> u64 {
        self.port_stats()
            .iter()
            .filter(|p| p.port != "LOCAL")
            .map(|p| p.rx_packets)
            .sum()
    }

    /// (Re)configures sFlow to the options' port, 1-in-`sampling`, counters every `polling` s.
    pub fn set_sflow(&mut self, sampling: u32, polling: u32) {
        assert!(
            self.opts.sflow_port.is_some(),
            "testbed built without sFlow"
        );
        self.opts.sampling = sampling;
        self.opts.polling = polling;
        self.script_ok("sflow");
    }

    /// Stops sFlow export (the options keep the target for a later `set_sflow`).
    pub fn clear_sflow(&self) {
        let out = self.script_cmd("sflow", &[("NO_SFLOW", "1".to_owned())]);
        assert!(out.status.success(), "testbed.sh sflow (clear) failed");
    }

    /// Makes the switch connect to the controller now (no reconnection backoff).
    pub fn reconnect_controller(&self) {
        assert!(
            self.opts.controller.is_some(),
            "testbed built without controller"
        );
        self.script_ok("reconnect");
    }

    /// Whether the switch reports its controller connection up.
    pub fn controller_connected(&self) -> bool {
        self.vsctl(&["--columns=is_connected", "list", "controller"])
            .contains("true")
    }

    /// Polls `controller_connected` for up to `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.controller_connected() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The controller row, for failure messages.
    pub fn controller_status(&self) -> String {
        self.vsctl(&["list", "controller"])
    }

    /// Restarts ovs-vswitchd over the same database: the flow table is lost, the
    /// configuration (ports, controller, sFlow) kept, as after a switch reboot.
    pub fn restart_switch(&self) {
        self.script_ok("restart");
    }

    /// `ovs-appctl ofproto/trace` of an ICMP echo request from host `from` to host `to`.
    pub fn trace(&self, from: usize, to: usize) -> String {
        let flow = format!(
            "in_port={from},icmp,dl_src={},dl_dst={},nw_src={},nw_dst={},icmp_type=8,icmp_code=0",
            mac(from),
            mac(to),
            ip(from),
            ip(to)
        );
        self.appctl(&["ofproto/trace", "s1", &flow])
    }

    /// What the switch's own classifier does with an ICMP echo from host `from` to `to`.
    pub fn verdict(&self, from: usize, to: usize) -> Verdict {
        trace_verdict(&self.trace(from, to))
    }

    /// Whether the switch outputs an ICMP echo from host `from` to `to`.
    pub fn forwards(&self, from: usize, to: usize) -> bool {
        self.verdict(from, to) == Verdict::Output
    }

    /// Whether the switch drops an ICMP echo from host `from` to `to` by itself.
    pub fn drops(&self, from: usize, to: usize) -> bool {
        self.verdict(from, to) == Verdict::Drop
    }

    /// Polls `cond` every 20 ms; the time until it held, or None after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&Testbed) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if cond(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every ordered pair of hosts that do not ping each other (2 echoes each).
    pub fn failing_pairs(&self) -> Vec<(usize, usize)> {
        let n = self.opts.hosts;
        let pairs: Vec<(usize, usize)> = (1..=n)
            .flat_map(|a| (1..=n).filter(move |&b| b != a).map(move |b| (a, b)))
            .collect();
        // All at once: a failing pair costs its 1 s reply timeout only once.
        let pings: Vec<((usize, usize), Pinger)> = pairs
            .iter()
            .map(|&(a, b)| ((a, b), self.spawn_ping(a, &ip(b), 2)))
            .collect();
        pings
            .into_iter()
            .filter_map(|(pair, p)| {
                let r = p.finish();
                (r.received != 2).then_some(pair)
            })
            .collect()
    }
}

/// What a switch does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent out of at least one port.
    Output,
    /// Sent to the controller (PACKET_IN), not out of a port.
    Controller,
    /// Neither: dropped (sFlow's `sample(…)` does not count).
    Drop,
}

/// The verdict of `ofproto/trace` output, from its datapath actions.
pub fn trace_verdict(trace: &str) -> Verdict {
    let Some(actions) = trace
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Datapath actions:"))
    else {
        panic!("no datapath actions in trace:\n{trace}");
    };
    // Split at top-level commas; nested actions sit in parentheses.
    let (mut depth, mut start, mut items) = (0i32, 0usize, Vec::new());
    for (i, c) in actions.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&actions[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&actions[start..]);
    let items: Vec<&str> = items.iter().map(|s| s.trim()).collect();
    // A bare number is an output to that datapath port.
    if items
        .iter()
        .any(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
    {
        Verdict::Output
    } else if items
        .iter()
        .any(|s| s.starts_with("userspace(") && s.contains("controller("))
    {
        Verdict::Controller
    } else {
        Verdict::Drop
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let out = self.script_cmd("down", &[]);
        if !out.status.success() {
            loud(&format!(
                "tools/testbed.sh down failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
}

/// A tshark capture on `lo` of UDP to one port, written to a pcapng file.
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
    stderr: PathBuf,
}

impl Capture {
    /// Starts capturing UDP to 127.0.0.1:`port` on `lo` into `dir`, and waits until
    /// tshark is capturing. `max_secs` bounds the capture in any case.
    pub fn start(dir: &Path, port: u16, max_secs: u32) -> Capture {
        let file = dir.join(format!("sflow-{port}.pcapng"));
        let stderr = dir.join(format!("tshark-{port}.err"));
        let err = File::create(&stderr).expect("tshark stderr file");
        let child = Command::new("tshark")
            .args(["-q", "-n", "-i", "lo", "-f"])
            .arg(format!("udp dst port {port}"))
            .arg("-a")
            .arg(format!("duration:{max_secs}"))
            .arg("-w")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start tshark");
        let cap = Capture {
            child: Some(child),
            file,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cap.stderr_text().contains("Capturing on") {
            assert!(
                Instant::now() < deadline,
                "tshark did not start capturing: {}",
                cap.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cap
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the capture (SIGINT: tshark finishes the file) and returns the file.
    pub fn stop(mut self) -> PathBuf {
        let mut child = self.child.take().expect("tshark child");
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tshark ignored SIGINT: {}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT first: killing tshark outright would leave its dumpcap running.
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !matches!(c.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
