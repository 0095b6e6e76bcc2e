//! reflexd end to end over loopback: real OVS sFlow datagrams replayed into the daemon,
//! queried through reflexctl, and bad input that must not stop it.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{free_udp_port, ovs_sflow_datagrams, Daemon};

fn config(port: u16, threshold: f64) -> String {
    common::replay_config(port, threshold, true, false)
}

#[test]
fn replayed_ovs_capture_is_counted_ranked_and_detected() {
    let port = free_udp_port();
    let d = Daemon::start(&config(port, 50.0), &[]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams = ovs_sflow_datagrams();
    assert_eq!(datagrams.len(), 335);
    for dg in &datagrams {
        tx.send_to(dg, ("127.0.0.1", port)).unwrap();
        // Loopback is fast; a tiny pause keeps the test independent of rcvbuf sizes.
        std::thread::sleep(Duration::from_micros(50));
    }
    let stats = d.wait_for(Duration::from_secs(10), "all datagrams counted", || {
        let s = d.ctl_json(&["stats"]);
        (s["sflow"]["datagrams"] == 335).then_some(s)
    });
    assert_eq!(stats["sflow"]["flow_samples"], 2241);
    assert_eq!(stats["sflow"]["counter_samples"], 12);
    let errors = stats["sflow"]["decode_errors"].as_object().unwrap();
    assert!(errors.values().all(|v| v == 0), "{errors:?}");

    // The flooding host and its victim's replies lead the ddos flow.
    // Workers report top keys every 100 ms.
    let flows = d.wait_for(Duration::from_secs(5), "top keys", || {
        let f = d.ctl_json(&["flows", "ddos"]);
        (f["top"].as_array().is_some_and(|t| !t.is_empty())).then_some(f)
    });
    let keys: Vec<&str> = flows["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert!(keys.iter().take(2).any(|k| *k == "10.0.0.1"), "{flows}");
    let pairs = d.ctl_json(&["flows", "pairs"]);
    assert!(
        pairs["top"][0]["key"].as_str().unwrap().contains("10.0.0."),
        "{pairs}"
    );

    // The flood crossed 50 frames/s: an event for 10.0.0.1 with its agent.
    let events = d.ctl_json(&["events"]);
    let list = events["events"].as_array().unwrap();
    let h1 = list
        .iter()
        .find(|e| e["key"] == "10.0.0.1")
        .unwrap_or_else(|| panic!("no event for 10.0.0.1: {events}"));
    assert_eq!(h1["threshold"], "ddos");
    assert_eq!(h1["agent"], "127.0.0.1");
    assert!(h1["value"].as_f64().unwrap() > 50.0);
    // `events --key` finds that key's events only.
    let only = d.ctl_json(&["events", "--key", "10.0.0.1"]);
    let list = only["events"].as_array().unwrap();
    assert!(!list.is_empty(), "{only}");
    assert!(list.iter().all(|e| e["key"] == "10.0.0.1"), "{only}");
    let none = d.ctl_json(&["events", "--key", "192.0.2.99"]);
    assert_eq!(none["events"].as_array().map(Vec::len), Some(0), "{none}");
    // At info, events are summed up once a second, never logged one line each.
    d.wait_for(Duration::from_secs(5), "a summary line", || {
        d.log_text()
            .contains("threshold events in the last second")
            .then_some(())
    });
    assert!(!d.log_text().contains("threshold crossed"));
    let latency = &stats["events"]["latency"];
    assert!(latency["count"].as_u64().unwrap() >= 1, "{stats}");

    // Human-readable forms work too.
    let table = d.ctl(&["flows", "ddos"]).unwrap();
    assert!(table.contains("10.0.0.1"), "{table}");
    let err = d.ctl(&["flows", "nope"]).unwrap_err();
    assert!(err.contains("no flow `nope`"), "{err}");

    let (code, _) = d.terminate();
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
}

#[test]
fn malformed_datagrams_are_counted_and_do_not_stop_the_daemon() {
    let port = free_udp_port();
    let d = Daemon::start(&config(port, 1e9), &["--workers", "1"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let all = ovs_sflow_datagrams();
    // A full datagram: seven flow samples.
    let good = all.iter().find(|d| d.len() >= 1300).unwrap();
    let mut bad: Vec<Vec<u8>> = vec![vec![], vec![0; 3], vec![0xff; 64]];
    for cut in [8, 27, 40, good.len() - 1] {
        bad.push(good[..cut].to_vec());
    }
    let mut wrong_version = good.clone();
    wrong_version[3] = 4;
    bad.push(wrong_version);
    for b in &bad {
        tx.send_to(b, ("127.0.0.1", port)).unwrap();
    }
    tx.send_to(good, ("127.0.0.1", port)).unwrap();
    let stats = d.wait_for(Duration::from_secs(10), "datagrams counted", || {
        let s = d.ctl_json(&["stats"]);
        (s["sflow"]["datagrams"].as_u64() == Some(bad.len() as u64 + 1)).then_some(s)
    });
    let errors: u64 = stats["sflow"]["decode_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, bad.len() as u64, "{stats}");
    assert!(stats["sflow"]["flow_samples"].as_u64().unwrap() >= 1);
    assert!(d.log_text().contains("malformed sFlow datagram"));
    assert!(d.ctl(&["ping"]).is_ok());
}

#[test]
fn busy_port_and_bad_config_fail_with_one_clear_line() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(&cfg, config(port, 10.0)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--control")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for sFlow on udp 127.0.0.1:{port}")),
        "{err}"
    );

    // A second reflexd on a port the first one holds (with SO_REUSEPORT) is refused too,
    // instead of silently taking half of the datagrams.
    drop(holder);
    let first = Daemon::start(&config(port, 10.0), &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--control")
        .arg(dir.path().join("s2"))
        .arg("--openflow")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another reflexd"), "{err}");
    drop(first);

    std::fs::write(&cfg, "[[flow]]\nname = \"x\"\nkeys = \"ipsauce\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ipsauce"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        reflex::config::DEFAULT_TOML
    );
}

/// The example configurations pass `reflexd --check-config` as shipped, from the paths the
/// README gives (relative to the repository root).
#[test]
fn the_example_configs_pass_check_config() {
    for file in ["examples/classic.toml", "examples/production.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--config", file, "--check-config"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{file}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "configuration ok\n");
    }
}

/// SIGHUP (a reload request elsewhere) is said in the log and leaves reflexd running until
/// reload exists; SIGTERM still stops it cleanly.
#[test]
fn sighup_is_logged_and_the_daemon_keeps_running() {
    let port = free_udp_port();
    let d = Daemon::start(
        &config(port, 100.0),
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    );
    d.ctl_json(&["stats"]);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGHUP);
    }
    d.wait_for(Duration::from_secs(10), "SIGHUP logged", || {
        d.log_text().contains("SIGHUP").then_some(())
    });
    assert!(d.ctl(&["stats"]).is_ok(), "reflexd answers after SIGHUP");
    let (code, _dir) = d.terminate();
    assert_eq!(code, Some(0), "SIGTERM after SIGHUP exits cleanly");
}

/// `reflexctl … | head`: a reader that goes away ends reflexctl quietly (SIGPIPE), not with
/// a panic about a broken pipe.
#[test]
fn reflexctl_ends_quietly_on_a_closed_pipe() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let port = free_udp_port();
    let d = Daemon::start(
        &config(port, 100.0),
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    );
    let mut child = Command::new(common::workspace_bin("reflexctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "stats"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run reflexctl");
    // Close the read end before reflexctl writes: its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for reflexctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "reflexctl panicked: {stderr}");
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "reflexctl on a closed pipe: {:?} {stderr}",
        out.status
    );
}
