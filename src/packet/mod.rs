//! Sampled packet headers → the flow keys Reflex measures (Ethernet, 802.1Q/QinQ, IPv4, IPv6,
//! TCP, UDP, SCTP, ICMP, ICMPv6). A truncated header yields the keys that are present.
//!
//! Promises: parsing reads the caller's bytes in place, allocates nothing, never panics on
//! any input (every offset is checked before it is read) and runs in bounded time (VLAN tags
//! and IPv6 extension headers are walked a bounded number of times).
//!
//! The parser is hand-written rather than built on `etherparse`: its lax slicer still needs a
//! full Ethernet header and a full transport header to report anything, whereas sFlow headers
//! are cut at an arbitrary byte and we want every key that survived the cut, with no extra
//! dependency on the per-sample path.

mod ip;
mod transport;

#[cfg(test)]
pub(crate) mod build;

use std::net::IpAddr;

pub use ip::{parse_ip, parse_ipv4, parse_ipv6};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad service tag (outer tag of QinQ).
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Pre-standard QinQ outer tag still sent by some switches.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// sFlow `header_protocol` for Ethernet (ISO 8802-3).
pub const HEADER_PROTOCOL_ETHERNET: u32 = 1;
/// sFlow `header_protocol` for a bare IPv4 header.
pub const HEADER_PROTOCOL_IPV4: u32 = 11;
/// sFlow `header_protocol` for a bare IPv6 header.
pub const HEADER_PROTOCOL_IPV6: u32 = 12;

/// Most VLAN tags walked before giving up on a frame (real frames carry at most two).
const MAX_VLAN_TAGS: usize = 4;

/// The keys found in one sampled header; `None` means absent or cut off by truncation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderKeys {
    /// Ethernet source address.
    pub eth_src: Option<[u8; 6]>,
    /// Ethernet destination address.
    pub eth_dst: Option<[u8; 6]>,
    /// Innermost EtherType, after any VLAN tags.
    pub ethertype: Option<u16>,
    /// Outermost VLAN id (802.1Q tag or 802.1ad S-tag).
    pub vlan: Option<u16>,
    /// Inner VLAN id of a QinQ frame (C-tag).
    pub inner_vlan: Option<u16>,
    /// IP source address.
    pub ip_src: Option<IpAddr>,
    /// IP destination address.
    pub ip_dst: Option<IpAddr>,
    /// IP protocol (IPv6: the upper-layer protocol after extension headers).
    pub ip_proto: Option<u8>,
    /// IPv4 type of service / IPv6 traffic class.
    pub ip_tos: Option<u8>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ip_ttl: Option<u8>,
    /// IPv4 flags (3 bits: reserved, don't fragment, more fragments); IPv4 only.
    pub ip_flags: Option<u8>,
    /// IPv4 fragment offset (13 bits, in 8-byte units); IPv4 only.
    pub ip_frag_offset: Option<u16>,
    /// A non-first fragment: it carries no transport header, so no L4 keys.
    pub fragment: bool,
    /// TCP, UDP or SCTP source port.
    pub src_port: Option<u16>,
    /// TCP, UDP or SCTP destination port.
    pub dst_port: Option<u16>,
    /// TCP flags (the low 8 bits of the flags field: CWR..FIN).
    pub tcp_flags: Option<u8>,
    /// ICMP / ICMPv6 type.
    pub icmp_type: Option<u8>,
    /// ICMP / ICMPv6 code.
    pub icmp_code: Option<u8>,
}

/// Reads a big-endian u16 at `at`, if both bytes are present.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?) {
        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// Copies `N` bytes at `at`, if all are present.
#[inline]
pub(crate) fn array_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
}

/// Parses an Ethernet frame as sampled (possibly truncated) and returns the keys present.
pub fn parse_ethernet(frame: &[u8]) -> HeaderKeys {
    let mut keys = HeaderKeys::default();
    ethernet_into(frame, &mut keys);
    keys
}

