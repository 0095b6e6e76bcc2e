//! End to end against a real Open vSwitch (userspace datapath) with hosts h1..h3 in network
//! namespaces: the bridge's real sFlow into reflexd, tshark and sflow-parser as independent
//! decoders of the same datagrams, and the classic experiment — a ping flood from h1 detected from
//! sampled traffic and blocked at the switch while h2 and h3 keep talking.
//!
//! Needs root and Open vSwitch (`tools/test.sh` installs it). Without them every test here
//! skips with a loud message, or fails under CI (`CI=true`). The tests share one
//! machine-wide testbed and take turns whatever `--test-threads` says.
//!
//! The OpenFlow experiments print "SKIPPED: OpenFlow server not available" while reflexd
//! answers that it has no OpenFlow server and the switch cannot connect; once reflexd
//! serves OpenFlow they run, and a switch that does not connect fails them.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::ovs::{self, ip, loud, FlowEntry, Options, Pinger, Testbed};
use common::{free_tcp_port, free_udp_port, Daemon, CLASSIC_TOML};
use serde_json::Value;

/// The flooding host and its victim.
const H1: usize = 1;
const H2: usize = 2;
const H3: usize = 3;
/// Flood bounds: at most this many echo requests, for at most this many seconds.
const FLOOD_COUNT: u32 = 20_000;
const FLOOD_SECS: u32 = 5;
/// Generous functional bound from flood start to h1's traffic dropped by the switch.
const BLOCK_BOUND: Duration = Duration::from_secs(10);
/// The default threshold on `ddos`, frames per second.
const THRESHOLD: f64 = 100.0;

/// The classic experiment (examples/classic.toml: hosts start cleared), unpinned, with an
/// optional reaction hold.
fn config(hold: Option<f64>) -> String {
    let base = CLASSIC_TOML.replace("pin = true", "pin = false");
    assert_ne!(base, CLASSIC_TOML, "classic config lost `pin = true`");
    let Some(hold) = hold else {
        return base;
    };
    let reaction = "threshold = \"ddos\"\nmodule = \"auth\"\n";
    assert!(base.contains(reaction), "classic config lost its reaction");
    base.replace(reaction, &format!("{reaction}hold = {hold:?}\n"))
}

/// reflexd's command line: sFlow and OpenFlow on free loopback ports, one ingest worker.
fn reflexd_args(sflow: u16, openflow: u16) -> Vec<String> {
    vec![
        "--sflow".into(),
        format!("127.0.0.1:{sflow}"),
        "--openflow".into(),
        format!("127.0.0.1:{openflow}"),
        "--workers".into(),
        "1".into(),
    ]
}

fn start_reflexd(cfg: &str, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(cfg, &args)
}

/// `reflexctl flows ddos`: (key, rate) best first.
fn top_keys(d: &Daemon) -> Vec<(String, f64)> {
    let f = d.ctl_json(&["flows", "ddos", "-n", "10"]);
    f["top"]
        .as_array()
        .unwrap_or_else(|| panic!("flows ddos: {f}"))
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or("?").to_owned(),
                r["rate"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn rate(top: &[(String, f64)], key: &str) -> f64 {
    top.iter().find(|(k, _)| k == key).map_or(0.0, |(_, r)| *r)
}

/// Threshold events of `reflexctl events` for `key`.
fn events_for(d: &Daemon, key: &str) -> Vec<Value> {
    let e = d.ctl_json(&["events", "-n", "1000"]);
    e["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {e}"))
        .iter()
        .filter(|ev| ev["key"] == key)
        .cloned()
        .collect()
}

fn decode_errors(stats: &Value) -> u64 {
    stats["sflow"]["decode_errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no decode_errors in {stats}"))
        .values()
        .map(|v| v.as_u64().unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add)
}

fn sflow_counter(stats: &Value, name: &str) -> u64 {
    stats["sflow"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no sflow.{name} in {stats}"))
}

/// reflexd's stats once its flow-sample count has not moved for `quiet` (counter samples
/// keep coming every polling interval).
fn settled_stats(d: &Daemon, quiet: Duration) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = d.ctl_json(&["stats"]);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = d.ctl_json(&["stats"]);
        if now["sflow"]["flow_samples"] != last["sflow"]["flow_samples"] {
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        last = now;
        assert!(Instant::now() < deadline, "sFlow never went quiet: {last}");
    }
}

/// reflexd's stats once nothing at all has arrived for `quiet` (sFlow switched off).
fn silent_stats(d: &Daemon, quiet: Duration) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = d.ctl_json(&["stats"]);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = d.ctl_json(&["stats"]);
        if now["sflow"]["datagrams"] != last["sflow"]["datagrams"] {
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        last = now;
        assert!(Instant::now() < deadline, "sFlow never stopped: {last}");
    }
}

// ---------------------------------------------------------------------------------------
// a. Real sFlow from Open vSwitch into reflexd.

