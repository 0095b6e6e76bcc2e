//! Test-only frame builder: describes a frame by its fields, emits its bytes and the
//! [`HeaderKeys`] a correct parser must return for them.

use super::{HeaderKeys, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A frame to build.
#[derive(Clone, Debug)]
pub struct Frame {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// (TPID, VLAN id) per tag, outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub l3: L3,
    pub l4: L4,
}

/// Network layer.
#[derive(Clone, Debug)]
pub enum L3 {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        tos: u8,
        ttl: u8,
        /// Number of 4-byte option words (0..=10).
        options: u8,
        frag_offset: u16,
        more_fragments: bool,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        tclass: u8,
        hlim: u8,
        exts: Vec<Ext>,
    },
    /// A non-IP EtherType with an opaque payload (e.g. ARP).
    Other(u16),
}

/// IPv6 extension header; the number is the header's length field.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop(u8),
    Routing(u8),
    DestOpts(u8),
    Auth(u8),
    Fragment { offset: u16, more: bool },
}

impl Ext {
    fn code(self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing(_) => 43,
            Ext::Fragment { .. } => 44,
            Ext::Auth(_) => 51,
            Ext::DestOpts(_) => 60,
        }
    }

    fn emit(self, next: u8, out: &mut Vec<u8>) {
        let (len_field, total) = match self {
            Ext::HopByHop(n) | Ext::Routing(n) | Ext::DestOpts(n) => (n, (usize::from(n) + 1) * 8),
            Ext::Auth(n) => (n, (usize::from(n) + 2) * 4),
            Ext::Fragment { offset, more } => {
                out.push(next);
                out.push(0);
                out.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
                return;
            }
        };
        out.push(next);
        out.push(len_field);
        out.resize(out.len() + total - 2, 0);
    }
}

/// Transport layer.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp {
        src: u16,
        dst: u16,
        flags: u8,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    Sctp {
        src: u16,
        dst: u16,
    },
    Icmp {
        proto: u8,
        ty: u8,
        code: u8,
    },
    /// Another protocol, with 8 opaque bytes.
    Other(u8),
}

impl L4 {
    fn proto(self) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Sctp { .. } => 132,
            L4::Icmp { proto, .. } => proto,
            L4::Other(p) => p,
        }
    }

    fn emit(self, out: &mut Vec<u8>) {
        match self {
            L4::Tcp { src, dst, flags } => {
                out.extend_from_slice(&src.to_be_bytes());
                out.extend_from_slice(&dst.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff]);
                out.extend_from_slice(&[0; 4]);
            }
            L4::Udp { src, dst } | L4::Sctp { src, dst } => {
                out.extend_from_slice(&src.to_be_bytes());
                out.extend_from_slice(&dst.to_be_bytes());
                let rest = if matches!(self, L4::Udp { .. }) { 4 } else { 8 };
                out.resize(out.len() + rest, 0);
            }
            L4::Icmp { ty, code, .. } => out.extend_from_slice(&[ty, code, 0, 0, 0, 1, 0, 1]),
            L4::Other(_) => out.extend_from_slice(&[0x5a; 8]),
        }
    }

    fn expected_into(self, k: &mut HeaderKeys) {
        match self {
            L4::Tcp { src, dst, flags } => {
                k.src_port = Some(src);
                k.dst_port = Some(dst);
                k.tcp_flags = Some(flags);
            }
            L4::Udp { src, dst } | L4::Sctp { src, dst } => {
                k.src_port = Some(src);
                k.dst_port = Some(dst);
            }
            L4::Icmp { ty, code, .. } => {
                k.icmp_type = Some(ty);
                k.icmp_code = Some(code);
            }
            L4::Other(_) => {}
        }
    }
}

impl Default for Frame {
    /// An ICMP echo request 10.0.0.1 → 10.0.0.2 between MACs ..:01 → ..:02, untagged.
    fn default() -> Self {
        Frame {
            eth_dst: [0, 0, 0, 0, 0, 2],
            eth_src: [0, 0, 0, 0, 0, 1],
            vlans: Vec::new(),
            l3: L3::V4 {
                src: [10, 0, 0, 1],
                dst: [10, 0, 0, 2],
                tos: 0,
                ttl: 64,
                options: 0,
                frag_offset: 0,
                more_fragments: false,
            },
            l4: L4::Icmp {
                proto: 1,
                ty: 8,
                code: 0,
            },
        }
    }
}

