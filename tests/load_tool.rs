//! reflex-load over loopback: the generator against the drain and against a real reflexd,
//! the switch emulator against tiny in-test controllers, mitigate against a fake
//! controller that blocks on what it decodes, and the loopback-only guard.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, free_udp_port, Daemon};
use reflex::openflow::{
    frame, FlowMod, FlowStatsRequest, Hello, Match, Message, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, SwitchConfig,
};
use serde_json::Value;

fn load() -> Command {
    Command::new(common::workspace_bin("reflex-load"))
}

fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn run_ok(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run reflex-load");
    assert!(
        out.status.success(),
        "reflex-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

/// Starts `reflex-load drain` and waits for its "listening" line.
fn start_drain(port: u16, args: &[&str]) -> Child {
    let mut child = load()
        .args([
            "drain",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--json",
            "--quiet",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drain");
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("drain line");
    assert!(line.contains("listening on"), "{line}");
    child
}

#[test]
fn generator_and_drain_agree_on_every_datagram() {
    let port = free_udp_port();
    let drain = start_drain(port, &["--expect", "3000", "--duration", "30"]);
    let sent = run_ok(load().args([
        "sflow",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--count",
        "3000",
        "--rate",
        "5000",
        "--batch",
        "32",
        "--attack",
        "syn:at=0.1,rate=200000",
        "--json",
        "--quiet",
    ]));
    assert_eq!(sent["datagrams"], 3000, "{sent}");
    assert_eq!(sent["samples"], 3000 * 7);
    assert!(sent["attack_samples"].as_u64().unwrap() > 0, "{sent}");
    let out = drain.wait_with_output().expect("drain");
    assert!(out.status.success());
    let got = json_of(&out);
    assert_eq!(got["datagrams"], 3000, "{got}");
    assert_eq!(got["bytes"], sent["bytes"]);
    assert_eq!(got["truncated"], 0);
    assert!(got["cpu_ns_per_datagram"].as_f64().is_some());
}

#[test]
fn reflexd_counts_what_the_generator_sent() {
    let port = free_udp_port();
    let config = format!(
        r#"
[sflow]
listen = "127.0.0.1:{port}"
workers = 1
pin = false

[[flow]]
name = "ddos"
keys = "ipsource"
value = "frames"
filter = "outputifindex!=discard&direction=ingress"
t = 1.0
"#
    );
    let d = Daemon::start(&config, &[]);
    let sent = run_ok(load().args([
        "sflow",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--count",
        "2000",
        "--rate",
        "4000",
        "--agents",
        "3",
        "--sub-agents",
        "2",
        "--attack",
        "icmp:rate=50000000",
        "--counter-interval",
        "0.1",
        "--json",
        "--quiet",
    ]));
    assert_eq!(sent["datagrams"], 2000, "{sent}");
    assert!(sent["counter_samples"].as_u64().unwrap() > 0, "{sent}");
    let stats = d.wait_for(Duration::from_secs(10), "all datagrams counted", || {
        let s = d.ctl_json(&["stats"]);
        (s["sflow"]["datagrams"] == 2000).then_some(s)
    });
    assert_eq!(stats["sflow"]["flow_samples"], sent["samples"], "{stats}");
    assert_eq!(
        stats["sflow"]["counter_samples"], sent["counter_samples"],
        "{stats}"
    );
    assert_eq!(stats["sflow"]["bytes"], sent["bytes"], "{stats}");
    // Six exporters (3 agents x 2 sub-agents), each numbering its datagrams without gaps.
    assert_eq!(stats["sflow"]["lost_datagrams"], 0, "{stats}");
    assert_eq!(stats["sflow"]["agent_restarts"], 0, "{stats}");
    let errors = stats["sflow"]["decode_errors"].as_object().unwrap();
    assert!(errors.values().all(|v| v == 0), "{errors:?}");
    // The flood's source is among the top keys of the flow.
    d.wait_for(
        Duration::from_secs(5),
        "the attacker among top keys",
        || {
            let f = d.ctl_json(&["flows", "ddos"]);
            let top = f["top"].as_array()?;
            top.iter().any(|r| r["key"] == "172.16.0.1").then_some(())
        },
    );
}

#[test]
fn targets_outside_loopback_and_bad_arguments_are_refused() {
    for (args, needle) in [
        (
            vec!["sflow", "--target", "192.168.1.1:6343"],
            "only send to 127.0.0.0/8 or ::1",
        ),
        (
            vec!["sflow", "--target", "[2001:db8::1]:6343"],
            "only send to 127.0.0.0/8 or ::1",
        ),
        (
            vec!["switch", "--controller", "10.0.0.1:6653"],
            "only send to 127.0.0.0/8 or ::1",
        ),
        (
            vec![
                "mitigate",
                "--controller",
                "127.0.0.1:6653",
                "--target",
                "8.8.8.8:6343",
            ],
            "only send to 127.0.0.0/8 or ::1",
        ),
        (vec!["drain", "--listen", "0.0.0.0:0"], "127.0.0.0/8"),
        (vec!["sflow", "--attack", "ping"], "unknown attack kind"),
        (vec!["sflow", "--attack", "icmp:rate=fast"], "rate"),
        (vec!["sflow", "--duration", "0"], "duration must be > 0"),
        (vec!["sflow", "--duration", "1e9"], "at most 3600"),
        (vec!["sflow", "--samples", "0"], "samples per datagram"),
        (vec!["sflow", "--zipf-s=-1"], "exponent"),
    ] {
        let out = load().args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Reads whole OpenFlow messages from a blocking stream.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, xid: u32, m: Message) {
        let mut out = Vec::new();
        m.emit(xid, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// The next message, or None when the connection ends.
    fn recv(&mut self) -> Option<(u32, Message)> {
        loop {
            if let Some((_, n)) = frame(&self.buf).unwrap() {
                let m = Message::parse(&self.buf[..n]).unwrap();
                self.buf.drain(..n);
                return Some(m);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Messages until one with `xid` (returned last).
    fn until(&mut self, xid: u32) -> Vec<(u32, Message)> {
        let mut got = Vec::new();
        while let Some(m) = self.recv() {
            let done = m.0 == xid;
            got.push(m);
            if done {
                break;
            }
        }
        got
    }
}

fn multipart(body: MultipartRequestBody) -> Message {
    Message::MultipartRequest(MultipartRequest { flags: 0, body })
}

fn block(addr: Ipv4Addr) -> FlowMod {
    FlowMod::add(
        0,
        300,
        Match::builder().ipv4_src(addr).build().unwrap(),
        vec![],
    )
}

#[test]
fn emulated_switches_handshake_answer_and_record_flow_mods() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flow-mods.jsonl");
    let tool = load()
        .args([
            "switch",
            "--controller",
            &addr.to_string(),
            "--switches",
            "2",
            "--ports",
            "3",
            "--table-flows",
            "5",
            "--duration",
            "20",
            "--json",
            "--quiet",
            "--record",
        ])
        .arg(&record)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dpids = Vec::new();
    for _ in 0..2 {
        let (stream, _) = listener.accept().unwrap();
        let mut c = Peer::new(stream);
        assert!(matches!(c.recv(), Some((_, Message::Hello(_)))));
        c.send(1, Message::Hello(Hello::v13()));
        c.send(2, Message::FeaturesRequest);
        c.send(
            3,
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: 0xffff,
            }),
        );
        c.send(4, multipart(MultipartRequestBody::PortDesc));
        c.send(5, multipart(MultipartRequestBody::Desc));
        c.send(
            6,
            multipart(MultipartRequestBody::Flow(FlowStatsRequest::all())),
        );
        c.send(7, Message::EchoRequest(b"ping".to_vec()));
        c.send(8, Message::FlowMod(block(Ipv4Addr::new(172, 16, 0, 1))));
        c.send(9, Message::GetConfigRequest);
        c.send(10, Message::BarrierRequest);
        let replies = c.until(10);
        let xids: Vec<u32> = replies.iter().map(|r| r.0).collect();
        assert_eq!(xids, [2, 4, 5, 6, 7, 9, 10], "{replies:?}");
        let Message::FeaturesReply(f) = &replies[0].1 else {
            panic!("{replies:?}")
        };
        dpids.push(f.datapath_id);
        assert!(
            matches!(&replies[1].1, Message::MultipartReply(r) if matches!(&r.body, MultipartReplyBody::PortDesc(p) if p.len() == 3))
        );
        assert!(
            matches!(&replies[3].1, Message::MultipartReply(r) if matches!(&r.body, MultipartReplyBody::Flow(f) if f.len() == 5))
        );
        assert_eq!(replies[4].1, Message::EchoReply(b"ping".to_vec()));
        assert!(matches!(&replies[5].1, Message::GetConfigReply(c) if c.miss_send_len == 0xffff));
        assert_eq!(replies[6].1, Message::BarrierReply);
        // The flow-mod is in the switch's table now: 6 entries.
        c.send(
            11,
            multipart(MultipartRequestBody::Flow(FlowStatsRequest::all())),
        );
        let r = c.until(11);
        assert!(
            matches!(&r[0].1, Message::MultipartReply(m) if matches!(&m.body, MultipartReplyBody::Flow(f) if f.len() == 6))
        );
        // Dropping the connection ends that switch.
    }
    dpids.sort();
    assert_eq!(dpids, [1, 2]);
    let out = tool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json_of(&out);
    assert_eq!(summary["connected"], 2, "{summary}");
    assert_eq!(summary["flow_mods"], 2);
    assert_eq!(summary["counters"]["barriers"], 2);
    assert_eq!(summary["closed"].as_array().unwrap().len(), 2);
    let lines = std::fs::read_to_string(&record).unwrap();
    let recs: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r["xid"] == 8 && r["command"] == "Add"));
    assert!(recs[0]["at_ms"].as_f64().is_some());
}

/// A controller answering every PACKET_IN with a FLOW_MOD, until the switch leaves.
fn cbench_controller(listener: TcpListener) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut c = Peer::new(stream);
        c.send(1, Message::Hello(Hello::v13()));
        c.send(2, Message::FeaturesRequest);
        let mut answered = 0;
        while let Some((xid, m)) = c.recv() {
            if let Message::PacketIn(pi) = m {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&pi.data[6..12]);
                let fm = FlowMod::add(
                    0,
                    10,
                    Match::builder().eth_src(mac).build().unwrap(),
                    vec![],
                );
                let mut out = Vec::new();
                Message::FlowMod(fm).emit(xid, &mut out);
                if c.stream.write_all(&out).is_err() {
                    break;
                }
                answered += 1;
            }
        }
        answered
    })
}

