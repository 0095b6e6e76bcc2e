//! OpenFlow 1.3, sans-IO: the wire codec, flow tables and the per-switch session.
//!
//! Codec layers:
//! - [`frame`] cuts whole messages out of a TCP byte stream without copying: it reads only
//!   the 8-byte header and says whether the message is complete.
//! - [`Message`] is an owned representation of every message the controller sends or must
//!   understand; [`Message::parse`] and [`Message::emit`] round-trip byte for byte for any
//!   message whose padding is zero (as every real switch sends it). Unknown message types,
//!   OXM fields, actions, instructions and multipart bodies are kept raw, so they round-trip
//!   too and never cause an error.
//!
//! Above the codec: [`table`] keeps desired and installed tables canonically and computes
//! the minimal strict difference, and [`session`] is one switch connection as a state
//! machine over bytes and `now` (handshake, echo, barriers, error mapping, reconciliation,
//! and — when the learning table's miss entry is desired — answering its PACKET_INs with
//! [`learning`]'s allocation-free MAC learning). This library knows nothing of the policy:
//! what the tables should hold comes from the caller (Reflex's `lower` module), and its
//! settings are its own small structs ([`session::SessionConfig`],
//! [`learning::LearningConfig`]). The sockets live in `daemon::openflow`.
//!
//! Every length read from the wire (message, match, OXM, instruction, action, multipart
//! entry, meter band, hello element) is checked against its minimum, its alignment and its
//! parent before use; malformed input yields a small `Copy` [`CodecError`], never a panic.
//! Emission appends to the caller's buffer and allocates nothing beyond its growth.

mod action;
mod errors;
pub mod learning;
mod message;
mod multipart;
mod oxm;
pub mod session;
pub mod table;
mod wire;

#[cfg(test)]
mod strategies;

pub use action::{Action, Instruction};
pub use errors::{error_name, error_type_name};
pub use message::{
    negotiate, DropMeter, ErrorMsg, Features, FlowMod, FlowModCommand, FlowRemoved, Hello,
    HelloElement, Message, MeterBand, MeterMod, MeterModCommand, PacketIn, PacketOut, Port,
    PortStatus, Role, SwitchConfig,
};
pub use multipart::{
    mp_type, BandStats, Desc, FlowStats, FlowStatsRequest, MeterStats, MultipartReply,
    MultipartReplyBody, MultipartRequest, MultipartRequestBody, TableStats, MORE as MULTIPART_MORE,
};
pub use oxm::{
    field as oxm_field, Match, MatchBuilder, MatchError, OxmField, OFPVID_PRESENT,
    OFPXMC_OPENFLOW_BASIC,
};

/// The OpenFlow 1.3 wire version.
pub const VERSION: u8 = 4;
/// Length of the common message header.
pub const HEADER_LEN: usize = 8;
/// Largest message the 16-bit length field can describe.
pub const MAX_MESSAGE_LEN: usize = 65535;
/// `buffer_id` meaning "no buffered packet" (OFP_NO_BUFFER).
pub const NO_BUFFER: u32 = 0xffff_ffff;
/// Wildcard group for flow-mod / flow-stats filters (OFPG_ANY).
pub const GROUP_ANY: u32 = 0xffff_ffff;
/// All tables, for deletes and stats requests (OFPTT_ALL).
pub const TABLE_ALL: u8 = 0xff;
/// `max_len` asking the switch to send the whole packet to the controller (OFPCML_NO_BUFFER).
pub const CONTROLLER_MAX_LEN_NO_BUFFER: u16 = 0xffff;

/// Reserved and special port numbers (OFPP_*).
pub mod port {
    /// Highest number of a physical port.
    pub const MAX: u32 = 0xffff_ff00;
    /// Send the packet out of its input port.
    pub const IN_PORT: u32 = 0xffff_fff8;
    /// Submit the packet to the first flow table (packet-out only).
    pub const TABLE: u32 = 0xffff_fff9;
    /// Forward with the switch's non-OpenFlow pipeline.
    pub const NORMAL: u32 = 0xffff_fffa;
    /// Flood along the non-blocked ports except the input port.
    pub const FLOOD: u32 = 0xffff_fffb;
    /// All ports except the input port.
    pub const ALL: u32 = 0xffff_fffc;
    /// Send to the controller.
    pub const CONTROLLER: u32 = 0xffff_fffd;
    /// The switch's local networking stack.
    pub const LOCAL: u32 = 0xffff_fffe;
    /// Wildcard port (filters) / "no port".
    pub const ANY: u32 = 0xffff_ffff;
}

/// Message type numbers (OFPT_*).
pub mod msg_type {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const TABLE_MOD: u8 = 17;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const QUEUE_GET_CONFIG_REQUEST: u8 = 22;
    pub const QUEUE_GET_CONFIG_REPLY: u8 = 23;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
    pub const METER_MOD: u8 = 29;
}

/// Flow-mod flags (OFPFF_*).
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1;
    pub const CHECK_OVERLAP: u16 = 2;
    pub const RESET_COUNTS: u16 = 4;
    pub const NO_PKT_COUNTS: u16 = 8;
    pub const NO_BYT_COUNTS: u16 = 16;
}

/// Meter flags (OFPMF_*).
pub mod meter_flags {
    /// Rates in kb/s.
    pub const KBPS: u16 = 1;
    /// Rates in packets per second.
    pub const PKTPS: u16 = 2;
    /// Bands have a burst size.
    pub const BURST: u16 = 4;
    /// Collect statistics.
    pub const STATS: u16 = 8;
}

/// Controller roles (OFPCR_ROLE_*).
pub mod role {
    pub const NOCHANGE: u32 = 0;
    pub const EQUAL: u32 = 1;
    pub const MASTER: u32 = 2;
    pub const SLAVE: u32 = 3;
}

