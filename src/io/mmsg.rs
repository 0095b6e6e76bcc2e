//! Batched datagram I/O: `recvmmsg` and `sendmmsg` over buffers owned by one thread and
//! allocated once, so the per-datagram path makes no allocation and one syscall serves a
//! whole batch.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest datagram kept whole; longer ones are reported as truncated (sFlow agents keep
/// datagrams under the path MTU, 1400 bytes for Open vSwitch).
pub const MAX_DATAGRAM: usize = 9216;

/// Receive scratch space for up to `capacity` datagrams.
pub struct RecvBatch {
    buffers: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    len: usize,
}

// SAFETY: the raw pointers inside iovecs/headers only ever point into this struct's own
// heap buffers and are rebuilt before every syscall; nothing is shared across threads.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Scratch space for `capacity` datagrams of up to [`MAX_DATAGRAM`] bytes.
    pub fn new(capacity: usize) -> RecvBatch {
        let capacity = capacity.clamp(1, 1024);
        RecvBatch {
            buffers: vec![0; capacity * MAX_DATAGRAM],
            // SAFETY: iovec, mmsghdr and sockaddr_storage are plain C structs for which
            // all-zero bytes are a valid value.
            iovecs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; capacity],
            headers: vec![unsafe { MaybeUninit::zeroed().assume_init() }; capacity],
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; capacity],
            len: 0,
        }
    }

    /// How many datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Receives up to `capacity` datagrams: blocks (up to the socket's read timeout) for the
    /// first, then takes whatever else is queued. Returns how many arrived; 0 on timeout.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.len = 0;
        let cap = self.capacity();
        let base = self.buffers.as_mut_ptr();
        for i in 0..cap {
            // SAFETY: i * MAX_DATAGRAM + MAX_DATAGRAM <= buffers.len() by construction.
            self.iovecs[i] = libc::iovec {
                iov_base: unsafe { base.add(i * MAX_DATAGRAM) }.cast(),
                iov_len: MAX_DATAGRAM,
            };
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        loop {
            // SAFETY: every header points at live buffers of the stated lengths above.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    cap as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                self.len = n as usize;
                return Ok(self.len);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(0),
                _ => return Err(err),
            }
        }
    }

    /// Number of datagrams from the last `recv`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the last `recv` returned nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th datagram of the last `recv`, and whether the kernel truncated it.
    #[inline]
    pub fn datagram(&self, i: usize) -> (&[u8], bool) {
        if i >= self.len {
            return (&[], false);
        }
        let len = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
        let truncated = self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (
            &self.buffers[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len],
            truncated,
        )
    }

    /// The sender of the `i`-th datagram (off the hot path: used for logging).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        if i >= self.len {
            return None;
        }
        sockaddr_to_std(&self.addrs[i])
    }
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

/// When to pause before the next receive so that datagrams gather into fuller batches.
///
/// A receiver a little faster than its senders finds one or two datagrams per call, and the
/// syscall (and wake-up) then costs more than the datagrams' own work. After a short batch
/// that did not have to wait (the stream is busy, just not faster than the receiver), it
/// pauses `wait` so that the next call takes many at once. A receive that had to wait
/// longer than `wait` shows a sparse stream: no pause then, so light traffic is rarely
/// delayed (only when two datagrams happen to arrive together). Either way a datagram waits
/// at most `wait` (plus the kernel's timer slack, 50 µs by default) longer before it is
/// read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchWait {
    wait_ns: u64,
    /// Batches smaller than this are short.
    short: usize,
}

impl BatchWait {
    /// Pauses of `wait` (none if zero) after batches under a quarter of `capacity` (under
    /// two datagrams for small batches; never for a capacity of one).
    pub fn new(wait: std::time::Duration, capacity: usize) -> BatchWait {
        BatchWait {
            wait_ns: u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX),
            // A batch of one is never short: it cannot gather more.
            short: (capacity / 4).max(2).min(capacity),
        }
    }

    /// After a receive of `n` datagrams that returned `took_ns` after it was called: how
    /// long to pause before the next one.
    #[inline]
    pub fn after(&self, n: usize, took_ns: u64) -> Option<std::time::Duration> {
        (self.wait_ns > 0 && n > 0 && n < self.short && took_ns < self.wait_ns)
            .then(|| std::time::Duration::from_nanos(self.wait_ns))
    }
}

/// Sends many datagrams to one destination with as few `sendmmsg` calls as the kernel allows.
pub struct SendBatch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: pointers are rebuilt before each syscall from borrowed slices; see RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Space for batches of up to `capacity` datagrams.
    pub fn new(capacity: usize) -> SendBatch {
        let capacity = capacity.clamp(1, 1024);
        SendBatch {
            // SAFETY: all-zero bytes are valid for these C structs.
            iovecs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; capacity],
            headers: vec![unsafe { MaybeUninit::zeroed().assume_init() }; capacity],
        }
    }

    /// Sends every datagram in `datagrams` on a connected socket; returns how many the kernel
    /// accepted (fewer only if it reported an error part way, such as a full send buffer).
    pub fn send(&mut self, socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < datagrams.len() {
            let chunk = &datagrams[sent..(sent + self.headers.len()).min(datagrams.len())];
            for (i, d) in chunk.iter().enumerate() {
                self.iovecs[i] = libc::iovec {
                    iov_base: d.as_ptr() as *mut libc::c_void,
                    iov_len: d.len(),
                };
                // SAFETY: all-zero is a valid msghdr; then point it at the iovec above.
                self.headers[i].msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
                self.headers[i].msg_hdr.msg_iov = &mut self.iovecs[i];
                self.headers[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first chunk.len() headers point at live, borrowed datagrams.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent > 0 {
                    return Ok(sent);
                }
                return Err(err);
            }
            sent += n as usize;
            if (n as usize) < chunk.len() {
                break;
            }
        }
        Ok(sent)
    }
}

