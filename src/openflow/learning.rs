//! Reactive MAC learning (Pyretic's `-m i` mode, done without a per-packet allocation).
//!
//! A PACKET_IN is read through a borrowed view, the source MAC is learnt in a fixed-size
//! table, and the answer is written straight into the session's output buffer: a FLOW_MOD
//! towards the learnt port (carrying the buffer id when the switch buffered the packet,
//! followed by a PACKET_OUT with the frame when it did not), or a flooding PACKET_OUT for a
//! destination not yet known. Memory is fixed whatever the number of MACs seen: a full
//! probe window overwrites its oldest slot, so a MAC flood costs forgetting, never growth.

use super::{msg_type, port, CodecError, NO_BUFFER, VERSION};

/// OXM header of OFPXMT_OFB_IN_PORT (class 0x8000, field 0, length 4).
const OXM_IN_PORT: u32 = 0x8000_0004;
/// OXM header of OFPXMT_OFB_ETH_DST (class 0x8000, field 3, length 6).
const OXM_ETH_DST: u32 = 0x8000_0606;
/// OFPMT_OXM.
const MATCH_OXM: u16 = 1;
/// OFPIT_APPLY_ACTIONS.
const APPLY_ACTIONS: u16 = 4;
/// OFPAT_OUTPUT.
const ACTION_OUTPUT: u16 = 0;
/// Bytes of a FLOW_MOD before its match.
const FLOW_MOD_FIXED: usize = 48;
/// Bytes of a PACKET_OUT before its actions.
const PACKET_OUT_FIXED: usize = 24;
/// Slots probed before the oldest one is overwritten.
const PROBE: usize = 8;

/// A PACKET_IN, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInView<'a> {
    pub xid: u32,
    pub buffer_id: u32,
    /// Length of the frame on the switch (`data` may be shorter: truncated).
    pub total_len: u16,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// From the match's OXM in_port, if present.
    pub in_port: Option<u32>,
    /// The (possibly truncated) frame.
    pub data: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Result<u16, CodecError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
        .ok_or(CodecError::Truncated)
}

fn be32(b: &[u8], at: usize) -> Result<u32, CodecError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(CodecError::Truncated)
}

fn be64(b: &[u8], at: usize) -> Result<u64, CodecError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(CodecError::Truncated)
}

impl<'a> PacketInView<'a> {
    /// Reads one whole PACKET_IN message (header included). Every length is checked.
    pub fn parse(msg: &'a [u8]) -> Result<PacketInView<'a>, CodecError> {
        if msg.len() < 8 {
            return Err(CodecError::Truncated);
        }
        if msg[0] != VERSION {
            return Err(CodecError::BadVersion);
        }
        if usize::from(be16(msg, 2)?) != msg.len() || msg[1] != msg_type::PACKET_IN {
            return Err(CodecError::BadLength);
        }
        let xid = be32(msg, 4)?;
        let buffer_id = be32(msg, 8)?;
        let total_len = be16(msg, 12)?;
        let reason = *msg.get(14).ok_or(CodecError::Truncated)?;
        let table_id = *msg.get(15).ok_or(CodecError::Truncated)?;
        let cookie = be64(msg, 16)?;
        if be16(msg, 24)? != MATCH_OXM {
            return Err(CodecError::BadMatch);
        }
        let match_len = usize::from(be16(msg, 26)?);
        if match_len < 4 {
            return Err(CodecError::BadMatch);
        }
        let padded = match_len.div_ceil(8) * 8;
        let fields = msg.get(28..24 + match_len).ok_or(CodecError::BadMatch)?;
        let mut in_port = None;
        let mut at = 0;
        while at < fields.len() {
            let header = be32(fields, at).map_err(|_| CodecError::BadOxm)?;
            let len = (header & 0xff) as usize;
            let value = fields.get(at + 4..at + 4 + len).ok_or(CodecError::BadOxm)?;
            if header == OXM_IN_PORT {
                in_port = Some(be32(value, 0)?);
            }
            at += 4 + len;
        }
        // Two bytes of padding follow the match, then the frame.
        let data = msg.get(24 + padded + 2..).ok_or(CodecError::Truncated)?;
        Ok(PacketInView {
            xid,
            buffer_id,
            total_len,
            reason,
            table_id,
            cookie,
            in_port,
            data,
        })
    }
}

/// A fixed-capacity MAC → port table (open addressing, bounded probing, oldest evicted).
pub struct MacTable {
    /// (mac | 1 << 63 when used, port, last use).
    slots: Box<[(u64, u32, u64)]>,
    mask: usize,
    clock: u64,
    learnt: u64,
    evicted: u64,
}

const USED: u64 = 1 << 63;

impl std::fmt::Debug for MacTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacTable")
            .field("capacity", &self.slots.len())
            .field("learnt", &self.learnt)
            .field("evicted", &self.evicted)
            .finish()
    }
}

