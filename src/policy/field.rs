//! Header fields, masked matches and located packets: the values every other part of the
//! policy layer (language, interpreter, compiler) talks about.
//!
//! Every field is one that OpenFlow 1.3 can match on, so anything the language can say the
//! switch can check. Values are held as `u128` truncated to the field's width, which keeps
//! packets `Copy` and patterns hashable without a per-field type zoo.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A matchable (and, except `InPort`, modifiable) packet header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Field {
    /// Ingress switch port.
    InPort,
    /// Ethernet source MAC.
    EthSrc,
    /// Ethernet destination MAC.
    EthDst,
    /// Ethertype.
    EthType,
    /// 802.1Q VLAN id (12 bits).
    VlanVid,
    /// IP protocol number.
    IpProto,
    /// IPv4 source address.
    Ipv4Src,
    /// IPv4 destination address.
    Ipv4Dst,
    /// IPv6 source address.
    Ipv6Src,
    /// IPv6 destination address.
    Ipv6Dst,
    /// TCP source port.
    TcpSrc,
    /// TCP destination port.
    TcpDst,
    /// UDP source port.
    UdpSrc,
    /// UDP destination port.
    UdpDst,
    /// ICMP type.
    IcmpType,
    /// ICMP code.
    IcmpCode,
}

/// How a field's values are written in the policy language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    Int,
    Hex,
    Mac,
    V4,
    V6,
}

impl Field {
    /// Number of fields.
    pub const COUNT: usize = 16;

    /// Every field, in declaration (and pattern sort) order.
    pub const ALL: [Field; Field::COUNT] = [
        Field::InPort,
        Field::EthSrc,
        Field::EthDst,
        Field::EthType,
        Field::VlanVid,
        Field::IpProto,
        Field::Ipv4Src,
        Field::Ipv4Dst,
        Field::Ipv6Src,
        Field::Ipv6Dst,
        Field::TcpSrc,
        Field::TcpDst,
        Field::UdpSrc,
        Field::UdpDst,
        Field::IcmpType,
        Field::IcmpCode,
    ];

