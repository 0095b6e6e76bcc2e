//! The emulated OpenFlow 1.3 switch: one sans-IO state machine, [`EmulatedSwitch`], over
//! the library codec, and the drivers of it. `reflex-load switch` and `mitigate` drive it
//! from a mio loop and let it answer everything (load tests, controller benchmarks);
//! [`EmulatedSwitch::converse`] plays it against a library `Session` in memory (tests and
//! benchmarks of the session); [`FakeSwitch`] drives it over blocking loopback TCP for
//! integration tests, handing each controller message to the test first so that the test
//! can script the handshake's order, reject flow-mods, hold barriers or stop reading, and
//! compare the flow table with the desired one.
//!
//! [`EmulatedSwitch::receive`] takes the bytes read from the controller connection and
//! `now_ns`, appends every reply to the caller's output buffer and records each flow-mod
//! with the time it arrived. It answers HELLO, FEATURES, ECHO, BARRIER, GET_CONFIG,
//! ROLE and multipart DESC / PORT_DESC / FLOW (from its own table) / TABLE; it applies
//! SET_CONFIG, keeps a flow table that ADD / MODIFY(_STRICT) / DELETE(_STRICT) maintain
//! with OpenFlow's semantics on canonical matches (so a controller's reconciliation sees
//! what it installed), and keeps the meters METER_MOD leaves. Anything else gets an
//! OFPT_ERROR (SET_ASYNC is accepted silently, as Open vSwitch does);
//! [`EmulatedSwitch::reject`] answers any message with an error of the driver's choosing.
//!
//! PACKET_INs ([`EmulatedSwitch::packet_in`]) say where they come from as a real switch
//! would, in one of two ways (see [`EmulatedSwitch::set_pipeline`]): from the catch-all
//! output-to-CONTROLLER entry at the end of the controller's pipeline (the default), or
//! from the entry a walk of the flow table, per in_port, reaches for a frame of a
//! never-seen source, with the frame as the pipeline has it there (VLAN tag pushed); a
//! frame the pipeline does not send to the controller then produces no PACKET_IN.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

mod scripted;

pub use scripted::{entry, FakeSwitch};

use reflex::openflow::session::Session;
use reflex::openflow::table::{canonical_match, EntryKey};
use reflex::openflow::{
    self, frame, negotiate, Action, Desc, ErrorMsg, Features, FlowMod, FlowModCommand, FlowStats,
    Hello, Instruction, Match, Message, MeterMod, MeterModCommand, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, OxmField, PacketOut, Port, Role, SwitchConfig,
    TableStats,
};

/// OFPET_BAD_REQUEST and two of its codes.
const OFPET_BAD_REQUEST: u16 = 1;
const OFPBRC_BAD_TYPE: u16 = 1;
const OFPBRC_BAD_MULTIPART: u16 = 2;
/// OFPET_FLOW_MOD_FAILED and its OFPFMFC_BAD_COMMAND code (see [`EmulatedSwitch::reject`]).
pub const OFPET_FLOW_MOD_FAILED: u16 = 5;
pub const OFPFMFC_BAD_COMMAND: u16 = 6;
/// Largest multipart body we put in one reply by default (the 16-bit length bounds the
/// message; see [`EmulatedSwitch::set_multipart_chunk`]).
const MULTIPART_CHUNK: usize = 60_000;
/// OFPM_ALL: a METER_MOD DELETE for every meter.
const METER_ALL: u32 = 0xffff_ffff;
/// OFPT_SET_ASYNC, which Open vSwitch accepts without a reply.
const OFPT_SET_ASYNC: u8 = 28;

/// A flow-mod as the emulated switch received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFlowMod {
    /// When the bytes that completed it were read (the driver's clock).
    pub at_ns: u64,
    pub xid: u32,
    pub flow_mod: FlowMod,
}

impl ReceivedFlowMod {
    /// Whether this flow-mod blocks IPv4 source `addr`: an add or modify whose match pins
    /// `ipv4_src` to exactly `addr` and whose instructions output nowhere and go nowhere.
    pub fn blocks(&self, addr: Ipv4Addr) -> bool {
        is_block_of(&self.flow_mod, addr)
    }
}

/// See [`ReceivedFlowMod::blocks`].
pub fn is_block_of(fm: &FlowMod, addr: Ipv4Addr) -> bool {
    let installs = matches!(
        fm.command,
        FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict
    );
    let pins = fm.match_.fields.iter().any(|f| match f {
        OxmField::Ipv4Src { addr: a, mask } => {
            *a == addr && mask.is_none_or(|m| m == Ipv4Addr::BROADCAST)
        }
        _ => false,
    });
    let forwards = fm.instructions.iter().any(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a
            .iter()
            .any(|x| matches!(x, Action::Output { .. } | Action::Group(_))),
        Instruction::GotoTable(_) => true,
        _ => false,
    });
    installs && pins && !forwards
}

/// Counters of one emulated switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwitchCounters {
    pub messages_in: u64,
    pub flow_mods: u64,
    pub packet_outs: u64,
    pub barriers: u64,
    pub echoes: u64,
    pub multiparts: u64,
    pub errors_sent: u64,
    pub errors_received: u64,
    pub packet_ins_sent: u64,
}

/// Why the session with the controller cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Codec(#[from] openflow::CodecError),
}

/// The state of one emulated switch.
pub struct EmulatedSwitch {
    datapath_id: u64,
    ports: Vec<Port>,
    config: SwitchConfig,
    table: Vec<FlowStats>,
    /// Where each (table, priority, canonical match) sits in `table`: strict commands find
    /// their entry in O(1), so a controller that installs a flow per learnt host does not
    /// make the switch quadratic, and a match written in another field order is the same
    /// entry, as on a real switch.
    index: HashMap<EntryKey, usize>,
    /// Meters by id, as METER_MODs left them.
    meters: BTreeMap<u32, MeterMod>,
    /// Largest body of one FLOW stats reply, in bytes.
    multipart_chunk: usize,
    negotiated: bool,
    features_replied: bool,
    next_xid: u32,
    /// Flow-mods received, in order, until drained.
    flow_mods: Vec<ReceivedFlowMod>,
    /// Responses (flow-mods and packet-outs) received; cbench counts these.
    responses: u64,
    /// Responses that refer only to the PACKET_IN before the latest (see `answers`).
    stale: u64,
    /// The latest PACKET_IN sent and the one before it.
    last_in: Option<SentPacketIn>,
    prev_in: Option<SentPacketIn>,
    counters: SwitchCounters,
    /// Buffer PACKET_IN frames (cbench's default) instead of sending them unbuffered.
    buffered: bool,
    next_buffer: u32,
    /// Where PACKET_INs come from: derived from the flow table after every flow-mod that
    /// can change it.
    origin: PacketInOrigin,
    /// Walk the pipeline per in_port instead of taking the catch-all entry.
    pipeline: bool,
    /// Pipeline mode: the origin of a new frame per in_port (indexed by port number); None
    /// when the pipeline does not send it to the controller.
    port_origins: Vec<Option<PacketInOrigin>>,
}

/// What identifies a PACKET_IN in the controller's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SentPacketIn {
    eth_src: [u8; 6],
    buffer_id: u32,
}

impl SentPacketIn {
    /// Whether a flow-mod names this PACKET_IN: its buffer, or its source MAC exactly as
    /// eth_src or eth_dst (a learning controller's rules for that host).
    fn named_by_flow_mod(&self, fm: &FlowMod) -> bool {
        let mac = |addr: &[u8; 6], mask: &Option<[u8; 6]>| {
            *addr == self.eth_src && mask.is_none_or(|m| m == [0xff; 6])
        };
        (fm.buffer_id != openflow::NO_BUFFER && fm.buffer_id == self.buffer_id)
            || fm.match_.fields.iter().any(|f| match f {
                OxmField::EthSrc { addr, mask } | OxmField::EthDst { addr, mask } => {
                    mac(addr, mask)
                }
                _ => false,
            })
    }

    /// Whether a packet-out names this PACKET_IN: its buffer, or a frame from its source.
    fn named_by_packet_out(&self, po: &PacketOut) -> bool {
        (po.buffer_id != openflow::NO_BUFFER && po.buffer_id == self.buffer_id)
            || po.data.get(6..12) == Some(&self.eth_src[..])
    }
}

/// Buffers announced in FEATURES_REPLY when PACKET_INs are buffered (ids cycle through them).
pub const N_BUFFERS: u32 = 256;

/// OFPR_NO_MATCH and OFPR_ACTION (OpenFlow 1.3 packet-in reasons).
pub const REASON_NO_MATCH: u8 = 0;
pub const REASON_ACTION: u8 = 1;

/// The table, cookie and reason a PACKET_IN carries: those of the flow entry that sent the
/// packet to the controller, as a real switch reports them; and the 802.1Q tag the frame
/// carries at that point of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInOrigin {
    pub table_id: u8,
    pub cookie: u64,
    pub reason: u8,
    /// VLAN id of the tag pushed by the pipeline before the output, if any.
    pub vlan: Option<u16>,
}

