//! Multipart (statistics) requests and replies: FLOW, DESC, TABLE, METER, PORT_DESC; every
//! other multipart type is kept raw.
//!
//! Replies carry the REPLY_MORE flag ([`MultipartReply::more`]); reassembling a sequence of
//! replies with the same xid is the session's job. Each entry's own length is checked
//! against its minimum, its alignment and the remaining body.

use super::action::{emit_instructions, instructions_len, parse_instructions, Instruction};
use super::message::Port;
use super::oxm::Match;
use super::wire::{fixed_str, len16, put_fixed_str, Put, Reader};
use super::CodecError;

/// Multipart type numbers (OFPMP_*).
pub mod mp_type {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const METER: u16 = 9;
    pub const PORT_DESC: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// Flag saying more replies of this multipart follow (OFPMPF_REPLY_MORE / REQ_MORE).
pub const MORE: u16 = 1;

const DESC_STR_LEN: usize = 256;
const SERIAL_NUM_LEN: usize = 32;
const DESC_LEN: usize = 3 * DESC_STR_LEN + SERIAL_NUM_LEN + DESC_STR_LEN;
const FLOW_STATS_FIXED: usize = 48;
const TABLE_STATS_LEN: usize = 24;
const METER_STATS_FIXED: usize = 40;
const BAND_STATS_LEN: usize = 16;

/// A multipart request (controller → switch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MultipartRequest {
    /// OFPMPF_REQ_* flags.
    pub flags: u16,
    /// The typed body.
    pub body: MultipartRequestBody,
}

/// The body of a multipart request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MultipartRequestBody {
    /// Switch description.
    Desc,
    /// Individual flow statistics.
    Flow(FlowStatsRequest),
    /// Table statistics.
    Table,
    /// Meter statistics (`meter_id` OFPM_ALL = 0xffffffff for all).
    Meter { meter_id: u32 },
    /// Port descriptions.
    PortDesc,
    /// Any other type, raw.
    Other { mp_type: u16, body: Vec<u8> },
}

/// Fields of an OFPMP_FLOW request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowStatsRequest {
    /// Table to read, or [`super::TABLE_ALL`].
    pub table_id: u8,
    /// Only flows outputting to this port ([`super::port::ANY`] = no filter).
    pub out_port: u32,
    /// Only flows outputting to this group ([`super::GROUP_ANY`] = no filter).
    pub out_group: u32,
    /// Cookie filter value.
    pub cookie: u64,
    /// Cookie filter mask (0 = no filter).
    pub cookie_mask: u64,
    /// Only flows matching this (non-strictly).
    pub match_: Match,
}

impl FlowStatsRequest {
    /// Every flow of every table.
    pub fn all() -> FlowStatsRequest {
        FlowStatsRequest {
            table_id: super::TABLE_ALL,
            out_port: super::port::ANY,
            out_group: super::GROUP_ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::any(),
        }
    }
}

/// A multipart reply (switch → controller).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MultipartReply {
    /// OFPMPF_REPLY_* flags.
    pub flags: u16,
    /// The typed body.
    pub body: MultipartReplyBody,
}

impl MultipartReply {
    /// Whether more replies with the same xid follow (OFPMPF_REPLY_MORE).
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
}

/// The body of a multipart reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MultipartReplyBody {
    /// Switch description.
    Desc(Desc),
    /// Flow entries.
    Flow(Vec<FlowStats>),
    /// Table counters.
    Table(Vec<TableStats>),
    /// Meter counters.
    Meter(Vec<MeterStats>),
    /// Port descriptions.
    PortDesc(Vec<Port>),
    /// Any other type, raw.
    Other { mp_type: u16, body: Vec<u8> },
}

/// Switch description strings (OFPMP_DESC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Desc {
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

/// One flow entry of an OFPMP_FLOW reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    /// (table, priority, match, instructions): equal to [`super::FlowMod::rule_key`] of the
    /// flow-mod that installed this entry, for reconciliation.
    pub fn rule_key(&self) -> (u8, u16, &Match, &[Instruction]) {
        (
            self.table_id,
            self.priority,
            &self.match_,
            &self.instructions,
        )
    }

    fn encoded_len(&self) -> usize {
        FLOW_STATS_FIXED + self.match_.encoded_len() + instructions_len(&self.instructions)
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.put_u16(len16(self.encoded_len()));
        out.put_u8(self.table_id);
        out.put_zeros(1);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.priority);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.flags);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        self.match_.emit(out);
        emit_instructions(&self.instructions, out);
    }

    fn parse(r: &mut Reader<'_>) -> Result<FlowStats, CodecError> {
        let bad = |_| CodecError::BadMultipart;
        let len = usize::from(u16::from_be_bytes(r.array().map_err(bad)?));
        if len < FLOW_STATS_FIXED + 8 || len % 8 != 0 {
            return Err(CodecError::BadMultipart);
        }
        let entry = r.take(len - 2).map_err(bad)?;
        let mut e = Reader::new(entry);
        let table_id = e.u8()?;
        e.skip(1)?;
        let duration_sec = e.u32()?;
        let duration_nsec = e.u32()?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        let flags = e.u16()?;
        e.skip(4)?;
        let cookie = e.u64()?;
        let packet_count = e.u64()?;
        let byte_count = e.u64()?;
        let match_ = Match::parse(&mut e)?;
        let instructions = parse_instructions(e.rest())?;
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            cookie,
            packet_count,
            byte_count,
            match_,
            instructions,
        })
    }
}

