//! IPv4 and IPv6 headers (with IPv6 extension headers) as found in sampled headers.
//!
//! Each field is taken only if its bytes survived truncation; transport keys are read only
//! when the whole IP header chain is present and the packet is not a non-first fragment.

use super::{array_at, be16, transport, HeaderKeys};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most IPv6 extension headers walked before giving up (real packets carry a handful).
const MAX_EXT_HEADERS: usize = 8;

const IPV6_HEADER_LEN: usize = 40;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AUTH: u8 = 51;
const NH_NONE: u8 = 59;
const NH_DEST_OPTS: u8 = 60;

/// Parses a packet that starts at an IPv4 or IPv6 header (chosen by the version nibble).
pub fn parse_ip(packet: &[u8]) -> HeaderKeys {
    let mut keys = HeaderKeys::default();
    match packet.first().map(|b| b >> 4) {
        Some(4) => ipv4_into(packet, &mut keys),
        Some(6) => ipv6_into(packet, &mut keys),
        _ => {}
    }
    keys
}

/// Parses a packet that starts at an IPv4 header; anything else yields no keys.
pub fn parse_ipv4(packet: &[u8]) -> HeaderKeys {
    let mut keys = HeaderKeys::default();
    ipv4_into(packet, &mut keys);
    keys
}

/// Parses a packet that starts at an IPv6 header; anything else yields no keys.
pub fn parse_ipv6(packet: &[u8]) -> HeaderKeys {
    let mut keys = HeaderKeys::default();
    ipv6_into(packet, &mut keys);
    keys
}

/// Fills the IPv4 (and transport) keys present in `p` into `keys`.
#[inline]
pub(super) fn ipv4_into(p: &[u8], keys: &mut HeaderKeys) {
    // Common case first: a whole option-less header (one length check), then the transport.
    if let Some(h) = p.first_chunk::<20>() {
        let [first, tos, _, _, _, _, f0, f1, ttl, proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3] = *h;
        if first == 0x45 {
            keys.ip_tos = Some(tos);
            keys.ip_ttl = Some(ttl);
            keys.ip_proto = Some(proto);
            keys.ip_src = Some(IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)));
            keys.ip_dst = Some(IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)));
            let flags_offset = u16::from_be_bytes([f0, f1]);
            keys.ip_flags = Some((flags_offset >> 13) as u8);
            keys.ip_frag_offset = Some(flags_offset & 0x1FFF);
            if flags_offset & 0x1FFF != 0 {
                keys.fragment = true;
            } else if let Some(l4) = p.get(20..) {
                transport::parse_into(proto, l4, keys);
            }
            return;
        }
    }
    ipv4_checked(p, keys)
}

/// [`ipv4_into`] field by field, for headers with options or cut short.
fn ipv4_checked(p: &[u8], keys: &mut HeaderKeys) {
    let Some(&first) = p.first() else { return };
    if first >> 4 != 4 {
        return;
    }
    keys.ip_tos = p.get(1).copied();
    keys.ip_ttl = p.get(8).copied();
    keys.ip_proto = p.get(9).copied();
    keys.ip_src = array_at::<4>(p, 12).map(|a| IpAddr::V4(Ipv4Addr::from(a)));
    keys.ip_dst = array_at::<4>(p, 16).map(|a| IpAddr::V4(Ipv4Addr::from(a)));
    let Some(flags_offset) = be16(p, 6) else {
        return;
    };
    keys.ip_flags = Some((flags_offset >> 13) as u8);
    keys.ip_frag_offset = Some(flags_offset & 0x1FFF);
    if flags_offset & 0x1FFF != 0 {
        keys.fragment = true;
        return;
    }
    let header_len = usize::from(first & 0x0F) * 4;
    if header_len < 20 {
        return;
    }
    if let (Some(proto), Some(l4)) = (keys.ip_proto, p.get(header_len..)) {
        transport::parse_into(proto, l4, keys);
    }
}

/// Fills the IPv6 (and transport) keys present in `p` into `keys`, walking extension headers.
pub(super) fn ipv6_into(p: &[u8], keys: &mut HeaderKeys) {
    let Some(&first) = p.first() else { return };
    if first >> 4 != 6 {
        return;
    }
    keys.ip_tos = be16(p, 0).map(|w| (w >> 4) as u8);
    keys.ip_ttl = p.get(7).copied();
    keys.ip_src = array_at::<16>(p, 8).map(|a| IpAddr::V6(Ipv6Addr::from(a)));
    keys.ip_dst = array_at::<16>(p, 24).map(|a| IpAddr::V6(Ipv6Addr::from(a)));
    let Some(mut next) = p.get(6).copied() else {
        return;
    };
    if p.len() < IPV6_HEADER_LEN {
        return;
    }
    let mut offset = IPV6_HEADER_LEN;
    // One more round than headers so that the upper layer after the last one is reached.
    for _ in 0..=MAX_EXT_HEADERS {
        let ext_len = match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                p.get(offset + 1).map(|&l| (usize::from(l) + 1) * 8)
            }
            NH_AUTH => p.get(offset + 1).map(|&l| (usize::from(l) + 2) * 4),
            NH_FRAGMENT => {
                let (Some(&after), Some(frag)) = (p.get(offset), be16(p, offset + 2)) else {
                    return;
                };
                if frag & 0xFFF8 != 0 {
                    // A later fragment: its upper-layer protocol is known, its ports are not.
                    keys.ip_proto = Some(after);
                    keys.fragment = true;
                    return;
                }
                Some(8)
            }
            NH_NONE => {
                keys.ip_proto = Some(NH_NONE);
                return;
            }
            upper => {
                keys.ip_proto = Some(upper);
                if let Some(l4) = p.get(offset..) {
                    transport::parse_into(upper, l4, keys);
                }
                return;
            }
        };
        let (Some(len), Some(&after)) = (ext_len, p.get(offset)) else {
            return;
        };
        next = after;
        offset += len;
    }
}
