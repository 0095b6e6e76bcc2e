//! Helpers shared by integration tests: capture replay, a reflexd child process, reflexctl,
//! the workspace's binaries. (The emulated switch is reflex_testkit::switch.)
#![allow(dead_code)]

pub mod ovs;

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// examples/classic.toml: the classic experiment (hosts start cleared and are authenticated
/// one by one), for the tests about it. The embedded default starts hosts authenticated.
pub const CLASSIC_TOML: &str = include_str!("../../examples/classic.toml");

/// UDP payloads of every IPv4/UDP packet to `port` in an Ethernet pcapng file.
pub fn udp_payloads(file: &str, port: u16) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    udp_payloads_in(&path, port)
}

/// UDP payloads of every IPv4/UDP packet to `port` in the Ethernet pcapng file at `path`.
pub fn udp_payloads_in(path: &Path, port: u16) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("pcapng file");
    let mut reader = pcap_file::pcapng::PcapNgReader::new(f).expect("pcapng");
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        let block = block.expect("block");
        let data = match block {
            pcap_file::pcapng::Block::EnhancedPacket(p) => p.data.into_owned(),
            pcap_file::pcapng::Block::SimplePacket(p) => p.data.into_owned(),
            _ => continue,
        };
        if data.len() < 14 + 20 + 8 || data[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &data[14..];
        let ihl = (ip[0] & 0x0f) as usize * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let udp = &ip[ihl..];
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        if dport == port && len >= 8 && len <= udp.len() {
            out.push(udp[8..len].to_vec());
        }
    }
    out
}

/// The sFlow datagrams of the Open vSwitch capture.
pub fn ovs_sflow_datagrams() -> Vec<Vec<u8>> {
    udp_payloads("ovs-sflow.pcapng", 6343)
}

/// The path of one of the workspace's binaries: `reflexd`, `reflexctl` or `reflex-load`.
///
/// Cargo gives an integration test `CARGO_BIN_EXE_*` only for its own package's binaries
/// (here reflexd); reflexctl and reflex-load belong to crates/reflexctl and
/// crates/reflex-load. Those are built once per test process by the same cargo, profile and
/// target directory as the test itself (a no-op when fresh), so a test never runs a missing
/// or stale one.
pub fn workspace_bin(name: &str) -> PathBuf {
    const OTHERS: [(&str, &str); 2] = [("reflexctl", "reflexctl"), ("reflex-load", "reflex-load")];
    if name == "reflexd" {
        return PathBuf::from(env!("CARGO_BIN_EXE_reflexd"));
    }
    assert!(
        OTHERS.iter().any(|(_, bin)| *bin == name),
        "{name} is not a binary of this workspace"
    );
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    PROFILE_DIR
        .get_or_init(|| build_workspace_bins(&OTHERS))
        .join(name)
}

/// Builds `(package, binary)` pairs into the test's own `target/<profile>/`; returns it.
fn build_workspace_bins(bins: &[(&str, &str)]) -> PathBuf {
    // A test runs as target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--profile", profile])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let status = cmd
        .status()
        .expect("run cargo build for the workspace's binaries");
    assert!(status.success(), "cargo build of {bins:?} failed: {status}");
    profile_dir
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A reflexd child process, killed when dropped.
pub struct Daemon {
    pub child: Child,
    /// Where the daemon listens for switches (`--openflow`; a free loopback port unless the
    /// test chose one, so parallel tests never meet on 6653).
    pub openflow: String,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts reflexd with `config` (TOML text) plus `args`, and waits until it answers.
    pub fn start(config: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::start_in(dir, config, args)
    }

    /// Like `start`, in an existing directory (to restart over the same state).
    pub fn start_in(dir: tempfile::TempDir, config: &str, args: &[&str]) -> Daemon {
        let cfg = dir.path().join("reflex.toml");
        std::fs::write(&cfg, config).expect("write config");
        let socket = dir.path().join("ctl.sock");
        let log = dir.path().join("reflexd.log");
        let openflow = match args.iter().position(|a| *a == "--openflow") {
            Some(i) => args.get(i + 1).map(|a| a.to_string()).unwrap_or_default(),
            None => format!("127.0.0.1:{}", free_tcp_port()),
        };
        let extra: Vec<String> = if args.contains(&"--openflow") {
            Vec::new()
        } else {
            vec!["--openflow".into(), openflow.clone()]
        };
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let mut cmd = Command::new(workspace_bin("reflexd"));
        // A test process killed outright (no Drop) takes its reflexd with it.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("--config")
            .arg(&cfg)
            .arg("--control")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .args(&extra)
            .env("REFLEX_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("spawn reflexd");
        let mut d = Daemon {
            child,
            openflow,
            socket,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if d.ctl(&["ping"]).is_ok() {
                break;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("reflexd exited early ({status}): {}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "reflexd did not start: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `reflexctl event -i HOST -e auth -V STATE`.
    pub fn auth(&self, host: &str, state: &str) -> Result<String, String> {
        self.ctl(&["event", "-i", host, "-e", "auth", "-V", state])
    }

    /// Runs reflexctl against this daemon; Ok(stdout) on success, Err(stderr) otherwise.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(workspace_bin("reflexctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// reflexctl --json ARGS, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self
            .ctl(&all)
            .unwrap_or_else(|e| panic!("reflexctl {args:?}: {e}"));
        serde_json::from_str(&text).expect("json")
    }

    /// Polls `f` every 20 ms until it returns Some, or panics after `timeout`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; reflexd log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(mut self) -> (Option<i32>, tempfile::TempDir) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            assert!(
                Instant::now() < deadline,
                "reflexd ignored SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (code, dir)
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback configuration for replaying the OVS capture: flow `ddos` (the classic
/// filter, t = 1 s) with a threshold at `threshold`, optionally a `pairs` bytes flow, and
/// optionally the `auth` module (hosts start authenticated, `ddos` clears them).
pub fn replay_config(port: u16, threshold: f64, pairs: bool, auth: bool) -> String {
    let mut c = format!(
        r#"
[sflow]
listen = "127.0.0.1:{port}"
workers = 2
pin = false

[[flow]]
name = "ddos"
keys = "ipsource"
value = "frames"
filter = "outputifindex!=discard&direction=ingress"
t = 1.0
"#
    );
    if pairs {
        c.push_str(
            r#"
[[flow]]
name = "pairs"
keys = "ipsource,ipdestination"
value = "bytes"
t = 2.0
"#,
        );
    }
    c.push_str(&format!(
        r#"
[[threshold]]
name = "ddos"
metric = "ddos"
value = {threshold:?}
timeout = 10.0
"#
    ));
    if auth {
        c.push_str(
            r#"
[[module]]
name = "auth"
key = "ipv4"
initial = "authenticated"
[module.states]
authenticated = "identity"
clear = "if_(match(eth_type=0x0800), drop, identity)"

[policy]
main = "auth >> normal"

[[reaction]]
threshold = "ddos"
module = "auth"
state = "clear"
"#,
        );
    }
    c
}