impl PacketInOrigin {
    /// What the switch reports before any controller rule sends packets to it (the old
    /// fixed behaviour: table 0, cookie all ones, no match).
    pub const DEFAULT: PacketInOrigin = PacketInOrigin {
        table_id: 0,
        cookie: u64::MAX,
        reason: REASON_NO_MATCH,
        vlan: None,
    };

    /// The origin of a new frame's PACKET_IN under `table`: the catch-all entry (empty
    /// match) that outputs to CONTROLLER in the highest table, i.e. the end of a pipeline
    /// that a frame of a never-seen MAC falls through to; a priority-0 one is a table miss
    /// (OFPR_NO_MATCH), any other an explicit action (OFPR_ACTION). Without one, DEFAULT.
    pub fn from_table(table: &[FlowStats]) -> PacketInOrigin {
        let to_controller = |e: &FlowStats| {
            e.instructions.iter().any(|i| match i {
                Instruction::ApplyActions(a) | Instruction::WriteActions(a) => {
                    a.iter().any(is_to_controller)
                }
                _ => false,
            })
        };
        table
            .iter()
            .filter(|e| e.match_.fields.is_empty() && to_controller(e))
            .max_by_key(|e| (e.table_id, std::cmp::Reverse(e.priority)))
            .map_or(PacketInOrigin::DEFAULT, |e| PacketInOrigin {
                table_id: e.table_id,
                cookie: e.cookie,
                reason: if e.priority == 0 {
                    REASON_NO_MATCH
                } else {
                    REASON_ACTION
                },
                vlan: None,
            })
    }

