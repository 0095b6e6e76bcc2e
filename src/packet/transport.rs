//! Transport keys: TCP, UDP and SCTP ports, TCP flags, ICMP and ICMPv6 type and code.

use super::{be16, HeaderKeys};

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;

/// Fills the keys of the transport header `l4` (protocol `proto`) that are present.
#[inline]
pub(super) fn parse_into(proto: u8, l4: &[u8], keys: &mut HeaderKeys) {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            keys.src_port = be16(l4, 0);
            keys.dst_port = be16(l4, 2);
            if proto == PROTO_TCP {
                keys.tcp_flags = l4.get(13).copied();
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            keys.icmp_type = l4.first().copied();
            keys.icmp_code = l4.get(1).copied();
        }
        _ => {}
    }
}