#[test]
fn ovs_sflow_ranks_and_detects_the_flooding_host() {
    let test = "ovs_sflow_ranks_and_detects_the_flooding_host";
    if !ovs::ready(test, &[]) {
        return;
    }
    let (sflow, openflow) = (free_udp_port(), free_tcp_port());
    let d = start_reflexd(&config(None), &reflexd_args(sflow, openflow));
    let tb = Testbed::up(Options::standalone().sflow(sflow, 10, 1));
    assert_eq!(
        tb.failing_pairs(),
        vec![],
        "a standalone bridge forwards between every pair\n{}",
        tb.vswitchd_log()
    );

    let before = settled_stats(&d, Duration::from_millis(300));
    let rx_before = tb.host_rx_packets();
    let flood = tb.spawn_flood(H1, &ip(H2), FLOOD_COUNT, FLOOD_SECS);
    // Rates are smoothed (the default t): read them while the flood runs.
    d.wait_for(
        Duration::from_secs(5),
        "10.0.0.1 above 3x the threshold",
        || (rate(&top_keys(&d), "10.0.0.1") > 3.0 * THRESHOLD).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let top = top_keys(&d);
    let sent = flood.finish();
    assert!(
        sent.transmitted >= 1000,
        "the flood hardly ran: {sent:?}\n{}",
        tb.vswitchd_log()
    );

    let h1 = rate(&top, "10.0.0.1");
    assert_eq!(top[0].0, "10.0.0.1", "the flooding host leads: {top:?}");
    for other in ["10.0.0.2", "10.0.0.3"] {
        assert!(
            rate(&top, other) < h1 / 5.0,
            "{other} stays well below the flooding host: {top:?}"
        );
    }
    loud(&format!(
        "{test}: flood h1->h2 {sent:?}; reflexd's ddos rates: {top:?}"
    ));

    // The threshold fired for the flooding host only (the victim rate-limits its replies).
    let events = events_for(&d, "10.0.0.1");
    let event = events
        .iter()
        .find(|e| e["threshold"] == "ddos")
        .unwrap_or_else(|| panic!("no ddos event for 10.0.0.1: {events:?}"));
    assert_eq!(event["agent"], "127.0.0.1", "{event}");
    // The detector fires on rate > value; a rate one ULP above it may read back as the value
    // itself through JSON (serde_json's default float parsing is not exact to the last bit).
    assert!(
        event["value"].as_f64().unwrap_or(0.0) >= THRESHOLD,
        "{event}"
    );
    for other in ["10.0.0.2", "10.0.0.3"] {
        assert_eq!(events_for(&d, other), Vec::<Value>::new(), "{other}");
    }

    // Counters: datagrams decoded without a single error; samples ≈ packets / 10.
    let after = settled_stats(&d, Duration::from_millis(1500));
    let rx = tb.host_rx_packets() - rx_before;
    let samples = sflow_counter(&after, "flow_samples") - sflow_counter(&before, "flow_samples");
    assert!(sflow_counter(&after, "datagrams") > 0, "{after}");
    assert!(sflow_counter(&after, "counter_samples") > 0, "{after}");
    assert_eq!(decode_errors(&after), 0, "{after}");
    assert_eq!(sflow_counter(&after, "lost_datagrams"), 0, "{after}");
    assert_eq!(sflow_counter(&after, "recv_errors"), 0, "{after}");
    let expected = rx as f64 / 10.0;
    assert!(
        (samples as f64) > expected / 2.0 && (samples as f64) < expected * 2.0,
        "{samples} flow samples for {rx} packets at 1-in-10"
    );
    let agents = after["agents"].as_array().expect("agents");
    assert!(
        agents.iter().any(|a| a["agent"] == "127.0.0.1"),
        "{agents:?}"
    );
}

#[test]
fn one_in_100_sampling_still_ranks_the_flood_and_nothing_breaks() {
    let test = "one_in_100_sampling_still_ranks_the_flood_and_nothing_breaks";
    if !ovs::ready(test, &[]) {
        return;
    }
    let (sflow, openflow) = (free_udp_port(), free_tcp_port());
    let mut d = start_reflexd(&config(None), &reflexd_args(sflow, openflow));
    let mut tb = Testbed::up(Options::standalone().sflow(sflow, 10, 1));
    // Reconfigured on the fly, as an operator would.
    tb.set_sflow(100, 1);
    let flood = tb.spawn_flood(H1, &ip(H2), FLOOD_COUNT, FLOOD_SECS);
    // One sample weighs 100 frames here: a single sampled echo reply reads as ~100/s for a
    // moment, so the flood must lead by more than that.
    d.wait_for(
        Duration::from_secs(8),
        "10.0.0.1 above 3x the threshold",
        || (rate(&top_keys(&d), "10.0.0.1") > 3.0 * THRESHOLD).then_some(()),
    );
    let top = top_keys(&d);
    let sent = flood.finish();
    assert_eq!(top[0].0, "10.0.0.1", "{top:?}");
    let stats = settled_stats(&d, Duration::from_millis(1500));
    assert!(sflow_counter(&stats, "flow_samples") > 0, "{stats}");
    assert_eq!(decode_errors(&stats), 0, "{stats}");
    assert!(d.ctl(&["ping"]).is_ok());
    assert!(
        matches!(d.child.try_wait(), Ok(None)),
        "reflexd exited: {}",
        d.log_text()
    );
    assert!(tb.ping(H2, &ip(H3), 2), "the bridge still forwards");
    loud(&format!(
        "{test}: flood {sent:?}; rates at 1-in-100: {top:?}"
    ));
}

// ---------------------------------------------------------------------------------------
// b. tshark decodes the same datagrams, and counts the same samples.

/// One captured datagram as tshark decodes it.
struct TsharkFrame {
    /// Sample types: 1 flow, 2 counters, 3 expanded flow, 4 expanded counters.
    types: Vec<u32>,
    malformed: bool,
    /// IPv4 sources of the sampled headers.
    sampled_sources: Vec<String>,
}

impl TsharkFrame {
    fn flow_samples(&self) -> u64 {
        self.types.iter().filter(|t| matches!(t, 1 | 3)).count() as u64
    }
    fn counter_samples(&self) -> u64 {
        self.types.iter().filter(|t| matches!(t, 2 | 4)).count() as u64
    }
}

fn tshark(file: &std::path::Path, port: u16, extra: &[&str]) -> String {
    let file = file.to_string_lossy();
    let decode = format!("udp.port=={port},sflow");
    let mut args = vec!["-n", "-r", &file, "-d", &decode];
    args.extend_from_slice(extra);
    ovs::run_ok(120, "tshark", &args)
}

fn tshark_frames(file: &std::path::Path, port: u16) -> Vec<TsharkFrame> {
    let fields = tshark(
        file,
        port,
        &[
            "-T",
            "fields",
            "-e",
            "sflow",
            "-e",
            "sflow_245.sampletype",
            "-e",
            "_ws.malformed",
            "-e",
            "ip.src",
        ],
    );
    fields
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let col = |i: usize| cols.get(i).copied().unwrap_or("");
            assert!(!col(0).is_empty(), "tshark did not decode as sFlow: {line}");
            TsharkFrame {
                types: col(1)
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.trim().parse().expect("sample type"))
                    .collect(),
                malformed: !col(2).is_empty(),
                // The first source is the datagram's own (127.0.0.1).
                sampled_sources: col(3).split(',').skip(1).map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// (flow samples, counter samples) of each datagram, as `sflow-parser` decodes them.
fn peer_decoder_counts(datagrams: &[Vec<u8>]) -> Vec<(u64, u64)> {
    use sflow_parser::models::SampleData;
    datagrams
        .iter()
        .enumerate()
        .map(|(i, dg)| {
            let parsed = sflow_parser::parse_datagram(dg)
                .unwrap_or_else(|e| panic!("sflow-parser rejects datagram {i}: {e:?}"));
            let (mut flows, mut counters) = (0, 0);
            for s in &parsed.samples {
                match s.sample_data {
                    SampleData::FlowSample(_) | SampleData::FlowSampleExpanded(_) => flows += 1,
                    SampleData::CountersSample(_) | SampleData::CountersSampleExpanded(_) => {
                        counters += 1
                    }
                    _ => {}
                }
            }
            (flows, counters)
        })
        .collect()
}

#[test]
fn tshark_decodes_the_same_sflow_and_counts_the_same_samples() {
    let test = "tshark_decodes_the_same_sflow_and_counts_the_same_samples";
    if !ovs::ready(test, &["tshark"]) {
        return;
    }
    let (sflow, openflow) = (free_udp_port(), free_tcp_port());
    let d = start_reflexd(&config(None), &reflexd_args(sflow, openflow));
    let mut tb = Testbed::up(Options::standalone().sflow(sflow, 10, 1));
    // The window: sFlow off, capture on, baseline; sFlow on, flood, sFlow off; silence.
    // Nothing else sends to this port, so both sides see exactly the same datagrams.
    tb.clear_sflow();
    let s0 = silent_stats(&d, Duration::from_millis(1500));
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = ovs::Capture::start(dir.path(), sflow, 60);
    tb.set_sflow(10, 1);
    let sent = tb.flood(H1, &ip(H2), FLOOD_COUNT, 3);
    tb.clear_sflow();
    let s1 = silent_stats(&d, Duration::from_millis(1500));
    let file = capture.stop();

    let frames = tshark_frames(&file, sflow);
    let delta = |name: &str| sflow_counter(&s1, name) - sflow_counter(&s0, name);
    let reflexd = (
        delta("datagrams"),
        delta("flow_samples"),
        delta("counter_samples"),
    );
    let sum = |f: fn(&TsharkFrame) -> u64| frames.iter().map(f).sum::<u64>();
    let by_tshark = (
        frames.len() as u64,
        sum(TsharkFrame::flow_samples),
        sum(TsharkFrame::counter_samples),
    );
    let datagrams = common::udp_payloads_in(&file, sflow);
    let peer = peer_decoder_counts(&datagrams);
    let by_peer = (
        peer.len() as u64,
        peer.iter().map(|p| p.0).sum::<u64>(),
        peer.iter().map(|p| p.1).sum::<u64>(),
    );
    let malformed = frames.iter().filter(|f| f.malformed).count();
    loud(&format!(
        "{test}: flood {sent:?}; (datagrams, flow samples, counter samples): reflexd \
         {reflexd:?}, tshark {by_tshark:?}, sflow-parser {by_peer:?}; tshark flags {malformed} \
         counter datagrams Malformed"
    ));
    assert!(
        by_tshark.1 > 10,
        "the capture holds the flood's sFlow: {sent:?}"
    );
    assert_eq!(decode_errors(&s1), 0, "{s1}");
    let kernel_drops = sflow_counter(&s1, "kernel_drops");
    assert_eq!(
        reflexd, by_tshark,
        "reflexd's counts equal tshark's for the same window (kernel drops: {kernel_drops})"
    );
    assert_eq!(reflexd, by_peer, "reflexd's counts equal sflow-parser's");
    // tshark 4.0 does not skip counter records it does not know (OVS's app_resources 2203,
    // ovs_dp 2207, OpenFlow port 1004/1005) and misreads what follows: Malformed. Flow
    // sample datagrams it decodes in full.
    for (i, f) in frames.iter().enumerate() {
        assert!(
            !f.malformed || f.counter_samples() > 0,
            "tshark: frame {} (flow samples only) is Malformed",
            i + 1
        );
        assert_eq!(
            (f.flow_samples(), f.counter_samples()),
            peer[i],
            "frame {}: tshark and sflow-parser disagree",
            i + 1
        );
    }
    // tshark's own decoding of the sampled headers shows the flood too.
    let from = |ip: &str| {
        frames
            .iter()
            .flat_map(|f| &f.sampled_sources)
            .filter(|s| *s == ip)
            .count()
    };
    assert!(
        from("10.0.0.1") > 5 * from("10.0.0.2").max(1),
        "sampled sources: h1 {} h2 {} h3 {}",
        from("10.0.0.1"),
        from("10.0.0.2"),
        from("10.0.0.3")
    );
}

// ---------------------------------------------------------------------------------------
// c. The classic experiment: reflexd as the switch's OpenFlow controller.

/// Why the OpenFlow experiments skip, once found (the same binary answers the same way).
static OPENFLOW_ABSENT: OnceLock<String> = OnceLock::new();

fn skip_openflow(test: &str, why: &str) {
    let msg = format!("SKIPPED: OpenFlow server not available — {test} (reflexd: {why})");
    assert!(
        std::env::var("REFLEX_E2E_OPENFLOW").as_deref() != Ok("require"),
        "{msg}; REFLEX_E2E_OPENFLOW=require makes that a failure"
    );
    loud(&msg);
}

/// reflexd as the controller of s1, connected, with sFlow from s1.
struct Experiment {
    // Field order: the testbed goes down before reflexd is killed.
    tb: Testbed,
    daemon: Option<Daemon>,
    cfg: String,
    args: Vec<String>,
    test: &'static str,
}

impl Experiment {
    /// Starts reflexd, then the testbed pointed at it (OVS backs off 1, 2, 4, 8 s after a
    /// refused connection, so the controller goes first). None: skipped.
    fn start(test: &'static str, sampling: u32, cfg: String) -> Option<Experiment> {
        if !ovs::ready(test, &[]) {
            return None;
        }
        if let Some(why) = OPENFLOW_ABSENT.get() {
            skip_openflow(test, why);
            return None;
        }
        // Exclusive use first: nothing of this test may reach another test's switch.
        let exclusive = ovs::exclusive();
        // Another test may have found out while this one waited.
        if let Some(why) = OPENFLOW_ABSENT.get() {
            skip_openflow(test, why);
            return None;
        }
        let (sflow, openflow) = (free_udp_port(), free_tcp_port());
        let args = reflexd_args(sflow, openflow);
        let d = start_reflexd(&cfg, &args);
        let tb = Testbed::up_exclusive(
            exclusive,
            Options::standalone()
                .sflow(sflow, sampling, 20)
                .controller(openflow),
        );
        if !tb.wait_connected(Duration::from_secs(5)) {
            match d.ctl(&["switches"]) {
                Err(e) if e.contains("no OpenFlow server") => {
                    let why = e.trim().to_owned();
                    skip_openflow(test, &why);
                    let _ = OPENFLOW_ABSENT.set(why);
                    return None;
                }
                answer => panic!(
                    "reflexd was started with --openflow 127.0.0.1:{openflow} and does not say \
                     it lacks an OpenFlow server (switches: {answer:?}), but s1 did not connect \
                     within 5 s\n{}\n{}\n--- reflexd log ---\n{}",
                    tb.controller_status(),
                    tb.vswitchd_log(),
                    d.log_text()
                ),
            }
        }
        Some(Experiment {
            tb,
            daemon: Some(d),
            cfg,
            args,
            test,
        })
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().expect("reflexd is running")
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- dump-flows ---\n{}\n{}\n--- reflexd log ---\n{}",
            self.tb.dump_flows().join("\n"),
            self.tb.vswitchd_log(),
            self.daemon
                .as_ref()
                .map_or("(not running)".into(), Daemon::log_text)
        )
    }

    /// SIGTERM to reflexd (it must exit cleanly); the state directory, to start it again.
    fn stop_reflexd(&mut self) -> tempfile::TempDir {
        let d = self.daemon.take().expect("reflexd is running");
        let (code, dir) = d.terminate();
        assert_eq!(code, Some(0), "reflexd exits cleanly on SIGTERM");
        dir
    }

    /// Starts reflexd again over `dir` (journal included), same configuration and ports.
    fn start_reflexd_again(&mut self, dir: tempfile::TempDir) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.daemon = Some(Daemon::start_in(dir, &self.cfg, &args));
    }

    fn set_state(&self, host: usize, state: &str) {
        self.d()
            .auth(&ip(host), state)
            .unwrap_or_else(|e| panic!("reflexctl event {host} {state}: {e}"));
    }

    fn state(&self, host: usize) -> String {
        let s = self.d().ctl_json(&["state", "-e", "auth", "-i", &ip(host)]);
        s["state"].as_str().unwrap_or("?").to_owned()
    }

    /// Authenticates h1..h3 and waits until all pairs ping (pings, not traces: a
    /// controller that learns MACs reactively forwards only once it has seen them).
    fn authenticate_all(&self) {
        for h in [H1, H2, H3] {
            self.set_state(h, "authenticated");
        }
        let mut failing = Vec::new();
        let ok = self
            .tb
            .wait_until(Duration::from_secs(10), |tb| {
                failing = tb.failing_pairs();
                failing.is_empty()
            })
            .is_some();
        assert!(
            ok,
            "pairs still not pinging 10 s after authentication: {failing:?}\n{}",
            self.diagnostics()
        );
    }

    /// Floods h2 from h1 until the switch drops h1's traffic; prints and returns the time
    /// from flood start to the rule visible in the switch, with the still running flood.
    fn flood_until_blocked(&self) -> (Pinger, Duration) {
        let start = Instant::now();
        let flood = self.tb.spawn_flood(H1, &ip(H2), FLOOD_COUNT, FLOOD_SECS);
        if self
            .tb
            .wait_until(BLOCK_BOUND, |tb| tb.drops(H1, H2))
            .is_none()
        {
            let sent = flood.stop();
            panic!(
                "h1 still forwarded {BLOCK_BOUND:?} after the flood started ({sent:?}); \
                 ddos rates {:?}, h1 is {}\n{}",
                top_keys(self.d()),
                self.state(H1),
                self.diagnostics()
            );
        }
        let took = start.elapsed();
        let stats = self.d().ctl_json(&["stats"]);
        loud(&format!(
            "{}: flood start -> h1 dropped by s1: {:.0} ms (1-in-{} sampling; reflexd \
             event latency {}, reaction latency {})",
            self.test,
            took.as_secs_f64() * 1e3,
            self.tb.options().sampling,
            stats["events"]["latency"],
            stats["events"]["reaction_latency"]
        ));
        (flood, took)
    }

    /// h1 cut off at the switch: its state, the table, the switch's classifier, pings.
    fn assert_h1_blocked(&self) {
        assert_eq!(self.state(H1), "clear", "{}", self.diagnostics());
        let flows = self.tb.flows();
        let h1 = ip(H1);
        assert!(
            !flows.iter().any(|f| f.passes_ipv4_from(&h1)),
            "a rule still passes h1's IPv4\n{}",
            self.diagnostics()
        );
        assert!(
            ovs::drops_all_ipv4_from(&flows, &h1),
            "no rule drops h1's IPv4\n{}",
            self.diagnostics()
        );
        let pings: Vec<(usize, Pinger)> = [H2, H3]
            .into_iter()
            .map(|to| (to, self.tb.spawn_ping(H1, &ip(to), 2)))
            .collect();
        for (to, p) in pings {
            assert!(self.tb.drops(H1, to), "s1 does not drop h1 -> h{to}");
            let r = p.finish();
            assert_eq!(r.received, 0, "h1 -> h{to} pings pass: {r:?}");
        }
    }

    /// h2 and h3 talk as before.
    fn assert_others_fine(&self) {
        assert_eq!(self.state(H2), "authenticated");
        assert_eq!(self.state(H3), "authenticated");
        assert!(self.tb.ping(H2, &ip(H3), 2), "{}", self.diagnostics());
        assert!(self.tb.ping(H3, &ip(H2), 2), "{}", self.diagnostics());
    }

    /// Re-authenticates h1 and checks that it pings again.
    fn readmit_h1(&self) {
        self.set_state(H1, "authenticated");
        assert!(
            self.tb
                .wait_until(Duration::from_secs(10), |tb| tb.ping(H1, &ip(H2), 1))
                .is_some(),
            "h1 does not ping h2 after re-authentication\n{}",
            self.diagnostics()
        );
        assert!(self.tb.ping(H1, &ip(H3), 2), "{}", self.diagnostics());
    }

    /// The table without counters, sorted.
    fn table(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.tb.flows().iter().map(FlowEntry::key).collect();
        keys.sort();
        keys
    }
}

