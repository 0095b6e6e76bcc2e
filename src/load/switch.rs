//! A sans-IO emulated OpenFlow 1.3 switch, for load tests and controller benchmarks.
//!
//! [`EmulatedSwitch::receive`] takes the bytes read from the controller connection and
//! `now_ns`, appends every reply to the caller's output buffer and records each flow-mod
//! with the time it arrived. It answers HELLO, FEATURES, ECHO, BARRIER, GET_CONFIG,
//! ROLE and multipart DESC / PORT_DESC / FLOW (from its own table) / TABLE; it applies
//! SET_CONFIG and keeps a flow table that ADD / DELETE / DELETE_STRICT maintain, so a
//! controller's reconciliation sees what it installed. Anything else gets an OFPT_ERROR.

use std::net::Ipv4Addr;

use crate::openflow::{
    self, frame, negotiate, Action, Desc, ErrorMsg, Features, FlowMod, FlowModCommand, FlowStats,
    Hello, Instruction, Match, Message, MultipartReply, MultipartReplyBody, MultipartRequestBody,
    OxmField, Port, Role, SwitchConfig, TableStats,
};

/// OFPET_BAD_REQUEST and two of its codes.
const OFPET_BAD_REQUEST: u16 = 1;
const OFPBRC_BAD_TYPE: u16 = 1;
const OFPBRC_BAD_MULTIPART: u16 = 2;
/// Largest multipart body we put in one reply (the 16-bit length bounds the message).
const MULTIPART_CHUNK: usize = 60_000;

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
    negotiated: bool,
    features_replied: bool,
    next_xid: u32,
    /// Flow-mods received, in order, until drained.
    flow_mods: Vec<ReceivedFlowMod>,
    /// Responses (flow-mods and packet-outs) received; cbench counts these.
    responses: u64,
    counters: SwitchCounters,
    /// Buffer PACKET_IN frames (cbench's default) instead of sending them unbuffered.
    buffered: bool,
    next_buffer: u32,
    /// Where PACKET_INs come from: derived from the flow table after every flow-mod.
    origin: PacketInOrigin,
}

/// Buffers announced in FEATURES_REPLY when PACKET_INs are buffered (ids cycle through them).
pub const N_BUFFERS: u32 = 256;

/// OFPR_NO_MATCH and OFPR_ACTION (OpenFlow 1.3 packet-in reasons).
pub const REASON_NO_MATCH: u8 = 0;
pub const REASON_ACTION: u8 = 1;

/// The table, cookie and reason a PACKET_IN carries: those of the flow entry that sent the
/// packet to the controller, as a real switch reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInOrigin {
    pub table_id: u8,
    pub cookie: u64,
    pub reason: u8,
}

impl PacketInOrigin {
    /// What the switch reports before any controller rule sends packets to it (the old
    /// fixed behaviour: table 0, cookie all ones, no match).
    pub const DEFAULT: PacketInOrigin = PacketInOrigin {
        table_id: 0,
        cookie: u64::MAX,
        reason: REASON_NO_MATCH,
    };

    /// The origin of a new frame's PACKET_IN under `table`: the catch-all entry (empty
    /// match) that outputs to CONTROLLER in the highest table, i.e. the end of a pipeline
    /// that a frame of a never-seen MAC falls through to; a priority-0 one is a table miss
    /// (OFPR_NO_MATCH), any other an explicit action (OFPR_ACTION). Without one, DEFAULT.
    pub fn from_table(table: &[FlowStats]) -> PacketInOrigin {
        let to_controller = |e: &FlowStats| {
            e.instructions.iter().any(|i| match i {
                Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.iter().any(
                    |x| matches!(x, Action::Output { port, .. } if *port == openflow::port::CONTROLLER),
                ),
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
            })
    }
}

impl EmulatedSwitch {
    /// A switch with `datapath_id` and ports `1..=ports`, flow table empty.
    pub fn new(datapath_id: u64, ports: u32) -> EmulatedSwitch {
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
            negotiated: false,
            features_replied: false,
            next_xid: 1,
            flow_mods: Vec::new(),
            responses: 0,
            counters: SwitchCounters::default(),
            buffered: false,
            next_buffer: 0,
            origin: PacketInOrigin::DEFAULT,
        }
    }

    /// Buffered PACKET_INs: FEATURES_REPLY announces [`N_BUFFERS`] buffers and each
    /// PACKET_IN carries a buffer id (cycling) as well as the frame, as cbench sends them.
    /// Set before the FEATURES exchange.
    pub fn set_buffered(&mut self, on: bool) {
        self.buffered = on;
    }

    /// Where the next PACKET_IN will say it comes from.
    pub fn packet_in_origin(&self) -> PacketInOrigin {
        self.origin
    }