impl Frame {
    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.eth_dst);
        out.extend_from_slice(&self.eth_src);
        for &(tpid, vid) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&vid.to_be_bytes());
        }
        let mut l4 = Vec::new();
        self.l4.emit(&mut l4);
        match &self.l3 {
            L3::V4 {
                src,
                dst,
                tos,
                ttl,
                options,
                frag_offset,
                more_fragments,
            } => {
                out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let hlen = 20 + usize::from(*options) * 4;
                let total = (hlen + l4.len()) as u16;
                out.push(0x40 | (5 + options));
                out.push(*tos);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&[0x12, 0x34]);
                let frag = (u16::from(*more_fragments) << 13) | (frag_offset & 0x1FFF);
                out.extend_from_slice(&frag.to_be_bytes());
                out.extend_from_slice(&[*ttl, self.l4.proto(), 0, 0]);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                out.resize(out.len() + usize::from(*options) * 4, 1);
            }
            L3::V6 {
                src,
                dst,
                tclass,
                hlim,
                exts,
            } => {
                out.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let mut chain = Vec::new();
                for (i, e) in exts.iter().enumerate() {
                    let next = exts.get(i + 1).map_or(self.l4.proto(), |n| n.code());
                    e.emit(next, &mut chain);
                }
                let first = exts.first().map_or(self.l4.proto(), |e| e.code());
                let word = (6u32 << 28) | (u32::from(*tclass) << 20) | 0x12345;
                out.extend_from_slice(&word.to_be_bytes());
                out.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[first, *hlim]);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                out.extend_from_slice(&chain);
            }
            L3::Other(ethertype) => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(&[0; 28]);
                return out;
            }
        }
        out.extend_from_slice(&l4);
        out
    }

    /// The keys a parser must find in [`Frame::build`]'s bytes.
    pub fn expected(&self) -> HeaderKeys {
        let mut k = HeaderKeys {
            eth_dst: Some(self.eth_dst),
            eth_src: Some(self.eth_src),
            vlan: self.vlans.first().map(|v| v.1 & 0x0FFF),
            inner_vlan: self.vlans.get(1).map(|v| v.1 & 0x0FFF),
            ..HeaderKeys::default()
        };
        match &self.l3 {
            L3::V4 {
                src,
                dst,
                tos,
                ttl,
                frag_offset,
                more_fragments,
                ..
            } => {
                k.ethertype = Some(ETHERTYPE_IPV4);
                k.ip_flags = Some(u8::from(*more_fragments));
                k.ip_frag_offset = Some(frag_offset & 0x1FFF);
                k.ip_src = Some(IpAddr::V4(Ipv4Addr::from(*src)));
                k.ip_dst = Some(IpAddr::V4(Ipv4Addr::from(*dst)));
                k.ip_tos = Some(*tos);
                k.ip_ttl = Some(*ttl);
                k.ip_proto = Some(self.l4.proto());
                if frag_offset & 0x1FFF != 0 {
                    k.fragment = true;
                } else {
                    self.l4.expected_into(&mut k);
                }
            }
            L3::V6 {
                src,
                dst,
                tclass,
                hlim,
                exts,
            } => {
                k.ethertype = Some(ETHERTYPE_IPV6);
                k.ip_src = Some(IpAddr::V6(Ipv6Addr::from(*src)));
                k.ip_dst = Some(IpAddr::V6(Ipv6Addr::from(*dst)));
                k.ip_tos = Some(*tclass);
                k.ip_ttl = Some(*hlim);
                let later_fragment = exts.iter().position(
                    |e| matches!(e, Ext::Fragment { offset, .. } if offset & 0x1FFF != 0),
                );
                if let Some(i) = later_fragment {
                    k.fragment = true;
                    k.ip_proto = Some(exts.get(i + 1).map_or(self.l4.proto(), |n| n.code()));
                } else {
                    k.ip_proto = Some(self.l4.proto());
                    self.l4.expected_into(&mut k);
                }
            }
            L3::Other(ethertype) => k.ethertype = Some(*ethertype),
        }
        k
    }
}

fn arb_l4() -> impl Strategy<Value = L4> {
    // Protocols that are neither transports we parse nor IPv6 extension headers.
    let other = (0u8..=255).prop_filter("opaque protocol", |p| {
        !matches!(p, 0 | 1 | 6 | 17 | 43 | 44 | 51 | 58 | 59 | 60 | 132)
    });
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(src, dst, flags)| L4::Tcp {
            src,
            dst,
            flags
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| L4::Udp { src, dst }),
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| L4::Sctp { src, dst }),
        (prop_oneof![Just(1u8), Just(58)], any::<u8>(), any::<u8>())
            .prop_map(|(proto, ty, code)| L4::Icmp { proto, ty, code }),
        other.prop_map(L4::Other),
    ]
}

fn arb_ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (0u8..4).prop_map(Ext::HopByHop),
        (0u8..4).prop_map(Ext::Routing),
        (0u8..4).prop_map(Ext::DestOpts),
        (0u8..4).prop_map(Ext::Auth),
        (0u16..0x2000, any::<bool>()).prop_map(|(offset, more)| Ext::Fragment { offset, more }),
    ]
}

fn arb_l3() -> impl Strategy<Value = L3> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            any::<u8>(),
            0u8..=10,
            prop_oneof![Just(0u16), 0u16..0x2000],
            any::<bool>()
        )
            .prop_map(
                |(src, dst, tos, ttl, options, frag_offset, more_fragments)| L3::V4 {
                    src,
                    dst,
                    tos,
                    ttl,
                    options,
                    frag_offset,
                    more_fragments
                }
            ),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(arb_ext(), 0..5)
        )
            .prop_map(|(src, dst, tclass, hlim, exts)| L3::V6 {
                src,
                dst,
                tclass,
                hlim,
                exts
            }),
        prop_oneof![Just(0x0806u16), Just(0x88CC), Just(0x8847)].prop_map(L3::Other),
    ]
}

fn arb_tag() -> impl Strategy<Value = (u16, u16)> {
    (
        prop_oneof![Just(0x8100u16), Just(0x88A8), Just(0x9100)],
        0u16..0x1000,
    )
}

/// Random frames with up to two VLAN tags.
pub fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        proptest::collection::vec(arb_tag(), 0..=2),
        arb_l3(),
        arb_l4(),
    )
        .prop_map(|(eth_dst, eth_src, vlans, l3, l4)| Frame {
            eth_dst,
            eth_src,
            vlans,
            l3,
            l4,
        })
}
