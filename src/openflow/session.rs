//! One switch connection as a sans-IO state machine.
//!
//! The driver owns the socket and the clock. It feeds received bytes with
//! [`Session::handle_input`], writes what [`Session::poll_transmit`] shows (then reports how
//! much went out with [`Session::advance_transmit`]), calls [`Session::handle_timeout`] at
//! [`Session::poll_timeout`], hands the current [`Desired`] table to [`Session::sync`] and
//! drains [`Session::poll_event`]. Nothing here reads a clock, touches a socket or panics on
//! what the switch sends.
//!
//! The handshake is HELLO (version bitmap; a switch without 1.3 gets an
//! OFPET_HELLO_FAILED error and the session closes) → FEATURES (datapath id) → SET_CONFIG →
//! PORT_DESC → FLOW stats of all tables (multipart replies reassembled along the MORE flag).
//! The flow dump becomes the *installed* table, and the first sync sends only what differs
//! from the desired one: rules already right are not touched, foreign ones are deleted one
//! by one, nothing is wiped.
//!
//! After that, every sync emits the strict flow-mods for the keys that changed (or, after a
//! full update, for the whole difference) followed by one BARRIER_REQUEST. The installed
//! table is updated as flow-mods are queued, so a sync interrupted by a full output queue
//! resumes where it stopped and a key changed twice meanwhile is sent once, in its latest
//! form. A flow-mod is *confirmed* when the barrier after it is answered; an ERROR whose xid
//! names a flow-mod is reported against that flow-mod (and the entry is dropped from the
//! installed table, so `table` shows it missing instead of pretending).
//!
//! Meters: desired meters are added (or modified) before the flow-mods that may use them
//! and deleted after them. The switch's meters are not read at connect: an ADD answered by
//! OFPMMFC_METER_EXISTS (a meter left by an earlier run) is turned into a MODIFY.
//!
//! Back-pressure: flow-mods are queued only while the output queue is below
//! `max_output`; above it the work stays pending (resumed by the next sync) and
//! [`Session::wants_input`] turns false so the driver stops reading a switch that is not
//! reading us.
//!
//! Reactive MAC learning (optional, [`SessionConfig::learning`]): a PACKET_IN sent by the
//! learning table's miss entry is answered at once, in the input path, by
//! [`learning::answer`] over the session's own fixed-size [`MacTable`], written straight
//! into the output queue (a FLOW_MOD towards the learnt port, or a flooding PACKET_OUT).
//! Nothing is allocated per PACKET_IN: the view borrows the input buffer, the answer
//! extends the reused output buffer, and no event is queued. Answers are not held behind
//! the flow-mod backlog: syncs stop queuing at `max_output`, answers may use a quarter more
//! ([`SessionConfig::packet_in_headroom`]) so a switch being reconciled keeps learning;
//! beyond that a PACKET_IN is counted (`packet_ins_shed`) and dropped — a reactive
//! controller sheds load rather than queue without bound, and the switch sends the next
//! packet of that flow again. Answers start once the HELLOs are exchanged, so a switch that
//! kept its flows (the miss entry included) over a controller restart is served during the
//! handshake. Learnt flows (learning table, learning cookie, idle timeout) are never part
//! of the installed table: the flow dump at connect leaves them out, so reconciliation
//! neither deletes nor rewrites them, and FLOW_REMOVED for them is ignored.
//!
//! Liveness: after `echo_interval` of silence the session sends an ECHO_REQUEST; after
//! `echo_timeout` without any message it closes as a dead peer. A stream whose framing is
//! broken (length below 8, version 0) cannot be resynchronized and closes the session; a
//! well-framed message that does not parse is counted and skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::learning::{self, Answer, LearningConfig, MacTable, PacketInView};
use super::message::{emit_flow_mod, emit_meter_mod};
use super::table::{canonical_match, diff, ofctl_line, Desired, EntryKey, FlowOp, FlowTable, Key};
use super::{
    frame, negotiate, CodecError, DropMeter, ErrorMsg, Features, FlowStats, FlowStatsRequest,
    Header, Hello, Message, MeterModCommand, MultipartReply, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, Port, SwitchConfig, CONTROLLER_MAX_LEN_NO_BUFFER,
};

/// OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE.
const HELLO_FAILED: u16 = 0;
const HELLO_INCOMPATIBLE: u16 = 0;
/// OFPET_METER_MOD_FAILED / OFPMMFC_METER_EXISTS.
const METER_MOD_FAILED: u16 = 12;
const METER_EXISTS: u16 = 1;
/// Flow entries accepted in one flow dump before the switch is considered hostile.
const MAX_DUMP_ENTRIES: usize = 1 << 20;
/// Longest HELLO accepted (real ones are 16 bytes).
const MAX_HELLO: usize = 1024;
/// Ports accepted in one port description.
const MAX_PORTS: usize = 1 << 16;
/// Failed flow-mods remembered for `reflexctl switches`.
const RECENT_ERRORS: usize = 32;
/// Events buffered for the driver (counters keep counting beyond).
const MAX_EVENTS: usize = 1024;
/// Consumed output is compacted away once this much has piled up.
const COMPACT_AT: usize = 64 * 1024;

