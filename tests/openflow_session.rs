//! Switch sessions through the real reflexd: fake switches over loopback TCP get the
//! handshake, the compiled policy of the classic experiment (examples/classic.toml: hosts
//! start cleared, so authenticating one is one flow-mod), minimal deltas with barriers, and
//! reconciliation that sends only what differs.

mod common;

use std::time::Duration;

use common::{free_tcp_port, free_udp_port, Daemon, CLASSIC_TOML};
use reflex::openflow::table::{diff, Desired, EntryKey, FlowTable};
use reflex::openflow::{port, Action, FlowModCommand, Hello, Instruction, Match, Message};
use reflex_testkit::switch::{entry, FakeSwitch};

/// The classic experiment without the stale-flow guard: these tests count the classic
/// three-entry table's flow-mods (the guard's ECN twins are tested in lower_pipeline and
/// on Open vSwitch).
fn config_text() -> String {
    let text = CLASSIC_TOML.replace("stale_flow_guard = true", "stale_flow_guard = false");
    assert!(text.contains("stale_flow_guard = false"));
    text
}

fn start() -> Daemon {
    Daemon::start(
        &config_text(),
        &[
            "--sflow",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--workers",
            "1",
        ],
    )
}

/// The desired table of the classic experiment's policy with no host authenticated.
fn classic_desired() -> Desired {
    let config = reflex::config::Config::from_toml(&config_text(), "classic").expect("config");
    let engine = config.build().expect("policy").policy;
    let (d, errors) = reflex::lower::table::desired_table(
        &engine.rules(),
        &engine.meters(),
        // As the daemon lowers it: with the stale-flow guard of its configuration.
        &reflex::lower::translate::TranslateConfig {
            stale_flow_guard: config.openflow.stale_flow_guard,
            ..Default::default()
        },
    );
    assert!(errors.is_empty());
    d
}

fn switches(d: &Daemon) -> Vec<serde_json::Value> {
    d.ctl_json(&["switches"])["switches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the switch with `dpid` has no barrier outstanding and is in sync.
fn wait_in_sync(d: &Daemon, dpid: &str) -> serde_json::Value {
    d.wait_for(Duration::from_secs(20), "switch in sync", || {
        switches(d)
            .into_iter()
            .find(|s| s["dpid"] == dpid && s["in_sync"] == true && s["pending_barriers"] == 0)
    })
}

fn auth(d: &Daemon, state: &str) {
    d.auth("10.0.0.1", state).expect("event");
}

fn host_rule() -> EntryKey {
    EntryKey::new(
        0,
        65535,
        &Match::builder()
            .ipv4_src(std::net::Ipv4Addr::new(10, 0, 0, 1))
            .build()
            .expect("match"),
    )
}

#[test]
fn handshake_default_policy_and_an_auth_delta() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 1);
    sw.handshake(&[]);
    assert_eq!(sw.config().miss_send_len, 0xffff);
    let mods = sw.batch();
    assert!(mods.iter().all(|(_, f)| f.command == FlowModCommand::Add));
    let desired = classic_desired();
    assert_eq!(mods.len(), desired.flows.len());
    assert_eq!(
        sw.table(),
        desired.flows,
        "the initial table is the compiled classic policy"
    );
    assert!(sw.echo().is_empty(), "nothing beyond the batch");

    let s = wait_in_sync(&d, "0000000000000001");
    assert_eq!(s["ports"].as_array().map(Vec::len), Some(3));
    assert_eq!(s["flow_mods"], 3);
    assert_eq!(s["flow_mods_confirmed"], 3);
    assert_eq!(s["errors"], 0);

    // Authenticating h1 adds exactly its rule, then a barrier.
    auth(&d, "authenticated");
    let mods = sw.batch();
    assert_eq!(mods.len(), 1, "{mods:?}");
    let f = &mods[0].1;
    assert_eq!(f.command, FlowModCommand::Add);
    assert_eq!(
        EntryKey::new(f.table_id, f.priority, &f.match_),
        host_rule()
    );
    assert_eq!(f.instructions, vec![Instruction::GotoTable(1)]);
    assert!(sw.echo().is_empty());

    // The same event again changes nothing on the wire.
    auth(&d, "authenticated");
    assert!(sw.echo().is_empty());

    // Clearing it again is one strict delete.
    auth(&d, "clear");
    let mods = sw.batch();
    assert_eq!(mods.len(), 1);
    assert_eq!(mods[0].1.command, FlowModCommand::DeleteStrict);
    assert_eq!(sw.table(), desired.flows);

    // Control views.
    wait_in_sync(&d, "0000000000000001");
    let t = d.ctl_json(&["table", "1"]);
    assert_eq!(t["in_sync"], true, "{t}");
    assert_eq!(t["installed"], t["desired"]);
    let text = d.ctl(&["table", "0x1"]).expect("table");
    assert!(
        text.contains(" table=0, priority=1,ip actions=drop"),
        "{text}"
    );
    assert!(
        text.contains(" table=1, priority=0 actions=NORMAL"),
        "{text}"
    );
    let text = d.ctl(&["switches"]).expect("switches");
    assert!(text.contains("0000000000000001"), "{text}");
    assert!(d.ctl(&["table", "99"]).is_err());
    let stats = d.ctl_json(&["stats"]);
    assert_eq!(stats["openflow"]["ready"], 1, "{stats}");
    assert_eq!(stats["openflow"]["flow_mods"], 5);
}