/// A monitor ping covering the whole experiment; must lose nothing.
fn monitor(tb: &Testbed, from: usize, to: usize, secs: u32) -> Pinger {
    tb.spawn_ping(from, &ip(to), secs * 5)
}

fn assert_monitor_clean(p: Pinger, what: &str) {
    let r = p.stop();
    assert!(r.transmitted >= 5, "{what}: {r:?}");
    // Stopping it may catch one request in flight; nothing else may be lost.
    assert!(r.received + 1 >= r.transmitted, "{what} lost pings: {r:?}");
}

#[test]
fn classic_flood_from_h1_is_blocked_at_the_switch_and_readmitted() {
    let Some(x) = Experiment::start(
        "classic_flood_from_h1_is_blocked_at_the_switch_and_readmitted",
        10,
        config(None),
    ) else {
        return;
    };
    x.authenticate_all();
    let m23 = monitor(&x.tb, H2, H3, 30);
    let m32 = monitor(&x.tb, H3, H2, 30);
    let (flood, _) = x.flood_until_blocked();
    x.assert_h1_blocked();
    let sent = flood.finish();
    let events = events_for(x.d(), "10.0.0.1");
    assert!(
        events.iter().any(|e| e["threshold"] == "ddos"),
        "{events:?}"
    );
    assert_eq!(events_for(x.d(), "10.0.0.2"), Vec::<Value>::new());
    x.assert_others_fine();
    assert_monitor_clean(m23, "h2 -> h3 during the flood");
    assert_monitor_clean(m32, "h3 -> h2 during the flood");
    loud(&format!("{}: flood {sent:?}", x.test));
    x.readmit_h1();
    x.assert_others_fine();
}