#[test]
fn cbench_modes_count_responses_and_round_trips() {
    for mode in ["throughput", "latency"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let controller = cbench_controller(listener);
        let summary = run_ok(load().args([
            "switch",
            "--controller",
            &addr.to_string(),
            "--mode",
            mode,
            "--duration",
            "1.5",
            "--macs",
            "1000",
            "--json",
            "--quiet",
        ]));
        let answered = controller.join().unwrap();
        assert!(answered > 0, "{mode}");
        let responses = summary["responses"].as_u64().unwrap();
        assert!(responses > 0 && responses <= answered, "{mode}: {summary}");
        if mode == "latency" {
            assert!(
                summary["rtt_us"]["count"].as_u64().unwrap() > 0,
                "{summary}"
            );
        } else {
            assert!(summary["counters"]["packet_ins_sent"].as_u64().unwrap() >= responses);
        }
    }
}

#[test]
fn mitigate_without_a_controller_fails_clearly() {
    let port = free_tcp_port();
    let out = load()
        .args([
            "mitigate",
            "--controller",
            &format!("127.0.0.1:{port}"),
            "--target",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--connect-timeout",
            "0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no OpenFlow controller accepted a connection"),
        "{err}"
    );

    // Accepting TCP without speaking OpenFlow is not enough either.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let out = load()
        .args([
            "mitigate",
            "--controller",
            &addr.to_string(),
            "--target",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--connect-timeout",
            "0.5",
        ])
        .output()
        .unwrap();
    drop(silent);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("completed no OpenFlow handshake"), "{err}");
}

