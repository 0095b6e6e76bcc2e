//! Flow key fields in sFlow-RT's vocabulary (`ipsource`, `tcpdestinationport`, …): how each
//! is extracted from a [`Sample`], encoded at a fixed width into a [`FlowKey`], printed, and
//! parsed back from text.
//!
//! Encodings (big-endian, fixed width per field, so keys concatenate without separators):
//!
//! | field | width | bytes | text |
//! |---|---|---|---|
//! | `agent` | 16 | IPv6, IPv4 as `::ffff:a.b.c.d` | `10.0.0.1` / `2001:db8::1` |
//! | `inputifindex` | 4 | ifIndex | `3` |
//! | `outputifindex` | 5 | tag (0 ifIndex, 1 discard, 2 multiple) + ifIndex | `3`, `discard`, `multiple` |
//! | `macsource`, `macdestination` | 6 | address | `000000000001` (12 hex digits, no separators, uppercase) |
//! | `ethernetprotocol` | 2 | innermost EtherType | `2048` (decimal) |
//! | `vlan` | 2 | outermost VLAN id | `100` |
//! | `ipsource`, `ipdestination` | 4 | IPv4 address | `10.0.0.1` |
//! | `ip6source`, `ip6destination` | 16 | IPv6 address | `2001:db8::1` |
//! | `ipprotocol` | 1 | IP protocol | `6` |
//! | `tcp*port`, `udp*port` | 2 | port | `80` |
//! | `icmptype` | 1 | ICMP / ICMPv6 type | `8` |
//! | `ipttl` | 1 | IPv4 TTL | `64` |
//! | `ipflags` | 1 | IPv4 flags (reserved, DF, MF) | `010` (3 binary digits) |
//! | `ipfragoffset` | 2 | IPv4 fragment offset (8-byte units) | `185` |
//! | `ip6nexthdr` | 1 | IPv6 upper-layer protocol | `17` |
//! | `tcpflags` | 2 | TCP flags (NS..FIN) | `000000010` (9 binary digits) |
//!
//! The flag fields print as sFlow-RT prints them, one binary digit per flag, most
//! significant first, so that `ipflags=001` (more fragments) and `tcpflags=000000010` (a bare
//! SYN) read as in its applications; parsing takes binary digits or `0x` hex. `tcpflags`
//! carries the low eight flag bits of the header (CWR..FIN); the ninth (NS, now reserved by
//! RFC 8311) is not read and prints as 0.
//!
//! sFlow-RT prints MAC addresses as 12 hex digits without separators (in uppercase, as far as
//! its published examples show) and numeric keys in decimal; parsing accepts either case,
//! `:`/`-` separated MACs and `0x` hex numbers. Every discard reason encodes as one
//! `discard` value and every multiple-output count as one `multiple` value, because sFlow-RT
//! reports them that way.

use super::key::FlowKey;
use super::sample::Sample;
use crate::sflow::Interface;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Widest encoded field (an IPv6 address).
pub const MAX_FIELD_LEN: usize = 16;

const OUT_IFINDEX: u8 = 0;
const OUT_DISCARD: u8 = 1;
const OUT_MULTIPLE: u8 = 2;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

/// One flow key field, named as in sFlow-RT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyField {
    /// `agent`: address of the exporting agent.
    Agent,
    /// `inputifindex`: ifIndex the packet came in on.
    InputIfindex,
    /// `outputifindex`: ifIndex it went out on, `discard` or `multiple`.
    OutputIfindex,
    /// `macsource`: Ethernet source.
    MacSource,
    /// `macdestination`: Ethernet destination.
    MacDestination,
    /// `ethernetprotocol`: innermost EtherType.
    EthernetProtocol,
    /// `vlan`: outermost VLAN id.
    Vlan,
    /// `ipsource`: IPv4 source only.
    IpSource,
    /// `ipdestination`: IPv4 destination only.
    IpDestination,
    /// `ip6source`: IPv6 source only.
    Ip6Source,
    /// `ip6destination`: IPv6 destination only.
    Ip6Destination,
    /// `ipprotocol`: IP protocol (IPv6: upper-layer protocol).
    IpProtocol,
    /// `tcpsourceport`: only when the IP protocol is TCP.
    TcpSourcePort,
    /// `tcpdestinationport`: only when the IP protocol is TCP.
    TcpDestinationPort,
    /// `udpsourceport`: only when the IP protocol is UDP.
    UdpSourcePort,
    /// `udpdestinationport`: only when the IP protocol is UDP.
    UdpDestinationPort,
    /// `icmptype`: ICMP or ICMPv6 type.
    IcmpType,
    /// `ipttl`: IPv4 time to live.
    IpTtl,
    /// `ipflags`: IPv4 flags (reserved, don't fragment, more fragments).
    IpFlags,
    /// `ipfragoffset`: IPv4 fragment offset, in 8-byte units.
    IpFragOffset,
    /// `ip6nexthdr`: IPv6 upper-layer protocol (after extension headers).
    Ip6NextHdr,
    /// `tcpflags`: TCP flags.
    TcpFlags,
}

