//! The scripted driver of the emulated switch, for integration tests: over loopback TCP it
//! answers the handshake with a table of the test's choosing, answers echoes and barriers,
//! and keeps its flow table (the library's [`FlowTable`]) up to date from the flow-mods it
//! receives, handing every other message to the test. It panics when the controller is
//! silent for too long or sends something unexpected: that is a test failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reflex::openflow::table::{EntryKey, FlowOp, FlowTable};
use reflex::openflow::{
    frame, Features, FlowMod, FlowModCommand, FlowStats, Hello, Message, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, Port, SwitchConfig, MULTIPART_MORE,
};

/// How long any single expected message may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// One scripted switch connected to the controller under test.
pub struct FakeSwitch {
    pub stream: TcpStream,
    pub dpid: u64,
    buf: Vec<u8>,
    /// The switch's flow table, as the flow-mods left it.
    pub table: FlowTable,
    /// The controller's SET_CONFIG, once seen.
    pub config: Option<SwitchConfig>,
    next_xid: u32,
}

/// A flow-stats entry as a switch would report it (counters and a cookie set, to check
/// that reconciliation ignores them).
pub fn entry(key: &EntryKey, instructions: Vec<reflex::openflow::Instruction>) -> FlowStats {
    FlowStats {
        table_id: key.table_id,
        duration_sec: 100,
        duration_nsec: 0,
        priority: key.priority,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0x1234,
        packet_count: 99,
        byte_count: 9900,
        match_: key.match_.clone(),
        instructions,
    }
}

impl FakeSwitch {
    /// Connects to the controller (no handshake yet).
    pub fn connect(addr: &str, dpid: u64) -> FakeSwitch {
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        FakeSwitch {
            stream,
            dpid,
            buf: Vec::new(),
            table: FlowTable::new(),
            config: None,
            next_xid: 0x1000,
        }
    }

    /// Sends `m` with `xid`.
    pub fn send(&mut self, xid: u32, m: &Message) {
        let mut b = Vec::new();
        m.emit(xid, &mut b);
        self.stream.write_all(&b).expect("send to controller");
    }