/// Counters of one table (OFPMP_TABLE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// Counters of one meter band.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BandStats {
    pub packet_band_count: u64,
    pub byte_band_count: u64,
}

/// Counters of one meter (OFPMP_METER).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub band_stats: Vec<BandStats>,
}

impl MeterStats {
    fn encoded_len(&self) -> usize {
        METER_STATS_FIXED + BAND_STATS_LEN * self.band_stats.len()
    }

    fn parse(r: &mut Reader<'_>) -> Result<MeterStats, CodecError> {
        let bad = |_| CodecError::BadMultipart;
        let head = r.peek(6).map_err(bad)?;
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if len < METER_STATS_FIXED || (len - METER_STATS_FIXED) % BAND_STATS_LEN != 0 {
            return Err(CodecError::BadMultipart);
        }
        let mut e = Reader::new(r.take(len).map_err(bad)?);
        let meter_id = e.u32()?;
        e.skip(8)?;
        let mut m = MeterStats {
            meter_id,
            flow_count: e.u32()?,
            packet_in_count: e.u64()?,
            byte_in_count: e.u64()?,
            duration_sec: e.u32()?,
            duration_nsec: e.u32()?,
            band_stats: Vec::new(),
        };
        while !e.is_empty() {
            m.band_stats.push(BandStats {
                packet_band_count: e.u64()?,
                byte_band_count: e.u64()?,
            });
        }
        Ok(m)
    }
}

impl MultipartRequest {
    fn mp_type(&self) -> u16 {
        match &self.body {
            MultipartRequestBody::Desc => mp_type::DESC,
            MultipartRequestBody::Flow(_) => mp_type::FLOW,
            MultipartRequestBody::Table => mp_type::TABLE,
            MultipartRequestBody::Meter { .. } => mp_type::METER,
            MultipartRequestBody::PortDesc => mp_type::PORT_DESC,
            MultipartRequestBody::Other { mp_type, .. } => *mp_type,
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        8 + match &self.body {
            MultipartRequestBody::Desc
            | MultipartRequestBody::Table
            | MultipartRequestBody::PortDesc => 0,
            MultipartRequestBody::Flow(f) => 32 + f.match_.encoded_len(),
            MultipartRequestBody::Meter { .. } => 8,
            MultipartRequestBody::Other { body, .. } => body.len(),
        }
    }

    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) {
        out.put_u16(self.mp_type());
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartRequestBody::Desc
            | MultipartRequestBody::Table
            | MultipartRequestBody::PortDesc => {}
            MultipartRequestBody::Flow(f) => {
                out.put_u8(f.table_id);
                out.put_zeros(3);
                out.put_u32(f.out_port);
                out.put_u32(f.out_group);
                out.put_zeros(4);
                out.put_u64(f.cookie);
                out.put_u64(f.cookie_mask);
                f.match_.emit(out);
            }
            MultipartRequestBody::Meter { meter_id } => {
                out.put_u32(*meter_id);
                out.put_zeros(4);
            }
            MultipartRequestBody::Other { body, .. } => out.extend_from_slice(body),
        }
    }

    pub(crate) fn parse_body(r: &mut Reader<'_>) -> Result<MultipartRequest, CodecError> {
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let empty = |r: &Reader<'_>| {
            if r.is_empty() {
                Ok(())
            } else {
                Err(CodecError::BadMultipart)
            }
        };
        let body = match t {
            mp_type::DESC => empty(r).map(|_| MultipartRequestBody::Desc)?,
            mp_type::TABLE => empty(r).map(|_| MultipartRequestBody::Table)?,
            mp_type::PORT_DESC => empty(r).map(|_| MultipartRequestBody::PortDesc)?,
            mp_type::FLOW => {
                let table_id = r.u8()?;
                r.skip(3)?;
                let out_port = r.u32()?;
                let out_group = r.u32()?;
                r.skip(4)?;
                let cookie = r.u64()?;
                let cookie_mask = r.u64()?;
                let match_ = Match::parse(r)?;
                empty(r)?;
                MultipartRequestBody::Flow(FlowStatsRequest {
                    table_id,
                    out_port,
                    out_group,
                    cookie,
                    cookie_mask,
                    match_,
                })
            }
            mp_type::METER => {
                let meter_id = r.u32()?;
                r.skip(4)?;
                empty(r)?;
                MultipartRequestBody::Meter { meter_id }
            }
            other => MultipartRequestBody::Other {
                mp_type: other,
                body: r.rest().to_vec(),
            },
        };
        Ok(MultipartRequest { flags, body })
    }
}