/// One encoded field value (at most [`MAX_FIELD_LEN`] bytes), built without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldValue {
    len: u8,
    bytes: [u8; MAX_FIELD_LEN],
}

impl FieldValue {
    #[inline]
    fn from_slice(b: &[u8]) -> FieldValue {
        let mut bytes = [0u8; MAX_FIELD_LEN];
        let len = b.len().min(MAX_FIELD_LEN);
        bytes[..len].copy_from_slice(&b[..len]);
        FieldValue {
            len: len as u8,
            bytes,
        }
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The encoded bytes zero-padded to [`MAX_FIELD_LEN`].
    #[inline]
    pub(crate) fn word_bytes(&self) -> [u8; MAX_FIELD_LEN] {
        self.bytes
    }

    /// True if `self` and `pattern` have the same length and agree on their first `bits`
    /// bits (a prefix longer than the values never matches), with `mask` =
    /// [`Self::prefix_mask`]`(bits)` computed by the caller (once, when a filter is parsed).
    /// Compares the two zero-padded 16-byte arrays as integers: no slicing, no `memcmp`.
    #[inline]
    pub(crate) fn prefix_matches_masked(&self, pattern: &FieldValue, bits: u8, mask: u128) -> bool {
        if self.len != pattern.len || u32::from(bits) > u32::from(self.len) * 8 {
            return false;
        }
        (u128::from_be_bytes(self.bytes) ^ u128::from_be_bytes(pattern.bytes)) & mask == 0
    }

    /// The first `bits` bits (of 128) set; more than 128 is taken as 128.
    pub(crate) fn prefix_mask(bits: u8) -> u128 {
        match bits.min(128) {
            0 => 0,
            b => u128::MAX << (128 - u32::from(b)),
        }
    }
}

/// A field value that could not be parsed from text.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid {field} value {text:?}: expected {expected}")]
pub struct FieldError {
    /// The field's sFlow-RT name.
    pub field: &'static str,
    /// The offending text.
    pub text: String,
    /// What the field accepts.
    pub expected: &'static str,
}

fn v6_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn parse_u32(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Flags written as sFlow-RT writes them (binary digits, most significant flag first) or as
/// `0x` hex, at most `max`.
fn parse_flags(text: &str, max: u32) -> Option<u32> {
    let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None if !text.is_empty()
            && text.len() <= 16
            && text.bytes().all(|b| b == b'0' || b == b'1') =>
        {
            u32::from_str_radix(text, 2).ok()?
        }
        None => return None,
    };
    (value <= max).then_some(value)
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let t = text.trim();
    let mut digits = [0u8; 12];
    let mut n = 0;
    let grouped = t.contains([':', '-']);
    if grouped {
        // Six groups of one or two hex digits.
        for (groups, g) in t.split([':', '-']).enumerate() {
            if groups == 6 || g.is_empty() || g.len() > 2 {
                return None;
            }
            let v = u8::from_str_radix(g, 16).ok()?;
            digits[n] = v >> 4;
            digits[n + 1] = v & 0xF;
            n += 2;
        }
    } else {
        for c in t.chars() {
            if n == 12 {
                return None;
            }
            digits[n] = c.to_digit(16)? as u8;
            n += 1;
        }
    }
    if n != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        *m = (digits[2 * i] << 4) | digits[2 * i + 1];
    }
    Some(mac)
}

impl KeyField {
    /// Every field, in declaration order.
    pub const ALL: [KeyField; 22] = [
        KeyField::Agent,
        KeyField::InputIfindex,
        KeyField::OutputIfindex,
        KeyField::MacSource,
        KeyField::MacDestination,
        KeyField::EthernetProtocol,
        KeyField::Vlan,
        KeyField::IpSource,
        KeyField::IpDestination,
        KeyField::Ip6Source,
        KeyField::Ip6Destination,
        KeyField::IpProtocol,
        KeyField::TcpSourcePort,
        KeyField::TcpDestinationPort,
        KeyField::UdpSourcePort,
        KeyField::UdpDestinationPort,
        KeyField::IcmpType,
        KeyField::IpTtl,
        KeyField::IpFlags,
        KeyField::IpFragOffset,
        KeyField::Ip6NextHdr,
        KeyField::TcpFlags,
    ];