#[test]
fn a_reconnecting_switch_gets_only_what_differs() {
    let d = start();
    let desired = classic_desired();
    let goto1 = vec![Instruction::GotoTable(1)];
    let any0 = EntryKey::new(0, 0, &Match::any());
    let ip = EntryKey::new(0, 1, &Match::builder().eth_type(0x0800).build().unwrap());
    let foreign = EntryKey::new(
        3,
        7,
        &Match::builder()
            .tcp_dst(22)
            .eth_type(0x0800)
            .build()
            .unwrap(),
    );
    let normal = vec![Instruction::ApplyActions(vec![Action::output(
        port::NORMAL,
    )])];
    // Right: table-0 catch-all. Wrong: the IPv4 drop forwards. Missing: table 1.
    // Foreign: an ssh rule in table 3.
    let installed = vec![
        entry(&any0, goto1.clone()),
        entry(&ip, normal.clone()),
        entry(&foreign, normal.clone()),
    ];
    let expected = diff(&FlowTable::from_stats(&installed), &desired.flows).len();
    assert_eq!(expected, 3);

    let mut sw = FakeSwitch::connect(&d.openflow, 2);
    sw.handshake(&installed);
    let mods = sw.batch();
    let mut commands: Vec<(FlowModCommand, u8)> =
        mods.iter().map(|(_, f)| (f.command, f.table_id)).collect();
    commands.sort();
    assert_eq!(
        commands,
        vec![
            (FlowModCommand::Add, 1),
            (FlowModCommand::ModifyStrict, 0),
            (FlowModCommand::DeleteStrict, 3),
        ]
    );
    assert!(
        !mods
            .iter()
            .any(|(_, f)| f.command == FlowModCommand::Delete),
        "never a wipe"
    );
    assert_eq!(sw.table(), desired.flows);
    assert!(sw.echo().is_empty());

    // Drop the connection and come back with the now-right table: nothing to send.
    let table: Vec<_> = sw
        .table()
        .iter()
        .map(|(k, i)| entry(k, i.to_vec()))
        .collect();
    drop(sw);
    let mut sw = FakeSwitch::connect(&d.openflow, 2);
    sw.handshake(&table);
    assert!(sw.echo().is_empty(), "a reconciled switch gets no flow-mod");
}

