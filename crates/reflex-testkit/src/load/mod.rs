//! Load generation, sans-IO: a seedable random source, Zipf ranks, Ethernet/IPv4 frames,
//! and a traffic model that turns background traffic and scheduled attacks into sFlow v5
//! datagrams through this crate's emitter ([`crate::sflow`]), plus the loopback-only target
//! guard.
//!
//! The `reflex-load` tool (crates/reflex-load) drives this model with sockets and a clock;
//! nothing here reads either.

pub mod frame;
pub mod model;
pub mod rng;
pub mod zipf;

use std::net::{IpAddr, SocketAddr};

pub use model::{
    Attack, AttackKind, DecayedRate, Emitted, ModelConfig, ModelError, SourceDist, SpecError,
    TrafficModel,
};
pub use rng::Rng;
pub use zipf::Zipf;

/// A target outside loopback: load tools never send anywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing target {0}: load tools only send to 127.0.0.0/8 or ::1")]
pub struct NotLoopback(pub SocketAddr);

/// Ok if `addr` is in 127.0.0.0/8 or is ::1 (an IPv4-mapped ::ffff:127.x.y.z counts too).
pub fn ensure_loopback(addr: SocketAddr) -> Result<SocketAddr, NotLoopback> {
    let ok = match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if ok {
        Ok(addr)
    } else {
        Err(NotLoopback(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_pass() {
        for ok in [
            "127.0.0.1:6343",
            "127.255.0.9:1",
            "[::1]:6343",
            "[::ffff:127.0.0.2]:5",
        ] {
            let a: SocketAddr = ok.parse().unwrap();
            assert_eq!(ensure_loopback(a), Ok(a), "{ok}");
        }
        for bad in [
            "0.0.0.0:6343",
            "10.0.0.1:6343",
            "192.168.1.1:6343",
            "255.255.255.255:6343",
            "224.0.0.1:6343",
            "[::]:6343",
            "[::2]:6343",
            "[fe80::1]:6343",
            "[::ffff:10.0.0.1]:6343",
            "128.0.0.1:1",
        ] {
            let a: SocketAddr = bad.parse().unwrap();
            let e = ensure_loopback(a).unwrap_err();
            assert!(
                e.to_string().contains("only send to 127.0.0.0/8 or ::1"),
                "{e}"
            );
        }
    }
}
