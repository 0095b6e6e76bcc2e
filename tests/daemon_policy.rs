//! The policy thread through reflexd: operator events, threshold reactions, assertions,
//! and FSM state that survives a kill -9. Most tests run the classic experiment
//! (examples/classic.toml: hosts start cleared, so authenticating one changes state);
//! one checks that the embedded default blocks a flood with no host authenticated first.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{free_udp_port, ovs_sflow_datagrams, Daemon, CLASSIC_TOML};

/// The classic experiment, its reaction holding a cleared host for 300 s.
fn start(dir: tempfile::TempDir, port: u16) -> Daemon {
    let config = CLASSIC_TOML.replace(
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
    let out = d.auth("10.0.0.1", "authenticated").unwrap();
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
        d.auth(host, "authenticated").unwrap();
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

/// The embedded default starts every host authenticated: nobody is let in first, and the
/// flooding host alone is cleared.
#[test]
fn the_default_clears_a_flooding_host_that_nobody_authenticated() {
    let port = free_udp_port();
    let d = Daemon::start_in(
        tempfile::tempdir().unwrap(),
        reflex::config::DEFAULT_TOML,
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    );
    let state = |host: &str| d.ctl_json(&["state", "-e", "auth", "-i", host])["state"].clone();
    for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        assert_eq!(state(host), "authenticated", "{host}");
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for dg in ovs_sflow_datagrams() {
        tx.send_to(&dg, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
    d.wait_for(Duration::from_secs(10), "h1 cleared", || {
        (state("10.0.0.1") == "clear").then_some(())
    });
    assert_eq!(state("10.0.0.3"), "authenticated");
    let policy = d.ctl_json(&["policy"]);
    assert!(
        policy["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["match"].as_str().unwrap().contains("10.0.0.1")),
        "h1's block is a rule: {policy}"
    );
    let check = d.ctl(&["check"]).unwrap();
    assert!(check.contains("all assertions hold"), "{check}");
}

#[test]
fn acknowledged_states_and_holds_survive_kill_9() {
    let port = free_udp_port();
    let mut d = start(tempfile::tempdir().unwrap(), port);
    for i in 1..=20 {
        d.auth(&format!("10.0.1.{i}"), "authenticated").unwrap();
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

#[test]
fn every_acknowledged_event_survives_a_kill_9_in_mid_stream() {
    use reflex::control::client::Client;
    use reflex::control::protocol::Request;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut d = start(tempfile::tempdir().unwrap(), free_udp_port());
    let acked = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, socket) = (acked.clone(), stop.clone(), d.socket.clone());
        std::thread::spawn(move || {
            let Ok(mut c) = Client::connect(&socket, Duration::from_secs(5)) else {
                return;
            };
            // One event per key, so an event cut off by the kill cannot overwrite an
            // acknowledged one; every third is a hold that must survive with its target.
            for i in 0..20_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("10.2.{}.{}", i / 250, i % 250 + 1);
                let held = i % 3 == 0;
                let request = Request::Event {
                    module: "auth".into(),
                    key: key.clone(),
                    state: "authenticated".into(),
                    hold: held.then_some(3600.0),
                    then: held.then(|| "clear".into()),
                };
                match c.request(&request) {
                    Ok(r) if r.ok => acked.lock().unwrap().push((key, held)),
                    _ => break,
                }
            }
        })
    };
    // Kill while the stream is still flowing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 300 {
        assert!(std::time::Instant::now() < deadline, "events too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);

    let d = start(dir, free_udp_port());
    let listing = d.ctl_json(&["state"]);
    let instances = listing["instances"].as_array().unwrap();
    let by_key: std::collections::HashMap<&str, &serde_json::Value> = instances
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i))
        .collect();
    for (key, held) in &acked {
        let i = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("acknowledged {key} lost after kill -9"));
        assert_eq!(i["state"], "authenticated", "{i}");
        if *held {
            assert_eq!(i["then"], "clear", "{i}");
        }
    }
}

#[test]
fn a_host_let_back_in_is_watched_afresh_and_blocked_by_a_second_flood() {
    let port = free_udp_port();
    // A 10-minute hysteresis: without the re-arm, the second flood could not fire.
    let config = CLASSIC_TOML.replace("timeout = 10.0", "timeout = 600.0");
    assert_ne!(config, CLASSIC_TOML);
    let d = Daemon::start_in(
        tempfile::tempdir().unwrap(),
        &config,
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let replay = || {
        for dg in ovs_sflow_datagrams() {
            tx.send_to(&dg, ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
    };
    let h1_events = || {
        d.ctl_json(&["events"])["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["key"] == "10.0.0.1")
            .count()
    };
    let h1_rate = || {
        d.ctl_json(&["flows", "ddos"])["top"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == "10.0.0.1")
            .map_or(0.0, |k| k["rate"].as_f64().unwrap())
    };
    for round in 1..=2 {
        d.auth("10.0.0.1", "authenticated").unwrap();
        if round > 1 {
            // Late samples of the last flood never block it again: its estimate first
            // decays below the threshold (the re-arm waives the timeout, not the rate).
            // Reports lag by up to 100 ms, so see the flood's rate before its decay.
            d.wait_for(Duration::from_secs(10), "h1's rate reported", || {
                (h1_rate() > 100.0).then_some(())
            });
            d.wait_for(Duration::from_secs(20), "h1's rate below 100/s", || {
                (h1_rate() < 100.0).then_some(())
            });
        }
        replay();
        d.wait_for(Duration::from_secs(10), "h1 cleared", || {
            let s = d.ctl_json(&["state", "-e", "auth", "-i", "10.0.0.1"]);
            (s["state"] == "clear").then_some(())
        });
        assert_eq!(h1_events(), round, "round {round}");
    }
    let stats = d.ctl_json(&["stats"]);
    assert!(
        stats["events"]["rearms_sent"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}
