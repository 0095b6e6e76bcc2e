//! OXM matches (`ofp_match` of type OFPMT_OXM) and their fields.
//!
//! [`Match`] keeps fields in wire order so parse → emit is lossless; fields this codec does
//! not model are kept as [`OxmField::Raw`]. [`Match::normalize`] and [`MatchBuilder`] produce
//! the canonical form the compiler diffs against switch state: masks applied to values,
//! exact masks dropped, fields sorted by (class, field), no duplicates, and every
//! prerequisite of the spec present.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::{len16, pad8, Put, Reader};
use super::CodecError;

/// The OpenFlow basic OXM class.
pub const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// OXM match type in `ofp_match.type`.
const OFPMT_OXM: u16 = 1;
/// Bit in VLAN_VID values saying a VLAN tag is present.
pub const OFPVID_PRESENT: u16 = 0x1000;

/// OXM field numbers of the basic class (OFPXMT_OFB_*).
pub mod field {
    pub const IN_PORT: u8 = 0;
    pub const METADATA: u8 = 2;
    pub const ETH_DST: u8 = 3;
    pub const ETH_SRC: u8 = 4;
    pub const ETH_TYPE: u8 = 5;
    pub const VLAN_VID: u8 = 6;
    pub const VLAN_PCP: u8 = 7;
    pub const IP_ECN: u8 = 9;
    pub const IP_PROTO: u8 = 10;
    pub const IPV4_SRC: u8 = 11;
    pub const IPV4_DST: u8 = 12;
    pub const TCP_SRC: u8 = 13;
    pub const TCP_DST: u8 = 14;
    pub const UDP_SRC: u8 = 15;
    pub const UDP_DST: u8 = 16;
    pub const ICMPV4_TYPE: u8 = 19;
    pub const ICMPV4_CODE: u8 = 20;
    pub const IPV6_SRC: u8 = 26;
    pub const IPV6_DST: u8 = 27;
    pub const ICMPV6_TYPE: u8 = 29;
    pub const ICMPV6_CODE: u8 = 30;
}

/// Ethertypes used by prerequisites.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// One OXM TLV.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OxmField {
    /// Switch input port.
    InPort(u32),
    /// Ethernet destination, optionally masked.
    EthDst {
        addr: [u8; 6],
        mask: Option<[u8; 6]>,
    },
    /// Ethernet source, optionally masked.
    EthSrc {
        addr: [u8; 6],
        mask: Option<[u8; 6]>,
    },
    /// Ethertype (after VLAN tags).
    EthType(u16),
    /// VLAN id with the OFPVID_PRESENT bit (0 = no tag), optionally masked.
    VlanVid { vid: u16, mask: Option<u16> },
    /// IP ECN bits (the low two bits of the IPv4 ToS / IPv6 traffic class).
    IpEcn(u8),
    /// IP protocol number.
    IpProto(u8),
    /// IPv4 source, optionally masked.
    Ipv4Src {
        addr: Ipv4Addr,
        mask: Option<Ipv4Addr>,
    },
    /// IPv4 destination, optionally masked.
    Ipv4Dst {
        addr: Ipv4Addr,
        mask: Option<Ipv4Addr>,
    },
    /// TCP source port.
    TcpSrc(u16),
    /// TCP destination port.
    TcpDst(u16),
    /// UDP source port.
    UdpSrc(u16),
    /// UDP destination port.
    UdpDst(u16),
    /// ICMPv4 type.
    Icmpv4Type(u8),
    /// ICMPv4 code.
    Icmpv4Code(u8),
    /// IPv6 source, optionally masked.
    Ipv6Src {
        addr: Ipv6Addr,
        mask: Option<Ipv6Addr>,
    },
    /// IPv6 destination, optionally masked.
    Ipv6Dst {
        addr: Ipv6Addr,
        mask: Option<Ipv6Addr>,
    },
    /// ICMPv6 type.
    Icmpv6Type(u8),
    /// ICMPv6 code.
    Icmpv6Code(u8),
    /// Any other field, kept verbatim (payload = value and mask bytes; at most 255 emitted).
    Raw {
        class: u16,
        field: u8,
        has_mask: bool,
        payload: Vec<u8>,
    },
}

/// (value width, maskable) of the fields modelled above.
fn known_shape(field: u8) -> Option<(usize, bool)> {
    use field::*;
    Some(match field {
        IN_PORT => (4, false),
        ETH_DST | ETH_SRC => (6, true),
        ETH_TYPE => (2, false),
        VLAN_VID => (2, true),
        IP_ECN | IP_PROTO => (1, false),
        IPV4_SRC | IPV4_DST => (4, true),
        TCP_SRC | TCP_DST | UDP_SRC | UDP_DST => (2, false),
        ICMPV4_TYPE | ICMPV4_CODE | ICMPV6_TYPE | ICMPV6_CODE => (1, false),
        IPV6_SRC | IPV6_DST => (16, true),
        _ => return None,
    })
}

