//! The owned [`Message`] enum: parse one framed message, emit one into a caller's buffer.
//!
//! Fixed-size messages must have exactly their size; variable parts are bounded by the
//! header length. Padding is skipped on parse and written as zeros on emit.

use super::action::{
    actions_len, emit_actions, emit_instructions, instructions_len, parse_actions,
    parse_instructions, Action, Instruction,
};
use super::multipart::{MultipartReply, MultipartRequest};
use super::oxm::Match;
use super::wire::{fixed_str, len16, put_fixed_str, Put, Reader};
use super::{msg_type as t, CodecError, Header, HEADER_LEN, MAX_MESSAGE_LEN, VERSION};

/// HELLO element type carrying the version bitmap.
const HELLO_ELEM_VERSIONBITMAP: u16 = 1;

/// A HELLO: the sender's highest version and its optional elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Version in the header (the sender's highest).
    pub version: u8,
    /// Elements, in wire order.
    pub elements: Vec<HelloElement>,
}

impl Hello {
    /// Our HELLO: version 1.3 with a bitmap offering only 1.3.
    pub fn v13() -> Hello {
        Hello {
            version: VERSION,
            elements: vec![HelloElement::VersionBitmap(vec![1 << VERSION])],
        }
    }
}

/// One HELLO element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HelloElement {
    /// Bit n of word w set = version 32*w + n supported.
    VersionBitmap(Vec<u32>),
    /// Any other element (bytes after its 4-byte type/length, before padding).
    Unknown { elem_type: u16, data: Vec<u8> },
}

impl HelloElement {
    fn unpadded_len(&self) -> usize {
        4 + match self {
            HelloElement::VersionBitmap(w) => 4 * w.len(),
            HelloElement::Unknown { data, .. } => data.len(),
        }
    }
}

/// Decides the version to speak after receiving the peer's HELLO: 1.3 or an error.
///
/// With a bitmap, 1.3 must be in it; without one, the peer's header version must be ≥ 1.3
/// (the spec negotiates the smaller of the two header versions).
pub fn negotiate(hello: &Hello) -> Result<u8, CodecError> {
    let bitmap = hello.elements.iter().find_map(|e| match e {
        HelloElement::VersionBitmap(w) => Some(w.first().copied().unwrap_or(0)),
        HelloElement::Unknown { .. } => None,
    });
    let ok = match bitmap {
        Some(word) => word & (1 << VERSION) != 0,
        None => hello.version >= VERSION,
    };
    if ok {
        Ok(VERSION)
    } else {
        Err(CodecError::NoCommonVersion {
            peer_version: hello.version,
            offered: bitmap.unwrap_or(0),
        })
    }
}

/// An OFPT_ERROR.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorMsg {
    /// OFPET_* type.
    pub err_type: u16,
    /// Type-specific code (exp_type for experimenter errors).
    pub code: u16,
    /// Usually the first bytes of the offending request.
    pub data: Vec<u8>,
}

impl ErrorMsg {
    /// (type name, code name), e.g. ("OFPET_BAD_MATCH", "OFPBMC_BAD_PREREQ").
    pub fn names(&self) -> (&'static str, &'static str) {
        super::errors::error_name(self.err_type, self.code)
    }

    /// The xid of the request that failed, when `data` holds its header.
    pub fn offending_header(&self) -> Option<Header> {
        Header::parse(&self.data).ok()
    }
}

/// FEATURES_REPLY contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
    /// Reserved word, kept so the message round-trips.
    pub reserved: u32,
}

/// GET_CONFIG_REPLY / SET_CONFIG contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SwitchConfig {
    /// OFPC_FRAG_* flags.
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

/// A PACKET_IN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    /// OFPR_* reason.
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// Pipeline fields (in_port, ...).
    pub match_: Match,
    /// The (possibly truncated) frame.
    pub data: Vec<u8>,
}

/// A PACKET_OUT.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PacketOut {
    /// [`super::NO_BUFFER`] when `data` carries the packet.
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

/// Flow-mod command (OFPFC_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowModCommand {
    Add = 0,
    Modify = 1,
    ModifyStrict = 2,
    Delete = 3,
    DeleteStrict = 4,
}

