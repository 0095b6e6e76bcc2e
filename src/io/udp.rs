//! UDP sockets for ingest: one SO_REUSEPORT socket per worker so the kernel spreads agents
//! over workers without any user-space hand-off, with a large receive buffer.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a UDP socket with SO_REUSEPORT (so several workers can share `addr`), a receive
/// buffer of at least `rcvbuf` bytes where the system allows it, and a receive timeout so a
/// blocked worker still notices shutdown.
pub fn bind_ingest(addr: SocketAddr, rcvbuf: usize, timeout: Duration) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped agents on a [::] listener too, as operators expect.
        let _ = socket.set_only_v6(false);
    }
    set_rcvbuf(&socket, rcvbuf);
    socket.set_read_timeout(Some(timeout))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds `count` (at least one) SO_REUSEPORT sockets sharing one address, as the ingest
/// workers do. The group is exclusive: if anything already holds `addr`, even an
/// SO_REUSEPORT socket of the same user (another reflexd, whose workers the new sockets
/// would otherwise silently join and split the agents' datagrams with), it fails with
/// `AddrInUse`. With port 0 the kernel picks a port for the first socket and the others
/// join it.
pub fn bind_ingest_group(
    addr: SocketAddr,
    count: usize,
    rcvbuf: usize,
    timeout: Duration,
) -> io::Result<Vec<UdpSocket>> {
    if addr.port() != 0 {
        probe_exclusive(addr)?;
    }
    let first = bind_ingest(addr, rcvbuf, timeout)?;
    let shared = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(bind_ingest(shared, rcvbuf, timeout)?);
    }
    Ok(group)
}

/// A plain bind (no SO_REUSEPORT) that fails if any socket holds `addr`.
fn probe_exclusive(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "address in use (another reflexd or collector is receiving there)",
            )
        } else {
            e
        }
    })
}

/// Sets SO_RCVBUF, using SO_RCVBUFFORCE (root) to pass `net.core.rmem_max` when allowed.
fn set_rcvbuf(socket: &Socket, bytes: usize) {
    let want = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd, a c_int option value and its size.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&want as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

/// The receive buffer size the kernel actually granted (it doubles the requested value).
pub fn rcvbuf(socket: &UdpSocket) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
}

/// Datagrams the kernel dropped on this socket because its receive buffer was full
/// (SO_MEMINFO's SK_MEMINFO_DROPS), or `None` if the kernel does not report it.
pub fn kernel_drops(socket: &UdpSocket) -> Option<u64> {
    const SK_MEMINFO_VARS: usize = 9;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < (SK_MEMINFO_DROPS + 1) * 4 {
        return None;
    }
    Some(info[SK_MEMINFO_DROPS] as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_exclusive_and_port_0_gives_all_members_one_port() {
        let t = Duration::from_millis(10);
        let group = bind_ingest_group("127.0.0.1:0".parse().unwrap(), 3, 1 << 16, t).unwrap();
        let held = group[0].local_addr().unwrap();
        assert_ne!(held.port(), 0);
        assert!(group.iter().all(|s| s.local_addr().unwrap() == held));
        // A second group (say, another reflexd) is refused, not merged in.
        let e = bind_ingest_group(held, 1, 1 << 16, t).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(group);
        assert_eq!(bind_ingest_group(held, 2, 1 << 16, t).unwrap().len(), 2);
    }

    #[test]
    fn two_workers_share_one_port_and_receive() {
        let first = bind_ingest(
            "127.0.0.1:0".parse().unwrap(),
            1 << 20,
            Duration::from_millis(200),
        )
        .unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_ingest(addr, 1 << 20, Duration::from_millis(200)).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(rcvbuf(&first) >= 1 << 20);
        assert_eq!(kernel_drops(&first), Some(0));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello", addr).unwrap();
        let mut buf = [0u8; 16];
        // One of the two sockets gets it; the other times out.
        let got = first
            .recv(&mut buf)
            .or_else(|_| second.recv(&mut buf))
            .unwrap();
        assert_eq!(&buf[..got], b"hello");
    }

    #[test]
    fn binding_a_port_held_without_reuseport_fails_clearly() {
        let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let err = bind_ingest(addr, 1 << 16, Duration::from_millis(10)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