/// Timers and limits of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Silence before an ECHO_REQUEST is sent.
    pub echo_interval_ns: u64,
    /// Silence before the switch is declared dead (also bounds the handshake).
    pub echo_timeout_ns: u64,
    /// Output bytes queued beyond which no new flow-mods are queued and input is paused
    /// (with learning on, input and PACKET_IN answers go on up to the headroom above it).
    pub max_output: usize,
    /// Reactive MAC learning: how learnt flows are installed (`None` = off).
    pub learning: Option<LearningConfig>,
    /// MACs the per-session learning table holds (fixed memory; the oldest is overwritten).
    pub mac_capacity: usize,
}

impl SessionConfig {
    /// Output bytes above `max_output` that PACKET_IN answers may still use.
    pub fn packet_in_headroom(&self) -> usize {
        if self.learning.is_some() {
            self.max_output / 4
        } else {
            0
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            echo_interval_ns: 5_000_000_000,
            echo_timeout_ns: 15_000_000_000,
            max_output: 1 << 20,
            learning: None,
            mac_capacity: 4096,
        }
    }
}

/// OFPR_NO_MATCH and OFPR_ACTION: the reasons a learning table's miss entry is reported
/// with (1.3 says NO_MATCH for a table-miss entry; some switches say ACTION).
const REASON_NO_MATCH: u8 = 0;
const REASON_ACTION: u8 = 1;

/// Where the session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for the switch's HELLO.
    Hello,
    /// Waiting for FEATURES_REPLY.
    Features,
    /// Waiting for the port descriptions.
    PortDesc,
    /// Reading the switch's flow table.
    FlowDump,
    /// Handshake done: flow-mods flow.
    Ready,
    /// Closed (see [`Session::close_reason`]); only pending output remains.
    Closed,
}

impl Phase {
    /// A lower-case name for displays.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Hello => "hello",
            Phase::Features => "features",
            Phase::PortDesc => "port_desc",
            Phase::FlowDump => "flow_dump",
            Phase::Ready => "ready",
            Phase::Closed => "closed",
        }
    }
}

/// Why a session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The switch's HELLO offers no OpenFlow 1.3.
    NoCommonVersion(CodecError),
    /// The byte stream cannot be cut into messages any more.
    Framing(CodecError),
    /// The first message was not a parsable HELLO.
    BadHello(CodecError),
    /// The first message's header is not a HELLO's (not an OpenFlow peer?).
    NotHello {
        version: u8,
        msg_type: u8,
        length: u16,
    },
    /// Nothing heard for the echo timeout.
    DeadPeer { silent_ms: u64 },
    /// The handshake did not finish within the echo timeout.
    HandshakeTimeout(Phase),
    /// The switch refused the features request.
    FeaturesRefused {
        type_name: &'static str,
        code_name: &'static str,
    },
    /// The switch sent more than we are willing to hold.
    TooLarge(&'static str),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::NoCommonVersion(e) => write!(f, "{e}"),
            CloseReason::Framing(e) => write!(f, "broken framing ({}), cannot resync", e.name()),
            CloseReason::BadHello(e) => {
                write!(f, "first message is not a valid HELLO ({})", e.name())
            }
            CloseReason::NotHello {
                version,
                msg_type,
                length,
            } => write!(
                f,
                "first message is not a HELLO (version {version}, type {msg_type}, length {length}): not an OpenFlow switch?"
            ),
            CloseReason::DeadPeer { silent_ms } => {
                write!(f, "dead peer: nothing received for {silent_ms} ms")
            }
            CloseReason::HandshakeTimeout(p) => {
                write!(f, "handshake timed out waiting in phase {}", p.name())
            }
            CloseReason::FeaturesRefused {
                type_name,
                code_name,
            } => write!(f, "switch refused FEATURES_REQUEST: {type_name}/{code_name}"),
            CloseReason::TooLarge(what) => write!(f, "switch sent too much: {what}"),
        }
    }
}

/// A flow-mod or meter-mod the switch rejected, mapped back from the error's xid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowModError {
    /// xid of the rejected message.
    pub xid: u32,
    /// "add", "modify", "delete", "meter_add", "meter_modify", "meter_delete".
    pub op: &'static str,
    /// The entry in `ovs-ofctl` words, or `meter=N`.
    pub entry: String,
    pub err_type: u16,
    pub code: u16,
    pub type_name: &'static str,
    pub code_name: &'static str,
    /// When the error arrived (driver's clock).
    pub at_ns: u64,
}