fn arr<const N: usize>(r: &mut Reader<'_>) -> Result<[u8; N], CodecError> {
    r.array::<N>().map_err(|_| CodecError::BadOxm)
}

impl OxmField {
    /// (class, field number): the canonical sort key.
    pub fn key(&self) -> (u16, u8) {
        use field::*;
        let f = match self {
            OxmField::InPort(_) => IN_PORT,
            OxmField::EthDst { .. } => ETH_DST,
            OxmField::EthSrc { .. } => ETH_SRC,
            OxmField::EthType(_) => ETH_TYPE,
            OxmField::VlanVid { .. } => VLAN_VID,
            OxmField::IpEcn(_) => IP_ECN,
            OxmField::IpProto(_) => IP_PROTO,
            OxmField::Ipv4Src { .. } => IPV4_SRC,
            OxmField::Ipv4Dst { .. } => IPV4_DST,
            OxmField::TcpSrc(_) => TCP_SRC,
            OxmField::TcpDst(_) => TCP_DST,
            OxmField::UdpSrc(_) => UDP_SRC,
            OxmField::UdpDst(_) => UDP_DST,
            OxmField::Icmpv4Type(_) => ICMPV4_TYPE,
            OxmField::Icmpv4Code(_) => ICMPV4_CODE,
            OxmField::Ipv6Src { .. } => IPV6_SRC,
            OxmField::Ipv6Dst { .. } => IPV6_DST,
            OxmField::Icmpv6Type(_) => ICMPV6_TYPE,
            OxmField::Icmpv6Code(_) => ICMPV6_CODE,
            OxmField::Raw { class, field, .. } => return (*class, *field),
        };
        (OFPXMC_OPENFLOW_BASIC, f)
    }

    fn has_mask(&self) -> bool {
        match self {
            OxmField::EthDst { mask, .. } | OxmField::EthSrc { mask, .. } => mask.is_some(),
            OxmField::VlanVid { mask, .. } => mask.is_some(),
            OxmField::Ipv4Src { mask, .. } | OxmField::Ipv4Dst { mask, .. } => mask.is_some(),
            OxmField::Ipv6Src { mask, .. } | OxmField::Ipv6Dst { mask, .. } => mask.is_some(),
            OxmField::Raw { has_mask, .. } => *has_mask,
            _ => false,
        }
    }

    fn payload_len(&self) -> usize {
        let m = usize::from(self.has_mask()) + 1;
        match self {
            OxmField::InPort(_) => 4,
            OxmField::EthDst { .. } | OxmField::EthSrc { .. } => 6 * m,
            OxmField::EthType(_) => 2,
            OxmField::VlanVid { .. } => 2 * m,
            OxmField::IpProto(_) | OxmField::IpEcn(_) => 1,
            OxmField::Ipv4Src { .. } | OxmField::Ipv4Dst { .. } => 4 * m,
            OxmField::TcpSrc(_)
            | OxmField::TcpDst(_)
            | OxmField::UdpSrc(_)
            | OxmField::UdpDst(_) => 2,
            OxmField::Icmpv4Type(_)
            | OxmField::Icmpv4Code(_)
            | OxmField::Icmpv6Type(_)
            | OxmField::Icmpv6Code(_) => 1,
            OxmField::Ipv6Src { .. } | OxmField::Ipv6Dst { .. } => 16 * m,
            OxmField::Raw { payload, .. } => payload.len().min(255),
        }
    }

    /// Bytes this TLV occupies on the wire (4-byte header + payload).
    pub fn encoded_len(&self) -> usize {
        4 + self.payload_len()
    }

