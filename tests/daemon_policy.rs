//! The policy thread through reflexd: operator events, threshold reactions, assertions,
//! and FSM state that survives a kill -9.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{free_udp_port, ovs_sflow_datagrams, Daemon};

fn start(dir: tempfile::TempDir, port: u16) -> Daemon {
    let config = reflex::config::DEFAULT_TOML.replace(
        "threshold = \"ddos\"\nmodule = \"auth\"",
        "threshold = \"ddos\"\nmodule = \"auth\"\nhold = 300.0",
    );
    Daemon::start_in(
        dir,
        &config,
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    )
}

#[test]
fn operator_events_change_state_and_rules() {
    let port = free_udp_port();
    let d = start(tempfile::tempdir().unwrap(), port);
    let before = d.ctl_json(&["policy"]);
    let out = d
        .ctl(&[
            "event",
            "-i",
            "10.0.0.1",
            "-e",
            "auth",
            "-V",
            "authenticated",
        ])
        .unwrap();
    assert!(out.contains("auth(10.0.0.1) -> authenticated"), "{out}");
    let state = d.ctl_json(&["state", "-e", "auth", "-i", "10.0.0.1"]);
    assert_eq!(state["state"], "authenticated");
    let after = d.ctl_json(&["policy"]);
    assert!(
        after["rules"].as_array().unwrap().len() > before["rules"].as_array().unwrap().len(),
        "{after}"
    );
    assert!(after["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["match"].as_str().unwrap().contains("10.0.0.1")));

    // The same event again changes nothing.
    let again = d.ctl_json(&[
        "event",
        "-i",
        "10.0.0.1",
        "-e",
        "auth",
        "-V",
        "authenticated",
    ]);
    assert_eq!(again["changed"], false);

    // Errors say what is wrong and change nothing.
    for (args, needle) in [
        (
            vec!["event", "-i", "10.0.0.1", "-e", "nope", "-V", "x"],
            "unknown module `nope`",
        ),
        (
            vec!["event", "-i", "10.0.0.1", "-e", "auth", "-V", "sleepy"],
            "no state `sleepy`",
        ),
        (
            vec!["event", "-i", "10.0.0.999", "-e", "auth", "-V", "clear"],
            "not a valid",
        ),
        (
            vec![
                "event", "-i", "10.0.0.1", "-e", "auth", "-V", "clear", "--hold", "0",
            ],
            "hold must be",
        ),
    ] {
        let err = d.ctl(&args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(
        d.ctl_json(&["state", "-e", "auth", "-i", "10.0.0.1"])["state"],
        "authenticated"
    );
    let check = d.ctl(&["check"]).unwrap();
    assert!(check.contains("all assertions hold"), "{check}");
}

#[test]
fn a_flood_in_the_ovs_capture_clears_its_source() {
    let port = free_udp_port();
    let d = start(tempfile::tempdir().unwrap(), port);
    for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        d.ctl(&["event", "-i", host, "-e", "auth", "-V", "authenticated"])
            .unwrap();
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for dg in ovs_sflow_datagrams() {
        tx.send_to(&dg, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
    let state = d.wait_for(Duration::from_secs(10), "h1 cleared", || {
        let s = d.ctl_json(&["state", "-e", "auth", "-i", "10.0.0.1"]);
        (s["state"] == "clear").then_some(s)
    });
    assert_eq!(state["state"], "clear");
    let events = d.ctl_json(&["events"]);
    let h1 = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "10.0.0.1")
        .unwrap_or_else(|| panic!("{events}"));
    assert!(
        h1["outcome"]
            .as_str()
            .unwrap()
            .contains("auth(10.0.0.1) authenticated -> clear"),
        "{h1}"
    );
    // h3 never flooded: still authenticated.
    assert_eq!(
        d.ctl_json(&["state", "-e", "auth", "-i", "10.0.0.3"])["state"],
        "authenticated"
    );
    let listing = d.ctl_json(&["state"]);
    let cleared = listing["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "10.0.0.1")
        .unwrap();
    assert!(
        cleared["remaining_s"].as_f64().unwrap() > 200.0,
        "{cleared}"
    );
    let stats = d.ctl_json(&["stats"]);
    assert!(
        stats["events"]["reaction_latency"]["count"]
            .as_u64()
            .unwrap()
            >= 1,
        "{stats}"
    );
}

#[test]
fn acknowledged_states_and_holds_survive_kill_9() {
    let port = free_udp_port();
    let mut d = start(tempfile::tempdir().unwrap(), port);
    for i in 1..=20 {
        d.ctl(&[
            "event",
            "-i",
            &format!("10.0.1.{i}"),
            "-e",
            "auth",
            "-V",
            "authenticated",
        ])
        .unwrap();
    }
    d.ctl(&[
        "event",
        "-i",
        "10.0.1.5",
        "-e",
        "auth",
        "-V",
        "clear",
        "--hold",
        "600",
        "--then",
        "authenticated",
    ])
    .unwrap();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);

    let d = start(dir, free_udp_port());
    for i in 1..=20 {
        let want = if i == 5 { "clear" } else { "authenticated" };
        let s = d.ctl_json(&["state", "-e", "auth", "-i", &format!("10.0.1.{i}")]);
        assert_eq!(s["state"], want, "10.0.1.{i}");
    }
    let listing = d.ctl_json(&["state"]);
    let held = listing["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "10.0.1.5")
        .unwrap();
    let left = held["remaining_s"].as_f64().unwrap();
    assert!(left > 500.0 && left <= 600.0, "{held}");
    assert_eq!(held["then"], "authenticated");
}
