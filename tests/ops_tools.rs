//! The operator's tools against a real reflexd fed with the OVS capture: `reflexctl top
//! --once`, `reflexctl record` during a replayed flood, then `reflexctl chart` on the
//! recording.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{free_udp_port, ovs_sflow_datagrams, Daemon};

fn config(port: u16) -> String {
    common::replay_config(port, 50.0, true, true)
}

fn replay(port: u16) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for dg in ovs_sflow_datagrams() {
        tx.send_to(&dg, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn ctl(d: &Daemon) -> Command {
    let mut c = Command::new(common::workspace_bin("reflexctl"));
    c.arg("--socket").arg(&d.socket);
    c
}

#[test]
fn record_top_and_chart_follow_a_replayed_flood() {
    let port = free_udp_port();
    let d = Daemon::start(&config(port), &[]);
    let out = d.dir.path().join("h1.jsonl");
    let mut recorder = ctl(&d);
    recorder
        .args([
            "record",
            "--flow",
            "ddos",
            "--key",
            "10.0.0.1",
            "--duration",
            "3",
        ])
        .args(["--interval", "0.05", "--out"])
        .arg(&out);
    // Record on another thread; replay once the recorder has started.
    let recorded = std::thread::scope(|s| {
        let r = s.spawn(move || recorder.output());
        std::thread::sleep(Duration::from_millis(800));
        replay(port);
        r.join().unwrap()
    });
    let recorded = recorded.unwrap();
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );

    // The recording: rates that rose above the threshold, the event and the block.
    let text = std::fs::read_to_string(&out).unwrap();
    let series = reflexctl::series::Series::parse(&text).unwrap();
    assert_eq!(series.key.as_deref(), Some("10.0.0.1"));
    assert_eq!(series.threshold.first().map(|t| t.1), Some(50.0), "{text}");
    assert!(series.reflex.len() >= 20, "{} samples", series.reflex.len());
    let peak = series.reflex.iter().map(|p| p.1).fold(0.0, f64::max);
    assert!(peak > 50.0, "peak {peak}");
    assert!(
        series
            .marks
            .iter()
            .any(|m| m.block && m.label.contains("-> clear")),
        "{text}"
    );
    assert!(
        series
            .marks
            .iter()
            .any(|m| !m.block && m.label.contains("ddos")),
        "{text}"
    );

    // One frame of top: flows with thresholds, the event, the FSM change, ingest rates.
    let top = ctl(&d)
        .args(["top", "--once", "--interval", "0.2"])
        .output()
        .unwrap();
    assert!(top.status.success());
    let frame = String::from_utf8_lossy(&top.stdout);
    assert!(
        !frame.contains('\x1b'),
        "--once prints plain text: {frame:?}"
    );
    for want in [
        "reflex top",
        "2 workers",
        "ingest  ",
        "datagrams/s",
        "FLOW ddos  (ipsource, frames, t 1s)  threshold ddos > 50/s",
        "FLOW pairs  (ipsource,ipdestination, bytes, t 2s)",
        "RECENT THRESHOLD EVENTS",
        "auth(10.0.0.1) authenticated -> clear  [threshold]",
    ] {
        assert!(frame.contains(want), "missing {want:?} in\n{frame}");
    }
    assert!(
        frame
            .lines()
            .any(|l| l.contains("ddos") && l.contains("10.0.0.1") && l.contains("/s")),
        "{frame}"
    );

    let changes = d.ctl(&["changes"]).unwrap();
    assert!(
        changes
            .lines()
            .any(|l| l.contains("auth") && l.contains("10.0.0.1") && l.ends_with("threshold")),
        "{changes}"
    );
    let changes = d.ctl_json(&["changes", "-n", "1"]);
    assert_eq!(changes["changes"].as_array().unwrap().len(), 1, "{changes}");

    // The chart of the recording.
    let png = d.dir.path().join("h1.png");
    let chart = ctl(&d)
        .arg("chart")
        .arg(&out)
        .args(["--size", "800x400", "-o"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        chart.status.success(),
        "{}",
        String::from_utf8_lossy(&chart.stderr)
    );
    if let Some(keep) = std::env::var_os("REFLEX_TEST_KEEP") {
        // For a person to look at: REFLEX_TEST_KEEP=/tmp/dir cargo test --test ops_tools
        let keep = std::path::PathBuf::from(keep);
        let _ = std::fs::copy(&png, keep.join("h1.png"));
        let _ = std::fs::copy(&out, keep.join("h1.jsonl"));
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (800, 400));
    // A blank 800x400 PNG compresses to well under a kilobyte.
    assert!(bytes.len() > 4000, "{} bytes", bytes.len());

    // Without text (no font needed) the chart is still drawn.
    let bare = d.dir.path().join("bare.png");
    let chart = ctl(&d)
        .arg("chart")
        .arg(&out)
        .args(["--no-text", "--size", "400x300", "-o"])
        .arg(&bare)
        .output()
        .unwrap();
    assert!(chart.status.success());
    let bytes = std::fs::read(&bare).unwrap();
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 400);
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());
}

#[test]
fn tools_fail_clearly_on_bad_input_and_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(common::workspace_bin("reflexctl"))
            .arg("--socket")
            .arg(dir.path().join("none.sock"))
            .args(args)
            .output()
            .unwrap()
    };
    let top = run(&["top", "--once"]);
    assert_eq!(top.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&top.stdout).contains("daemon not answering"));

    let rec = run(&[
        "record",
        "--flow",
        "ddos",
        "--key",
        "x",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(rec.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rec.stderr).contains("cannot connect"));

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"t\": 1, \"reflex_rate\": 2}\n{oops\n").unwrap();
    let png = dir.path().join("x.png");
    let chart = run(&["chart", bad.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert_eq!(chart.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&chart.stderr).contains("line 2"));
    let missing = run(&["chart", "/nonexistent.jsonl", "-o", png.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"t\": 1, \"reflex_rate\": 2}\n{\"t\": 2, \"reflex_rate\": 3}\n",
    )
    .unwrap();
    let font = run(&[
        "chart",
        good.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--font",
        "/nonexistent.ttf",
    ]);
    assert_eq!(font.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&font.stderr).contains("font /nonexistent.ttf"));
    let size = run(&[
        "chart",
        bad.to_str().unwrap(),
        "-o",
        "x.png",
        "--size",
        "9x9",
    ]);
    assert_eq!(size.status.code(), Some(2));
    let interval = run(&["top", "--interval", "0"]);
    assert_eq!(interval.status.code(), Some(2));
    assert!(!png.exists());
}

#[test]
fn live_top_refreshes_and_restores_the_screen_on_sigint() {
    let port = free_udp_port();
    let d = Daemon::start(&config(port), &[]);
    let child = ctl(&d)
        .args(["top", "-d", "0.1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("\x1b[?1049h\x1b[?25l"), "{text:?}");
    assert!(text.ends_with("\x1b[?25h\x1b[?1049l"), "{text:?}");
    assert!(
        text.matches("reflex top").count() >= 2,
        "refreshed: {text:?}"
    );
}