    /// Appends the TLV.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let (class, field) = self.key();
        out.put_u16(class);
        out.put_u8((field << 1) | u8::from(self.has_mask()));
        out.put_u8(u8::try_from(self.payload_len()).unwrap_or(u8::MAX));
        match self {
            OxmField::InPort(p) => out.put_u32(*p),
            OxmField::EthDst { addr, mask } | OxmField::EthSrc { addr, mask } => {
                out.extend_from_slice(addr);
                if let Some(m) = mask {
                    out.extend_from_slice(m);
                }
            }
            OxmField::EthType(t) => out.put_u16(*t),
            OxmField::VlanVid { vid, mask } => {
                out.put_u16(*vid);
                if let Some(m) = mask {
                    out.put_u16(*m);
                }
            }
            OxmField::IpProto(v)
            | OxmField::IpEcn(v)
            | OxmField::Icmpv4Type(v)
            | OxmField::Icmpv4Code(v)
            | OxmField::Icmpv6Type(v)
            | OxmField::Icmpv6Code(v) => out.put_u8(*v),
            OxmField::Ipv4Src { addr, mask } | OxmField::Ipv4Dst { addr, mask } => {
                out.extend_from_slice(&addr.octets());
                if let Some(m) = mask {
                    out.extend_from_slice(&m.octets());
                }
            }
            OxmField::TcpSrc(p)
            | OxmField::TcpDst(p)
            | OxmField::UdpSrc(p)
            | OxmField::UdpDst(p) => out.put_u16(*p),
            OxmField::Ipv6Src { addr, mask } | OxmField::Ipv6Dst { addr, mask } => {
                out.extend_from_slice(&addr.octets());
                if let Some(m) = mask {
                    out.extend_from_slice(&m.octets());
                }
            }
            OxmField::Raw { payload, .. } => {
                out.extend_from_slice(payload.get(..payload.len().min(255)).unwrap_or(&[]))
            }
        }
    }

    /// Parses one TLV from the front of `r`.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<OxmField, CodecError> {
        let class = r.u16().map_err(|_| CodecError::BadOxm)?;
        let fm = r.u8().map_err(|_| CodecError::BadOxm)?;
        let len = usize::from(r.u8().map_err(|_| CodecError::BadOxm)?);
        let (fld, has_mask) = (fm >> 1, fm & 1 == 1);
        let body = r.take(len).map_err(|_| CodecError::BadOxm)?;
        let shape = if class == OFPXMC_OPENFLOW_BASIC {
            known_shape(fld)
        } else {
            None
        };
        let Some((width, maskable)) = shape else {
            return Ok(OxmField::Raw {
                class,
                field: fld,
                has_mask,
                payload: body.to_vec(),
            });
        };
        if (has_mask && (!maskable || len != 2 * width)) || (!has_mask && len != width) {
            return Err(CodecError::BadOxm);
        }
        let mut b = Reader::new(body);
        use field::*;
        Ok(match fld {
            IN_PORT => OxmField::InPort(u32::from_be_bytes(arr(&mut b)?)),
            ETH_DST | ETH_SRC => {
                let addr = arr::<6>(&mut b)?;
                let mask = if has_mask {
                    Some(arr::<6>(&mut b)?)
                } else {
                    None
                };
                if fld == ETH_DST {
                    OxmField::EthDst { addr, mask }
                } else {
                    OxmField::EthSrc { addr, mask }
                }
            }
            ETH_TYPE => OxmField::EthType(u16::from_be_bytes(arr(&mut b)?)),
            VLAN_VID => {
                let vid = u16::from_be_bytes(arr(&mut b)?);
                let mask = if has_mask {
                    Some(u16::from_be_bytes(arr(&mut b)?))
                } else {
                    None
                };
                OxmField::VlanVid { vid, mask }
            }
            IPV4_SRC | IPV4_DST => {
                let addr = Ipv4Addr::from(arr::<4>(&mut b)?);
                let mask = if has_mask {
                    Some(Ipv4Addr::from(arr::<4>(&mut b)?))
                } else {
                    None
                };
                if fld == IPV4_SRC {
                    OxmField::Ipv4Src { addr, mask }
                } else {
                    OxmField::Ipv4Dst { addr, mask }
                }
            }
            IPV6_SRC | IPV6_DST => {
                let addr = Ipv6Addr::from(arr::<16>(&mut b)?);
                let mask = if has_mask {
                    Some(Ipv6Addr::from(arr::<16>(&mut b)?))
                } else {
                    None
                };
                if fld == IPV6_SRC {
                    OxmField::Ipv6Src { addr, mask }
                } else {
                    OxmField::Ipv6Dst { addr, mask }
                }
            }
            TCP_SRC => OxmField::TcpSrc(u16::from_be_bytes(arr(&mut b)?)),
            TCP_DST => OxmField::TcpDst(u16::from_be_bytes(arr(&mut b)?)),
            UDP_SRC => OxmField::UdpSrc(u16::from_be_bytes(arr(&mut b)?)),
            UDP_DST => OxmField::UdpDst(u16::from_be_bytes(arr(&mut b)?)),
            _ => {
                let v = arr::<1>(&mut b)?[0];
                match fld {
                    IP_ECN => OxmField::IpEcn(v),
                    IP_PROTO => OxmField::IpProto(v),
                    ICMPV4_TYPE => OxmField::Icmpv4Type(v),
                    ICMPV4_CODE => OxmField::Icmpv4Code(v),
                    ICMPV6_TYPE => OxmField::Icmpv6Type(v),
                    _ => OxmField::Icmpv6Code(v),
                }
            }
        })
    }

    /// Applies the mask to the value and drops exact masks; `None` if the mask is all zeros
    /// (the field then matches anything and is left out).
    fn canonical(self) -> Option<OxmField> {
        fn mac(addr: [u8; 6], mask: Option<[u8; 6]>) -> Option<([u8; 6], Option<[u8; 6]>)> {
            match mask {
                None => Some((addr, None)),
                Some(m) if m == [0xff; 6] => Some((addr, None)),
                Some(m) if m == [0; 6] => None,
                Some(m) => {
                    let mut a = addr;
                    a.iter_mut().zip(m).for_each(|(x, y)| *x &= y);
                    Some((a, Some(m)))
                }
            }
        }
        fn v4(addr: Ipv4Addr, mask: Option<Ipv4Addr>) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
            match mask.map(u32::from) {
                None | Some(u32::MAX) => Some((addr, None)),
                Some(0) => None,
                Some(m) => Some(((u32::from(addr) & m).into(), Some(m.into()))),
            }
        }
        fn v6(addr: Ipv6Addr, mask: Option<Ipv6Addr>) -> Option<(Ipv6Addr, Option<Ipv6Addr>)> {
            match mask.map(u128::from) {
                None | Some(u128::MAX) => Some((addr, None)),
                Some(0) => None,
                Some(m) => Some(((u128::from(addr) & m).into(), Some(m.into()))),
            }
        }
        Some(match self {
            OxmField::EthDst { addr, mask } => {
                let (addr, mask) = mac(addr, mask)?;
                OxmField::EthDst { addr, mask }
            }
            OxmField::EthSrc { addr, mask } => {
                let (addr, mask) = mac(addr, mask)?;
                OxmField::EthSrc { addr, mask }
            }
            OxmField::VlanVid { vid, mask } => match mask.map(|m| m & 0x1fff) {
                None | Some(0x1fff) => OxmField::VlanVid {
                    vid: vid & 0x1fff,
                    mask: None,
                },
                Some(0) => return None,
                Some(m) => OxmField::VlanVid {
                    vid: vid & m,
                    mask: Some(m),
                },
            },
            OxmField::Ipv4Src { addr, mask } => {
                let (addr, mask) = v4(addr, mask)?;
                OxmField::Ipv4Src { addr, mask }
            }
            OxmField::Ipv4Dst { addr, mask } => {
                let (addr, mask) = v4(addr, mask)?;
                OxmField::Ipv4Dst { addr, mask }
            }
            OxmField::Ipv6Src { addr, mask } => {
                let (addr, mask) = v6(addr, mask)?;
                OxmField::Ipv6Src { addr, mask }
            }
            OxmField::Ipv6Dst { addr, mask } => {
                let (addr, mask) = v6(addr, mask)?;
                OxmField::Ipv6Dst { addr, mask }
            }
            other => other,
        })
    }
}