/// Re-admissions of a host that never stops sending: each round floods h2 from h1 until
/// the switch drops h1, then h1 pings h2 every 100 ms across its re-admission, and a reply
/// must come back within READMIT_BOUND. Open vSwitch's userspace datapath before 3.1.3 can
/// keep such a host's drop cached for as long as it sends (see `lower::table`, the
/// stale-flow guard); ten rounds, since it is a matter of which megaflows exist.
///
/// Ignored while the defect is open: with the guard on it still failed once in about 70
/// rounds (round 9 of a run on 2026-12-06: the datapath kept a drop-path megaflow
/// `ipv4(src=10.0.0.1/255.255.255.254,tos=0/0x3)` dropping while the allow rule's counter
/// rose with it, i.e. its cache entry said "forward"). A flaky test would turn CI red at
/// random; run it with `cargo test --release --test e2e_ovs -- --ignored readmitted`.
#[test]
#[ignore = "re-admission on Open vSwitch 3.1 still sticks about once in 70 rounds (issue: Nothing forged gets in, item 6)"]
fn a_readmitted_host_that_keeps_sending_gets_through_every_time() {
    const ROUNDS: usize = 10;
    const READMIT_BOUND: f64 = 2.0;
    // The threshold re-arms 1 s after a key falls below it, so that each round fires anew.
    let cfg = config(None);
    assert!(
        cfg.contains("timeout = 10.0"),
        "classic config lost its threshold timeout"
    );
    let Some(x) = Experiment::start(
        "a_readmitted_host_that_keeps_sending_gets_through_every_time",
        10,
        cfg.replace("timeout = 10.0", "timeout = 1.0"),
    ) else {
        return;
    };
    x.authenticate_all();
    let (h2, mut late) = (ip(H2), Vec::new());
    for round in 1..=ROUNDS {
        let (flood, _) = x.flood_until_blocked();
        flood.stop();
        let steady = x.tb.spawn_steady_ping(H1, &h2, 4);
        std::thread::sleep(Duration::from_millis(500));
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        x.set_state(H1, "authenticated");
        let out = steady.finish_output();
        let through = ovs::reply_times(&out)
            .into_iter()
            .find(|&t| t > t0)
            .map(|t| t - t0);
        loud(&format!(
            "round {round}: h1 through {:?} s after its re-admission",
            through.map(|t| (t * 1e3).round() / 1e3)
        ));
        if through.is_none_or(|t| t > READMIT_BOUND) {
            late.push((round, through, out, x.tb.datapath_flows()));
        }
        // Below the threshold for more than its 1 s timeout: the next flood fires again.
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(
        late.is_empty(),
        "re-admitted h1 not through within {READMIT_BOUND} s while it kept sending: {:#?}\n{}",
        late,
        x.diagnostics()
    );
}

#[test]
fn a_timed_block_expires_by_itself() {
    let Some(x) = Experiment::start("a_timed_block_expires_by_itself", 10, config(Some(3.0)))
    else {
        return;
    };
    x.authenticate_all();
    let (flood, _) = x.flood_until_blocked();
    let blocked_at = Instant::now();
    flood.stop();
    x.assert_others_fine();
    x.tb.wait_until(Duration::from_secs(15), |tb| !tb.drops(H1, H2))
        .unwrap_or_else(|| panic!("the 3 s block never expired\n{}", x.diagnostics()));
    let held = blocked_at.elapsed();
    loud(&format!(
        "{}: 3 s hold; h1 forwarded again {:.1} s after the block was seen",
        x.test,
        held.as_secs_f64()
    ));
    assert!(
        held >= Duration::from_secs(1),
        "the block lifted after {held:?}, not after its 3 s hold"
    );
    assert_eq!(x.state(H1), "authenticated");
    assert!(x.tb.ping(H1, &ip(H2), 2), "{}", x.diagnostics());
    x.assert_others_fine();
}

#[test]
fn a_reflexd_restart_during_a_block_changes_nothing_on_the_switch() {
    let Some(mut x) = Experiment::start(
        "a_reflexd_restart_during_a_block_changes_nothing_on_the_switch",
        10,
        config(None),
    ) else {
        return;
    };
    x.authenticate_all();
    let (flood, _) = x.flood_until_blocked();
    flood.stop();
    x.assert_h1_blocked();
    let before = x.tb.flows();
    let table = x.table();

    // SIGTERM: a clean exit; the switch (fail-mode secure) keeps its flows meanwhile.
    let dir = x.stop_reflexd();
    assert_eq!(
        x.table(),
        table,
        "the switch's table changed while reflexd was away"
    );
    assert!(x.tb.drops(H1, H2), "h1 not dropped while reflexd was away");
    assert!(x.tb.ping(H2, &ip(H3), 2), "h2 -> h3 while reflexd was away");

    // Same state directory, same ports; the switch reconnects without backoff.
    x.start_reflexd_again(dir);
    x.tb.reconnect_controller();
    assert!(
        x.tb.wait_connected(Duration::from_secs(10)),
        "s1 did not reconnect to the restarted reflexd\n{}",
        x.diagnostics()
    );
    // Reconciliation must not touch the table: watch it for a while.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            x.table(),
            table,
            "the restarted reflexd changed the switch's table\n{}",
            x.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Not even deleted and re-added: every entry is older than before the restart.
    let after = x.tb.flows();
    for old in &before {
        let new = after
            .iter()
            .find(|f| f.key() == old.key())
            .expect("same table");
        assert!(
            new.duration_s >= old.duration_s,
            "entry re-installed by the restarted reflexd: {} (age {} s, was {} s)",
            new.key(),
            new.duration_s,
            old.duration_s
        );
    }
    x.assert_h1_blocked();
    x.assert_others_fine();
    x.readmit_h1();
}

#[test]
fn a_switch_restart_during_a_block_gets_the_same_table_back() {
    let Some(x) = Experiment::start(
        "a_switch_restart_during_a_block_gets_the_same_table_back",
        10,
        config(None),
    ) else {
        return;
    };
    x.authenticate_all();
    let (flood, _) = x.flood_until_blocked();
    flood.stop();
    let table = x.table();
    x.tb.restart_switch();
    assert!(
        x.tb.wait_connected(Duration::from_secs(10)),
        "the restarted switch did not reconnect\n{}",
        x.diagnostics()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while x.table() != table {
        assert!(
            Instant::now() < deadline,
            "the restarted switch did not get its table back: want\n{}\n{}",
            table.join("\n"),
            x.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    x.assert_h1_blocked();
    x.assert_others_fine();
    x.readmit_h1();
}

#[test]
fn one_in_100_sampling_still_blocks_the_flood() {
    // One sample weighs 100 frames here: the threshold's `min_samples` keeps a single
    // sampled echo reply from clearing the victim (it did, before min_samples).
    let Some(x) = Experiment::start(
        "one_in_100_sampling_still_blocks_the_flood",
        100,
        config(None),
    ) else {
        return;
    };
    x.authenticate_all();
    let m23 = monitor(&x.tb, H2, H3, 30);
    let (flood, _) = x.flood_until_blocked();
    x.assert_h1_blocked();
    flood.stop();
    x.assert_others_fine();
    assert_monitor_clean(m23, "h2 -> h3 during the flood");
}

/// Rate of the meter a flooding host is put through, packets per second.
const METER_RATE: u32 = 50;

/// The classic experiment with one more `auth` state, `limited` (IPv4 through a meter instead of
/// dropped), and the reaction putting a flooding host there instead of clearing it.
fn meter_config() -> String {
    let base = config(None);
    let clear = "clear = \"if_(match(eth_type=0x0800), drop, identity)\"\n";
    assert!(base.contains(clear), "classic config lost its clear state");
    let reaction = "threshold = \"ddos\"\nmodule = \"auth\"\nstate = \"clear\"\n";
    assert!(base.contains(reaction), "classic config lost its reaction");
    base.replace(
        clear,
        &format!(
            "{clear}limited = \"if_(match(eth_type=0x0800), meter({METER_RATE}), identity)\"\n"
        ),
    )
    .replace(
        reaction,
        "threshold = \"ddos\"\nmodule = \"auth\"\nstate = \"limited\"\n",
    )
}

#[test]
fn a_flood_can_be_rate_limited_with_a_meter_instead_of_dropped() {
    let Some(x) = Experiment::start(
        "a_flood_can_be_rate_limited_with_a_meter_instead_of_dropped",
        10,
        meter_config(),
    ) else {
        return;
    };
    // The userspace datapath has meters (OVS 3.1: up to 200000, drop bands, pktps).
    let features = x.tb.ofctl("meter-features");
    assert!(
        features.contains("max_meter:") && !features.contains("max_meter:0"),
        "s1 has no meters:\n{features}"
    );
    x.authenticate_all();
    let m23 = monitor(&x.tb, H2, H3, 20);
    let flood = x.tb.spawn_flood(H1, &ip(H2), FLOOD_COUNT, FLOOD_SECS);
    let start = Instant::now();
    let h1 = ip(H1);
    let metered = |tb: &Testbed| {
        tb.flows()
            .iter()
            .any(|f| f.match_.contains(&format!("nw_src={h1}")) && f.actions.contains("meter:"))
    };
    if x.tb.wait_until(BLOCK_BOUND, metered).is_none() {
        let sent = flood.stop();
        panic!(
            "no meter instruction for h1 {BLOCK_BOUND:?} after the flood started ({sent:?}); \
             h1 is {}\n{}",
            x.state(H1),
            x.diagnostics()
        );
    }
    let took = start.elapsed();
    assert_eq!(x.state(H1), "limited", "{}", x.diagnostics());
    let meters = x.tb.ofctl("dump-meters");
    assert!(
        meters.contains("meter=1")
            && meters.contains("pktps")
            && meters.contains(&format!("rate={METER_RATE}")),
        "dump-meters s1 does not show a {METER_RATE} pktps meter 1:\n{meters}"
    );
    let rule =
        x.tb.flows()
            .into_iter()
            .find(|f| f.match_.contains(&format!("nw_src={h1}")) && f.actions.contains("meter:"))
            .expect("the metered rule");
    assert!(
        !rule.actions.contains("drop"),
        "a meter, not a drop: {rule:?}"
    );
    let sent = flood.finish();
    // The meter let some of the flood through and dropped the rest.
    let stats = x.tb.meter_stats();
    let &(_, seen, dropped) = stats
        .iter()
        .find(|m| m.0 == 1)
        .unwrap_or_else(|| panic!("no stats for meter 1: {stats:?}\n{meters}"));
    let passed = seen.saturating_sub(dropped);
    loud(&format!(
        "{}: flood {sent:?}; h1 metered {:.0} ms after the flood started; meter 1 \
         ({METER_RATE} pktps) saw {seen} packets, dropped {dropped}, passed {passed}\n{meters}",
        x.test,
        took.as_secs_f64() * 1e3
    ));
    assert!(
        seen >= 500,
        "the flood hardly reached the meter: {stats:?} {sent:?}"
    );
    assert!(
        dropped * 10 >= seen * 8,
        "the meter throttles the flood (>= 80% dropped): {stats:?}"
    );
    // At most the rate over the flood, plus the burst and some slack for timing.
    let bound = u64::from(METER_RATE) * u64::from(FLOOD_SECS + 1) + 50;
    assert!(
        passed > 0 && passed <= bound,
        "{passed} packets passed the {METER_RATE} pktps meter in {FLOOD_SECS} s: {stats:?}"
    );
    // Not a block: at a normal rate h1 still gets through the meter.
    let r = x.tb.ping_result(H1, &ip(H3), 5);
    assert!(r.received >= 4, "h1 -> h3 at 5/s through the meter: {r:?}");
    x.assert_others_fine();
    assert_monitor_clean(m23, "h2 -> h3 during the flood");
    assert_eq!(events_for(x.d(), "10.0.0.2"), Vec::<Value>::new());
    x.readmit_h1();
    // Back to identity: the meter instruction is gone.
    assert!(
        x.tb.wait_until(Duration::from_secs(5), |tb| !metered(tb))
            .is_some(),
        "h1's rule still meters after re-authentication\n{}",
        x.diagnostics()
    );
}

// ---------------------------------------------------------------------------------------
// The harness's readers of OVS output (no root needed).

#[test]
fn dump_flows_lines_parse() {
    let e = FlowEntry::parse(
        " cookie=0x0, duration=12.345s, table=0, n_packets=7, n_bytes=686, \
         priority=65535,ip,nw_src=10.0.0.2 actions=goto_table:1",
    )
    .unwrap();
    assert_eq!((e.table, e.priority, e.n_packets), (0, 65535, 7));
    assert_eq!(e.match_, "ip,nw_src=10.0.0.2");
    assert_eq!(e.actions, "goto_table:1");
    assert!((e.duration_s - 12.345).abs() < 1e-9);
    assert!(e.passes_ipv4_from("10.0.0.2"));
    assert!(!e.passes_ipv4_from("10.0.0.1"));

    let drop_all = FlowEntry::parse(
        "cookie=0x1, duration=1s, table=0, n_packets=0, n_bytes=0, priority=1,ip actions=drop",
    )
    .unwrap();
    assert!(drop_all.drops_ipv4_from("10.0.0.1"));
    let e = FlowEntry::parse(
        "cookie=0x0, duration=0.7s, table=1, n_packets=4, n_bytes=280, \
         send_flow_rem priority=0 actions=NORMAL",
    )
    .unwrap();
    assert_eq!((e.table, e.priority, e.match_.as_str()), (1, 0, ""));
    assert!(!e.drops_ipv4_from("10.0.0.1"));
    let e = FlowEntry::parse(
        "cookie=0x0, duration=1s, table=0, n_packets=0, n_bytes=0, ip,nw_src=10.0.0.1 actions=drop",
    )
    .unwrap();
    assert_eq!(e.priority, 32768);
    assert!(e.drops_ipv4_from("10.0.0.1"));
    assert!(!e.drops_ipv4_from("10.0.0.3"));

    // The stale-flow guard's twins: a drop of h1's IPv4 only when all four ECN values are.
    let twin = |ecn: u8| {
        FlowEntry::parse(&format!(
            "cookie=0x0, duration=1s, table=0, n_packets=0, n_bytes=0, \
             priority=1,ip,nw_ecn={ecn} actions=drop"
        ))
        .unwrap()
    };
    let twins: Vec<FlowEntry> = (0..4).map(twin).collect();
    assert_eq!(twins[2].ecn(), Some(2));
    assert!(twins.iter().all(|t| t.drops_ipv4_from("10.0.0.1")));
    assert!(ovs::drops_all_ipv4_from(&twins, "10.0.0.1"));
    assert!(!ovs::drops_all_ipv4_from(&twins[..3], "10.0.0.1"));
    assert!(ovs::drops_all_ipv4_from(&[drop_all], "10.0.0.1"));
}

#[test]
fn traced_datapath_actions_and_ping_summaries_parse() {
    use ovs::{trace_verdict, Verdict};
    let sample =
        "sample(sample=10.0%,actions(userspace(pid=0,sFlow(vid=0,pcp=0,output=8),actions)))";
    let verdict =
        |actions: &str| trace_verdict(&format!("Megaflow: …\nDatapath actions: {actions}"));
    assert_eq!(verdict(&format!("{sample},3")), Verdict::Output);
    assert_eq!(verdict("2,3"), Verdict::Output);
    assert_eq!(verdict(sample), Verdict::Drop);
    assert_eq!(verdict("drop"), Verdict::Drop);
    assert_eq!(
        verdict(&format!(
            "{sample},userspace(pid=0,controller(reason=1,dont_send=0,continuation=0,\
             recirc_id=1,rule_cookie=0,controller_id=0,max_len=65535))"
        )),
        Verdict::Controller
    );
    let r = ovs::parse_ping(
        "--- 10.0.0.2 ping statistics ---\n\
         314 packets transmitted, 10 received, 96.8153% packet loss, time 4995ms\n",
    )
    .unwrap();
    assert_eq!((r.transmitted, r.received), (314, 10));
    let r =
        ovs::parse_ping("2 packets transmitted, 0 received, +2 errors, 100% packet loss").unwrap();
    assert_eq!((r.transmitted, r.received), (2, 0));
}
