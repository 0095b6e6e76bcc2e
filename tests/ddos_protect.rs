//! The ddos-protect presets (examples/ddos-protect.toml): the file passes `--check-config`,
//! and through reflexd over loopback an ICMP flood toward one victim from several sources
//! gives one signature rule (ICMP to the victim, dropped) while the victim's other traffic
//! and the sources' own traffic are untouched.

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::{free_udp_port, Daemon};
use reflex::sflow::SampledIp;
use reflex_testkit::switch::FakeSwitch;

const PRESETS: &str = include_str!("../examples/ddos-protect.toml");
const VICTIM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

#[test]
fn the_presets_pass_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ddos-protect.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexd"))
        .args(["--config", path, "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = reflex::config::Config::from_toml(PRESETS, "ddos-protect.toml")
        .unwrap()
        .build()
        .unwrap();
    assert!(built.policy.check().is_empty());
}

/// One datagram holding one 1-in-`sampling` sample of an IPv4 packet `src` → `dst`
/// (`protocol`; `ports` are the ICMP type and code for ICMP) that entered port 1.
fn datagram(
    sequence: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u32,
    ports: (u32, u32),
) -> Vec<u8> {
    reflex_testkit::sflow::one_sample_datagram(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        sequence,
        100,
        3,
        SampledIp {
            length: 84,
            protocol,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            src_port: ports.0,
            dst_port: ports.1,
            tcp_flags: 0,
            tos: 0,
        },
    )
}

#[test]
fn an_icmp_flood_from_several_sources_gives_one_signature_rule() {
    let port = free_udp_port();
    let d = Daemon::start(
        PRESETS,
        &["--sflow", &format!("127.0.0.1:{port}"), "--workers", "1"],
    );
    let mut sw = FakeSwitch::connect(&d.openflow, 1);
    sw.handshake(&[]);
    sw.batch();
    let before = d.ctl_json(&["policy"]);

    // h1 and h2 flood h3 with echo requests (each sample worth 100 frames), while h3 keeps
    // a TCP conversation and h1 talks to h2 over UDP, both far below any threshold.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (h1, h2) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let mut sequence = 0;
    for i in 0..200u32 {
        sequence += 1;
        let src = if i % 2 == 0 { h1 } else { h2 };
        tx.send_to(
            &datagram(sequence, src, VICTIM, 1, (8, 0)),
            ("127.0.0.1", port),
        )
        .unwrap();
        if i % 50 == 0 {
            sequence += 1;
            tx.send_to(
                &datagram(sequence, h1, VICTIM, 6, (40000, 80)),
                ("127.0.0.1", port),
            )
            .unwrap();
            sequence += 1;
            tx.send_to(
                &datagram(sequence, h1, h2, 17, (5000, 53)),
                ("127.0.0.1", port),
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let key = format!("{VICTIM},1");
    let state = d.wait_for(
        Duration::from_secs(10),
        "the victim's ICMP attacked",
        || {
            let s = d.ctl_json(&["state", "-e", "icmp_flood", "-i", &key]);
            (s["state"] == "attacked").then_some(s)
        },
    );
    assert_eq!(state["state"], "attacked");
    // Nothing else reacted: no TCP or UDP signature, and no source is named anywhere.
    let listing = d.ctl_json(&["state"]);
    let instances = listing["instances"].as_array().unwrap();
    let attacked: Vec<_> = instances
        .iter()
        .filter(|i| i["state"] == "attacked")
        .collect();
    assert_eq!(attacked.len(), 1, "{listing}");
    assert_eq!(attacked[0]["module"], "icmp_flood", "{listing}");
    assert!(
        attacked[0]["remaining_s"].as_f64().unwrap() > 20.0,
        "{listing}"
    );

    // One new rule: ICMP to the victim, dropped. Every rule naming the victim is that one.
    let after = d.ctl_json(&["policy"]);
    let rules = |p: &serde_json::Value| p["rules"].as_array().unwrap().clone();
    assert_eq!(rules(&after).len(), rules(&before).len() + 1, "{after}");
    let victim = VICTIM.to_string();
    let naming: Vec<_> = rules(&after)
        .into_iter()
        .filter(|r| r["match"].as_str().unwrap().contains(&victim))
        .collect();
    assert_eq!(naming.len(), 1, "{after}");
    let m = naming[0]["match"].as_str().unwrap();
    assert!(
        m.contains("ip_proto=1") && m.contains("ip_dst=10.0.0.3"),
        "{m}"
    );
    assert_eq!(naming[0]["actions"], "drop", "{after}");
    for source in ["10.0.0.1", "10.0.0.2"] {
        assert!(
            !rules(&after)
                .iter()
                .any(|r| r["match"].as_str().unwrap().contains(source)),
            "{after}"
        );
    }

    // The switch is sent the rule: every installed entry naming the victim matches ICMP
    // (ip_proto=1) and drops; the victim's TCP and everyone's UDP meet no such entry.
    sw.batch();
    let table = d.ctl(&["table", "1"]).unwrap();
    let victim_entries: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("nw_dst=10.0.0.3"))
        .collect();
    assert!(!victim_entries.is_empty(), "{table}");
    for line in &victim_entries {
        assert!(
            line.contains("icmp") || line.contains("nw_proto=1"),
            "{line}\n{table}"
        );
        assert!(
            line.contains("drop") || line.ends_with("actions="),
            "{line}\n{table}"
        );
    }
    assert!(
        !table.contains("nw_src=10.0.0.1") && !table.contains("nw_src=10.0.0.2"),
        "{table}"
    );
    let check = d.ctl(&["check"]).unwrap();
    assert!(check.contains("all assertions hold"), "{check}");
}