/// Something the driver should know (log, count, act on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Handshake complete; `installed` entries were found on the switch.
    Ready {
        dpid: u64,
        ports: usize,
        installed: usize,
    },
    /// A flow-mod or meter-mod failed on the switch.
    FlowModFailed(FlowModError),
    /// An ERROR that names no request of ours in flight.
    SwitchError {
        xid: u32,
        type_name: &'static str,
        code_name: &'static str,
    },
    /// A well-framed message that did not parse (skipped).
    Malformed { msg_type: u8, error: CodecError },
    /// The session closed.
    Closed(CloseReason),
}

/// Counters of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub flow_mods: u64,
    pub flow_mods_confirmed: u64,
    pub meter_mods: u64,
    pub barriers: u64,
    pub barriers_confirmed: u64,
    /// ERROR messages received (flow-mod errors included).
    pub errors: u64,
    /// Flow-mods and meter-mods the switch rejected.
    pub flow_mod_errors: u64,
    /// Well-framed messages that did not parse.
    pub malformed: u64,
    /// Inputs that ended inside a message (normal on TCP, counted for visibility).
    pub partial_inputs: u64,
    pub echo_requests: u64,
    pub echo_replies: u64,
    /// Every PACKET_IN received.
    pub packet_ins: u64,
    /// PACKET_INs answered with a learnt flow (FLOW_MOD, plus PACKET_OUT when unbuffered).
    pub learn_flows: u64,
    /// PACKET_INs answered with a flooding PACKET_OUT (destination unknown or multicast).
    pub learn_floods: u64,
    /// PACKET_INs whose destination sits behind their input port (nothing sent).
    pub learn_hairpins: u64,
    /// PACKET_INs from the learning table with no readable frame or in_port, or with an
    /// unbuffered frame the switch cut short (never sent on).
    pub learn_ignored: u64,
    /// PACKET_INs dropped unanswered because the output queue was full.
    pub packet_ins_shed: u64,
    /// PACKET_INs not from the learning table's miss entry (or with learning off).
    pub packet_ins_other: u64,
    /// Learnt flows found on the switch at connect (left alone).
    pub learnt_at_connect: u64,
    /// ERRORs about a learning answer (a learnt FLOW_MOD or a PACKET_OUT): counted, not
    /// reported one by one (a full learning table would reject every one).
    pub learn_errors: u64,
    /// Messages we do not act on (in this phase or at all).
    pub ignored: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Flow(FlowOp, Key),
    Meter(MeterModCommand, u32, DropMeter),
}

#[derive(Clone, Debug)]
struct InFlight {
    xid: u32,
    target: Target,
}

/// The output queue and xid counter, apart from the tables so both can be borrowed at once.
#[derive(Debug)]
struct Tx {
    buf: Vec<u8>,
    pos: usize,
    next_xid: u32,
    msgs: u64,
}

impl Tx {
    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn send(&mut self, xid: u32, m: &Message) {
        if m.try_emit(xid, &mut self.buf).is_ok() {
            self.msgs += 1;
        }
    }
}

/// True if xid `a` was allotted before `b` (modulo wrap-around).
fn before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// One switch connection.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    input: Vec<u8>,
    tx: Tx,
    features: Option<Features>,
    ports: BTreeMap<u32, Port>,
    handshake_xid: u32,
    dump_flows: Vec<FlowStats>,
    dump_ports: Vec<Port>,
    installed: FlowTable,
    installed_meters: BTreeMap<u32, DropMeter>,
    dirty: BTreeSet<Key>,
    resync: bool,
    inflight: VecDeque<InFlight>,
    barriers: VecDeque<u32>,
    last_rx_ns: u64,
    echo_sent: bool,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
    recent_errors: VecDeque<FlowModError>,
    closed: Option<CloseReason>,
    /// The learning table, when learning is on.
    macs: Option<MacTable>,
}