/// Why a codec operation failed. Small and `Copy` so the session can count it by [`name`].
///
/// [`name`]: CodecError::name
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecError {
    /// A fixed-size field ran past the end of its enclosing structure.
    Truncated,
    /// The header's version is not 1.3 (for anything but HELLO), or is zero.
    BadVersion,
    /// A message length is below the header size or disagrees with the bytes given.
    BadLength,
    /// A match is not of OXM type or its length is wrong.
    BadMatch,
    /// An OXM field has a length inconsistent with its type, or overruns its match.
    BadOxm,
    /// An instruction length is short, unaligned or overruns its list.
    BadInstruction,
    /// An action length is short, unaligned or overruns its list.
    BadAction,
    /// A multipart body or entry has a bad length.
    BadMultipart,
    /// A meter band has a bad length.
    BadBand,
    /// A HELLO element has a bad length.
    BadHello,
    /// A flow-mod or meter-mod command is not defined by the spec.
    BadCommand,
    /// The message would not fit the 16-bit length field.
    TooLong,
    /// The peer's HELLO offers no version we speak (we need 1.3).
    NoCommonVersion {
        /// The version in the peer's header.
        peer_version: u8,
        /// The first word of the peer's version bitmap (0 if it sent none).
        offered: u32,
    },
}

impl CodecError {
    /// A stable snake_case name, for counters and logs.
    pub fn name(&self) -> &'static str {
        match self {
            CodecError::Truncated => "truncated",
            CodecError::BadVersion => "bad_version",
            CodecError::BadLength => "bad_length",
            CodecError::BadMatch => "bad_match",
            CodecError::BadOxm => "bad_oxm",
            CodecError::BadInstruction => "bad_instruction",
            CodecError::BadAction => "bad_action",
            CodecError::BadMultipart => "bad_multipart",
            CodecError::BadBand => "bad_band",
            CodecError::BadHello => "bad_hello",
            CodecError::BadCommand => "bad_command",
            CodecError::TooLong => "too_long",
            CodecError::NoCommonVersion { .. } => "no_common_version",
        }
    }
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::NoCommonVersion {
                peer_version,
                offered,
            } => write!(
                f,
                "openflow: no common version (peer header version {peer_version}, \
                 bitmap {offered:#010x}; need 1.3)"
            ),
            other => write!(f, "openflow: {}", other.name()),
        }
    }
}

impl std::error::Error for CodecError {}

/// The common 8-byte header of every OpenFlow message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Wire version (4 for 1.3).
    pub version: u8,
    /// Message type (see [`msg_type`]).
    pub msg_type: u8,
    /// Total message length including this header.
    pub length: u16,
    /// Transaction id.
    pub xid: u32,
}

impl Header {
    /// Reads a header from the first 8 bytes of `buf` (no length validation).
    pub fn parse(buf: &[u8]) -> Result<Header, CodecError> {
        let mut r = wire::Reader::new(buf);
        Ok(Header {
            version: r.u8()?,
            msg_type: r.u8()?,
            length: r.u16()?,
            xid: r.u32()?,
        })
    }
}

/// Says whether `buf` (the unconsumed part of a TCP stream) starts with a whole message.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((header, n)))`: `buf[..n]` is one message.
/// A length below 8 or a zero version is a stream error: the connection cannot resync.
/// The 16-bit length field cannot exceed [`MAX_MESSAGE_LEN`].
pub fn frame(buf: &[u8]) -> Result<Option<(Header, usize)>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let header = Header::parse(buf)?;
    if header.version == 0 {
        return Err(CodecError::BadVersion);
    }
    let total = usize::from(header.length);
    if total < HEADER_LEN {
        return Err(CodecError::BadLength);
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_needs_a_whole_header() {
        assert_eq!(frame(&[]), Ok(None));
        assert_eq!(frame(&[4, 0, 0, 8, 0, 0, 0]), Ok(None));
    }

    #[test]
    fn frame_cuts_exactly_one_message() {
        let buf = [4, 0, 0, 8, 0, 0, 0, 7, 4, 2, 0];
        let (h, n) = frame(&buf).unwrap().unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            h,
            Header {
                version: 4,
                msg_type: 0,
                length: 8,
                xid: 7
            }
        );
        // the next message is partial
        assert_eq!(frame(&buf[n..]), Ok(None));
    }

    #[test]
    fn frame_waits_for_the_body() {
        let buf = [4, 2, 0, 12, 0, 0, 0, 1, 0xaa, 0xbb];
        assert_eq!(frame(&buf), Ok(None));
    }

    #[test]
    fn frame_rejects_short_length_and_zero_version() {
        assert_eq!(frame(&[4, 0, 0, 7, 0, 0, 0, 0]), Err(CodecError::BadLength));
        assert_eq!(
            frame(&[0, 0, 0, 8, 0, 0, 0, 0]),
            Err(CodecError::BadVersion)
        );
    }

    #[test]
    fn error_names_are_distinct() {
        let all = [
            CodecError::Truncated,
            CodecError::BadVersion,
            CodecError::BadLength,
            CodecError::BadMatch,
            CodecError::BadOxm,
            CodecError::BadInstruction,
            CodecError::BadAction,
            CodecError::BadMultipart,
            CodecError::BadBand,
            CodecError::BadHello,
            CodecError::BadCommand,
            CodecError::TooLong,
            CodecError::NoCommonVersion {
                peer_version: 1,
                offered: 2,
            },
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(CodecError::NoCommonVersion {
            peer_version: 1,
            offered: 2
        }
        .to_string()
        .contains("0x00000002"));
        assert_eq!(CodecError::BadOxm.to_string(), "openflow: bad_oxm");
    }
}