    /// The field's name in the policy language and the config.
    pub fn name(self) -> &'static str {
        match self {
            Field::InPort => "in_port",
            Field::EthSrc => "eth_src",
            Field::EthDst => "eth_dst",
            Field::EthType => "eth_type",
            Field::VlanVid => "vlan",
            Field::IpProto => "ip_proto",
            Field::Ipv4Src => "ip_src",
            Field::Ipv4Dst => "ip_dst",
            Field::Ipv6Src => "ip6_src",
            Field::Ipv6Dst => "ip6_dst",
            Field::TcpSrc => "tcp_src",
            Field::TcpDst => "tcp_dst",
            Field::UdpSrc => "udp_src",
            Field::UdpDst => "udp_dst",
            Field::IcmpType => "icmp_type",
            Field::IcmpCode => "icmp_code",
        }
    }

    /// Looks a field up by its language name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Index of the field in `Field::ALL`.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Width of the field in bits.
    pub fn bits(self) -> u32 {
        match self {
            Field::InPort => 32,
            Field::EthSrc | Field::EthDst => 48,
            Field::EthType => 16,
            Field::VlanVid => 12,
            Field::IpProto | Field::IcmpType | Field::IcmpCode => 8,
            Field::Ipv4Src | Field::Ipv4Dst => 32,
            Field::Ipv6Src | Field::Ipv6Dst => 128,
            Field::TcpSrc | Field::TcpDst | Field::UdpSrc | Field::UdpDst => 16,
        }
    }

    /// All ones over the field's width.
    #[inline]
    pub fn full_mask(self) -> u128 {
        let bits = self.bits();
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }

    /// True where the language accepts `value/prefix` for this field.
    pub fn allows_prefix(self) -> bool {
        matches!(self.syntax(), Syntax::V4 | Syntax::V6)
    }

    fn syntax(self) -> Syntax {
        match self {
            Field::EthSrc | Field::EthDst => Syntax::Mac,
            Field::EthType => Syntax::Hex,
            Field::Ipv4Src | Field::Ipv4Dst => Syntax::V4,
            Field::Ipv6Src | Field::Ipv6Dst => Syntax::V6,
            _ => Syntax::Int,
        }
    }

    /// Parses a value as written in the language (`80`, `0x0800`, `00:11:22:33:44:55`,
    /// `10.0.0.0/24`, `2001:db8::/32`); a prefix is accepted only for IP fields.
    pub fn parse_match(self, text: &str) -> Result<Match, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) if self.allows_prefix() => {
                let len: u32 = p
                    .parse()
                    .map_err(|_| format!("bad prefix length `{p}` for {}", self.name()))?;
                if len > self.bits() {
                    return Err(format!(
                        "prefix length {len} exceeds {} bits of {}",
                        self.bits(),
                        self.name()
                    ));
                }
                (a, Some(len))
            }
            Some(_) => return Err(format!("{} does not take a prefix", self.name())),
            None => (text, None),
        };
        let value = self.parse_value(addr)?;
        let mask = match prefix {
            None => self.full_mask(),
            Some(0) => 0,
            Some(len) => self.full_mask() & !(self.full_mask() >> len),
        };
        Ok(Match {
            value: value & mask,
            mask,
        })
    }

    /// Parses an exact value (no prefix).
    pub fn parse_value(self, text: &str) -> Result<u128, String> {
        let bad = || format!("bad value `{text}` for {}", self.name());
        let v = match self.syntax() {
            Syntax::Int | Syntax::Hex => parse_int(text).ok_or_else(bad)?,
            Syntax::Mac => parse_mac(text).ok_or_else(bad)?,
            Syntax::V4 => u32::from(text.parse::<Ipv4Addr>().map_err(|_| bad())?) as u128,
            Syntax::V6 => u128::from(text.parse::<Ipv6Addr>().map_err(|_| bad())?),
        };
        if v > self.full_mask() {
            return Err(format!(
                "value `{text}` out of range for {} ({} bits)",
                self.name(),
                self.bits()
            ));
        }
        Ok(v)
    }

    /// Writes a value the way [`Field::parse_value`] reads it.
    pub fn fmt_value(self, v: u128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.syntax() {
            Syntax::Int => write!(f, "{v}"),
            Syntax::Hex => write!(f, "0x{v:04x}"),
            Syntax::Mac => {
                let b = (v as u64).to_be_bytes();
                write!(
                    f,
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[2], b[3], b[4], b[5], b[6], b[7]
                )
            }
            Syntax::V4 => write!(f, "{}", Ipv4Addr::from(v as u32)),
            Syntax::V6 => write!(f, "{}", Ipv6Addr::from(v)),
        }
    }

    /// Writes a masked match: a plain value, `addr/len` for prefixes, `value&mask` otherwise.
    pub fn fmt_match(self, m: &Match, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_value(m.value, f)?;
        if m.mask == self.full_mask() {
            return Ok(());
        }
        let len = m.mask.count_ones();
        let prefix = if len == 0 {
            0
        } else {
            self.full_mask() & !(self.full_mask() >> len)
        };
        if self.allows_prefix() && prefix == m.mask {
            write!(f, "/{len}")
        } else {
            write!(f, "&0x{:x}", m.mask)
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn parse_int(text: &str) -> Option<u128> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_mac(text: &str) -> Option<u128> {
    let mut v: u128 = 0;
    let mut n = 0;
    for part in text.split([':', '-']) {
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        v = (v << 8) | u8::from_str_radix(part, 16).ok()? as u128;
        n += 1;
    }
    (n == 6).then_some(v)
}

/// A value under a mask: matches `x` when `x & mask == value`. `value` has no bits outside
/// `mask`, so equal matches compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Match {
    /// The required bits (already masked).
    pub value: u128,
    /// Which bits are checked.
    pub mask: u128,
}

impl Match {
    /// An exact match on `value` over the field's width.
    pub fn exact(field: Field, value: u128) -> Match {
        Match {
            value: value & field.full_mask(),
            mask: field.full_mask(),
        }
    }

    /// True if `x` satisfies the match.
    #[inline]
    pub fn matches(&self, x: u128) -> bool {
        x & self.mask == self.value
    }

    /// The match satisfied by exactly the values satisfying both; `None` if there are none.
    #[inline]
    pub fn intersect(&self, other: &Match) -> Option<Match> {
        if (self.value ^ other.value) & self.mask & other.mask != 0 {
            return None;
        }
        Some(Match {
            value: self.value | other.value,
            mask: self.mask | other.mask,
        })
    }

    /// True if every value matching `other` also matches `self`.
    #[inline]
    pub fn covers(&self, other: &Match) -> bool {
        self.mask & !other.mask == 0 && other.value & self.mask == self.value
    }
}

/// Where a packet leaves the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Out {
    /// A physical port.
    Port(u32),
    /// All ports but the ingress one.
    Flood,
    /// The switch's own L2/L3 pipeline (OFPP_NORMAL).
    Normal,
    /// The reactive MAC-learning table (see `openflow::learning`).
    Learn,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Out::Port(p) => write!(f, "fwd({p})"),
            Out::Flood => f.write_str("flood"),
            Out::Normal => f.write_str("normal"),
            Out::Learn => f.write_str("learn"),
        }
    }
}