impl Session {
    /// A new session on a just-accepted connection; our HELLO is queued.
    pub fn new(now_ns: u64, cfg: SessionConfig) -> Session {
        let mut s = Session {
            cfg,
            phase: Phase::Hello,
            input: Vec::new(),
            tx: Tx {
                buf: Vec::with_capacity(4096),
                pos: 0,
                next_xid: 1,
                msgs: 0,
            },
            features: None,
            ports: BTreeMap::new(),
            handshake_xid: 0,
            dump_flows: Vec::new(),
            dump_ports: Vec::new(),
            installed: FlowTable::new(),
            installed_meters: BTreeMap::new(),
            dirty: BTreeSet::new(),
            resync: false,
            inflight: VecDeque::new(),
            barriers: VecDeque::new(),
            last_rx_ns: now_ns,
            echo_sent: false,
            events: VecDeque::new(),
            stats: SessionStats::default(),
            recent_errors: VecDeque::new(),
            closed: None,
            macs: cfg.learning.map(|_| MacTable::new(cfg.mac_capacity)),
        };
        let xid = s.tx.xid();
        s.tx.send(xid, &Message::Hello(Hello::v13()));
        s
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The datapath id, once FEATURES_REPLY arrived.
    pub fn dpid(&self) -> Option<u64> {
        self.features.map(|f| f.datapath_id)
    }

    /// The FEATURES_REPLY contents.
    pub fn features(&self) -> Option<&Features> {
        self.features.as_ref()
    }

    /// Ports by number (from PORT_DESC, kept current by PORT_STATUS).
    pub fn ports(&self) -> &BTreeMap<u32, Port> {
        &self.ports
    }

    /// What we believe is on the switch (sent flow-mods included, rejected ones removed).
    pub fn installed(&self) -> &FlowTable {
        &self.installed
    }

    /// Meters we have set on the switch, by id.
    pub fn installed_meters(&self) -> &BTreeMap<u32, DropMeter> {
        &self.installed_meters
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            msgs_out: self.tx.msgs,
            ..self.stats
        }
    }

    /// Barriers sent and not yet answered.
    pub fn pending_barriers(&self) -> usize {
        self.barriers.len()
    }

    /// Flow-mods and meter-mods sent and not yet confirmed by a barrier.
    pub fn unconfirmed(&self) -> usize {
        self.inflight.len()
    }

    /// The last rejected flow-mods, oldest first.
    pub fn recent_errors(&self) -> impl Iterator<Item = &FlowModError> {
        self.recent_errors.iter()
    }