/// Why a match is not canonical / not acceptable to a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MatchError {
    /// The same (class, field) appears twice.
    #[error("OXM field {class:#06x}:{field} appears more than once")]
    Duplicate { class: u16, field: u8 },
    /// A field's prerequisite (eth_type / ip_proto) is missing or contradicts it.
    #[error("OXM field {field} lacks its prerequisite (eth_type / ip_proto)")]
    Prerequisite { field: u8 },
}

/// An OXM match: the fields in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Match {
    /// The fields, in the order they are (or were) on the wire.
    pub fields: Vec<OxmField>,
}

impl Match {
    /// The match-everything (empty) match.
    pub fn any() -> Match {
        Match { fields: Vec::new() }
    }

    /// A builder that fills in prerequisites and produces the canonical form.
    pub fn builder() -> MatchBuilder {
        MatchBuilder::default()
    }

    /// The field with this basic-class number, if present.
    pub fn get(&self, field: u8) -> Option<&OxmField> {
        self.fields
            .iter()
            .find(|f| f.key() == (OFPXMC_OPENFLOW_BASIC, field))
    }

    /// Length of `ofp_match.length` (header + fields, without trailing padding).
    fn unpadded_len(&self) -> usize {
        4 + self.fields.iter().map(OxmField::encoded_len).sum::<usize>()
    }

    /// Bytes on the wire, padding included.
    pub fn encoded_len(&self) -> usize {
        pad8(self.unpadded_len())
    }

