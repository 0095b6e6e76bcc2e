//! A stand-in for reflexd's OpenFlow server, to check the OpenFlow experiments' own logic
//! before that server exists (`REFLEX_E2E_SHIM=1`): a TCP endpoint that speaks just enough
//! OpenFlow 1.3 (HELLO, ECHO_REPLY) for the switch to count as connected, and a thread
//! that copies reflexd's compiled rules (`reflexctl --json policy`) onto s1 with
//! `ovs-ofctl replace-flows`, which sends only the entries that differ.
//!
//! It proves nothing about reflexd's OpenFlow server; only that the tests, run against a
//! controller that installs reflexd's policy, pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Whether the OpenFlow experiments use the stand-in.
pub fn enabled() -> bool {
    std::env::var("REFLEX_E2E_SHIM").is_ok_and(|v| v == "1")
}

/// The running stand-in; stopped when dropped.
pub struct Shim {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Shim {
    /// Serves OpenFlow on 127.0.0.1:`openflow_port` and mirrors the policy of the reflexd
    /// behind `control_socket` onto the switch at `mgmt` (an ovs-ofctl target).
    pub fn start(openflow_port: u16, control_socket: PathBuf, mgmt: String) -> Shim {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(("127.0.0.1", openflow_port)).expect("bind shim");
        listener.set_nonblocking(true).expect("nonblocking");
        let s = stop.clone();
        let server = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(conn, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let s = stop.clone();
        let mirror = std::thread::spawn(move || {
            let file = std::env::temp_dir().join(format!("reflex-shim-{openflow_port}.flows"));
            while !s.load(Ordering::Relaxed) {
                if let Some(text) = desired_flows(&control_socket) {
                    if std::fs::write(&file, text).is_ok() {
                        let _ = std::process::Command::new("ovs-ofctl")
                            .args(["-O", "OpenFlow13", "replace-flows", &mgmt])
                            .arg(&file)
                            .output();
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::remove_file(&file);
        });
        Shim {
            stop,
            threads: vec![server, mirror],
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// HELLO, then ECHO_REPLY to every ECHO_REQUEST; everything else is ignored.
fn serve(mut conn: TcpStream, stop: Arc<AtomicBool>) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    if conn.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).is_err() {
        return;
    }
    let mut header = [0u8; 8];
    while !stop.load(Ordering::Relaxed) {
        match conn.read_exact(&mut header) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(8)];
        if conn.read_exact(&mut body).is_err() {
            return;
        }
        if header[1] == 2 {
            let mut reply = header;
            reply[1] = 3;
            if conn
                .write_all(&reply)
                .and_then(|_| conn.write_all(&body))
                .is_err()
            {
                return;
            }
        }
    }
}

/// reflexd's compiled rules in ovs-ofctl's flow syntax, or None if reflexd does not answer.
fn desired_flows(socket: &PathBuf) -> Option<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflexctl"))
        .arg("--socket")
        .arg(socket)
        .args(["--json", "policy"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut text = String::new();
    for r in v["rules"].as_array()? {
        let m: Vec<String> = r["match"]
            .as_str()?
            .split(',')
            .filter(|f| *f != "*" && !f.is_empty())
            .map(|f| match f.split_once('=') {
                Some(("ip_src", v)) => format!("ip,nw_src={v}"),
                Some(("ip_dst", v)) => format!("ip,nw_dst={v}"),
                Some(("eth_type", v)) => format!("dl_type={v}"),
                _ => f.to_owned(),
            })
            .collect();
        let actions = match r["actions"].as_str()? {
            "output:normal" => "NORMAL".to_owned(),
            a => a.to_owned(),
        };
        let mut line = format!("table={},priority={}", r["table"], r["priority"]);
        for f in m {
            line.push(',');
            line.push_str(&f);
        }
        line.push_str(&format!(",actions={actions}\n"));
        text.push_str(&line);
    }
    Some(text)
}