impl MacTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least 16).
    pub fn new(capacity: usize) -> MacTable {
        let n = capacity.max(16).next_power_of_two();
        MacTable {
            slots: vec![(0, 0, 0); n].into_boxed_slice(),
            mask: n - 1,
            clock: 0,
            learnt: 0,
            evicted: 0,
        }
    }

    fn home(&self, mac: u64) -> usize {
        // Fibonacci hashing spreads sequential MACs (cbench's) over the table.
        (mac.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & self.mask
    }

    /// Records that `mac` was seen on `port`.
    pub fn learn(&mut self, mac: u64, port: u32) {
        self.clock += 1;
        let tagged = mac | USED;
        let home = self.home(mac);
        let mut oldest = home;
        for i in 0..PROBE {
            let at = (home + i) & self.mask;
            let slot = &mut self.slots[at];
            if slot.0 == tagged || slot.0 & USED == 0 {
                if slot.0 != tagged {
                    self.learnt += 1;
                }
                *slot = (tagged, port, self.clock);
                return;
            }
            if slot.2 < self.slots[oldest].2 {
                oldest = at;
            }
        }
        self.evicted += 1;
        self.learnt += 1;
        self.slots[oldest] = (tagged, port, self.clock);
    }

    /// The port `mac` was last seen on.
    pub fn lookup(&self, mac: u64) -> Option<u32> {
        let tagged = mac | USED;
        let home = self.home(mac);
        (0..PROBE)
            .map(|i| self.slots[(home + i) & self.mask])
            .find(|s| s.0 == tagged)
            .map(|s| s.1)
    }

    /// Slots in the table (its fixed memory).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// MACs learnt, and how many of them overwrote an older entry.
    pub fn counts(&self) -> (u64, u64) {
        (self.learnt, self.evicted)
    }
}

/// How learnt flows are installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearningConfig {
    pub table_id: u8,
    pub priority: u16,
    /// Seconds without traffic before the switch removes a learnt flow (0 = never).
    pub idle_timeout: u16,
    pub cookie: u64,
}

impl LearningConfig {
    /// True for a flow entry this module installed (its table and cookie): such entries
    /// belong to the switch's learning, not to the desired table.
    pub fn is_learnt(&self, table_id: u8, cookie: u64) -> bool {
        table_id == self.table_id && cookie == self.cookie
    }
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            table_id: 0,
            priority: 10,
            idle_timeout: 60,
            cookie: 0x5245_464c_0000_0001,
        }
    }
}

/// What one PACKET_IN was answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A flow towards the learnt port (and a PACKET_OUT with the frame if it was not buffered).
    Flow { out_port: u32 },
    /// The destination is unknown or multicast: flooded.
    Flood,
    /// The destination sits behind the input port: nothing to send.
    Drop,
    /// Not an Ethernet frame we can read (too short), no in_port, or an unbuffered frame
    /// the switch truncated (sending it on would put a cut packet on the wire): ignored.
    Ignored,
}