    /// Preloads `n` entries (drops of 10.0.x.y in table 0) that FLOW stats will report,
    /// as a switch that kept its flows while the controller was away.
    pub fn with_table(mut self, n: u32) -> EmulatedSwitch {
        self.table = (0..n)
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
        self
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

    /// Counters so far.
    pub fn counters(&self) -> SwitchCounters {
        self.counters
    }

    /// Flow-mods and packet-outs received so far.
    pub fn responses(&self) -> u64 {
        self.responses
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
    /// [`PacketInOrigin::from_table`]); buffered or not as set. Allocates nothing.
    pub fn packet_in(&mut self, eth_src: [u8; 6], in_port: u32, out: &mut Vec<u8>) {
        const FRAME: usize = 64;
        let xid = self.xid();
        let buffer_id = if self.buffered {
            let b = self.next_buffer;
            self.next_buffer = (b + 1) % N_BUFFERS;
            b
        } else {
            openflow::NO_BUFFER
        };
        let o = self.origin;
        // Header, buffer_id, total_len, reason, table_id, cookie; match (in_port, padded
        // to 16 bytes); 2 bytes of padding; the frame.
        let len = 8 + 16 + 16 + 2 + FRAME;
        out.reserve(len);
        out.extend_from_slice(&[openflow::VERSION, 10]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&xid.to_be_bytes());
        out.extend_from_slice(&buffer_id.to_be_bytes());
        out.extend_from_slice(&(FRAME as u16).to_be_bytes());
        out.extend_from_slice(&[o.reason, o.table_id]);
        out.extend_from_slice(&o.cookie.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 12, 0x80, 0, 0, 4]); // OXM match, in_port
        out.extend_from_slice(&in_port.to_be_bytes());
        out.extend_from_slice(&[0; 4 + 2]);
        let start = out.len();
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        out.extend_from_slice(&eth_src);
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        out.resize(start + FRAME, 0);
        out[start + 14] = 0x45;
        out[start + 23] = 17;
        self.counters.packet_ins_sent += 1;
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
        let xid = openflow::Header::parse(offending).map_or(0, |h| h.xid);
        let data = offending[..offending.len().min(64)].to_vec();
        Message::Error(ErrorMsg {
            err_type: OFPET_BAD_REQUEST,
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
                self.responses += 1;
                self.apply(&fm);
                self.origin = PacketInOrigin::from_table(&self.table);
                self.flow_mods.push(ReceivedFlowMod {
                    at_ns: now_ns,
                    xid,
                    flow_mod: fm,
                });
            }
            Message::PacketOut(_) => {
                self.counters.packet_outs += 1;
                self.responses += 1;
            }
            Message::MeterMod(_) => {}
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
                        flow_replies(xid, entries, out);
                    }
                    _ => self.error(OFPBRC_BAD_MULTIPART, bytes, out),
                }
            }
            _ => self.error(OFPBRC_BAD_TYPE, bytes, out),
        }
        Ok(())
    }

    fn apply(&mut self, fm: &FlowMod) {
        match fm.command {
            FlowModCommand::Add => {
                let same = |e: &FlowStats| {
                    e.table_id == fm.table_id && e.priority == fm.priority && e.match_ == fm.match_
                };
                self.table.retain(|e| !same(e));
                self.table.push(FlowStats {
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
                });
            }
            FlowModCommand::DeleteStrict => self.table.retain(|e| {
                !(e.table_id == fm.table_id && e.priority == fm.priority && e.match_ == fm.match_)
            }),
            FlowModCommand::Delete => {
                let table_ok = |t: u8| fm.table_id == openflow::TABLE_ALL || t == fm.table_id;
                // Non-strict delete: entries whose match contains every field of fm's.
                self.table.retain(|e| {
                    !(table_ok(e.table_id)
                        && fm.match_.fields.iter().all(|f| e.match_.fields.contains(f)))
                })
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                for e in &mut self.table {
                    if e.table_id == fm.table_id && e.match_ == fm.match_ {
                        e.instructions = fm.instructions.clone();
                    }
                }
            }
        }
    }
}

fn reply(xid: u32, body: MultipartReplyBody, flags: u16, out: &mut Vec<u8>) {
    Message::MultipartReply(MultipartReply { flags, body }).emit(xid, out);
}

/// FLOW stats in as many replies as the 16-bit length needs, REPLY_MORE on all but the last.
fn flow_replies(xid: u32, entries: Vec<FlowStats>, out: &mut Vec<u8>) {
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
        if size + len > MULTIPART_CHUNK && !chunk.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::{port, FlowStatsRequest, MultipartRequest};

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
        assert_eq!(sw.packet_in_origin(), PacketInOrigin::DEFAULT);
        // A table 0 miss that continues, then a learning table whose miss goes up.
        let goto = FlowMod::add(0, 0, Match::default(), vec![Instruction::GotoTable(251)]);
        let input = [
            (2, Message::FlowMod(goto)),
            (3, Message::FlowMod(miss_to_controller(251, 0, 0x77))),
            (4, Message::FlowMod(miss_to_controller(3, 5, 0x99))),
        ];
        exchange(&mut sw, 0, &input);
        let o = sw.packet_in_origin();
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
        assert_eq!(sw.packet_in_origin().reason, REASON_ACTION);
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