    /// Appends the `ofp_match` with its padding.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(OFPMT_OXM);
        out.put_u16(0);
        for f in &self.fields {
            f.emit(out);
        }
        let len = out.len() - start;
        out.patch_u16(start + 2, len16(len));
        out.put_zeros(pad8(len) - len);
    }

    /// Parses an `ofp_match` (with padding) from the front of `r`.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Match, CodecError> {
        let mtype = r.u16()?;
        let len = usize::from(r.u16()?);
        if mtype != OFPMT_OXM || len < 4 {
            return Err(CodecError::BadMatch);
        }
        let body = r.take(len - 4).map_err(|_| CodecError::BadMatch)?;
        r.skip(pad8(len) - len).map_err(|_| CodecError::BadMatch)?;
        let mut b = Reader::new(body);
        let mut fields = Vec::new();
        while !b.is_empty() {
            fields.push(OxmField::parse(&mut b)?);
        }
        Ok(Match { fields })
    }

    /// The canonical form: masks applied, wildcards dropped, sorted by (class, field),
    /// duplicates and missing prerequisites rejected.
    pub fn normalize(&self) -> Result<Match, MatchError> {
        let mut fields: Vec<OxmField> = self
            .fields
            .iter()
            .cloned()
            .filter_map(OxmField::canonical)
            .collect();
        fields.sort_by(|a, b| a.key().cmp(&b.key()).then_with(|| a.cmp(b)));
        for w in fields.windows(2) {
            if let [a, b] = w {
                if a.key() == b.key() {
                    let (class, field) = a.key();
                    return Err(MatchError::Duplicate { class, field });
                }
            }
        }
        let m = Match { fields };
        m.check_prerequisites()?;
        Ok(m)
    }

    fn eth_type(&self) -> Option<u16> {
        match self.get(field::ETH_TYPE) {
            Some(OxmField::EthType(t)) => Some(*t),
            _ => None,
        }
    }

    fn ip_proto(&self) -> Option<u8> {
        match self.get(field::IP_PROTO) {
            Some(OxmField::IpProto(p)) => Some(*p),
            _ => None,
        }
    }

    fn check_prerequisites(&self) -> Result<(), MatchError> {
        let eth = self.eth_type();
        let proto = self.ip_proto();
        let is_ip = matches!(eth, Some(ETH_IPV4) | Some(ETH_IPV6));
        for f in &self.fields {
            let ok = match f {
                OxmField::Ipv4Src { .. } | OxmField::Ipv4Dst { .. } => eth == Some(ETH_IPV4),
                OxmField::Ipv6Src { .. } | OxmField::Ipv6Dst { .. } => eth == Some(ETH_IPV6),
                OxmField::IpProto(_) | OxmField::IpEcn(_) => is_ip,
                OxmField::TcpSrc(_) | OxmField::TcpDst(_) => is_ip && proto == Some(6),
                OxmField::UdpSrc(_) | OxmField::UdpDst(_) => is_ip && proto == Some(17),
                OxmField::Icmpv4Type(_) | OxmField::Icmpv4Code(_) => {
                    eth == Some(ETH_IPV4) && proto == Some(1)
                }
                OxmField::Icmpv6Type(_) | OxmField::Icmpv6Code(_) => {
                    eth == Some(ETH_IPV6) && proto == Some(58)
                }
                _ => true,
            };
            if !ok {
                return Err(MatchError::Prerequisite { field: f.key().1 });
            }
        }
        Ok(())
    }
}

/// Builds a canonical [`Match`], adding the prerequisites each field implies.
#[derive(Clone, Debug, Default)]
pub struct MatchBuilder {
    fields: Vec<OxmField>,
}

fn v4_prefix(len: u8) -> Ipv4Addr {
    let len = u32::from(len.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0))
}

fn v6_prefix(len: u8) -> Ipv6Addr {
    let len = u32::from(len.min(128));
    Ipv6Addr::from(u128::MAX.checked_shl(128 - len).unwrap_or(0))
}