/// A stand-in for reflexd: decodes sFlow with the library, counts samples per IPv4 source
/// and sends a blocking flow-mod the first time a source reaches `samples` samples.
fn fake_controller(listener: TcpListener, sflow: UdpSocket, samples: u32, until: Instant) {
    let (stream, _) = listener.accept().unwrap();
    let mut c = Peer::new(stream);
    c.send(1, Message::Hello(Hello::v13()));
    c.send(1000, Message::FeaturesRequest);
    let replies = c.until(1000);
    assert!(matches!(
        replies.last(),
        Some((_, Message::FeaturesReply(_)))
    ));
    sflow
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut counts = std::collections::HashMap::<Ipv4Addr, u32>::new();
    let mut buf = [0u8; 9216];
    let mut xid = 100;
    while Instant::now() < until {
        let Ok(n) = sflow.recv(&mut buf) else {
            continue;
        };
        let d = reflex::sflow::parse_datagram(&buf[..n]).unwrap();
        for s in d.samples() {
            let Ok(reflex::sflow::Sample::Flow(f)) = s else {
                continue;
            };
            for r in f.records() {
                let Ok(reflex::sflow::FlowRecord::SampledHeader(h)) = r else {
                    continue;
                };
                let k = reflex::packet::parse_sampled_header(h.protocol, h.header);
                if let Some(std::net::IpAddr::V4(src)) = k.ip_src {
                    let n = counts.entry(src).or_default();
                    *n += 1;
                    if *n == samples {
                        xid += 1;
                        c.send(xid, Message::FlowMod(block(src)));
                    }
                }
            }
        }
    }
}