    /// Sends bytes as they are (e.g. a hand-built PACKET_IN).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to controller");
    }

    /// The next message; `None` if the controller closed the connection. Panics after WAIT.
    pub fn recv(&mut self) -> Option<(u32, Message)> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some((_, n))) = frame(&self.buf) {
                let bytes: Vec<u8> = self.buf.drain(..n).collect();
                return Some(Message::parse(&bytes).expect("controller sends valid messages"));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "controller sent nothing for {WAIT:?}"
                    );
                }
                Err(_) => return None,
            }
        }
    }

    /// The next message other than an ECHO_REQUEST (those are answered).
    // Not an iterator: a closed connection is a test failure, so there is no `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> (u32, Message) {
        loop {
            let Some((xid, m)) = self.recv() else {
                panic!("controller closed the connection")
            };
            match m {
                Message::EchoRequest(p) => self.send(xid, &Message::EchoReply(p)),
                other => return (xid, other),
            }
        }
    }

    /// Runs the switch side of the handshake, reporting `installed` in the flow dump (one
    /// entry per reply message, MORE set on all but the last).
    pub fn handshake(&mut self, installed: &[FlowStats]) {
        self.send(1, &Message::Hello(Hello::v13()));
        let (_, m) = self.next();
        assert!(matches!(m, Message::Hello(_)), "{m:?}");
        let (xid, m) = self.next();
        assert_eq!(m, Message::FeaturesRequest);
        self.send(
            xid,
            &Message::FeaturesReply(Features {
                datapath_id: self.dpid,
                n_buffers: 0,
                n_tables: 254,
                ..Features::default()
            }),
        );
        let (_, m) = self.next();
        let Message::SetConfig(c) = m else {
            panic!("expected SET_CONFIG, got {m:?}")
        };
        self.config = Some(c);
        let (xid, m) = self.next();
        assert!(
            matches!(&m, Message::MultipartRequest(r) if r.body == MultipartRequestBody::PortDesc),
            "{m:?}"
        );
        let ports = (1..=3)
            .map(|n| Port {
                port_no: n,
                name: format!("s1-eth{n}"),
                hw_addr: [2, 0, 0, 0, 0, n as u8],
                ..Port::default()
            })
            .collect();
        self.send(
            xid,
            &Message::MultipartReply(MultipartReply {
                flags: 0,
                body: MultipartReplyBody::PortDesc(ports),
            }),
        );
        let (xid, m) = self.next();
        assert!(
            matches!(&m, Message::MultipartRequest(r) if matches!(r.body, MultipartRequestBody::Flow(_))),
            "{m:?}"
        );
        let parts: Vec<Vec<FlowStats>> = if installed.is_empty() {
            vec![Vec::new()]
        } else {
            installed.iter().map(|e| vec![e.clone()]).collect()
        };
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            self.send(
                xid,
                &Message::MultipartReply(MultipartReply {
                    flags: if i + 1 < n { MULTIPART_MORE } else { 0 },
                    body: MultipartReplyBody::Flow(p),
                }),
            );
        }
        self.table = FlowTable::from_stats(installed);
    }

    /// Reads flow-mods and meter-mods up to the next BARRIER_REQUEST, applies them to the
    /// table, answers the barrier, and returns the flow-mods with their xids.
    /// `reject` says which flow-mods to answer with an ERROR instead of applying.
    pub fn batch_rejecting(&mut self, reject: impl Fn(&FlowMod) -> bool) -> Vec<(u32, FlowMod)> {
        let mut mods = Vec::new();
        loop {
            let (xid, m) = self.next();
            match m {
                Message::FlowMod(f) => {
                    if reject(&f) {
                        let mut data = Vec::new();
                        Message::FlowMod(f.clone()).emit(xid, &mut data);
                        data.truncate(64);
                        self.send(
                            xid,
                            &Message::Error(reflex::openflow::ErrorMsg {
                                err_type: 5,
                                code: 6,
                                data,
                            }),
                        );
                    } else {
                        self.apply(&f);
                    }
                    mods.push((xid, f));
                }
                Message::MeterMod(_) => {}
                Message::BarrierRequest => {
                    self.send(xid, &Message::BarrierReply);
                    return mods;
                }
                other => panic!("unexpected message in a flow-mod batch: {other:?}"),
            }
        }
    }

    /// Applies one flow-mod to the table.
    pub fn apply(&mut self, f: &FlowMod) {
        let key = EntryKey::new(f.table_id, f.priority, &f.match_);
        let op = match f.command {
            FlowModCommand::Add => FlowOp::Add,
            FlowModCommand::ModifyStrict | FlowModCommand::Modify => FlowOp::Modify,
            FlowModCommand::DeleteStrict | FlowModCommand::Delete => FlowOp::Delete,
        };
        if op == FlowOp::Delete {
            self.table.remove(&key);
        } else {
            self.table.insert(key, &f.instructions);
        }
    }

    /// Plays the switch until the controller closes the connection or stays silent for
    /// `quiet`: applies flow-mods, answers barriers and echoes. Returns the flow-mods applied.
    pub fn pump(&mut self, quiet: Duration) -> usize {
        let mut applied = 0;
        let mut last = Instant::now();
        let mut chunk = vec![0u8; 65536];
        loop {
            if let Ok(Some((_, n))) = frame(&self.buf) {
                let bytes: Vec<u8> = self.buf.drain(..n).collect();
                let (xid, m) = Message::parse(&bytes).expect("controller sends valid messages");
                last = Instant::now();
                match m {
                    Message::FlowMod(f) => {
                        self.apply(&f);
                        applied += 1;
                    }
                    Message::BarrierRequest => self.send(xid, &Message::BarrierReply),
                    Message::EchoRequest(p) => self.send(xid, &Message::EchoReply(p)),
                    _ => {}
                }
                continue;
            }
            if last.elapsed() >= quiet {
                return applied;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return applied,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return applied,
            }
        }
    }

    /// Like [`batch_rejecting`](Self::batch_rejecting), accepting everything.
    pub fn batch(&mut self) -> Vec<(u32, FlowMod)> {
        self.batch_rejecting(|_| false)
    }

    /// An ECHO round trip: once it returns, every message the controller queued before
    /// it has been read (TCP keeps order).
    pub fn echo(&mut self) -> Vec<Message> {
        self.next_xid += 1;
        let xid = self.next_xid;
        self.send(xid, &Message::EchoRequest(b"fence".to_vec()));
        let mut before = Vec::new();
        loop {
            let (x, m) = self.next();
            if x == xid && m == Message::EchoReply(b"fence".to_vec()) {
                return before;
            }
            before.push(m);
        }
    }
}