/// Fills the keys present in an Ethernet frame into `keys`, which must start out as
/// [`HeaderKeys::default`] (the fields the frame lacks are left as they are).
#[inline]
fn ethernet_into(frame: &[u8], keys: &mut HeaderKeys) {
    // Common case first: the whole Ethernet header survived the cut (one length check).
    let (mut ethertype, mut offset) = match frame.first_chunk::<14>() {
        Some(h) => {
            let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = *h;
            keys.eth_dst = Some([d0, d1, d2, d3, d4, d5]);
            keys.eth_src = Some([s0, s1, s2, s3, s4, s5]);
            (u16::from_be_bytes([t0, t1]), 14)
        }
        None => {
            keys.eth_dst = array_at(frame, 0);
            keys.eth_src = array_at(frame, 6);
            return;
        }
    };
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        if tags == MAX_VLAN_TAGS {
            return;
        }
        let Some(tci) = be16(frame, offset) else {
            return;
        };
        let vid = tci & 0x0FFF;
        match tags {
            0 => keys.vlan = Some(vid),
            1 => keys.inner_vlan = Some(vid),
            _ => {}
        }
        tags += 1;
        let Some(next) = be16(frame, offset + 2) else {
            return;
        };
        ethertype = next;
        offset += 4;
    }
    keys.ethertype = Some(ethertype);
    let rest = frame.get(offset..).unwrap_or(&[]);
    match ethertype {
        ETHERTYPE_IPV4 => ip::ipv4_into(rest, keys),
        ETHERTYPE_IPV6 => ip::ipv6_into(rest, keys),
        _ => {}
    }
}

/// Parses a header as sFlow's `sampled_header` carries it, by its `header_protocol`
/// (1 Ethernet, 11 IPv4, 12 IPv6); other protocols yield no keys.
pub fn parse_sampled_header(protocol: u32, header: &[u8]) -> HeaderKeys {
    let mut keys = HeaderKeys::default();
    parse_sampled_header_into(protocol, header, &mut keys);
    keys
}