impl MatchBuilder {
    /// Adds any field as is.
    pub fn field(mut self, f: OxmField) -> Self {
        self.fields.push(f);
        self
    }
    /// Input port.
    pub fn in_port(self, port: u32) -> Self {
        self.field(OxmField::InPort(port))
    }
    /// Exact Ethernet destination.
    pub fn eth_dst(self, addr: [u8; 6]) -> Self {
        self.field(OxmField::EthDst { addr, mask: None })
    }
    /// Masked Ethernet destination.
    pub fn eth_dst_masked(self, addr: [u8; 6], mask: [u8; 6]) -> Self {
        self.field(OxmField::EthDst {
            addr,
            mask: Some(mask),
        })
    }
    /// Exact Ethernet source.
    pub fn eth_src(self, addr: [u8; 6]) -> Self {
        self.field(OxmField::EthSrc { addr, mask: None })
    }
    /// Masked Ethernet source.
    pub fn eth_src_masked(self, addr: [u8; 6], mask: [u8; 6]) -> Self {
        self.field(OxmField::EthSrc {
            addr,
            mask: Some(mask),
        })
    }
    /// Ethertype.
    pub fn eth_type(self, t: u16) -> Self {
        self.field(OxmField::EthType(t))
    }
    /// Packets tagged with this VLAN id.
    pub fn vlan_vid(self, vid: u16) -> Self {
        self.field(OxmField::VlanVid {
            vid: (vid & 0x0fff) | OFPVID_PRESENT,
            mask: None,
        })
    }
    /// Untagged packets only.
    pub fn vlan_none(self) -> Self {
        self.field(OxmField::VlanVid { vid: 0, mask: None })
    }
    /// Tagged packets, any VLAN id.
    pub fn vlan_present(self) -> Self {
        self.field(OxmField::VlanVid {
            vid: OFPVID_PRESENT,
            mask: Some(OFPVID_PRESENT),
        })
    }
    /// IP protocol.
    pub fn ip_proto(self, p: u8) -> Self {
        self.field(OxmField::IpProto(p))
    }
    /// Exact IPv4 source.
    pub fn ipv4_src(self, addr: Ipv4Addr) -> Self {
        self.field(OxmField::Ipv4Src { addr, mask: None })
    }
    /// IPv4 source prefix (`len` bits).
    pub fn ipv4_src_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.field(OxmField::Ipv4Src {
            addr,
            mask: Some(v4_prefix(len)),
        })
    }
    /// Exact IPv4 destination.
    pub fn ipv4_dst(self, addr: Ipv4Addr) -> Self {
        self.field(OxmField::Ipv4Dst { addr, mask: None })
    }
    /// IPv4 destination prefix (`len` bits).
    pub fn ipv4_dst_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.field(OxmField::Ipv4Dst {
            addr,
            mask: Some(v4_prefix(len)),
        })
    }
    /// Exact IPv6 source.
    pub fn ipv6_src(self, addr: Ipv6Addr) -> Self {
        self.field(OxmField::Ipv6Src { addr, mask: None })
    }
    /// IPv6 source prefix (`len` bits).
    pub fn ipv6_src_prefix(self, addr: Ipv6Addr, len: u8) -> Self {
        self.field(OxmField::Ipv6Src {
            addr,
            mask: Some(v6_prefix(len)),
        })
    }
    /// Exact IPv6 destination.
    pub fn ipv6_dst(self, addr: Ipv6Addr) -> Self {
        self.field(OxmField::Ipv6Dst { addr, mask: None })
    }
    /// IPv6 destination prefix (`len` bits).
    pub fn ipv6_dst_prefix(self, addr: Ipv6Addr, len: u8) -> Self {
        self.field(OxmField::Ipv6Dst {
            addr,
            mask: Some(v6_prefix(len)),
        })
    }
    /// TCP source port.
    pub fn tcp_src(self, p: u16) -> Self {
        self.field(OxmField::TcpSrc(p))
    }
    /// TCP destination port.
    pub fn tcp_dst(self, p: u16) -> Self {
        self.field(OxmField::TcpDst(p))
    }
    /// UDP source port.
    pub fn udp_src(self, p: u16) -> Self {
        self.field(OxmField::UdpSrc(p))
    }
    /// UDP destination port.
    pub fn udp_dst(self, p: u16) -> Self {
        self.field(OxmField::UdpDst(p))
    }
    /// ICMPv4 type.
    pub fn icmpv4_type(self, t: u8) -> Self {
        self.field(OxmField::Icmpv4Type(t))
    }
    /// IP ECN bits (0..=3).
    pub fn ip_ecn(self, ecn: u8) -> Self {
        self.field(OxmField::IpEcn(ecn))
    }
    /// ICMPv4 code.
    pub fn icmpv4_code(self, c: u8) -> Self {
        self.field(OxmField::Icmpv4Code(c))
    }
    /// ICMPv6 type.
    pub fn icmpv6_type(self, t: u8) -> Self {
        self.field(OxmField::Icmpv6Type(t))
    }
    /// ICMPv6 code.
    pub fn icmpv6_code(self, c: u8) -> Self {
        self.field(OxmField::Icmpv6Code(c))
    }

    /// Adds implied prerequisites (where unambiguous) and normalizes.
    ///
    /// TCP/UDP ports imply their ip_proto; IPv4/ICMPv4 fields imply eth_type 0x0800 and
    /// IPv6/ICMPv6 ones 0x86dd. An ip_proto with no IP version stays an error.
    pub fn build(self) -> Result<Match, MatchError> {
        let mut fields = self.fields;
        let has = |fs: &[OxmField], pred: fn(&OxmField) -> bool| fs.iter().any(pred);
        if !has(&fields, |f| matches!(f, OxmField::IpProto(_))) {
            let implied = fields.iter().find_map(|f| match f {
                OxmField::TcpSrc(_) | OxmField::TcpDst(_) => Some(6),
                OxmField::UdpSrc(_) | OxmField::UdpDst(_) => Some(17),
                OxmField::Icmpv4Type(_) | OxmField::Icmpv4Code(_) => Some(1),
                OxmField::Icmpv6Type(_) | OxmField::Icmpv6Code(_) => Some(58),
                _ => None,
            });
            if let Some(p) = implied {
                fields.push(OxmField::IpProto(p));
            }
        }
        if !has(&fields, |f| matches!(f, OxmField::EthType(_))) {
            let implied = fields.iter().find_map(|f| match f {
                OxmField::Ipv4Src { .. }
                | OxmField::Ipv4Dst { .. }
                | OxmField::Icmpv4Type(_)
                | OxmField::Icmpv4Code(_) => Some(ETH_IPV4),
                OxmField::Ipv6Src { .. }
                | OxmField::Ipv6Dst { .. }
                | OxmField::Icmpv6Type(_)
                | OxmField::Icmpv6Code(_) => Some(ETH_IPV6),
                _ => None,
            });
            if let Some(t) = implied {
                fields.push(OxmField::EthType(t));
            }
        }
        Match { fields }.normalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Match, CodecError> {
        let mut r = Reader::new(bytes);
        let m = Match::parse(&mut r)?;
        assert!(r.is_empty(), "match consumed its padding");
        Ok(m)
    }

    // in_port=1, eth_type=0x0800, ipv4_src=10.0.0.0/8: 4 + 8 + 6 + 12 = 30 → padded to 32
    const FIXTURE: [u8; 32] = [
        0x00, 0x01, 0x00, 0x1e, // type OXM, length 30
        0x80, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, // in_port 1
        0x80, 0x00, 0x0a, 0x02, 0x08, 0x00, // eth_type 0x0800
        0x80, 0x00, 0x17, 0x08, 10, 0, 0, 0, 255, 0, 0, 0, // ipv4_src masked
        0, 0, // padding
    ];

    #[test]
    fn deconstruct_fixture() {
        let m = parse(&FIXTURE).unwrap();
        assert_eq!(
            m.fields,
            vec![
                OxmField::InPort(1),
                OxmField::EthType(0x0800),
                OxmField::Ipv4Src {
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    mask: Some(Ipv4Addr::new(255, 0, 0, 0))
                },
            ]
        );
        assert_eq!(m.encoded_len(), 32);
    }

    #[test]
    fn construct_fixture() {
        let m = Match::builder()
            .in_port(1)
            .ipv4_src_prefix(Ipv4Addr::new(10, 1, 2, 3), 8)
            .build()
            .unwrap();
        let mut out = Vec::new();
        m.emit(&mut out);
        assert_eq!(out, FIXTURE);
    }

    #[test]
    fn empty_match_is_eight_bytes() {
        let mut out = Vec::new();
        Match::any().emit(&mut out);
        assert_eq!(out, [0, 1, 0, 4, 0, 0, 0, 0]);
        assert_eq!(parse(&out).unwrap(), Match::any());
    }

    #[test]
    fn unknown_fields_round_trip_raw() {
        // metadata (field 2) and an experimenter-class field
        let bytes = [
            0x00, 0x01, 0x00, 0x1c, 0x80, 0x00, 0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff,
            0x00, 0x08, 0, 0, 0x23, 0x20, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 0,
        ];
        let m = parse(&bytes).unwrap();
        assert!(matches!(
            m.fields[0],
            OxmField::Raw {
                class: 0x8000,
                field: 2,
                has_mask: false,
                ..
            }
        ));
        let mut out = Vec::new();
        m.emit(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn bad_matches_are_rejected() {
        // wrong match type
        assert_eq!(parse(&[0, 0, 0, 4, 0, 0, 0, 0]), Err(CodecError::BadMatch));
        // length below 4
        assert_eq!(parse(&[0, 1, 0, 3, 0, 0, 0, 0]), Err(CodecError::BadMatch));
        // length beyond the buffer
        assert_eq!(parse(&[0, 1, 0, 40, 0, 0, 0, 0]), Err(CodecError::BadMatch));
        // padding missing
        assert_eq!(
            parse(&[0, 1, 0, 10, 0x80, 0, 0x0a, 0x02, 8, 0]),
            Err(CodecError::BadMatch)
        );
        // in_port with length 3
        assert_eq!(
            parse(&[0, 1, 0, 11, 0x80, 0, 0, 3, 0, 0, 1, 0, 0, 0, 0, 0]),
            Err(CodecError::BadOxm)
        );
        // masked eth_type (not maskable)
        assert_eq!(
            parse(&[0, 1, 0, 12, 0x80, 0, 0x0b, 4, 8, 0, 0xff, 0xff, 0, 0, 0, 0]),
            Err(CodecError::BadOxm)
        );
        // OXM overruns the match
        assert_eq!(
            parse(&[0, 1, 0, 8, 0x80, 0, 0, 8, 0, 0, 0, 0]),
            Err(CodecError::BadOxm)
        );
        // OXM header cut short by the match length
        assert_eq!(parse(&[0, 1, 0, 6, 0x80, 0, 0, 0]), Err(CodecError::BadOxm));
        // fixed match header truncated
        assert_eq!(parse(&[0, 1]), Err(CodecError::Truncated));
    }

    #[test]
    fn builder_adds_prerequisites_and_sorts() {
        let m = Match::builder()
            .tcp_dst(80)
            .eth_type(0x0800)
            .build()
            .unwrap();
        assert_eq!(
            m.fields,
            vec![
                OxmField::EthType(0x0800),
                OxmField::IpProto(6),
                OxmField::TcpDst(80)
            ]
        );
        let m = Match::builder().icmpv6_type(128).build().unwrap();
        assert_eq!(
            m.fields,
            vec![
                OxmField::EthType(0x86dd),
                OxmField::IpProto(58),
                OxmField::Icmpv6Type(128)
            ]
        );
        // tcp without IP version is ambiguous
        assert_eq!(
            Match::builder().tcp_src(1).build(),
            Err(MatchError::Prerequisite {
                field: field::IP_PROTO
            })
        );
        // contradicting eth_type
        assert_eq!(
            Match::builder()
                .eth_type(0x86dd)
                .ipv4_dst(Ipv4Addr::LOCALHOST)
                .build(),
            Err(MatchError::Prerequisite {
                field: field::IPV4_DST
            })
        );
        assert_eq!(
            Match::builder().in_port(1).in_port(2).build(),
            Err(MatchError::Duplicate {
                class: OFPXMC_OPENFLOW_BASIC,
                field: field::IN_PORT
            })
        );
        assert_eq!(
            Match::builder()
                .eth_type(0x0800)
                .ip_proto(17)
                .tcp_dst(1)
                .build(),
            Err(MatchError::Prerequisite {
                field: field::TCP_DST
            })
        );
    }

    #[test]
    fn normalize_canonicalizes_masks() {
        let m = Match::builder()
            .ipv4_src_prefix(Ipv4Addr::new(10, 0, 0, 1), 32)
            .ipv4_dst_prefix(Ipv4Addr::new(10, 9, 9, 9), 0)
            .eth_dst_masked([1, 2, 3, 4, 5, 6], [0xff, 0xff, 0, 0, 0, 0])
            .ipv6_src_prefix(Ipv6Addr::LOCALHOST, 128)
            .build();
        // ipv6 contradicts the implied 0x0800
        assert!(m.is_err());
        let m = Match::builder()
            .ipv4_src_prefix(Ipv4Addr::new(10, 0, 0, 1), 32)
            .ipv4_dst_prefix(Ipv4Addr::new(10, 9, 9, 9), 0)
            .eth_dst_masked([1, 2, 3, 4, 5, 6], [0xff, 0xff, 0, 0, 0, 0])
            .vlan_vid(5)
            .build()
            .unwrap();
        assert_eq!(
            m.fields,
            vec![
                OxmField::EthDst {
                    addr: [1, 2, 0, 0, 0, 0],
                    mask: Some([0xff, 0xff, 0, 0, 0, 0])
                },
                OxmField::EthType(0x0800),
                OxmField::VlanVid {
                    vid: 0x1005,
                    mask: None
                },
                OxmField::Ipv4Src {
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    mask: None
                },
            ]
        );
        assert_eq!(m.normalize().unwrap(), m, "normalize is idempotent");
        let any_vlan = Match::builder().vlan_present().build().unwrap();
        assert_eq!(
            any_vlan.fields,
            vec![OxmField::VlanVid {
                vid: 0x1000,
                mask: Some(0x1000)
            }]
        );
        assert_eq!(
            Match::builder()
                .ipv6_dst_prefix("2001:db8::1".parse().unwrap(), 32)
                .build()
                .unwrap()
                .get(field::IPV6_DST),
            Some(&OxmField::Ipv6Dst {
                addr: "2001:db8::".parse().unwrap(),
                mask: Some("ffff:ffff::".parse().unwrap())
            })
        );
    }
}