impl FlowModCommand {
    fn from_u8(v: u8) -> Result<Self, CodecError> {
        Ok(match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            _ => return Err(CodecError::BadCommand),
        })
    }
}

/// A FLOW_MOD.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    /// OFPFF_* flags (see [`super::flow_flags`]).
    pub flags: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowMod {
    fn base(command: FlowModCommand, table_id: u8, priority: u16, match_: Match) -> FlowMod {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id,
            command,
            idle_timeout: 0,
            hard_timeout: 0,
            priority,
            buffer_id: super::NO_BUFFER,
            out_port: super::port::ANY,
            out_group: super::GROUP_ANY,
            flags: 0,
            match_,
            instructions: Vec::new(),
        }
    }

    /// An ADD of a permanent rule.
    pub fn add(
        table_id: u8,
        priority: u16,
        match_: Match,
        instructions: Vec<Instruction>,
    ) -> FlowMod {
        FlowMod {
            instructions,
            ..FlowMod::base(FlowModCommand::Add, table_id, priority, match_)
        }
    }

    /// A DELETE_STRICT of exactly the rule (table, priority, match).
    pub fn delete_strict(table_id: u8, priority: u16, match_: Match) -> FlowMod {
        FlowMod::base(FlowModCommand::DeleteStrict, table_id, priority, match_)
    }

    /// A (non-strict) DELETE of every rule in `table_id` (or [`super::TABLE_ALL`]) that the
    /// match covers.
    pub fn delete(table_id: u8, match_: Match) -> FlowMod {
        FlowMod::base(FlowModCommand::Delete, table_id, 0, match_)
    }

    /// Sets the cookie.
    pub fn with_cookie(mut self, cookie: u64) -> FlowMod {
        self.cookie = cookie;
        self
    }

    /// Sets the idle and hard timeouts (seconds, 0 = none).
    pub fn with_timeouts(mut self, idle: u16, hard: u16) -> FlowMod {
        self.idle_timeout = idle;
        self.hard_timeout = hard;
        self
    }

    /// Sets the OFPFF_* flags.
    pub fn with_flags(mut self, flags: u16) -> FlowMod {
        self.flags = flags;
        self
    }

    /// (table, priority, match, instructions): what identifies and defines the rule, for
    /// comparison with [`super::FlowStats::rule_key`].
    pub fn rule_key(&self) -> (u8, u16, &Match, &[Instruction]) {
        (
            self.table_id,
            self.priority,
            &self.match_,
            &self.instructions,
        )
    }

    fn body_len(&self) -> usize {
        40 + self.match_.encoded_len() + instructions_len(&self.instructions)
    }

    fn emit_body(&self, out: &mut Vec<u8>) {
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        out.put_u8(self.table_id);
        out.put_u8(self.command as u8);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.priority);
        out.put_u32(self.buffer_id);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_u16(self.flags);
        out.put_zeros(2);
        self.match_.emit(out);
        emit_instructions(&self.instructions, out);
    }

    fn parse_body(r: &mut Reader<'_>) -> Result<FlowMod, CodecError> {
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = FlowModCommand::from_u8(r.u8()?)?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        let flags = r.u16()?;
        r.skip(2)?;
        let match_ = Match::parse(r)?;
        let instructions = parse_instructions(r.rest())?;
        Ok(FlowMod {
            cookie,
            cookie_mask,
            table_id,
            command,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            match_,
            instructions,
        })
    }
}

/// Appends a permanent FLOW_MOD (cookie 0, no timeouts, no buffer, no out_port/out_group
/// filter) built from borrowed parts, so the session's per-flow-mod path copies nothing
/// into an intermediate [`FlowMod`]. Returns the bytes written; on `TooLong` `out` is
/// left unchanged.
pub(crate) fn emit_flow_mod(
    xid: u32,
    command: FlowModCommand,
    table_id: u8,
    priority: u16,
    match_: &Match,
    instructions: &[Instruction],
    out: &mut Vec<u8>,
) -> Result<usize, CodecError> {
    let start = out.len();
    out.put_u8(VERSION);
    out.put_u8(t::FLOW_MOD);
    out.put_u16(0);
    out.put_u32(xid);
    out.put_u64(0);
    out.put_u64(0);
    out.put_u8(table_id);
    out.put_u8(command as u8);
    out.put_u16(0);
    out.put_u16(0);
    out.put_u16(priority);
    out.put_u32(super::NO_BUFFER);
    out.put_u32(super::port::ANY);
    out.put_u32(super::GROUP_ANY);
    out.put_u16(0);
    out.put_zeros(2);
    match_.emit(out);
    emit_instructions(instructions, out);
    let len = out.len() - start;
    if len > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(CodecError::TooLong);
    }
    out.patch_u16(start + 2, len16(len));
    Ok(len)
}