    /// The origin of a PACKET_IN for a new frame ([`NewFrame`]) arriving untagged on
    /// `in_port`, found as a switch finds it: from table 0, the highest-priority entry whose
    /// match the frame satisfies, its apply/write actions applied in order (push VLAN, set
    /// vlan_vid, pop VLAN) until one outputs to CONTROLLER, then its goto-table. The reason
    /// is OFPR_NO_MATCH for a table-miss entry (priority 0, empty match), else OFPR_ACTION.
    /// None when the pipeline drops the frame or forwards it elsewhere.
    pub fn walk(table: &[FlowStats], in_port: u32) -> Option<PacketInOrigin> {
        let mut vlan: Option<u16> = None;
        let mut table_id = 0u8;
        loop {
            let at = Some((in_port, vlan));
            let entry = table
                .iter()
                .filter(|e| e.table_id == table_id && NewFrame::matches(&e.match_, at))
                .fold(None::<&FlowStats>, |best, e| match best {
                    Some(b) if b.priority >= e.priority => Some(b),
                    _ => Some(e),
                })?;
            let mut next = None;
            for i in &entry.instructions {
                match i {
                    Instruction::ApplyActions(a) | Instruction::WriteActions(a) => {
                        for x in a {
                            match x {
                                Action::PushVlan(_) => vlan = Some(vlan.unwrap_or(0)),
                                Action::PopVlan => vlan = None,
                                Action::SetField(OxmField::VlanVid { vid, .. }) => {
                                    vlan = vlan.map(|_| vid & 0x0fff)
                                }
                                x if is_to_controller(x) => {
                                    let miss =
                                        entry.priority == 0 && entry.match_.fields.is_empty();
                                    return Some(PacketInOrigin {
                                        table_id,
                                        cookie: entry.cookie,
                                        reason: if miss { REASON_NO_MATCH } else { REASON_ACTION },
                                        vlan,
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                    Instruction::GotoTable(t) => next = Some(*t),
                    _ => {}
                }
            }
            // Gotos must go forward (OpenFlow 1.3, 5.1): anything else ends the walk.
            match next {
                Some(t) if t > table_id => table_id = t,
                _ => return None,
            }
        }
    }
}

fn is_to_controller(a: &Action) -> bool {
    matches!(a, Action::Output { port, .. } if *port == openflow::port::CONTROLLER)
}

/// The frame every PACKET_IN carries (see [`EmulatedSwitch::packet_in`]), as flow matches
/// see it: IPv4/UDP, addresses and ports 0, to [`NewFrame::ETH_DST`], from a source MAC the
/// controller has never seen (unicast, locally administered; nothing else is known of it).
pub struct NewFrame;

impl NewFrame {
    pub const ETH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    /// First byte of every emulated source MAC: unicast, locally administered.
    const ETH_SRC_FIRST: u8 = 0x02;

    /// Whether a new frame satisfies `m`. `at` is (in_port, VLAN tag) at that point of the
    /// pipeline; None: unknown, so in_port and vlan_vid fields are taken as satisfied (a
    /// false answer then means no new frame ever satisfies `m`, wherever it is).
    pub fn matches(m: &Match, at: Option<(u32, Option<u16>)>) -> bool {
        m.fields.iter().all(|f| Self::field(f, at))
    }

    fn field(f: &OxmField, at: Option<(u32, Option<u16>)>) -> bool {
        let masked6 = |v: [u8; 6], addr: [u8; 6], mask: Option<[u8; 6]>| {
            let m = mask.unwrap_or([0xff; 6]);
            (0..6).all(|i| v[i] & m[i] == addr[i] & m[i])
        };
        let zero_v4 = |addr: Ipv4Addr, mask: Option<Ipv4Addr>| {
            u32::from(addr) & u32::from(mask.unwrap_or(Ipv4Addr::BROADCAST)) == 0
        };
        match *f {
            OxmField::InPort(p) => at.is_none_or(|(port, _)| port == p),
            OxmField::VlanVid { vid, mask } => at.is_none_or(|(_, vlan)| {
                let v = vlan.map_or(0, |v| 0x1000 | v);
                let m = mask.unwrap_or(0x1fff);
                v & m == vid & m
            }),
            OxmField::EthDst { addr, mask } => masked6(Self::ETH_DST, addr, mask),
            // An unknown source satisfies only a mask on bits of the first byte (the
            // group and local bits): anything finer is about particular hosts.
            OxmField::EthSrc { addr, mask } => match mask {
                Some(m) if m[1..].iter().all(|b| *b == 0) => {
                    Self::ETH_SRC_FIRST & m[0] == addr[0] & m[0]
                }
                _ => false,
            },
            OxmField::EthType(t) => t == 0x0800,
            OxmField::IpProto(p) => p == 17,
            OxmField::Ipv4Src { addr, mask } | OxmField::Ipv4Dst { addr, mask } => {
                zero_v4(addr, mask)
            }
            OxmField::UdpSrc(p) | OxmField::UdpDst(p) => p == 0,
            _ => false,
        }
    }
}

impl EmulatedSwitch {
    /// A switch with `datapath_id` and ports `1..=ports`, flow table empty.
    pub fn new(datapath_id: u64, ports: u32) -> EmulatedSwitch {
        let n_ports = ports;
        let ports = (1..=ports)
            .map(|n| Port {
                port_no: n,
                hw_addr: [
                    0x02,
                    0xee,
                    (datapath_id >> 8) as u8,
                    datapath_id as u8,
                    0,
                    n as u8,
                ],
                name: format!("s{datapath_id}-eth{n}"),
                curr: 0x800 | 0x2000, // 10 Gb/s full duplex, copper
                curr_speed: 10_000_000,
                max_speed: 10_000_000,
                ..Port::default()
            })
            .collect();
        EmulatedSwitch {
            datapath_id,
            ports,
            config: SwitchConfig {
                flags: 0,
                miss_send_len: 128,
            },
            table: Vec::new(),
            index: HashMap::new(),
            meters: BTreeMap::new(),
            multipart_chunk: MULTIPART_CHUNK,
            negotiated: false,
            features_replied: false,
            next_xid: 1,
            flow_mods: Vec::new(),
            responses: 0,
            stale: 0,
            last_in: None,
            prev_in: None,
            counters: SwitchCounters::default(),
            buffered: false,
            next_buffer: 0,
            origin: PacketInOrigin::DEFAULT,
            pipeline: false,
            port_origins: vec![None; n_ports as usize + 1],
        }
    }

    /// Buffered PACKET_INs: FEATURES_REPLY announces [`N_BUFFERS`] buffers and each
    /// PACKET_IN carries a buffer id (cycling) as well as the frame, as cbench sends them.
    /// Set before the FEATURES exchange.
    pub fn set_buffered(&mut self, on: bool) {
        self.buffered = on;
    }

    /// Pipeline mode: each PACKET_IN comes from the entry that [`PacketInOrigin::walk`]
    /// reaches for its in_port (table, cookie, reason, and the VLAN tag the frame carries
    /// there), as Open vSwitch would send it under a multi-table pipeline such as Faucet's,
    /// and there is none while the pipeline does not send new frames to the controller (as
    /// before the controller installed it). Off (the default): from the catch-all entry
    /// ([`PacketInOrigin::from_table`]), untagged, and always sent.
    pub fn set_pipeline(&mut self, on: bool) {
        self.pipeline = on;
        self.refresh_origins();
    }

    /// Where the next PACKET_IN from port 1 will say it comes from (see
    /// [`EmulatedSwitch::packet_in_origin_at`]).
    pub fn packet_in_origin(&self) -> Option<PacketInOrigin> {
        self.packet_in_origin_at(1)
    }

    /// Where the next PACKET_IN from `in_port` will say it comes from; None in pipeline
    /// mode when the pipeline does not send a new frame from `in_port` to the controller.
    pub fn packet_in_origin_at(&self, in_port: u32) -> Option<PacketInOrigin> {
        if self.pipeline {
            self.port_origins.get(in_port as usize).copied().flatten()
        } else {
            Some(self.origin)
        }
    }

    /// Recomputes where PACKET_INs come from (in pipeline mode, for every port).
    fn refresh_origins(&mut self) {
        if self.pipeline {
            for (p, o) in self.port_origins.iter_mut().enumerate() {
                *o = PacketInOrigin::walk(&self.table, p as u32);
            }
        } else {
            self.origin = PacketInOrigin::from_table(&self.table);
        }
    }

    /// After `fm` was applied: recomputes the origins only when `fm` can have changed them.
    /// Whatever `fm` adds, modifies or deletes has a match containing all of `fm`'s fields,
    /// so when no new frame satisfies `fm`'s match the entries it touched are on no new
    /// frame's path; and only empty-match entries are catch-alls.
    fn origins_after(&mut self, fm: &FlowMod) {
        let may_change = if self.pipeline {
            NewFrame::matches(&fm.match_, None)
        } else {
            fm.match_.fields.is_empty()
        };
        if may_change {
            self.refresh_origins();
        }
    }

    /// Preloads `n` entries (drops of 10.0.x.y in table 0) that FLOW stats will report,
    /// as a switch that kept its flows while the controller was away.
    pub fn with_table(mut self, n: u32) -> EmulatedSwitch {
        let entries: Vec<FlowStats> = (0..n)
            .map(|i| FlowStats {
                table_id: 0,
                duration_sec: 1,
                duration_nsec: 0,
                priority: 100,
                idle_timeout: 0,
                hard_timeout: 0,
                flags: 0,
                cookie: u64::from(i),
                packet_count: 0,
                byte_count: 0,
                match_: Match {
                    fields: vec![
                        OxmField::EthType(0x0800),
                        OxmField::Ipv4Src {
                            addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i + 1),
                            mask: None,
                        },
                    ],
                },
                instructions: Vec::new(),
            })
            .collect();
        self.load_table(&entries);
        self
    }

    /// Replaces the flow table with `entries` as they are (cookies, counters and all, so
    /// FLOW stats report them so), as a switch that kept its flows while the controller
    /// was away; of entries with the same (table, priority, match) the last stays.
    pub fn load_table(&mut self, entries: &[FlowStats]) {
        self.table.clear();
        self.index.clear();
        for e in entries {
            self.put(e.clone());
        }
        self.refresh_origins();
    }

    /// FLOW stats replies carry at most `bytes` of entries each (at least one entry), with
    /// REPLY_MORE on all but the last; 1 puts every entry in a reply of its own, to
    /// exercise a controller's reassembly.
    pub fn set_multipart_chunk(&mut self, bytes: usize) {
        self.multipart_chunk = bytes;
    }

    fn key_of(e: &FlowStats) -> EntryKey {
        EntryKey::new(e.table_id, e.priority, &e.match_)
    }

    /// Adds `entry`, replacing the one with the same key.
    fn put(&mut self, entry: FlowStats) {
        let key = Self::key_of(&entry);
        match self.index.get(&key) {
            Some(&i) => self.table[i] = entry,
            None => {
                self.index.insert(key, self.table.len());
                self.table.push(entry);
            }
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .table
            .iter()
            .enumerate()
            .map(|(i, e)| (Self::key_of(e), i))
            .collect();
    }

    /// The datapath id announced in FEATURES_REPLY.
    pub fn datapath_id(&self) -> u64 {
        self.datapath_id
    }

    /// Whether the controller asked for and got our features (the handshake is done).
    pub fn connected(&self) -> bool {
        self.features_replied
    }

    /// The current switch configuration (as SET_CONFIG left it).
    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    /// Entries in the emulated flow table.
    pub fn table(&self) -> &[FlowStats] {
        &self.table
    }

    /// Meters by id.
    pub fn meters(&self) -> &BTreeMap<u32, MeterMod> {
        &self.meters
    }

    /// Counters so far.
    pub fn counters(&self) -> SwitchCounters {
        self.counters
    }

    /// Flow-mods and packet-outs received so far.
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Responses that may answer the latest PACKET_IN: all but those that name only the
    /// PACKET_IN before it (its source MAC or buffer). A controller that sends several
    /// messages per PACKET_IN (Faucet: a flow-mod for the source, one for the destination)
    /// would otherwise have its second taken as the answer to the next PACKET_IN; one that
    /// sends one per PACKET_IN, or messages that name no PACKET_IN (its pipeline), counts
    /// as with [`EmulatedSwitch::responses`].
    pub fn answers(&self) -> u64 {
        self.responses - self.stale
    }

    /// Takes the flow-mods recorded since the last call.
    pub fn drain_flow_mods(&mut self) -> Vec<ReceivedFlowMod> {
        std::mem::take(&mut self.flow_mods)
    }

    fn xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1);
        self.next_xid
    }

    /// Our HELLO, to send as soon as the connection is up.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let xid = self.xid();
        Message::Hello(Hello::v13()).emit(xid, out);
    }

    /// Appends a PACKET_IN of a 64-byte IPv4/UDP frame from `eth_src` on port `in_port`, as
    /// cbench does with one new MAC per packet, to 02:00:00:00:00:01. Its table, cookie and
    /// reason are those of the entry that sends unknown frames to the controller (see
    /// [`EmulatedSwitch::set_pipeline`]); when the pipeline pushed a VLAN tag before that,
    /// the frame carries it (802.1Q, 68 bytes). Buffered or not as set. Returns false, and
    /// appends nothing, when in pipeline mode the pipeline does not send the frame to the
    /// controller. Allocates nothing beyond growing `out`.
    pub fn packet_in(&mut self, eth_src: [u8; 6], in_port: u32, out: &mut Vec<u8>) -> bool {
        let Some(o) = self.packet_in_origin_at(in_port) else {
            return false;
        };
        let tag = if o.vlan.is_some() { 4 } else { 0 };
        let frame = 64 + tag;
        let xid = self.xid();
        let buffer_id = if self.buffered {
            let b = self.next_buffer;
            self.next_buffer = (b + 1) % N_BUFFERS;
            b
        } else {
            openflow::NO_BUFFER
        };
        // Header, buffer_id, total_len, reason, table_id, cookie; match (in_port, padded
        // to 16 bytes); 2 bytes of padding; the frame.
        let len = 8 + 16 + 16 + 2 + frame;
        out.reserve(len);
        out.extend_from_slice(&[openflow::VERSION, 10]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&xid.to_be_bytes());
        out.extend_from_slice(&buffer_id.to_be_bytes());
        out.extend_from_slice(&(frame as u16).to_be_bytes());
        out.extend_from_slice(&[o.reason, o.table_id]);
        out.extend_from_slice(&o.cookie.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 12, 0x80, 0, 0, 4]); // OXM match, in_port
        out.extend_from_slice(&in_port.to_be_bytes());
        out.extend_from_slice(&[0; 4 + 2]);
        let start = out.len();
        out.extend_from_slice(&NewFrame::ETH_DST);
        out.extend_from_slice(&eth_src);
        if let Some(vid) = o.vlan {
            out.extend_from_slice(&0x8100u16.to_be_bytes());
            out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        out.resize(start + frame, 0);
        out[start + tag + 14] = 0x45;
        out[start + tag + 23] = 17;
        self.counters.packet_ins_sent += 1;
        self.prev_in = self.last_in;
        self.last_in = Some(SentPacketIn { eth_src, buffer_id });
        true
    }

    /// Plays this switch against the library's controller side in memory: sends its HELLO,
    /// then passes bytes both ways until `session` has nothing more to send (for a new
    /// session, the handshake up to Ready). What the session queues afterwards (a sync's
    /// flow-mods) stays queued for the caller.
    pub fn converse(&mut self, now_ns: u64, session: &mut Session) -> Result<(), SwitchError> {
        let mut to_session = Vec::new();
        self.start(&mut to_session);
        loop {
            if !to_session.is_empty() {
                session.handle_input(now_ns, &to_session);
                to_session.clear();
            }
            let from_session = session.poll_transmit();
            if from_session.is_empty() {
                return Ok(());
            }
            let used = self.receive(now_ns, from_session, &mut to_session)?;
            if used == 0 {
                // Only part of a message queued: nothing either side can do.
                return Ok(());
            }
            session.advance_transmit(used);
        }
    }

    /// Counts a response that names only the PACKET_IN before the latest one as stale.
    fn note_response(&mut self, names: impl Fn(&SentPacketIn) -> bool) {
        self.responses += 1;
        let prev = self.prev_in.as_ref().is_some_and(&names);
        if prev && !self.last_in.as_ref().is_some_and(&names) {
            self.stale += 1;
        }
    }

    /// Handles every whole message at the start of `input`; returns the bytes consumed
    /// (the rest is a partial message to keep for the next read).
    pub fn receive(
        &mut self,
        now_ns: u64,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, SwitchError> {
        let mut used = 0;
        while let Some((_, n)) = frame(&input[used..])? {
            let bytes = &input[used..used + n];
            used += n;
            self.counters.messages_in += 1;
            match Message::parse(bytes) {
                Ok((xid, msg)) => self.handle(now_ns, xid, msg, bytes, out)?,
                Err(openflow::CodecError::BadVersion) if !self.negotiated => {
                    return Err(openflow::CodecError::BadVersion.into())
                }
                Err(_) => self.error(OFPBRC_BAD_TYPE, bytes, out),
            }
        }
        Ok(used)
    }

    fn error(&mut self, code: u16, offending: &[u8], out: &mut Vec<u8>) {
        self.emit_error(offending, OFPET_BAD_REQUEST, code, out);
    }

    /// Answers the message `offending` (its bytes, as read) with an OFPT_ERROR of
    /// `err_type` and `code` carrying its first 64 bytes, instead of handling it: a driver's
    /// way to make a flow-mod fail (e.g. [`OFPET_FLOW_MOD_FAILED`]).
    pub fn reject(&mut self, offending: &[u8], err_type: u16, code: u16, out: &mut Vec<u8>) {
        self.counters.messages_in += 1;
        self.emit_error(offending, err_type, code, out);
    }

    fn emit_error(&mut self, offending: &[u8], err_type: u16, code: u16, out: &mut Vec<u8>) {
        let xid = openflow::Header::parse(offending).map_or(0, |h| h.xid);
        let data = offending[..offending.len().min(64)].to_vec();
        Message::Error(ErrorMsg {
            err_type,
            code,
            data,
        })
        .emit(xid, out);
        self.counters.errors_sent += 1;
    }

    fn handle(
        &mut self,
        now_ns: u64,
        xid: u32,
        msg: Message,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SwitchError> {
        match msg {
            Message::Hello(h) => {
                negotiate(&h)?;
                self.negotiated = true;
            }
            Message::EchoRequest(data) => {
                self.counters.echoes += 1;
                Message::EchoReply(data).emit(xid, out);
            }
            Message::EchoReply(_) => {}
            Message::FeaturesRequest => {
                Message::FeaturesReply(Features {
                    datapath_id: self.datapath_id,
                    n_buffers: if self.buffered { N_BUFFERS } else { 0 },
                    n_tables: 254,
                    auxiliary_id: 0,
                    capabilities: 0x4f,
                    reserved: 0,
                })
                .emit(xid, out);
                self.features_replied = true;
            }
            Message::GetConfigRequest => {
                Message::GetConfigReply(self.config).emit(xid, out);
            }
            Message::SetConfig(c) => self.config = c,
            Message::BarrierRequest => {
                self.counters.barriers += 1;
                Message::BarrierReply.emit(xid, out);
            }
            Message::RoleRequest(r) => {
                Message::RoleReply(Role {
                    role: if r.role == openflow::role::NOCHANGE {
                        openflow::role::EQUAL
                    } else {
                        r.role
                    },
                    generation_id: r.generation_id,
                })
                .emit(xid, out);
            }
            Message::FlowMod(fm) => {
                self.counters.flow_mods += 1;
                self.note_response(|p| p.named_by_flow_mod(&fm));
                self.apply(&fm);
                self.origins_after(&fm);
                self.flow_mods.push(ReceivedFlowMod {
                    at_ns: now_ns,
                    xid,
                    flow_mod: fm,
                });
            }
            Message::PacketOut(po) => {
                self.counters.packet_outs += 1;
                self.note_response(|p| p.named_by_packet_out(&po));
            }
            Message::MeterMod(mm) => self.meter_mod(mm),
            Message::Other {
                msg_type: OFPT_SET_ASYNC,
                ..
            } => {}
            Message::Error(_) => self.counters.errors_received += 1,
            Message::MultipartRequest(req) => {
                self.counters.multiparts += 1;
                match req.body {
                    MultipartRequestBody::Desc => reply(
                        xid,
                        MultipartReplyBody::Desc(Desc {
                            mfr_desc: "Reflex".into(),
                            hw_desc: "reflex-load emulated switch".into(),
                            sw_desc: env!("CARGO_PKG_VERSION").into(),
                            serial_num: format!("{:016x}", self.datapath_id),
                            dp_desc: format!("emulated datapath {}", self.datapath_id),
                        }),
                        0,
                        out,
                    ),
                    MultipartRequestBody::PortDesc => reply(
                        xid,
                        MultipartReplyBody::PortDesc(self.ports.clone()),
                        0,
                        out,
                    ),
                    MultipartRequestBody::Table => reply(
                        xid,
                        MultipartReplyBody::Table(vec![TableStats {
                            table_id: 0,
                            active_count: self.table.len() as u32,
                            lookup_count: 0,
                            matched_count: 0,
                        }]),
                        0,
                        out,
                    ),
                    MultipartRequestBody::Flow(f) => {
                        let entries: Vec<FlowStats> = self
                            .table
                            .iter()
                            .filter(|e| {
                                f.table_id == openflow::TABLE_ALL || e.table_id == f.table_id
                            })
                            .cloned()
                            .collect();
                        flow_replies(xid, entries, self.multipart_chunk, out);
                    }
                    _ => self.error(OFPBRC_BAD_MULTIPART, bytes, out),
                }
            }
            _ => self.error(OFPBRC_BAD_TYPE, bytes, out),
        }
        Ok(())
    }

    /// Applies a flow-mod as OpenFlow 1.3 says (section 6.4): ADD replaces the entry with
    /// the same (table, priority, match); the strict commands touch that entry alone; the
    /// non-strict ones every entry of the table (any table, for DELETE to TABLE_ALL) whose
    /// match is at least as specific as the flow-mod's, whatever its priority. A MODIFY
    /// that finds nothing changes nothing. (Out-port and out-group filters are not kept.)
    fn apply(&mut self, fm: &FlowMod) {
        let key = || EntryKey::new(fm.table_id, fm.priority, &fm.match_);
        match fm.command {
            FlowModCommand::Add => self.put(FlowStats {
                table_id: fm.table_id,
                duration_sec: 0,
                duration_nsec: 0,
                priority: fm.priority,
                idle_timeout: fm.idle_timeout,
                hard_timeout: fm.hard_timeout,
                flags: fm.flags,
                cookie: fm.cookie,
                packet_count: 0,
                byte_count: 0,
                match_: fm.match_.clone(),
                instructions: fm.instructions.clone(),
            }),
            FlowModCommand::ModifyStrict => {
                if let Some(&i) = self.index.get(&key()) {
                    self.table[i].instructions = fm.instructions.clone();
                }
            }
            FlowModCommand::Modify => {
                let within = Covering::new(fm.table_id, &fm.match_);
                for e in &mut self.table {
                    if within.covers(e) {
                        e.instructions = fm.instructions.clone();
                    }
                }
            }
            FlowModCommand::DeleteStrict => {
                if let Some(i) = self.index.remove(&key()) {
                    self.table.swap_remove(i);
                    if let Some(moved) = self.table.get(i) {
                        self.index.insert(Self::key_of(moved), i);
                    }
                }
            }
            FlowModCommand::Delete => {
                let within = Covering::new(fm.table_id, &fm.match_);
                let before = self.table.len();
                self.table.retain(|e| !within.covers(e));
                if self.table.len() != before {
                    self.reindex();
                }
            }
        }
    }

    fn meter_mod(&mut self, mm: MeterMod) {
        match mm.command {
            MeterModCommand::Add | MeterModCommand::Modify => {
                self.meters.insert(mm.meter_id, mm);
            }
            MeterModCommand::Delete if mm.meter_id == METER_ALL => self.meters.clear(),
            MeterModCommand::Delete => {
                self.meters.remove(&mm.meter_id);
            }
        }
    }
}

/// What a non-strict flow-mod reaches: the entries of its table (every table for
/// TABLE_ALL) whose canonical match holds every field of its canonical match.
struct Covering {
    table_id: u8,
    fields: Vec<OxmField>,
}

impl Covering {
    fn new(table_id: u8, m: &Match) -> Covering {
        Covering {
            table_id,
            fields: canonical_match(m).fields,
        }
    }

    fn covers(&self, e: &FlowStats) -> bool {
        if self.table_id != openflow::TABLE_ALL && e.table_id != self.table_id {
            return false;
        }
        self.fields.is_empty() || {
            let theirs = canonical_match(&e.match_).fields;
            self.fields.iter().all(|f| theirs.contains(f))
        }
    }
}

fn reply(xid: u32, body: MultipartReplyBody, flags: u16, out: &mut Vec<u8>) {
    Message::MultipartReply(MultipartReply { flags, body }).emit(xid, out);
}

/// FLOW stats in as many replies as the 16-bit length needs, REPLY_MORE on all but the last.
fn flow_replies(xid: u32, entries: Vec<FlowStats>, chunk_bytes: usize, out: &mut Vec<u8>) {
    let entry_len = |e: &FlowStats| {
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(vec![e.clone()]),
        })
        .encoded_len()
            - 16
    };
    let mut chunk = Vec::new();
    let mut size = 0;
    for e in entries {
        let len = entry_len(&e);
        if size + len > chunk_bytes && !chunk.is_empty() {
            reply(
                xid,
                MultipartReplyBody::Flow(std::mem::take(&mut chunk)),
                openflow::MULTIPART_MORE,
                out,
            );
            size = 0;
        }
        size += len;
        chunk.push(e);
    }
    reply(xid, MultipartReplyBody::Flow(chunk), 0, out);
}

/// Everything `session` has queued for its switch, taken and parsed (tests and benches
/// that drive a library session by hand).
pub fn take_session_output(session: &mut Session) -> Vec<(u32, Message)> {
    let bytes = session.poll_transmit().to_vec();
    session.advance_transmit(bytes.len());
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Ok(Some((_, n))) = frame(rest) {
        match Message::parse(&rest[..n]) {
            Ok(m) => out.push(m),
            Err(e) => panic!("the session queued an invalid message: {e:?}"),
        }
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "the session queued part of a message");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflex::openflow::{port, FlowStatsRequest, MultipartRequest};

    /// Sends `msgs` to the switch; returns what it answered, parsed.
    fn exchange(sw: &mut EmulatedSwitch, now: u64, msgs: &[(u32, Message)]) -> Vec<(u32, Message)> {
        let mut input = Vec::new();
        for (xid, m) in msgs {
            m.emit(*xid, &mut input);
        }
        let mut out = Vec::new();
        // Feed in two pieces to exercise partial messages.
        let cut = input.len() / 2 + 3;
        let used = sw.receive(now, &input[..cut], &mut out).unwrap();
        let mut rest = input[used..].to_vec();
        let used2 = sw.receive(now, &rest, &mut out).unwrap();
        assert_eq!(used2, rest.len());
        rest.clear();
        let mut replies = Vec::new();
        let mut at = 0;
        while let Some((_, n)) = frame(&out[at..]).unwrap() {
            replies.push(Message::parse(&out[at..at + n]).unwrap());
            at += n;
        }
        assert_eq!(at, out.len());
        replies
    }

    fn block(addr: Ipv4Addr) -> FlowMod {
        let m = Match::builder().ipv4_src(addr).build().unwrap();
        FlowMod::add(0, 200, m, Vec::new())
    }

    #[test]
    fn handshake_echo_barrier_config_and_multipart() {
        let mut sw = EmulatedSwitch::new(7, 3);
        let mut hello = Vec::new();
        sw.start(&mut hello);
        assert!(matches!(
            Message::parse(&hello).unwrap().1,
            Message::Hello(_)
        ));
        let set = SwitchConfig {
            flags: 0,
            miss_send_len: 0xffff,
        };
        let replies = exchange(
            &mut sw,
            5,
            &[
                (1, Message::Hello(Hello::v13())),
                (2, Message::FeaturesRequest),
                (3, Message::SetConfig(set)),
                (4, Message::EchoRequest(b"hi".to_vec())),
                (5, Message::BarrierRequest),
                (6, Message::GetConfigRequest),
                (
                    7,
                    Message::MultipartRequest(MultipartRequest {
                        flags: 0,
                        body: MultipartRequestBody::PortDesc,
                    }),
                ),
                (
                    8,
                    Message::MultipartRequest(MultipartRequest {
                        flags: 0,
                        body: MultipartRequestBody::Desc,
                    }),
                ),
                (
                    9,
                    Message::MultipartRequest(MultipartRequest {
                        flags: 0,
                        body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
                    }),
                ),
            ],
        );
        assert!(sw.connected());
        assert_eq!(sw.config(), set);
        let xids: Vec<u32> = replies.iter().map(|r| r.0).collect();
        assert_eq!(xids, [2, 4, 5, 6, 7, 8, 9]);
        assert!(
            matches!(&replies[0].1, Message::FeaturesReply(f) if f.datapath_id == 7 && f.n_buffers == 0)
        );
        assert_eq!(replies[1].1, Message::EchoReply(b"hi".to_vec()));
        assert_eq!(replies[2].1, Message::BarrierReply);
        assert_eq!(replies[3].1, Message::GetConfigReply(set));
        let Message::MultipartReply(ports) = &replies[4].1 else {
            panic!()
        };
        assert!(matches!(&ports.body, MultipartReplyBody::PortDesc(p) if p.len() == 3));
        assert!(
            matches!(&replies[5].1, Message::MultipartReply(d) if matches!(&d.body, MultipartReplyBody::Desc(_)))
        );
        assert!(
            matches!(&replies[6].1, Message::MultipartReply(r) if r.body == MultipartReplyBody::Flow(vec![]))
        );
    }

    #[test]
    fn flow_mods_are_recorded_with_their_time_and_kept_in_the_table() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let attacker = Ipv4Addr::new(172, 16, 0, 1);
        let fwd = FlowMod::add(
            0,
            1,
            Match::any(),
            vec![Instruction::ApplyActions(vec![Action::output(
                port::NORMAL,
            )])],
        );
        exchange(
            &mut sw,
            42,
            &[
                (1, Message::Hello(Hello::v13())),
                (10, Message::FlowMod(fwd.clone())),
                (11, Message::FlowMod(block(attacker))),
            ],
        );
        let got = sw.drain_flow_mods();
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].at_ns, got[1].xid), (42, 11));
        assert!(got[1].blocks(attacker));
        assert!(!got[1].blocks(Ipv4Addr::new(172, 16, 0, 2)));
        assert!(!got[0].blocks(attacker));
        assert!(sw.drain_flow_mods().is_empty());
        assert_eq!(sw.table().len(), 2);
        // Forwarding rules and deletes are not blocks.
        let fwd_attacker = FlowMod {
            instructions: fwd.instructions.clone(),
            ..block(attacker)
        };
        assert!(!is_block_of(&fwd_attacker, attacker));
        let del = FlowMod::delete_strict(0, 200, block(attacker).match_);
        assert!(!is_block_of(&del, attacker));
        exchange(&mut sw, 43, &[(12, Message::FlowMod(del))]);
        assert_eq!(sw.table().len(), 1);
        exchange(
            &mut sw,
            44,
            &[(
                13,
                Message::FlowMod(FlowMod::delete(openflow::TABLE_ALL, Match::any())),
            )],
        );
        assert!(sw.table().is_empty());
        assert_eq!(sw.responses(), 4);
    }

    #[test]
    fn a_large_table_is_reported_in_several_replies() {
        let mut sw = EmulatedSwitch::new(1, 2).with_table(5000);
        let replies = exchange(
            &mut sw,
            0,
            &[(
                3,
                Message::MultipartRequest(MultipartRequest {
                    flags: 0,
                    body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
                }),
            )],
        );
        assert!(replies.len() > 1);
        let mut total = 0;
        for (i, (xid, m)) in replies.iter().enumerate() {
            assert_eq!(*xid, 3);
            let Message::MultipartReply(r) = m else {
                panic!()
            };
            assert_eq!(r.more(), i + 1 < replies.len());
            let MultipartReplyBody::Flow(f) = &r.body else {
                panic!()
            };
            total += f.len();
        }
        assert_eq!(total, 5000);
    }

    #[test]
    fn unknown_requests_get_errors_and_bad_versions_end_the_session() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let replies = exchange(
            &mut sw,
            0,
            &[
                (1, Message::Hello(Hello::v13())),
                (
                    5,
                    Message::MultipartRequest(MultipartRequest {
                        flags: 0,
                        body: MultipartRequestBody::Meter { meter_id: 1 },
                    }),
                ),
                (
                    6,
                    Message::Other {
                        msg_type: 16,
                        body: vec![0; 32],
                    },
                ),
            ],
        );
        assert_eq!(replies.len(), 2);
        assert!(replies.iter().all(|r| matches!(r.1, Message::Error(_))));
        assert_eq!(sw.counters().errors_sent, 2);
        let mut sw = EmulatedSwitch::new(1, 2);
        let old = Hello {
            version: 1,
            elements: vec![],
        };
        let mut input = Vec::new();
        Message::Hello(old).emit(1, &mut input);
        assert!(sw.receive(0, &input, &mut Vec::new()).is_err());
    }

    #[test]
    fn packet_ins_carry_new_macs() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let mut out = Vec::new();
        sw.packet_in([2, 0, 0, 0, 0, 9], 1, &mut out);
        let (_, m) = Message::parse(&out).unwrap();
        let Message::PacketIn(pi) = m else { panic!() };
        assert_eq!(&pi.data[6..12], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(pi.match_.fields, vec![OxmField::InPort(1)]);
        assert_eq!(sw.counters().packet_ins_sent, 1);
    }

    fn miss_to_controller(table_id: u8, priority: u16, cookie: u64) -> FlowMod {
        let to_controller = Action::output(openflow::port::CONTROLLER);
        let mut fm = FlowMod::add(
            table_id,
            priority,
            Match::default(),
            vec![Instruction::ApplyActions(vec![to_controller])],
        );
        fm.cookie = cookie;
        fm
    }

    #[test]
    fn packet_ins_come_from_the_entry_that_sends_to_the_controller() {
        let mut sw = EmulatedSwitch::new(1, 2);
        assert_eq!(sw.packet_in_origin(), Some(PacketInOrigin::DEFAULT));
        // A table 0 miss that continues, then a learning table whose miss goes up.
        let goto = FlowMod::add(0, 0, Match::default(), vec![Instruction::GotoTable(251)]);
        let input = [
            (2, Message::FlowMod(goto)),
            (3, Message::FlowMod(miss_to_controller(251, 0, 0x77))),
            (4, Message::FlowMod(miss_to_controller(3, 5, 0x99))),
        ];
        exchange(&mut sw, 0, &input);
        let o = sw.packet_in_origin().unwrap();
        assert_eq!(
            (o.table_id, o.cookie, o.reason),
            (251, 0x77, REASON_NO_MATCH)
        );
        let mut out = Vec::new();
        sw.packet_in([2, 0, 0, 0, 0, 9], 2, &mut out);
        let (_, m) = Message::parse(&out).unwrap();
        let Message::PacketIn(pi) = m else { panic!() };
        assert_eq!((pi.table_id, pi.cookie, pi.reason), (251, 0x77, 0));
        assert_eq!(pi.buffer_id, openflow::NO_BUFFER);
        assert_eq!(pi.match_.fields, vec![OxmField::InPort(2)]);
        // An explicit (non-miss) rule is reported as an action.
        let mut sw = EmulatedSwitch::new(1, 2);
        exchange(
            &mut sw,
            0,
            &[(2, Message::FlowMod(miss_to_controller(1, 5, 0x99)))],
        );
        assert_eq!(sw.packet_in_origin().unwrap().reason, REASON_ACTION);
    }

    /// Faucet 1.10.12's cookie on every flow it installs.
    const FAUCET_COOKIE: u64 = 0x5adc_15c0;
    /// VLAN 100 as Faucet sets it (with OFPVID_PRESENT).
    const VID_100: u16 = 0x1000 | 100;

    fn faucet_add(
        table_id: u8,
        priority: u16,
        fields: Vec<OxmField>,
        ins: Vec<Instruction>,
    ) -> FlowMod {
        let mut fm = FlowMod::add(table_id, priority, Match { fields }, ins);
        fm.cookie = FAUCET_COOKIE;
        fm
    }

    fn vlan(vid: u16) -> OxmField {
        OxmField::VlanVid { vid, mask: None }
    }

    fn eth_src(addr: [u8; 6]) -> OxmField {
        OxmField::EthSrc { addr, mask: None }
    }

    /// What Faucet 1.10.12 installs on a datapath with ports 1 and 2 untagged on VLAN 100
    /// (as recorded by `reflex-load switch --record`, flood table abridged): table 0 `vlan`
    /// tags untagged frames per port, table 1 `eth_src` copies frames of unknown sources on
    /// the VLAN to the controller and goes on, table 2 `eth_dst` misses to table 3 `flood`.
    fn faucet_pipeline() -> Vec<FlowMod> {
        let tag = |port| {
            faucet_add(
                0,
                4096,
                vec![OxmField::InPort(port), vlan(0)],
                vec![
                    Instruction::ApplyActions(vec![
                        Action::PushVlan(0x8100),
                        Action::SetField(vlan(VID_100)),
                    ]),
                    Instruction::GotoTable(1),
                ],
            )
        };
        let flood = Action::Output {
            port: 1,
            max_len: 0,
        };
        vec![
            FlowMod::delete(openflow::TABLE_ALL, Match::any()),
            faucet_add(
                3,
                8192,
                vec![vlan(VID_100)],
                vec![Instruction::ApplyActions(vec![Action::PopVlan, flood])],
            ),
            faucet_add(3, 0, vec![], vec![]),
            faucet_add(2, 0, vec![], vec![Instruction::GotoTable(3)]),
            faucet_add(1, 20490, vec![OxmField::EthType(0x9000)], vec![]),
            faucet_add(1, 20480, vec![eth_src([0xff; 6])], vec![]),
            faucet_add(1, 20480, vec![eth_src([0x0e, 0, 0, 0, 0, 1])], vec![]),
            faucet_add(
                1,
                4096,
                vec![vlan(VID_100)],
                vec![
                    Instruction::ApplyActions(vec![Action::Output {
                        port: openflow::port::CONTROLLER,
                        max_len: 96,
                    }]),
                    Instruction::GotoTable(2),
                ],
            ),
            faucet_add(1, 0, vec![], vec![Instruction::GotoTable(2)]),
            tag(1),
            tag(2),
            faucet_add(0, 0, vec![], vec![]),
        ]
    }

    /// A switch in pipeline mode (or not) that received Faucet's pipeline.
    fn faucet_switch(pipeline: bool) -> EmulatedSwitch {
        let mut sw = EmulatedSwitch::new(1, 2);
        sw.set_pipeline(pipeline);
        let msgs: Vec<(u32, Message)> = faucet_pipeline()
            .into_iter()
            .enumerate()
            .map(|(i, fm)| (i as u32 + 10, Message::FlowMod(fm)))
            .collect();
        assert!(exchange(&mut sw, 0, &msgs).is_empty());
        sw
    }

    #[test]
    fn under_faucets_pipeline_packet_ins_come_tagged_from_its_eth_src_table() {
        // Before the controller installed its pipeline, new frames go nowhere.
        let mut sw = EmulatedSwitch::new(1, 2);
        sw.set_pipeline(true);
        let mut out = Vec::new();
        let src = [0x02, 1, 0, 0, 0, 7];
        assert!(!sw.packet_in(src, 2, &mut out));
        assert!(out.is_empty());
        let mut sw = faucet_switch(true);
        assert!(sw.packet_in(src, 2, &mut out));
        // The bytes as Open vSwitch sends them: header (PACKET_IN, 112 bytes), no buffer,
        // total_len 68, reason ACTION, table 1, Faucet's cookie, match in_port=2, padding.
        assert_eq!(&out[..2], &[openflow::VERSION, 10]);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]) as usize, out.len());
        assert_eq!(out.len(), 8 + 16 + 16 + 2 + 68);
        assert_eq!(&out[8..12], &openflow::NO_BUFFER.to_be_bytes());
        assert_eq!(&out[12..14], &68u16.to_be_bytes());
        assert_eq!((out[14], out[15]), (REASON_ACTION, 1));
        assert_eq!(&out[16..24], &FAUCET_COOKIE.to_be_bytes());
        assert_eq!(
            &out[24..40],
            &[0, 1, 0, 12, 0x80, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0]
        );
        // The frame after table 0 pushed VLAN 100: 802.1Q tag, then IPv4/UDP.
        let f = &out[42..];
        assert_eq!(&f[..6], &NewFrame::ETH_DST);
        assert_eq!(&f[6..12], &src);
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
        assert_eq!((f[18], f[27]), (0x45, 17));
        // The codec agrees.
        let (_, m) = Message::parse(&out).unwrap();
        let Message::PacketIn(pi) = m else { panic!() };
        assert_eq!(
            (pi.reason, pi.table_id, pi.cookie),
            (REASON_ACTION, 1, FAUCET_COOKIE)
        );
        assert_eq!(pi.match_.fields, vec![OxmField::InPort(2)]);
        assert_eq!((pi.total_len, pi.data.len()), (68, 68));
        let o = sw.packet_in_origin_at(1);
        assert_eq!(
            o,
            Some(PacketInOrigin {
                table_id: 1,
                cookie: FAUCET_COOKIE,
                reason: REASON_ACTION,
                vlan: Some(100)
            })
        );
        // A port Faucet does not tag (3) sends nothing to it: no PACKET_IN at all.
        assert_eq!(sw.packet_in_origin_at(3), None);
        let mut none = Vec::new();
        assert!(!sw.packet_in(src, 3, &mut none));
        assert!(none.is_empty());
        assert_eq!(sw.counters().packet_ins_sent, 1);
        // Without pipeline mode nothing changes for other controllers: Faucet's pipeline
        // has no catch-all to the controller, so the old default, untagged, 64 bytes.
        let mut sw = faucet_switch(false);
        assert_eq!(sw.packet_in_origin_at(2), Some(PacketInOrigin::DEFAULT));
        let mut out = Vec::new();
        assert!(sw.packet_in(src, 2, &mut out));
        assert_eq!(out.len(), 8 + 16 + 16 + 2 + 64);
        assert_eq!(&out[42 + 12..42 + 14], &[0x08, 0x00]);
    }

    #[test]
    fn learnt_hosts_leave_the_origin_and_a_port_ban_removes_it() {
        let mut sw = faucet_switch(true);
        let before = sw.packet_in_origin_at(1);
        // Faucet learns a host: a src rule (exact eth_src) and a dst rule (exact eth_dst).
        let learnt = [0x02, 1, 0, 0, 0, 4];
        let src_rule = faucet_add(
            1,
            8191,
            vec![OxmField::InPort(1), eth_src(learnt), vlan(VID_100)],
            vec![Instruction::GotoTable(2)],
        );
        let dst_rule = faucet_add(
            2,
            8192,
            vec![
                OxmField::EthDst {
                    addr: learnt,
                    mask: None,
                },
                vlan(VID_100),
            ],
            vec![Instruction::ApplyActions(vec![
                Action::PopVlan,
                Action::output(1),
            ])],
        );
        exchange(
            &mut sw,
            1,
            &[
                (30, Message::FlowMod(src_rule)),
                (31, Message::FlowMod(dst_rule)),
            ],
        );
        assert_eq!(sw.packet_in_origin_at(1), before);
        // Faucet's temporary learning ban on port 1 (max_hosts reached): a higher-priority
        // drop in eth_src for in_port 1. Port 1's new frames no longer reach the controller.
        let ban = faucet_add(1, 4097, vec![OxmField::InPort(1)], vec![]);
        exchange(&mut sw, 2, &[(32, Message::FlowMod(ban.clone()))]);
        assert_eq!(sw.packet_in_origin_at(1), None);
        assert_eq!(sw.packet_in_origin_at(2), before);
        let lift = FlowMod::delete_strict(1, 4097, ban.match_);
        exchange(&mut sw, 3, &[(33, Message::FlowMod(lift))]);
        assert_eq!(sw.packet_in_origin_at(1), before);
        // A different cookie or VLAN in the entry shows in the PACKET_IN.
        let mut other = faucet_pipeline()[7].clone();
        other.priority = 5000;
        other.cookie = 0x1234;
        exchange(&mut sw, 4, &[(34, Message::FlowMod(other))]);
        assert_eq!(sw.packet_in_origin_at(2).unwrap().cookie, 0x1234);
    }

    #[test]
    fn the_walk_applies_vlan_actions_and_stops_at_drops_and_backward_gotos() {
        let stats = |fm: FlowMod| FlowStats {
            table_id: fm.table_id,
            duration_sec: 0,
            duration_nsec: 0,
            priority: fm.priority,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            cookie: fm.cookie,
            packet_count: 0,
            byte_count: 0,
            match_: fm.match_,
            instructions: fm.instructions,
        };
        let to_ctl = Action::output(openflow::port::CONTROLLER);
        // Setting a VID without a tag changes nothing; push then pop leaves it untagged.
        let table = vec![
            stats(faucet_add(
                0,
                1,
                vec![],
                vec![
                    Instruction::ApplyActions(vec![Action::SetField(vlan(VID_100))]),
                    Instruction::GotoTable(4),
                ],
            )),
            stats(faucet_add(
                4,
                1,
                vec![vlan(0)],
                vec![Instruction::ApplyActions(vec![
                    Action::PushVlan(0x8100),
                    Action::PopVlan,
                    to_ctl.clone(),
                ])],
            )),
        ];
        let o = PacketInOrigin::walk(&table, 1).unwrap();
        assert_eq!((o.table_id, o.reason, o.vlan), (4, REASON_ACTION, None));
        // A table-miss entry (priority 0, empty match) to the controller is NO_MATCH.
        let miss = vec![stats(faucet_add(
            0,
            0,
            vec![],
            vec![Instruction::ApplyActions(vec![to_ctl.clone()])],
        ))];
        assert_eq!(
            PacketInOrigin::walk(&miss, 1).unwrap().reason,
            REASON_NO_MATCH
        );
        // A backward goto ends the walk, as does a missing table or a match on other frames.
        let back = vec![stats(faucet_add(
            3,
            1,
            vec![],
            vec![Instruction::GotoTable(0)],
        ))];
        assert_eq!(PacketInOrigin::walk(&back, 1), None);
        let other = vec![stats(faucet_add(
            0,
            1,
            vec![OxmField::EthType(0x86dd)],
            vec![Instruction::ApplyActions(vec![to_ctl])],
        ))];
        assert_eq!(PacketInOrigin::walk(&other, 1), None);
        assert_eq!(PacketInOrigin::walk(&[], 1), None);
    }

    #[test]
    fn new_frames_match_masks_on_the_source_group_bit_but_no_host_address() {
        let m = |f: OxmField| Match { fields: vec![f] };
        let unicast = OxmField::EthSrc {
            addr: [0; 6],
            mask: Some([1, 0, 0, 0, 0, 0]),
        };
        let multicast = OxmField::EthSrc {
            addr: [1, 0, 0, 0, 0, 0],
            mask: Some([1, 0, 0, 0, 0, 0]),
        };
        let host = OxmField::EthSrc {
            addr: [2, 1, 0, 0, 0, 7],
            mask: Some([0xff; 6]),
        };
        assert!(NewFrame::matches(&m(unicast), None));
        assert!(!NewFrame::matches(&m(multicast), None));
        assert!(!NewFrame::matches(&m(host), None));
        let dst = OxmField::EthDst {
            addr: NewFrame::ETH_DST,
            mask: None,
        };
        assert!(NewFrame::matches(&m(dst), Some((1, None))));
        assert!(NewFrame::matches(&m(vlan(0)), Some((1, None))));
        assert!(!NewFrame::matches(&m(vlan(0)), Some((1, Some(100)))));
        let any_tag = OxmField::VlanVid {
            vid: 0x1000,
            mask: Some(0x1000),
        };
        assert!(NewFrame::matches(&m(any_tag), Some((1, Some(7)))));
        assert!(!NewFrame::matches(&m(OxmField::InPort(2)), Some((1, None))));
        assert!(NewFrame::matches(&m(OxmField::InPort(2)), None));
    }

    #[test]
    fn adds_replace_and_strict_deletes_keep_the_table_index_right() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let host = |i: u8| Match {
            fields: vec![eth_src([2, 0, 0, 0, 0, i])],
        };
        let add = |i: u8, out: u32| {
            FlowMod::add(
                1,
                10,
                host(i),
                vec![Instruction::ApplyActions(vec![Action::output(out)])],
            )
        };
        let msgs: Vec<(u32, Message)> = (1..=3)
            .map(|i| (u32::from(i), Message::FlowMod(add(i, 1))))
            .collect();
        exchange(&mut sw, 0, &msgs);
        exchange(&mut sw, 0, &[(4, Message::FlowMod(add(2, 9)))]);
        assert_eq!(sw.table().len(), 3);
        let two = sw.table().iter().find(|e| e.match_ == host(2)).unwrap();
        assert_eq!(two.instructions, add(2, 9).instructions);
        // Deleting the first moves the last into its slot; both stay reachable.
        exchange(
            &mut sw,
            0,
            &[(5, Message::FlowMod(FlowMod::delete_strict(1, 10, host(1))))],
        );
        exchange(
            &mut sw,
            0,
            &[(6, Message::FlowMod(FlowMod::delete_strict(1, 10, host(3))))],
        );
        let left: Vec<&Match> = sw.table().iter().map(|e| &e.match_).collect();
        assert_eq!(left, vec![&host(2)]);
        exchange(
            &mut sw,
            0,
            &[
                (7, Message::FlowMod(add(1, 1))),
                (8, Message::FlowMod(add(2, 1))),
            ],
        );
        assert_eq!(sw.table().len(), 2);
        // A non-strict delete rebuilds the index.
        exchange(
            &mut sw,
            0,
            &[(9, Message::FlowMod(FlowMod::delete(1, host(1))))],
        );
        exchange(
            &mut sw,
            0,
            &[(10, Message::FlowMod(FlowMod::delete_strict(1, 10, host(2))))],
        );
        assert!(sw.table().is_empty());
    }

    #[test]
    fn a_second_message_about_the_previous_packet_in_does_not_answer_the_latest() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let (a, b) = ([2, 1, 0, 0, 0, 1], [2, 1, 0, 0, 0, 2]);
        let rule =
            |table, f: OxmField| FlowMod::add(table, 8192, Match { fields: vec![f] }, vec![]);
        // Messages that name no PACKET_IN (a pipeline) count as before.
        exchange(
            &mut sw,
            0,
            &[(1, Message::FlowMod(miss_to_controller(0, 0, 0)))],
        );
        assert_eq!((sw.responses(), sw.answers()), (1, 1));
        let mut out = Vec::new();
        sw.packet_in(a, 1, &mut out);
        // Faucet's two flow-mods for a: the first answers it.
        exchange(&mut sw, 0, &[(2, Message::FlowMod(rule(1, eth_src(a))))]);
        assert_eq!((sw.responses(), sw.answers()), (2, 2));
        sw.packet_in(b, 2, &mut out);
        // The second, about a, arrives after the PACKET_IN of b: it does not answer b.
        let dst_a = OxmField::EthDst {
            addr: a,
            mask: None,
        };
        exchange(&mut sw, 0, &[(3, Message::FlowMod(rule(2, dst_a)))]);
        assert_eq!((sw.responses(), sw.answers()), (3, 2));
        // A packet-out of b's frame does.
        let po = PacketOut {
            buffer_id: openflow::NO_BUFFER,
            in_port: 2,
            actions: vec![Action::output(port::FLOOD)],
            data: [&NewFrame::ETH_DST[..], &b[..], &[8, 0]].concat(),
        };
        exchange(&mut sw, 0, &[(4, Message::PacketOut(po))]);
        assert_eq!((sw.responses(), sw.answers()), (4, 3));
        // Buffered: a packet-out of the previous buffer is stale, of the latest is not.
        let mut sw = EmulatedSwitch::new(1, 2);
        sw.set_buffered(true);
        sw.packet_in(a, 1, &mut out);
        sw.packet_in(b, 1, &mut out);
        let by_buffer = |buffer_id| PacketOut {
            buffer_id,
            in_port: 1,
            actions: vec![],
            data: vec![],
        };
        exchange(
            &mut sw,
            0,
            &[
                (5, Message::PacketOut(by_buffer(0))),
                (6, Message::PacketOut(by_buffer(1))),
            ],
        );
        assert_eq!((sw.responses(), sw.answers()), (2, 1));
    }

    #[test]
    fn strict_and_non_strict_commands_follow_openflow_on_canonical_matches() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let out = |p: u32| vec![Instruction::ApplyActions(vec![Action::output(p)])];
        let ip = Match {
            fields: vec![OxmField::EthType(0x0800)],
        };
        let host = Match::builder()
            .ipv4_src(Ipv4Addr::new(10, 0, 0, 1))
            .build()
            .unwrap();
        // The same match written in the other field order: the same entry.
        let host_reordered = Match {
            fields: host.fields.iter().rev().cloned().collect(),
        };
        assert_ne!(host_reordered, host);
        let mods = [
            FlowMod::add(0, 10, ip.clone(), out(1)),
            FlowMod::add(0, 20, ip.clone(), out(1)),
            FlowMod::add(0, 30, host.clone(), out(1)),
            FlowMod::add(1, 30, host.clone(), out(1)),
            FlowMod::add(0, 30, host_reordered.clone(), out(2)),
        ];
        let msgs: Vec<(u32, Message)> = (0..).zip(mods.into_iter().map(Message::FlowMod)).collect();
        exchange(&mut sw, 0, &msgs);
        assert_eq!(sw.table().len(), 4);
        let instructions_of = |sw: &EmulatedSwitch, table: u8, priority: u16, m: &Match| {
            let key = EntryKey::new(table, priority, m);
            sw.table()
                .iter()
                .find(|e| EmulatedSwitch::key_of(e) == key)
                .map(|e| e.instructions.clone())
        };
        assert_eq!(instructions_of(&sw, 0, 30, &host), Some(out(2)));
        // MODIFY_STRICT: that priority alone; on a missing entry, nothing.
        let mut modify = FlowMod::add(0, 20, ip.clone(), out(3));
        modify.command = FlowModCommand::ModifyStrict;
        let mut absent = FlowMod::add(0, 99, ip.clone(), out(3));
        absent.command = FlowModCommand::ModifyStrict;
        exchange(
            &mut sw,
            0,
            &[
                (10, Message::FlowMod(modify)),
                (11, Message::FlowMod(absent)),
            ],
        );
        assert_eq!(sw.table().len(), 4);
        assert_eq!(instructions_of(&sw, 0, 20, &ip), Some(out(3)));
        assert_eq!(instructions_of(&sw, 0, 10, &ip), Some(out(1)));
        // MODIFY: every priority, and more specific matches, of its table only.
        let mut modify = FlowMod::add(0, 0, ip.clone(), out(4));
        modify.command = FlowModCommand::Modify;
        exchange(&mut sw, 0, &[(12, Message::FlowMod(modify))]);
        for (p, m) in [(10, &ip), (20, &ip), (30, &host)] {
            assert_eq!(instructions_of(&sw, 0, p, m), Some(out(4)));
        }
        assert_eq!(instructions_of(&sw, 1, 30, &host), Some(out(1)));
        // DELETE_STRICT by the reordered match; DELETE of table 0 by the broader match.
        let strict = FlowMod::delete_strict(1, 30, host_reordered);
        exchange(&mut sw, 0, &[(13, Message::FlowMod(strict))]);
        assert_eq!(sw.table().len(), 3);
        exchange(
            &mut sw,
            0,
            &[(14, Message::FlowMod(FlowMod::delete(0, ip)))],
        );
        assert!(sw.table().is_empty());
    }

    #[test]
    fn a_loaded_table_is_reported_as_given_and_a_chunk_of_one_byte_splits_it_per_entry() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let mut kept = EmulatedSwitch::new(1, 2).with_table(3).table().to_vec();
        kept[1].packet_count = 99;
        kept.push(kept[0].clone());
        sw.load_table(&kept);
        assert_eq!(sw.table(), &kept[..3]);
        sw.set_multipart_chunk(1);
        let request = Message::MultipartRequest(reflex::openflow::MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Flow(reflex::openflow::FlowStatsRequest::all()),
        });
        let replies = exchange(&mut sw, 0, &[(3, request)]);
        let got: Vec<(bool, Vec<FlowStats>)> = replies
            .into_iter()
            .map(|(_, m)| match m {
                Message::MultipartReply(MultipartReply {
                    flags,
                    body: MultipartReplyBody::Flow(f),
                }) => (flags == openflow::MULTIPART_MORE, f),
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<(bool, Vec<FlowStats>)> =
            (0..3).map(|i| (i < 2, vec![kept[i].clone()])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn meters_are_kept_and_a_rejected_message_gets_the_chosen_error() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let meter = |command, meter_id, rate| MeterMod {
            command,
            flags: 2,
            meter_id,
            bands: vec![reflex::openflow::MeterBand::Drop {
                rate,
                burst_size: 0,
            }],
        };
        exchange(
            &mut sw,
            0,
            &[
                (1, Message::MeterMod(meter(MeterModCommand::Add, 1, 10))),
                (2, Message::MeterMod(meter(MeterModCommand::Add, 2, 20))),
                (3, Message::MeterMod(meter(MeterModCommand::Modify, 1, 30))),
                (4, Message::MeterMod(meter(MeterModCommand::Delete, 2, 0))),
            ],
        );
        let ids: Vec<(u32, &Vec<_>)> = sw.meters().iter().map(|(i, m)| (*i, &m.bands)).collect();
        assert_eq!(ids, [(1, &meter(MeterModCommand::Add, 1, 30).bands)]);
        exchange(
            &mut sw,
            0,
            &[(
                5,
                Message::MeterMod(meter(MeterModCommand::Delete, METER_ALL, 0)),
            )],
        );
        assert!(sw.meters().is_empty());
        // A flow-mod the driver rejects: an error naming it, the table untouched.
        let mut bytes = Vec::new();
        Message::FlowMod(block(Ipv4Addr::new(10, 0, 0, 9))).emit(77, &mut bytes);
        let mut out = Vec::new();
        sw.reject(&bytes, OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_COMMAND, &mut out);
        let (xid, m) = Message::parse(&out).unwrap();
        assert_eq!(
            (xid, m),
            (
                77,
                Message::Error(ErrorMsg {
                    err_type: OFPET_FLOW_MOD_FAILED,
                    code: OFPFMFC_BAD_COMMAND,
                    data: bytes[..64].to_vec(),
                })
            )
        );
        assert!(sw.table().is_empty());
        assert_eq!(sw.counters().errors_sent, 1);
    }

    #[test]
    fn a_library_session_conversing_in_memory_gets_through_its_handshake() {
        use reflex::openflow::session::{Phase, SessionConfig};
        let mut session = Session::new(0, SessionConfig::default());
        let mut sw = EmulatedSwitch::new(5, 2).with_table(3);
        sw.converse(0, &mut session).unwrap();
        assert_eq!(session.phase(), Phase::Ready);
        assert!(sw.connected());
        assert_eq!(sw.config().miss_send_len, 0xffff);
        assert!(session.poll_transmit().is_empty());
    }

    #[test]
    fn set_async_is_accepted_silently() {
        let mut sw = EmulatedSwitch::new(1, 2);
        let set_async = Message::Other {
            msg_type: OFPT_SET_ASYNC,
            body: vec![0; 24],
        };
        assert!(exchange(&mut sw, 0, &[(1, set_async)]).is_empty());
        assert_eq!(sw.counters().errors_sent, 0);
    }

    #[test]
    fn buffered_packet_ins_carry_cycling_buffer_ids_and_features_say_so() {
        let mut sw = EmulatedSwitch::new(1, 2);
        sw.set_buffered(true);
        let replies = exchange(&mut sw, 0, &[(9, Message::FeaturesRequest)]);
        assert!(matches!(&replies[0].1, Message::FeaturesReply(f) if f.n_buffers == N_BUFFERS));
        let mut ids = Vec::new();
        for _ in 0..=N_BUFFERS {
            let mut out = Vec::new();
            sw.packet_in([2, 0, 0, 0, 0, 9], 1, &mut out);
            let (_, m) = Message::parse(&out).unwrap();
            let Message::PacketIn(pi) = m else { panic!() };
            assert_eq!(pi.data.len(), 64);
            ids.push(pi.buffer_id);
        }
        assert_eq!(ids[0], 0);
        assert_eq!(ids[N_BUFFERS as usize - 1], N_BUFFERS - 1);
        assert_eq!(ids[N_BUFFERS as usize], 0);
    }
}