/// A located packet: the switch it is on, its header fields (absent ones are `None`), where
/// it is being sent (Pyretic's `outport`) and the tightest meter rate it has passed through.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Packet {
    /// Datapath id of the switch holding the packet.
    pub switch: u64,
    present: u16,
    vals: [u128; Field::COUNT],
    /// Output decision, if any has been made.
    pub out: Option<Out>,
    /// Lowest meter rate (packets/s) applied so far.
    pub meter: Option<u32>,
}

impl Packet {
    /// A packet on `switch` with no header fields.
    pub fn new(switch: u64) -> Packet {
        Packet {
            switch,
            present: 0,
            vals: [0; Field::COUNT],
            out: None,
            meter: None,
        }
    }

    /// The field's value, if the packet has that header.
    #[inline]
    pub fn get(&self, f: Field) -> Option<u128> {
        (self.present & (1 << f.index()) != 0).then(|| self.vals[f.index()])
    }

    /// Sets a field (truncated to its width).
    #[inline]
    pub fn set(&mut self, f: Field, v: u128) {
        self.present |= 1 << f.index();
        self.vals[f.index()] = v & f.full_mask();
    }

    /// Removes a field.
    pub fn clear(&mut self, f: Field) {
        self.present &= !(1 << f.index());
        self.vals[f.index()] = 0;
    }

    /// Builder form of [`Packet::set`].
    pub fn with(mut self, f: Field, v: u128) -> Packet {
        self.set(f, v);
        self
    }

    /// Applies a meter of `rate` packets/s: the packet keeps the tighter of the two.
    #[inline]
    pub fn add_meter(&mut self, rate: u32) {
        self.meter = Some(self.meter.map_or(rate, |m| m.min(rate)));
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packet(sw={}", self.switch)?;
        for field in Field::ALL {
            if let Some(v) = self.get(field) {
                write!(f, " {}=", field.name())?;
                field.fmt_value(v, f)?;
            }
        }
        if let Some(o) = self.out {
            write!(f, " -> {o}")?;
        }
        if let Some(m) = self.meter {
            write!(f, " meter={m}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Show(Field, Match);
    impl fmt::Display for Show {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt_match(&self.1, f)
        }
    }

    #[test]
    fn names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_name("ip_srcx"), None);
    }

    #[test]
    fn values_parse_and_print_back() {
        for (f, text) in [
            (Field::Ipv4Src, "10.0.0.0/24"),
            (Field::Ipv4Dst, "10.0.0.1"),
            (Field::Ipv6Src, "2001:db8::/32"),
            (Field::EthSrc, "00:11:22:aa:bb:cc"),
            (Field::EthType, "0x0800"),
            (Field::TcpDst, "80"),
        ] {
            let m = f.parse_match(text).unwrap();
            assert_eq!(Show(f, m).to_string(), text);
        }
        let m = Field::Ipv4Src.parse_match("10.0.0.7/24").unwrap();
        assert_eq!(m.value, 0x0a00_0000);
        assert_eq!(m.mask, 0xffff_ff00);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Field::TcpDst.parse_match("65536").is_err());
        assert!(Field::TcpDst.parse_match("80/8").is_err());
        assert!(Field::VlanVid.parse_match("4096").is_err());
        assert!(Field::Ipv4Src.parse_match("10.0.0.1/33").is_err());
        assert!(Field::Ipv4Src.parse_match("10.0.0").is_err());
        assert!(Field::EthSrc.parse_match("00:11:22:33:44").is_err());
        assert!(Field::EthSrc.parse_match("00:11:22:33:44:555").is_err());
        assert_eq!(Field::Ipv4Src.parse_match("0.0.0.0/0").unwrap().mask, 0);
    }

    #[test]
    fn match_algebra() {
        let net = Field::Ipv4Src.parse_match("10.0.0.0/8").unwrap();
        let host = Field::Ipv4Src.parse_match("10.1.2.3").unwrap();
        let other = Field::Ipv4Src.parse_match("11.0.0.0/8").unwrap();
        assert!(net.covers(&host));
        assert!(!host.covers(&net));
        assert_eq!(net.intersect(&host), Some(host));
        assert_eq!(net.intersect(&other), None);
        assert!(net.matches(0x0a09_0909));
        assert!(!net.matches(0x0b00_0000));
    }

    #[test]
    fn packet_fields_and_meters() {
        let mut p = Packet::new(1).with(Field::TcpDst, 0x1_0050);
        assert_eq!(p.get(Field::TcpDst), Some(0x50));
        assert_eq!(p.get(Field::TcpSrc), None);
        p.add_meter(100);
        p.add_meter(500);
        assert_eq!(p.meter, Some(100));
        p.clear(Field::TcpDst);
        assert_eq!(p, {
            let mut q = Packet::new(1);
            q.meter = Some(100);
            q
        });
    }
}