    /// The MAC learning table, when learning is on.
    pub fn mac_table(&self) -> Option<&MacTable> {
        self.macs.as_ref()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// True once closed; the driver flushes [`poll_transmit`](Self::poll_transmit) (best
    /// effort) and drops the connection.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// True while the driver should read from the switch: open, and the output queue below
    /// its bound (a switch that does not read what we send is not read either).
    pub fn wants_input(&self) -> bool {
        self.closed.is_none() && self.tx.pending() < self.answer_limit()
    }

    /// Output queued beyond which PACKET_INs are shed (and input paused).
    fn answer_limit(&self) -> usize {
        self.cfg
            .max_output
            .saturating_add(self.cfg.packet_in_headroom())
    }

    /// True when the session has flow-mods it could not queue yet (output queue full).
    pub fn has_backlog(&self) -> bool {
        self.phase == Phase::Ready && (self.resync || !self.dirty.is_empty())
    }

    /// Bytes waiting to be written to the switch.
    pub fn poll_transmit(&self) -> &[u8] {
        self.tx.buf.get(self.tx.pos..).unwrap_or(&[])
    }

    /// Reports that the first `n` bytes of [`poll_transmit`](Self::poll_transmit) were
    /// written.
    pub fn advance_transmit(&mut self, n: usize) {
        let n = n.min(self.tx.pending());
        self.stats.bytes_out += n as u64;
        self.tx.pos += n;
        if self.tx.pos == self.tx.buf.len() {
            self.tx.buf.clear();
            self.tx.pos = 0;
        } else if self.tx.pos >= COMPACT_AT {
            self.tx.buf.drain(..self.tx.pos);
            self.tx.pos = 0;
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed.is_some() {
            return None;
        }
        let dead = self.last_rx_ns.saturating_add(self.cfg.echo_timeout_ns);
        if self.phase == Phase::Ready && !self.echo_sent {
            Some(
                self.last_rx_ns
                    .saturating_add(self.cfg.echo_interval_ns)
                    .min(dead),
            )
        } else {
            Some(dead)
        }
    }

    /// Runs the echo keepalive and the dead-peer / handshake deadline.
    pub fn handle_timeout(&mut self, now_ns: u64) {
        if self.closed.is_some() {
            return;
        }
        let silent = now_ns.saturating_sub(self.last_rx_ns);
        if silent >= self.cfg.echo_timeout_ns {
            let reason = if self.phase == Phase::Ready {
                CloseReason::DeadPeer {
                    silent_ms: silent / 1_000_000,
                }
            } else {
                CloseReason::HandshakeTimeout(self.phase)
            };
            self.close(reason);
        } else if self.phase == Phase::Ready
            && !self.echo_sent
            && silent >= self.cfg.echo_interval_ns
        {
            let xid = self.tx.xid();
            self.tx.send(xid, &Message::EchoRequest(Vec::new()));
            self.echo_sent = true;
            self.stats.echo_requests += 1;
        }
    }

    /// Marks an entry whose desired form changed; the next [`sync`](Self::sync) sends what
    /// it takes (if anything) to bring the switch there.
    pub fn mark_dirty(&mut self, key: &Key) {
        if self.phase == Phase::Ready && !self.resync {
            self.dirty.insert(key.clone());
        }
    }

    /// Marks the whole table for comparison (after a full desired update).
    pub fn mark_resync(&mut self) {
        if self.phase == Phase::Ready {
            self.resync = true;
            self.dirty.clear();
        }
    }

    /// Feeds bytes read from the switch.
    pub fn handle_input(&mut self, now_ns: u64, data: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        self.stats.bytes_in += data.len() as u64;
        let mut input = std::mem::take(&mut self.input);
        input.extend_from_slice(data);
        let mut pos = 0;
        while self.closed.is_none() {
            let rest = input.get(pos..).unwrap_or(&[]);
            // The first message must be a HELLO: anything else (an HTTP probe, a TLS
            // client) is refused from its header instead of waiting for a bogus length.
            if self.phase == Phase::Hello {
                if let Ok(h) = Header::parse(rest) {
                    if h.msg_type != super::msg_type::HELLO || usize::from(h.length) > MAX_HELLO {
                        self.close(CloseReason::NotHello {
                            version: h.version,
                            msg_type: h.msg_type,
                            length: h.length,
                        });
                        break;
                    }
                }
            }
            match frame(rest) {
                Ok(Some((header, n))) => {
                    if let Some(bytes) = rest.get(..n) {
                        self.handle_message(now_ns, header, bytes);
                    }
                    pos += n;
                }
                Ok(None) => break,
                Err(e) => {
                    self.close(CloseReason::Framing(e));
                    break;
                }
            }
        }
        input.drain(..pos.min(input.len()));
        if !input.is_empty() && self.closed.is_none() {
            self.stats.partial_inputs += 1;
        }
        if self.closed.is_some() {
            input.clear();
        }
        self.input = input;
    }

    /// Queues the flow-mods (and meter-mods) that bring the switch to `desired`, then a
    /// barrier; returns how many modifications were queued. Does nothing before the
    /// handshake is done or while the output queue is full (the work stays pending).
    pub fn sync(&mut self, desired: &Desired) -> usize {
        if self.phase != Phase::Ready || self.closed.is_some() {
            return 0;
        }
        let limit = self.cfg.max_output;
        if self.tx.pending() >= limit {
            return 0;
        }
        let first_new = self.inflight.len();
        let mut n = 0;
        // Meters first: flow entries may refer to them.
        for (&id, &meter) in &desired.meters {
            let command = match self.installed_meters.get(&id) {
                None => MeterModCommand::Add,
                Some(&m) if m != meter => MeterModCommand::Modify,
                Some(_) => continue,
            };
            self.send_meter(command, id, meter);
            self.installed_meters.insert(id, meter);
            n += 1;
        }
        let mut complete = true;
        if self.resync {
            for (op, key, instructions) in diff(&self.installed, &desired.flows) {
                if self.tx.pending() >= limit {
                    complete = false;
                    break;
                }
                if send_flow(&mut self.tx, &mut self.inflight, op, key, instructions) {
                    self.stats.flow_mods += 1;
                    n += 1;
                }
            }
            if complete {
                self.resync = false;
                self.dirty.clear();
            }
        } else {
            while let Some(key) = self.dirty.pop_first() {
                if self.tx.pending() >= limit {
                    self.dirty.insert(key);
                    complete = false;
                    break;
                }
                let Some(op) = self.installed.op_towards(&desired.flows, &key) else {
                    continue;
                };
                let instructions = desired.flows.get(&key).unwrap_or(&[]);
                if send_flow(&mut self.tx, &mut self.inflight, op, &key, instructions) {
                    self.stats.flow_mods += 1;
                    n += 1;
                }
            }
        }
        // Optimistically record what was queued (an ERROR undoes it).
        for f in self.inflight.iter().skip(first_new) {
            if let Target::Flow(_, key) = &f.target {
                self.installed.copy_entry(&desired.flows, key);
            }
        }
        // Meters last when going away, once no queued entry can still use them.
        if complete {
            let gone: Vec<u32> = self
                .installed_meters
                .keys()
                .filter(|id| !desired.meters.contains_key(id))
                .copied()
                .collect();
            for id in gone {
                self.send_meter(MeterModCommand::Delete, id, DropMeter::default());
                self.installed_meters.remove(&id);
                n += 1;
            }
        }
        if n > 0 {
            self.send_barrier();
        }
        n
    }

    /// Queues a PACKET_OUT carrying `data` itself: switches like OVS report `n_buffers=0`,
    /// so Reflex never refers to a switch buffer. Ignored before the handshake is done.
    pub fn packet_out(&mut self, in_port: u32, actions: Vec<super::Action>, data: &[u8]) {
        if self.phase != Phase::Ready {
            return;
        }
        let xid = self.tx.xid();
        self.tx.send(
            xid,
            &Message::PacketOut(super::PacketOut {
                buffer_id: super::NO_BUFFER,
                in_port,
                actions,
                data: data.to_vec(),
            }),
        );
    }

    /// Queues a METER_MOD written straight into the output buffer (nothing allocated).
    fn send_meter(&mut self, command: MeterModCommand, id: u32, meter: DropMeter) {
        let band = (command != MeterModCommand::Delete).then_some(&meter);
        let xid = self.tx.xid();
        emit_meter_mod(xid, command, id, band, &mut self.tx.buf);
        self.tx.msgs += 1;
        self.stats.meter_mods += 1;
        self.inflight.push_back(InFlight {
            xid,
            target: Target::Meter(command, id, meter),
        });
    }

    fn send_barrier(&mut self) {
        let xid = self.tx.xid();
        self.tx.send(xid, &Message::BarrierRequest);
        self.barriers.push_back(xid);
        self.stats.barriers += 1;
    }

    fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.phase = Phase::Closed;
            self.push_event(SessionEvent::Closed(reason.clone()));
            self.closed = Some(reason);
        }
    }

