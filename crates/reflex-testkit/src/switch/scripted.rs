//! The blocking driver of the emulated switch, for integration tests. Over loopback TCP it
//! reads one controller message at a time and hands it to the test; what the test does not
//! script is handled by the one [`EmulatedSwitch`] state machine (handshake replies, echoes,
//! barriers, the flow table and meters), so the tests and `reflex-load` play the same
//! switch. Scripting: [`FakeSwitch::handshake`] checks the controller's handshake order,
//! [`FakeSwitch::batch_rejecting`] fails chosen flow-mods, [`FakeSwitch::recv`] reads
//! without answering anything (a switch that holds its barriers and echoes), and not
//! calling anything is a switch that never reads. It panics when the controller is silent
//! for too long or sends something unexpected: that is a test failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reflex::openflow::table::{EntryKey, FlowTable};
use reflex::openflow::{frame, FlowMod, FlowStats, Message, MultipartRequestBody, SwitchConfig};

use super::{EmulatedSwitch, OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_COMMAND};

/// How long any single expected message may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
/// Ports of every fake switch (1..=3).
const PORTS: u32 = 3;

/// One scripted switch connected to the controller under test.
pub struct FakeSwitch {
    pub stream: TcpStream,
    pub dpid: u64,
    buf: Vec<u8>,
    /// The switch's state: what answers the controller when the test does not.
    switch: EmulatedSwitch,
    /// Replies the state machine wrote, sent after each message.
    out: Vec<u8>,
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
        let mut switch = EmulatedSwitch::new(dpid, PORTS);
        // One flow-stats entry per reply, MORE on all but the last: the controller must
        // reassemble the dump.
        switch.set_multipart_chunk(1);
        FakeSwitch {
            stream,
            dpid,
            buf: Vec::new(),
            switch,
            out: Vec::new(),
            next_xid: 0x1000,
        }
    }

    /// The switch's flow table, canonical, as the flow-mods left it.
    pub fn table(&self) -> FlowTable {
        FlowTable::from_stats(self.switch.table())
    }

    /// The switch configuration, as the controller's SET_CONFIG left it.
    pub fn config(&self) -> SwitchConfig {
        self.switch.config()
    }

    /// The emulated switch behind this driver (counters, raw table, meters).
    pub fn emulated(&self) -> &EmulatedSwitch {
        &self.switch
    }

    /// Sends `m` with `xid`.
    pub fn send(&mut self, xid: u32, m: &Message) {
        let mut b = Vec::new();
        m.emit(xid, &mut b);
        self.send_raw(&b);
    }

    /// Sends bytes as they are (e.g. a hand-built PACKET_IN).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to controller");
    }

    /// The next message's bytes; `None` if the controller closed the connection or stayed
    /// silent for `quiet` (default: panics after WAIT).
    fn read_frame(&mut self, quiet: Option<Duration>) -> Option<Vec<u8>> {
        let started = Instant::now();
        let mut chunk = [0u8; 65536];
        loop {
            if let Ok(Some((_, n))) = frame(&self.buf) {
                return Some(self.buf.drain(..n).collect());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    match quiet {
                        Some(q) if started.elapsed() >= q => return None,
                        Some(_) => {}
                        None => assert!(
                            started.elapsed() < WAIT,
                            "controller sent nothing for {WAIT:?}"
                        ),
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn parse(bytes: &[u8]) -> (u32, Message) {
        Message::parse(bytes).expect("controller sends valid messages")
    }

    /// Lets the emulated switch handle the message `bytes` and sends its replies.
    fn play(&mut self, bytes: &[u8]) {
        self.switch
            .receive(0, bytes, &mut self.out)
            .expect("controller speaks OpenFlow 1.3");
        self.flush();
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.send_raw(&out);
            self.out = out;
            self.out.clear();
        }
    }

    /// The next message, answering nothing; `None` if the controller closed the
    /// connection. Panics after WAIT.
    pub fn recv(&mut self) -> Option<(u32, Message)> {
        self.read_frame(None).map(|b| Self::parse(&b))
    }

    /// The next message other than an ECHO_REQUEST (the switch answers those), with its
    /// bytes.
    fn next_frame(&mut self) -> (u32, Message, Vec<u8>) {
        loop {
            let Some(bytes) = self.read_frame(None) else {
                panic!("controller closed the connection")
            };
            match Self::parse(&bytes) {
                (_, Message::EchoRequest(_)) => self.play(&bytes),
                (xid, m) => return (xid, m, bytes),
            }
        }
    }

    /// The next message other than an ECHO_REQUEST (those are answered).
    // Not an iterator: a closed connection is a test failure, so there is no `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> (u32, Message) {
        let (xid, m, _) = self.next_frame();
        (xid, m)
    }

    /// Expects the next message to be `what` (checked by `is`) and lets the switch
    /// handle it.
    fn expect(&mut self, what: &str, is: impl Fn(&Message) -> bool) {
        let (_, m, bytes) = self.next_frame();
        assert!(is(&m), "expected {what}, got {m:?}");
        self.play(&bytes);
    }

    /// Runs the switch side of the handshake, checking the controller's order (HELLO,
    /// FEATURES_REQUEST, SET_CONFIG, PORT_DESC, FLOW stats) and reporting `installed` in
    /// the flow dump (one entry per reply message, MORE set on all but the last).
    pub fn handshake(&mut self, installed: &[FlowStats]) {
        self.switch.load_table(installed);
        self.switch.start(&mut self.out);
        self.flush();
        self.expect("HELLO", |m| matches!(m, Message::Hello(_)));
        self.expect("FEATURES_REQUEST", |m| *m == Message::FeaturesRequest);
        self.expect("SET_CONFIG", |m| matches!(m, Message::SetConfig(_)));
        self.expect("a PORT_DESC request", |m| {
            matches!(m, Message::MultipartRequest(r) if r.body == MultipartRequestBody::PortDesc)
        });
        self.expect("a FLOW stats request", |m| {
            matches!(m, Message::MultipartRequest(r) if matches!(r.body, MultipartRequestBody::Flow(_)))
        });
    }

    /// Reads flow-mods and meter-mods up to the next BARRIER_REQUEST, applies them to the
    /// switch, answers the barrier, and returns the flow-mods with their xids.
    /// `reject` says which flow-mods to answer with an ERROR instead of applying.
    pub fn batch_rejecting(&mut self, reject: impl Fn(&FlowMod) -> bool) -> Vec<(u32, FlowMod)> {
        let mut mods = Vec::new();
        loop {
            let (xid, m, bytes) = self.next_frame();
            match m {
                Message::FlowMod(f) => {
                    if reject(&f) {
                        self.switch.reject(
                            &bytes,
                            OFPET_FLOW_MOD_FAILED,
                            OFPFMFC_BAD_COMMAND,
                            &mut self.out,
                        );
                        self.flush();
                    } else {
                        self.play(&bytes);
                    }
                    mods.push((xid, f));
                }
                Message::MeterMod(_) => self.play(&bytes),
                Message::BarrierRequest => {
                    self.play(&bytes);
                    self.switch.drain_flow_mods();
                    return mods;
                }
                other => panic!("unexpected message in a flow-mod batch: {other:?}"),
            }
        }
    }

    /// Plays the switch until the controller closes the connection or stays silent for
    /// `quiet`: the emulated switch handles everything. Returns the flow-mods applied.
    pub fn pump(&mut self, quiet: Duration) -> usize {
        let mut applied = 0;
        while let Some(bytes) = self.read_frame(Some(quiet)) {
            Self::parse(&bytes);
            self.play(&bytes);
            applied += self.switch.drain_flow_mods().len();
        }
        applied
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