/// A FLOW_REMOVED.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    /// OFPRR_* reason.
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
}

/// A port description (`ofp_port`, 64 bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    /// Interface name (at most 16 bytes on the wire).
    pub name: String,
    /// OFPPC_* bits.
    pub config: u32,
    /// OFPPS_* bits.
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// Current speed in kb/s.
    pub curr_speed: u32,
    /// Maximum speed in kb/s.
    pub max_speed: u32,
}

impl Port {
    /// Wire size of `ofp_port`.
    pub const LEN: usize = 64;
    const NAME_LEN: usize = 16;

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr);
        out.put_zeros(2);
        put_fixed_str(out, &self.name, Self::NAME_LEN);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.put_u32(v);
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Port, CodecError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.array()?;
        r.skip(2)?;
        let name = fixed_str(r.take(Self::NAME_LEN)?);
        Ok(Port {
            port_no,
            hw_addr,
            name,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }
}

/// A PORT_STATUS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortStatus {
    /// OFPPR_ADD / DELETE / MODIFY.
    pub reason: u8,
    pub port: Port,
}

/// ROLE_REQUEST / ROLE_REPLY contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Role {
    /// OFPCR_ROLE_* (see [`super::role`]).
    pub role: u32,
    pub generation_id: u64,
}

/// Meter-mod command (OFPMC_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeterModCommand {
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// One meter band.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MeterBand {
    /// Drop packets above `rate`.
    Drop { rate: u32, burst_size: u32 },
    /// Raise the drop precedence of packets above `rate` by `prec_level`.
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    /// Any other band type: the bytes after rate and burst_size.
    Raw {
        band_type: u16,
        rate: u32,
        burst_size: u32,
        body: Vec<u8>,
    },
}

impl MeterBand {
    fn encoded_len(&self) -> usize {
        match self {
            MeterBand::Drop { .. } | MeterBand::DscpRemark { .. } => 16,
            MeterBand::Raw { body, .. } => 12 + body.len(),
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let len = len16(self.encoded_len());
        match self {
            MeterBand::Drop { rate, burst_size } => {
                out.put_u16(1);
                out.put_u16(len);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.put_zeros(4);
            }
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            } => {
                out.put_u16(2);
                out.put_u16(len);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.put_u8(*prec_level);
                out.put_zeros(3);
            }
            MeterBand::Raw {
                band_type,
                rate,
                burst_size,
                body,
            } => {
                out.put_u16(*band_type);
                out.put_u16(len);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.extend_from_slice(body);
            }
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<MeterBand, CodecError> {
        let bad = |_| CodecError::BadBand;
        let head = r.peek(4).map_err(bad)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 16 || len % 8 != 0 {
            return Err(CodecError::BadBand);
        }
        let mut b = Reader::new(r.take(len).map_err(bad)?);
        let band_type = b.u16()?;
        b.skip(2)?;
        let rate = b.u32()?;
        let burst_size = b.u32()?;
        Ok(match (band_type, len) {
            (1, 16) => MeterBand::Drop { rate, burst_size },
            (2, 16) => MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level: b.u8()?,
            },
            (1, _) | (2, _) => return Err(CodecError::BadBand),
            _ => MeterBand::Raw {
                band_type,
                rate,
                burst_size,
                body: b.rest().to_vec(),
            },
        })
    }
}

/// A METER_MOD.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeterMod {
    pub command: MeterModCommand,
    /// OFPMF_KBPS=1, PKTPS=2, BURST=4, STATS=8.
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

/// A meter with a single drop band: what the controller installs. Small and `Copy`, so a
/// desired or installed meter holds no band list, and [`emit_meter_mod`] writes it
/// straight into the output buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropMeter {
    /// OFPMF_* flags (see [`meter_flags`](super::meter_flags)).
    pub flags: u16,
    /// Rate above which packets are dropped, in the unit `flags` names.
    pub rate: u32,
    /// Burst size, in the same unit (used with OFPMF_BURST).
    pub burst_size: u32,
}

