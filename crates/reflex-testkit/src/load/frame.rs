//! Writes the first bytes of an Ethernet/IPv4 frame (TCP, UDP or ICMP) into a fixed
//! buffer, as a switch would capture them for an sFlow sampled_header record. Allocation
//! free: the generator calls it for every sample.

use std::net::Ipv4Addr;

/// Transport header of a generated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp { src: u16, dst: u16, flags: u8 },
    Udp { src: u16, dst: u16 },
    Icmp { ty: u8, code: u8 },
}

/// TCP flag bits.
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// One generated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub transport: Transport,
    /// Whole frame length in bytes (Ethernet header included, FCS excluded).
    pub frame_len: u16,
}

/// Ethernet + IPv4 + the longest transport header written (TCP, 20 bytes).
pub const MIN_HEADER: usize = 14 + 20 + 20;

/// A locally administered MAC derived from an IPv4 address (02:00:a.b.c.d).
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |&b| u32::from(b));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes `packet`'s headers at the start of `out` and zeroes the rest of it.
/// Returns false (writing nothing) if `out` is shorter than [`MIN_HEADER`].
pub fn write(packet: &Packet, out: &mut [u8]) -> bool {
    if out.len() < MIN_HEADER {
        return false;
    }
    out.fill(0);
    out[0..6].copy_from_slice(&mac_of(packet.dst));
    out[6..12].copy_from_slice(&mac_of(packet.src));
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (proto, l4_len) = match packet.transport {
        Transport::Tcp { .. } => (6u8, 20usize),
        Transport::Udp { .. } => (17, 8),
        Transport::Icmp { .. } => (1, 8),
    };
    let ip_total = packet
        .frame_len
        .saturating_sub(14)
        .max((20 + l4_len) as u16);
    let ip = &mut out[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
    ip[4..6].copy_from_slice(&[0x12, 0x34]);
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&packet.src.octets());
    ip[16..20].copy_from_slice(&packet.dst.octets());
    let sum = checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let l4 = &mut out[34..34 + l4_len];
    match packet.transport {
        Transport::Tcp { src, dst, flags } => {
            l4[0..2].copy_from_slice(&src.to_be_bytes());
            l4[2..4].copy_from_slice(&dst.to_be_bytes());
            l4[4..8].copy_from_slice(&1u32.to_be_bytes());
            l4[12] = 0x50;
            l4[13] = flags;
            l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        }
        Transport::Udp { src, dst } => {
            l4[0..2].copy_from_slice(&src.to_be_bytes());
            l4[2..4].copy_from_slice(&dst.to_be_bytes());
            let udp_len = ip_total.saturating_sub(20);
            l4[4..6].copy_from_slice(&udp_len.to_be_bytes());
        }
        Transport::Icmp { ty, code } => {
            l4[0] = ty;
            l4[1] = code;
            l4[4..8].copy_from_slice(&[0, 1, 0, 1]);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflex::packet::parse_ethernet;
    use std::net::IpAddr;

    #[test]
    fn the_packet_parser_reads_back_what_was_written() {
        let cases = [
            Transport::Tcp {
                src: 40000,
                dst: 80,
                flags: tcp::SYN,
            },
            Transport::Udp { src: 53, dst: 3333 },
            Transport::Icmp { ty: 8, code: 0 },
        ];
        for transport in cases {
            let p = Packet {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 200, 0, 1),
                transport,
                frame_len: 98,
            };
            let mut buf = [0xAAu8; 64];
            assert!(write(&p, &mut buf));
            let k = parse_ethernet(&buf);
            assert_eq!(k.ip_src, Some(IpAddr::V4(p.src)));
            assert_eq!(k.ip_dst, Some(IpAddr::V4(p.dst)));
            assert_eq!(k.eth_src, Some(mac_of(p.src)));
            match transport {
                Transport::Tcp { src, dst, flags } => {
                    assert_eq!(k.ip_proto, Some(6));
                    assert_eq!((k.src_port, k.dst_port), (Some(src), Some(dst)));
                    assert_eq!(k.tcp_flags, Some(flags));
                }
                Transport::Udp { src, dst } => {
                    assert_eq!(k.ip_proto, Some(17));
                    assert_eq!((k.src_port, k.dst_port), (Some(src), Some(dst)));
                }
                Transport::Icmp { ty, code } => {
                    assert_eq!(k.ip_proto, Some(1));
                    assert_eq!((k.icmp_type, k.icmp_code), (Some(ty), Some(code)));
                }
            }
            // The IPv4 header checksum verifies.
            assert_eq!(checksum(&buf[14..34]), 0);
        }
        assert!(!write(
            &Packet {
                src: Ipv4Addr::LOCALHOST,
                dst: Ipv4Addr::LOCALHOST,
                transport: Transport::Icmp { ty: 8, code: 0 },
                frame_len: 64
            },
            &mut [0u8; 20]
        ));
    }
}