#[test]
fn mitigate_measures_attack_to_block_latency() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let controller = listener.local_addr().unwrap();
    let sflow = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sflow.local_addr().unwrap();
    // A uniform background over 100 k sources: no background source reaches 20 samples.
    let fake = std::thread::spawn(move || {
        fake_controller(
            listener,
            sflow,
            20,
            Instant::now() + Duration::from_secs(25),
        )
    });
    let summary = run_ok(load().args([
        "mitigate",
        "--controller",
        &controller.to_string(),
        "--target",
        &target.to_string(),
        "--attacks",
        "3",
        "--attack-rate",
        "50000",
        "--attack-duration",
        "1.5",
        "--gap",
        "0.2",
        "--warmup",
        "0.3",
        "--rate",
        "500",
        "--threshold",
        "100",
        "--distribution",
        "uniform",
        "--sources",
        "100000",
        "--json",
        "--quiet",
    ]));
    assert_eq!(summary["attacks"], 3, "{summary}");
    assert_eq!(summary["blocked"], 3, "{summary}");
    let first = &summary["from_first_ms"];
    assert_eq!(first["count"], 3);
    assert!(first["p50"].as_f64().unwrap() > 0.0);
    for a in summary["per_attack"].as_array().unwrap() {
        assert_eq!(a["blocked"], true);
        assert!(
            a["from_first_ms"].as_f64().unwrap() >= a["from_decision_ms"].as_f64().unwrap_or(0.0)
        );
    }
    assert_eq!(summary["per_attack"][1]["source"], "172.16.0.2");
    drop(fake);
}
