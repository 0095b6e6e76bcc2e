//! `reflexd --metrics`: scraped over 127.0.0.1 while the daemon ingests the OVS capture; the
//! body must parse as Prometheus text (a small parser below) and its counters must move.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{free_tcp_port, free_udp_port, ovs_sflow_datagrams, Daemon};

fn config(port: u16) -> String {
    common::replay_config(port, 50.0, false, true)
}

/// Sends raw bytes, returns (status code, headers, body).
fn http(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head/body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}

/// A sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses the text exposition format strictly enough to catch mistakes: every sample line
/// is `name{labels} value`, every family has HELP then TYPE before its samples, no family
/// appears twice, summary/counter suffixes belong to their family.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (no, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", no + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !name_ok(name) || !helped.insert(name.to_owned()) {
                return Err(err("bad or repeated HELP"));
            }
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (name, kind) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            if current.as_deref() != Some(name) || typed.contains_key(name) {
                return Err(err("TYPE not right after its HELP"));
            }
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(err("unknown type"));
            }
            typed.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| err("unclosed labels"))?;
                let mut labels = Vec::new();
                let mut chars = inner.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    if !name_ok(&key) || chars.next() != Some('"') {
                        return Err(err("bad label"));
                    }
                    let mut val = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(c @ ('\\' | '"')) => val.push(c),
                                _ => return Err(err("bad escape")),
                            },
                            Some('"') => break,
                            Some(c) => val.push(c),
                            None => return Err(err("unterminated label value")),
                        }
                    }
                    labels.push((key, val));
                    match chars.next() {
                        Some(',') | None => {}
                        _ => return Err(err("junk after label")),
                    }
                }
                (name, labels)
            }
        };
        let family = current
            .as_deref()
            .ok_or_else(|| err("sample before any family"))?;
        let kind = typed.get(family).ok_or_else(|| err("sample before TYPE"))?;
        let belongs = name == family
            || (kind == "summary"
                && [format!("{family}_sum"), format!("{family}_count")].contains(&name.to_owned()));
        if !name_ok(name) || !belongs {
            return Err(err("sample outside its family"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            return Err(err("counter without _total"));
        }
        samples.push((name.to_owned(), labels, value));
    }
    Ok(samples)
}

fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn scrape(port: u16) -> Vec<Sample> {
    let (status, head, body) = http(port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn metrics_scraped_during_ingest_parse_and_move() {
    let udp = free_udp_port();
    let mport = free_tcp_port();
    let maddr = format!("127.0.0.1:{mport}");
    let d = Daemon::start(&config(udp), &["--metrics", &maddr]);

    let before = scrape(mport);
    assert_eq!(sum(&before, "reflex_sflow_datagrams_total", &[]), 0.0);
    assert_eq!(sum(&before, "reflex_ingest_workers", &[]), 2.0);
    assert_eq!(sum(&before, "reflex_openflow_wired", &[]), 1.0);
    assert_eq!(sum(&before, "reflex_openflow_switches", &[]), 0.0);

    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams = ovs_sflow_datagrams();
    let sender = std::thread::spawn(move || {
        for dg in &datagrams {
            tx.send_to(dg, ("127.0.0.1", udp)).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
        datagrams.len()
    });
    // Scrape while datagrams arrive: every body parses.
    while !sender.is_finished() {
        scrape(mport);
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = sender.join().unwrap() as f64;

    // Per-agent counts come with the workers' reports (every 100 ms), after the totals.
    let agent = |s: &[Sample]| {
        sum(
            s,
            "reflex_sflow_agent_datagrams_total",
            &[("agent", "127.0.0.1")],
        )
    };
    let after = d.wait_for(Duration::from_secs(10), "all datagrams in metrics", || {
        let s = scrape(mport);
        (sum(&s, "reflex_sflow_datagrams_total", &[]) == sent && agent(&s) > 0.0).then_some(s)
    });
    // Same numbers as `reflexctl stats`.
    let stats = d.ctl_json(&["stats"]);
    assert_eq!(
        sum(&after, "reflex_sflow_samples_total", &[("kind", "flow")]),
        stats["sflow"]["flow_samples"].as_f64().unwrap()
    );
    assert_eq!(
        sum(&after, "reflex_sflow_bytes_total", &[]),
        stats["sflow"]["bytes"].as_f64().unwrap()
    );
    assert_eq!(sum(&after, "reflex_sflow_decode_errors_total", &[]), 0.0);
    // Per worker: both label values present, adding up.
    let w0 = sum(&after, "reflex_sflow_datagrams_total", &[("worker", "0")]);
    let w1 = sum(&after, "reflex_sflow_datagrams_total", &[("worker", "1")]);
    assert_eq!(w0 + w1, sent);
    assert!(agent(&after) > 0.0);
    // The flood fired the threshold, the reaction cleared h1: events and an FSM change.
    let events = d.wait_for(Duration::from_secs(5), "event counted", || {
        let s = scrape(mport);
        (sum(&s, "reflex_events_delivered_total", &[]) >= 1.0).then_some(s)
    });
    assert!(sum(&events, "reflex_event_latency_seconds_count", &[]) >= 1.0);
    assert!(
        sum(
            &events,
            "reflex_event_latency_seconds",
            &[("quantile", "0.99")]
        ) > 0.0
    );
    assert!(sum(&events, "reflex_fsm_changes_total", &[]) >= 1.0);

    // A switch that connects is counted, and so are the flow-mods it is sent.
    let mut sw = reflex_testkit::switch::FakeSwitch::connect(&d.openflow, 7);
    sw.handshake(&[]);
    let sent_mods = sw.batch().len() as f64;
    assert!(sent_mods >= 1.0);
    let of = d.wait_for(Duration::from_secs(5), "switch in metrics", || {
        let s = scrape(mport);
        (sum(&s, "reflex_openflow_switches", &[]) == 1.0).then_some(s)
    });
    assert_eq!(sum(&of, "reflex_openflow_connections_total", &[]), 1.0);
    assert_eq!(sum(&of, "reflex_openflow_flow_mods_total", &[]), sent_mods);
    assert_eq!(sum(&of, "reflex_openflow_errors_total", &[]), 0.0);
    assert!(
        sum(&events, "reflex_uptime_seconds", &[]) >= sum(&before, "reflex_uptime_seconds", &[])
    );

    // Bad requests get 4xx, the endpoint keeps serving.
    assert_eq!(http(mport, b"GET /nope HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(mport, b"garbage\r\n\r\n").0, 400);
    assert_eq!(http(mport, b"DELETE /metrics HTTP/1.1\r\n\r\n").0, 405);
    let (status, _, body) = http(mport, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    // A client that connects and says nothing does not hold up a scrape.
    let _silent = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    let _partial = {
        let mut c = TcpStream::connect(("127.0.0.1", mport)).unwrap();
        c.write_all(b"GET /met").unwrap();
        c
    };
    scrape(mport);

    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn metrics_are_off_by_default_and_a_busy_port_fails_the_start() {
    let udp = free_udp_port();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            config(udp)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--control")
        .arg(dir.path().join("s"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--openflow")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen for metrics on tcp 127.0.0.1:{port}"
        )),
        "{err}"
    );
    let d = Daemon::start(&config(udp), &[]);
    assert!(!d.log_text().contains("Prometheus"));
}