    /// Looks a field up by its sFlow-RT name (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<KeyField> {
        KeyField::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The sFlow-RT name.
    pub fn name(self) -> &'static str {
        match self {
            KeyField::Agent => "agent",
            KeyField::InputIfindex => "inputifindex",
            KeyField::OutputIfindex => "outputifindex",
            KeyField::MacSource => "macsource",
            KeyField::MacDestination => "macdestination",
            KeyField::EthernetProtocol => "ethernetprotocol",
            KeyField::Vlan => "vlan",
            KeyField::IpSource => "ipsource",
            KeyField::IpDestination => "ipdestination",
            KeyField::Ip6Source => "ip6source",
            KeyField::Ip6Destination => "ip6destination",
            KeyField::IpProtocol => "ipprotocol",
            KeyField::TcpSourcePort => "tcpsourceport",
            KeyField::TcpDestinationPort => "tcpdestinationport",
            KeyField::UdpSourcePort => "udpsourceport",
            KeyField::UdpDestinationPort => "udpdestinationport",
            KeyField::IcmpType => "icmptype",
            KeyField::IpTtl => "ipttl",
            KeyField::IpFlags => "ipflags",
            KeyField::IpFragOffset => "ipfragoffset",
            KeyField::Ip6NextHdr => "ip6nexthdr",
            KeyField::TcpFlags => "tcpflags",
        }
    }

    /// Fixed encoded width in bytes.
    pub fn width(self) -> usize {
        match self {
            KeyField::Agent | KeyField::Ip6Source | KeyField::Ip6Destination => 16,
            KeyField::InputIfindex | KeyField::IpSource | KeyField::IpDestination => 4,
            KeyField::OutputIfindex => 5,
            KeyField::MacSource | KeyField::MacDestination => 6,
            KeyField::EthernetProtocol
            | KeyField::Vlan
            | KeyField::TcpSourcePort
            | KeyField::TcpDestinationPort
            | KeyField::UdpSourcePort
            | KeyField::UdpDestinationPort
            | KeyField::IpFragOffset
            | KeyField::TcpFlags => 2,
            KeyField::IpProtocol
            | KeyField::IcmpType
            | KeyField::IpTtl
            | KeyField::IpFlags
            | KeyField::Ip6NextHdr => 1,
        }
    }

    /// Bits of an address field (for CIDR prefixes); `None` for non-address fields.
    pub fn address_bits(self) -> Option<u8> {
        match self {
            KeyField::IpSource | KeyField::IpDestination => Some(32),
            KeyField::Agent | KeyField::Ip6Source | KeyField::Ip6Destination => Some(128),
            _ => None,
        }
    }

    /// The field's encoded value in `s`, or `None` when the sample lacks it.
    #[inline]
    pub fn value(self, s: &Sample) -> Option<FieldValue> {
        self.value_word(s).map(|word| FieldValue {
            len: self.width() as u8,
            bytes: word.to_be_bytes(),
        })
    }

    /// [`KeyField::value`] as one big-endian word: the encoding left-aligned, zeros after.
    /// Built in registers (no byte array, no copy), for filters and keys on the per-sample
    /// path.
    #[inline]
    pub(crate) fn value_word(self, s: &Sample) -> Option<u128> {
        let k = &s.keys;
        // A field of `width` bytes holding `v`, left-aligned.
        let top = |v: u128, width: u32| v << (128 - 8 * width);
        let port = |want: u8, port: Option<u16>| {
            (k.ip_proto == Some(want))
                .then_some(port)
                .flatten()
                .map(|p| top(u128::from(p), 2))
        };
        let mac = |m: [u8; 6]| {
            let [a, b, c, d, e, f] = m;
            top(u128::from(u64::from_be_bytes([0, 0, a, b, c, d, e, f])), 6)
        };
        match self {
            KeyField::Agent => Some(u128::from_be_bytes(v6_bytes(s.agent))),
            KeyField::InputIfindex => match s.input {
                Interface::Ifindex(i) => Some(top(u128::from(i), 4)),
                _ => None,
            },
            KeyField::OutputIfindex => {
                let (tag, index) = match s.output {
                    Interface::Ifindex(i) => (OUT_IFINDEX, i),
                    Interface::Discard(_) => (OUT_DISCARD, 0),
                    Interface::Multiple(_) => (OUT_MULTIPLE, 0),
                    Interface::Unknown => return None,
                };
                Some(top((u128::from(tag) << 32) | u128::from(index), 5))
            }
            KeyField::MacSource => k.eth_src.map(mac),
            KeyField::MacDestination => k.eth_dst.map(mac),
            KeyField::EthernetProtocol => k.ethertype.map(|t| top(u128::from(t), 2)),
            KeyField::Vlan => k.vlan.map(|v| top(u128::from(v), 2)),
            KeyField::IpSource | KeyField::IpDestination => {
                let ip = if self == KeyField::IpSource {
                    k.ip_src
                } else {
                    k.ip_dst
                };
                match ip {
                    Some(IpAddr::V4(a)) => Some(top(u128::from(u32::from(a)), 4)),
                    _ => None,
                }
            }
            KeyField::Ip6Source | KeyField::Ip6Destination => {
                let ip = if self == KeyField::Ip6Source {
                    k.ip_src
                } else {
                    k.ip_dst
                };
                match ip {
                    Some(IpAddr::V6(a)) => Some(u128::from(a)),
                    _ => None,
                }
            }
            KeyField::IpProtocol => k.ip_proto.map(|p| top(u128::from(p), 1)),
            KeyField::TcpSourcePort => port(PROTO_TCP, k.src_port),
            KeyField::TcpDestinationPort => port(PROTO_TCP, k.dst_port),
            KeyField::UdpSourcePort => port(PROTO_UDP, k.src_port),
            KeyField::UdpDestinationPort => port(PROTO_UDP, k.dst_port),
            KeyField::IcmpType => match k.ip_proto {
                Some(PROTO_ICMP | PROTO_ICMPV6) => k.icmp_type.map(|t| top(u128::from(t), 1)),
                _ => None,
            },
            // The IPv4 parser reads the flags word whenever it reads the TTL after it, and
            // only it sets the flags: so a TTL with flags is an IPv4 TTL, not a hop limit.
            KeyField::IpTtl => k.ip_flags.and(k.ip_ttl).map(|t| top(u128::from(t), 1)),
            KeyField::IpFlags => k.ip_flags.map(|f| top(u128::from(f), 1)),
            KeyField::IpFragOffset => k.ip_frag_offset.map(|o| top(u128::from(o), 2)),
            KeyField::Ip6NextHdr => match k.ip_src {
                // The IPv6 parser reads the source before any next header.
                Some(IpAddr::V6(_)) => k.ip_proto.map(|p| top(u128::from(p), 1)),
                _ => None,
            },
            KeyField::TcpFlags => match k.ip_proto {
                Some(PROTO_TCP) => k.tcp_flags.map(|f| top(u128::from(f), 2)),
                _ => None,
            },
        }
    }

    /// Appends the field's encoding to `key`; false when the sample lacks the field (the
    /// sample then does not contribute to the flow) or the key is full.
    #[inline]
    pub fn encode(self, s: &Sample, key: &mut FlowKey) -> bool {
        match self.value_word(s) {
            Some(word) => key.push_padded(&word.to_be_bytes(), self.width()),
            None => false,
        }
    }

    /// Prints an encoded value as sFlow-RT does; bytes of the wrong width print as hex.
    pub fn format(self, bytes: &[u8]) -> String {
        if bytes.len() != self.width() {
            return hex(bytes, false);
        }
        let uint = || bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        match self {
            KeyField::Agent | KeyField::Ip6Source | KeyField::Ip6Destination => {
                let mut a = [0u8; 16];
                a.copy_from_slice(bytes);
                let v6 = Ipv6Addr::from(a);
                match (self, v6.to_ipv4_mapped()) {
                    (KeyField::Agent, Some(v4)) => v4.to_string(),
                    _ => v6.to_string(),
                }
            }
            KeyField::IpSource | KeyField::IpDestination => {
                Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
            }
            KeyField::MacSource | KeyField::MacDestination => hex(bytes, true),
            KeyField::IpFlags => format!("{:03b}", uint()),
            KeyField::TcpFlags => format!("{:09b}", uint()),
            KeyField::OutputIfindex => match bytes[0] {
                OUT_DISCARD => "discard".to_string(),
                OUT_MULTIPLE => "multiple".to_string(),
                _ => (uint() & 0xFFFF_FFFF).to_string(),
            },
            _ => uint().to_string(),
        }
    }

    /// Parses sFlow-RT text for this field into its encoding.
    pub fn parse_value(self, text: &str) -> Result<FieldValue, FieldError> {
        let err = |expected| FieldError {
            field: self.name(),
            text: text.to_string(),
            expected,
        };
        let t = text.trim();
        let num = |max: u32, expected| {
            parse_u32(t)
                .filter(|&n| n <= max)
                .ok_or_else(|| err(expected))
        };
        let v = match self {
            KeyField::Agent => {
                let ip: IpAddr = t.parse().map_err(|_| err("an IP address"))?;
                FieldValue::from_slice(&v6_bytes(ip))
            }
            KeyField::InputIfindex => {
                FieldValue::from_slice(&num(u32::MAX, "an ifIndex number")?.to_be_bytes())
            }
            KeyField::OutputIfindex => {
                let (tag, index) = match t {
                    "discard" => (OUT_DISCARD, 0),
                    "multiple" => (OUT_MULTIPLE, 0),
                    _ => (
                        OUT_IFINDEX,
                        num(u32::MAX, "an ifIndex number, discard or multiple")?,
                    ),
                };
                let i = index.to_be_bytes();
                FieldValue::from_slice(&[tag, i[0], i[1], i[2], i[3]])
            }
            KeyField::MacSource | KeyField::MacDestination => FieldValue::from_slice(
                &parse_mac(t).ok_or_else(|| err("a MAC address (12 hex digits)"))?,
            ),
            KeyField::EthernetProtocol => {
                let n = num(0xFFFF, "an EtherType (0-65535)")? as u16;
                FieldValue::from_slice(&n.to_be_bytes())
            }
            KeyField::Vlan => {
                let n = num(4095, "a VLAN id (0-4095)")? as u16;
                FieldValue::from_slice(&n.to_be_bytes())
            }
            KeyField::IpSource | KeyField::IpDestination => {
                let a: Ipv4Addr = t.parse().map_err(|_| err("an IPv4 address"))?;
                FieldValue::from_slice(&a.octets())
            }
            KeyField::Ip6Source | KeyField::Ip6Destination => {
                let a: Ipv6Addr = t.parse().map_err(|_| err("an IPv6 address"))?;
                FieldValue::from_slice(&a.octets())
            }
            KeyField::IpProtocol => {
                FieldValue::from_slice(&[num(255, "a protocol (0-255)")? as u8])
            }
            KeyField::TcpSourcePort
            | KeyField::TcpDestinationPort
            | KeyField::UdpSourcePort
            | KeyField::UdpDestinationPort => {
                let n = num(0xFFFF, "a port (0-65535)")? as u16;
                FieldValue::from_slice(&n.to_be_bytes())
            }
            KeyField::IcmpType => {
                FieldValue::from_slice(&[num(255, "an ICMP type (0-255)")? as u8])
            }
            KeyField::IpTtl => FieldValue::from_slice(&[num(255, "a TTL (0-255)")? as u8]),
            KeyField::Ip6NextHdr => {
                FieldValue::from_slice(&[num(255, "a next header (0-255)")? as u8])
            }
            KeyField::IpFragOffset => {
                let n = num(0xFFFF, "a fragment offset (0-8191)")? as u16;
                FieldValue::from_slice(&n.to_be_bytes())
            }
            KeyField::IpFlags => {
                let n =
                    parse_flags(t, 0xFF).ok_or_else(|| err("IP flags as binary digits (001)"))?;
                FieldValue::from_slice(&[n as u8])
            }
            KeyField::TcpFlags => {
                let n = parse_flags(t, 0xFFFF)
                    .ok_or_else(|| err("TCP flags as binary digits (000000010)"))?;
                FieldValue::from_slice(&(n as u16).to_be_bytes())
            }
        };
        Ok(v)
    }

    /// Parses `addr/len` (or a bare address, as a full-length prefix) for an address field
    /// into the encoded address and its prefix length in bits of the encoding. An IPv4 prefix
    /// on `agent` is mapped into `::ffff:0:0/96`.
    pub fn parse_prefix(self, text: &str) -> Result<(FieldValue, u8), FieldError> {
        let Some(bits) = self.address_bits() else {
            return Err(FieldError {
                field: self.name(),
                text: text.to_string(),
                expected: "a value without /prefix (only address fields take prefixes)",
            });
        };
        let (addr, len) = match text.trim().split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let value = self.parse_value(addr)?;
        let mapped_v4 = self == KeyField::Agent && !addr.contains(':');
        let (offset, max) = if mapped_v4 { (96, 32) } else { (0, bits) };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| FieldError {
                    field: self.name(),
                    text: text.to_string(),
                    expected: "a prefix length within the address size",
                })?,
        };
        Ok((value, offset + len))
    }
}