impl DropMeter {
    /// The meter's band as the owned codec models it.
    pub fn band(&self) -> MeterBand {
        MeterBand::Drop {
            rate: self.rate,
            burst_size: self.burst_size,
        }
    }
}

/// Appends a METER_MOD for `meter_id` built from borrowed parts: `meter` is its one drop
/// band (`None` for a delete: no flags, no band), so no [`MeterMod`] and no band list is
/// built per meter. Returns the bytes written.
pub(crate) fn emit_meter_mod(
    xid: u32,
    command: MeterModCommand,
    meter_id: u32,
    meter: Option<&DropMeter>,
    out: &mut Vec<u8>,
) -> usize {
    const DROP: u16 = 1;
    const BAND_LEN: u16 = 16;
    let start = out.len();
    out.put_u8(VERSION);
    out.put_u8(t::METER_MOD);
    out.put_u16(0);
    out.put_u32(xid);
    out.put_u16(command as u16);
    out.put_u16(meter.map_or(0, |m| m.flags));
    out.put_u32(meter_id);
    if let Some(m) = meter {
        out.put_u16(DROP);
        out.put_u16(BAND_LEN);
        out.put_u32(m.rate);
        out.put_u32(m.burst_size);
        out.put_zeros(4);
    }
    let len = out.len() - start;
    out.patch_u16(start + 2, len16(len));
    len
}

/// One OpenFlow 1.3 message, owned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    FeaturesRequest,
    FeaturesReply(Features),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    RoleRequest(Role),
    RoleReply(Role),
    MeterMod(MeterMod),
    /// A message type this codec does not model (version 1.3), body kept raw.
    Other {
        msg_type: u8,
        body: Vec<u8>,
    },
}

fn exact(r: &Reader<'_>) -> Result<(), CodecError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(CodecError::BadLength)
    }
}