impl MultipartReply {
    fn mp_type(&self) -> u16 {
        match &self.body {
            MultipartReplyBody::Desc(_) => mp_type::DESC,
            MultipartReplyBody::Flow(_) => mp_type::FLOW,
            MultipartReplyBody::Table(_) => mp_type::TABLE,
            MultipartReplyBody::Meter(_) => mp_type::METER,
            MultipartReplyBody::PortDesc(_) => mp_type::PORT_DESC,
            MultipartReplyBody::Other { mp_type, .. } => *mp_type,
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        8 + match &self.body {
            MultipartReplyBody::Desc(_) => DESC_LEN,
            MultipartReplyBody::Flow(v) => v.iter().map(FlowStats::encoded_len).sum(),
            MultipartReplyBody::Table(v) => TABLE_STATS_LEN * v.len(),
            MultipartReplyBody::Meter(v) => v.iter().map(MeterStats::encoded_len).sum(),
            MultipartReplyBody::PortDesc(v) => Port::LEN * v.len(),
            MultipartReplyBody::Other { body, .. } => body.len(),
        }
    }

    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) {
        out.put_u16(self.mp_type());
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartReplyBody::Desc(d) => {
                put_fixed_str(out, &d.mfr_desc, DESC_STR_LEN);
                put_fixed_str(out, &d.hw_desc, DESC_STR_LEN);
                put_fixed_str(out, &d.sw_desc, DESC_STR_LEN);
                put_fixed_str(out, &d.serial_num, SERIAL_NUM_LEN);
                put_fixed_str(out, &d.dp_desc, DESC_STR_LEN);
            }
            MultipartReplyBody::Flow(v) => v.iter().for_each(|f| f.emit(out)),
            MultipartReplyBody::Table(v) => {
                for t in v {
                    out.put_u8(t.table_id);
                    out.put_zeros(3);
                    out.put_u32(t.active_count);
                    out.put_u64(t.lookup_count);
                    out.put_u64(t.matched_count);
                }
            }
            MultipartReplyBody::Meter(v) => {
                for m in v {
                    out.put_u32(m.meter_id);
                    out.put_u16(len16(m.encoded_len()));
                    out.put_zeros(6);
                    out.put_u32(m.flow_count);
                    out.put_u64(m.packet_in_count);
                    out.put_u64(m.byte_in_count);
                    out.put_u32(m.duration_sec);
                    out.put_u32(m.duration_nsec);
                    for b in &m.band_stats {
                        out.put_u64(b.packet_band_count);
                        out.put_u64(b.byte_band_count);
                    }
                }
            }
            MultipartReplyBody::PortDesc(v) => v.iter().for_each(|p| p.emit(out)),
            MultipartReplyBody::Other { body, .. } => out.extend_from_slice(body),
        }
    }

    pub(crate) fn parse_body(r: &mut Reader<'_>) -> Result<MultipartReply, CodecError> {
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match t {
            mp_type::DESC => {
                if r.remaining() != DESC_LEN {
                    return Err(CodecError::BadMultipart);
                }
                MultipartReplyBody::Desc(Desc {
                    mfr_desc: fixed_str(r.take(DESC_STR_LEN)?),
                    hw_desc: fixed_str(r.take(DESC_STR_LEN)?),
                    sw_desc: fixed_str(r.take(DESC_STR_LEN)?),
                    serial_num: fixed_str(r.take(SERIAL_NUM_LEN)?),
                    dp_desc: fixed_str(r.take(DESC_STR_LEN)?),
                })
            }
            mp_type::FLOW => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(FlowStats::parse(r)?);
                }
                MultipartReplyBody::Flow(v)
            }
            mp_type::TABLE => {
                if r.remaining() % TABLE_STATS_LEN != 0 {
                    return Err(CodecError::BadMultipart);
                }
                let mut v = Vec::with_capacity(r.remaining() / TABLE_STATS_LEN);
                while !r.is_empty() {
                    let table_id = r.u8()?;
                    r.skip(3)?;
                    v.push(TableStats {
                        table_id,
                        active_count: r.u32()?,
                        lookup_count: r.u64()?,
                        matched_count: r.u64()?,
                    });
                }
                MultipartReplyBody::Table(v)
            }
            mp_type::METER => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(MeterStats::parse(r)?);
                }
                MultipartReplyBody::Meter(v)
            }
            mp_type::PORT_DESC => {
                if r.remaining() % Port::LEN != 0 {
                    return Err(CodecError::BadMultipart);
                }
                let mut v = Vec::with_capacity(r.remaining() / Port::LEN);
                while !r.is_empty() {
                    v.push(Port::parse(r)?);
                }
                MultipartReplyBody::PortDesc(v)
            }
            other => MultipartReplyBody::Other {
                mp_type: other,
                body: r.rest().to_vec(),
            },
        };
        Ok(MultipartReply { flags, body })
    }
}