impl SendBatch {
    /// Sends datagram `i` = `buf[i * slot..i * slot + lens[i]]` for every entry of `lens`
    /// on a connected socket, without building a slice of slices; returns how many were
    /// accepted. Lengths beyond their slot or the buffer are cut to fit.
    pub fn send_slots(
        &mut self,
        socket: &UdpSocket,
        buf: &[u8],
        slot: usize,
        lens: &[usize],
    ) -> io::Result<usize> {
        if slot == 0 {
            return Ok(0);
        }
        let mut sent = 0;
        let mut chunks = buf
            .chunks(slot)
            .zip(lens)
            .map(|(chunk, &len)| &chunk[..len.min(chunk.len())]);
        loop {
            let mut n = 0;
            for (i, d) in chunks.by_ref().take(self.headers.len()).enumerate() {
                self.iovecs[i] = libc::iovec {
                    iov_base: d.as_ptr() as *mut libc::c_void,
                    iov_len: d.len(),
                };
                // SAFETY: all-zero is a valid msghdr; then point it at the iovec above.
                self.headers[i].msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
                self.headers[i].msg_hdr.msg_iov = &mut self.iovecs[i];
                self.headers[i].msg_hdr.msg_iovlen = 1;
                n = i + 1;
            }
            if n == 0 {
                return Ok(sent);
            }
            let accepted = loop {
                // SAFETY: the first n headers point at live chunks of `buf`.
                let r = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.headers.as_mut_ptr(),
                        n as libc::c_uint,
                        0,
                    )
                };
                if r >= 0 {
                    break r as usize;
                }
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent > 0 {
                    return Ok(sent);
                }
                return Err(err);
            };
            sent += accepted;
            if accepted < n {
                return Ok(sent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_sent_with_sendmmsg_arrives_whole_through_recvmmsg() {
        let rx = crate::io::udp::bind_ingest(
            "127.0.0.1:0".parse().unwrap(),
            1 << 20,
            Duration::from_millis(500),
        )
        .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + i as usize]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let mut send = SendBatch::new(4);
        assert_eq!(send.send(&tx, &refs).unwrap(), 10);

        let mut batch = RecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 10 {
            let n = batch.recv(&rx).unwrap();
            assert!(n > 0, "timed out after {} datagrams", got.len());
            for i in 0..n {
                let (d, truncated) = batch.datagram(i);
                assert!(!truncated);
                assert_eq!(batch.source(i), Some(tx.local_addr().unwrap()));
                got.push(d.to_vec());
            }
        }
        assert_eq!(got, payloads);
        assert_eq!(batch.datagram(99), (&[][..], false));
    }

    #[test]
    fn slotted_datagrams_arrive_one_by_one() {
        let rx = crate::io::udp::bind_ingest(
            "127.0.0.1:0".parse().unwrap(),
            1 << 20,
            Duration::from_millis(500),
        )
        .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let buf: Vec<u8> = (0..250u32).map(|i| (i / 100) as u8).collect();
        let mut send = SendBatch::new(2);
        assert_eq!(send.send_slots(&tx, &buf, 100, &[100, 7, 500]).unwrap(), 3);
        assert_eq!(send.send_slots(&tx, &buf, 0, &[1]).unwrap(), 0);
        let mut batch = RecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.recv(&rx).unwrap();
            assert!(n > 0);
            for i in 0..n {
                got.push(batch.datagram(i).0.to_vec());
            }
        }
        assert_eq!(got, vec![vec![0; 100], vec![1; 7], vec![2; 50]]);
    }

    #[test]
    fn batch_wait_pauses_only_after_short_batches_of_a_busy_stream() {
        let w = BatchWait::new(Duration::from_micros(50), 64);
        let pause = Some(Duration::from_micros(50));
        // Short batch, found at once: pause.
        assert_eq!(w.after(1, 2_000), pause);
        assert_eq!(w.after(15, 49_999), pause);
        // A quarter of the batch or more: no pause, the receiver is behind.
        assert_eq!(w.after(16, 2_000), None);
        assert_eq!(w.after(64, 0), None);
        // Waited at least as long as a pause: a sparse stream, taken without delay.
        assert_eq!(w.after(1, 50_000), None);
        assert_eq!(w.after(1, 5_000_000), None);
        // Timed out with nothing, or switched off.
        assert_eq!(w.after(0, 10), None);
        assert_eq!(BatchWait::new(Duration::ZERO, 64).after(1, 0), None);
        // Small batches count one datagram as short; a batch of one cannot be fuller.
        let small = BatchWait::new(Duration::from_micros(5), 4);
        assert_eq!(small.after(1, 0), Some(Duration::from_micros(5)));
        assert_eq!(small.after(2, 0), None);
        assert_eq!(
            BatchWait::new(Duration::from_micros(5), 1).after(1, 0),
            None
        );
    }

    #[test]
    fn recv_times_out_with_zero() {
        let rx = crate::io::udp::bind_ingest(
            "127.0.0.1:0".parse().unwrap(),
            1 << 16,
            Duration::from_millis(20),
        )
        .unwrap();
        let mut batch = RecvBatch::new(4);
        assert_eq!(batch.recv(&rx).unwrap(), 0);
        assert!(batch.is_empty());
    }
}