#[test]
fn two_switches_both_follow_the_policy_and_garbage_closes_only_its_session() {
    let d = start();
    let desired = classic_desired();
    let mut a = FakeSwitch::connect(&d.openflow, 0xa);
    let mut b = FakeSwitch::connect(&d.openflow, 0xb);
    a.handshake(&[]);
    b.handshake(&[]);
    assert_eq!(a.batch().len(), desired.flows.len());
    assert_eq!(b.batch().len(), desired.flows.len());

    // A third connection that speaks garbage is closed; the others are not disturbed.
    let mut g = FakeSwitch::connect(&d.openflow, 0xc);
    g.send(1, &Message::Hello(Hello::v13()));
    g.send_raw(&[4, 0, 0, 2, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    // Read until the controller closes it (recv panics if it never does).
    while g.recv().is_some() {}

    auth(&d, "authenticated");
    for sw in [&mut a, &mut b] {
        let mods = sw.batch();
        assert_eq!(mods.len(), 1);
        let f = &mods[0].1;
        assert_eq!(
            EntryKey::new(f.table_id, f.priority, &f.match_),
            host_rule()
        );
        assert!(sw.echo().is_empty());
    }
    wait_in_sync(&d, "000000000000000a");
    wait_in_sync(&d, "000000000000000b");
    let list = switches(&d);
    assert_eq!(list.len(), 2, "the garbage session is gone: {list:?}");
    assert!(d.log_text().contains("broken framing"), "{}", d.log_text());
}

#[test]
fn a_switch_without_openflow_13_is_told_and_closed() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 5);
    sw.send(
        1,
        &Message::Hello(Hello {
            version: 1,
            elements: vec![],
        }),
    );
    let mut got_error = false;
    while let Some((_, m)) = sw.recv() {
        if let Message::Error(e) = m {
            got_error = e.err_type == 0;
        }
    }
    assert!(got_error, "OFPET_HELLO_FAILED before closing");
    assert!(
        d.log_text().contains("no common version"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_rejected_flow_mod_is_reported_against_its_entry() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 7);
    sw.handshake(&[]);
    let mods = sw.batch_rejecting(|f| f.table_id == 1);
    assert_eq!(mods.len(), 3);
    let s = d.wait_for(Duration::from_secs(20), "error counted", || {
        switches(&d)
            .into_iter()
            .find(|s| s["flow_mod_errors"] == 1 && s["pending_barriers"] == 0)
    });
    let e = &s["recent_errors"][0];
    assert_eq!(e["op"], "add");
    assert_eq!(e["type"], "OFPET_FLOW_MOD_FAILED");
    assert!(
        e["entry"]
            .as_str()
            .unwrap_or("")
            .contains("table=1, priority=0"),
        "{e}"
    );
    assert_eq!(s["flow_mods_confirmed"], 2);
    assert_eq!(s["in_sync"], false);
    let t = d.ctl_json(&["table", "7"]);
    assert_eq!(t["differences"].as_array().map(Vec::len), Some(1), "{t}");
}

#[test]
fn a_busy_openflow_port_is_a_clear_error() {
    let port = free_tcp_port();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--control")
        .arg(dir.path().join("ctl.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--sflow", &format!("127.0.0.1:{}", free_udp_port())])
        .args(["--workers", "1", "--openflow", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run reflexd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen for OpenFlow on tcp 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn a_silent_switch_is_probed_with_echo_then_dropped() {
    let config = reflex::config::DEFAULT_TOML.replace(
        "echo_interval = 5.0\necho_timeout = 15.0",
        "echo_interval = 0.2\necho_timeout = 0.6",
    );
    assert_ne!(config, reflex::config::DEFAULT_TOML);
    let d = Daemon::start(
        &config,
        &[
            "--sflow",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--workers",
            "1",
        ],
    );
    let mut sw = FakeSwitch::connect(&d.openflow, 9);
    sw.handshake(&[]);
    sw.batch();
    // From now on the switch reads but never answers.
    let mut echoes = 0;
    while let Some((_, m)) = sw.recv() {
        if matches!(m, Message::EchoRequest(_)) {
            echoes += 1;
        }
    }
    assert!(echoes >= 1, "probed before being dropped");
    d.wait_for(Duration::from_secs(20), "dead peer logged", || {
        let log = d.log_text();
        (log.contains("dead peer") && log.contains("switch session ended")).then_some(())
    });
}

#[test]
fn many_switches_connecting_at_once_all_converge() {
    let d = start();
    let desired = classic_desired();
    // All connect before any handshake: the accept loop takes the whole backlog.
    let mut all: Vec<FakeSwitch> = (1..=24)
        .map(|i| FakeSwitch::connect(&d.openflow, 0x100 + i))
        .collect();
    for sw in &mut all {
        sw.handshake(&[]);
    }
    for sw in &mut all {
        assert_eq!(sw.batch().len(), desired.flows.len());
        assert_eq!(sw.table(), desired.flows);
    }
    auth(&d, "authenticated");
    for sw in &mut all {
        let mods = sw.batch();
        assert_eq!(mods.len(), 1);
        assert!(sw.echo().is_empty());
    }
    let summary = d.wait_for(Duration::from_secs(20), "all confirmed", || {
        let s = d.ctl_json(&["stats"])["openflow"].clone();
        (s["pending_barriers"] == 0 && s["ready"] == 24).then_some(s)
    });
    assert_eq!(summary["flow_mods"], 24 * 4);
    assert_eq!(summary["flow_mods_confirmed"], 24 * 4);
}

#[test]
fn a_restarted_daemon_leaves_a_correct_switch_table_alone() {
    let sflow = format!("127.0.0.1:{}", free_udp_port());
    let openflow = format!("127.0.0.1:{}", free_tcp_port());
    let args = ["--sflow", &sflow, "--workers", "1", "--openflow", &openflow];
    let d = Daemon::start(CLASSIC_TOML, &args);
    let mut sw = FakeSwitch::connect(&d.openflow, 0x42);
    sw.handshake(&[]);
    sw.batch();
    auth(&d, "authenticated");
    assert_eq!(sw.batch().len(), 1);
    let table: Vec<_> = sw
        .table()
        .iter()
        .map(|(k, i)| entry(k, i.to_vec()))
        .collect();
    drop(sw);
    let (code, dir) = d.terminate();
    assert_eq!(code, Some(0));

    // The FSM state comes back from the journal, so the desired table is the same one.
    let d = Daemon::start_in(dir, CLASSIC_TOML, &args);
    let mut sw = FakeSwitch::connect(&d.openflow, 0x42);
    sw.handshake(&table);
    assert!(
        sw.echo().is_empty(),
        "no flow-mod for a table that is already right"
    );
    let s = wait_in_sync(&d, "0000000000000042");
    assert_eq!(s["flow_mods"], 0);
}

#[test]
fn kill_9_in_mid_stream_then_the_switch_is_reconciled_to_every_acknowledged_state() {
    use reflex::control::client::Client;
    use reflex::control::protocol::Request;
    use std::collections::HashSet;

    let sflow = format!("127.0.0.1:{}", free_udp_port());
    let openflow = format!("127.0.0.1:{}", free_tcp_port());
    let args = ["--sflow", &sflow, "--workers", "1", "--openflow", &openflow];
    let mut d = Daemon::start(CLASSIC_TOML, &args);
    let mut sw = FakeSwitch::connect(&d.openflow, 0x99);
    sw.handshake(&[]);
    sw.batch();
    // The switch follows every delta until the daemon dies.
    let follower = std::thread::spawn(move || {
        sw.pump(Duration::from_secs(30));
        sw.table()
    });
    let socket = d.socket.clone();
    let (acked_tx, acked_rx) = std::sync::mpsc::channel::<String>();
    let sender = std::thread::spawn(move || {
        let Ok(mut c) = Client::connect(&socket, Duration::from_secs(5)) else {
            return;
        };
        for i in 0..20_000u32 {
            let key = format!("10.3.{}.{}", i / 250, i % 250 + 1);
            let request = Request::Event {
                module: "auth".into(),
                key: key.clone(),
                state: "authenticated".into(),
                hold: None,
                then: None,
            };
            match c.request(&request) {
                Ok(r) if r.ok => {
                    if acked_tx.send(key).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 200 {
        acked.push(
            acked_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("events acknowledged"),
        );
    }
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    sender.join().unwrap();
    acked.extend(acked_rx.try_iter());
    let had = follower.join().unwrap();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);

    // The restarted daemon reads the switch's table and sends only what it missed.
    let d = Daemon::start_in(dir, CLASSIC_TOML, &args);
    let mut sw = FakeSwitch::connect(&d.openflow, 0x99);
    let installed: Vec<_> = had.iter().map(|(k, i)| entry(k, i.to_vec())).collect();
    sw.handshake(&installed);
    let sent = sw.pump(Duration::from_millis(1500));
    let s = wait_in_sync(&d, "0000000000000099");
    assert_eq!(s["flow_mods"].as_u64(), Some(sent as u64), "{s}");
    assert!(
        sent < acked.len(),
        "reconciliation resent the table: {sent} flow-mods for {} hosts",
        acked.len()
    );
    let keys: HashSet<EntryKey> = sw.table().iter().map(|(k, _)| k.clone()).collect();
    for key in &acked {
        let ip: std::net::Ipv4Addr = key.parse().unwrap();
        let rule = EntryKey::new(
            0,
            65535,
            &Match::builder().ipv4_src(ip).build().expect("match"),
        );
        assert!(
            keys.contains(&rule),
            "acknowledged {key} has no rule on the switch"
        );
    }
}

/// A switch that has not confirmed what it was sent is not in sync: `switches` says so while
/// its barrier is unanswered (the installed view already counts the flow-mod as sent), and
/// in sync once the barrier reply comes.
#[test]
fn a_switch_is_in_sync_only_once_its_barrier_is_answered() {
    let d = start();
    let mut sw = FakeSwitch::connect(&d.openflow, 11);
    sw.handshake(&[]);
    sw.batch();
    let dpid = "000000000000000b";
    wait_in_sync(&d, dpid);
    auth(&d, "authenticated");
    // Read the host's flow-mod and its barrier, answering neither.
    let barrier = loop {
        match sw.recv() {
            Some((xid, Message::BarrierRequest)) => break xid,
            Some(_) => {}
            None => panic!("reflexd closed the connection"),
        }
    };
    let s = switches(&d)
        .into_iter()
        .find(|s| s["dpid"] == dpid)
        .expect("the switch is listed");
    assert_eq!(s["pending_barriers"], 1, "{s}");
    assert_eq!(
        s["in_sync"], false,
        "unconfirmed flow-mods are not in sync: {s}"
    );
    let table = d.ctl_json(&["table", dpid]);
    assert_eq!(table["in_sync"], false, "{table}");
    sw.send(barrier, &Message::BarrierReply);
    let s = wait_in_sync(&d, dpid);
    assert_eq!(s["unconfirmed"], 0, "{s}");
}