    fn push_event(&mut self, e: SessionEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn handle_message(&mut self, now_ns: u64, header: Header, bytes: &[u8]) {
        self.stats.msgs_in += 1;
        self.last_rx_ns = now_ns;
        self.echo_sent = false;
        if header.msg_type == super::msg_type::PACKET_IN && self.phase != Phase::Hello {
            // Read through a borrowed view: the reactive path allocates nothing.
            self.on_packet_in(header, bytes);
            return;
        }
        let (xid, msg) = match Message::parse(bytes) {
            Ok(m) => m,
            Err(error) => {
                if self.phase == Phase::Hello {
                    let reason = match error {
                        CodecError::NoCommonVersion { .. } => CloseReason::NoCommonVersion(error),
                        _ => CloseReason::BadHello(error),
                    };
                    self.close(reason);
                    return;
                }
                self.stats.malformed += 1;
                self.push_event(SessionEvent::Malformed {
                    msg_type: header.msg_type,
                    error,
                });
                return;
            }
        };
        match msg {
            Message::Hello(h) if self.phase == Phase::Hello => self.on_hello(&h),
            Message::EchoRequest(payload) => {
                self.tx.send(xid, &Message::EchoReply(payload));
                self.stats.echo_replies += 1;
            }
            Message::EchoReply(_) => {}
            Message::Error(e) => self.on_error(now_ns, xid, &e),
            Message::FeaturesReply(f) if self.phase == Phase::Features => {
                self.features = Some(f);
                // n_buffers is 0 on OVS: ask for whole packets, never a buffer id.
                let x = self.tx.xid();
                self.tx.send(
                    x,
                    &Message::SetConfig(SwitchConfig {
                        flags: 0,
                        miss_send_len: CONTROLLER_MAX_LEN_NO_BUFFER,
                    }),
                );
                self.request_ports();
            }
            Message::MultipartReply(r) if xid == self.handshake_xid => self.on_handshake_reply(r),
            Message::BarrierReply => self.on_barrier(xid),
            Message::PortStatus(ps) => {
                // OFPPR_DELETE = 1; ADD and MODIFY carry the port's current description.
                if ps.reason == 1 {
                    self.ports.remove(&ps.port.port_no);
                } else if self.ports.len() < MAX_PORTS || self.ports.contains_key(&ps.port.port_no)
                {
                    self.ports.insert(ps.port.port_no, ps.port);
                }
            }
            Message::PacketIn(_) => self.stats.packet_ins += 1,
            Message::FlowRemoved(fr)
                if self
                    .cfg
                    .learning
                    .is_some_and(|l| l.is_learnt(fr.table_id, fr.cookie)) => {}
            Message::FlowRemoved(fr) if self.phase == Phase::Ready => {
                let key = Key::new(EntryKey {
                    table_id: fr.table_id,
                    priority: fr.priority,
                    match_: canonical_match(&fr.match_),
                });
                if self.installed.remove(&key) {
                    self.mark_dirty(&key);
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    /// True if an ERROR's data (the start of the offending message) is a learning answer:
    /// a FLOW_MOD with the learning cookie into the learning table, or a PACKET_OUT.
    fn is_learning_answer(&self, data: &[u8]) -> bool {
        let Some(l) = self.cfg.learning else {
            return false;
        };
        match data.get(1) {
            Some(&t) if t == super::msg_type::PACKET_OUT => true,
            Some(&t) if t == super::msg_type::FLOW_MOD => {
                let cookie = data
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                matches!((cookie, data.get(24)), (Some(c), Some(&table)) if l.is_learnt(table, c))
            }
            _ => false,
        }
    }

    /// Answers a learning-table miss from the MAC table, or just counts the PACKET_IN.
    fn on_packet_in(&mut self, header: Header, bytes: &[u8]) {
        self.stats.packet_ins += 1;
        let view = match PacketInView::parse(bytes) {
            Ok(v) => v,
            Err(error) => {
                self.stats.malformed += 1;
                self.push_event(SessionEvent::Malformed {
                    msg_type: header.msg_type,
                    error,
                });
                return;
            }
        };
        let limit = self.answer_limit();
        let (Some(cfg), Some(macs)) = (self.cfg.learning, self.macs.as_mut()) else {
            self.stats.packet_ins_other += 1;
            return;
        };
        let from_miss = view.table_id == cfg.table_id
            && (view.reason == REASON_NO_MATCH || view.reason == REASON_ACTION);
        // From the end of the HELLO exchange on: a switch that kept its learning table
        // across a controller restart is answered while the handshake still runs.
        if !from_miss {
            self.stats.packet_ins_other += 1;
            return;
        }
        if self.tx.pending() >= limit {
            self.stats.packet_ins_shed += 1;
            return;
        }
        // Our own xid: an ERROR about a learnt flow must not name one of our flow-mods.
        let view = PacketInView {
            xid: self.tx.xid(),
            ..view
        };
        match learning::answer(macs, &cfg, &view, &mut self.tx.buf) {
            Answer::Flow { .. } => {
                self.stats.learn_flows += 1;
                self.tx.msgs += if view.buffer_id == super::NO_BUFFER {
                    2
                } else {
                    1
                };
            }
            Answer::Flood => {
                self.stats.learn_floods += 1;
                self.tx.msgs += 1;
            }
            Answer::Drop => self.stats.learn_hairpins += 1,
            Answer::Ignored => self.stats.learn_ignored += 1,
        }
    }

    fn on_hello(&mut self, hello: &Hello) {
        match negotiate(hello) {
            Ok(_) => {
                let xid = self.tx.xid();
                self.tx.send(xid, &Message::FeaturesRequest);
                self.handshake_xid = xid;
                self.phase = Phase::Features;
            }
            Err(e) => {
                let xid = self.tx.xid();
                self.tx.send(
                    xid,
                    &Message::Error(ErrorMsg {
                        err_type: HELLO_FAILED,
                        code: HELLO_INCOMPATIBLE,
                        data: b"Reflex speaks OpenFlow 1.3 (wire version 4) only".to_vec(),
                    }),
                );
                self.close(CloseReason::NoCommonVersion(e));
            }
        }
    }

    fn request_ports(&mut self) {
        let xid = self.tx.xid();
        self.tx.send(
            xid,
            &Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::PortDesc,
            }),
        );
        self.handshake_xid = xid;
        self.phase = Phase::PortDesc;
    }

    fn request_flows(&mut self) {
        let xid = self.tx.xid();
        self.tx.send(
            xid,
            &Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
            }),
        );
        self.handshake_xid = xid;
        self.phase = Phase::FlowDump;
    }

    fn finish_ports(&mut self) {
        self.ports = std::mem::take(&mut self.dump_ports)
            .into_iter()
            .map(|p| (p.port_no, p))
            .collect();
        self.request_flows();
    }

    fn finish_dump(&mut self) {
        let stats = std::mem::take(&mut self.dump_flows);
        // Learnt flows stay on the switch and out of the installed table (never diffed).
        let learnt = |s: &FlowStats| {
            self.cfg
                .learning
                .is_some_and(|l| l.is_learnt(s.table_id, s.cookie))
        };
        self.stats.learnt_at_connect += stats.iter().filter(|s| learnt(s)).count() as u64;
        self.installed = FlowTable::from_stats_without(&stats, learnt);
        self.phase = Phase::Ready;
        self.handshake_xid = 0;
        self.resync = true;
        let e = SessionEvent::Ready {
            dpid: self.dpid().unwrap_or(0),
            ports: self.ports.len(),
            installed: self.installed.len(),
        };
        self.push_event(e);
    }

    fn on_handshake_reply(&mut self, r: MultipartReply) {
        let more = r.more();
        match (self.phase, r.body) {
            (Phase::PortDesc, MultipartReplyBody::PortDesc(ports)) => {
                if self.dump_ports.len() + ports.len() > MAX_PORTS {
                    self.close(CloseReason::TooLarge("port description"));
                    return;
                }
                self.dump_ports.extend(ports);
                if !more {
                    self.finish_ports();
                }
            }
            (Phase::FlowDump, MultipartReplyBody::Flow(flows)) => {
                if self.dump_flows.len() + flows.len() > MAX_DUMP_ENTRIES {
                    self.close(CloseReason::TooLarge("flow dump"));
                    return;
                }
                self.dump_flows.extend(flows);
                if !more {
                    self.finish_dump();
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn on_barrier(&mut self, xid: u32) {
        if !self.barriers.contains(&xid) {
            self.stats.ignored += 1;
            return;
        }
        while let Some(&b) = self.barriers.front() {
            if b != xid && !before(b, xid) {
                break;
            }
            self.barriers.pop_front();
            self.stats.barriers_confirmed += 1;
        }
        while let Some(f) = self.inflight.front() {
            if !before(f.xid, xid) {
                break;
            }
            match f.target {
                Target::Flow(..) => self.stats.flow_mods_confirmed += 1,
                Target::Meter(..) => {}
            }
            self.inflight.pop_front();
        }
    }

    fn on_error(&mut self, now_ns: u64, xid: u32, e: &ErrorMsg) {
        self.stats.errors += 1;
        let (type_name, code_name) = e.names();
        if let Some(i) = self.inflight.iter().position(|f| f.xid == xid) {
            let Some(f) = self.inflight.remove(i) else {
                return;
            };
            let (op, entry) = match &f.target {
                Target::Meter(MeterModCommand::Add, id, meter)
                    if e.err_type == METER_MOD_FAILED && e.code == METER_EXISTS =>
                {
                    // Left over from an earlier run: set it to what we want instead.
                    let (id, meter) = (*id, *meter);
                    self.stats.errors -= 1;
                    self.send_meter(MeterModCommand::Modify, id, meter);
                    self.send_barrier();
                    return;
                }
                Target::Meter(command, id, _) => {
                    if *command != MeterModCommand::Delete {
                        self.installed_meters.remove(id);
                    }
                    let op = match command {
                        MeterModCommand::Add => "meter_add",
                        MeterModCommand::Modify => "meter_modify",
                        MeterModCommand::Delete => "meter_delete",
                    };
                    (op, format!("meter={id}"))
                }
                Target::Flow(op, key) => {
                    let entry = ofctl_line(key, self.installed.get(key).unwrap_or(&[]));
                    if *op != FlowOp::Delete {
                        self.installed.remove(key);
                    }
                    (op.name(), entry.trim_start().to_owned())
                }
            };
            self.stats.flow_mod_errors += 1;
            let err = FlowModError {
                xid,
                op,
                entry,
                err_type: e.err_type,
                code: e.code,
                type_name,
                code_name,
                at_ns: now_ns,
            };
            if self.recent_errors.len() >= RECENT_ERRORS {
                self.recent_errors.pop_front();
            }
            self.recent_errors.push_back(err.clone());
            self.push_event(SessionEvent::FlowModFailed(err));
            return;
        }
        if self.is_learning_answer(&e.data) {
            self.stats.learn_errors += 1;
            return;
        }
        if xid != 0 && xid == self.handshake_xid {
            match self.phase {
                Phase::Features => {
                    self.close(CloseReason::FeaturesRefused {
                        type_name,
                        code_name,
                    });
                    return;
                }
                // Carry on without ports / with an unknown (assumed empty) table: ADD
                // replaces an identical entry, so the first sync is still correct.
                Phase::PortDesc => self.finish_ports(),
                Phase::FlowDump => self.finish_dump(),
                _ => {}
            }
        }
        self.push_event(SessionEvent::SwitchError {
            xid,
            type_name,
            code_name,
        });
    }
}

/// Queues one strict flow-mod and records it in flight; false if it could not be encoded.
fn send_flow(
    tx: &mut Tx,
    inflight: &mut VecDeque<InFlight>,
    op: FlowOp,
    key: &Key,
    instructions: &[super::Instruction],
) -> bool {
    let xid = tx.xid();
    let instructions = if op == FlowOp::Delete {
        &[][..]
    } else {
        instructions
    };
    match emit_flow_mod(
        xid,
        op.command(),
        key.table_id,
        key.priority,
        &key.match_,
        instructions,
        &mut tx.buf,
    ) {
        Ok(_) => {
            tx.msgs += 1;
            inflight.push_back(InFlight {
                xid,
                target: Target::Flow(op, key.clone()),
            });
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