impl Message {
    /// The OFPT_* type number.
    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Hello(_) => t::HELLO,
            Message::Error(_) => t::ERROR,
            Message::EchoRequest(_) => t::ECHO_REQUEST,
            Message::EchoReply(_) => t::ECHO_REPLY,
            Message::FeaturesRequest => t::FEATURES_REQUEST,
            Message::FeaturesReply(_) => t::FEATURES_REPLY,
            Message::GetConfigRequest => t::GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => t::GET_CONFIG_REPLY,
            Message::SetConfig(_) => t::SET_CONFIG,
            Message::PacketIn(_) => t::PACKET_IN,
            Message::FlowRemoved(_) => t::FLOW_REMOVED,
            Message::PortStatus(_) => t::PORT_STATUS,
            Message::PacketOut(_) => t::PACKET_OUT,
            Message::FlowMod(_) => t::FLOW_MOD,
            Message::MultipartRequest(_) => t::MULTIPART_REQUEST,
            Message::MultipartReply(_) => t::MULTIPART_REPLY,
            Message::BarrierRequest => t::BARRIER_REQUEST,
            Message::BarrierReply => t::BARRIER_REPLY,
            Message::RoleRequest(_) => t::ROLE_REQUEST,
            Message::RoleReply(_) => t::ROLE_REPLY,
            Message::MeterMod(_) => t::METER_MOD,
            Message::Other { msg_type, .. } => *msg_type,
        }
    }

    /// A short name for logs and counters (e.g. "flow_mod").
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Error(_) => "error",
            Message::EchoRequest(_) => "echo_request",
            Message::EchoReply(_) => "echo_reply",
            Message::FeaturesRequest => "features_request",
            Message::FeaturesReply(_) => "features_reply",
            Message::GetConfigRequest => "get_config_request",
            Message::GetConfigReply(_) => "get_config_reply",
            Message::SetConfig(_) => "set_config",
            Message::PacketIn(_) => "packet_in",
            Message::FlowRemoved(_) => "flow_removed",
            Message::PortStatus(_) => "port_status",
            Message::PacketOut(_) => "packet_out",
            Message::FlowMod(_) => "flow_mod",
            Message::MultipartRequest(_) => "multipart_request",
            Message::MultipartReply(_) => "multipart_reply",
            Message::BarrierRequest => "barrier_request",
            Message::BarrierReply => "barrier_reply",
            Message::RoleRequest(_) => "role_request",
            Message::RoleReply(_) => "role_reply",
            Message::MeterMod(_) => "meter_mod",
            Message::Other { .. } => "other",
        }
    }

    fn version(&self) -> u8 {
        match self {
            Message::Hello(h) => h.version,
            _ => VERSION,
        }
    }

    /// Parses exactly one message (as cut by [`super::frame`]); returns its xid.
    pub fn parse(bytes: &[u8]) -> Result<(u32, Message), CodecError> {
        let header = Header::parse(bytes)?;
        if usize::from(header.length) != bytes.len() || bytes.len() < HEADER_LEN {
            return Err(CodecError::BadLength);
        }
        if header.msg_type != t::HELLO && header.version != VERSION {
            return Err(CodecError::BadVersion);
        }
        let mut r = Reader::new(bytes.get(HEADER_LEN..).unwrap_or(&[]));
        let r = &mut r;
        let msg = match header.msg_type {
            t::HELLO => Message::Hello(parse_hello(header.version, r)?),
            t::ERROR => Message::Error(ErrorMsg {
                err_type: r.u16()?,
                code: r.u16()?,
                data: r.rest().to_vec(),
            }),
            t::ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
            t::ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
            t::FEATURES_REQUEST => exact(r).map(|_| Message::FeaturesRequest)?,
            t::FEATURES_REPLY => {
                let f = Features {
                    datapath_id: r.u64()?,
                    n_buffers: r.u32()?,
                    n_tables: r.u8()?,
                    auxiliary_id: r.u8()?,
                    capabilities: {
                        r.skip(2)?;
                        r.u32()?
                    },
                    reserved: r.u32()?,
                };
                exact(r)?;
                Message::FeaturesReply(f)
            }
            t::GET_CONFIG_REQUEST => exact(r).map(|_| Message::GetConfigRequest)?,
            t::GET_CONFIG_REPLY | t::SET_CONFIG => {
                let c = SwitchConfig {
                    flags: r.u16()?,
                    miss_send_len: r.u16()?,
                };
                exact(r)?;
                if header.msg_type == t::SET_CONFIG {
                    Message::SetConfig(c)
                } else {
                    Message::GetConfigReply(c)
                }
            }
            t::PACKET_IN => {
                let buffer_id = r.u32()?;
                let total_len = r.u16()?;
                let reason = r.u8()?;
                let table_id = r.u8()?;
                let cookie = r.u64()?;
                let match_ = Match::parse(r)?;
                r.skip(2)?;
                Message::PacketIn(PacketIn {
                    buffer_id,
                    total_len,
                    reason,
                    table_id,
                    cookie,
                    match_,
                    data: r.rest().to_vec(),
                })
            }
            t::FLOW_REMOVED => {
                let fr = FlowRemoved {
                    cookie: r.u64()?,
                    priority: r.u16()?,
                    reason: r.u8()?,
                    table_id: r.u8()?,
                    duration_sec: r.u32()?,
                    duration_nsec: r.u32()?,
                    idle_timeout: r.u16()?,
                    hard_timeout: r.u16()?,
                    packet_count: r.u64()?,
                    byte_count: r.u64()?,
                    match_: Match::parse(r)?,
                };
                exact(r)?;
                Message::FlowRemoved(fr)
            }
            t::PORT_STATUS => {
                let reason = r.u8()?;
                r.skip(7)?;
                let port = Port::parse(r)?;
                exact(r)?;
                Message::PortStatus(PortStatus { reason, port })
            }
            t::PACKET_OUT => {
                let buffer_id = r.u32()?;
                let in_port = r.u32()?;
                let alen = usize::from(r.u16()?);
                r.skip(6)?;
                let abytes = r.take(alen).map_err(|_| CodecError::BadAction)?;
                Message::PacketOut(PacketOut {
                    buffer_id,
                    in_port,
                    actions: parse_actions(abytes)?,
                    data: r.rest().to_vec(),
                })
            }
            t::FLOW_MOD => Message::FlowMod(FlowMod::parse_body(r)?),
            t::MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::parse_body(r)?),
            t::MULTIPART_REPLY => Message::MultipartReply(MultipartReply::parse_body(r)?),
            t::BARRIER_REQUEST => exact(r).map(|_| Message::BarrierRequest)?,
            t::BARRIER_REPLY => exact(r).map(|_| Message::BarrierReply)?,
            t::ROLE_REQUEST | t::ROLE_REPLY => {
                let role = r.u32()?;
                r.skip(4)?;
                let role = Role {
                    role,
                    generation_id: r.u64()?,
                };
                exact(r)?;
                if header.msg_type == t::ROLE_REQUEST {
                    Message::RoleRequest(role)
                } else {
                    Message::RoleReply(role)
                }
            }
            t::METER_MOD => {
                let command = match r.u16()? {
                    0 => MeterModCommand::Add,
                    1 => MeterModCommand::Modify,
                    2 => MeterModCommand::Delete,
                    _ => return Err(CodecError::BadCommand),
                };
                let flags = r.u16()?;
                let meter_id = r.u32()?;
                let mut bands = Vec::new();
                while !r.is_empty() {
                    bands.push(MeterBand::parse(r)?);
                }
                Message::MeterMod(MeterMod {
                    command,
                    flags,
                    meter_id,
                    bands,
                })
            }
            other => Message::Other {
                msg_type: other,
                body: r.rest().to_vec(),
            },
        };
        Ok((header.xid, msg))
    }

    /// Bytes [`emit`](Self::emit) appends (header included).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        match self {
            Message::Hello(h) => h
                .elements
                .iter()
                .map(|e| super::wire::pad8(e.unpadded_len()))
                .sum(),
            Message::Error(e) => 4 + e.data.len(),
            Message::EchoRequest(p) | Message::EchoReply(p) => p.len(),
            Message::FeaturesRequest
            | Message::GetConfigRequest
            | Message::BarrierRequest
            | Message::BarrierReply => 0,
            Message::FeaturesReply(_) => 24,
            Message::GetConfigReply(_) | Message::SetConfig(_) => 4,
            Message::PacketIn(p) => 16 + p.match_.encoded_len() + 2 + p.data.len(),
            Message::FlowRemoved(f) => 40 + f.match_.encoded_len(),
            Message::PortStatus(_) => 8 + Port::LEN,
            Message::PacketOut(p) => 16 + actions_len(&p.actions) + p.data.len(),
            Message::FlowMod(f) => f.body_len(),
            Message::MultipartRequest(m) => m.body_len(),
            Message::MultipartReply(m) => m.body_len(),
            Message::RoleRequest(_) | Message::RoleReply(_) => 16,
            Message::MeterMod(m) => 8 + m.bands.iter().map(MeterBand::encoded_len).sum::<usize>(),
            Message::Other { body, .. } => body.len(),
        }
    }

    /// Appends the message to `out`; returns the bytes written.
    ///
    /// A message longer than 65535 bytes cannot be framed: nothing is written and 0 is
    /// returned (use [`try_emit`](Self::try_emit) to get an error instead).
    pub fn emit(&self, xid: u32, out: &mut Vec<u8>) -> usize {
        self.try_emit(xid, out).unwrap_or(0)
    }

    /// Appends the message to `out`, or leaves `out` unchanged and fails with `TooLong`.
    pub fn try_emit(&self, xid: u32, out: &mut Vec<u8>) -> Result<usize, CodecError> {
        let start = out.len();
        out.put_u8(self.version());
        out.put_u8(self.msg_type());
        out.put_u16(0);
        out.put_u32(xid);
        self.emit_body(out);
        let len = out.len() - start;
        if len > MAX_MESSAGE_LEN {
            out.truncate(start);
            return Err(CodecError::TooLong);
        }
        out.patch_u16(start + 2, len16(len));
        Ok(len)
    }

    fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello(h) => {
                for e in &h.elements {
                    let start = out.len();
                    match e {
                        HelloElement::VersionBitmap(words) => {
                            out.put_u16(HELLO_ELEM_VERSIONBITMAP);
                            out.put_u16(len16(e.unpadded_len()));
                            words.iter().for_each(|w| out.put_u32(*w));
                        }
                        HelloElement::Unknown { elem_type, data } => {
                            out.put_u16(*elem_type);
                            out.put_u16(len16(e.unpadded_len()));
                            out.extend_from_slice(data);
                        }
                    }
                    let used = out.len() - start;
                    out.put_zeros(super::wire::pad8(used) - used);
                }
            }
            Message::Error(e) => {
                out.put_u16(e.err_type);
                out.put_u16(e.code);
                out.extend_from_slice(&e.data);
            }
            Message::EchoRequest(p) | Message::EchoReply(p) => out.extend_from_slice(p),
            Message::FeaturesRequest
            | Message::GetConfigRequest
            | Message::BarrierRequest
            | Message::BarrierReply => {}
            Message::FeaturesReply(f) => {
                out.put_u64(f.datapath_id);
                out.put_u32(f.n_buffers);
                out.put_u8(f.n_tables);
                out.put_u8(f.auxiliary_id);
                out.put_zeros(2);
                out.put_u32(f.capabilities);
                out.put_u32(f.reserved);
            }
            Message::GetConfigReply(c) | Message::SetConfig(c) => {
                out.put_u16(c.flags);
                out.put_u16(c.miss_send_len);
            }
            Message::PacketIn(p) => {
                out.put_u32(p.buffer_id);
                out.put_u16(p.total_len);
                out.put_u8(p.reason);
                out.put_u8(p.table_id);
                out.put_u64(p.cookie);
                p.match_.emit(out);
                out.put_zeros(2);
                out.extend_from_slice(&p.data);
            }
            Message::FlowRemoved(f) => {
                out.put_u64(f.cookie);
                out.put_u16(f.priority);
                out.put_u8(f.reason);
                out.put_u8(f.table_id);
                out.put_u32(f.duration_sec);
                out.put_u32(f.duration_nsec);
                out.put_u16(f.idle_timeout);
                out.put_u16(f.hard_timeout);
                out.put_u64(f.packet_count);
                out.put_u64(f.byte_count);
                f.match_.emit(out);
            }
            Message::PortStatus(p) => {
                out.put_u8(p.reason);
                out.put_zeros(7);
                p.port.emit(out);
            }
            Message::PacketOut(p) => {
                out.put_u32(p.buffer_id);
                out.put_u32(p.in_port);
                out.put_u16(len16(actions_len(&p.actions)));
                out.put_zeros(6);
                emit_actions(&p.actions, out);
                out.extend_from_slice(&p.data);
            }
            Message::FlowMod(f) => f.emit_body(out),
            Message::MultipartRequest(m) => m.emit_body(out),
            Message::MultipartReply(m) => m.emit_body(out),
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                out.put_u32(r.role);
                out.put_zeros(4);
                out.put_u64(r.generation_id);
            }
            Message::MeterMod(m) => {
                out.put_u16(m.command as u16);
                out.put_u16(m.flags);
                out.put_u32(m.meter_id);
                m.bands.iter().for_each(|b| b.emit(out));
            }
            Message::Other { body, .. } => out.extend_from_slice(body),
        }
    }
}

fn parse_hello(version: u8, r: &mut Reader<'_>) -> Result<Hello, CodecError> {
    let bad = |_| CodecError::BadHello;
    let mut elements = Vec::new();
    while !r.is_empty() {
        let elem_type = r.u16().map_err(bad)?;
        let len = usize::from(r.u16().map_err(bad)?);
        if len < 4 {
            return Err(CodecError::BadHello);
        }
        let data = r.take(len - 4).map_err(bad)?;
        r.skip(super::wire::pad8(len) - len).map_err(bad)?;
        elements.push(if elem_type == HELLO_ELEM_VERSIONBITMAP {
            if data.len() % 4 != 0 {
                return Err(CodecError::BadHello);
            }
            HelloElement::VersionBitmap(
                data.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        } else {
            HelloElement::Unknown {
                elem_type,
                data: data.to_vec(),
            }
        });
    }
    Ok(Hello { version, elements })
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