fn hex(bytes: &[u8], upper: bool) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = if upper {
            write!(s, "{b:02X}")
        } else {
            write!(s, "{b:02x}")
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::testing::{icmp_sample, sample_of};
    use crate::packet::build::{Frame, L3, L4};
    use proptest::prelude::*;

    fn text(f: KeyField, s: &Sample) -> Option<String> {
        f.value(s).map(|v| f.format(v.as_bytes()))
    }

    #[test]
    fn names_round_trip_and_widths_fit() {
        for f in KeyField::ALL {
            assert_eq!(KeyField::from_name(f.name()), Some(f));
            assert!(f.width() <= MAX_FIELD_LEN);
        }
        assert_eq!(KeyField::from_name("IPSource"), Some(KeyField::IpSource));
        assert_eq!(KeyField::from_name("ipsrc"), None);
    }

    #[test]
    fn icmp_sample_fields() {
        let s = icmp_sample();
        let expect = [
            (KeyField::Agent, Some("127.0.0.1")),
            (KeyField::InputIfindex, Some("1")),
            (KeyField::OutputIfindex, Some("2")),
            (KeyField::MacSource, Some("000000000001")),
            (KeyField::MacDestination, Some("000000000002")),
            (KeyField::EthernetProtocol, Some("2048")),
            (KeyField::Vlan, None),
            (KeyField::IpSource, Some("10.0.0.1")),
            (KeyField::IpDestination, Some("10.0.0.2")),
            (KeyField::Ip6Source, None),
            (KeyField::Ip6Destination, None),
            (KeyField::IpProtocol, Some("1")),
            (KeyField::TcpSourcePort, None),
            (KeyField::TcpDestinationPort, None),
            (KeyField::UdpSourcePort, None),
            (KeyField::UdpDestinationPort, None),
            (KeyField::IcmpType, Some("8")),
            (KeyField::IpTtl, Some("64")),
            (KeyField::IpFlags, Some("000")),
            (KeyField::IpFragOffset, Some("0")),
            (KeyField::Ip6NextHdr, None),
            (KeyField::TcpFlags, None),
        ];
        for (f, want) in expect {
            assert_eq!(text(f, &s).as_deref(), want, "{}", f.name());
            let mut key = FlowKey::EMPTY;
            assert_eq!(f.encode(&s, &mut key), want.is_some(), "{}", f.name());
            assert_eq!(key.len(), if want.is_some() { f.width() } else { 0 });
        }
    }

    #[test]
    fn tcp_udp_ipv6_vlan_fields() {
        let tcp = sample_of(&Frame {
            eth_src: [0xaa, 0xbb, 0xcc, 0x00, 0x11, 0x22],
            vlans: vec![(0x8100, 42)],
            l4: L4::Tcp {
                src: 1234,
                dst: 80,
                flags: 2,
            },
            ..Frame::default()
        });
        assert_eq!(text(KeyField::TcpSourcePort, &tcp).as_deref(), Some("1234"));
        assert_eq!(
            text(KeyField::TcpDestinationPort, &tcp).as_deref(),
            Some("80")
        );
        assert_eq!(text(KeyField::UdpSourcePort, &tcp), None);
        assert_eq!(text(KeyField::IcmpType, &tcp), None);
        assert_eq!(text(KeyField::Vlan, &tcp).as_deref(), Some("42"));
        assert_eq!(
            text(KeyField::MacSource, &tcp).as_deref(),
            Some("AABBCC001122")
        );

        let udp6 = sample_of(&Frame {
            l3: L3::V6 {
                src: "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
                dst: "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets(),
                tclass: 0,
                hlim: 1,
                exts: vec![],
            },
            l4: L4::Udp { src: 53, dst: 9999 },
            ..Frame::default()
        });
        assert_eq!(
            text(KeyField::Ip6Source, &udp6).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            text(KeyField::Ip6Destination, &udp6).as_deref(),
            Some("2001:db8::2")
        );
        assert_eq!(text(KeyField::IpSource, &udp6), None);
        assert_eq!(
            text(KeyField::EthernetProtocol, &udp6).as_deref(),
            Some("34525")
        );
        assert_eq!(text(KeyField::UdpSourcePort, &udp6).as_deref(), Some("53"));
        assert_eq!(
            text(KeyField::UdpDestinationPort, &udp6).as_deref(),
            Some("9999")
        );
        assert_eq!(text(KeyField::TcpSourcePort, &udp6), None);

        let icmp6 = sample_of(&Frame {
            l3: L3::V6 {
                src: [0; 16],
                dst: [0; 16],
                tclass: 0,
                hlim: 1,
                exts: vec![],
            },
            l4: L4::Icmp {
                proto: 58,
                ty: 135,
                code: 0,
            },
            ..Frame::default()
        });
        assert_eq!(text(KeyField::IcmpType, &icmp6).as_deref(), Some("135"));
    }

    #[test]
    fn ttl_flags_fragments_and_next_header() {
        let syn = sample_of(&Frame {
            l3: L3::V4 {
                src: [192, 0, 2, 1],
                dst: [10, 0, 0, 3],
                tos: 0,
                ttl: 7,
                options: 0,
                frag_offset: 0,
                more_fragments: true,
            },
            l4: L4::Tcp {
                src: 40000,
                dst: 80,
                flags: 0x02,
            },
            ..Frame::default()
        });
        assert_eq!(text(KeyField::IpTtl, &syn).as_deref(), Some("7"));
        assert_eq!(text(KeyField::IpFlags, &syn).as_deref(), Some("001"));
        assert_eq!(text(KeyField::IpFragOffset, &syn).as_deref(), Some("0"));
        assert_eq!(text(KeyField::TcpFlags, &syn).as_deref(), Some("000000010"));
        assert_eq!(text(KeyField::Ip6NextHdr, &syn), None);
        // sFlow-RT's spellings select the same values.
        assert_eq!(
            KeyField::TcpFlags.value(&syn),
            KeyField::TcpFlags.parse_value("000000010").ok()
        );
        assert_eq!(
            KeyField::IpFlags.value(&syn),
            KeyField::IpFlags.parse_value("001").ok()
        );

        let later = sample_of(&Frame {
            l3: L3::V4 {
                src: [1, 1, 1, 1],
                dst: [2, 2, 2, 2],
                tos: 0,
                ttl: 64,
                options: 0,
                frag_offset: 185,
                more_fragments: false,
            },
            l4: L4::Udp { src: 7, dst: 9 },
            ..Frame::default()
        });
        assert_eq!(text(KeyField::IpFragOffset, &later).as_deref(), Some("185"));
        assert_eq!(text(KeyField::IpFlags, &later).as_deref(), Some("000"));
        assert_eq!(text(KeyField::UdpSourcePort, &later), None);

        let udp6 = sample_of(&Frame {
            l3: L3::V6 {
                src: [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                dst: [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                tclass: 0,
                hlim: 9,
                exts: vec![crate::packet::build::Ext::HopByHop(0)],
            },
            l4: L4::Udp { src: 53, dst: 9 },
            ..Frame::default()
        });
        assert_eq!(text(KeyField::Ip6NextHdr, &udp6).as_deref(), Some("17"));
        // The hop limit is not an IPv4 TTL, and IPv6 has no IPv4 flags.
        assert_eq!(text(KeyField::IpTtl, &udp6), None);
        assert_eq!(text(KeyField::IpFlags, &udp6), None);
        assert_eq!(text(KeyField::IpFragOffset, &udp6), None);
        assert_eq!(text(KeyField::TcpFlags, &udp6), None);
    }

    #[test]
    fn flags_parse_as_binary_digits_or_hex() {
        let f = KeyField::IpFlags;
        assert_eq!(f.parse_value("010").unwrap().as_bytes(), [2]);
        assert_eq!(f.parse_value("0x2").unwrap().as_bytes(), [2]);
        assert!(f.parse_value("2").is_err());
        assert!(f.parse_value("").is_err());
        assert!(f.parse_value("100000000").is_err());
        let t = KeyField::TcpFlags;
        assert_eq!(t.parse_value("000010010").unwrap().as_bytes(), [0, 0x12]);
        assert_eq!(t.parse_value("0x12").unwrap().as_bytes(), [0, 0x12]);
        assert!(t.parse_value("syn").is_err());
        assert!(KeyField::IpTtl.parse_value("256").is_err());
    }

    #[test]
    fn interfaces_and_agent() {
        let mut s = icmp_sample();
        s.output = Interface::Discard(258);
        assert_eq!(
            text(KeyField::OutputIfindex, &s).as_deref(),
            Some("discard")
        );
        assert_eq!(
            KeyField::OutputIfindex.value(&s),
            KeyField::OutputIfindex.parse_value("discard").ok()
        );
        s.output = Interface::Multiple(3);
        assert_eq!(
            text(KeyField::OutputIfindex, &s).as_deref(),
            Some("multiple")
        );
        s.output = Interface::Unknown;
        assert_eq!(text(KeyField::OutputIfindex, &s), None);
        s.input = Interface::Discard(0);
        assert_eq!(text(KeyField::InputIfindex, &s), None);
        s.agent = "2001:db8::7".parse().unwrap();
        assert_eq!(text(KeyField::Agent, &s).as_deref(), Some("2001:db8::7"));
    }

    #[test]
    fn encode_fails_when_key_full() {
        let s = icmp_sample();
        let mut key = FlowKey::EMPTY;
        for _ in 0..4 {
            assert!(KeyField::Agent.encode(&s, &mut key));
        }
        assert!(!KeyField::IpProtocol.encode(&s, &mut key));
    }

    #[test]
    fn parse_value_accepts_and_rejects() {
        let mac = KeyField::MacSource;
        let want = [0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc];
        for t in [
            "001B21AABBCC",
            "001b21aabbcc",
            "00:1b:21:aa:bb:cc",
            "0-1b-21-aa-bb-cc",
        ] {
            assert_eq!(mac.parse_value(t).unwrap().as_bytes(), want, "{t}");
        }
        for t in [
            "001B21AABBC",
            "001B21AABBCCD",
            "00:1b:21:aa:bb",
            "zz1B21AABBCC",
            "1:2:3:4:5:6:7",
        ] {
            assert!(mac.parse_value(t).is_err(), "{t}");
        }
        assert_eq!(
            KeyField::EthernetProtocol
                .parse_value("0x86dd")
                .unwrap()
                .as_bytes(),
            [0x86, 0xdd]
        );
        assert!(KeyField::Vlan.parse_value("4096").is_err());
        assert!(KeyField::IpProtocol.parse_value("256").is_err());
        assert!(KeyField::IpSource.parse_value("::1").is_err());
        assert!(KeyField::Ip6Source.parse_value("10.0.0.1").is_err());
        assert!(KeyField::OutputIfindex.parse_value("drop").is_err());
        let e = KeyField::TcpSourcePort.parse_value("http").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tcpsourceport value \"http\": expected a port (0-65535)"
        );
    }

    #[test]
    fn prefixes() {
        let (v, bits) = KeyField::IpSource.parse_prefix("10.0.0.0/8").unwrap();
        assert_eq!((v.as_bytes(), bits), (&[10u8, 0, 0, 0][..], 8));
        assert_eq!(KeyField::IpSource.parse_prefix("10.0.0.1").unwrap().1, 32);
        assert!(KeyField::IpSource.parse_prefix("10.0.0.0/33").is_err());
        assert_eq!(KeyField::Ip6Source.parse_prefix("fc00::/7").unwrap().1, 7);
        assert_eq!(KeyField::Agent.parse_prefix("10.0.0.0/8").unwrap().1, 104);
        assert_eq!(KeyField::Agent.parse_prefix("::/0").unwrap().1, 0);
        assert!(KeyField::Agent.parse_prefix("10.0.0.0/40").is_err());
        assert!(KeyField::TcpSourcePort.parse_prefix("80/8").is_err());
    }

    fn arb_value(f: KeyField) -> BoxedStrategy<Vec<u8>> {
        match f {
            KeyField::OutputIfindex => prop_oneof![
                any::<u32>().prop_map(|i| {
                    let mut v = vec![OUT_IFINDEX];
                    v.extend_from_slice(&i.to_be_bytes());
                    v
                }),
                Just(vec![OUT_DISCARD, 0, 0, 0, 0]),
                Just(vec![OUT_MULTIPLE, 0, 0, 0, 0]),
            ]
            .boxed(),
            KeyField::Vlan => (0u16..4096).prop_map(|v| v.to_be_bytes().to_vec()).boxed(),
            _ => proptest::collection::vec(any::<u8>(), f.width()).boxed(),
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            (f, bytes) in proptest::sample::select(KeyField::ALL.to_vec())
                .prop_flat_map(|f| (Just(f), arb_value(f)))
        ) {
            let text = f.format(&bytes);
            let back = f.parse_value(&text).unwrap();
            prop_assert_eq!(back.as_bytes(), &bytes[..]);
        }

        #[test]
        fn parse_value_never_panics(f in proptest::sample::select(KeyField::ALL.to_vec()), t in ".{0,40}") {
            let _ = f.parse_value(&t);
            let _ = f.parse_prefix(&t);
            let _ = f.format(t.as_bytes());
        }
    }
}