/// [`parse_sampled_header`] writing into `keys` in place, which must start out as
/// [`HeaderKeys::default`]: the per-sample path fills the sample it is building rather than
/// moving an 80-byte struct through return values.
#[inline]
pub fn parse_sampled_header_into(protocol: u32, header: &[u8], keys: &mut HeaderKeys) {
    match protocol {
        HEADER_PROTOCOL_ETHERNET => ethernet_into(header, keys),
        HEADER_PROTOCOL_IPV4 => ip::ipv4_into(header, keys),
        HEADER_PROTOCOL_IPV6 => ip::ipv6_into(header, keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC_A: [u8; 6] = [0, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [0, 0, 0, 0, 0, 2];

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// The first sampled header of tests/data/ovs-sflow.pcapng: an echo request h1 → h2 as
    /// OVS 3.1 sampled it (98 of 102 bytes; header_protocol 1).
    const ICMP_ECHO: [u8; 98] = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x54, 0x9f, 0x2c, 0x40, 0x00, 0x40, 0x01, 0x87, 0x7a, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0x08, 0x00, 0xf6, 0x7a, 0x28, 0x79, 0x00, 0x01, 0x6b, 0xa9, 0x06,
        0x6b, 0x00, 0x00, 0x00, 0x00, 0xa2, 0x23, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11,
        0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20,
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    #[test]
    fn icmp_echo_fixture() {
        let k = parse_ethernet(&ICMP_ECHO);
        assert_eq!(k.eth_dst, Some(MAC_B));
        assert_eq!(k.eth_src, Some(MAC_A));
        assert_eq!(k.ethertype, Some(ETHERTYPE_IPV4));
        assert_eq!(k.vlan, None);
        assert_eq!(k.ip_src, Some(v4(10, 0, 0, 1)));
        assert_eq!(k.ip_dst, Some(v4(10, 0, 0, 2)));
        assert_eq!(k.ip_proto, Some(1));
        assert_eq!(k.ip_ttl, Some(64));
        assert_eq!(k.ip_tos, Some(0));
        // Flags 0x4000: don't fragment, offset 0.
        assert_eq!((k.ip_flags, k.ip_frag_offset), (Some(0b010), Some(0)));
        assert!(!k.fragment);
        assert_eq!((k.icmp_type, k.icmp_code), (Some(8), Some(0)));
        assert_eq!((k.src_port, k.dst_port, k.tcp_flags), (None, None, None));
    }

    #[test]
    fn dot1q_tcp() {
        let f = Frame {
            vlans: vec![(ETHERTYPE_VLAN, 100)],
            l3: L3::V4 {
                src: [192, 168, 1, 1],
                dst: [192, 168, 1, 2],
                tos: 0x10,
                ttl: 7,
                options: 0,
                frag_offset: 0,
                more_fragments: false,
            },
            l4: L4::Tcp {
                src: 12345,
                dst: 80,
                flags: 0x02,
            },
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert_eq!(k.vlan, Some(100));
        assert_eq!(k.inner_vlan, None);
        assert_eq!(k.ethertype, Some(ETHERTYPE_IPV4));
        assert_eq!(k.ip_proto, Some(6));
        assert_eq!(k.ip_tos, Some(0x10));
        assert_eq!(k.ip_ttl, Some(7));
        assert_eq!((k.src_port, k.dst_port), (Some(12345), Some(80)));
        assert_eq!(k.tcp_flags, Some(0x02));
    }

    #[test]
    fn qinq_both_tag_types() {
        for outer in [ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_QINQ_OLD] {
            let f = Frame {
                vlans: vec![(outer, 10), (ETHERTYPE_VLAN, 4094)],
                l4: L4::Udp { src: 53, dst: 5353 },
                ..Frame::default()
            };
            let k = parse_ethernet(&f.build());
            assert_eq!(k.vlan, Some(10));
            assert_eq!(k.inner_vlan, Some(4094));
            assert_eq!(k.ethertype, Some(ETHERTYPE_IPV4));
            assert_eq!(k.ip_proto, Some(17));
            assert_eq!((k.src_port, k.dst_port), (Some(53), Some(5353)));
        }
    }

    #[test]
    fn vlan_priority_bits_are_not_the_id() {
        let mut bytes = Frame {
            vlans: vec![(ETHERTYPE_VLAN, 5)],
            ..Frame::default()
        }
        .build();
        bytes[14] |= 0xF0; // PCP 7 + DEI
        assert_eq!(parse_ethernet(&bytes).vlan, Some(5));
    }

    #[test]
    fn too_many_tags_stop_without_l3() {
        let f = Frame {
            vlans: vec![(ETHERTYPE_VLAN, 1); MAX_VLAN_TAGS + 1],
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert_eq!((k.vlan, k.inner_vlan), (Some(1), Some(1)));
        assert_eq!(k.ethertype, None);
        assert_eq!(k.ip_src, None);
    }

    #[test]
    fn ipv4_options_shift_l4() {
        let f = Frame {
            l3: L3::V4 {
                src: [1, 2, 3, 4],
                dst: [5, 6, 7, 8],
                tos: 0,
                ttl: 1,
                options: 3, // 12 option bytes, IHL 8
                frag_offset: 0,
                more_fragments: false,
            },
            l4: L4::Udp {
                src: 1000,
                dst: 2000,
            },
            ..Frame::default()
        };
        let bytes = f.build();
        assert_eq!(bytes[14], 0x48);
        let k = parse_ethernet(&bytes);
        assert_eq!((k.src_port, k.dst_port), (Some(1000), Some(2000)));
    }

    #[test]
    fn ipv4_bad_ihl_keeps_addresses_drops_l4() {
        let mut bytes = Frame::default().build();
        bytes[14] = 0x44; // IHL 4 < 5
        let k = parse_ethernet(&bytes);
        assert_eq!(k.ip_src, Some(v4(10, 0, 0, 1)));
        assert_eq!((k.icmp_type, k.src_port), (None, None));
    }

    #[test]
    fn ipv4_fragments() {
        let frag = |offset: u16, mf: bool| Frame {
            l3: L3::V4 {
                src: [1, 1, 1, 1],
                dst: [2, 2, 2, 2],
                tos: 0,
                ttl: 64,
                options: 0,
                frag_offset: offset,
                more_fragments: mf,
            },
            l4: L4::Udp { src: 7, dst: 9 },
            ..Frame::default()
        };
        let first = parse_ethernet(&frag(0, true).build());
        assert!(!first.fragment);
        assert_eq!(first.src_port, Some(7));
        assert_eq!(
            (first.ip_flags, first.ip_frag_offset),
            (Some(0b001), Some(0))
        );
        let later = parse_ethernet(&frag(185, false).build());
        assert!(later.fragment);
        assert_eq!((later.ip_flags, later.ip_frag_offset), (Some(0), Some(185)));
        // Every flag bit, and the offset's full 13 bits, through both IPv4 paths.
        let mut bytes = frag(0x1FFF, true).build();
        bytes[14 + 6] |= 0xC0; // reserved + don't fragment
        for header in [&bytes[14..], &with_options(&bytes[14..])[..]] {
            let k = parse_ipv4(header);
            assert_eq!((k.ip_flags, k.ip_frag_offset), (Some(0b111), Some(0x1FFF)));
            assert!(k.fragment);
        }
        assert_eq!(later.ip_proto, Some(17));
        assert_eq!((later.src_port, later.dst_port), (None, None));
        assert_eq!(later.ip_src, Some(v4(1, 1, 1, 1)));
    }

    /// The same IPv4 packet with one (NOP) option word, so that it takes the checked path.
    fn with_options(ip: &[u8]) -> Vec<u8> {
        let mut out = ip[..20].to_vec();
        out[0] = 0x46;
        out.extend_from_slice(&[1, 1, 1, 1]);
        out.extend_from_slice(&ip[20..]);
        out
    }

    fn v6(last: u16) -> [u8; 16] {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last).octets()
    }

    #[test]
    fn ipv6_with_every_extension_header() {
        let f = Frame {
            l3: L3::V6 {
                src: v6(1),
                dst: v6(2),
                tclass: 0xb8,
                hlim: 255,
                exts: vec![
                    Ext::HopByHop(0),
                    Ext::Routing(1),
                    Ext::Fragment {
                        offset: 0,
                        more: true,
                    },
                    Ext::Auth(2),
                    Ext::DestOpts(3),
                ],
            },
            l4: L4::Tcp {
                src: 443,
                dst: 50000,
                flags: 0x12,
            },
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert_eq!(k.ethertype, Some(ETHERTYPE_IPV6));
        assert_eq!(k.ip_src, Some(IpAddr::V6(Ipv6Addr::from(v6(1)))));
        assert_eq!(k.ip_dst, Some(IpAddr::V6(Ipv6Addr::from(v6(2)))));
        assert_eq!(k.ip_tos, Some(0xb8));
        assert_eq!(k.ip_ttl, Some(255));
        assert_eq!(k.ip_proto, Some(6));
        assert!(!k.fragment);
        assert_eq!(
            (k.src_port, k.dst_port, k.tcp_flags),
            (Some(443), Some(50000), Some(0x12))
        );
    }

    #[test]
    fn ipv6_later_fragment_has_no_l4() {
        let f = Frame {
            l3: L3::V6 {
                src: v6(1),
                dst: v6(2),
                tclass: 0,
                hlim: 1,
                exts: vec![Ext::Fragment {
                    offset: 100,
                    more: false,
                }],
            },
            l4: L4::Udp { src: 1, dst: 2 },
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert!(k.fragment);
        assert_eq!(k.ip_proto, Some(17));
        assert_eq!(k.src_port, None);
    }

    #[test]
    fn icmpv6_and_sctp() {
        let f = Frame {
            l3: L3::V6 {
                src: v6(1),
                dst: v6(2),
                tclass: 0,
                hlim: 64,
                exts: vec![],
            },
            l4: L4::Icmp {
                proto: 58,
                ty: 128,
                code: 0,
            },
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert_eq!(
            (k.ip_proto, k.icmp_type, k.icmp_code),
            (Some(58), Some(128), Some(0))
        );
        let f = Frame {
            l4: L4::Sctp {
                src: 2905,
                dst: 2906,
            },
            ..Frame::default()
        };
        let k = parse_ethernet(&f.build());
        assert_eq!(
            (k.ip_proto, k.src_port, k.dst_port),
            (Some(132), Some(2905), Some(2906))
        );
    }

    #[test]
    fn bare_ip_header_protocols() {
        let bytes = Frame::default().build();
        let k = parse_sampled_header(HEADER_PROTOCOL_IPV4, &bytes[14..]);
        assert_eq!(k.ip_src, Some(v4(10, 0, 0, 1)));
        assert_eq!(k.eth_src, None);
        assert_eq!(k.ethertype, None);
        assert_eq!(parse_ip(&bytes[14..]), k);
        // The IPv4 bytes are not an IPv6 header.
        assert_eq!(
            parse_sampled_header(HEADER_PROTOCOL_IPV6, &bytes[14..]),
            HeaderKeys::default()
        );
        let f6 = Frame {
            l3: L3::V6 {
                src: v6(9),
                dst: v6(8),
                tclass: 0,
                hlim: 3,
                exts: vec![],
            },
            ..Frame::default()
        };
        let b6 = f6.build();
        let k6 = parse_sampled_header(HEADER_PROTOCOL_IPV6, &b6[14..]);
        assert_eq!(k6.ip_src, Some(IpAddr::V6(Ipv6Addr::from(v6(9)))));
        assert_eq!(parse_ip(&b6[14..]), k6);
        assert_eq!(parse_sampled_header(2, &bytes), HeaderKeys::default());
        assert_eq!(
            parse_sampled_header(HEADER_PROTOCOL_ETHERNET, &bytes),
            parse_ethernet(&bytes)
        );
    }

    #[test]
    fn truncation_keeps_what_was_parsed() {
        let full = parse_ethernet(&ICMP_ECHO);
        let k = parse_ethernet(&ICMP_ECHO[..6]);
        assert_eq!((k.eth_dst, k.eth_src), (Some(MAC_B), None));
        let k = parse_ethernet(&ICMP_ECHO[..13]);
        assert_eq!((k.eth_src, k.ethertype), (Some(MAC_A), None));
        let k = parse_ethernet(&ICMP_ECHO[..14 + 16]);
        assert_eq!(k.ip_src, full.ip_src);
        assert_eq!(k.ip_dst, None);
        assert_eq!(k.ip_proto, Some(1));
        let k = parse_ethernet(&ICMP_ECHO[..14 + 20 + 1]);
        assert_eq!((k.icmp_type, k.icmp_code), (Some(8), None));
    }

    #[test]
    fn truncation_at_every_offset_never_panics_and_only_loses_keys() {
        let frames = [
            ICMP_ECHO.to_vec(),
            Frame {
                vlans: vec![(ETHERTYPE_QINQ, 3), (ETHERTYPE_VLAN, 4)],
                l3: L3::V6 {
                    src: v6(1),
                    dst: v6(2),
                    tclass: 1,
                    hlim: 2,
                    exts: vec![Ext::HopByHop(1), Ext::Auth(1), Ext::Routing(0)],
                },
                l4: L4::Tcp {
                    src: 1,
                    dst: 2,
                    flags: 3,
                },
                ..Frame::default()
            }
            .build(),
        ];
        for bytes in &frames {
            let full = parse_ethernet(bytes);
            for cut in 0..=bytes.len() {
                let k = parse_ethernet(&bytes[..cut]);
                // Every key present in a truncated parse has its full-parse value.
                macro_rules! sub {
                    ($($f:ident),*) => {$(
                        assert!(k.$f.is_none() || k.$f == full.$f, "{} at cut {cut}", stringify!($f));
                    )*};
                }
                sub!(eth_src, eth_dst, ethertype, vlan, inner_vlan, ip_src, ip_dst, ip_proto);
                sub!(ip_tos, ip_ttl, src_port, dst_port, tcp_flags, icmp_type, icmp_code);
                sub!(ip_flags, ip_frag_offset);
                let _ = parse_ip(&bytes[cut..]);
            }
            assert_eq!(parse_ethernet(&bytes[..]), full);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), proto in 0u32..16) {
            let _ = parse_sampled_header(proto, &bytes);
            let _ = parse_ethernet(&bytes);
            let _ = parse_ip(&bytes);
        }

        #[test]
        fn random_ipv6_chains_never_panic(
            nexts in proptest::collection::vec(prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), any::<u8>()], 0..20),
            lens in proptest::collection::vec(any::<u8>(), 20),
            cut in 0usize..400,
        ) {
            // An IPv6 header followed by a chain of extension headers with random lengths.
            let mut b = vec![0x60, 0, 0, 0, 0, 0, nexts.first().copied().unwrap_or(59), 64];
            b.extend_from_slice(&[0u8; 32]);
            for (i, _) in nexts.iter().enumerate() {
                let next = nexts.get(i + 1).copied().unwrap_or(6);
                b.push(next);
                b.push(lens[i] % 4);
                b.extend_from_slice(&[0u8; 6]);
            }
            let cut = cut.min(b.len());
            let _ = parse_ipv6(&b[..cut]);
        }

        #[test]
        fn build_then_parse(f in arb_frame()) {
            let bytes = f.build();
            let k = parse_ethernet(&bytes);
            prop_assert_eq!(k, f.expected());
        }
    }
}