fn mac_at(frame: &[u8], at: usize) -> Option<u64> {
    let b = frame.get(at..at + 6)?;
    Some(b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn header(out: &mut Vec<u8>, t: u8, len: usize, xid: u32) {
    out.push(VERSION);
    out.push(t);
    put16(out, len as u16);
    put32(out, xid);
}

/// An OUTPUT action (16 bytes).
fn output_action(out: &mut Vec<u8>, port: u32) {
    put16(out, ACTION_OUTPUT);
    put16(out, 16);
    put32(out, port);
    put16(out, 0);
    out.extend_from_slice(&[0; 6]);
}

/// ADD (in_port, eth_dst) → output `out_port`, applied to `buffer_id`'s packet.
fn flow_mod(
    out: &mut Vec<u8>,
    cfg: &LearningConfig,
    xid: u32,
    in_port: u32,
    dst: u64,
    out_port: u32,
    buffer_id: u32,
) {
    // Match: type, length, in_port (8), eth_dst (10) = 22, padded to 24.
    const MATCH_LEN: usize = 4 + 8 + 10;
    const INSTR_LEN: usize = 8 + 16;
    let len = FLOW_MOD_FIXED + 24 + INSTR_LEN;
    header(out, msg_type::FLOW_MOD, len, xid);
    put64(out, cfg.cookie);
    put64(out, 0);
    out.push(cfg.table_id);
    out.push(0); // OFPFC_ADD
    put16(out, cfg.idle_timeout);
    put16(out, 0);
    put16(out, cfg.priority);
    put32(out, buffer_id);
    put32(out, port::ANY);
    put32(out, super::GROUP_ANY);
    put16(out, 0);
    put16(out, 0);
    put16(out, MATCH_OXM);
    put16(out, MATCH_LEN as u16);
    put32(out, OXM_IN_PORT);
    put32(out, in_port);
    put32(out, OXM_ETH_DST);
    out.extend_from_slice(&dst.to_be_bytes()[2..]);
    out.extend_from_slice(&[0; 2]);
    put16(out, APPLY_ACTIONS);
    put16(out, INSTR_LEN as u16);
    put32(out, 0);
    output_action(out, out_port);
}

/// PACKET_OUT of the buffered packet, or of `data` when unbuffered.
fn packet_out(out: &mut Vec<u8>, xid: u32, buffer_id: u32, in_port: u32, to: u32, data: &[u8]) {
    let data = if buffer_id == NO_BUFFER { data } else { &[] };
    let len = PACKET_OUT_FIXED + 16 + data.len();
    header(out, msg_type::PACKET_OUT, len, xid);
    put32(out, buffer_id);
    put32(out, in_port);
    put16(out, 16);
    out.extend_from_slice(&[0; 6]);
    output_action(out, to);
    out.extend_from_slice(data);
}

/// Learns from one PACKET_IN and appends the answer to `out` (replies reuse its xid).
///
/// Allocates nothing once `out` has grown to its working size.
pub fn answer(
    table: &mut MacTable,
    cfg: &LearningConfig,
    pkt: &PacketInView<'_>,
    out: &mut Vec<u8>,
) -> Answer {
    let (Some(in_port), Some(dst), Some(src)) =
        (pkt.in_port, mac_at(pkt.data, 0), mac_at(pkt.data, 6))
    else {
        return Answer::Ignored;
    };
    // Unbuffered, the answer must carry the frame: one too long for a PACKET_OUT, or cut
    // short by the switch, is not answered (the switch sends the next packet again).
    if pkt.buffer_id == NO_BUFFER
        && (pkt.data.len() > usize::from(u16::MAX) - 64
            || pkt.data.len() < usize::from(pkt.total_len))
    {
        return Answer::Ignored;
    }
    let multicast = |mac: u64| mac & (1 << 40) != 0;
    if !multicast(src) {
        table.learn(src, in_port);
    }
    match (!multicast(dst)).then(|| table.lookup(dst)).flatten() {
        Some(p) if p == in_port => Answer::Drop,
        Some(p) => {
            flow_mod(out, cfg, pkt.xid, in_port, dst, p, pkt.buffer_id);
            if pkt.buffer_id == NO_BUFFER {
                packet_out(out, pkt.xid, NO_BUFFER, in_port, p, pkt.data);
            }
            Answer::Flow { out_port: p }
        }
        None => {
            packet_out(out, pkt.xid, pkt.buffer_id, in_port, port::FLOOD, pkt.data);
            Answer::Flood
        }
    }
}

/// Encodes a PACKET_IN from table 0 (for tests, fuzzing seeds, and the switch emulator).
pub fn emit_packet_in(out: &mut Vec<u8>, xid: u32, buffer_id: u32, in_port: u32, frame: &[u8]) {
    emit_table_miss(out, xid, buffer_id, in_port, 0, frame);
}

/// Encodes a PACKET_IN sent by `table_id`'s miss entry (reason OFPR_NO_MATCH).
pub fn emit_table_miss(
    out: &mut Vec<u8>,
    xid: u32,
    buffer_id: u32,
    in_port: u32,
    table_id: u8,
    frame: &[u8],
) {
    // Match: type, length, in_port = 12, padded to 16; then 2 bytes of padding.
    let len = 24 + 16 + 2 + frame.len();
    header(out, msg_type::PACKET_IN, len, xid);
    put32(out, buffer_id);
    put16(out, frame.len() as u16);
    out.push(0); // OFPR_NO_MATCH
    out.push(table_id);
    put64(out, 0);
    put16(out, MATCH_OXM);
    put16(out, 12);
    put32(out, OXM_IN_PORT);
    put32(out, in_port);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::{frame, Action, FlowModCommand, Instruction, Match, Message};

    fn eth(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45; 46]);
        f
    }

    const A: [u8; 6] = [0, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    fn packet_in(buffer_id: u32, in_port: u32, frame: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        emit_packet_in(&mut b, 77, buffer_id, in_port, frame);
        b
    }

    /// Every message in `bytes`, decoded by the general codec.
    fn messages(bytes: &[u8]) -> Vec<Message> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while let Some((_, n)) = frame(rest).unwrap() {
            let (xid, m) = Message::parse(&rest[..n]).unwrap();
            assert_eq!(xid, 77);
            out.push(m);
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        out
    }

    #[test]
    fn packet_in_view_agrees_with_the_codec() {
        let f = eth(B, A);
        let bytes = packet_in(9, 3, &f);
        let v = PacketInView::parse(&bytes).unwrap();
        assert_eq!(
            (v.xid, v.buffer_id, v.in_port, v.data),
            (77, 9, Some(3), &f[..])
        );
        let Message::PacketIn(p) = Message::parse(&bytes).unwrap().1 else {
            panic!("not a packet-in");
        };
        assert_eq!(p.data, f);
        assert_eq!(p.match_, Match::builder().in_port(3).build().unwrap());
    }

    #[test]
    fn truncated_or_lying_packet_ins_are_errors_not_panics() {
        let bytes = packet_in(9, 3, &eth(B, A));
        for n in 0..bytes.len() {
            assert!(PacketInView::parse(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut bad = bytes.clone();
        bad[27] = 200; // match length beyond the message
        assert!(PacketInView::parse(&bad).is_err());
        let mut bad = bytes.clone();
        bad[31] = 60; // OXM length beyond the match
        assert!(PacketInView::parse(&bad).is_err());
    }

    #[test]
    fn unknown_destination_floods_then_learnt_one_gets_a_flow() {
        let mut t = MacTable::new(64);
        let cfg = LearningConfig::default();
        let mut out = Vec::new();
        // A → B, B unknown: flood the buffered packet.
        let pi = packet_in(5, 1, &eth(B, A));
        let a = answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out);
        assert_eq!(a, Answer::Flood);
        let msgs = messages(&out);
        assert_eq!(
            msgs,
            vec![Message::PacketOut(crate::openflow::PacketOut {
                buffer_id: 5,
                in_port: 1,
                actions: vec![Action::Output {
                    port: port::FLOOD,
                    max_len: 0
                }],
                data: vec![],
            })]
        );
        // B → A, unbuffered: A was learnt on port 1, so a flow plus a packet-out with data.
        out.clear();
        let f = eth(A, B);
        let pi = packet_in(NO_BUFFER, 2, &f);
        let a = answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out);
        assert_eq!(a, Answer::Flow { out_port: 1 });
        let msgs = messages(&out);
        let Message::FlowMod(fm) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        assert_eq!(fm.command, FlowModCommand::Add);
        assert_eq!(
            (fm.table_id, fm.priority, fm.idle_timeout, fm.buffer_id),
            (0, 10, 60, NO_BUFFER)
        );
        assert_eq!(
            fm.match_,
            Match::builder().in_port(2).eth_dst(A).build().unwrap()
        );
        assert_eq!(
            fm.instructions,
            vec![Instruction::ApplyActions(vec![Action::Output {
                port: 1,
                max_len: 0
            }])]
        );
        let Message::PacketOut(po) = &msgs[1] else {
            panic!("{msgs:?}")
        };
        assert_eq!((po.in_port, &po.data), (2, &f));
        assert_eq!(msgs.len(), 2);
        assert_eq!(t.lookup(0xb), Some(2));
    }

    #[test]
    fn broadcast_floods_and_hairpin_drops() {
        let mut t = MacTable::new(64);
        let cfg = LearningConfig::default();
        let mut out = Vec::new();
        let pi = packet_in(NO_BUFFER, 1, &eth(BCAST, A));
        assert_eq!(
            answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out),
            Answer::Flood
        );
        out.clear();
        let pi = packet_in(NO_BUFFER, 1, &eth(A, B));
        assert_eq!(
            answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out),
            Answer::Drop
        );
        assert!(out.is_empty());
        let pi = packet_in(NO_BUFFER, 1, &[1, 2, 3]);
        assert_eq!(
            answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out),
            Answer::Ignored
        );
        // An unbuffered frame the switch truncated is not sent on, even to a known port.
        let mut pi = packet_in(NO_BUFFER, 2, &eth(A, B));
        pi[12..14].copy_from_slice(&1500u16.to_be_bytes());
        let v = PacketInView::parse(&pi).unwrap();
        assert_eq!(v.total_len, 1500);
        assert_eq!(answer(&mut t, &cfg, &v, &mut out), Answer::Ignored);
        assert!(out.is_empty());
        // Buffered, the switch holds the whole packet: answered.
        let mut pi = packet_in(9, 2, &eth(A, B));
        pi[12..14].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(
            answer(&mut t, &cfg, &PacketInView::parse(&pi).unwrap(), &mut out),
            Answer::Flow { out_port: 1 }
        );
    }

    #[test]
    fn mac_table_memory_is_fixed_under_a_mac_flood() {
        let mut t = MacTable::new(1024);
        for mac in 0..100_000u64 {
            t.learn(mac, (mac % 48) as u32);
        }
        assert_eq!(t.capacity(), 1024);
        let (learnt, evicted) = t.counts();
        assert_eq!(learnt, 100_000);
        assert!(evicted >= 100_000 - 1024, "{evicted}");
        // The newest MACs are still there.
        let recent = (99_900..100_000u64)
            .filter(|&m| t.lookup(m) == Some((m % 48) as u32))
            .count();
        assert!(recent >= 95, "{recent}");
        // Relearning moves a MAC without a second slot.
        t.learn(99_999, 7);
        assert_eq!(t.lookup(99_999), Some(7));
        assert_eq!(t.counts().0, 100_000);
    }
}
